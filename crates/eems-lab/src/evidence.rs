//! The evidence a simulated server holds for host probe v2 (`eems-probe:host:2`): EEMS
//! events, service changes, the EEMS log, IIS rewrite rules and the flighting service, and
//! the `evidence` object the real probe would print from them (README "Evidence").
//!
//! Times in the fleet file are hours before "now", so a fleet file never goes stale; the
//! answer applies the probe's own bounds (the `$EvidenceDays` window, 30 days and 20 entries
//! of service changes, 500 events, 20 log lines).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::fleet::ServerSpec;
use crate::powershell::{Header, HeaderValue, finish_json, host_json as v1_host_json};

/// Marker of host probe v2's evidence part.
pub const HOST_MARKER_V2: &str = "eems-probe:host:2";

/// The probe's caps (evidence.ps1).
const MAX_EVENTS: u64 = 500;
const MAX_SERVICE_CHANGES: usize = 20;
const SERVICE_CHANGE_DAYS: f64 = 30.0;
const MAX_LOG_LINES: usize = 20;
const MAX_TEXT: usize = 400;

/// What a server's logs and configuration hold. The default is a healthy server: EEMS
/// wrote its log half an hour ago, no events in the window, the IIS rules of the applied
/// mitigations present and enabled, no flighting service (a build before 2019 CU15).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceSpec {
    /// Event 1008 (EEMS error) series.
    pub fetch_errors: Option<EventSeries>,
    /// Events 1005/1006 (mitigation applied) series.
    pub applied: Option<EventSeries>,
    /// Get-WinEvent on the Application log throws this.
    pub events_error: Option<String>,
    pub service_changes: Vec<ServiceChangeSpec>,
    /// Get-WinEvent on the System log throws this.
    pub service_changes_error: Option<String>,
    /// `None`: the service process is not running.
    pub service_started_hours_ago: Option<f64>,
    /// `Logging\MitigationService` exists.
    pub log_folder: bool,
    /// Write time of the newest log file; `None`: the folder is empty.
    pub log_hours_ago: Option<f64>,
    /// Warning/Error lines in the newest file, oldest first.
    pub log_problem_lines: Vec<String>,
    /// Reading the folder throws this.
    pub log_error: Option<String>,
    /// `None`: the rules EEMS writes for the applied mitigations, enabled.
    pub iis_rules: Option<Vec<IisRuleSpec>>,
    /// Reading applicationHost.config throws this.
    pub iis_error: Option<String>,
    /// MSExchangeFlighting; `None` where not installed.
    pub flighting: Option<FlightingSpec>,
}

/// Longest time ago a fleet file may name (ten years), so every time stays representable.
pub(crate) const MAX_HOURS_AGO: f64 = 24.0 * 3653.0;

impl EvidenceSpec {
    /// Every time is a finite number of hours between 0 and ten years, every series step
    /// positive: what the fleet file says must be a time the probe could print.
    pub fn validate(&self) -> Result<(), String> {
        let hours = |what: &str, h: f64| {
            if h.is_finite() && (0.0..=MAX_HOURS_AGO).contains(&h) {
                Ok(())
            } else {
                Err(format!(
                    "evidence {what} = {h} is not between 0 and {MAX_HOURS_AGO} hours"
                ))
            }
        };
        for (what, s) in [
            ("fetch_errors", &self.fetch_errors),
            ("applied", &self.applied),
        ] {
            if let Some(s) = s {
                hours(&format!("{what}.newest_hours_ago"), s.newest_hours_ago)?;
                if !(s.every_hours.is_finite() && s.every_hours > 0.0) {
                    return Err(format!(
                        "evidence {what}.every_hours = {} is not positive",
                        s.every_hours
                    ));
                }
            }
        }
        for c in &self.service_changes {
            hours("service_changes.hours_ago", c.hours_ago)?;
        }
        if let Some(h) = self.service_started_hours_ago {
            hours("service_started_hours_ago", h)?;
        }
        if let Some(h) = self.log_hours_ago {
            hours("log_hours_ago", h)?;
        }
        Ok(())
    }
}

impl Default for EvidenceSpec {
    fn default() -> Self {
        EvidenceSpec {
            fetch_errors: None,
            applied: None,
            events_error: None,
            service_changes: Vec::new(),
            service_changes_error: None,
            service_started_hours_ago: Some(72.0),
            log_folder: true,
            log_hours_ago: Some(0.5),
            log_problem_lines: Vec::new(),
            log_error: None,
            iis_rules: None,
            iis_error: None,
            flighting: None,
        }
    }
}

/// `count` events, the newest `newest_hours_ago`, then one every `every_hours`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSeries {
    pub count: u64,
    #[serde(default)]
    pub newest_hours_ago: f64,
    #[serde(default = "one_hour")]
    pub every_hours: f64,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceChangeSpec {
    pub hours_ago: f64,
    /// 7040 start type changed, 7036 state entered, 7031 terminated unexpectedly.
    pub id: u32,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IisRuleSpec {
    pub name: String,
    #[serde(default = "default_section")]
    pub section: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_file")]
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlightingSpec {
    #[serde(default = "running")]
    pub status: String,
    #[serde(default = "automatic")]
    pub start_type: String,
}

fn one_hour() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn default_section() -> String {
    "rules".into()
}
fn default_file() -> String {
    "Default Web Site web.config".into()
}
fn running() -> String {
    "Running".into()
}
fn automatic() -> String {
    "Automatic".into()
}

/// The message of event 1008 on a build too old for the OCS certificate (blog 4370312).
const FETCH_ERROR_MESSAGE: &str = "An unexpected exception occurred. Diagnostic information: \
    Exception encountered while fetching mitigations.";
const APPLIED_MESSAGE: &str = "Mitigation applied successfully.";

/// The rules EEMS writes for an applied mitigation (eems-evidence.md §4.2).
fn rules_of(applied: &str) -> Vec<IisRuleSpec> {
    let rule = |name: &str, section: &str, file: &str| IisRuleSpec {
        name: name.into(),
        section: section.into(),
        enabled: true,
        file: file.into(),
    };
    let family = applied.split('.').next().unwrap_or_default();
    match family.to_ascii_uppercase().as_str() {
        "M1" => vec![rule(
            "EEMS M1.1 PowerShell - inbound",
            "rules",
            "Default Web Site web.config",
        )],
        "M2" => vec![
            rule(
                "EEMS M2.1 OWA CSP - outbound",
                "outboundRules",
                "owa web.config",
            ),
            rule(
                "EEMS M2.1 OWA SPA HTML shell - precondition",
                "preConditions",
                "owa web.config",
            ),
        ],
        _ => Vec::new(),
    }
}

/// The host probe's answer: v1, plus `evidence` when the script is v2's evidence part.
pub fn host_json(server: &ServerSpec, header: &Header, body: &str, ps51: bool) -> String {
    let v1 = v1_host_json(server, header, ps51);
    match (body.contains(HOST_MARKER_V2), v1.strip_suffix('}')) {
        (true, Some(open)) => {
            let days = match header.get("EvidenceDays") {
                Some(HeaderValue::Int(n)) => *n,
                _ => 7,
            };
            let ev = evidence_value(server, days, time::OffsetDateTime::now_utc(), ps51);
            format!("{open},\"evidence\":{}}}", finish_json(&ev, ps51))
        }
        _ => v1,
    }
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

/// How the probe prints a time: ISO 8601 UTC to the second.
pub(crate) fn at(now: time::OffsetDateTime, hours_ago: f64) -> String {
    let t = now - time::Duration::seconds_f64(hours_ago * 3600.0);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// PS 5.1 prints a one-element list held in a hashtable as that element (the lab's quirk mode).
fn list(items: Vec<Value>, ps51: bool) -> Value {
    if ps51 && items.len() == 1 {
        items.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(items)
    }
}

fn series(
    s: Option<&EventSeries>,
    default_msg: &str,
    days: i64,
    now: time::OffsetDateTime,
) -> Value {
    let window = days as f64 * 24.0;
    let (count, newest, msg) = match s {
        Some(s) if s.count > 0 && s.newest_hours_ago <= window => {
            let every = if s.every_hours > 0.0 {
                s.every_hours
            } else {
                1.0
            };
            let fit = ((window - s.newest_hours_ago) / every).floor() as u64 + 1;
            let msg = s.message.as_deref().unwrap_or(default_msg);
            (
                s.count.min(fit).min(MAX_EVENTS),
                Some(s.newest_hours_ago),
                Some(cut(msg)),
            )
        }
        _ => (0, None, None),
    };
    json!({"count": count, "last_time": newest.map(|h| at(now, h)), "last_message": msg})
}

/// The `evidence` object evidence.ps1 prints for this server.
pub fn evidence_value(
    server: &ServerSpec,
    days: i64,
    now: time::OffsetDateTime,
    ps51: bool,
) -> Value {
    let e = &server.evidence;
    let events = match &e.events_error {
        Some(err) => json!({"error": cut(err)}),
        None => json!({
            "error": null,
            "fetch_errors": series(e.fetch_errors.as_ref(), FETCH_ERROR_MESSAGE, days, now),
            "applied": series(e.applied.as_ref(), APPLIED_MESSAGE, days, now),
        }),
    };
    let mut changes: Vec<&ServiceChangeSpec> = e
        .service_changes
        .iter()
        .filter(|c| c.hours_ago <= SERVICE_CHANGE_DAYS * 24.0)
        .collect();
    changes.sort_by(|a, b| a.hours_ago.total_cmp(&b.hours_ago));
    let changes: Vec<Value> = changes
        .into_iter()
        .take(MAX_SERVICE_CHANGES)
        .map(|c| json!({"time": at(now, c.hours_ago), "id": c.id, "message": cut(&c.message)}))
        .collect();
    // Without the service there is no EEMS log folder either.
    let folder = e.log_folder && server.service_installed;
    let log = match (&e.log_error, folder, e.log_hours_ago) {
        (Some(err), _, _) => json!({"error": cut(err), "folder_exists": folder,
            "newest_file": null, "newest_write_time": null, "problem_lines": []}),
        (None, true, Some(h)) => {
            let skip = e.log_problem_lines.len().saturating_sub(MAX_LOG_LINES);
            let lines: Vec<Value> = e.log_problem_lines[skip..]
                .iter()
                .map(|l| Value::String(cut(l.trim())))
                .collect();
            let file = at(now, h);
            json!({"error": null, "folder_exists": true,
                "newest_file": format!("MitigationService_{}.log", file[..10].replace('-', "")),
                "newest_write_time": file, "problem_lines": list(lines, ps51)})
        }
        (None, folder, _) => json!({"error": null, "folder_exists": folder,
            "newest_file": null, "newest_write_time": null, "problem_lines": []}),
    };
    let iis = match &e.iis_error {
        Some(err) => json!({"error": cut(err), "rules": []}),
        None => {
            let rules: Vec<IisRuleSpec> = match &e.iis_rules {
                Some(r) => r.clone(),
                None => server
                    .mitigations_applied
                    .iter()
                    .flat_map(|id| rules_of(id))
                    .collect(),
            };
            let rules: Vec<Value> = rules
                .iter()
                .map(|r| json!({"name": r.name, "section": r.section, "enabled": r.enabled, "file": r.file}))
                .collect();
            json!({"error": null, "rules": list(rules, ps51)})
        }
    };
    let running = server.service_installed && server.service_status.eq_ignore_ascii_case("Running");
    let mut v = json!({
        "window_days": days,
        "events": events,
        "service_changes": list(changes, ps51),
        "service_started": e.service_started_hours_ago.filter(|_| running).map(|h| at(now, h)),
        "log": log,
        "iis_rules": iis,
        "flighting": e.flighting.as_ref().map(|f| json!({"status": f.status, "start_type": f.start_type})),
    });
    if let (Some(err), Some(o)) = (&e.service_changes_error, v.as_object_mut()) {
        o.insert("service_changes_error".into(), Value::String(cut(err)));
        o.remove("service_changes");
    }
    v
}
