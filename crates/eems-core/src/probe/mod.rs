//! The remote probes (protocol v1 and the host probe's v2 evidence, see README "Contract")
//! and how they are rendered.
//!
//! The scripts live in `org.ps1`, `host.ps1` and `evidence.ps1`, embedded at build time. The
//! org probe and host probe v1 travel as `powershell.exe -EncodedCommand <base64 of UTF-16LE>`
//! through `cmd.exe`, whose command line holds 8191 characters; that leaves about 3,000
//! characters of script. So the rendered script drops comment lines and indentation: the
//! files stay readable, the wire copy stays small.
//!
//! Host probe v2 is `host.ps1` plus `evidence.ps1` in one script, about 5,200 UTF-16 units
//! minified: over the command line. It travels on stdin instead, as mature WinRM clients
//! (Ansible's) send long scripts: the command line carries only [`STDIN_BOOTSTRAP`], which
//! reads stdin to its end and runs it, and the script follows with WinRS Send in the same
//! command ([`stdin_payload`]). One command, one result line: the v1 object plus `evidence`.

pub mod parse;

/// Microsoft's mitigation endpoint (the OCS) that EEMS fetches from, as HealthChecker
/// tests it.
pub const DEFAULT_OCS_URL: &str = "https://officeclient.microsoft.com/GetExchangeMitigations";
/// Literal marker the org probe carries (the lab and log readers key on it).
pub const ORG_MARKER: &str = "eems-probe:org:1";
/// Literal marker the host probe carries.
pub const HOST_MARKER: &str = "eems-probe:host:1";
/// Literal marker of host probe v2's evidence part.
pub const EVIDENCE_MARKER: &str = "eems-probe:host:2";
/// `--evidence-days` default: how far back the event queries look.
pub const DEFAULT_EVIDENCE_DAYS: u32 = 7;
/// Longest script (in UTF-16 code units) that fits the command line with winrm-rs 2.0.1's
/// 103-character prefix: (8191 - 103) / 8 * 3 = 3,033. Scripts are kept well under it.
pub const MAX_SCRIPT_UTF16: usize = 3033;
/// Longest script sent on stdin: it must fit one Send envelope (winrm-rs 2.0.1's
/// MaxEnvelopeSize, 153,600 bytes). At most 3 UTF-8 bytes a unit, base64 by us and again in
/// the envelope: 24,000 * 3 * 16 / 9 = 128,000 bytes, leaving room for the SOAP around it.
pub const MAX_STDIN_SCRIPT_UTF16: usize = 24_000;
/// The command line of a script sent on stdin: read stdin to its end (base64, so the
/// console code page cannot alter a byte), decode it as UTF-8 and run it as one script
/// block. `powershell.exe -Command -` would read stdin as typed lines instead, dropping a
/// multi-line block at end of input (README, shared/reference/winrm-on-the-wire.md §1.6).
pub const STDIN_BOOTSTRAP: &str = "&([ScriptBlock]::Create([Text.Encoding]::UTF8.GetString([Convert]::FromBase64String([Console]::In.ReadToEnd()))))";

const ORG_PS1: &str = include_str!("org.ps1");
const HOST_PS1: &str = include_str!("host.ps1");
const EVIDENCE_PS1: &str = include_str!("evidence.ps1");

/// What the host probe needs to know that only the scanner knows.
#[derive(Debug, Clone)]
pub struct HostProbeParams<'a> {
    pub ocs_url: &'a str,
    /// The server's `InternetWebProxy` from the org probe, if any.
    pub proxy: Option<&'a str>,
    pub ocs_timeout_secs: u64,
}

/// The org probe as sent.
pub fn org_script() -> String {
    minify(ORG_PS1)
}

/// The host probe as sent: a header of inert literals, then the fixed body.
///
/// Every value comes from outside (command line, Active Directory) and is quoted with
/// `quote_powershell_string`: a single-quoted literal in which only quote characters are
/// special (and doubled), so `$()`, backticks, `;` or newlines stay text.
pub fn host_script(p: &HostProbeParams<'_>) -> Result<String, ScriptTooLong> {
    check_length(format!("{}{}", host_header(p), minify(HOST_PS1)))
}

fn host_header(p: &HostProbeParams<'_>) -> String {
    let proxy = match p.proxy {
        Some(v) => quote_ps_string(v),
        None => "$null".to_string(),
    };
    format!(
        "$OcsUrl = {}\n$Proxy = {}\n$OcsTimeoutSec = {}\n",
        quote_ps_string(p.ocs_url),
        proxy,
        p.ocs_timeout_secs,
    )
}

/// Host probe v2 as sent on stdin: v1's header plus `$EvidenceDays`, then v1's body and the
/// evidence part's. With `$EvidenceDays` set, v1 leaves printing the result to the evidence
/// part, which adds `evidence` to v1's object.
pub fn host_v2_script(
    p: &HostProbeParams<'_>,
    evidence_days: u32,
) -> Result<String, ScriptTooLong> {
    let v1 = host_header(p);
    let script = format!(
        "{v1}$EvidenceDays = {evidence_days}\n{}{}",
        minify(HOST_PS1),
        minify(EVIDENCE_PS1)
    );
    let units = script.encode_utf16().count();
    if units > MAX_STDIN_SCRIPT_UTF16 {
        return Err(ScriptTooLong(
            units,
            MAX_STDIN_SCRIPT_UTF16,
            "one WinRS Send",
        ));
    }
    Ok(script)
}

/// What stdin carries for [`STDIN_BOOTSTRAP`]: the script's UTF-8, in base64.
pub fn stdin_payload(script: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(script.as_bytes())
        .into_bytes()
}

/// A PowerShell single-quoted literal: every quote character PowerShell accepts as a
/// single quote (ASCII and the four typographic ones) is doubled, so the literal closes only
/// at its final quote whatever the value holds. Remote values (proxy settings) travel this way.
pub fn quote_ps_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A script that would not fit the way it travels: its length, the limit, and that way.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the host probe would be {0} characters long, over the {1} that fit {2} (is the OCS URL \
     or the server's InternetWebProxy unusually long?)"
)]
pub struct ScriptTooLong(pub usize, pub usize, pub &'static str);

fn check_length(script: String) -> Result<String, ScriptTooLong> {
    let units = script.encode_utf16().count();
    if units > MAX_SCRIPT_UTF16 {
        Err(ScriptTooLong(
            units,
            MAX_SCRIPT_UTF16,
            "a Windows command line",
        ))
    } else {
        Ok(script)
    }
}

/// Drops whole-line comments (but keeps the marker line) and leading indentation.
/// Safe for these scripts: they hold no here-strings or multi-line literals.
fn minify(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    for line in source.lines() {
        let line = line.trim();
        if line.is_empty() || (line.starts_with('#') && !line.contains("eems-probe:")) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `-EncodedCommand` carries: base64 of the script in UTF-16LE.
    fn encode_command(script: &str) -> String {
        use base64::Engine;
        let bytes: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    const BUDGET: usize = 2800;

    #[test]
    fn org_probe_fits_the_command_line_with_margin() {
        let s = org_script();
        assert!(s.contains(ORG_MARKER));
        let n = s.encode_utf16().count();
        assert!(
            n <= BUDGET,
            "org probe is {n} UTF-16 units, budget {BUDGET}"
        );
    }

    #[test]
    fn host_probe_fits_the_command_line_with_margin() {
        let s = host_script(&HostProbeParams {
            ocs_url: "https://officeclient.microsoft.com/GetExchangeMitigations",
            proxy: Some("http://proxy.corp.contoso.com:8080"),
            ocs_timeout_secs: 20,
        })
        .unwrap();
        assert!(s.contains(HOST_MARKER));
        let n = s.encode_utf16().count();
        assert!(
            n <= BUDGET,
            "host probe is {n} UTF-16 units, budget {BUDGET}"
        );
    }

    fn v2(proxy: &str) -> Result<String, ScriptTooLong> {
        host_v2_script(
            &HostProbeParams {
                ocs_url: DEFAULT_OCS_URL,
                proxy: Some(proxy),
                ocs_timeout_secs: 20,
            },
            DEFAULT_EVIDENCE_DAYS,
        )
    }

    /// Why v2 travels on stdin: one script is too long for the command line.
    #[test]
    fn v2_is_one_script_too_long_for_the_command_line() {
        let s = v2("http://proxy.corp.contoso.com:8080").unwrap();
        let n = s.encode_utf16().count();
        eprintln!("v1 + evidence: {n} UTF-16 units (command line: {MAX_SCRIPT_UTF16})");
        assert!(n > MAX_SCRIPT_UTF16);
        assert!(s.starts_with(
            "$OcsUrl = 'https://officeclient.microsoft.com/GetExchangeMitigations'\n\
             $Proxy = 'http://proxy.corp.contoso.com:8080'\n$OcsTimeoutSec = 20\n\
             $EvidenceDays = 7\n# eems-probe:host:1"
        ));
        // v1's body, then the evidence part's; only the latter prints (v1's print is
        // behind `-not $EvidenceDays`).
        let (h1, h2) = (
            s.find(HOST_MARKER).unwrap(),
            s.find(EVIDENCE_MARKER).unwrap(),
        );
        assert!(h1 < h2);
        assert!(s[h1..h2].contains("if (-not $EvidenceDays) {"));
        assert_eq!(s[h2..].matches("Write-Output").count(), 1);
    }

    #[test]
    fn bootstrap_fits_the_command_line_and_payload_round_trips() {
        assert!(STDIN_BOOTSTRAP.encode_utf16().count() <= BUDGET);
        let s = v2("http://prox\u{00ff}y'").unwrap();
        use base64::Engine;
        let back = base64::engine::general_purpose::STANDARD
            .decode(stdin_payload(&s))
            .unwrap();
        assert_eq!(String::from_utf8(back).unwrap(), s);
    }

    #[test]
    fn overlong_v2_is_refused_before_sending() {
        let e = v2(&"p".repeat(MAX_STDIN_SCRIPT_UTF16)).unwrap_err();
        assert!(e.to_string().contains("one WinRS Send"), "{e}");
        assert!(e.to_string().contains("InternetWebProxy"), "{e}");
    }

    #[test]
    fn encoded_command_line_stays_under_8191() {
        // What winrm-rs puts on the line: program, two switches, -EncodedCommand, base64.
        let s = host_script(&HostProbeParams {
            ocs_url: "https://officeclient.microsoft.com/GetExchangeMitigations",
            proxy: Some("http://proxy.corp.contoso.com:8080"),
            ocs_timeout_secs: 20,
        })
        .unwrap();
        let line = format!(
            r"%SystemRoot%\System32\WindowsPowerShell\v1.0\powershell.exe -NoProfile -NonInteractive -EncodedCommand {}",
            encode_command(&s)
        );
        assert!(
            line.len() < 8191,
            "command line is {} characters",
            line.len()
        );
    }

    #[test]
    fn hostile_values_become_single_literals() {
        for hostile in [
            "http://p'; Remove-Item C:\\ -Recurse; '",
            "http://p/$(Stop-Computer)",
            "http://p/`whoami`",
            "http://p\n$Proxy = 'x'",
            "http://p\u{2019}; evil",
        ] {
            let s = host_script(&HostProbeParams {
                ocs_url: "https://o/x",
                proxy: Some(hostile),
                ocs_timeout_secs: 5,
            })
            .unwrap();
            let expected = quote_ps_string(hostile);
            assert!(s.contains(&format!("$Proxy = {expected}\n$OcsTimeoutSec = 5\n")));
            // The quoted literal has every quote character doubled, so it closes only
            // at its final quote.
            let inner = &expected[1..expected.len() - 1];
            let mut chars = inner.chars().peekable();
            while let Some(c) = chars.next() {
                if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
                    assert_eq!(chars.next(), Some(c), "lone quote in {expected:?}");
                }
            }
        }
    }

    #[test]
    fn overlong_proxy_is_refused_before_sending() {
        let proxy = format!("http://{}", "p".repeat(MAX_SCRIPT_UTF16));
        let e = host_script(&HostProbeParams {
            ocs_url: "https://o/x",
            proxy: Some(&proxy),
            ocs_timeout_secs: 5,
        })
        .unwrap_err();
        assert!(e.to_string().contains("InternetWebProxy"));
    }

    #[test]
    fn minify_keeps_marker_and_code() {
        let m = minify("# eems-probe:org:1 x\n  # comment\n  $a = 1\n\n");
        assert_eq!(m, "# eems-probe:org:1 x\n$a = 1\n");
    }
}
