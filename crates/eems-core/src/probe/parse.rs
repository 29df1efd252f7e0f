//! Lenient parser of remote probe protocol v1.
//!
//! Each probe prints exactly one stdout line `EEMS-PROBE-RESULT ` + one compact JSON object;
//! everything else on stdout is diagnostics (profile banners, warnings). The JSON is produced by
//! Windows PowerShell 5.1's `ConvertTo-Json`, whose output shape depends on the runtime value
//! rather than the declared type, so this parser accepts:
//!
//! - a list as a JSON array, a single bare value, `null`, or PS 5.1's `{"value":[..],"Count":n}`
//!   wrapper (arrays carrying extended-type properties);
//! - a date as `"\/Date(1732785120000)\/"` (optionally with a `+0100` suffix), as an ISO 8601
//!   string, or as PS 5.1's `{"value":"\/Date(..)\/","DisplayHint":2,"DateTime":".."}` object;
//!   it is normalised to RFC 3339 UTC;
//! - service status and start type as enum names or as their numbers;
//! - booleans as JSON booleans or the strings `"True"`/`"False"`;
//! - numbers as JSON numbers or numeric strings;
//! - property names in any letter case (PowerShell property names are case-insensitive);
//! - unknown properties (ignored) and missing ones (`None`).
//!
//! The parser never panics: serde_json bounds nesting depth, and every access is checked.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::facts::{
    EventFacts, EventSummary, EvidenceFacts, ExchangeServerFacts, HostFacts, IisRule,
    IisRulesFacts, LogFacts, OcsFacts, OrgFacts, ServiceChange, ServiceFacts,
};
use crate::text::{excerpt, json_kind};

/// Start of the one result line each probe prints.
pub const RESULT_PREFIX: &str = "EEMS-PROBE-RESULT ";

/// The protocol version this parser understands.
const SCHEMA: u64 = 1;

/// Longest excerpt of remote output quoted in an error.
const EXCERPT_CHARS: usize = 160;

/// Why probe output could not be turned into facts.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("no EEMS-PROBE-RESULT line in the probe output (first output: {})", or_nothing(.excerpt))]
    NoResultLine { excerpt: String },
    #[error("the EEMS-PROBE-RESULT line is not valid probe JSON: {reason} (line: {excerpt})")]
    BadJson { reason: String, excerpt: String },
    #[error("expected the result of the {expected} probe, got {found:?}")]
    WrongProbe {
        expected: &'static str,
        found: String,
    },
    #[error("unsupported probe schema {0} (this eems-scan understands schema 1)")]
    UnsupportedSchema(String),
    #[error("more than one EEMS-PROBE-RESULT line in the probe output (was the probe run twice?)")]
    MultipleResultLines,
}

fn or_nothing(s: &str) -> &str {
    if s.is_empty() { "nothing" } else { s }
}

/// Finds the single result line and returns its JSON text.
fn result_json(stdout: &str) -> Result<&str, ParseError> {
    let mut found: Option<&str> = None;
    for line in stdout.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        // A UTF-8 BOM can precede the first line when PowerShell writes with a BOM.
        let line = line.strip_prefix('\u{FEFF}').unwrap_or(line);
        if let Some(json) = line.strip_prefix(RESULT_PREFIX) {
            if found.is_some() {
                return Err(ParseError::MultipleResultLines);
            }
            found = Some(json.trim());
        }
    }
    found.ok_or_else(|| ParseError::NoResultLine {
        excerpt: excerpt(stdout, EXCERPT_CHARS),
    })
}

/// Parses the JSON of the result line and checks `probe` and `schema`.
fn result_object(stdout: &str, expected: &'static str) -> Result<Map<String, Value>, ParseError> {
    let json = result_json(stdout)?;
    let bad = |reason: String| ParseError::BadJson {
        reason,
        excerpt: excerpt(json, EXCERPT_CHARS),
    };
    let value: Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(bad(format!(
            "expected a JSON object, found {}",
            json_kind(&value)
        )));
    };
    let probe = get(&obj, "probe").and_then(scalar_string);
    if probe.as_deref().map(str::trim) != Some(expected) {
        return Err(ParseError::WrongProbe {
            expected,
            found: probe
                .map(|p| excerpt(&p, 40))
                .unwrap_or_else(|| "no probe name".into()),
        });
    }
    match get(&obj, "schema") {
        Some(v) if as_u64(v) == Some(SCHEMA) => Ok(obj),
        None | Some(Value::Null) => Err(ParseError::UnsupportedSchema("(missing)".into())),
        Some(v) => Err(ParseError::UnsupportedSchema(excerpt(&v.to_string(), 40))),
    }
}

/// Parses the output of the org probe.
pub fn parse_org(stdout: &str) -> Result<OrgFacts, ParseError> {
    let obj = result_object(stdout, "org")?;
    let org = get(&obj, "organization").map(unwrap_value);
    let (name, mitigations_enabled) = match org {
        Some(Value::Object(o)) => (str_field(o, "name"), bool_field(o, "mitigations_enabled")),
        _ => (None, None),
    };
    let mut servers = Vec::new();
    for (i, v) in list_values(get(&obj, "servers")).into_iter().enumerate() {
        match v {
            Value::Object(s) => servers.push(server(s, i)?),
            other => {
                return Err(ParseError::BadJson {
                    reason: format!(
                        "servers[{i}] is {}, not an object (ConvertTo-Json -Depth too small?)",
                        json_kind(other)
                    ),
                    excerpt: excerpt(&other.to_string(), EXCERPT_CHARS),
                });
            }
        }
    }
    Ok(OrgFacts {
        name,
        mitigations_enabled,
        error: str_field(&obj, "organization_error"),
        servers,
        servers_error: str_field(&obj, "servers_error"),
        // The WinRS org probe does not search the admin audit log (Remote PowerShell does).
        admin_audit: None,
    })
}

fn server(s: &Map<String, Value>, i: usize) -> Result<ExchangeServerFacts, ParseError> {
    let fqdn = str_field(s, "fqdn");
    let name = match str_field(s, "name").filter(|n| !n.trim().is_empty()) {
        Some(n) => n,
        None => {
            return Err(ParseError::BadJson {
                reason: format!("servers[{i}] has no name"),
                excerpt: excerpt(&Value::Object(s.clone()).to_string(), EXCERPT_CHARS),
            });
        }
    };
    Ok(ExchangeServerFacts {
        name,
        fqdn,
        site: str_field(s, "site"),
        server_role: str_field(s, "server_role"),
        is_edge_server: bool_field(s, "is_edge_server"),
        admin_display_version: str_field(s, "admin_display_version"),
        mitigations_enabled: bool_field(s, "mitigations_enabled"),
        mitigations_applied: list_field(s, "mitigations_applied"),
        mitigations_blocked: list_field(s, "mitigations_blocked"),
        mitigations_applied_time: date_field(s, "mitigations_applied_time"),
        data_collection_enabled: bool_field(s, "data_collection_enabled"),
        internet_web_proxy: str_field(s, "internet_web_proxy"),
        // Not in the WinRS org probe's contract; the org query over Remote PowerShell reads them.
        ..Default::default()
    })
}

/// Parses the output of the host probe, v1 (`eems-probe:host:1`) or v2 (`eems-probe:host:2`,
/// the v1 object plus `evidence`).
pub fn parse_host(stdout: &str) -> Result<HostFacts, ParseError> {
    let obj = result_object(stdout, "host")?;
    let service = service_field(&obj, "service");
    let ocs = match get(&obj, "ocs").map(unwrap_value) {
        Some(Value::Object(o)) => OcsFacts {
            url: str_field(o, "url"),
            proxy: str_field(o, "proxy"),
            status_code: get(o, "status_code")
                .and_then(as_u64)
                .and_then(|n| u16::try_from(n).ok()),
            error: str_field(o, "error"),
            elapsed_ms: get(o, "elapsed_ms").and_then(as_u64),
        },
        _ => OcsFacts::default(),
    };
    Ok(HostFacts {
        computer_name: str_field(&obj, "computer_name"),
        exsetup_version: str_field(&obj, "exsetup_version"),
        install_path: str_field(&obj, "install_path"),
        service,
        ocs,
        evidence: object_field(&obj, "evidence").map(evidence),
    })
}

fn object_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    match get(obj, key).map(unwrap_value) {
        Some(Value::Object(o)) => Some(o),
        _ => None,
    }
}

fn service_field(obj: &Map<String, Value>, key: &str) -> Option<ServiceFacts> {
    object_field(obj, key).map(|s| ServiceFacts {
        status: enum_field(s, "status", service_status_name),
        start_type: enum_field(s, "start_type", start_type_name),
    })
}

/// The v2 `evidence` object. Every part is optional: a missing or malformed part reads as
/// "not collected", never as an error of the whole probe.
fn evidence(e: &Map<String, Value>) -> EvidenceFacts {
    let summary = |o: &Map<String, Value>, key: &str| {
        object_field(o, key).map(|s| EventSummary {
            count: get(s, "count").and_then(as_u64).unwrap_or(0),
            last_time: date_field(s, "last_time"),
            last_message: str_field(s, "last_message"),
        })
    };
    let events = object_field(e, "events")
        .map(|o| EventFacts {
            error: str_field(o, "error"),
            fetch_errors: summary(o, "fetch_errors"),
            applied: summary(o, "applied"),
        })
        .unwrap_or_default();
    let service_changes = list_values(get(e, "service_changes"))
        .into_iter()
        .filter_map(|v| match unwrap_value(v) {
            Value::Object(c) => Some(ServiceChange {
                time: date_field(c, "time"),
                id: get(c, "id")
                    .and_then(as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
                message: str_field(c, "message"),
            }),
            _ => None,
        })
        .collect();
    let log = object_field(e, "log")
        .map(|o| LogFacts {
            error: str_field(o, "error"),
            folder_exists: bool_field(o, "folder_exists"),
            newest_file: str_field(o, "newest_file"),
            newest_write_time: date_field(o, "newest_write_time"),
            problem_lines: list_field(o, "problem_lines"),
        })
        .unwrap_or_default();
    let iis_rules = object_field(e, "iis_rules")
        .map(|o| IisRulesFacts {
            error: str_field(o, "error"),
            rules: list_values(get(o, "rules"))
                .into_iter()
                .filter_map(|v| match unwrap_value(v) {
                    Value::Object(r) => Some(IisRule {
                        name: str_field(r, "name")?,
                        section: str_field(r, "section"),
                        // IIS's default for a rule without the attribute.
                        enabled: bool_field(r, "enabled").unwrap_or(true),
                        file: str_field(r, "file"),
                    }),
                    _ => None,
                })
                .collect(),
        })
        .unwrap_or_default();
    EvidenceFacts {
        window_days: get(e, "window_days")
            .and_then(as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        events,
        service_changes,
        service_changes_error: str_field(e, "service_changes_error"),
        service_started: date_field(e, "service_started"),
        log,
        iis_rules,
        flighting: service_field(e, "flighting"),
    }
}

// ---------------------------------------------------------------------------------------------
// Lenient accessors

/// Property lookup: exact name first, then case-insensitive (PowerShell names are).
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// PS 5.1 wraps values that carry extended-type properties: arrays as `{"value":[..],"Count":n}`,
/// `Get-Date` results as `{"value":"\/Date(..)\/","DisplayHint":2,"DateTime":".."}`. Unwrap them.
fn unwrap_value(v: &Value) -> &Value {
    let mut cur = v;
    // Bounded: serde_json limits depth anyway, but do not loop on pathological input.
    for _ in 0..8 {
        match cur {
            Value::Object(o) if o.len() <= 3 => match get(o, "value") {
                Some(inner)
                    if o.keys().all(|k| {
                        ["value", "count", "displayhint", "datetime"]
                            .iter()
                            .any(|w| k.eq_ignore_ascii_case(w))
                    }) =>
                {
                    cur = inner
                }
                _ => return cur,
            },
            _ => return cur,
        }
    }
    cur
}

/// A scalar rendered as text; `None` for null, arrays and objects.
fn scalar_string(v: &Value) -> Option<String> {
    match unwrap_value(v) {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.into()),
        _ => None,
    }
}

fn str_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    get(obj, key).and_then(scalar_string)
}

fn as_bool(v: &Value) -> Option<bool> {
    match unwrap_value(v) {
        Value::Bool(b) => Some(*b),
        Value::String(s) => {
            let s = s.trim();
            if s.eq_ignore_ascii_case("true") {
                Some(true)
            } else if s.eq_ignore_ascii_case("false") {
                Some(false)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn bool_field(obj: &Map<String, Value>, key: &str) -> Option<bool> {
    get(obj, key).and_then(as_bool)
}

/// A non-negative integer from a JSON number (integral floats included) or a numeric string.
fn as_u64(v: &Value) -> Option<u64> {
    match unwrap_value(v) {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The elements of a list-ish value: array, single value, null, or PS 5.1's wrapper.
fn list_values(v: Option<&Value>) -> Vec<&Value> {
    match v.map(unwrap_value) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(other) => vec![other],
    }
}

/// A list of strings. Null elements are dropped; empty strings are kept (the analysis applies
/// HealthChecker's emptiness rule).
fn list_field(obj: &Map<String, Value>, key: &str) -> Vec<String> {
    list_values(get(obj, key))
        .into_iter()
        .filter_map(scalar_string)
        .collect()
}

/// An enum-valued property: its name as given, or the name of its number.
fn enum_field(obj: &Map<String, Value>, key: &str, name_of: fn(u64) -> &'static str) -> String {
    let v = get(obj, key).map(unwrap_value);
    match v {
        Some(v @ Value::Number(_)) => as_u64(v).map_or("Unknown", name_of).to_string(),
        Some(Value::String(s)) => {
            let s = s.trim();
            match s.parse::<u64>() {
                Ok(n) => name_of(n).to_string(),
                Err(_) if s.is_empty() => "Unknown".to_string(),
                Err(_) => s.to_string(),
            }
        }
        _ => "Unknown".to_string(),
    }
}

/// `System.ServiceProcess.ServiceControllerStatus`.
fn service_status_name(n: u64) -> &'static str {
    match n {
        1 => "Stopped",
        2 => "StartPending",
        3 => "StopPending",
        4 => "Running",
        5 => "ContinuePending",
        6 => "PausePending",
        7 => "Paused",
        _ => "Unknown",
    }
}

/// `System.ServiceProcess.ServiceStartMode`.
fn start_type_name(n: u64) -> &'static str {
    match n {
        0 => "Boot",
        1 => "System",
        2 => "Automatic",
        3 => "Manual",
        4 => "Disabled",
        _ => "Unknown",
    }
}

/// A date, normalised to RFC 3339 UTC. A string that is no recognisable date is kept as given
/// (trimmed): the admin still sees what the server said rather than nothing.
fn date_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    let raw = get(obj, key).and_then(scalar_string)?;
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    Some(normalise_date(s).unwrap_or_else(|| s.to_string()))
}

fn normalise_date(s: &str) -> Option<String> {
    let dt = if let Some(inner) = s.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        // `/Date(ms)/` or `/Date(ms+hhmm)/`: ms are UTC; the offset is only a display hint.
        let end = inner
            .char_indices()
            .skip(1)
            .find(|(_, c)| *c == '+' || *c == '-')
            .map_or(inner.len(), |(i, _)| i);
        let ms: i64 = inner.get(..end)?.parse().ok()?;
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?
    } else if let Ok(dt) = OffsetDateTime::parse(s, &Rfc3339) {
        dt
    } else {
        // ISO 8601 without an offset (a DateTime of Kind Unspecified): read as UTC.
        let with_z = format!("{s}Z");
        OffsetDateTime::parse(&with_z, &Rfc3339).ok()?
    };
    dt.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(json: &str) -> String {
        format!("{RESULT_PREFIX}{json}\r\n")
    }

    /// The HealthChecker E16/E19 fixture values (eems-values-extracted.json), as the org probe
    /// would print them from Windows PowerShell 5.1 (Nil lists as null).
    const ORG_FIXTURE: &str = r#"{"probe":"org","schema":1,"organization":{"name":"SoloORG","mitigations_enabled":true},"organization_error":null,"servers":[{"name":"SOLO-E16A","fqdn":"SOLO-E16A.Solo.local","site":"Default-First-Site-Name","server_role":"Mailbox","is_edge_server":false,"admin_display_version":"Version 15.1 (Build 2375.7)","mitigations_enabled":true,"mitigations_applied":null,"mitigations_blocked":null,"mitigations_applied_time":null,"data_collection_enabled":false,"internet_web_proxy":null},{"name":"SOLO-E19A","is_edge_server":false,"admin_display_version":"Version 15.2 (Build 986.5)","mitigations_enabled":true,"mitigations_applied":null,"mitigations_blocked":null,"data_collection_enabled":false,"internet_web_proxy":null}],"servers_error":null}"#;

    #[test]
    fn org_fixture_values() {
        let out = format!("Loading Exchange snap-in...\r\n{}", line(ORG_FIXTURE));
        let org = parse_org(&out).unwrap();
        assert_eq!(org.name.as_deref(), Some("SoloORG"));
        assert_eq!(org.mitigations_enabled, Some(true));
        assert_eq!(org.error, None);
        assert_eq!(org.servers.len(), 2);
        let e16 = &org.servers[0];
        assert_eq!(e16.name, "SOLO-E16A");
        assert_eq!(e16.is_edge_server, Some(false));
        assert_eq!(e16.mitigations_enabled, Some(true));
        assert!(e16.mitigations_applied.is_empty());
        assert!(e16.mitigations_blocked.is_empty());
        assert_eq!(e16.data_collection_enabled, Some(false));
        assert_eq!(e16.internet_web_proxy, None);
        assert_eq!(
            e16.admin_display_version.as_deref(),
            Some("Version 15.1 (Build 2375.7)")
        );
        let e19 = &org.servers[1];
        assert_eq!(e19.fqdn, None, "missing property → None");
        assert_eq!(e19.mitigations_applied_time, None);
    }

    #[test]
    fn host_fixture_values_with_enum_numbers() {
        // E19: ExSetup 15.02.0986.005, service Running (4) / Automatic (2), OCS 200.
        let out = line(
            r#"{"probe":"host","schema":1,"computer_name":"SOLO-E19A","exsetup_version":"15.02.0986.005","install_path":"C:\\Program Files\\Microsoft\\Exchange Server\\V15\\","service":{"status":4,"start_type":2},"ocs":{"url":"https://officeclient.microsoft.com/GetExchangeMitigations","proxy":null,"status_code":200,"error":null,"elapsed_ms":412}}"#,
        );
        let h = parse_host(&out).unwrap();
        assert_eq!(h.computer_name.as_deref(), Some("SOLO-E19A"));
        assert_eq!(h.exsetup_version.as_deref(), Some("15.02.0986.005"));
        assert_eq!(
            h.install_path.as_deref(),
            Some(r"C:\Program Files\Microsoft\Exchange Server\V15\")
        );
        assert_eq!(
            h.service,
            Some(ServiceFacts {
                status: "Running".into(),
                start_type: "Automatic".into()
            })
        );
        assert_eq!(h.ocs.status_code, Some(200));
        assert_eq!(h.ocs.elapsed_ms, Some(412));
    }

    #[test]
    fn host_v2_evidence_parts() {
        let out = line(
            r#"{"probe":"host","schema":1,"computer_name":"EX1","exsetup_version":"15.2.1544.4","install_path":"C:\\V15\\","service":{"status":"Running","start_type":"Automatic"},"ocs":{"status_code":200},"evidence":{"window_days":7,"future_part":{"x":1},"events":{"error":null,"fetch_errors":{"count":3,"last_time":"2026-11-28T09:00:00Z","last_message":"fetch failed"},"applied":{"count":"1","last_time":"\/Date(1795860000000)\/","last_message":"M1.1.0 applied"}},"service_changes":{"time":"2026-11-01T08:00:00Z","id":7040,"message":"auto start to disabled"},"service_started":"2026-11-27T22:10:00Z","log":{"error":null,"folder_exists":true,"newest_file":"MitigationService_20261128.log","newest_write_time":"2026-11-28T09:00:05Z","problem_lines":"FetchMitigation,S:LogLevel=Warning;S:Message=Connection attempted against untrusted endpoint"},"iis_rules":{"error":null,"rules":[{"name":"EEMS M1.1 PowerShell - inbound","section":"rules","enabled":"False","file":"Default Web Site web.config"},{"section":"rules"}]},"flighting":{"status":4,"start_type":2}}}"#,
        );
        let h = parse_host(&out).unwrap();
        let e = h.evidence.unwrap();
        assert_eq!(e.window_days, Some(7));
        let fe = e.events.fetch_errors.unwrap();
        assert_eq!(
            (fe.count, fe.last_time.as_deref()),
            (3, Some("2026-11-28T09:00:00Z"))
        );
        let ap = e.events.applied.unwrap();
        assert_eq!(ap.count, 1, "numeric string");
        assert_eq!(
            ap.last_time.as_deref(),
            Some("2026-11-28T10:00:00Z"),
            "\\/Date\\/ form"
        );
        assert_eq!(
            e.service_changes.len(),
            1,
            "a lone object is a one-element list"
        );
        assert_eq!(e.service_changes[0].id, 7040);
        assert_eq!(e.log.problem_lines.len(), 1);
        assert_eq!(e.log.folder_exists, Some(true));
        assert_eq!(
            e.iis_rules.rules.len(),
            1,
            "a rule without a name is dropped"
        );
        assert!(!e.iis_rules.rules[0].enabled);
        assert_eq!(e.flighting.unwrap().status, "Running");
        assert_eq!(h.service.unwrap().status, "Running", "v1 fields intact");
    }

    #[test]
    fn host_v2_failed_parts_and_v1_without_evidence() {
        let v1 = line(r#"{"probe":"host","schema":1,"ocs":{}}"#);
        assert_eq!(parse_host(&v1).unwrap().evidence, None);
        let out = line(
            r#"{"probe":"host","schema":1,"ocs":{},"evidence":{"window_days":7,"events":{"error":"The RPC server is unavailable"},"service_changes":null,"log":{"error":"Access denied","folder_exists":false,"problem_lines":[]},"iis_rules":"garbage","flighting":null}}"#,
        );
        let e = parse_host(&out).unwrap().evidence.unwrap();
        assert_eq!(
            e.events.error.as_deref(),
            Some("The RPC server is unavailable")
        );
        assert_eq!(e.events.fetch_errors, None);
        assert!(e.service_changes.is_empty());
        assert_eq!(e.log.error.as_deref(), Some("Access denied"));
        assert_eq!(
            e.iis_rules,
            IisRulesFacts::default(),
            "malformed part: not collected"
        );
        assert_eq!(e.flighting, None);
    }

    #[test]
    fn enum_numbers_table() {
        // The Disabled fixture: Status Stopped (1), StartType Disabled (4).
        let cases = [
            ("1", "4", "Stopped", "Disabled"),
            ("2", "0", "StartPending", "Boot"),
            ("3", "1", "StopPending", "System"),
            ("5", "3", "ContinuePending", "Manual"),
            ("6", "2", "PausePending", "Automatic"),
            ("7", "9", "Paused", "Unknown"),
            ("0", "-1", "Unknown", "Unknown"),
            ("\"4\"", "\"2\"", "Running", "Automatic"),
            ("\"Running\"", "\"Automatic\"", "Running", "Automatic"),
            ("null", "\"\"", "Unknown", "Unknown"),
            ("4.0", "true", "Running", "Unknown"),
        ];
        for (st, ty, want_st, want_ty) in cases {
            let out = line(&format!(
                r#"{{"probe":"host","schema":1,"service":{{"status":{st},"start_type":{ty}}},"ocs":{{}}}}"#
            ));
            let s = parse_host(&out).unwrap().service.unwrap();
            assert_eq!(
                (s.status.as_str(), s.start_type.as_str()),
                (want_st, want_ty),
                "{st} {ty}"
            );
        }
    }

    #[test]
    fn service_null_or_missing_is_none() {
        for svc in [r#""service":null,"#, ""] {
            let out = line(&format!(r#"{{"probe":"host","schema":1,{svc}"ocs":null}}"#));
            let h = parse_host(&out).unwrap();
            assert_eq!(h.service, None);
            assert_eq!(h.ocs, OcsFacts::default());
        }
    }

    fn one_server(fields: &str) -> ExchangeServerFacts {
        let out = line(&format!(
            r#"{{"probe":"org","schema":1,"organization":{{"mitigations_enabled":true}},"servers":[{{"name":"EX01"{fields}}}]}}"#
        ));
        parse_org(&out).unwrap().servers.remove(0)
    }

    #[test]
    fn ps51_list_shapes() {
        let cases: &[(&str, &[&str])] = &[
            (r#""PING1""#, &["PING1"]),
            (r#"["PING1","M2.1.0"]"#, &["PING1", "M2.1.0"]),
            ("null", &[]),
            ("[]", &[]),
            (r#"{"value":["PING1","M1"],"Count":2}"#, &["PING1", "M1"]),
            (r#"{"value":"PING1","Count":1}"#, &["PING1"]),
            (r#"[null,"M2"]"#, &["M2"]),
            (r#""""#, &[""]),
        ];
        for (json, want) in cases {
            let s = one_server(&format!(
                r#","mitigations_applied":{json},"mitigations_blocked":{json}"#
            ));
            assert_eq!(s.mitigations_applied, *want, "{json}");
            assert_eq!(s.mitigations_blocked, *want, "{json}");
        }
        assert!(one_server("").mitigations_applied.is_empty());
    }

    #[test]
    fn ps51_dates() {
        let cases = [
            (r#""\/Date(1732785120000)\/""#, Some("2024-11-28T09:12:00Z")),
            (r#""/Date(1732785120000)/""#, Some("2024-11-28T09:12:00Z")),
            (
                r#""\/Date(1732785120000+0100)\/""#,
                Some("2024-11-28T09:12:00Z"),
            ),
            (r#""\/Date(-1000)\/""#, Some("1969-12-31T23:59:59Z")),
            (r#""2023-01-05T12:08:37Z""#, Some("2023-01-05T12:08:37Z")),
            (
                r#""2023-01-05T13:08:37.1234567+01:00""#,
                Some("2023-01-05T12:08:37.1234567Z"),
            ),
            (r#""2023-01-05T12:08:37""#, Some("2023-01-05T12:08:37Z")),
            (
                r#"{"value":"\/Date(1732785120000)\/","DisplayHint":2,"DateTime":"Thursday, November 28, 2024 10:12:00 AM"}"#,
                Some("2024-11-28T09:12:00Z"),
            ),
            (r#""yesterday""#, Some("yesterday")),
            (
                r#""\/Date(99999999999999999999)\/""#,
                Some("/Date(99999999999999999999)/"),
            ),
            ("null", None),
            (r#""""#, None),
        ];
        for (json, want) in cases {
            let s = one_server(&format!(r#","mitigations_applied_time":{json}"#));
            assert_eq!(s.mitigations_applied_time.as_deref(), want, "{json}");
        }
    }

    #[test]
    fn ps51_booleans() {
        let cases = [
            ("true", Some(true)),
            ("false", Some(false)),
            (r#""True""#, Some(true)),
            (r#""False""#, Some(false)),
            (r#"" TRUE ""#, Some(true)),
            ("null", None),
            (r#""yes""#, None),
            ("1", None),
        ];
        for (json, want) in cases {
            let s = one_server(&format!(
                r#","is_edge_server":{json},"mitigations_enabled":{json},"data_collection_enabled":{json}"#
            ));
            assert_eq!(s.is_edge_server, want, "{json}");
            assert_eq!(s.mitigations_enabled, want, "{json}");
            assert_eq!(s.data_collection_enabled, want, "{json}");
        }
    }

    #[test]
    fn servers_single_object_and_null() {
        let single = line(
            r#"{"probe":"org","schema":1,"organization":{"name":"O","mitigations_enabled":"False"},"servers":{"name":"EX01","is_edge_server":false}}"#,
        );
        let org = parse_org(&single).unwrap();
        assert_eq!(org.mitigations_enabled, Some(false));
        assert_eq!(org.servers.len(), 1);
        assert_eq!(org.servers[0].name, "EX01");

        let none = line(
            r#"{"probe":"org","schema":1,"organization":null,"organization_error":"The term 'Get-OrganizationConfig' is not recognized","servers":null,"servers_error":"boom"}"#,
        );
        let org = parse_org(&none).unwrap();
        assert_eq!(org.mitigations_enabled, None);
        assert_eq!(org.name, None);
        assert!(org.servers.is_empty());
        assert_eq!(org.servers_error.as_deref(), Some("boom"));
        assert!(org.error.unwrap().contains("Get-OrganizationConfig"));

        let missing = line(r#"{"probe":"org","schema":1}"#);
        assert_eq!(parse_org(&missing).unwrap(), OrgFacts::default());
    }

    #[test]
    fn server_entry_errors() {
        let string_entry = line(r#"{"probe":"org","schema":1,"servers":["@{name=EX01}"]}"#);
        let e = parse_org(&string_entry).unwrap_err().to_string();
        assert!(e.contains("servers[0] is a string"), "{e}");
        let nameless = line(r#"{"probe":"org","schema":1,"servers":[{"fqdn":"x"}]}"#);
        let e = parse_org(&nameless).unwrap_err().to_string();
        assert!(e.contains("servers[0] has no name"), "{e}");
    }

    #[test]
    fn unknown_fields_and_key_case_ignored() {
        let out = line(
            r#"{"Probe":"host","SCHEMA":"1","Extra":{"deep":[1,2]},"Computer_Name":"EX01","OCS":{"Status_Code":"200","elapsed_ms":12.0}}"#,
        );
        let h = parse_host(&out).unwrap();
        assert_eq!(h.computer_name.as_deref(), Some("EX01"));
        assert_eq!(h.ocs.status_code, Some(200));
        assert_eq!(h.ocs.elapsed_ms, Some(12));
    }

    #[test]
    fn status_code_out_of_range_is_none() {
        for sc in ["70000", "-1", "\"abc\"", "null", "2.5"] {
            let out = line(&format!(
                r#"{{"probe":"host","schema":1,"ocs":{{"status_code":{sc},"error":"The remote name could not be resolved"}}}}"#
            ));
            let h = parse_host(&out).unwrap();
            assert_eq!(h.ocs.status_code, None, "{sc}");
            assert!(h.ocs.error.is_some());
        }
    }

    #[test]
    fn line_endings_and_banners() {
        let json = r#"{"probe":"host","schema":1}"#;
        for out in [
            format!("{RESULT_PREFIX}{json}"),
            format!("{RESULT_PREFIX}{json}\n"),
            format!("banner\r\nmore\r\n{RESULT_PREFIX}{json}\r\ntrailer\r\n"),
            format!("\u{FEFF}{RESULT_PREFIX}{json}  \r\n"),
        ] {
            assert!(parse_host(&out).is_ok(), "{out:?}");
        }
    }

    #[test]
    fn prefix_must_start_the_line() {
        let out = format!("WARNING: {RESULT_PREFIX}{{\"probe\":\"host\",\"schema\":1}}\r\n");
        let e = parse_host(&out).unwrap_err();
        assert!(matches!(e, ParseError::NoResultLine { .. }));
        assert!(
            e.to_string().starts_with(
                "no EEMS-PROBE-RESULT line in the probe output (first output: WARNING:"
            ),
            "{e}"
        );
        let e = parse_host("").unwrap_err().to_string();
        assert_eq!(
            e,
            "no EEMS-PROBE-RESULT line in the probe output (first output: nothing)"
        );
    }

    #[test]
    fn error_cases() {
        let two = format!(
            "{}{}",
            line(r#"{"probe":"host","schema":1}"#),
            line(r#"{"probe":"host","schema":1}"#)
        );
        assert!(matches!(
            parse_host(&two),
            Err(ParseError::MultipleResultLines)
        ));

        let wrong = line(r#"{"probe":"org","schema":1}"#);
        let e = parse_host(&wrong).unwrap_err();
        assert!(matches!(
            e,
            ParseError::WrongProbe {
                expected: "host",
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "expected the result of the host probe, got \"org\""
        );

        for (schema, shown) in [("2", "2"), ("\"x\"", "\"x\""), ("null", "(missing)")] {
            let out = line(&format!(r#"{{"probe":"host","schema":{schema}}}"#));
            match parse_host(&out) {
                Err(ParseError::UnsupportedSchema(s)) => assert_eq!(s, shown),
                other => panic!("{schema}: {other:?}"),
            }
        }
        let no_schema = line(r#"{"probe":"host"}"#);
        assert!(matches!(
            parse_host(&no_schema),
            Err(ParseError::UnsupportedSchema(_))
        ));

        for bad in [
            "{",
            "[1,2]",
            "\"host\"",
            "{\"probe\":\"host\",\"schema\":1} trailing",
            "",
        ] {
            let e = parse_host(&line(bad)).unwrap_err();
            assert!(matches!(e, ParseError::BadJson { .. }), "{bad}: {e:?}");
            assert!(
                e.to_string()
                    .starts_with("the EEMS-PROBE-RESULT line is not valid probe JSON")
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn never_panics_on_arbitrary_text(s in ".{0,300}") {
            let _ = parse_org(&s);
            let _ = parse_host(&s);
            let with_prefix = format!("{RESULT_PREFIX}{s}");
            let _ = parse_org(&with_prefix);
            let _ = parse_host(&with_prefix);
        }
    }
}
