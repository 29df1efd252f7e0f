//! Scan-to-scan drift: what changed between two saved reports, and whether each change
//! made things worse. Pure: two reports in, a list of changes out; `app` reads the files
//! and `report::html` / the console render the result.
//!
//! The verdict rules (README "compare") in one place:
//!
//! * **status**: among scanned states, worse severity (ok < warning < critical) is a
//!   regression and better an improvement. Anything becoming `error` is a regression (the
//!   server can no longer be verified). Leaving `error` is an improvement when the server
//!   comes back `ok`, a regression when it comes back with a warning or critical finding
//!   (a finding the old scan did not show). `skipped` means out of EEMS scope (Edge, build
//!   below EEMS): leaving scope is neutral, entering it is judged like a new server.
//! * **server added**: neutral when it is `ok` or `skipped`, a regression otherwise (a new
//!   finding, or a server nobody could verify).
//! * **server removed**: a regression when the new scan's organisation still lists it
//!   among the servers the inventory missed (`not_in_inventory`: coverage was lost),
//!   neutral otherwise (decommissioned, or not knowable).
//! * **eems_state**: Enabled < Disabled… < Failed to query config; worse is a regression.
//! * **service**: leaving `Running` is a regression, reaching it an improvement.
//! * **pattern_service**: becoming Unreachable is a regression, Reachable an improvement.
//! * **mitigations_blocked**: a newly blocked ID is a regression, an unblocked one an
//!   improvement. **mitigations_applied**, **build**, **telemetry_enabled**: neutral (Exchange
//!   applies and retracts mitigations itself; HealthChecker gives telemetry no severity).
//! * **org mitigations_enabled**: True → False is a regression, False → True an improvement.
//! * **fetch_state** (evidence): becoming `Failing` is a regression, leaving it an
//!   improvement; moves among Fetching, No evidence and Unknown are neutral.
//! * **iis_state** (evidence): a new missing, disabled or orphaned rule is a regression, one
//!   gone an improvement; `blocked but present` is neutral (the admin chose to block). Compared
//!   only when both scans could read IIS.
//! * **service_changed** (evidence): a new start-type change (7040) is a regression; one
//!   that aged out of the 30 days is an improvement.
//! * **cert_floor** (evidence): becoming unable to fetch is a regression, the reverse an
//!   improvement.
//!
//! A field is compared only when both scans know it. A server that could not be probed has
//! no service or pattern data; that loss is the status change to `error`, not a flood of
//! "unknown" field changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analysis::{FetchState, IisIssue, IisState, ServiceCheck, Status, WriteType};
use crate::report::{ScanReport, ServerRow};

/// Whether a change needs attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Regression,
    Improvement,
    Neutral,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Regression => "regression",
            Verdict::Improvement => "improvement",
            Verdict::Neutral => "neutral",
        }
    }
}

/// What changed. For the mitigation lists, `old` set means the ID was removed and `new`
/// set means it was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The organisation's MitigationsEnabled (the change has no server).
    OrgMitigationsEnabled,
    /// The server is in one scan only; old/new hold its status there.
    Server,
    Status,
    EemsState,
    /// service_check, with service_status/start_type in brackets.
    Service,
    PatternService,
    MitigationsBlocked,
    MitigationsApplied,
    Build,
    TelemetryEnabled,
    FetchState,
    /// One IIS issue; `old` set means it went away, `new` set means it appeared.
    IisState,
    ServiceChanged,
    CertFloor,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::OrgMitigationsEnabled => "org_mitigations_enabled",
            Field::Server => "server",
            Field::Status => "status",
            Field::EemsState => "eems_state",
            Field::Service => "service",
            Field::PatternService => "pattern_service",
            Field::MitigationsBlocked => "mitigations_blocked",
            Field::MitigationsApplied => "mitigations_applied",
            Field::Build => "build",
            Field::TelemetryEnabled => "telemetry_enabled",
            Field::FetchState => "fetch_state",
            Field::IisState => "iis_state",
            Field::ServiceChanged => "service_changed",
            Field::CertFloor => "cert_floor",
        }
    }

    /// Short label for the console table.
    pub fn label(self) -> &'static str {
        match self {
            Field::OrgMitigationsEnabled => "org switch",
            Field::Server => "server",
            Field::Status => "status",
            Field::EemsState => "eems state",
            Field::Service => "service",
            Field::PatternService => "pattern",
            Field::MitigationsBlocked => "blocked",
            Field::MitigationsApplied => "applied",
            Field::Build => "build",
            Field::TelemetryEnabled => "telemetry",
            Field::FetchState => "fetch",
            Field::IisState => "iis rules",
            Field::ServiceChanged => "start type",
            Field::CertFloor => "cert floor",
        }
    }
}

/// One difference between the scans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// None for an organisation-level change.
    pub server: Option<String>,
    pub field: Field,
    pub old: Option<String>,
    pub new: Option<String>,
    pub verdict: Verdict,
}

/// Counts for the summary line and the exit status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftSummary {
    pub regressions: usize,
    pub improvements: usize,
    pub neutral: usize,
    pub servers_added: usize,
    pub servers_removed: usize,
    /// Servers in both scans with at least one change.
    pub servers_changed: usize,
    /// Servers in both scans.
    pub servers_compared: usize,
}

/// The result of a comparison, in server-name order (organisation first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub changes: Vec<Change>,
    pub summary: DriftSummary,
}

impl Drift {
    pub fn has_regression(&self) -> bool {
        self.summary.regressions > 0
    }
}

/// Why two reports cannot be compared, naming which one (`Which`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatible {
    pub which: Which,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Old,
    New,
}

/// Server names are Windows computer names: case-insensitive.
fn key(name: &str) -> String {
    name.to_lowercase()
}

fn index(report: &ScanReport, which: Which) -> Result<BTreeMap<String, &ServerRow>, Incompatible> {
    let mut map = BTreeMap::new();
    for row in &report.servers {
        if map.insert(key(&row.server), row).is_some() {
            // `scan` never writes a server twice; a file that does was edited or merged,
            // and any pairing we chose would be a guess.
            return Err(Incompatible {
                which,
                reason: format!("server '{}' appears more than once", row.server),
            });
        }
    }
    Ok(map)
}

/// Compares two scans. Fails only when they cannot be compared meaningfully.
pub fn compare(old: &ScanReport, new: &ScanReport) -> Result<Drift, Incompatible> {
    if let (Some(a), Some(b)) = (&old.organization.name, &new.organization.name)
        && a != b
    {
        return Err(Incompatible {
            which: Which::New,
            reason: format!(
                "scans organisation '{b}', the other report scans '{a}': not the same organisation"
            ),
        });
    }
    let old_rows = index(old, Which::Old)?;
    let new_rows = index(new, Which::New)?;

    let mut changes = Vec::new();
    let org = org_change(
        old.organization.mitigations_enabled,
        new.organization.mitigations_enabled,
    );
    changes.extend(org);

    let mut summary = DriftSummary::default();
    let mut keys: Vec<&String> = old_rows.keys().chain(new_rows.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        match (old_rows.get(k), new_rows.get(k)) {
            (Some(o), Some(n)) => {
                summary.servers_compared += 1;
                let before = changes.len();
                server_changes(o, n, &mut changes);
                if changes.len() > before {
                    summary.servers_changed += 1;
                }
            }
            (None, Some(n)) => {
                summary.servers_added += 1;
                changes.push(Change {
                    server: Some(n.server.clone()),
                    field: Field::Server,
                    old: None,
                    new: Some(n.status.as_str().into()),
                    verdict: entering(n.status),
                });
            }
            (Some(o), None) => {
                summary.servers_removed += 1;
                let still_in_org = new
                    .not_in_inventory
                    .iter()
                    .any(|u| key(&u.name) == key(&o.server));
                changes.push(Change {
                    server: Some(o.server.clone()),
                    field: Field::Server,
                    old: Some(o.status.as_str().into()),
                    new: None,
                    verdict: if still_in_org {
                        Verdict::Regression
                    } else {
                        Verdict::Neutral
                    },
                });
            }
            (None, None) => {}
        }
    }
    for c in &changes {
        match c.verdict {
            Verdict::Regression => summary.regressions += 1,
            Verdict::Improvement => summary.improvements += 1,
            Verdict::Neutral => summary.neutral += 1,
        }
    }
    Ok(Drift { changes, summary })
}

fn org_change(old: Option<bool>, new: Option<bool>) -> Option<Change> {
    let (Some(o), Some(n)) = (old, new) else {
        return None;
    };
    if o == n {
        return None;
    }
    Some(Change {
        server: None,
        field: Field::OrgMitigationsEnabled,
        old: Some(bool_text(o)),
        new: Some(bool_text(n)),
        verdict: if n {
            Verdict::Improvement
        } else {
            Verdict::Regression
        },
    })
}

fn bool_text(b: bool) -> String {
    if b { "True".into() } else { "False".into() }
}

/// A server that appears (new in the report, or back in EEMS scope) is judged by what it
/// brings: ok is nothing to act on, anything else is a finding the old scan did not have.
fn entering(status: Status) -> Verdict {
    match status {
        Status::Ok | Status::Skipped => Verdict::Neutral,
        Status::Warning | Status::Critical | Status::Error => Verdict::Regression,
    }
}

/// The verdict for a status transition (see the module comment), on the one severity
/// order of [`Status`].
pub fn status_verdict(old: Status, new: Status) -> Verdict {
    use Status::*;
    match (old, new) {
        _ if old == new => Verdict::Neutral,
        (_, Error) => Verdict::Regression,
        (_, Skipped) => Verdict::Neutral,
        (Error, Ok) => Verdict::Improvement,
        (Error | Skipped, n) => entering(n),
        (o, n) if n > o => Verdict::Regression,
        _ => Verdict::Improvement,
    }
}

/// A verdict's move judged by HealthChecker's colour for it (Grey/Green < Yellow < Red):
/// towards red is a regression, a move within one colour is neutral.
fn by_colour(old: WriteType, new: WriteType) -> Verdict {
    match old.cmp(&new) {
        std::cmp::Ordering::Less => Verdict::Regression,
        std::cmp::Ordering::Greater => Verdict::Improvement,
        std::cmp::Ordering::Equal => Verdict::Neutral,
    }
}

/// `Running`, or `Investigate (Stopped, Automatic)`: the check, with what Windows said
/// when that is not simply running and automatic.
fn service_text(r: &ServerRow) -> Option<String> {
    let check = r.service_check?;
    Some(match (&r.service_status, &r.service_start_type) {
        _ if check == ServiceCheck::Running => check.to_string(),
        (None, None) => check.to_string(),
        (s, t) => format!(
            "{check} ({}, {})",
            s.as_deref().unwrap_or("?"),
            t.as_deref().unwrap_or("?")
        ),
    })
}

/// Whether the row carries Get-ExchangeServer's view of the server (mitigation lists and
/// switches). Rows of servers the organisation did not describe have empty lists that
/// mean "unknown", not "none".
fn knows_mitigations(r: &ServerRow) -> bool {
    r.eems_state.is_some()
        || r.fqdn.is_some()
        || r.server_mitigations_enabled.is_some()
        || r.telemetry_enabled.is_some()
        || r.mitigations_applied_time.is_some()
        || !r.mitigations_applied.is_empty()
        || !r.mitigations_blocked.is_empty()
}

fn server_changes(o: &ServerRow, n: &ServerRow, out: &mut Vec<Change>) {
    let server = Some(n.server.clone());
    let mut push = |field, old: Option<String>, new: Option<String>, verdict| {
        out.push(Change {
            server: server.clone(),
            field,
            old,
            new,
            verdict,
        })
    };

    if o.status != n.status {
        push(
            Field::Status,
            Some(o.status.as_str().into()),
            Some(n.status.as_str().into()),
            status_verdict(o.status, n.status),
        );
    }
    if let (Some(a), Some(b)) = (o.eems_state, n.eems_state)
        && a != b
    {
        push(
            Field::EemsState,
            Some(a.to_string()),
            Some(b.to_string()),
            by_colour(a.write_type(), b.write_type()),
        );
    }
    if let (Some(a), Some(b)) = (service_text(o), service_text(n))
        && a != b
    {
        // The texts differ; the checks may not (Investigate with another service state).
        let v = match (o.service_check, n.service_check) {
            (Some(ca), Some(cb)) => by_colour(ca.write_type(), cb.write_type()),
            _ => Verdict::Neutral,
        };
        push(Field::Service, Some(a), Some(b), v);
    }
    if let (Some(a), Some(b)) = (o.pattern_service, n.pattern_service)
        && a != b
    {
        push(
            Field::PatternService,
            Some(a.to_string()),
            Some(b.to_string()),
            by_colour(a.write_type(), b.write_type()),
        );
    }
    if knows_mitigations(o) && knows_mitigations(n) {
        for (field, a, b, added, removed) in [
            (
                Field::MitigationsBlocked,
                &o.mitigations_blocked,
                &n.mitigations_blocked,
                Verdict::Regression,
                Verdict::Improvement,
            ),
            (
                Field::MitigationsApplied,
                &o.mitigations_applied,
                &n.mitigations_applied,
                Verdict::Neutral,
                Verdict::Neutral,
            ),
        ] {
            for id in a.iter().filter(|id| !b.contains(id)) {
                push(field, Some(id.clone()), None, removed);
            }
            for id in b.iter().filter(|id| !a.contains(id)) {
                push(field, None, Some(id.clone()), added);
            }
        }
    }
    if let (Some(a), Some(b)) = (&o.build, &n.build)
        && a != b
    {
        push(
            Field::Build,
            Some(a.clone()),
            Some(b.clone()),
            Verdict::Neutral,
        );
    }
    if let (Some(a), Some(b)) = (o.telemetry_enabled, n.telemetry_enabled)
        && a != b
    {
        push(
            Field::TelemetryEnabled,
            Some(bool_text(a)),
            Some(bool_text(b)),
            Verdict::Neutral,
        );
    }
    evidence_changes(o, n, &mut push);
}

/// The evidence rules of the module comment.
fn evidence_changes(
    o: &ServerRow,
    n: &ServerRow,
    push: &mut impl FnMut(Field, Option<String>, Option<String>, Verdict),
) {
    if let (Some(a), Some(b)) = (o.fetch_state, n.fetch_state)
        && a != b
    {
        let v = match (a, b) {
            (_, FetchState::Failing) => Verdict::Regression,
            (FetchState::Failing, _) => Verdict::Improvement,
            _ => Verdict::Neutral,
        };
        push(
            Field::FetchState,
            Some(a.to_string()),
            Some(b.to_string()),
            v,
        );
    }
    let issues = |s: &Option<IisState>| match s {
        Some(IisState::Consistent) => Some(Vec::new()),
        Some(IisState::Issues(l)) => Some(l.clone()),
        Some(IisState::Unknown) | None => None,
    };
    if let (Some(a), Some(b)) = (issues(&o.iis_state), issues(&n.iis_state)) {
        let weight = |i: &IisIssue, worse: Verdict| match i {
            IisIssue::BlockedButPresent(_) => Verdict::Neutral,
            _ => worse,
        };
        for i in a.iter().filter(|i| !b.contains(i)) {
            push(
                Field::IisState,
                Some(i.to_string()),
                None,
                weight(i, Verdict::Improvement),
            );
        }
        for i in b.iter().filter(|i| !a.contains(i)) {
            push(
                Field::IisState,
                None,
                Some(i.to_string()),
                weight(i, Verdict::Regression),
            );
        }
    }
    // Both scans ran the evidence probe (fetch_state is set whenever it did).
    if o.fetch_state.is_some()
        && n.fetch_state.is_some()
        && o.service_changed_time != n.service_changed_time
    {
        let text = |r: &ServerRow| {
            r.service_changed_time
                .as_ref()
                .map(|t| format!("{t}: {}", r.service_changed.as_deref().unwrap_or("")))
        };
        let v = if n.service_changed_time.is_some() {
            Verdict::Regression
        } else {
            Verdict::Improvement
        };
        push(Field::ServiceChanged, text(o), text(n), v);
    }
    if let (Some(a), Some(b)) = (o.cert_floor, n.cert_floor)
        && a != b
    {
        push(
            Field::CertFloor,
            Some(a.to_string()),
            Some(b.to_string()),
            by_colour(a.write_type(), b.write_type()),
        );
    }
}

#[cfg(test)]
mod tests;
