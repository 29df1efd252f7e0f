//! Running a script: the probes, the snap-in and console quirks, and everything else.

use super::*;

/// Console output encoding: UTF-8 only when the script asks for it, else the OEM code page,
/// so encoding mistakes on the client side show up.
fn encode_stdout(text: &str, utf8: bool) -> Vec<u8> {
    if utf8 {
        return text.as_bytes().to_vec();
    }
    text.chars()
        .map(|c| match c {
            c if c.is_ascii() => c as u8,
            'Ç' => 0x80,
            'ü' => 0x81,
            'é' => 0x82,
            'â' => 0x83,
            'ä' => 0x84,
            'à' => 0x85,
            'å' => 0x86,
            'ç' => 0x87,
            'ê' => 0x88,
            'ë' => 0x89,
            'è' => 0x8A,
            'Ä' => 0x8E,
            'É' => 0x90,
            'ô' => 0x93,
            'ö' => 0x94,
            'Ö' => 0x99,
            'Ü' => 0x9A,
            'á' => 0xA0,
            'ó' => 0xA2,
            'ñ' => 0xA4,
            'ß' => 0xE1,
            _ => b'?',
        })
        .collect()
}

fn wants_utf8(script: &str) -> bool {
    let l = script.to_ascii_lowercase();
    l.contains("outputencoding")
        && (l.contains("utf8") || l.contains("utf-8") || l.contains("65001"))
}

pub(super) fn run_script(script: &str, encoded: bool, ctx: &ExecContext<'_>) -> Execution {
    let header = match parse_header(script) {
        Ok(h) => h,
        Err(e) => {
            let lines = error_lines(
                &e.message,
                script,
                e.offset,
                e.len,
                "ParserError: (:) [], ParentContainsErrorRecordException",
                e.error_id,
                true,
            );
            return Execution {
                stderr: error_stream(&lines, encoded, ""),
                exit_code: 1,
                note: Some(format!(
                    "script parse error: {} ({})",
                    e.message, e.error_id
                )),
                ..Execution::default()
            };
        }
    };
    let body = &script[header.body_offset..];
    if STDIN_READER.iter().all(|part| body.contains(part)) {
        return Execution {
            reads_stdin: true,
            note: Some("reads stdin".into()),
            ..Execution::default()
        };
    }
    let org = body.find(ORG_MARKER);
    let host = body
        .find(HOST_MARKER)
        .or_else(|| body.find(crate::evidence::HOST_MARKER_V2));
    let probe = match (org, host) {
        (Some(o), Some(h)) => Some(if o < h { "org" } else { "host" }),
        (Some(_), None) => Some("org"),
        (None, Some(_)) => Some("host"),
        (None, None) => None,
    };
    let Some(probe) = probe else {
        return command_not_found(script, header.body_offset, encoded);
    };
    let utf8 = ctx.console_utf8 || wants_utf8(body);
    let server = ctx.server;
    let faults = &server.faults;
    let mut exec = Execution {
        probe: Some(probe),
        ..Execution::default()
    };
    let mut out = String::new();
    let mut progress = String::new();
    if faults.noise {
        out.push_str(NOISE_BANNER);
        progress = noise_progress();
    }

    if probe == "org" && (!server.exchange_tools || faults.no_snapin) {
        let (offset, len) = match body.find("Add-PSSnapin") {
            Some(i) => {
                let l = body[i..].find(['\r', '\n']).unwrap_or(body.len() - i);
                (
                    header.body_offset + i,
                    body[i..i + l].trim_end().chars().count(),
                )
            }
            None => (header.body_offset, 1),
        };
        let lines = error_lines(
            "Add-PSSnapin : No snap-ins have been registered for Windows PowerShell version 5.",
            script,
            offset,
            len,
            "InvalidArgument: (Microsoft.Excha...owerShell.SnapIn:String) [Add-PSSnapin], PSArgumentException",
            "AddPSSnapInRead,Microsoft.PowerShell.Commands.AddPSSnapinCommand",
            false,
        );
        exec.stdout = encode_stdout(&out, utf8);
        exec.stderr = error_stream(&lines, encoded, &progress);
        exec.exit_code = 1;
        exec.note = Some("no Exchange snap-in on this server".into());
        return exec;
    }

    if probe == "org" && ctx.fleet.org.second_hop_denied {
        // The snap-in loads; its first cmdlet then reads AD as the caller's network logon,
        // which has no credentials to pass on. Not a verbatim capture from Exchange
        // (psrp-kerberos.md §0, §6): the shape of an ADOperationException on stderr.
        let offset = body
            .find("Get-OrganizationConfig")
            .map_or(header.body_offset, |i| header.body_offset + i);
        let domain = server
            .fqdn()
            .split_once('.')
            .map(|(_, d)| d.to_string())
            .unwrap_or_default();
        let lines = error_lines(
            &format!(
                "Active Directory operation failed on dc01.{domain}. This error is not retriable. Additional information: An operations error occurred. Active directory response: 000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this operation a successful bind must be completed on the connection., data 0, v4563"
            ),
            script,
            offset,
            "Get-OrganizationConfig".len(),
            "NotSpecified: (:) [Get-OrganizationConfig], ADOperationException",
            "Microsoft.Exchange.Management.SystemConfigurationTasks.GetOrganizationConfig",
            false,
        );
        exec.stdout = encode_stdout(&out, utf8);
        exec.stderr = error_stream(&lines, encoded, &progress);
        exec.exit_code = 1;
        exec.note = Some("second hop denied: the snap-in cannot reach Active Directory".into());
        return exec;
    }

    if faults.endless_output {
        exec.endless = true;
        exec.stdout = encode_stdout(&out, utf8);
        return exec;
    }

    if faults.garbage {
        out.push_str("Transcript started, output file is C:\\Users\\administrator\\Documents\\PowerShell_transcript.txt\r\n");
        let _ = write!(out, "{{\"probe\":\"{probe}\",\"schema\":1,\r\n");
        out.push_str("System.Management.Automation.PSCustomObject\r\n");
        exec.stdout = encode_stdout(&out, utf8);
        if !progress.is_empty() {
            exec.stderr = clixml_doc(&progress);
        }
        return exec;
    }

    let json = if probe == "org" {
        org_json(ctx.fleet, faults.ps51_quirks)
    } else {
        crate::evidence::host_json(server, &header, body, faults.ps51_quirks)
    };
    out.push_str(RESULT_PREFIX);
    out.push_str(&json);
    out.push_str("\r\n");
    exec.stdout = encode_stdout(&out, utf8);
    if !progress.is_empty() {
        exec.stderr = clixml_doc(&progress);
    }
    exec
}

fn command_not_found(script: &str, body_offset: usize, encoded: bool) -> Execution {
    // The first word of the body, skipping comment lines.
    let mut offset = body_offset;
    for line in script[body_offset..].split_inclusive('\n') {
        let t = line.trim_start();
        if !t.is_empty() && !t.starts_with('#') {
            offset += line.len() - t.len();
            break;
        }
        offset += line.len();
    }
    let word: String = script[offset.min(script.len())..]
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, ';' | '|' | '(' | ')' | '{' | '}'))
        .collect();
    if word.is_empty() {
        return Execution::default();
    }
    let msg = format!(
        "{word} : The term '{word}' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again."
    );
    let lines = error_lines(
        &msg,
        script,
        offset,
        word.chars().count(),
        &format!("ObjectNotFound: ({word}:String) [], CommandNotFoundException"),
        "CommandNotFoundException",
        false,
    );
    Execution {
        stderr: error_stream(&lines, encoded, ""),
        exit_code: 1,
        ..Execution::default()
    }
}

const NOISE_BANNER: &str = "\r\n         Welcome to the Exchange Management Shell!\r\n\r\n\
Full list of cmdlets: Get-Command\r\n\
Only Exchange cmdlets: Get-ExCommand\r\n\
Cmdlets that match a specific string: Help *<string>*\r\n\
Get general help: Help\r\n\
Résumé — Übersicht der Exchange-Verwaltungsshell ✓ 日本語\r\n\
\r\n\
Tip of the day #42:\r\n\
\r\n\
Want to see the mitigations applied by the Exchange Emergency Mitigation Service? Type: Get-Mitigations.ps1\r\n\r\n";

/// Tens of KB of progress records: module auto-loading, then Invoke-WebRequest's download.
fn noise_progress() -> String {
    let mut s = String::new();
    s.push_str(&clixml_progress(
        0,
        "Preparing modules for first use.",
        " ",
        -1,
        true,
    ));
    for i in 1..=110usize {
        let status = format!("Number of bytes downloaded: {}", i * 1791);
        s.push_str(&clixml_progress(
            i,
            "Web request status",
            &status,
            -1,
            false,
        ));
    }
    s.push_str(&clixml_progress(
        111,
        "Web request status",
        "Request completed",
        -1,
        true,
    ));
    s
}
