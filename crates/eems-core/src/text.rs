//! Remote and user-supplied text, made safe to quote in an error message.

use serde_json::Value;

/// A short, single-line, terminal-safe excerpt of remote text, for error messages.
///
/// Control characters (CR, LF, TAB, ESC, …) and Unicode bidi controls (which could reorder what
/// an admin reads in a terminal or a CSV viewer) are written as escapes. The text is trimmed
/// first and cut on a character boundary; when cut, the excerpt ends in `…` and is at most
/// `max_chars` characters long including it.
pub fn excerpt(s: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut used = 0usize;
    let mut cut = false;
    let mut chars = s.trim().chars().peekable();
    while let Some(c) = chars.next() {
        let piece = escape_char(c);
        let n = piece.chars().count();
        // Keep one slot for the ellipsis unless this is the last character.
        let budget = if chars.peek().is_some() {
            max_chars.saturating_sub(1)
        } else {
            max_chars
        };
        if used + n > budget {
            cut = true;
            break;
        }
        out.push_str(&piece);
        used += n;
    }
    if cut && max_chars > 0 {
        out.push('…');
    }
    out
}

fn escape_char(c: char) -> String {
    match c {
        '\r' => "\\r".into(),
        '\n' => "\\n".into(),
        '\t' => "\\t".into(),
        c if c.is_control() || is_bidi_control(c) || c == '\u{FEFF}' => {
            format!("\\u{{{:04X}}}", c as u32)
        }
        c => c.to_string(),
    }
}

/// What kind of JSON value this is, in words for an error message.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn excerpt_sanitises_and_cuts() {
        let cases = [
            ("  hello  ", 10, "hello"),
            ("hello world", 5, "hell…"),
            ("a\r\nb\tc", 20, "a\\r\\nb\\tc"),
            ("x\u{1b}[31my", 30, "x\\u{001B}[31my"),
            ("ab\u{202E}cd", 30, "ab\\u{202E}cd"),
            ("ab\u{2066}c", 30, "ab\\u{2066}c"),
            ("ééééé", 3, "éé…"),
            ("a\nbcdef", 3, "a…"),
            ("abc", 3, "abc"),
            ("abcd", 0, ""),
            ("", 5, ""),
        ];
        for (input, max, want) in cases {
            assert_eq!(excerpt(input, max), want, "{input:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn excerpt_respects_bounds(s in ".{0,200}", max in 0usize..50) {
            let e = excerpt(&s, max);
            prop_assert!(e.chars().count() <= max);
            prop_assert!(!e.chars().any(|c| c.is_control()));
        }
    }
}
