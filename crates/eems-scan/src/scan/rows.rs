//! Filling a [`ServerRow`] from what is known about a server: the inventory, the org
//! query's server facts, and the host probe's assessment. Kept apart from the coordinator
//! so that every column's source is in one place.

use eems_core::analysis::{self, Status};
use eems_core::facts::{ExchangeServerFacts, HostFacts, OrgFacts};
use eems_core::inventory::InventoryEntry;
use eems_core::report::{HcLine, ServerRow};

/// The row's identity columns from the inventory.
pub(super) fn identity_row(e: &InventoryEntry) -> ServerRow {
    let mut row = ServerRow::new(&e.name);
    row.address = e.address.clone();
    row.role = e.role.clone();
    row.site = e.site.clone();
    row
}

/// What the org probe knows about a server, before (or without) its host probe.
pub(super) fn fill_server_facts(
    row: &mut ServerRow,
    f: &ExchangeServerFacts,
    org_enabled: Option<bool>,
) {
    row.fqdn = f.fqdn.clone();
    if row.role.is_none() {
        row.role = f.server_role.clone();
    }
    if row.site.is_none() {
        row.site = f.site.clone();
    }
    if let Some(b) = f
        .admin_display_version
        .as_deref()
        .and_then(|v| v.parse::<analysis::build::ExchangeBuild>().ok())
    {
        row.build = Some(b.to_string());
        row.product = Some(analysis::build::product(b).label().to_string());
    }
    row.org_mitigations_enabled = org_enabled;
    row.server_mitigations_enabled = f.mitigations_enabled;
    row.mitigations_applied = f.mitigations_applied.clone();
    row.mitigations_blocked = f.mitigations_blocked.clone();
    row.mitigations_applied_time = f.mitigations_applied_time.clone();
    row.telemetry_enabled = f.data_collection_enabled;
    row.when_changed = f.when_changed.clone();
    row.ring_level = f.ring_level;
    row.last_flighting_run = f.last_flighting_run.clone();
}

pub(super) fn fill_assessment(
    row: &mut ServerRow,
    org: &OrgFacts,
    server: &ExchangeServerFacts,
    host: &HostFacts,
    now: time::OffsetDateTime,
) {
    let mut a = analysis::assess_in_org(org, server, host);
    let v = analysis::assess_evidence(host.evidence.as_ref(), server, a.build, now);
    a.add_evidence(&v);
    if a.status != Status::Skipped {
        // Informational: no status changes (README "Evidence", org level).
        a.findings
            .extend(analysis::org_server_findings(server, a.build, now));
        row.fetch_state = v.fetch_state;
        row.fetch_errors_window = v.fetch_errors_window;
        row.last_fetch_error_time = v.last_fetch_error_time;
        row.last_fetch_error = v.last_fetch_error;
        row.last_applied_event = v.last_applied_event;
        row.log_last_write = v.log_last_write;
        row.cert_floor = v.cert_floor;
        row.iis_state = v.iis_state;
        row.service_changed_time = v.service_changed_time;
        row.service_changed = v.service_changed;
        row.service_started = v.service_started;
        row.flighting_service = v.flighting_service;
        row.evidence = host.evidence.clone();
    }
    if let Some(b) = &a.build {
        row.build = Some(b.to_string());
    }
    if let Some(p) = a.product {
        row.product = Some(p.label().to_string());
    }
    row.status = a.status;
    row.eems_state = a.eems_state;
    row.service_status = host.service.as_ref().map(|s| s.status.clone());
    row.service_start_type = host.service.as_ref().map(|s| s.start_type.clone());
    row.service_check = a.service_check;
    row.pattern_service = a.pattern_service;
    row.ocs_status_code = host.ocs.status_code;
    row.ocs_error = host.ocs.error.clone();
    row.ocs_proxy = host.ocs.proxy.clone();
    row.telemetry_enabled = a.telemetry;
    row.findings = a.findings.clone();
    row.healthchecker = a.lines.iter().map(HcLine::from).collect();
}

pub(super) fn discovered_entry(s: &ExchangeServerFacts, line: usize) -> InventoryEntry {
    InventoryEntry {
        name: s.name.clone(),
        address: s.fqdn.clone(),
        port: None,
        role: s.server_role.clone(),
        site: s.site.clone(),
        fqdn: s.fqdn.clone(),
        line,
    }
}
