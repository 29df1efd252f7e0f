//! The server inventory: which Exchange servers to scan, and how to reach them.
//!
//! Three formats, chosen by file extension:
//! - `.csv`: a header row; columns matched case-insensitively and trimmed: `name` (required),
//!   `address`, `port`, `role`, `site`, `fqdn` (optional); other columns ignored. Excel's `;` delimiter
//!   (used in locales with a decimal comma) is detected from the header row.
//! - `.txt`: one server name per line (a DNS name there is also the server's FQDN).
//! - `.json`: an array of objects with the same fields (names case-insensitive); `port` may be
//!   a number or a numeric string.
//!
//! In CSV and TXT, blank lines and lines starting with `#` are ignored. A UTF-8 byte order mark
//! (Excel, Notepad) is skipped.
//!
//! Every error names the file and, where one exists, the line, so an admin can fix a 500-line
//! inventory without guessing. Names and addresses are checked against what the WinRM client
//! can connect to (a DNS name or an IPv4 address) before any connection is attempted.

mod csv;
mod error;
mod json;
mod txt;

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::path::Path;

pub use error::{ErrorKind, InventoryError};

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
    /// The server's DNS name (`ex01.contoso.com`): Kerberos asks for a ticket to
    /// `HTTP/<fqdn>` and sends it as the HTTP `Host`.
    pub fqdn: Option<String>,
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

    /// The host string the WinRM client connects to: the address when given, else the FQDN
    /// (the name Kerberos needs resolves the same way), else the name.
    pub fn connect_host(&self) -> &str {
        self.address
            .as_deref()
            .or(self.fqdn.as_deref().map(|f| f.trim_end_matches('.')))
            .unwrap_or(&self.name)
    }

    /// The FQDN Kerberos needs: the `fqdn` column, else a name that is itself a DNS name
    /// (dotted, not an IPv4 address), as TXT inventories list them.
    pub fn kerberos_fqdn(&self) -> Option<&str> {
        self.fqdn
            .as_deref()
            .or_else(|| as_fqdn(&self.name))
            .map(|f| f.trim_end_matches('.'))
    }
}

/// `s` when it is a DNS name a Kerberos service can have (dotted, not an IPv4 address).
pub fn as_fqdn(s: &str) -> Option<&str> {
    check_fqdn(s).is_ok().then_some(s)
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
        Format::Csv => csv::parse_csv(text, origin)?,
        Format::Txt => txt::parse_txt(text),
        Format::Json => json::parse_json(text, origin)?,
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
    fqdn: Option<String>,
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
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
        if let Some(f) = &r.fqdn
            && let Err(reason) = check_fqdn(f)
        {
            return Err(err(
                r.line,
                ErrorKind::BadFqdn {
                    fqdn: crate::text::excerpt(f, 80),
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
            fqdn: r.fqdn,
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

/// A host name that can be a Kerberos service's: [`check_host`], with at least two labels, and
/// not an IPv4 address (a ticket names a DNS host, never an address).
fn check_fqdn(s: &str) -> Result<(), String> {
    check_host(s)?;
    if s.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("is an IPv4 address: give the server's DNS name (put addresses in the 'address' column)".into());
    }
    if !s.trim_end_matches('.').contains('.') {
        return Err("has no domain: give the full DNS name, e.g. ex01.contoso.com".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
