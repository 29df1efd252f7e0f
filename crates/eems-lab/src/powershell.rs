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
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;

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

/// base64 → UTF-16LE → text, as powershell.exe decodes `-EncodedCommand`.
pub fn decode_script(b64: &str) -> Option<String> {
    let cleaned: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = B64.decode(cleaned).ok()?;
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

// ---------------------------------------------------------------------------------------------
// Header tokenizer
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Str(String),
    Null,
    Int(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub value: HeaderValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub assignments: Vec<Assignment>,
    /// Byte offset of the fixed body in the script.
    pub body_offset: usize,
}

impl Header {
    /// PowerShell variable names are case-insensitive; a later assignment wins.
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.assignments
            .iter()
            .rev()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .map(|a| &a.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub error_id: &'static str,
    /// Byte offset of the offending token and its length in chars (for the `~~~` line).
    pub offset: usize,
    pub len: usize,
}

/// The four Unicode single quotes PowerShell treats like `'`.
pub fn is_single_quote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}')
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// True when the line at `pos` starts like a header assignment: `$identifier` `=`.
fn starts_assignment(s: &str, pos: usize) -> bool {
    let rest = &s[pos..];
    let Some(after) = rest.strip_prefix('$') else {
        return false;
    };
    let name_len = after.find(|c: char| !is_ident(c)).unwrap_or(after.len());
    if name_len == 0 {
        return false;
    }
    let tail = after[name_len..].trim_start_matches([' ', '\t']);
    tail.starts_with('=') && !tail.starts_with("==")
}

/// Parses the probe header (see the module docs).
pub fn parse_header(script: &str) -> Result<Header, ParseError> {
    let mut assignments = Vec::new();
    let mut pos = 0;
    // One assignment per turn; the script length bounds the number of turns.
    for _ in 0..=script.len() {
        // Blank lines between header lines are harmless.
        let line_start = pos + script[pos..].len() - script[pos..].trim_start().len();
        if line_start >= script.len() || !starts_assignment(script, line_start) {
            return Ok(Header {
                assignments,
                body_offset: line_start,
            });
        }
        let (a, next) = parse_assignment(script, line_start)?;
        assignments.push(a);
        pos = next;
    }
    Ok(Header {
        assignments,
        body_offset: script.len(),
    })
}

fn unexpected(script: &str, at: usize) -> ParseError {
    let tok: String = script[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .take(80)
        .collect();
    ParseError {
        message: format!("Unexpected token '{tok}' in expression or statement."),
        error_id: "UnexpectedToken",
        offset: at,
        len: tok.chars().count().max(1),
    }
}

fn skip_blanks(s: &str, mut pos: usize) -> usize {
    while let Some(c) = s[pos..].chars().next() {
        if c == ' ' || c == '\t' {
            pos += 1;
        } else {
            break;
        }
    }
    pos
}

fn parse_assignment(s: &str, start: usize) -> Result<(Assignment, usize), ParseError> {
    let mut pos = start + 1; // '$'
    let name_len = s[pos..]
        .find(|c: char| !is_ident(c))
        .unwrap_or(s.len() - pos);
    let name = s[pos..pos + name_len].to_string();
    pos = skip_blanks(s, pos + name_len);
    pos += 1; // '=' (checked by starts_assignment)
    pos = skip_blanks(s, pos);
    let rest = &s[pos..];
    let first = rest.chars().next();
    let (value, end) = match first {
        None | Some('\r') | Some('\n') => {
            return Err(ParseError {
                message: "You must provide a value expression following the '=' operator.".into(),
                error_id: "ExpectedValueExpression",
                offset: pos.saturating_sub(1),
                len: 1,
            });
        }
        Some(q) if is_single_quote(q) => {
            let mut value = String::new();
            let mut it = rest.char_indices().skip(1).peekable();
            let mut end = None;
            while let Some((i, c)) = it.next() {
                if is_single_quote(c) {
                    match it.peek() {
                        // A doubled quote of any of the five kinds is one literal quote: the
                        // second one.
                        Some(&(_, c2)) if is_single_quote(c2) => {
                            value.push(c2);
                            it.next();
                        }
                        _ => {
                            end = Some(pos + i + c.len_utf8());
                            break;
                        }
                    }
                } else {
                    value.push(c);
                }
            }
            let Some(end) = end else {
                return Err(ParseError {
                    message: "The string is missing the terminator: '.".into(),
                    error_id: "TerminatorExpectedAtEndOfString",
                    offset: pos,
                    len: 1,
                });
            };
            (HeaderValue::Str(value), end)
        }
        Some('$') => {
            let word_len = rest[1..]
                .find(|c: char| !is_ident(c))
                .map_or(rest.len(), |n| n + 1);
            if rest[1..word_len].eq_ignore_ascii_case("null") {
                (HeaderValue::Null, pos + word_len)
            } else {
                return Err(unexpected(s, pos));
            }
        }
        Some(c) if c.is_ascii_digit() || c == '-' => {
            let len = rest
                .char_indices()
                .take_while(|&(i, c)| c.is_ascii_digit() || (i == 0 && c == '-'))
                .count();
            match rest[..len].parse::<i64>() {
                Ok(n) => (HeaderValue::Int(n), pos + len),
                Err(_) => return Err(unexpected(s, pos)),
            }
        }
        Some(_) => return Err(unexpected(s, pos)),
    };
    // Nothing but blanks may follow the value on its line.
    let after = skip_blanks(s, end);
    let tail = &s[after..];
    let next = if tail.is_empty() {
        after
    } else if let Some(t) = tail.strip_prefix("\r\n") {
        s.len() - t.len()
    } else if let Some(t) = tail.strip_prefix('\n') {
        s.len() - t.len()
    } else {
        return Err(unexpected(s, after));
    };
    Ok((Assignment { name, value }, next))
}

// ---------------------------------------------------------------------------------------------
// CLIXML and error records
// ---------------------------------------------------------------------------------------------

/// PowerShell's serializer: XML entities plus `_xHHHH_` for control characters (and for an
/// underscore that would read as the start of such an escape).
pub fn clixml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '_' if chars.get(i + 1) == Some(&'x') => out.push_str("_x005F_"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "_x{:04X}_", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Word-wraps a message the way the console host does before it lands in the error stream.
fn wrap(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ') {
        let needed = if cur.is_empty() {
            word.chars().count()
        } else {
            cur.chars().count() + 1 + word.chars().count()
        };
        if !cur.is_empty() && needed > WRAP {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    lines.push(cur);
    lines
}

/// 1-based line and column of a byte offset.
fn line_col(script: &str, offset: usize) -> (usize, usize, &str) {
    let offset = offset.min(script.len());
    let before = &script[..offset];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = script[line_start..offset].chars().count() + 1;
    let line_end = script[line_start..]
        .find(['\r', '\n'])
        .map_or(script.len(), |i| line_start + i);
    (line_no, col, &script[line_start..line_end])
}

/// The text lines of a Windows PowerShell 5.1 error record as the console host renders it.
fn error_lines(
    message: &str,
    script: &str,
    offset: usize,
    len: usize,
    category: &str,
    fqid: &str,
    parser: bool,
) -> Vec<String> {
    let (line, col, text) = line_col(script, offset);
    let mut out = Vec::new();
    let position = vec![
        format!("At line:{line} char:{col}"),
        format!("+ {text}"),
        format!("+ {}{}", " ".repeat(col - 1), "~".repeat(len.max(1))),
    ];
    if parser {
        out.extend(position);
        out.extend(wrap(message));
    } else {
        out.extend(wrap(message));
        out.extend(position);
    }
    out.push(format!("    + CategoryInfo          : {category}"));
    out.push(format!("    + FullyQualifiedErrorId : {fqid}"));
    out.push(" ".into());
    out
}

/// One error record as `<S S="Error">` lines, each ending in an escaped CRLF.
fn clixml_error(lines: &[String]) -> String {
    let mut s = String::new();
    for l in lines {
        let _ = write!(
            s,
            "<S S=\"Error\">{}</S>",
            clixml_escape(&format!("{l}\r\n"))
        );
    }
    s
}

/// A progress record as powershell.exe serialises it (the first one defines the type names).
fn clixml_progress(
    ref_id: usize,
    activity: &str,
    status: &str,
    percent: i32,
    completed: bool,
) -> String {
    let tn = if ref_id == 0 {
        "<TN RefId=\"0\"><T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN>".to_string()
    } else {
        "<TNRef RefId=\"0\" />".to_string()
    };
    format!(
        "<Obj S=\"progress\" RefId=\"{ref_id}\">{tn}<MS><I64 N=\"SourceId\">1</I64><PR N=\"Record\"><AV>{}</AV><AI>0</AI><Nil /><PI>-1</PI><PC>{percent}</PC><T>{}</T><SR>-1</SR><SD>{}</SD></PR></MS></Obj>",
        clixml_escape(activity),
        if completed { "Completed" } else { "Processing" },
        clixml_escape(status)
    )
}

fn clixml_doc(records: &str) -> Vec<u8> {
    format!("{CLIXML_MARKER}{OBJS_OPEN}{records}{OBJS_CLOSE}").into_bytes()
}

/// stderr for an error record: CLIXML under -EncodedCommand, plain console text otherwise.
fn error_stream(lines: &[String], encoded: bool, progress: &str) -> Vec<u8> {
    if encoded {
        clixml_doc(&format!("{progress}{}", clixml_error(lines)))
    } else {
        lines
            .iter()
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
            .into_bytes()
    }
}

// ---------------------------------------------------------------------------------------------
// Scripts
// ---------------------------------------------------------------------------------------------

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

fn run_script(script: &str, encoded: bool, ctx: &ExecContext<'_>) -> Execution {
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
    let org = body.find(ORG_MARKER);
    let host = body.find(HOST_MARKER);
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
        host_json(server, &header, faults.ps51_quirks)
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

// ---------------------------------------------------------------------------------------------
// Probe answers
// ---------------------------------------------------------------------------------------------

/// `15.2.1544.4` → `Version 15.2 (Build 1544.4)`, as Get-ExchangeServer prints it.
pub fn admin_display_version(build: &str) -> String {
    let parts: Vec<u32> = build.split('.').filter_map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [a, b, c, d] => format!("Version {a}.{b} (Build {c}.{d})"),
        _ => build.to_string(),
    }
}

/// ExSetup.exe's FileVersion string is zero-padded: `15.02.1544.004`.
pub fn padded_version(build: &str) -> String {
    let parts: Vec<u32> = build.split('.').filter_map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [a, b, c, d] => format!("{a}.{b:02}.{c:04}.{d:03}"),
        _ => build.to_string(),
    }
}

fn service_status_number(s: &str) -> Option<u32> {
    Some(match s.to_ascii_lowercase().as_str() {
        "stopped" => 1,
        "startpending" => 2,
        "stoppending" => 3,
        "running" => 4,
        "continuepending" => 5,
        "pausepending" => 6,
        "paused" => 7,
        _ => return None,
    })
}

fn start_type_number(s: &str) -> Option<u32> {
    Some(match s.to_ascii_lowercase().as_str() {
        "boot" => 0,
        "system" => 1,
        "automatic" => 2,
        "manual" => 3,
        "disabled" => 4,
        _ => return None,
    })
}

/// Marks a date for [`finish_json`] to write as PowerShell 5.1's `"\/Date(ms)\/"`.
const DATE_SENTINEL: char = '\u{E000}';

fn date_value(rfc3339: &Option<String>, ps51: bool) -> Value {
    let Some(s) = rfc3339 else {
        return Value::Null;
    };
    let parsed = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339);
    match parsed {
        Ok(t) if ps51 => {
            let ms = t.unix_timestamp_nanos() / 1_000_000;
            Value::String(format!("{DATE_SENTINEL}{ms}{DATE_SENTINEL}"))
        }
        Ok(t) => {
            let utc = t.to_offset(time::UtcOffset::UTC);
            utc.format(&time::format_description::well_known::Rfc3339)
                .map_or_else(|_| json!(s), Value::String)
        }
        Err(_) => json!(s),
    }
}

/// The 5.1 unrolling quirk, for the string lists: one element comes out bare, none as null.
/// `servers` stays an array: the probe contract has the script force it with `@()`.
fn list_value(items: &[String], ps51: bool) -> Value {
    match (ps51, items) {
        (true, []) => Value::Null,
        (true, [one]) => json!(one),
        _ => json!(items),
    }
}

/// Compact JSON the way the probe scripts print it: non-ASCII always as `\uXXXX` (the console
/// code page may not be UTF-8); under PowerShell 5.1 also `<>'&` escaped and dates as
/// `\/Date(ms)\/`.
fn finish_json(v: &impl Serialize, ps51: bool) -> String {
    let raw = serde_json::to_string(v).unwrap_or_else(|_| "{}".into());
    let mut out = String::with_capacity(raw.len() + 16);
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            DATE_SENTINEL => {
                // Opening sentinel: digits follow up to the closing one.
                let mut ms = String::new();
                for d in chars.by_ref() {
                    if d == DATE_SENTINEL {
                        break;
                    }
                    ms.push(d);
                }
                let _ = write!(out, "\\/Date({ms})\\/");
            }
            '<' | '>' | '\'' | '&' if ps51 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{:04x}", u);
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[derive(Serialize)]
struct OrgResult {
    probe: &'static str,
    schema: u32,
    organization: Value,
    organization_error: Option<String>,
    servers: Value,
    servers_error: Option<String>,
}

#[derive(Serialize)]
struct ServerEntry {
    name: String,
    fqdn: String,
    site: String,
    server_role: &'static str,
    is_edge_server: bool,
    admin_display_version: String,
    mitigations_enabled: Option<bool>,
    mitigations_applied: Value,
    mitigations_blocked: Value,
    mitigations_applied_time: Value,
    data_collection_enabled: Option<bool>,
    internet_web_proxy: Option<String>,
}

/// The org probe's result JSON (Get-OrganizationConfig + Get-ExchangeServer).
pub fn org_json(fleet: &Fleet, ps51: bool) -> String {
    let org = &fleet.org;
    let (organization, organization_error) = match &org.error {
        Some(e) => (
            json!({"name": null, "mitigations_enabled": null}),
            Some(e.clone()),
        ),
        None => (
            json!({"name": org.name, "mitigations_enabled": org.mitigations_enabled}),
            None,
        ),
    };
    let (servers, servers_error) = match &org.servers_error {
        Some(e) => (json!([]), Some(e.clone())),
        None => {
            let list: Vec<ServerEntry> = fleet
                .servers
                .iter()
                .filter(|s| s.in_org)
                .map(|s| ServerEntry {
                    name: s.name.clone(),
                    fqdn: s.fqdn(),
                    site: s.site.clone(),
                    server_role: if s.is_edge() { "Edge" } else { "Mailbox" },
                    is_edge_server: s.is_edge(),
                    admin_display_version: admin_display_version(&s.build),
                    mitigations_enabled: s.mitigations_enabled,
                    mitigations_applied: list_value(&s.mitigations_applied, ps51),
                    mitigations_blocked: list_value(&s.mitigations_blocked, ps51),
                    mitigations_applied_time: date_value(&s.mitigations_applied_time, ps51),
                    data_collection_enabled: s.data_collection_enabled,
                    internet_web_proxy: s.internet_web_proxy.clone(),
                })
                .collect();
            (serde_json::to_value(list).unwrap_or(Value::Null), None)
        }
    };
    finish_json(
        &OrgResult {
            probe: "org",
            schema: 1,
            organization,
            organization_error,
            servers,
            servers_error,
        },
        ps51,
    )
}

#[derive(Serialize)]
struct HostResult {
    probe: &'static str,
    schema: u32,
    computer_name: String,
    exsetup_version: String,
    install_path: String,
    service: Value,
    ocs: OcsResult,
}

#[derive(Serialize)]
struct OcsResult {
    url: Option<String>,
    proxy: Option<String>,
    status_code: Option<u16>,
    error: Option<String>,
    elapsed_ms: u64,
}

fn header_string(h: &Header, name: &str) -> Option<String> {
    match h.get(name) {
        Some(HeaderValue::Str(s)) => Some(s.clone()),
        Some(HeaderValue::Int(n)) => Some(n.to_string()),
        Some(HeaderValue::Null) | None => None,
    }
}

/// `scheme://host[:port]/…` → host, as System.Uri would parse an absolute http(s) URI.
fn uri_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = authority.split(':').next().unwrap_or_default();
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| host.to_ascii_lowercase())
}

/// What `Invoke-WebRequest $OcsUrl -Proxy $Proxy` reports on this server.
fn ocs_outcome(
    server: &ServerSpec,
    url: &Option<String>,
    proxy: &Option<String>,
) -> (Option<u16>, Option<String>, u64) {
    const INVALID_URI: &str = "Invalid URI: The format of the URI could not be determined.";
    let Some(url) = url.as_deref().filter(|u| !u.is_empty()) else {
        return (
            None,
            Some("Cannot validate argument on parameter 'Uri'. The argument is null or empty. Provide an argument that is not null or empty, and then try the command again.".into()),
            0,
        );
    };
    let Some(host) = uri_host(url) else {
        return (None, Some(INVALID_URI.into()), 0);
    };
    if let Some(p) = proxy.as_deref() {
        match p.split_once("://") {
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") && uri_host(p).is_some() => {}
            Some((scheme, _)) if uri_host(p).is_some() => {
                return (
                    None,
                    Some(format!(
                        "The ServicePointManager does not support proxies with the {scheme} scheme."
                    )),
                    0,
                );
            }
            _ => return (None, Some(INVALID_URI.into()), 0),
        }
    }
    if server.proxy_required && proxy.as_deref() != server.internet_web_proxy.as_deref() {
        return (
            None,
            Some("Unable to connect to the remote server".into()),
            1041,
        );
    }
    if !server.ocs_reachable {
        return (
            None,
            Some(format!("The remote name could not be resolved: '{host}'")),
            27,
        );
    }
    (Some(200), None, 212)
}

/// The host probe's result JSON.
pub fn host_json(server: &ServerSpec, header: &Header, ps51: bool) -> String {
    let url = header_string(header, "OcsUrl");
    let proxy = header_string(header, "Proxy");
    let (status_code, error, elapsed_ms) = ocs_outcome(server, &url, &proxy);
    let service = if server.service_installed {
        if ps51 {
            let status = service_status_number(&server.service_status)
                .map_or_else(|| json!(server.service_status), |n| json!(n));
            let start = start_type_number(&server.service_start_type)
                .map_or_else(|| json!(server.service_start_type), |n| json!(n));
            json!({"status": status, "start_type": start})
        } else {
            json!({"status": server.service_status, "start_type": server.service_start_type})
        }
    } else {
        Value::Null
    };
    let r = HostResult {
        probe: "host",
        schema: 1,
        computer_name: server.name.to_ascii_uppercase(),
        exsetup_version: if ps51 {
            padded_version(&server.build)
        } else {
            server.build.clone()
        },
        install_path: server.install_path.clone(),
        service,
        ocs: OcsResult {
            url,
            proxy,
            status_code,
            error,
            elapsed_ms,
        },
    };
    finish_json(&r, ps51)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Result<Header, ParseError> {
        parse_header(s)
    }

    #[test]
    fn header_forms() {
        let s = "$OcsUrl = 'https://officeclient.microsoft.com/GetExchangeMitigations'\r\n$Proxy = $null\n$OcsTimeoutSec = 20\r\n# eems-probe:host:1\r\nbody";
        let hd = h(s).expect("parses");
        assert_eq!(hd.assignments.len(), 3);
        assert_eq!(
            hd.get("ocsurl"),
            Some(&HeaderValue::Str(
                "https://officeclient.microsoft.com/GetExchangeMitigations".into()
            ))
        );
        assert_eq!(hd.get("Proxy"), Some(&HeaderValue::Null));
        assert_eq!(hd.get("OcsTimeoutSec"), Some(&HeaderValue::Int(20)));
        assert!(s[hd.body_offset..].starts_with("# eems-probe:host:1"));
    }

    #[test]
    fn quotes_doubled_and_unicode() {
        let hd = h("$A = 'it''s'\n$B = 'x\u{2019}\u{2019}y'\n$C = \u{2018}a\u{2019}\n$D = 'p\u{201A}'q'\n$E = 'a\u{201B}'b'\n#")
            .expect("parses");
        assert_eq!(hd.get("A"), Some(&HeaderValue::Str("it's".into())));
        assert_eq!(hd.get("B"), Some(&HeaderValue::Str("x\u{2019}y".into())));
        // Any of the quotes opens and closes a literal.
        assert_eq!(hd.get("C"), Some(&HeaderValue::Str("a".into())));
        // A doubled pair of mixed quotes is one literal quote: the second one.
        assert_eq!(hd.get("D"), Some(&HeaderValue::Str("p'q".into())));
        assert_eq!(hd.get("E"), Some(&HeaderValue::Str("a'b".into())));
        // A single Unicode quote inside a literal ends it early: the rest is an injection.
        assert!(h("$P = 'a\u{2019}; evil'\n#").is_err());
    }

    #[test]
    fn literal_across_lines_and_inert_subexpression() {
        let hd = h("$A = 'line1\r\nline2 $(Remove-Item C:\\) `n'\r\n# body").expect("parses");
        assert_eq!(
            hd.get("A"),
            Some(&HeaderValue::Str(
                "line1\r\nline2 $(Remove-Item C:\\) `n".into()
            ))
        );
    }

    #[test]
    fn header_errors() {
        for (s, id) in [
            ("$Proxy = http://proxy:8080\n# b", "UnexpectedToken"),
            ("$Proxy = $(calc)\n# b", "UnexpectedToken"),
            (
                "$Proxy = ''; Write-Output pwned; ''\n# b",
                "UnexpectedToken",
            ),
            ("$Proxy = 'abc\n# b", "TerminatorExpectedAtEndOfString"),
            ("$Proxy =\n# b", "ExpectedValueExpression"),
            ("$Proxy = $nullx\n# b", "UnexpectedToken"),
            ("$N = 12abc\n# b", "UnexpectedToken"),
        ] {
            assert_eq!(h(s).map_err(|e| e.error_id), Err(id), "{s}");
        }
    }

    #[test]
    fn encoded_switch_spellings() {
        for ok in ["e", "en", "enc", "encodedc", "encodedcommand", "ec"] {
            assert!(is_encoded_switch(ok), "{ok}");
        }
        for bad in ["ex", "ep", "encodedcommandx", "c", ""] {
            assert!(!is_encoded_switch(bad), "{bad}");
        }
    }

    #[test]
    fn versions() {
        assert_eq!(
            admin_display_version("15.2.1544.4"),
            "Version 15.2 (Build 1544.4)"
        );
        assert_eq!(padded_version("15.2.1544.4"), "15.02.1544.004");
        assert_eq!(padded_version("15.1.2507.39"), "15.01.2507.039");
    }

    #[test]
    fn ps51_servers_stay_an_array() {
        let text = "[org]\nname = \"O\"\nservers_error = \"AD down\"\n[[server]]\nname = \"EX01\"\naddress = \"127.0.0.11\"\n";
        let mut fleet: Fleet = toml::from_str(text).expect("fleet");
        let j: Value = serde_json::from_str(&org_json(&fleet, true)).expect("json");
        assert_eq!(j["servers"], json!([]));
        fleet.org.servers_error = None;
        let j: Value = serde_json::from_str(&org_json(&fleet, true)).expect("json");
        assert_eq!(j["servers"].as_array().map(Vec::len), Some(1));
        assert_eq!(j["servers"][0]["mitigations_applied"], Value::Null);
    }

    #[test]
    fn clixml_escapes() {
        assert_eq!(
            clixml_escape("a<b>&\r\n_x_y"),
            "a&lt;b&gt;&amp;_x000D__x000A__x005F_x_y"
        );
    }

    #[test]
    fn wrapping_matches_console() {
        let msg = "AdvertisingID : The term 'AdvertisingID' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again.";
        let lines = wrap(msg);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("or operable"));
        assert_eq!(lines.join(" "), msg);
    }
}
