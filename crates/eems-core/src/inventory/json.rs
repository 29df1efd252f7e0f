//! The JSON format: an array of objects with the CSV's fields (names case-insensitive).

use serde_json::{Map, Value};

use super::{ErrorKind, InventoryError, Raw, non_empty};
use crate::text::json_kind;

pub(super) fn parse_json(text: &str, origin: &str) -> Result<Vec<Raw>, InventoryError> {
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
            fqdn: text_field("fqdn")?.filter(|s| !s.is_empty()),
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
pub(super) fn element_lines(text: &str) -> Vec<usize> {
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
