//! The parsers never panic, on arbitrary text and on arbitrary JSON shaped like the probe
//! protocol (the right keys, any value types, PS 5.1-style wrappers).
//!
//! Case counts are chosen so that the whole file runs in well under 20 s in a debug build.

use eems_core::analysis::{assess, assess_evidence};
use eems_core::inventory::{Format, parse_bytes};
use eems_core::probe::parse::{RESULT_PREFIX, parse_host, parse_org};
use eems_core::text::excerpt;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Characters that matter to the inventory formats.
const INVENTORY_CHARS: &[char] = &[
    'a', 'Z', '0', '9', ' ', ',', ';', '#', '"', '[', ']', '{', '}', ':', '.', '-', '_', '\r',
    '\n', '\t', '/', '\\', 'é', '\u{feff}',
];

const KEYS: &[&str] = &[
    "probe",
    "schema",
    "organization",
    "organization_error",
    "servers",
    "servers_error",
    "name",
    "fqdn",
    "site",
    "server_role",
    "is_edge_server",
    "admin_display_version",
    "mitigations_enabled",
    "mitigations_applied",
    "mitigations_blocked",
    "mitigations_applied_time",
    "data_collection_enabled",
    "internet_web_proxy",
    "computer_name",
    "exsetup_version",
    "install_path",
    "service",
    "status",
    "start_type",
    "ocs",
    "url",
    "proxy",
    "status_code",
    "error",
    "elapsed_ms",
    "value",
    "Count",
];

/// The keys of host probe v2's `evidence` object, at every level.
const EVIDENCE_KEYS: &[&str] = &[
    "window_days",
    "events",
    "error",
    "fetch_errors",
    "applied",
    "count",
    "last_time",
    "last_message",
    "service_changes",
    "service_changes_error",
    "service_started",
    "time",
    "id",
    "message",
    "log",
    "folder_exists",
    "newest_file",
    "newest_write_time",
    "problem_lines",
    "iis_rules",
    "rules",
    "name",
    "section",
    "enabled",
    "file",
    "flighting",
    "status",
    "start_type",
    "value",
    "Count",
];

/// Characters beyond ASCII that matter to parsers and excerpts: multi-byte UTF-8, bidi
/// overrides, BOM, Unicode line breaks, C1 controls, an astral-plane emoji.
const SPECIAL_CHARS: &[char] = &[
    'é', '€', '😀', '\u{202E}', '\u{2066}', '\u{200F}', '\u{FEFF}', '\u{2028}', '\u{0085}',
    '\u{009B}', '\u{FFFD}', 'ß',
];

/// Arbitrary text, built from bytes: ASCII as is (all controls included), the high half mapped
/// onto [`SPECIAL_CHARS`]. Generating `char`s or using proptest's regex strings is about ten
/// times slower in a debug build, which would cap the case count far lower.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(|v| {
        v.into_iter()
            .map(|b| {
                if b < 0x80 {
                    char::from(b)
                } else {
                    SPECIAL_CHARS[usize::from(b) % SPECIAL_CHARS.len()]
                }
            })
            .collect()
    })
}

fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        text(20).prop_map(Value::String),
        proptest::sample::select(vec![
            "",
            "True",
            "False",
            " true ",
            "/Date(1732785120000)/",
            "/Date(-99999999999999999)/",
            "/Date(1732785120000+0100)/",
            "/Date()/",
            "/Date(+)/",
            "2023-01-05T12:08:37Z",
            "2023-01-05T12:08:37",
            "15.02.1544.004",
            "Version 15.2 (Build 986.5)",
            "4",
            "-4",
            "99999999999999999999",
            "Running",
        ])
        .prop_map(|s| Value::String(s.into())),
    ]
    .boxed()
}

/// An object with arbitrary protocol keys and scalar values, or a PS 5.1 wrapper, or a list.
fn shallow() -> BoxedStrategy<Value> {
    shallow_with(KEYS)
}

fn shallow_with(keys: &'static [&'static str]) -> BoxedStrategy<Value> {
    let obj = proptest::collection::vec((proptest::sample::select(keys), scalar()), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
    prop_oneof![
        scalar(),
        obj.clone(),
        proptest::collection::vec(scalar(), 0..4).prop_map(Value::Array),
        proptest::collection::vec(scalar(), 0..4).prop_map(|v| json!({"value": v, "Count": 2})),
        proptest::collection::vec(obj, 0..3).prop_map(Value::Array),
    ]
    .boxed()
}

/// A result line with a valid header and an arbitrary protocol-shaped body (two levels deep:
/// `servers`, `organization`, `service`, `ocs` hold objects whose fields are arbitrary).
fn probe_result() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("org"), Just("host")],
        proptest::collection::vec((proptest::sample::select(KEYS), shallow()), 0..10),
        text(30),
    )
        .prop_map(|(probe, kv, banner)| {
            let mut obj: Map<String, Value> =
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            obj.insert("probe".into(), json!(probe));
            obj.insert("schema".into(), json!(1));
            format!("{banner}\r\n{RESULT_PREFIX}{}\r\n", Value::Object(obj))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100_000))]

    #[test]
    fn probe_parsers_never_panic_on_arbitrary_text(s in text(100)) {
        let _ = parse_org(&s);
        let _ = parse_host(&s);
        let with_prefix = format!("{RESULT_PREFIX}{s}");
        let _ = parse_org(&with_prefix);
        let _ = parse_host(&with_prefix);
        let _ = excerpt(&s, 40);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8_000))]

    /// Protocol-shaped JSON: parsing never panics, and whatever parses can be assessed.
    #[test]
    fn probe_parsers_never_panic_on_jsonish(out in probe_result()) {
        if let Ok(org) = parse_org(&out) {
            for s in &org.servers {
                let _ = assess(org.mitigations_enabled, s, &Default::default());
            }
        }
        if let Ok(host) = parse_host(&out) {
            let _ = assess(Some(true), &Default::default(), &host);
        }
    }
}

/// A v2 host result whose `evidence` is three levels of arbitrary evidence-shaped JSON
/// (`evidence.events.fetch_errors.count` and the like, with any value types).
fn evidence_result() -> impl Strategy<Value = String> {
    let object = |inner: BoxedStrategy<Value>| {
        proptest::collection::vec((proptest::sample::select(EVIDENCE_KEYS), inner), 0..6)
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
            .boxed()
    };
    let level2 = prop_oneof![
        shallow_with(EVIDENCE_KEYS),
        object(shallow_with(EVIDENCE_KEYS))
    ]
    .boxed();
    let level1 = prop_oneof![shallow_with(EVIDENCE_KEYS), object(level2)].boxed();
    object(level1).prop_map(|evidence| {
        let obj = json!({"probe": "host", "schema": 1, "evidence": evidence});
        format!("{RESULT_PREFIX}{obj}\r\n")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8_000))]

    /// Evidence-shaped JSON: parsing never panics, and whatever parses can be judged.
    #[test]
    fn evidence_parser_never_panics(out in evidence_result()) {
        if let Ok(host) = parse_host(&out) {
            let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
            let build = "15.2.986.41".parse().ok();
            let _ = assess_evidence(host.evidence.as_ref(), &Default::default(), build, now);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100_000))]

    #[test]
    fn inventory_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..300)
    ) {
        for f in [Format::Csv, Format::Txt, Format::Json] {
            let _ = parse_bytes(&bytes, f, "p");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn inventory_never_panics_on_textish_input(
        s in proptest::collection::vec(proptest::sample::select(INVENTORY_CHARS), 0..200)
            .prop_map(|v| v.into_iter().collect::<String>())
    ) {
        for f in [Format::Csv, Format::Txt, Format::Json] {
            let _ = parse_bytes(s.as_bytes(), f, "p");
        }
    }
}
