//! Org-level evidence (issue 11; eems-evidence.md E4, E8, E10), from the org query over
//! Exchange Remote PowerShell: per server `WhenChangedUTC`, `RingLevel` and
//! `LastFlightingServiceRunTime`; once per organisation the admin audit log of the EEMS
//! switches. Informational only: these add findings and never change a status, so
//! HealthChecker's labels and the v1 status rules stay as they are.

use time::OffsetDateTime;

use super::{parse_time, within};
use crate::analysis::build::{self, ExchangeBuild};
use crate::facts::{AdminAuditEntry, AdminAuditFacts, ExchangeServerFacts};
use crate::text::excerpt;

/// How far back `Search-AdminAuditLog` looks (Exchange keeps 90 days by default).
pub const ADMIN_AUDIT_DAYS: u32 = 90;
pub const AUDIT_CMDLET: &str = "Search-AdminAuditLog";
/// `-Cmdlets`: the two cmdlets that set the EEMS switches.
pub const AUDIT_CMDLETS: &[&str] = &["Set-OrganizationConfig", "Set-ExchangeServer"];
/// `-Parameters`: the switches themselves.
pub const AUDIT_PARAMETERS: &[&str] = &["MitigationsEnabled", "MitigationsBlocked"];
/// MSExchangeFlighting checks hourly: a last run older than this means it stopped working.
pub const FLIGHTING_STALE_DAYS: i64 = 7;
/// HealthChecker's Ring Level details when `RingLevel` is null on a build that has it
/// (`Invoke-AnalyzerExchangeInformation.ps1`).
pub const RING_LEVEL_UNKNOWN: &str = "Unknown - No data on Get-ExchangeServer related to this feature. Likely due to connecting to an Exchange Server for shell not on supported build.";
/// What an account without the audit role is told (Exchange infrastructure permissions:
/// "View-only administrator audit logging"; the View-Only Audit Logs role page).
pub const AUDIT_RBAC: &str = "the account may not run Search-AdminAuditLog: it needs the View-Only Audit Logs or Audit Logs role (Organization Management, Records Management and Compliance Management have one by default); View-Only Organization Management does not include it";

/// `RingLevel` with its ring's name, as Feature Flighting's documentation names them.
pub fn ring_label(ring: i32) -> String {
    match ring {
        0 => "0 (Early Adopter)".to_string(),
        1 => "1 (Worldwide)".to_string(),
        2 => "2 (Admin Action)".to_string(),
        other => other.to_string(),
    }
}

/// Whether the server should carry Feature Flighting data. `WhenChangedUTC` exists on every
/// AD object: when it is there, the source read these properties (the WinRS org probe and
/// older org files do not), so a missing `RingLevel` is news and not a gap of the source.
fn flighting_expected(server: &ExchangeServerFacts, build: Option<ExchangeBuild>) -> bool {
    server.when_changed.is_some()
        && server.is_edge_server != Some(true)
        && build.is_some_and(build::has_feature_flighting)
}

/// Whether the last change of the server's AD object (`WhenChangedUTC`) was EEMS writing
/// `MitigationsAppliedTime`: the two equal to the second.
pub fn last_change_was_eems(when_changed: Option<&str>, applied_time: Option<&str>) -> bool {
    let second = |t: Option<&str>| parse_time(t).map(|t| t.unix_timestamp());
    let changed = second(when_changed);
    changed.is_some() && changed == second(applied_time)
}

/// The informational findings of one server's org-level evidence.
pub fn org_server_findings(
    server: &ExchangeServerFacts,
    build: Option<ExchangeBuild>,
    now: OffsetDateTime,
) -> Vec<String> {
    let mut out = Vec::new();
    if server.ring_level.is_none() && flighting_expected(server, build) {
        out.push(format!(
            "Feature Flighting ring level: {RING_LEVEL_UNKNOWN}"
        ));
        return out;
    }
    let has_flighting = server.ring_level.is_some();
    match server.last_flighting_run.as_deref() {
        Some(t) => {
            let stale = time::Duration::days(FLIGHTING_STALE_DAYS);
            match (within(Some(t), now, stale), parse_time(Some(t))) {
                (Some(false), Some(at)) => out.push(format!(
                    "Feature Flighting last ran at {t}, {} days ago (MSExchangeFlighting checks \
                     hourly, over the same OCS endpoint and proxy as EEMS)",
                    (now - at).whole_days()
                )),
                (None, _) | (_, None) => out.push(format!(
                    "Feature Flighting last run time is not a time: {}",
                    excerpt(t, 60)
                )),
                _ => {}
            }
        }
        None if has_flighting => {
            out.push("Feature Flighting has no last run time (it never ran)".to_string());
        }
        None => {}
    }
    out
}

/// The report's `admin_audit`: entries newest first, the error in plain words.
pub fn admin_audit_report(f: &AdminAuditFacts) -> AdminAuditFacts {
    let mut entries = f.entries.clone();
    // Newest first; entries without a readable time last, in the order they came.
    entries.sort_by_key(|e| std::cmp::Reverse(parse_time(e.when.as_deref())));
    AdminAuditFacts {
        window_days: f.window_days.or(Some(ADMIN_AUDIT_DAYS)),
        entries,
        error: f.error.as_deref().map(audit_error_words),
    }
}

/// RBAC hides a cmdlet an account may not run: Exchange says it does not exist.
fn audit_error_words(raw: &str) -> String {
    if raw.contains("is not recognized as the name of a cmdlet") {
        AUDIT_RBAC.to_string()
    } else {
        format!("{AUDIT_CMDLET} failed: {}", excerpt(raw, 300))
    }
}

/// `MitigationsEnabled=False; MitigationsBlocked=M2`.
pub fn changes_text(e: &AdminAuditEntry) -> String {
    e.changes
        .iter()
        .map(|c| format!("{}={}", c.name, c.value.as_deref().unwrap_or("")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether the entry switched EEMS off (`MitigationsEnabled` to false).
pub fn disabled_mitigations(e: &AdminAuditEntry) -> bool {
    e.changes.iter().any(|c| {
        c.name.eq_ignore_ascii_case("MitigationsEnabled")
            && c.value.as_deref().is_some_and(|v| {
                v.trim()
                    .trim_start_matches('$')
                    .eq_ignore_ascii_case("false")
            })
    })
}

/// The console's one line about the audit trail (of a report section: error in words,
/// entries newest first).
pub fn admin_audit_line(a: &AdminAuditFacts) -> String {
    let days = a.window_days.unwrap_or(ADMIN_AUDIT_DAYS);
    if let Some(e) = &a.error {
        return format!("Admin audit log: {}", excerpt(e, 300));
    }
    let switches = AUDIT_PARAMETERS.join("/");
    let Some(newest) = a.entries.first() else {
        return format!("Admin audit log: no change of {switches} in {days} days");
    };
    let n = a.entries.len();
    let off = a.entries.iter().filter(|e| disabled_mitigations(e)).count();
    let off = if off > 0 {
        format!("; {off} set MitigationsEnabled to False")
    } else {
        String::new()
    };
    format!(
        "Admin audit log: {n} change{} of {switches} in {days} days{off}; newest by {} at {}: {} {} {}",
        if n == 1 { "" } else { "s" },
        excerpt(newest.who.as_deref().unwrap_or("?"), 80),
        newest.when.as_deref().unwrap_or("?"),
        excerpt(newest.cmdlet.as_deref().unwrap_or("?"), 40),
        excerpt(newest.object.as_deref().unwrap_or("?"), 80),
        excerpt(&changes_text(newest), 120),
    )
}

#[cfg(test)]
mod tests;
