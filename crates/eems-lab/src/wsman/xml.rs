//! Reading SOAP requests and writing SOAP envelopes.

use super::*;

/// A namespace-aware element tree, small enough for SOAP envelopes. Names are local names;
/// the namespace URI is kept so lookups do not depend on the client's prefixes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Node {
    pub ns: String,
    pub name: String,
    /// (local name, value), namespace declarations excluded.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    pub text: String,
}

impl Node {
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
    pub fn children_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Node> + 's {
        self.children.iter().filter(move |c| c.name == name)
    }
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text_trimmed(&self) -> &str {
        self.text.trim()
    }
}

const MAX_DEPTH: usize = 64;

pub(crate) fn parse_xml(body: &[u8]) -> Result<Node, String> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    use quick_xml::reader::NsReader;

    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;

    let make =
        |reader: &NsReader<&[u8]>, e: &quick_xml::events::BytesStart<'_>| -> Result<Node, String> {
            let (res, local) = reader.resolve_element(e.name());
            let ns = match res {
                ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
                ResolveResult::Unbound => String::new(),
                ResolveResult::Unknown(p) => {
                    return Err(format!("undeclared prefix {}", String::from_utf8_lossy(&p)));
                }
            };
            let mut node = Node {
                ns,
                name: String::from_utf8_lossy(local.as_ref()).into_owned(),
                ..Node::default()
            };
            for a in e.attributes() {
                let a = a.map_err(|e| format!("bad attribute: {e}"))?;
                if a.key.as_namespace_binding().is_some() {
                    continue;
                }
                let v = a
                    .unescape_value()
                    .map_err(|e| format!("bad attribute value: {e}"))?;
                node.attrs.push((
                    String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                    v.into_owned(),
                ));
            }
            Ok(node)
        };

    loop {
        let (_, ev) = reader
            .read_resolved_event()
            .map_err(|e| format!("XML error: {e}"))?;
        match ev {
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err("XML nested too deeply".into());
                }
                let node = make(&reader, &e)?;
                stack.push(node);
            }
            Event::Empty(e) => {
                let node = make(&reader, &e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err("more than one root element".into()),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("unbalanced end tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err("more than one root element".into()),
                }
            }
            Event::Text(t) => {
                if let Some(cur) = stack.last_mut() {
                    cur.text
                        .push_str(&t.decode().map_err(|e| format!("bad text: {e}"))?);
                }
            }
            Event::CData(t) => {
                if let Some(cur) = stack.last_mut() {
                    cur.text
                        .push_str(&t.decode().map_err(|e| format!("bad CDATA: {e}"))?);
                }
            }
            Event::GeneralRef(r) => {
                let ch = match r
                    .resolve_char_ref()
                    .map_err(|e| format!("bad character reference: {e}"))?
                {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| format!("bad entity: {e}"))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_string()
                    }
                };
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&ch);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("unexpected end of document".into());
    }
    root.ok_or_else(|| "no root element".into())
}

/// Parses an ISO-8601 / xs:duration (`PT20S`, `PT60.000S`, `P0DT0H1M0S`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut secs = 0f64;
    let mut any = false;
    let mut take = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        let mut unit_idx = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            // Units must come in order, each at most once.
            let pos = units[unit_idx..].iter().position(|(u, _)| *u == c)? + unit_idx;
            if num.is_empty() || num.matches('.').count() > 1 {
                return None;
            }
            let v: f64 = num.parse().ok()?;
            secs += v * units[pos].1;
            any = true;
            num.clear();
            unit_idx = pos + 1;
        }
        num.is_empty().then_some(())
    };
    take(
        date,
        &[
            ('Y', 365.0 * 86400.0),
            ('M', 30.0 * 86400.0),
            ('W', 7.0 * 86400.0),
            ('D', 86400.0),
        ],
    )?;
    if let Some(t) = time {
        if t.is_empty() {
            return None;
        }
        take(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    if !any || !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(secs.min(1e9)))
}

pub(super) struct Request {
    pub(super) action: String,
    pub(super) message_id: Option<String>,
    pub(super) operation_timeout: Duration,
    pub(super) max_envelope: usize,
    pub(super) shell_id: Option<String>,
    pub(super) body: Option<Node>,
    /// The OptionSet, wherever the client put it (winrm-rs puts Create's between the header
    /// and the body).
    pub(super) options: Vec<(String, String)>,
    /// Only the options inside the header: the ones Windows is known to honour.
    pub(super) header_options: Vec<(String, String)>,
}

impl Request {
    /// On failure, the fault and the request's MessageID when it could be read.
    pub(super) fn parse(xml: &[u8]) -> Result<Request, (Fault, Option<String>)> {
        let env = parse_xml(xml).map_err(|e| (Fault::schema(&e), None))?;
        if env.name != "Envelope" || env.ns != NS_S {
            return Err((
                Fault::schema("the root element is not a SOAP Envelope"),
                None,
            ));
        }
        let header = env
            .child("Header")
            .ok_or_else(|| (Fault::schema("no SOAP Header"), None))?;
        let action = header
            .child("Action")
            .map(|a| a.text_trimmed().to_string())
            .unwrap_or_default();
        let message_id = header
            .child("MessageID")
            .map(|m| m.text_trimmed().to_string());
        let operation_timeout = match header.child("OperationTimeout") {
            None => DEFAULT_OPERATION_TIMEOUT,
            Some(t) => parse_duration(t.text_trimmed()).ok_or_else(|| {
                let why = format!(
                    "OperationTimeout {:?} is not a valid duration",
                    t.text_trimmed()
                );
                (Fault::invalid_parameter(why), message_id.clone())
            })?,
        };
        let max_envelope = header
            .child("MaxEnvelopeSize")
            .and_then(|m| m.text_trimmed().parse::<usize>().ok())
            .unwrap_or(DEFAULT_ENVELOPE)
            .clamp(8192, MAX_ENVELOPE_CAP);
        let shell_id = header
            .child("SelectorSet")
            .into_iter()
            .flat_map(|s| s.children_named("Selector"))
            .find(|s| {
                s.attr("Name")
                    .is_some_and(|n| n.eq_ignore_ascii_case("ShellId"))
            })
            .map(|s| s.text_trimmed().to_string());
        let read = |sets: &mut dyn Iterator<Item = &Node>| -> Vec<(String, String)> {
            sets.flat_map(|o| o.children_named("Option"))
                .map(|o| {
                    (
                        o.attr("Name").unwrap_or_default().to_string(),
                        o.text_trimmed().to_string(),
                    )
                })
                .collect()
        };
        let header_options = read(&mut header.children_named("OptionSet"));
        let options = read(
            &mut header
                .children_named("OptionSet")
                .chain(env.children_named("OptionSet")),
        );
        let body = env.child("Body").cloned();
        Ok(Request {
            action,
            message_id,
            operation_timeout,
            max_envelope,
            shell_id,
            body,
            options,
            header_options,
        })
    }

    pub(super) fn header_option(&self, name: &str) -> Option<&str> {
        self.header_options
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn body_child(&self, name: &str) -> Option<&Node> {
        self.body.as_ref().and_then(|b| b.child(name))
    }
}

// ---------------------------------------------------------------------------------------------
// Response building
// ---------------------------------------------------------------------------------------------

/// For text and double-quoted attribute values. Not `quick_xml::escape::escape`, which also
/// writes `'` as `&apos;`: the lab's answers keep it literal, as they always have.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

pub(super) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string().to_ascii_uppercase()
}

/// `s:Envelope` with the namespace set Windows declares for this kind of response.
pub(super) fn envelope(
    namespaces: &[(&str, &str)],
    action: &str,
    relates_to: Option<&str>,
    body: &str,
) -> Vec<u8> {
    let mut out = String::with_capacity(body.len() + 1024);
    out.push_str("<s:Envelope xml:lang=\"en-US\"");
    for (p, ns) in namespaces {
        let _ = write!(out, " xmlns:{p}=\"{ns}\"");
    }
    out.push_str("><s:Header>");
    let _ = write!(
        out,
        "<a:Action>{action}</a:Action><a:MessageID>uuid:{}</a:MessageID>",
        new_id()
    );
    let _ = write!(out, "<a:To>{ANONYMOUS}</a:To>");
    if let Some(r) = relates_to {
        let _ = write!(out, "<a:RelatesTo>{}</a:RelatesTo>", xml_escape(r));
    }
    out.push_str("</s:Header>");
    out.push_str(body);
    out.push_str("</s:Envelope>");
    out.into_bytes()
}

pub(super) const NS_SAXWRSPP: &[(&str, &str)] = &[
    ("s", NS_S),
    ("a", NS_A),
    ("x", NS_X),
    ("w", NS_W),
    ("rsp", NS_RSP),
    ("p", NS_P),
];
pub(super) const NS_SAWRSPP: &[(&str, &str)] = &[
    ("s", NS_S),
    ("a", NS_A),
    ("w", NS_W),
    ("rsp", NS_RSP),
    ("p", NS_P),
];
pub(super) const NS_SAWP: &[(&str, &str)] = &[("s", NS_S), ("a", NS_A), ("w", NS_W), ("p", NS_P)];
pub(super) const NS_FAULT: &[(&str, &str)] = &[
    ("s", NS_S),
    ("a", NS_A),
    ("x", NS_X),
    ("e", NS_E),
    ("n", NS_N),
    ("w", NS_W),
    ("p", NS_P),
];

pub(super) fn ok_reply(action: &str, body: Vec<u8>, shell_id: Option<String>) -> WsmanReply {
    WsmanReply {
        status: 200,
        body,
        action: action.into(),
        probe: None,
        shell_id,
        note: None,
    }
}

pub(super) fn iso_seconds(d: Duration) -> String {
    format!("PT{}.{:03}S", d.as_secs(), d.subsec_millis())
}
