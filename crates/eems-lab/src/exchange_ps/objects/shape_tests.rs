//! The lab's objects against the shapes real Exchange servers recorded (CSS-Exchange's
//! HealthChecker test data, Export-Clixml, `eems-scan/tests/fixtures/css-exchange/`): for each
//! property the org query reads, the CLIXML element kind and, for an `<Obj>`, its first type
//! name and what it holds. Without this, a shape the lab and the scanner both got wrong would
//! pass every lab test.

use std::collections::{BTreeMap, BTreeSet};

use psrp_rs::{PsValue, to_clixml};

use super::{exchange_server, organization_config};
use crate::fleet::{OrgSpec, ServerSpec};

const SERVER_PROPS: [&str; 15] = [
    "Name",
    "Fqdn",
    "Site",
    "ServerRole",
    "IsEdgeServer",
    "AdminDisplayVersion",
    "MitigationsEnabled",
    "MitigationsApplied",
    "MitigationsBlocked",
    "MitigationsAppliedTime",
    "DataCollectionEnabled",
    "InternetWebProxy",
    "WhenChangedUTC",
    "RingLevel",
    "LastFlightingServiceRunTime",
];
const ORG_PROPS: [&str; 2] = ["Name", "MitigationsEnabled"];

/// Rich types a plain remote session (the org query asks for no `serializationLevel=Full`)
/// sends as their string form, where Export-Clixml records the full `<Obj>`
/// (psrp-kerberos.md, "How objects come back"). The lab's `<S>` must be that `<ToString>`.
const STRING_FORM: [&str; 3] = ["Site", "AdminDisplayVersion", "ServerRole"];

/// Never set in the recordings (null or absent there): no real shape to compare with yet.
const UNRECORDED: [&str; 3] = [
    "InternetWebProxy",
    "RingLevel",
    "LastFlightingServiceRunTime",
];

#[derive(Debug, Default)]
struct Node {
    tag: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn child(&self, tag: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.tag == tag)
    }
}

fn parse(xml: &str) -> Node {
    use quick_xml::events::{BytesStart, Event};
    let node = |e: &BytesStart<'_>| Node {
        tag: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
        attrs: e
            .attributes()
            .flatten()
            .map(|a| {
                (
                    String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                    String::from_utf8_lossy(&a.value).into_owned(),
                )
            })
            .collect(),
        ..Node::default()
    };
    let mut reader = quick_xml::Reader::from_str(xml.trim_start_matches('\u{FEFF}'));
    let mut stack = vec![Node::default()];
    for _ in 0..10_000_000 {
        match reader.read_event().expect("well-formed CLIXML") {
            Event::Start(e) => stack.push(node(&e)),
            Event::Empty(e) => stack.last_mut().unwrap().children.push(node(&e)),
            Event::Text(t) => stack
                .last_mut()
                .unwrap()
                .text
                .push_str(&String::from_utf8_lossy(t.as_ref())),
            Event::End(_) => {
                let done = stack.pop().unwrap();
                stack.last_mut().expect("balanced tags").children.push(done);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(stack.len(), 1, "unbalanced CLIXML");
    stack.pop().unwrap()
}

/// `RefId` of every `<TN>` to its first type name, `Deserialized.` dropped: PowerShell's
/// deserializer adds that prefix, and the lab writes objects as already deserialized.
fn type_names(n: &Node, out: &mut BTreeMap<String, String>) {
    if n.tag == "TN"
        && let (Some(id), Some(t)) = (n.attr("RefId"), n.child("T"))
    {
        let name = t.text.trim();
        out.insert(
            id.to_string(),
            name.strip_prefix("Deserialized.")
                .unwrap_or(name)
                .to_string(),
        );
    }
    for c in &n.children {
        type_names(c, out);
    }
}

/// `S`, `B`, `DT`, `Nil`...; an `<Obj>` as `Obj[first type name] LST[element kinds]`, `Props`
/// or its bare value's kind (an enum's `<I32>`).
fn shape(n: &Node, tns: &BTreeMap<String, String>) -> String {
    if n.tag != "Obj" {
        return n.tag.clone();
    }
    let tn = n
        .child("TN")
        .or_else(|| n.child("TNRef"))
        .and_then(|t| t.attr("RefId"))
        .and_then(|id| tns.get(id))
        .map_or("", String::as_str);
    let body = if let Some(lst) = n.child("LST") {
        let kinds: BTreeSet<&str> = lst.children.iter().map(|c| c.tag.as_str()).collect();
        format!("LST{kinds:?}")
    } else if n.child("Props").is_some() {
        "Props".to_string()
    } else {
        n.children
            .iter()
            .map(|c| c.tag.as_str())
            .find(|t| !["TN", "TNRef", "ToString", "MS"].contains(t))
            .unwrap_or("")
            .to_string()
    };
    format!("Obj[{tn}] {body}")
}

/// Per property: the shapes seen, and the `<ToString>` or `<S>` texts of the non-null ones.
#[derive(Debug, Default)]
struct Seen {
    shapes: BTreeMap<String, BTreeSet<String>>,
    texts: BTreeMap<String, BTreeSet<String>>,
}

fn record(seen: &mut Seen, xml: &str, props: &[&str]) {
    let root = parse(xml);
    let mut tns = BTreeMap::new();
    type_names(&root, &mut tns);
    let objs: Vec<&Node> = match root.child("Objs") {
        Some(objs) => objs.children.iter().filter(|c| c.tag == "Obj").collect(),
        None => root.children.iter().filter(|c| c.tag == "Obj").collect(),
    };
    assert!(!objs.is_empty(), "no object in {xml:.200}");
    for obj in objs {
        let members = ["Props", "MS"]
            .iter()
            .filter_map(|m| obj.child(m))
            .flat_map(|m| m.children.iter());
        for m in members {
            let Some(name) = m.attr("N").filter(|n| props.contains(n)) else {
                continue;
            };
            seen.shapes
                .entry(name.to_string())
                .or_default()
                .insert(shape(m, &tns));
            let text = m.child("ToString").map_or(&m.text, |t| &t.text);
            if m.tag != "Nil" {
                seen.texts
                    .entry(name.to_string())
                    .or_default()
                    .insert(text.trim().to_string());
            }
        }
    }
}

fn fixture(file: &str) -> String {
    let path = format!(
        "{}/../eems-scan/tests/fixtures/css-exchange/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn non_null(s: Option<&BTreeSet<String>>) -> BTreeSet<String> {
    s.into_iter()
        .flatten()
        .filter(|k| *k != "Nil")
        .cloned()
        .collect()
}

/// `Version 15.2 (Build 1544.4)` with the numbers blanked, `dom/Configuration/Sites/X` with
/// the domain and site blanked: the form, not the values, must agree.
fn form(prop: &str, text: &str) -> String {
    match prop {
        "AdminDisplayVersion" => {
            let mut out = String::new();
            for c in text.chars() {
                if !c.is_ascii_digit() {
                    out.push(c);
                } else if !out.ends_with('9') {
                    out.push('9');
                }
            }
            out
        }
        "Site" => {
            let parts: Vec<&str> = text.split('/').collect();
            match parts.as_slice() {
                [_, "Configuration", "Sites", _] => "dom/Configuration/Sites/X".into(),
                _ => text.to_string(),
            }
        }
        _ => text.to_string(),
    }
}

fn compare(real: &Seen, lab: &Seen, props: &[&str], problems: &mut Vec<String>) {
    for &p in props {
        let want = non_null(real.shapes.get(p));
        let got = non_null(lab.shapes.get(p));
        if want.is_empty() {
            if !UNRECORDED.contains(&p) && p != "MitigationsBlocked" {
                problems.push(format!(
                    "{p}: no recorded shape, and not listed as unrecorded"
                ));
            }
            continue;
        }
        if UNRECORDED.contains(&p) {
            problems.push(format!(
                "{p}: now recorded ({want:?}): compare it, drop it from UNRECORDED"
            ));
        }
        if STRING_FORM.contains(&p) {
            let real_forms: BTreeSet<String> = real.texts[p].iter().map(|t| form(p, t)).collect();
            let lab_forms: BTreeSet<String> = lab
                .texts
                .get(p)
                .into_iter()
                .flatten()
                .map(|t| form(p, t))
                .collect();
            if got != BTreeSet::from(["S".to_string()]) || !lab_forms.is_subset(&real_forms) {
                problems.push(format!(
                    "{p}: lab {got:?} {lab_forms:?}, recorded {want:?} whose ToString is {real_forms:?}"
                ));
            }
        } else if got != want {
            problems.push(format!("{p}: lab {got:?}, recorded {want:?}"));
        }
        // An unset AD attribute is null on a real server: the lab must say so the same way.
        let real_nil = real.shapes[p].contains("Nil");
        if real_nil && !lab.shapes.get(p).is_some_and(|s| s.contains("Nil")) {
            problems.push(format!("{p}: recorded null when unset, the lab never is"));
        }
    }
}

fn server(toml_text: &str) -> ServerSpec {
    toml::from_str(toml_text).expect("server spec")
}

fn org() -> OrgSpec {
    toml::from_str("name = \"Lab\"").expect("org spec")
}

#[test]
fn the_labs_objects_have_the_recorded_shapes_of_real_exchange_objects() {
    let mut real = Seen::default();
    for f in [
        "E19-GetExchangeServer.xml",
        "E16-two-servers-GetExchangeServer.xml",
    ] {
        record(&mut real, &fixture(f), &SERVER_PROPS);
    }
    let mut lab = Seen::default();
    let full = server(
        r#"name = "EX01"
address = "127.0.0.2"
mitigations_applied = ["PING1"]
mitigations_blocked = ["M1.1.0"]
mitigations_applied_time = "2026-11-03T04:05:06.1234567Z"
internet_web_proxy = "http://proxy.lab.local:8080/"
feature_flighting = { ring_level = 1, last_run_hours_ago = 2.0 }"#,
    );
    let bare = server("name = \"EX02\"\naddress = \"127.0.0.3\"");
    for s in [&full, &bare] {
        record(
            &mut lab,
            &to_clixml(&exchange_server(&org(), s)),
            &SERVER_PROPS,
        );
    }
    let mut problems = Vec::new();
    compare(&real, &lab, &SERVER_PROPS, &mut problems);
    // Recorded only null, but the same MultiValuedProperty<string> as MitigationsApplied.
    let blocked = non_null(lab.shapes.get("MitigationsBlocked"));
    let applied = non_null(real.shapes.get("MitigationsApplied"));
    if blocked != applied {
        problems.push(format!(
            "MitigationsBlocked: lab {blocked:?}, recorded Applied {applied:?}"
        ));
    }

    let mut real_org = Seen::default();
    record(
        &mut real_org,
        &fixture("E19-GetOrganizationConfig.xml"),
        &ORG_PROPS,
    );
    let mut lab_org = Seen::default();
    record(
        &mut lab_org,
        &to_clixml(&organization_config(&org())),
        &ORG_PROPS,
    );
    compare(&real_org, &lab_org, &ORG_PROPS, &mut problems);

    assert!(
        problems.is_empty(),
        "shape differences:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_shape_walk_tells_a_plain_list_from_a_multi_valued_property() {
    let plain = PsValue::List(vec![PsValue::String("PING1".into())]);
    let mut seen = Seen::default();
    let obj = psrp_rs::PsObject::new().with("MitigationsApplied", plain);
    record(
        &mut seen,
        &to_clixml(&PsValue::Object(obj)),
        &["MitigationsApplied"],
    );
    let mut real = Seen::default();
    record(
        &mut real,
        &fixture("E16-two-servers-GetExchangeServer.xml"),
        &["MitigationsApplied"],
    );
    let mut problems = Vec::new();
    compare(&real, &seen, &["MitigationsApplied"], &mut problems);
    assert_eq!(problems.len(), 1, "{problems:?}");
}
