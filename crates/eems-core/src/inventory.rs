//! The server inventory: which Exchange servers to scan, and how to reach them.
//!
//! Three formats, chosen by file extension:
//! - `.csv`: a header row; columns matched case-insensitively and trimmed: `name` (required),
//!   `address`, `port`, `role`, `site` (optional); other columns ignored. Excel's `;` delimiter
//!   (used in locales with a decimal comma) is detected from the header row.
//! - `.txt`: one server name per line.
//! - `.json`: an array of objects with the same fields (names case-insensitive); `port` may be
//!   a number or a numeric string.
//!
//! In CSV and TXT, blank lines and lines starting with `#` are ignored. A UTF-8 byte order mark
//! (Excel, Notepad) is skipped.
//!
//! Every error names the file and, where one exists, the line, so an admin can fix a 500-line
//! inventory without guessing. Names and addresses are checked against what the WinRM client
//! can connect to (a DNS name or an IPv4 address) before any connection is attempted.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv6Addr;
use std::path::Path;

use serde_json::{Map, Value};

use crate::text::json_kind;

/// One server to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryEntry {
    /// The Exchange server name (matched against `Get-ExchangeServer`).
    pub name: String,
    /// Where to connect instead of `name` (DNS name or IPv4 address).
    pub address: Option<String>,
    /// WinRM port override.
    pub port: Option<u16>,
    pub role: Option<String>,
    pub site: Option<String>,
    /// 1-based line in the inventory file where the entry starts.
    pub line: usize,
}

impl InventoryEntry {
    /// Edge Transport servers have no EEMS; the coordinator can skip them without connecting.
    pub fn is_edge(&self) -> bool {
        self.role
            .as_deref()
            .is_some_and(|r| r.to_ascii_lowercase().contains("edge"))
    }

    /// The host string the WinRM client connects to.
    pub fn connect_host(&self) -> &str {
        self.address.as_deref().unwrap_or(&self.name)
    }
}

/// The inventory file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Txt,
    Json,
}

impl Format {
    /// The format for a file name, by its extension (case-insensitive).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "txt" => Some(Format::Txt),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// What is wrong with an inventory, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryError {
    /// The file (or origin label) the inventory came from.
    pub origin: String,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    pub kind: ErrorKind,
}

/// The kinds of inventory problems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read.
    Unreadable(String),
    /// The extension is not one of `.csv`, `.txt`, `.json`.
    UnsupportedExtension(String),
    /// The bytes are not UTF-8 (`utf16` when a UTF-16 byte order mark was seen).
    InvalidUtf8 {
        utf16: bool,
    },
    /// No server entries at all.
    Empty,
    /// The CSV header has no `name` column; the columns found are listed.
    NoNameColumn(Vec<String>),
    /// A CSV row could not be read.
    Csv(String),
    /// The JSON text is malformed or not an array of objects.
    Json(String),
    /// A JSON field holds the wrong type.
    WrongType {
        entry: usize,
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    EmptyName,
    Duplicate {
        name: String,
        first_line: usize,
    },
    BadPort(String),
    InvalidName {
        name: String,
        reason: String,
    },
    BadAddress {
        address: String,
        reason: String,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Unreadable(e) => write!(f, "cannot read the inventory: {e}"),
            ErrorKind::UnsupportedExtension(ext) => write!(
                f,
                "unsupported inventory file type {ext:?}: use .csv, .txt or .json"
            ),
            ErrorKind::InvalidUtf8 { utf16: true } => write!(
                f,
                "the file is UTF-16 (\"Unicode\" in Notepad/Excel): save it as UTF-8"
            ),
            ErrorKind::InvalidUtf8 { utf16: false } => {
                write!(f, "the file is not valid UTF-8: save it as UTF-8")
            }
            ErrorKind::Empty => write!(f, "the inventory lists no servers"),
            ErrorKind::NoNameColumn(cols) => {
                let cols: Vec<String> = cols.iter().map(|c| format!("{c:?}")).collect();
                write!(
                    f,
                    "the header has no 'name' column (columns found: {})",
                    if cols.is_empty() {
                        "none".to_string()
                    } else {
                        cols.join(", ")
                    }
                )
            }
            ErrorKind::Csv(e) => write!(f, "unreadable CSV: {e}"),
            ErrorKind::Json(e) => write!(f, "{e}"),
            ErrorKind::WrongType {
                entry,
                field,
                expected,
                found,
            } => write!(
                f,
                "entry {entry}: field '{field}' must be {expected}, found {found}"
            ),
            ErrorKind::EmptyName => write!(f, "empty server name"),
            ErrorKind::Duplicate { name, first_line } => write!(
                f,
                "duplicate server '{name}' (first listed on line {first_line})"
            ),
            ErrorKind::BadPort(p) => {
                write!(f, "bad port '{p}': must be a number from 1 to 65535")
            }
            ErrorKind::InvalidName { name, reason } => {
                write!(f, "invalid server name '{name}': {reason}")
            }
            ErrorKind::BadAddress { address, reason } => {
                write!(f, "invalid address '{address}': {reason}")
            }
        }
    }
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.origin, line, self.kind),
            None => write!(f, "{}: {}", self.origin, self.kind),
        }
    }
}

impl std::error::Error for InventoryError {}

/// Reads an inventory file, choosing the format by extension.
pub fn load(path: &Path) -> Result<Vec<InventoryEntry>, InventoryError> {
    let origin = path.display().to_string();
    let err = |kind| InventoryError {
        origin: origin.clone(),
        line: None,
        kind,
    };
    let format = Format::from_path(path).ok_or_else(|| {
        let ext = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_else(|| "(none)".into());
        err(ErrorKind::UnsupportedExtension(ext))
    })?;
    let bytes = std::fs::read(path).map_err(|e| err(ErrorKind::Unreadable(e.to_string())))?;
    parse_bytes(&bytes, format, &origin)
}

/// Parses inventory bytes: checks the encoding, then [`parse`].
pub fn parse_bytes(
    bytes: &[u8],
    format: Format,
    origin: &str,
) -> Result<Vec<InventoryEntry>, InventoryError> {
    let utf16 = bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]);
    match std::str::from_utf8(bytes) {
        Ok(text) if !utf16 => parse(text, format, origin),
        Ok(_) => Err(InventoryError {
            origin: origin.into(),
            line: None,
            kind: ErrorKind::InvalidUtf8 { utf16: true },
        }),
        Err(e) => {
            let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            Err(InventoryError {
                origin: origin.into(),
                line: if utf16 { None } else { Some(line) },
                kind: ErrorKind::InvalidUtf8 { utf16 },
            })
        }
    }
}

/// Parses inventory text in the given format; `origin` names the source in errors.
pub fn parse(
    text: &str,
    format: Format,
    origin: &str,
) -> Result<Vec<InventoryEntry>, InventoryError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let raw = match format {
        Format::Csv => parse_csv(text, origin)?,
        Format::Txt => parse_txt(text),
        Format::Json => parse_json(text, origin)?,
    };
    validate(raw, origin)
}

/// An entry before validation.
struct Raw {
    line: usize,
    name: String,
    address: Option<String>,
    port: Option<String>,
    role: Option<String>,
    site: Option<String>,
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn parse_txt(text: &str) -> Vec<Raw> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let t = l.trim();
            (!t.is_empty() && !t.starts_with('#')).then(|| Raw {
                line: i + 1,
                name: t.to_string(),
                address: None,
                port: None,
                role: None,
                site: None,
            })
        })
        .collect()
}

fn parse_csv(text: &str, origin: &str) -> Result<Vec<Raw>, InventoryError> {
    let err = |line: Option<usize>, kind| InventoryError {
        origin: origin.into(),
        line,
        kind,
    };
    // Excel writes `;` where the decimal separator is a comma: sniff the header line.
    let header_line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    let delimiter = if header_line.contains(';') && !header_line.contains(',') {
        b';'
    } else {
        b','
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .delimiter(delimiter)
        .from_reader(text.as_bytes());

    let mut columns: Option<HashMap<String, usize>> = None;
    let mut out = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let more = rdr.read_record(&mut record).map_err(|e| {
            let line = e.position().map(|p| line_at(text, p.byte()));
            err(line, ErrorKind::Csv(csv_reason(&e)))
        })?;
        if !more {
            break;
        }
        let line = record
            .position()
            .map_or(0, |p| line_at(text, record_start(text, p.byte())));
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let Some(cols) = &columns else {
            let mut map = HashMap::new();
            for (i, h) in record.iter().enumerate() {
                map.entry(h.trim().to_ascii_lowercase()).or_insert(i);
            }
            if !map.contains_key("name") {
                let found = record.iter().map(|h| h.trim().to_string()).collect();
                return Err(err(Some(line), ErrorKind::NoNameColumn(found)));
            }
            columns = Some(map);
            continue;
        };
        let field = |c: &str| cols.get(c).and_then(|&i| record.get(i));
        out.push(Raw {
            line,
            name: field("name").unwrap_or("").trim().to_string(),
            address: non_empty(field("address")),
            port: non_empty(field("port")),
            role: non_empty(field("role")),
            site: non_empty(field("site")),
        });
    }
    if columns.is_none() {
        return Err(err(None, ErrorKind::Empty));
    }
    Ok(out)
}

/// Where a CSV record really starts. The csv crate reports the position where it began
/// reading, before the comment and empty lines it skips (and its line counter ignores them too),
/// so skip those the same way it does.
fn record_start(text: &str, offset: u64) -> u64 {
    let mut at = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    loop {
        let rest = &text.as_bytes()[at..];
        let skip = match rest.first() {
            Some(b'#') => rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1),
            Some(b'\n') => 1,
            Some(b'\r') if rest.get(1) == Some(&b'\n') => 2,
            Some(b'\r') => 1,
            _ => 0,
        };
        if skip == 0 {
            return at as u64;
        }
        at += skip;
    }
}

/// The 1-based line holding byte `offset` of `text`.
fn line_at(text: &str, offset: u64) -> usize {
    let end = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        _ => e.to_string(),
    }
}

fn parse_json(text: &str, origin: &str) -> Result<Vec<Raw>, InventoryError> {
    let err = |line: Option<usize>, kind| InventoryError {
        origin: origin.into(),
        line,
        kind,
    };
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let line = (e.line() > 0).then_some(e.line());
        err(line, ErrorKind::Json(format!("invalid JSON: {e}")))
    })?;
    let Value::Array(items) = value else {
        return Err(err(
            Some(1),
            ErrorKind::Json(format!(
                "expected a JSON array of server objects, found {}",
                json_kind(&value)
            )),
        ));
    };
    let starts = element_lines(text);
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let entry = i + 1;
        let line = starts.get(i).copied().unwrap_or(1);
        let Value::Object(obj) = item else {
            return Err(err(
                Some(line),
                ErrorKind::Json(format!(
                    "entry {entry} must be an object, found {}",
                    json_kind(item)
                )),
            ));
        };
        let wrong = |field: &str, expected, v: &Value| {
            err(
                Some(line),
                ErrorKind::WrongType {
                    entry,
                    field: field.into(),
                    expected,
                    found: json_kind(v),
                },
            )
        };
        let text_field = |field: &str| -> Result<Option<String>, InventoryError> {
            match get_ci(obj, field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
                Some(v) => Err(wrong(field, "a string", v)),
            }
        };
        let port = match get_ci(obj, "port") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => non_empty(Some(s)),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(v) => return Err(wrong("port", "a number or a numeric string", v)),
        };
        out.push(Raw {
            line,
            name: text_field("name")?.unwrap_or_default(),
            address: text_field("address")?.filter(|s| !s.is_empty()),
            port,
            role: text_field("role")?.filter(|s| !s.is_empty()),
            site: text_field("site")?.filter(|s| !s.is_empty()),
        });
    }
    Ok(out)
}

fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The 1-based line on which each element of the top-level JSON array starts.
///
/// serde_json's `Value` keeps no positions, so this scans the (already validated) text: it
/// tracks strings and nesting depth and records where each depth-1 value begins.
fn element_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut line = 1usize;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut expect_value = false;
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if expect_value && !c.is_whitespace() {
            expect_value = false;
            if c != ']' {
                lines.push(line);
            }
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    expect_value = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expect_value = true,
            _ => {}
        }
    }
    lines
}

/// Checks names, addresses, ports and duplicates; turns raw entries into entries.
fn validate(raw: Vec<Raw>, origin: &str) -> Result<Vec<InventoryEntry>, InventoryError> {
    let err = |line: usize, kind| InventoryError {
        origin: origin.into(),
        line: Some(line),
        kind,
    };
    if raw.is_empty() {
        return Err(InventoryError {
            origin: origin.into(),
            line: None,
            kind: ErrorKind::Empty,
        });
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        if r.name.is_empty() {
            return Err(err(r.line, ErrorKind::EmptyName));
        }
        if let Err(reason) = check_host(&r.name) {
            return Err(err(
                r.line,
                ErrorKind::InvalidName {
                    name: crate::text::excerpt(&r.name, 80),
                    reason,
                },
            ));
        }
        if let Some(a) = &r.address
            && let Err(reason) = check_host(a)
        {
            return Err(err(
                r.line,
                ErrorKind::BadAddress {
                    address: crate::text::excerpt(a, 80),
                    reason,
                },
            ));
        }
        let port = match &r.port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    return Err(err(r.line, ErrorKind::BadPort(crate::text::excerpt(p, 40))));
                }
            },
        };
        let key = r.name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(&first_line) = seen.get(&key) {
            return Err(err(
                r.line,
                ErrorKind::Duplicate {
                    name: r.name,
                    first_line,
                },
            ));
        }
        seen.insert(key, r.line);
        out.push(InventoryEntry {
            name: r.name,
            address: r.address,
            port,
            role: r.role,
            site: r.site,
            line: r.line,
        });
    }
    Ok(out)
}

/// Whether `s` is something the WinRM client can connect to: a DNS/NetBIOS host name (letters,
/// digits, `-`, `.`, `_`; labels of 1–63 characters; at most 255 characters; one trailing dot
/// allowed) or a dotted IPv4 address (which that rule already admits). IPv6 literals are
/// rejected with their own reason: the WinRM client builds `http://host:port/wsman` URLs
/// without bracketing.
fn check_host(s: &str) -> Result<(), String> {
    if s.chars().count() > 255 {
        return Err("longer than 255 characters".into());
    }
    if s.contains("://") {
        return Err("looks like a URL: give just the host name".into());
    }
    let unbracketed = s.trim_start_matches('[').trim_end_matches(']');
    if s.contains(':') && unbracketed.parse::<Ipv6Addr>().is_ok() {
        return Err(
            "IPv6 addresses are not supported by the WinRM client: use a DNS name or an IPv4 \
             address"
                .into(),
        );
    }
    if let Some((host, port)) = s.rsplit_once(':')
        && !host.is_empty()
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("contains a port: put the port in the 'port' column".into());
    }
    if let Some((i, c)) = s
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'))
    {
        let what = if c.is_whitespace() || c.is_control() {
            "whitespace or a control character".to_string()
        } else {
            format!("'{c}'")
        };
        return Err(format!(
            "{what} at position {} (a host name may contain letters, digits, '-', '.', '_')",
            s.get(..i).map_or(i, |p| p.chars().count()) + 1
        ));
    }
    if s.starts_with('-') {
        return Err("starts with '-'".into());
    }
    let body = s.strip_suffix('.').unwrap_or(s);
    if body.is_empty() || body.split('.').any(str::is_empty) {
        return Err("empty label (a leading dot or two dots in a row)".into());
    }
    if body.split('.').any(|l| l.len() > 63) {
        return Err("a label is longer than 63 characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn csv(text: &str) -> Result<Vec<InventoryEntry>, InventoryError> {
        parse(text, Format::Csv, "servers.csv")
    }

    fn err_text(r: Result<Vec<InventoryEntry>, InventoryError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn csv_full() {
        let text = "\u{FEFF}# fleet\r\n Name ,ADDRESS,Port,role,Site,notes\r\n\r\nEX01,10.0.0.11,5985,Mailbox,HQ,x\r\n# comment\r\n\"EX02\",,,\"Edge\",,\r\nEX03\r\n";
        let v = csv(text).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[0],
            InventoryEntry {
                name: "EX01".into(),
                address: Some("10.0.0.11".into()),
                port: Some(5985),
                role: Some("Mailbox".into()),
                site: Some("HQ".into()),
                line: 4,
            }
        );
        assert_eq!(v[0].connect_host(), "10.0.0.11");
        assert!(v[1].is_edge());
        assert_eq!(v[1].connect_host(), "EX02");
        assert_eq!((v[1].line, v[2].line), (6, 7));
        assert_eq!(v[2].port, None);
    }

    #[test]
    fn csv_semicolon_from_excel() {
        let v = csv("Name;Address;Site\nEX01;ex01.contoso.com;Berlin\n").unwrap();
        assert_eq!(v[0].address.as_deref(), Some("ex01.contoso.com"));
        assert_eq!(v[0].site.as_deref(), Some("Berlin"));
    }

    #[test]
    fn csv_errors() {
        let rows: &[(&str, &str)] = &[
            ("", "servers.csv: the inventory lists no servers"),
            (
                "# only a comment\n",
                "servers.csv: the inventory lists no servers",
            ),
            ("name\n", "servers.csv: the inventory lists no servers"),
            (
                "host,ip\nEX01,1.2.3.4\n",
                "servers.csv:1: the header has no 'name' column (columns found: \"host\", \"ip\")",
            ),
            (
                "name,port\nEX01,\nEX02,0\n",
                "servers.csv:3: bad port '0': must be a number from 1 to 65535",
            ),
            (
                "name,port\nEX01,65536\n",
                "servers.csv:2: bad port '65536': must be a number from 1 to 65535",
            ),
            (
                "name,port\nEX01,http\n",
                "servers.csv:2: bad port 'http': must be a number from 1 to 65535",
            ),
            ("name,site\n,HQ\n", "servers.csv:2: empty server name"),
            (
                "name\nEX01\nex01.\n",
                "servers.csv:3: duplicate server 'ex01.' (first listed on line 2)",
            ),
            (
                "name,address\nEX01,fe80::1\n",
                "servers.csv:2: invalid address 'fe80::1': IPv6 addresses are not supported by the WinRM client: use a DNS name or an IPv4 address",
            ),
            (
                "name,address\nEX01,ex01:5986\n",
                "servers.csv:2: invalid address 'ex01:5986': contains a port: put the port in the 'port' column",
            ),
            (
                "name\n\"EX 01\"\n",
                "servers.csv:2: invalid server name 'EX 01': whitespace or a control character at position 3 (a host name may contain letters, digits, '-', '.', '_')",
            ),
        ];
        for (text, want) in rows {
            assert_eq!(err_text(csv(text)), *want, "{text:?}");
        }
    }

    #[test]
    fn name_rules() {
        let long_label = "a".repeat(64);
        let long_name = format!("{}.com", ["abcdefgh"; 29].join("."));
        let ok = [
            "EX01",
            "ex01.contoso.com",
            "ex01.contoso.com.",
            "EX_01",
            "10.0.0.1",
            "a-b",
        ];
        for n in ok {
            assert_eq!(check_host(n), Ok(()), "{n}");
        }
        let bad: &[(&str, &str)] = &[
            ("ex/01", "'/' at position 3"),
            ("CONTOSO\\EX01", "'\\' at position 8"),
            ("ex01\t", "whitespace or a control character at position 5"),
            ("-ex01", "starts with '-'"),
            (".ex01", "empty label"),
            ("ex..01", "empty label"),
            (".", "empty label"),
            ("http://ex01", "looks like a URL"),
            ("[::1]", "IPv6"),
            ("exé01", "'é' at position 3"),
            (&long_label, "longer than 63"),
            (&long_name, "longer than 255"),
        ];
        for (n, want) in bad {
            let e = check_host(n).unwrap_err();
            assert!(e.contains(want), "{n}: {e}");
        }
    }

    #[test]
    fn txt_format() {
        let v = parse(
            "  EX01  \r\n\r\n# c\nex02.contoso.com\n",
            Format::Txt,
            "s.txt",
        )
        .unwrap();
        let names: Vec<(&str, usize)> = v.iter().map(|e| (e.name.as_str(), e.line)).collect();
        assert_eq!(names, vec![("EX01", 1), ("ex02.contoso.com", 4)]);
        assert_eq!(
            err_text(parse("EX01\nEX01\n", Format::Txt, "s.txt")),
            "s.txt:2: duplicate server 'EX01' (first listed on line 1)"
        );
        assert_eq!(
            err_text(parse("\n# none\n", Format::Txt, "s.txt")),
            "s.txt: the inventory lists no servers"
        );
    }

    #[test]
    fn json_format() {
        let text = r#"[
  {"Name": "EX01", "address": "10.0.0.11", "PORT": 5986, "role": "Mailbox", "extra": [1]},
  {"name": "EX02", "port": "5985", "site": null},
  {"name": "EX03", "role": "EdgeTransport"}
]"#;
        let v = parse(text, Format::Json, "s.json").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(
            (v[0].port, v[1].port, v[2].port),
            (Some(5986), Some(5985), None)
        );
        assert_eq!((v[0].line, v[1].line, v[2].line), (2, 3, 4));
        assert!(v[2].is_edge() && !v[0].is_edge());
    }

    #[test]
    fn json_errors() {
        let rows: &[(&str, &str)] = &[
            ("[]", "s.json: the inventory lists no servers"),
            (
                r#"{"name":"EX01"}"#,
                "s.json:1: expected a JSON array of server objects, found an object",
            ),
            (
                "[\n\"EX01\"]",
                "s.json:2: entry 1 must be an object, found a string",
            ),
            (
                "[{\"name\":\"EX01\"},\n {\"name\":\"EX02\",\"port\":true}]",
                "s.json:2: entry 2: field 'port' must be a number or a numeric string, found a boolean",
            ),
            (
                "[{\"name\":1}]",
                "s.json:1: entry 1: field 'name' must be a string, found a number",
            ),
            (
                "[{\"name\":\"EX01\",\"port\":-1}]",
                "s.json:1: bad port '-1': must be a number from 1 to 65535",
            ),
            (
                "[{\"name\":\"EX01\",\"port\":5985.5}]",
                "s.json:1: bad port '5985.5': must be a number from 1 to 65535",
            ),
            ("[{\"site\":\"HQ\"}]", "s.json:1: empty server name"),
        ];
        for (text, want) in rows {
            assert_eq!(
                err_text(parse(text, Format::Json, "s.json")),
                *want,
                "{text}"
            );
        }
        let e = err_text(parse("[{\"name\":}", Format::Json, "s.json"));
        assert!(e.starts_with("s.json:1: invalid JSON:"), "{e}");
    }

    #[test]
    fn element_lines_skip_strings_with_brackets() {
        let text = "[\n{\"name\":\"a,[b]\"},\n\n  {\"name\":\"c\\\"]\"}\n]";
        assert_eq!(element_lines(text), vec![2, 4]);
    }

    #[test]
    fn encodings() {
        let e = parse_bytes(b"name\nEX01\n\xff\n", Format::Csv, "s.csv").unwrap_err();
        assert_eq!(
            e.to_string(),
            "s.csv:3: the file is not valid UTF-8: save it as UTF-8"
        );
        let e = parse_bytes(b"\xff\xfen\x00a\x00", Format::Csv, "s.csv").unwrap_err();
        assert!(e.to_string().contains("UTF-16"), "{e}");
    }

    #[test]
    fn load_dispatch_and_file_errors() {
        let dir = std::env::temp_dir().join(format!("eems-inv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv_path = dir.join("Servers.CSV");
        std::fs::write(&csv_path, "name\nEX01\n").unwrap();
        assert_eq!(load(&csv_path).unwrap()[0].name, "EX01");
        let json_path = dir.join("s.json");
        std::fs::write(&json_path, r#"[{"name":"EX01"}]"#).unwrap();
        assert_eq!(load(&json_path).unwrap().len(), 1);

        let e = load(&dir.join("missing.txt")).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Unreadable(_)));
        assert!(
            e.to_string()
                .contains("missing.txt: cannot read the inventory"),
            "{e}"
        );
        let e = load(&dir.join("s.xlsx")).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("unsupported inventory file type \".xlsx\": use .csv, .txt or .json"),
            "{e}"
        );
        let e = load(&dir.join("noext")).unwrap_err();
        assert!(e.to_string().contains("\"(none)\""), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            for f in [Format::Csv, Format::Txt, Format::Json] {
                let _ = parse_bytes(&bytes, f, "p");
            }
        }

        #[test]
        fn valid_entries_round_trip(names in proptest::collection::hash_set("[a-z][a-z0-9-]{0,10}", 1..20)) {
            let text: String = names.iter().map(|n| format!("{n}\n")).collect();
            let v = parse(&text, Format::Txt, "p").unwrap();
            prop_assert_eq!(v.len(), names.len());
        }
    }
}
