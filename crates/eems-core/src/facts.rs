//! The facts the probes bring back, as the analysis sees them.
//!
//! These are the typed form of remote probe protocol v1 (see README, "Contract").
//! Parsing (with Windows PowerShell 5.1's quirks) lives in [`crate::probe::parse`];
//! these types carry no PowerShell oddities any more.

use serde::{Deserialize, Serialize};

/// What the org probe (`eems-probe:org:1`) reports: one Get-OrganizationConfig and one
/// Get-ExchangeServer for the whole organisation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrgFacts {
    pub name: Option<String>,
    /// `(Get-OrganizationConfig).MitigationsEnabled`; `None` when the cmdlet failed or the
    /// property does not exist on the build that answered.
    pub mitigations_enabled: Option<bool>,
    /// Why Get-OrganizationConfig failed, as the remote side said it.
    pub error: Option<String>,
    pub servers: Vec<ExchangeServerFacts>,
    /// Why Get-ExchangeServer failed, as the remote side said it.
    pub servers_error: Option<String>,
    /// `Search-AdminAuditLog` for changes of the EEMS switches (README "Evidence"); `None`
    /// when the path that answered does not search it (the WinRS org probe, older org files).
    #[serde(default)]
    pub admin_audit: Option<AdminAuditFacts>,
}

/// Who changed `MitigationsEnabled`/`MitigationsBlocked`, once per organisation: the
/// entries of the admin audit log, or why the search failed. A failed search never fails
/// the org query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdminAuditFacts {
    /// How far back the search looked.
    #[serde(default)]
    pub window_days: Option<u32>,
    #[serde(default)]
    pub entries: Vec<AdminAuditEntry>,
    /// Why the search failed: as the remote side said it in the facts, in plain words in
    /// the report.
    #[serde(default)]
    pub error: Option<String>,
}

/// One `AdminAuditLogEvent`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdminAuditEntry {
    /// `Caller` (e.g. `contoso.com/Users/Administrator`).
    pub who: Option<String>,
    /// `RunDate`, RFC 3339 UTC.
    pub when: Option<String>,
    /// `CmdletName`.
    pub cmdlet: Option<String>,
    /// `ObjectModified`.
    pub object: Option<String>,
    /// `CmdletParameters`: what the cmdlet was given.
    #[serde(default)]
    pub changes: Vec<AuditChange>,
}

/// One `AdminAuditLogCmdletParameter`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditChange {
    pub name: String,
    pub value: Option<String>,
}

/// One `Get-ExchangeServer` object, reduced to what the EEMS check reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExchangeServerFacts {
    pub name: String,
    pub fqdn: Option<String>,
    pub site: Option<String>,
    pub server_role: Option<String>,
    pub is_edge_server: Option<bool>,
    /// e.g. `Version 15.2 (Build 1544.4)`.
    pub admin_display_version: Option<String>,
    pub mitigations_enabled: Option<bool>,
    pub mitigations_applied: Vec<String>,
    pub mitigations_blocked: Vec<String>,
    /// RFC 3339, UTC.
    pub mitigations_applied_time: Option<String>,
    pub data_collection_enabled: Option<bool>,
    pub internet_web_proxy: Option<String>,
    /// `WhenChangedUTC`: the last change of the server's AD object, RFC 3339 UTC.
    #[serde(default)]
    pub when_changed: Option<String>,
    /// `RingLevel` of Feature Flighting (2019 CU15+ and SE: 0 Early Adopter, 1 Worldwide,
    /// 2 Admin Action); `None` on builds without it.
    #[serde(default)]
    pub ring_level: Option<i32>,
    /// `LastFlightingServiceRunTime`, RFC 3339 UTC.
    #[serde(default)]
    pub last_flighting_run: Option<String>,
}

/// What the host probe (`eems-probe:host:1`) reports from the server itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    pub computer_name: Option<String>,
    /// ExSetup.exe FileVersion as the host printed it (may be zero-padded: `15.02.1544.004`).
    pub exsetup_version: Option<String>,
    /// Exchange install path (`...\V15\`), used for the Get-Mitigations.ps1 hint.
    pub install_path: Option<String>,
    /// `None` when MSExchangeMitigation is not installed (or Get-Service failed).
    pub service: Option<ServiceFacts>,
    pub ocs: OcsFacts,
    /// What the evidence part (`eems-probe:host:2`) found; `None` when it was not run or
    /// the server answered only v1.
    #[serde(default)]
    pub evidence: Option<EvidenceFacts>,
}

/// The host probe's evidence beyond HealthChecker (issue 11; README "Evidence"). Each part
/// carries its own `error`, so one unreadable source does not hide the others.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvidenceFacts {
    /// How far back the event queries looked (`--evidence-days`).
    pub window_days: Option<u32>,
    pub events: EventFacts,
    /// System log, Service Control Manager 7040/7036/7031 naming the EEMS service, 30 days,
    /// newest first, at most 20.
    pub service_changes: Vec<ServiceChange>,
    /// Why the System log could not be read.
    pub service_changes_error: Option<String>,
    /// When the MSExchangeMitigation process started (RFC 3339 UTC).
    pub service_started: Option<String>,
    pub log: LogFacts,
    pub iis_rules: IisRulesFacts,
    /// MSExchangeFlighting (2019 CU15+ and SE); `None` where it is not installed.
    pub flighting: Option<ServiceFacts>,
}

/// Application log, provider `MSExchange Mitigation Service`, within the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventFacts {
    pub error: Option<String>,
    /// Event 1008: EEMS failed (typically to reach or trust the OCS).
    pub fetch_errors: Option<EventSummary>,
    /// Events 1005 and 1006: a mitigation applied.
    pub applied: Option<EventSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventSummary {
    pub count: u64,
    /// Newest event, RFC 3339 UTC.
    pub last_time: Option<String>,
    /// Its message, at most 400 characters.
    pub last_message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceChange {
    pub time: Option<String>,
    pub id: u32,
    pub message: Option<String>,
}

/// The newest file in `<install path>\Logging\MitigationService`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogFacts {
    pub error: Option<String>,
    pub folder_exists: Option<bool>,
    pub newest_file: Option<String>,
    pub newest_write_time: Option<String>,
    /// Up to 20 Warning/Error/untrusted-endpoint/certificate lines from its last 1 MiB.
    pub problem_lines: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IisRulesFacts {
    pub error: Option<String>,
    pub rules: Vec<IisRule>,
}

/// A URL Rewrite rule or precondition named `EEMS *`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IisRule {
    pub name: String,
    /// `rules`, `outboundRules`, `globalRules` or `preConditions`.
    pub section: Option<String>,
    pub enabled: bool,
    /// `applicationHost.config`, `Default Web Site web.config` or `owa web.config`.
    pub file: Option<String>,
}

/// Status and StartType as ServiceController names them (`Running`, `Automatic`, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceFacts {
    pub status: String,
    pub start_type: String,
}

/// The GET to the OCS endpoint, sent from the server through its own proxy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OcsFacts {
    pub url: Option<String>,
    pub proxy: Option<String>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub elapsed_ms: Option<u64>,
}
