//! Deciding who gets a host probe: Edge servers set aside, discovery's server list, and
//! the inventory matched with what the organisation says. Everything here is decided
//! before the first host probe, from the inventory and the org phase's answer alone.

use super::Job;
use super::matching::match_org_server;
use super::org::OrgResult;
use super::rows::{discovered_entry, fill_server_facts, identity_row};
use eems_core::analysis::{self, Scope, Status};
use eems_core::facts::ExchangeServerFacts;
use eems_core::inventory::InventoryEntry;
use eems_core::report::{ServerRow, UninventoriedServer};

/// Rows decided without a host probe, the host probes to run, and the organisation's
/// servers the inventory does not list.
pub(super) struct Plan {
    pub early_rows: Vec<ServerRow>,
    pub jobs: Vec<Job>,
    pub not_in_inventory: Vec<UninventoriedServer>,
}

/// Edge servers named by the inventory are never contacted, not even by the org phase:
/// their skipped rows, and the entries that remain candidates.
pub(super) fn set_aside_edge(entries: &[InventoryEntry]) -> (Vec<ServerRow>, Vec<InventoryEntry>) {
    let mut early_rows = Vec::new();
    let mut candidates = Vec::new();
    for e in entries {
        if e.is_edge() {
            let mut row = identity_row(e);
            row.status = Status::Skipped;
            row.findings.push(
                "skipped: Edge Transport server (inventory role); EEMS is not installed on Edge"
                    .into(),
            );
            early_rows.push(row);
        } else {
            candidates.push(e.clone());
        }
    }
    (early_rows, candidates)
}

/// Matches the candidates with the org query's server list and decides who gets a host
/// probe; with `discover_from`, the candidates are the organisation's servers instead.
pub(super) fn plan(
    entries: &[InventoryEntry],
    mut candidates: Vec<InventoryEntry>,
    org: &OrgResult,
    discover_from: Option<&str>,
    org_enabled: Option<bool>,
) -> Plan {
    let mut early_rows = Vec::new();
    if let Some(from) = discover_from {
        match &org.facts {
            // Edge servers stay in: scope() reports them as skipped, as for an inventory.
            Some(f) => {
                candidates = f
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(i, s)| discovered_entry(s, i + 1))
                    .collect();
            }
            // Nothing to scan, and that is an error the report must show.
            None => {
                let mut row = ServerRow::new(from);
                row.status = Status::Error;
                row.error = Some(format!(
                    "discovery failed: {}",
                    org.error
                        .as_deref()
                        .unwrap_or("the org query gave no answer")
                ));
                early_rows.push(row);
            }
        }
    }

    // Match the inventory with the organisation and decide who gets a host probe.
    let org_servers: &[ExchangeServerFacts] = match &org.facts {
        Some(f) if f.servers_error.is_none() => &f.servers,
        _ => &[],
    };
    let have_server_list = !org_servers.is_empty();
    let mut used = vec![false; org_servers.len()];
    // Edge servers the inventory lists are covered even though they are not probed.
    for e in entries.iter().filter(|e| e.is_edge()) {
        if let Some(i) = match_org_server(&e.name, org_servers) {
            used[i] = true;
        }
    }
    let mut jobs = Vec::new();
    for e in candidates {
        let found = match_org_server(&e.name, org_servers);
        if let Some(i) = found {
            used[i] = true;
        }
        match found.map(|i| &org_servers[i]) {
            Some(facts) => match analysis::scope(facts) {
                Scope::Skip(reason) => {
                    let mut row = identity_row(&e);
                    fill_server_facts(&mut row, facts, org_enabled);
                    row.status = Status::Skipped;
                    row.findings.push(format!("skipped: {reason}"));
                    early_rows.push(row);
                }
                Scope::InScope => jobs.push(Job {
                    entry: e,
                    facts: Some(facts.clone()),
                }),
            },
            None if have_server_list => {
                let mut row = identity_row(&e);
                row.status = Status::Error;
                row.error = Some(
                    "not attempted: Get-ExchangeServer does not list this server (not an \
                     Exchange server, or a name the organisation does not know)"
                        .into(),
                );
                early_rows.push(row);
            }
            // No org server list (the org probe failed): probe anyway, the row will say
            // `Failed to query config` like HealthChecker.
            None => jobs.push(Job {
                entry: e,
                facts: None,
            }),
        }
    }
    let not_in_inventory: Vec<UninventoriedServer> = if discover_from.is_some() {
        Vec::new()
    } else {
        org_servers
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(s, _)| UninventoriedServer {
                name: s.name.clone(),
                fqdn: s.fqdn.clone(),
                site: s.site.clone(),
                role: s.server_role.clone(),
                is_edge_server: s.is_edge_server,
            })
            .collect()
    };
    Plan {
        early_rows,
        jobs,
        not_in_inventory,
    }
}
