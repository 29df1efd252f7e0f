//! Evidence beyond HealthChecker (issue 11): did EEMS actually fetch and apply, and can it
//! still? Pure: the host probe's evidence, the server's lists and build, and "now" in;
//! verdicts and findings out. HealthChecker's lines and the v1 status rules are untouched;
//! these verdicts only add findings and can raise an `ok` server to `warning`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::build::{self, ExchangeBuild, FetchTier};
use super::{Assessment, CertFloor, FetchState, SERVICE_NAME, Status, WriteType};
use crate::facts::{EvidenceFacts, ExchangeServerFacts, IisRule, ServiceChange};
use crate::text::excerpt;

/// Event 1008 within this many hours means EEMS is failing now (it repeats hourly).
const FAILING_HOURS: i64 = 24;
/// A log write within this many hours counts as a working cycle (the service logs hourly).
const LOG_FRESH_HOURS: i64 = 24;
/// Start-type changes older than this are not reported.
const SERVICE_CHANGE_DAYS: i64 = 30;
/// Event id of "the start type of the service was changed".
const START_TYPE_CHANGED: u32 = 7040;

/// Mitigation families that EEMS applies as IIS URL Rewrite rules named `EEMS <id> ...`
/// (eems-evidence.md §4.2). Other IDs (PING1, service or app pool mitigations) leave no rule.
const RULE_FAMILIES: &[&str] = &["M1", "M2"];

/// One disagreement between `MitigationsApplied`/`MitigationsBlocked` and the IIS rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IisIssue {
    /// Listed as applied, no `EEMS <id>` rule on disk.
    AppliedButMissing(String),
    /// Listed as applied, every matching rule has `enabled="false"`.
    AppliedButDisabled(String),
    /// An `EEMS *` rule for an ID that is not applied (left behind after a fix or an SU).
    OrphanedRule(String),
    /// A blocked ID whose rule is still present and enabled (blocking does not remove it).
    BlockedButPresent(String),
}

impl std::fmt::Display for IisIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IisIssue::AppliedButMissing(id) => write!(f, "applied but missing: {id}"),
            IisIssue::AppliedButDisabled(id) => write!(f, "applied but disabled: {id}"),
            IisIssue::OrphanedRule(name) => write!(f, "orphaned rule: {name}"),
            IisIssue::BlockedButPresent(id) => write!(f, "blocked but present: {id}"),
        }
    }
}

/// The IIS rules against the mitigation lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IisState {
    Consistent,
    /// The configuration files could not be read.
    Unknown,
    Issues(Vec<IisIssue>),
}

impl std::fmt::Display for IisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IisState::Consistent => f.write_str("Consistent"),
            IisState::Unknown => f.write_str("Unknown"),
            IisState::Issues(list) => {
                let texts: Vec<String> = list.iter().map(ToString::to_string).collect();
                f.write_str(&texts.join("; "))
            }
        }
    }
}

impl IisState {
    /// The colour of the IIS verdict, as the other verdicts carry one. Any issue is Yellow,
    /// also those that do not raise the status (an orphaned rule still needs removing by
    /// hand), as the drift page colours a side that holds an issue.
    pub fn write_type(&self) -> WriteType {
        match self {
            IisState::Consistent => WriteType::Green,
            IisState::Unknown => WriteType::Grey,
            IisState::Issues(_) => WriteType::Yellow,
        }
    }
}

/// The evidence verdicts of one server (README "Evidence").
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EvidenceVerdicts {
    /// `None` when the evidence was not collected (v1 probe).
    pub fetch_state: Option<FetchState>,
    /// Events 1008 in the window.
    pub fetch_errors_window: Option<u64>,
    pub last_fetch_error_time: Option<String>,
    pub last_fetch_error: Option<String>,
    /// Newest event 1005/1006.
    pub last_applied_event: Option<String>,
    pub log_last_write: Option<String>,
    /// `None` when the build is unknown or has no EEMS.
    pub cert_floor: Option<CertFloor>,
    pub iis_state: Option<IisState>,
    /// Newest start-type change (7040) in 30 days.
    pub service_changed_time: Option<String>,
    pub service_changed: Option<String>,
    pub service_started: Option<String>,
    /// `Status/StartType` of MSExchangeFlighting; `None` where absent or not collected.
    pub flighting_service: Option<String>,
    pub findings: Vec<String>,
    /// Whether a verdict makes the server a warning.
    pub warning: bool,
}

impl Assessment {
    /// Adds the evidence findings and raises `ok` to `warning` when a verdict calls for it.
    /// Out-of-scope servers stay skipped with their one reason.
    pub fn add_evidence(&mut self, v: &EvidenceVerdicts) {
        if self.status == Status::Skipped {
            return;
        }
        self.findings.extend(v.findings.iter().cloned());
        if v.warning && self.status == Status::Ok {
            self.status = Status::Warning;
        }
    }
}

fn parse_time(s: Option<&str>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s?.trim(), &Rfc3339).ok()
}

fn within(t: Option<&str>, now: OffsetDateTime, window: time::Duration) -> Option<bool> {
    parse_time(t).map(|t| now - t <= window)
}

/// The cert-floor verdict of a build (`None`: no EEMS on it, or unknown).
pub fn cert_floor(build: Option<ExchangeBuild>) -> Option<CertFloor> {
    match build::fetch_tier(build?) {
        FetchTier::CannotFetch => Some(CertFloor::CannotFetch),
        FetchTier::AtFloor => Some(CertFloor::AtFloor),
        FetchTier::Ok => Some(CertFloor::Above),
        FetchTier::NotApplicable => None,
    }
}

/// `fetch_state` from the events and the log.
pub fn fetch_state(ev: &EvidenceFacts, now: OffsetDateTime) -> FetchState {
    if ev.events.error.is_some() {
        return FetchState::Unknown;
    }
    let day = time::Duration::hours(FAILING_HOURS);
    if let Some(fe) = ev.events.fetch_errors.as_ref().filter(|e| e.count > 0) {
        match within(fe.last_time.as_deref(), now, day) {
            Some(true) => return FetchState::Failing,
            Some(false) => {}
            // Errors of unknown age: neither "failing now" nor "fine".
            None => return FetchState::Unknown,
        }
    }
    let applied = ev.events.applied.as_ref().is_some_and(|a| a.count > 0);
    let log_fresh = within(
        ev.log.newest_write_time.as_deref(),
        now,
        time::Duration::hours(LOG_FRESH_HOURS),
    ) == Some(true);
    if applied || log_fresh {
        FetchState::Fetching
    } else {
        FetchState::NoEvidence
    }
}

/// The ID a rule name carries: `EEMS M1.1 PowerShell - inbound` -> `M1.1`.
fn rule_id(name: &str) -> Option<&str> {
    let rest = name
        .get(..5)?
        .eq_ignore_ascii_case("EEMS ")
        .then(|| &name[5..])?;
    rest.split_whitespace().next()
}

/// Whether a mitigation ID and a rule's ID name the same mitigation: `M1.1.0` and `M1.1`,
/// `M2` and `M2.1` (a blocked family), or equal.
fn related(id: &str, rule: &str) -> bool {
    let starts = |a: &str, b: &str| {
        a.len() > b.len()
            && a.as_bytes()[b.len()] == b'.'
            && a.get(..b.len()).is_some_and(|p| p.eq_ignore_ascii_case(b))
    };
    id.eq_ignore_ascii_case(rule) || starts(id, rule) || starts(rule, id)
}

fn family(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

/// `iis_state`: the rules on disk against the applied and blocked lists.
pub fn iis_issues(rules: &[IisRule], applied: &[String], blocked: &[String]) -> Vec<IisIssue> {
    let mut out = Vec::new();
    let ids = |l: &'_ [String]| -> Vec<String> {
        l.iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let (applied, blocked) = (ids(applied), ids(blocked));
    for id in &applied {
        if !RULE_FAMILIES
            .iter()
            .any(|f| f.eq_ignore_ascii_case(family(id)))
        {
            continue;
        }
        let mine: Vec<&IisRule> = rules
            .iter()
            .filter(|r| rule_id(&r.name).is_some_and(|t| related(id, t)))
            .collect();
        if mine.is_empty() {
            out.push(IisIssue::AppliedButMissing(id.clone()));
        } else if mine.iter().all(|r| !r.enabled) {
            out.push(IisIssue::AppliedButDisabled(id.clone()));
        }
    }
    for r in rules {
        let Some(t) = rule_id(&r.name) else { continue };
        if !applied.iter().any(|id| related(id, t)) {
            let issue = IisIssue::OrphanedRule(r.name.clone());
            if !out.contains(&issue) {
                out.push(issue);
            }
        }
    }
    for id in &blocked {
        let present = rules
            .iter()
            .any(|r| r.enabled && rule_id(&r.name).is_some_and(|t| related(id, t)));
        if present {
            out.push(IisIssue::BlockedButPresent(id.clone()));
        }
    }
    out
}

/// The newest start-type change within 30 days.
fn newest_start_type_change(
    changes: &[ServiceChange],
    now: OffsetDateTime,
) -> Option<(&ServiceChange, OffsetDateTime)> {
    changes
        .iter()
        .filter(|c| c.id == START_TYPE_CHANGED)
        .filter_map(|c| parse_time(c.time.as_deref()).map(|t| (c, t)))
        .filter(|(_, t)| now - *t <= time::Duration::days(SERVICE_CHANGE_DAYS))
        .max_by_key(|(_, t)| *t)
}

/// All evidence verdicts of one server. `ev` is `None` when the evidence part did not run:
/// then only `cert_floor` (from the build) is judged.
pub fn assess_evidence(
    ev: Option<&EvidenceFacts>,
    server: &ExchangeServerFacts,
    build: Option<ExchangeBuild>,
    now: OffsetDateTime,
) -> EvidenceVerdicts {
    let mut v = EvidenceVerdicts {
        cert_floor: cert_floor(build),
        ..Default::default()
    };
    // The finding text for the floor is the v1 one (assess); only the status is new.
    if v.cert_floor == Some(CertFloor::CannotFetch) {
        v.warning = true;
    }
    let Some(ev) = ev else { return v };

    let state = fetch_state(ev, now);
    v.fetch_state = Some(state);
    let fe = ev.events.fetch_errors.as_ref();
    v.fetch_errors_window = fe.map(|e| e.count).filter(|_| ev.events.error.is_none());
    v.last_fetch_error_time = fe.and_then(|e| e.last_time.clone());
    v.last_fetch_error = fe.and_then(|e| e.last_message.clone());
    v.last_applied_event = ev.events.applied.as_ref().and_then(|a| a.last_time.clone());
    v.log_last_write = ev.log.newest_write_time.clone();
    let days = ev.window_days.unwrap_or(7);
    match state {
        FetchState::Failing => {
            v.warning = true;
            let e = fe.cloned().unwrap_or_default();
            v.findings.push(format!(
                "EEMS is failing to fetch mitigations: event 1008 at {} ({} in {days} days): {}",
                e.last_time.as_deref().unwrap_or("?"),
                e.count,
                excerpt(e.last_message.as_deref().unwrap_or("no message"), 200)
            ));
        }
        FetchState::NoEvidence => v.findings.push(format!(
            "no evidence that EEMS fetched: no event 1005/1006/1008 in {days} days and no \
             EEMS log written in the last {LOG_FRESH_HOURS} h"
        )),
        FetchState::Unknown => v.findings.push(match &ev.events.error {
            Some(e) => format!("EEMS events not readable: {}", excerpt(e, 200)),
            None => "EEMS events 1008 carry no readable time: fetch state unknown".into(),
        }),
        FetchState::Fetching => {}
    }
    if let Some(e) = &ev.log.error {
        v.findings
            .push(format!("EEMS log folder not readable: {}", excerpt(e, 200)));
    } else if ev.log.folder_exists == Some(false) {
        v.findings
            .push("no EEMS log folder (Logging\\MitigationService)".into());
    }
    if !ev.log.problem_lines.is_empty() {
        v.findings.push(format!(
            "EEMS log has {} warning/error lines; newest: {}",
            ev.log.problem_lines.len(),
            excerpt(ev.log.problem_lines.last().map_or("", String::as_str), 200)
        ));
    }

    v.iis_state = Some(match &ev.iis_rules.error {
        Some(e) => {
            v.findings.push(format!(
                "IIS configuration not readable: {}",
                excerpt(e, 200)
            ));
            IisState::Unknown
        }
        None => {
            let issues = iis_issues(
                &ev.iis_rules.rules,
                &server.mitigations_applied,
                &server.mitigations_blocked,
            );
            for i in &issues {
                let serious = matches!(
                    i,
                    IisIssue::AppliedButMissing(_) | IisIssue::AppliedButDisabled(_)
                );
                v.warning |= serious;
                v.findings.push(format!(
                    "IIS rewrite rules: {}",
                    excerpt(&i.to_string(), 200)
                ));
            }
            if issues.is_empty() {
                IisState::Consistent
            } else {
                IisState::Issues(issues)
            }
        }
    });

    if let Some((c, _)) = newest_start_type_change(&ev.service_changes, now) {
        v.service_changed_time = c.time.clone();
        v.service_changed = c.message.clone();
        v.findings.push(format!(
            "{SERVICE_NAME} start type changed at {}: {}",
            c.time.as_deref().unwrap_or("?"),
            excerpt(c.message.as_deref().unwrap_or("no message"), 200)
        ));
    }
    if let Some(e) = &ev.service_changes_error {
        v.findings
            .push(format!("System log not readable: {}", excerpt(e, 200)));
    }
    v.service_started = ev.service_started.clone();

    if let Some(f) = &ev.flighting {
        v.flighting_service = Some(format!("{}/{}", f.status, f.start_type));
        if !f.status.eq_ignore_ascii_case("Running") {
            v.findings.push(format!(
                "MSExchangeFlighting is {}/{} (Microsoft does not support stopping it)",
                excerpt(&f.status, 40),
                excerpt(&f.start_type, 40)
            ));
        }
    }
    v
}

pub mod org;

#[cfg(test)]
mod tests;
