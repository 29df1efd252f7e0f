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
