//! The EEMS verdict: pure functions, facts in, findings out.
//!
//! The decision table, labels and colours are those of CSS-Exchange HealthChecker's
//! `Analyzer/Security/Invoke-AnalyzerSecurityMitigationService.ps1` (reference:
//! `shared/reference/healthchecker-eems.md` §2), so that an Exchange admin reads the same words
//! they know from HealthChecker. [`Assessment::lines`] reproduces HealthChecker's display lines
//! byte for byte, quirks included; the other fields of [`Assessment`] are eems-scan's own
//! summary and deliberately diverge where HealthChecker hides collected data (documented at
//! each divergence, and listed in [`DIVERGENCES`]).

pub mod build;
pub mod evidence;
mod verdict;

use serde::{Deserialize, Serialize};

use crate::facts::{ExchangeServerFacts, HostFacts, OrgFacts};
use build::{ExchangeBuild, FetchTier, Product};
pub use evidence::org::{admin_audit_line, admin_audit_report, org_server_findings};
pub use evidence::{EvidenceVerdicts, IisIssue, IisState, assess_evidence};
pub use verdict::{
    CertFloor, EemsState, FetchState, PatternService, ServiceCheck, Status, WriteType,
};

/// Every deliberate divergence from HealthChecker, one line each (for the README).
pub const DIVERGENCES: &[&str] = &[
    "Get-Mitigations.ps1 line names `<install path>\\Scripts\\` from the host instead of HealthChecker's often empty $ExScripts (CSS-Exchange #2524).",
    "When the org MitigationsEnabled is missing, the report fields service_check/pattern_service/telemetry and their findings are still filled from the collected data; the HealthChecker lines stay the single Red line.",
    "IsEdgeServer null does not silently skip a server: the ServerRole decides (HealthChecker's pre-2023 test), and with no role either the server is checked, so a Mailbox server is never hidden from an audit.",
    "Mitigation lists drop empty-string elements before display (HealthChecker would print an empty line for [\"PING1\", \"\"]).",
    "StartType `AutomaticDelayedStart` / `Automatic (Delayed Start)` counts as Automatic, which is what HealthChecker effectively does (ServiceController reports delayed start as Automatic).",
    "The report adds a finding when the build is below or at the March 2023 SU (EEMS cannot fetch since the January 2025 certificate change); below it, the evidence verdict cert_floor makes the server a warning. HealthChecker does not check this.",
];

/// One HealthChecker display line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// `None` for lines printed without `Name: ` (the links and the Get-Mitigations hint).
    pub name: Option<String>,
    pub details: String,
    pub write_type: WriteType,
    /// Indentation in tabs (HealthChecker's TabNumber).
    pub tab: u8,
    /// Whether HealthChecker also emits an HTML detail row for this line.
    pub html: bool,
}

impl Line {
    fn new(name: Option<&str>, details: impl Into<String>, write_type: WriteType, tab: u8) -> Self {
        Self {
            name: name.map(str::to_string),
            details: details.into(),
            write_type,
            tab,
            html: true,
        }
    }

    /// The console/text form: TabNumber tabs, then `Name: Details` or `Details`.
    pub fn to_text(&self) -> String {
        let tabs = "\t".repeat(usize::from(self.tab));
        match &self.name {
            Some(n) => format!("{tabs}{n}: {}", self.details),
            None => format!("{tabs}{}", self.details),
        }
    }
}

/// Everything the report needs about one server's EEMS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    /// HealthChecker's overall line; `None` only when out of scope.
    pub eems_state: Option<EemsState>,
    /// `None` only when out of scope.
    pub service_check: Option<ServiceCheck>,
    /// `None` only when out of scope.
    pub pattern_service: Option<PatternService>,
    /// `DataCollectionEnabled`.
    pub telemetry: Option<bool>,
    pub status: Status,
    /// HealthChecker's display lines, in its order; empty when out of scope (HealthChecker
    /// prints nothing when its gate is false).
    pub lines: Vec<Line>,
    /// One short plain-English string per non-ok aspect, plus informational notes.
    pub findings: Vec<String>,
    pub build: Option<ExchangeBuild>,
    pub product: Option<Product>,
}

// User-visible HealthChecker strings (healthchecker-eems.md §2).
pub const NAME_OVERALL: &str = "Exchange Emergency Mitigation Service";
pub const NAME_SERVICE: &str = "Windows service";
pub const NAME_PATTERN: &str = "Pattern service";
pub const NAME_APPLIED: &str = "Mitigation applied";
pub const NAME_BLOCKED: &str = "Mitigation blocked";
pub const NAME_TELEMETRY: &str = "Telemetry enabled";
pub const MORE_INFO_EEMS: &str = "More Information: https://aka.ms/HC-EEMS";
pub const PATTERN_UNREACHABLE_LINE: &str =
    "Unreachable\r\n\t\tMore information: https://aka.ms/HelpConnectivityEEMS";

/// The Windows service name.
pub const SERVICE_NAME: &str = "MSExchangeMitigation";

/// Whether a server is checked at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    InScope,
    /// Not checked, with the reason in plain English.
    Skip(String),
}

/// Decides from `Get-ExchangeServer` data alone (before any host probe) whether a server is in
/// scope, following HealthChecker's gate (§2.0) with `AdminDisplayVersion` as the build.
///
/// Divergence: HealthChecker tests `IsEdgeServer -eq $false`, so a null IsEdgeServer silently
/// skips the server. A scanner must not hide a Mailbox server from an audit because one
/// property did not come back, so a null IsEdgeServer falls back to `ServerRole` (HealthChecker's
/// own test before 2023), and with no role either the server is checked: if it really is an Edge
/// server, the missing service shows up as a warning instead of a silent gap.
///
/// A missing or unreadable AdminDisplayVersion keeps the server in scope: the host probe's
/// ExSetup version decides later in [`assess`].
pub fn scope(server: &ExchangeServerFacts) -> Scope {
    if let Some(reason) = edge_reason(server) {
        return Scope::Skip(reason);
    }
    match server
        .admin_display_version
        .as_deref()
        .and_then(|v| v.parse::<ExchangeBuild>().ok())
    {
        Some(b) => build_scope(b),
        None => Scope::InScope,
    }
}

fn edge_reason(server: &ExchangeServerFacts) -> Option<String> {
    let role_edge = server
        .server_role
        .as_deref()
        .is_some_and(|r| r.to_ascii_lowercase().contains("edge"));
    if server.is_edge_server == Some(true) || role_edge {
        Some("Edge Transport server: EEMS is not installed on Edge".into())
    } else {
        None
    }
}

fn build_scope(b: ExchangeBuild) -> Scope {
    if build::eems_gate(b) {
        return Scope::InScope;
    }
    let p = build::product(b);
    Scope::Skip(match (p, build::eems_min_build(b)) {
        (Product::Exchange2013, _) => {
            format!("build {b} (Exchange 2013): EEMS does not exist on Exchange 2013")
        }
        (_, Some((min, release))) => {
            format!("build {b} ({p}) is below EEMS (needs {min}, {release})")
        }
        (_, None) => format!("build {b} is not an Exchange 2016, 2019 or SE build"),
    })
}

/// The build the report shows: ExSetup.exe's version from the host (HealthChecker's primary
/// source), else `AdminDisplayVersion`.
pub fn report_build(server: &ExchangeServerFacts, host: &HostFacts) -> Option<ExchangeBuild> {
    host.exsetup_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .or_else(|| {
            server
                .admin_display_version
                .as_deref()
                .and_then(|v| v.parse().ok())
        })
}

/// HealthChecker's emptiness rule (§1.2): a list shows lines when it has at least one element,
/// and a list holding only empty strings is empty. Empty elements are dropped (divergence: a
/// mixed list would give HealthChecker an empty line).
fn present(list: &[String]) -> Vec<&str> {
    list.iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect()
}

/// `<install path>\Scripts\`, or empty like HealthChecker's unset `$ExScripts`.
fn scripts_path(host: &HostFacts) -> String {
    match host.install_path.as_deref().map(str::trim) {
        Some(p) if !p.is_empty() => {
            let sep = if p.ends_with('\\') || p.ends_with('/') {
                ""
            } else {
                "\\"
            };
            format!("{p}{sep}Scripts\\")
        }
        _ => String::new(),
    }
}

/// §2.3: `Running` only for Running + Automatic (case-insensitive).
fn service_check(host: &HostFacts) -> ServiceCheck {
    match &host.service {
        None => ServiceCheck::Unknown,
        Some(s) => {
            let start = s.start_type.trim();
            let automatic = start.eq_ignore_ascii_case("Automatic")
                || start.eq_ignore_ascii_case("AutomaticDelayedStart")
                || start.eq_ignore_ascii_case("Automatic (Delayed Start)");
            if s.status.trim().eq_ignore_ascii_case("Running") && automatic {
                ServiceCheck::Running
            } else {
                ServiceCheck::Investigate
            }
        }
    }
}

/// §2.1, in HealthChecker's evaluation order: a missing org value is the Red branch.
fn overall(org: Option<bool>, server: Option<bool>) -> EemsState {
    match (org, server) {
        (None, _) => EemsState::FailedToQuery,
        (Some(true), Some(true)) => EemsState::Enabled,
        (Some(false), Some(true)) => EemsState::DisabledOnOrg,
        (Some(true), Some(false)) => EemsState::DisabledOnServer,
        // both false, and the quirk: a null server value falls through to the else branch.
        (Some(_), _) => EemsState::Disabled,
    }
}

/// Assesses one server, given the org-level `MitigationsEnabled`.
///
/// `lines` follow HealthChecker exactly (§2.8), including its quirks: org true with the server
/// value missing reads `Disabled`; a missing org value gives only the Red
/// `Failed to query config` line.
///
/// Divergence: when the org value is missing, `service_check`, `pattern_service`, `telemetry`
/// and their findings are still computed from the facts, because eems-scan did collect them and
/// an admin fixing the org query wants to know the rest too. The status is critical anyway.
///
/// Out-of-scope servers (Edge, build below the gate, Exchange 2013) get [`Status::Skipped`],
/// no lines and the reason as the single finding.
pub fn assess(
    org_mitigations_enabled: Option<bool>,
    server: &ExchangeServerFacts,
    host: &HostFacts,
) -> Assessment {
    let build = report_build(server, host);
    let product = build.map(build::product);

    let skip = edge_reason(server).or_else(|| match build.map(build_scope) {
        Some(Scope::Skip(r)) => Some(r),
        _ => None,
    });
    if let Some(reason) = skip {
        return Assessment {
            eems_state: None,
            service_check: None,
            pattern_service: None,
            telemetry: server.data_collection_enabled,
            status: Status::Skipped,
            lines: Vec::new(),
            findings: vec![reason],
            build,
            product,
        };
    }

    let svc = service_check(host);
    let reachable = host.ocs.status_code == Some(200);
    let applied = present(&server.mitigations_applied);
    let blocked = present(&server.mitigations_blocked);
    let telemetry = server.data_collection_enabled;

    // --- HealthChecker lines (§2.8)
    let mut lines = Vec::new();
    let state = overall(org_mitigations_enabled, server.mitigations_enabled);
    let wt = state.write_type();
    lines.push(Line::new(Some(NAME_OVERALL), state.label(), wt, 1));
    match state {
        EemsState::FailedToQuery => {}
        _ => {
            if wt == WriteType::Yellow {
                let mut link = Line::new(None, MORE_INFO_EEMS, wt, 2);
                link.html = false;
                lines.push(link);
            }
            lines.push(Line::new(
                Some(NAME_SERVICE),
                svc.label(),
                svc.write_type(),
                2,
            ));
            lines.push(if reachable {
                Line::new(
                    Some(NAME_PATTERN),
                    PatternService::Reachable.label(),
                    WriteType::Grey,
                    2,
                )
            } else {
                Line::new(
                    Some(NAME_PATTERN),
                    PATTERN_UNREACHABLE_LINE,
                    WriteType::Yellow,
                    2,
                )
            });
            if !applied.is_empty() {
                for id in &applied {
                    lines.push(Line::new(Some(NAME_APPLIED), *id, WriteType::Grey, 2));
                }
                lines.push(Line::new(
                    None,
                    format!(
                        "Run: 'Get-Mitigations.ps1' from: '{}' to learn more.",
                        scripts_path(host)
                    ),
                    WriteType::Grey,
                    2,
                ));
            }
            for id in &blocked {
                lines.push(Line::new(Some(NAME_BLOCKED), *id, WriteType::Yellow, 2));
            }
            if let Some(t) = telemetry {
                let v = if t { "True" } else { "False" };
                lines.push(Line::new(Some(NAME_TELEMETRY), v, WriteType::Grey, 2));
            }
        }
    }

    // --- Findings and status
    let mut findings = Vec::new();
    let mut warning = false;
    match (org_mitigations_enabled, server.mitigations_enabled) {
        (None, _) => findings.push(
            "Get-OrganizationConfig returned no MitigationsEnabled: the cmdlet failed or the \
             answering Exchange build predates EEMS"
                .to_string(),
        ),
        (Some(true), Some(true)) => {}
        (Some(false), Some(true)) => findings.push("EEMS disabled on org level".into()),
        (Some(true), Some(false)) => findings.push("EEMS disabled on server level".into()),
        (Some(false), Some(false)) => {
            findings.push("EEMS disabled on org level and on server level".into())
        }
        (Some(true), None) => findings.push(
            "EEMS reads as disabled: the server reported no MitigationsEnabled (HealthChecker \
             shows 'Disabled')"
                .into(),
        ),
        (Some(false), None) => findings
            .push("EEMS disabled on org level; the server reported no MitigationsEnabled".into()),
    }
    if state.is_disabled() {
        warning = true;
    }
    match (&host.service, svc) {
        (_, ServiceCheck::Running) => {}
        (Some(s), _) => {
            warning = true;
            findings.push(format!(
                "{SERVICE_NAME} is {}/{} (expected Running/Automatic)",
                crate::text::excerpt(&s.status, 40),
                crate::text::excerpt(&s.start_type, 40)
            ));
        }
        (None, _) => {
            warning = true;
            findings.push(format!("{SERVICE_NAME} service not found"));
        }
    }
    if !reachable {
        warning = true;
        let why = match (&host.ocs.error, host.ocs.status_code) {
            (Some(e), _) if !e.trim().is_empty() => crate::text::excerpt(e, 200),
            (_, Some(code)) => format!("HTTP {code}"),
            _ => "no response recorded".to_string(),
        };
        findings.push(format!("OCS endpoint unreachable from the server: {why}"));
    }
    for id in &blocked {
        warning = true;
        findings.push(format!(
            "mitigation blocked: {}",
            crate::text::excerpt(id, 80)
        ));
    }
    match build {
        None => findings.push(
            "build unknown (no ExSetup version and no AdminDisplayVersion): March 2023 floor \
             not checked"
                .into(),
        ),
        Some(b) => match build::fetch_tier(b) {
            FetchTier::CannotFetch => findings.push(format!(
                "build {b} is older than the March 2023 SU: EEMS cannot fetch mitigations since \
                 the January 2025 certificate change"
            )),
            FetchTier::AtFloor => findings.push(format!(
                "build {b} is exactly the March 2023 SU: Microsoft says builds newer than March \
                 2023 can still fetch mitigations after the January 2025 certificate change; \
                 update to be sure"
            )),
            FetchTier::Ok | FetchTier::NotApplicable => {}
        },
    }

    let status = if org_mitigations_enabled.is_none() {
        Status::Critical
    } else if warning {
        Status::Warning
    } else {
        Status::Ok
    };

    Assessment {
        eems_state: Some(state),
        service_check: Some(svc),
        pattern_service: Some(if reachable {
            PatternService::Reachable
        } else {
            PatternService::Unreachable
        }),
        telemetry,
        status,
        lines,
        findings,
        build,
        product,
    }
}

/// [`assess`] with the whole org probe result, so that a missing org value names the remote
/// error (`Get-OrganizationConfig returned no MitigationsEnabled: <why>`).
pub fn assess_in_org(org: &OrgFacts, server: &ExchangeServerFacts, host: &HostFacts) -> Assessment {
    let mut a = assess(org.mitigations_enabled, server, host);
    if org.mitigations_enabled.is_none() && a.status != Status::Skipped {
        let why = match org.error.as_deref().map(str::trim) {
            Some(e) if !e.is_empty() => crate::text::excerpt(e, 200),
            _ => "the property is missing (the answering Exchange build predates EEMS?)".into(),
        };
        if let Some(f) = a
            .findings
            .iter_mut()
            .find(|f| f.starts_with("Get-OrganizationConfig"))
        {
            *f = format!("Get-OrganizationConfig returned no MitigationsEnabled: {why}");
        }
    }
    a
}

#[cfg(test)]
mod tests;
