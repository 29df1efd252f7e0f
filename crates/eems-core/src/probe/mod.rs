//! The remote probes (protocol v1 and the host probe's v2 evidence, see README "Contract")
//! and how they are rendered.
//!
//! The scripts live in `org.ps1`, `host.ps1` and `evidence.ps1`, embedded at build time. They
//! travel as `powershell.exe -EncodedCommand <base64 of UTF-16LE>` through `cmd.exe`, whose
//! command line holds 8191 characters; that leaves about 3,000 characters of script. So the
//! rendered script drops comment lines and indentation: the files stay readable, the
//! wire copy stays small.
//!
//! Host probe v2 is `host.ps1` plus `evidence.ps1`. Together they are about 5,200 UTF-16 units
//! minified, over the command-line budget even deflated (measured: see
//! `v2_in_one_command_does_not_fit`), so until the transport can send a script through stdin
//! the evidence part travels as a second command with its own result line
//! (`{"probe":"host","schema":1,"evidence":{..}}`), which the parser merges.

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
    let proxy = match p.proxy {
        Some(v) => quote_ps_string(v),
        None => "$null".to_string(),
    };
    let script = format!(
        "$OcsUrl = {}\n$Proxy = {}\n$OcsTimeoutSec = {}\n{}",
        quote_ps_string(p.ocs_url),
        proxy,
        p.ocs_timeout_secs,
        minify(HOST_PS1)
    );
    check_length(script)
}

/// Host probe v2's evidence part as sent: `$EvidenceDays`, then the fixed body.
pub fn evidence_script(evidence_days: u32) -> Result<String, ScriptTooLong> {
    check_length(format!(
        "$EvidenceDays = {evidence_days}\n{}",
        minify(EVIDENCE_PS1)
    ))
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

/// A script that would not fit the remote command line.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the host probe would be {0} characters long, over the {MAX_SCRIPT_UTF16} that fit a \
     Windows command line (is the OCS URL or the server's InternetWebProxy unusually long?)"
)]
pub struct ScriptTooLong(pub usize);

fn check_length(script: String) -> Result<String, ScriptTooLong> {
    let units = script.encode_utf16().count();
    if units > MAX_SCRIPT_UTF16 {
        Err(ScriptTooLong(units))
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

    #[test]
    fn evidence_part_fits_the_command_line_with_margin() {
        assert!(
            evidence_script(DEFAULT_EVIDENCE_DAYS)
                .unwrap()
                .starts_with("$EvidenceDays = 7\n# eems-probe:host:2")
        );
        // Its only variable is a number, so the widest one bounds it.
        let s = evidence_script(u32::MAX).unwrap();
        let n = s.encode_utf16().count();
        eprintln!("evidence part: {n} UTF-16 units");
        assert!(n <= MAX_SCRIPT_UTF16, "evidence part is {n} UTF-16 units");
    }

    /// Documents why v2 travels in two commands: one script would be too long.
    #[test]
    fn v2_in_one_command_does_not_fit() {
        let host = host_script(&HostProbeParams {
            ocs_url: DEFAULT_OCS_URL,
            proxy: Some("http://proxy.corp.contoso.com:8080"),
            ocs_timeout_secs: 20,
        })
        .unwrap();
        let evidence = evidence_script(DEFAULT_EVIDENCE_DAYS).unwrap();
        let n = host.encode_utf16().count() + evidence.encode_utf16().count();
        eprintln!("v1 + evidence: {n} UTF-16 units (budget {MAX_SCRIPT_UTF16})");
        assert!(n > MAX_SCRIPT_UTF16);
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
