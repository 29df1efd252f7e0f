//! The report model: one row per server plus the organisation's part. Every renderer
//! (console, CSV, JSON, HTML) and every reader (`report`, `compare`) shares these types.
//!
//! The JSON report is the stable format (`report`, `compare` and the HTML page read it
//! back); CSV is its flat projection for spreadsheets and audit evidence.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analysis::{
    CertFloor, EemsState, FetchState, IisState, Line, PatternService, ServiceCheck, Status,
    WriteType,
};
use crate::facts::{AdminAuditFacts, EvidenceFacts};

/// One server's result. Field names are the report contract (README "Report fields").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerRow {
    pub server: String,
    pub address: Option<String>,
    pub role: Option<String>,
    pub site: Option<String>,
    #[serde(default)]
    pub fqdn: Option<String>,
    pub build: Option<String>,
    pub product: Option<String>,
    pub status: Status,
    pub eems_state: Option<EemsState>,
    pub org_mitigations_enabled: Option<bool>,
    pub server_mitigations_enabled: Option<bool>,
    pub service_status: Option<String>,
    pub service_start_type: Option<String>,
    pub service_check: Option<ServiceCheck>,
    pub pattern_service: Option<PatternService>,
    pub ocs_status_code: Option<u16>,
    pub ocs_error: Option<String>,
    #[serde(default)]
    pub ocs_proxy: Option<String>,
    pub mitigations_applied: Vec<String>,
    pub mitigations_blocked: Vec<String>,
    pub mitigations_applied_time: Option<String>,
    pub telemetry_enabled: Option<bool>,
    pub findings: Vec<String>,
    pub error: Option<String>,
    #[serde(default)]
    pub error_stage: Option<Stage>,
    /// The mechanism that authenticated to this server (`ntlm`, `kerberos`, `basic`,
    /// `certificate`); absent when none did (reports from before the field load alike).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    pub duration_ms: u64,
    /// HealthChecker's display lines for this server, in its order (JSON only).
    #[serde(default)]
    pub healthchecker: Vec<HcLine>,
    // Evidence beyond HealthChecker (README "Evidence"). Absent where not collected, so
    // reports written before these fields existed load, and re-render, unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_state: Option<FetchState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_errors_window: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch_error_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_last_write: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_floor: Option<CertFloor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iis_state: Option<IisState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_changed_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_changed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flighting_service: Option<String>,
    // Org-level evidence from the org query over Remote PowerShell (README "Evidence").
    /// `WhenChangedUTC` of the server's AD object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_changed: Option<String>,
    /// `RingLevel` of Feature Flighting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_level: Option<i32>,
    /// `LastFlightingServiceRunTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_flighting_run: Option<String>,
    /// What the evidence probe returned, as collected (JSON only): the auditor's raw record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceFacts>,
}

/// A HealthChecker display line, as JSON carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HcLine {
    pub name: Option<String>,
    pub details: String,
    pub write_type: WriteType,
    /// Whether HealthChecker shows it in its HTML report (the More Information link is
    /// console-only there).
    pub html: bool,
}

impl From<&Line> for HcLine {
    fn from(l: &Line) -> Self {
        HcLine {
            name: l.name.clone(),
            details: l.details.clone(),
            write_type: l.write_type,
            html: l.html,
        }
    }
}

impl ServerRow {
    /// A row with only the identity filled in; the scan fills the rest.
    pub fn new(server: &str) -> ServerRow {
        ServerRow {
            server: server.to_string(),
            address: None,
            role: None,
            site: None,
            fqdn: None,
            build: None,
            product: None,
            status: Status::Error,
            eems_state: None,
            org_mitigations_enabled: None,
            server_mitigations_enabled: None,
            service_status: None,
            service_start_type: None,
            service_check: None,
            pattern_service: None,
            ocs_status_code: None,
            ocs_error: None,
            ocs_proxy: None,
            mitigations_applied: Vec::new(),
            mitigations_blocked: Vec::new(),
            mitigations_applied_time: None,
            telemetry_enabled: None,
            findings: Vec::new(),
            error: None,
            error_stage: None,
            auth: None,
            duration_ms: 0,
            healthchecker: Vec::new(),
            fetch_state: None,
            fetch_errors_window: None,
            last_fetch_error_time: None,
            last_fetch_error: None,
            last_applied_event: None,
            log_last_write: None,
            cert_floor: None,
            iis_state: None,
            service_changed_time: None,
            service_changed: None,
            service_started: None,
            flighting_service: None,
            when_changed: None,
            ring_level: None,
            last_flighting_run: None,
            evidence: None,
        }
    }
}

/// Counts per status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub total: usize,
    pub ok: usize,
    pub warning: usize,
    pub critical: usize,
    pub error: usize,
    pub skipped: usize,
}

impl Summary {
    pub fn add(&mut self, status: Status) {
        self.total += 1;
        match status {
            Status::Ok => self.ok += 1,
            Status::Warning => self.warning += 1,
            Status::Critical => self.critical += 1,
            Status::Error => self.error += 1,
            Status::Skipped => self.skipped += 1,
        }
    }
}

/// The organisation-level part of a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrgSection {
    pub name: Option<String>,
    pub mitigations_enabled: Option<bool>,
    /// The server the org probe ran on.
    pub queried_on: Option<String>,
    pub error: Option<String>,
    /// Who changed the EEMS switches in the last 90 days (`Search-AdminAuditLog`), or why
    /// that could not be read; absent where the org query did not search it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_audit: Option<AdminAuditFacts>,
}

/// An org server the inventory did not list (a coverage gap for the auditor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UninventoriedServer {
    pub name: String,
    pub fqdn: Option<String>,
    pub site: Option<String>,
    pub role: Option<String>,
    pub is_edge_server: Option<bool>,
}

/// Tool name and version, as every report states them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

impl Default for ToolInfo {
    fn default() -> Self {
        ToolInfo {
            name: "eems-scan".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// RFC 3339 UTC timestamp for reports, to the millisecond.
pub fn now_rfc3339() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// Where in the exchange a probe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Connect,
    Auth,
    Shell,
    Command,
    Parse,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Auth => "auth",
            Stage::Shell => "shell",
            Stage::Command => "command",
            Stage::Parse => "parse",
        }
    }
}

/// A whole scan as the JSON file holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanReport {
    pub tool: ToolInfo,
    pub started_at: String,
    pub finished_at: String,
    pub organization: OrgSection,
    pub summary: Summary,
    pub servers: Vec<ServerRow>,
    #[serde(default)]
    pub not_in_inventory: Vec<UninventoriedServer>,
    #[serde(default)]
    pub interrupted: bool,
}

impl ScanReport {
    /// Reads a report written by `scan`, naming the file and the reason when it cannot.
    pub fn load(path: &Path) -> Result<ScanReport, LoadError> {
        let path_buf = || path.to_path_buf();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path_buf(),
            source,
        })?;
        let report: ScanReport =
            serde_json::from_str(&text).map_err(|source| LoadError::NotAReport {
                path: path_buf(),
                source,
            })?;
        if report.tool.name != "eems-scan" {
            return Err(LoadError::OtherTool {
                path: path_buf(),
                tool: report.tool.name,
            });
        }
        Ok(report)
    }
}

/// Why a saved report could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not an eems-scan JSON report: {source}", path.display())]
    NotAReport {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: written by '{tool}', not eems-scan", path.display())]
    OtherTool { path: PathBuf, tool: String },
}
