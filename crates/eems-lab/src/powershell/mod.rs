//! What a simulated Exchange server does with a WinRS command line: `powershell.exe
//! -EncodedCommand …` running the scanner's probe scripts, plus the few cmd.exe commands a
//! person tries by hand.
//!
//! The probe protocol v1 is a fixed contract (README "Contract"):
//!
//! - the **org probe** carries the marker `eems-probe:org:1`;
//! - the **host probe** carries `eems-probe:host:1` and starts with a header of assignments,
//!   one per line: `$Name = '<single-quoted literal>'`, `$Name = $null` or `$Name = <integer>`.
//!
//! The header is the leading run of lines that start with `$identifier =`; it ends at the
//! first line that does not (the scanner begins its fixed body with the marker comment). Each
//! header line is tokenised the way PowerShell reads a single-quoted literal; anything else on
//! such a line is answered with PowerShell's ParserError record, so an unquoted value or
//! injected code can never reach "execution". Markers count only after the header.
//!
//! Each probe prints one `EEMS-PROBE-RESULT {json}` line on stdout and exits 0.

use crate::fleet::{Fleet, ServerSpec};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::fmt::Write as _;

mod clixml;
mod header;
mod probe;
mod script;
#[cfg(test)]
mod tests;

pub use clixml::clixml_escape;
use clixml::{clixml_doc, clixml_progress, error_lines, error_stream};
pub use header::{Assignment, Header, HeaderValue, ParseError, is_single_quote, parse_header};
pub(crate) use probe::finish_json;
pub use probe::{admin_display_version, host_json, org_data_json, org_json, padded_version};
use script::run_script;

pub const ORG_MARKER: &str = "eems-probe:org:1";
pub const HOST_MARKER: &str = "eems-probe:host:1";
pub const RESULT_PREFIX: &str = "EEMS-PROBE-RESULT ";
pub const CLIXML_MARKER: &str = "#< CLIXML\r\n";
const OBJS_OPEN: &str =
    "<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\">";
const OBJS_CLOSE: &str = "</Objs>";
/// powershell.exe's exit code when its own command line is unusable (0xFFFD0000).
const BAD_ARGS_EXIT: i32 = -196_608;
/// Console width Windows PowerShell wraps error messages at (lines of at most 118 chars seen).
const WRAP: usize = 118;

/// The host a command runs on.
pub struct ExecContext<'a> {
    pub fleet: &'a Fleet,
    pub server: &'a ServerSpec,
    /// The authenticated user (`LAB\administrator`).
    pub user: &'a str,
    /// The shell's console code page is UTF-8 (`WINRS_CODEPAGE=65001` honoured at Create).
    pub console_utf8: bool,
}

/// Everything a command will ever write, and how it ends. Delivery (timing, chunking) is the
/// WinRS layer's business.
#[derive(Debug, Clone, Default)]
pub struct Execution {
    pub stdout: Vec<u8>,
    /// Starts with [`CLIXML_MARKER`] when PowerShell serialised its streams.
    pub stderr: Vec<u8>,
    pub exit_code: i32,
    pub probe: Option<&'static str>,
    pub note: Option<String>,
    /// stdout never ends (fault `endless_output`); `stdout` is what comes first.
    pub endless: bool,
    /// The script reads all of stdin before anything else ([`STDIN_READER`]): nothing
    /// runs until stdin ends, then [`run_stdin`] runs what came.
    pub reads_stdin: bool,
}

/// What a script that runs its stdin contains, as the scanner's bootstrap and Ansible's
/// exec wrapper do: stdin read to its end, base64 decoded to UTF-8, run as a script block.
/// The lab recognises exactly that shape; any other script ignores stdin as before.
pub const STDIN_READER: [&str; 4] = [
    "[Console]::In.ReadToEnd()",
    "[Convert]::FromBase64String(",
    "[Text.Encoding]::UTF8.GetString(",
    "[ScriptBlock]::Create(",
];

/// Runs what a [`STDIN_READER`] command got on stdin, once stdin has ended.
pub fn run_stdin(stdin: &[u8], ctx: &ExecContext<'_>) -> Execution {
    match decode_base64(&String::from_utf8_lossy(stdin)).and_then(|b| String::from_utf8(b).ok()) {
        Some(script) => script::run_script(&script, true, ctx),
        // What FromBase64String throws, as an error record on stderr.
        None => Execution {
            stderr: error_stream(
                &error_lines(
                    "Exception calling \"FromBase64String\" with \"1\" argument(s): \"The input is not a valid Base-64 string as it contains a non-base 64 character, more than two padding characters, or an illegal character among the padding characters. \"",
                    "",
                    0,
                    0,
                    "NotSpecified: (:) [], MethodInvocationException",
                    "FormatException",
                    false,
                ),
                true,
                "",
            ),
            exit_code: 1,
            note: Some("stdin is not base64 of UTF-8".into()),
            ..Execution::default()
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/// Splits a command line into words the way cmd/CommandLineToArgvW mostly do: blanks separate,
/// double quotes group.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut has = false;
    for c in line.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                has = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if has {
                    words.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                cur.push(c);
                has = true;
            }
        }
    }
    if has {
        words.push(cur);
    }
    words
}

/// cmd.exe expands environment variables before running the line.
fn expand_env(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) => {
                let name = &after[..end];
                let value = match name.to_ascii_lowercase().as_str() {
                    "systemroot" | "windir" => Some(r"C:\Windows"),
                    "systemdrive" => Some("C:"),
                    "programfiles" => Some(r"C:\Program Files"),
                    _ => None,
                };
                match value {
                    Some(v) => out.push_str(v),
                    None => {
                        out.push('%');
                        out.push_str(name);
                        out.push('%');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn program_name(word: &str) -> String {
    let last = word
        .rsplit(['\\', '/'])
        .next()
        .unwrap_or(word)
        .to_ascii_lowercase();
    last.strip_suffix(".exe")
        .map(str::to_string)
        .unwrap_or(last)
}

/// Runs one WinRS command line (Command + space-joined Arguments).
pub fn execute(line: &str, ctx: &ExecContext<'_>) -> Execution {
    let expanded = expand_env(line);
    let trimmed = expanded.trim_start();
    let words = split_words(trimmed);
    let Some(first) = words.first() else {
        return Execution::default();
    };
    match program_name(first).as_str() {
        "powershell" => run_powershell(&words[1..], ctx),
        "cmd" => {
            // `cmd /c rest`: the rest is another command line.
            let rest = trimmed[trimmed.find(char::is_whitespace).unwrap_or(trimmed.len())..].trim_start();
            let lower = rest.to_ascii_lowercase();
            if lower.starts_with("/c") || lower.starts_with("/k") {
                execute(&rest[2..], ctx)
            } else {
                Execution::default()
            }
        }
        "hostname" => stdout_only(format!("{}\r\n", ctx.server.name)),
        "whoami" => stdout_only(format!("{}\r\n", ctx.user.to_lowercase())),
        "echo" => {
            let text = trimmed[trimmed.find(char::is_whitespace).unwrap_or(trimmed.len())..].trim_start();
            stdout_only(format!("{text}\r\n"))
        }
        _ => Execution {
            stderr: format!(
                "'{first}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
            )
            .into_bytes(),
            exit_code: 1,
            ..Execution::default()
        },
    }
}

fn stdout_only(s: String) -> Execution {
    Execution {
        stdout: s.into_bytes(),
        ..Execution::default()
    }
}

/// `-EncodedCommand` and every abbreviation powershell.exe accepts, plus `-ec`.
fn is_encoded_switch(name: &str) -> bool {
    name == "ec" || (name.starts_with('e') && "encodedcommand".starts_with(name))
}

fn run_powershell(args: &[String], ctx: &ExecContext<'_>) -> Execution {
    const WITH_VALUE: &[&str] = &[
        "executionpolicy",
        "ep",
        "ex",
        "inputformat",
        "outputformat",
        "windowstyle",
        "version",
        "configurationname",
        "psconsolefile",
    ];
    const FLAGS: &[&str] = &[
        "noprofile",
        "noninteractive",
        "nologo",
        "noexit",
        "sta",
        "mta",
    ];
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(name) = a.strip_prefix('-').or_else(|| a.strip_prefix('/')) else {
            // Anything that is not a switch starts the command text (implicit -Command).
            return run_script(&args[i..].join(" "), false, ctx);
        };
        let name = name.to_ascii_lowercase();
        if name.is_empty() {
            // `-`: the script would come on stdin, which lab commands never read.
            return Execution::default();
        }
        if is_encoded_switch(&name) {
            let Some(b64) = args.get(i + 1) else {
                return ps_usage_error("Missing parameter for -EncodedCommand.");
            };
            return match decode_script(b64) {
                Some(script) => run_script(&script, true, ctx),
                None => ps_usage_error(
                    "Cannot process the command because the value specified with -EncodedCommand is not properly encoded. The value must be Base64 encoded.",
                ),
            };
        }
        if name == "command" || name == "c" {
            return run_script(&args[i + 1..].join(" "), false, ctx);
        }
        if FLAGS
            .iter()
            .any(|f| f.starts_with(name.as_str()) && name.len() >= 3.min(f.len()))
        {
            i += 1;
        } else if WITH_VALUE.iter().any(|f| f.starts_with(name.as_str())) {
            i += 2;
        } else {
            return ps_usage_error(&format!(
                "-{name} : The term '-{name}' is not recognized as a valid parameter for powershell.exe."
            ));
        }
    }
    Execution::default()
}

fn ps_usage_error(msg: &str) -> Execution {
    Execution {
        stderr: format!("{msg}\r\n").into_bytes(),
        exit_code: BAD_ARGS_EXIT,
        ..Execution::default()
    }
}

/// base64 with any whitespace in it, as .NET's FromBase64String and WinRS accept it.
pub fn decode_base64(b64: &str) -> Option<Vec<u8>> {
    let cleaned: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(cleaned).ok()
}

/// base64 → UTF-16LE → text, as powershell.exe decodes `-EncodedCommand`.
pub fn decode_script(b64: &str) -> Option<String> {
    let bytes = decode_base64(b64)?;
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect();
    Some(String::from_utf16_lossy(&units))
}

/// UTF-16LE then base64: what clients send.
pub fn encode_script(script: &str) -> String {
    let bytes: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    B64.encode(bytes)
}
