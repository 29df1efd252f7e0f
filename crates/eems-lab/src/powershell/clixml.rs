//! CLIXML error and progress records, as powershell.exe writes them to stderr.

use super::*;

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
pub(super) fn wrap(text: &str) -> Vec<String> {
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
pub(super) fn error_lines(
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
pub(super) fn clixml_progress(
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

pub(super) fn clixml_doc(records: &str) -> Vec<u8> {
    format!("{CLIXML_MARKER}{OBJS_OPEN}{records}{OBJS_CLOSE}").into_bytes()
}

/// stderr for an error record: CLIXML under -EncodedCommand, plain console text otherwise.
pub(super) fn error_stream(lines: &[String], encoded: bool, progress: &str) -> Vec<u8> {
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
