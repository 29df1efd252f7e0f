//! The host probe's header, tokenised the way PowerShell reads single-quoted literals.

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
