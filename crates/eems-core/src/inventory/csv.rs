//! The CSV format: a header row, columns matched case-insensitively and trimmed; Excel's
//! `;` delimiter (locales with a decimal comma) is detected from the header row.

use std::collections::HashMap;

use super::{ErrorKind, InventoryError, Raw, non_empty};

pub(super) fn parse_csv(text: &str, origin: &str) -> Result<Vec<Raw>, InventoryError> {
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
            fqdn: non_empty(field("fqdn")),
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
