//! The coordinator: inventory → one org probe → concurrent host probes → analysis → rows.
//!
//! Rows stream to the report sinks as servers finish, so memory grows with the number of
//! probes in flight, not with the fleet (beyond a small console row per server), and an
//! interrupted run has already written every finished row.
//!
//! Three things never let one server spoil the scan: every host probe has its own
//! deadline (connect, auth, shell, command and polls included); a failure becomes that
//! server's error row; and the lockout guard stops trying a password that the directory
//! is already rejecting, before it locks the account out.

mod matching;
mod org_source;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::render::console::ConsoleRow;
use crate::render::{RowSink, ScanEnd, ScanStart};
use crate::transport::{self, FailureKind, ProbeError, Target, TransportConfig};
use eems_core::analysis::{self, Scope, Status};
use eems_core::facts::{ExchangeServerFacts, HostFacts, OrgFacts};
use eems_core::inventory::InventoryEntry;
use eems_core::probe::{self, HostProbeParams, parse};
use eems_core::report::{
    HcLine, OrgSection, ServerRow, Stage, Summary, UninventoriedServer, now_rfc3339,
};
use eems_core::text::excerpt;

pub use matching::match_org_server;
pub use org_source::{MAX_ORG_DATA_AGE, ORG_COMMAND, OrgVia, load_org_data};

/// Servers the org probe is tried on before the scan gives up on org data.
pub const ORG_ATTEMPTS: usize = 3;

/// Settings of one scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub transport: TransportConfig,
    pub concurrency: usize,
    /// Per-server deadline, everything included.
    pub timeout: Duration,
    /// Run the org probe here first.
    pub org_server: Option<String>,
    pub ocs_url: String,
    pub ocs_timeout_secs: u64,
    /// Authentication failures (servers) after which no new connection is made; 0 = off.
    pub max_auth_failures: usize,
    /// How the org query reaches the organisation.
    pub org_via: OrgVia,
    /// Org facts from this file (`eems-scan org-command`) instead of any org query.
    pub org_data: Option<std::path::PathBuf>,
}

/// Which servers to scan.
#[derive(Debug, Clone)]
pub enum Servers {
    /// An inventory file's entries.
    Listed(Vec<InventoryEntry>),
    /// Every Exchange server the org probe on this server reports.
    DiscoverFrom(String),
}

/// Hooks for progress display; the coordinator itself prints nothing.
pub trait Progress: Send + Sync {
    fn org_phase(&self, _server: &str) {}
    fn host_phase(&self, _servers: usize) {}
    fn row_done(&self, _row: &ServerRow) {}
    fn finished(&self) {}
}

/// A no-op progress display.
pub struct Silent;
impl Progress for Silent {}

/// What the caller needs after a scan (the reports are already written).
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    pub organization: OrgSection,
    pub summary: Summary,
    pub console_rows: Vec<ConsoleRow>,
    pub interrupted: bool,
    pub not_in_inventory: Vec<UninventoriedServer>,
}

impl ScanOutcome {
    /// The exit status contract: 3 when a server could not be scanned (wins over 1),
    /// 1 for a warning or critical, 0 otherwise. (130 for an interrupt is the caller's.)
    pub fn exit_code(&self) -> i32 {
        if self.summary.error > 0 {
            3
        } else if self.summary.warning + self.summary.critical > 0 {
            1
        } else {
            0
        }
    }
}

/// Org probe result with where it came from.
struct OrgResult {
    facts: Option<OrgFacts>,
    queried_on: Option<String>,
    error: Option<String>,
}

/// Everything a probe task shares with the others.
struct Shared {
    opts: ScanOptions,
    /// The org probe's answer without its server list (or, when it failed, why), once
    /// the org phase is over.
    org: OrgFacts,
    /// Where the org query answered.
    org_server: Option<String>,
    auth_failures: AtomicUsize,
    cancel: CancellationToken,
}

/// One host probe to run.
struct Job {
    entry: InventoryEntry,
    facts: Option<ExchangeServerFacts>,
}

/// Runs a scan, streaming rows to `sinks`.
pub async fn run(
    opts: &ScanOptions,
    servers: Servers,
    sinks: &mut [&mut dyn RowSink],
    progress: &dyn Progress,
    cancel: CancellationToken,
) -> std::io::Result<ScanOutcome> {
    let started_at = now_rfc3339();
    let mut shared = Shared {
        opts: opts.clone(),
        org: OrgFacts::default(),
        org_server: None,
        auth_failures: AtomicUsize::new(0),
        cancel: cancel.clone(),
    };

    // Edge servers named by the inventory are never contacted.
    let (entries, discover_from) = match servers {
        Servers::Listed(e) => (e, None),
        Servers::DiscoverFrom(s) => (Vec::new(), Some(s)),
    };
    let mut early_rows = Vec::new();
    let mut candidates = Vec::new();
    for e in &entries {
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

    // Org phase.
    let org_targets = org_targets(opts, &candidates, discover_from.as_deref());
    let org = match &opts.org_data {
        Some(file) => org_source::org_from_file(file, &candidates),
        None => org_phase(&shared, &org_targets, progress).await,
    };
    shared.org_server = org.queried_on.clone();
    shared.org = match &org.facts {
        Some(f) => OrgFacts {
            servers: Vec::new(),
            ..f.clone()
        },
        None => OrgFacts {
            error: org.error.clone(),
            ..OrgFacts::default()
        },
    };
    let shared = Arc::new(shared);
    let organization = OrgSection {
        name: org.facts.as_ref().and_then(|f| f.name.clone()),
        mitigations_enabled: org.facts.as_ref().and_then(|f| f.mitigations_enabled),
        queried_on: org.queried_on.clone(),
        error: org
            .error
            .clone()
            .or_else(|| org.facts.as_ref().and_then(|f| f.error.clone())),
    };

    if let Some(from) = &discover_from {
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
                    fill_server_facts(&mut row, facts, shared.org.mitigations_enabled);
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

    let start = ScanStart {
        started_at,
        organization: organization.clone(),
    };
    for s in sinks.iter_mut() {
        s.begin(&start)?;
    }
    let mut summary = Summary::default();
    let mut console_rows = Vec::new();
    let mut emit = |row: ServerRow, sinks: &mut [&mut dyn RowSink]| -> std::io::Result<()> {
        summary.add(row.status);
        console_rows.push(ConsoleRow::from(&row));
        progress.row_done(&row);
        for s in sinks.iter_mut() {
            s.row(&row)?;
        }
        Ok(())
    };
    for row in early_rows {
        emit(row, sinks)?;
    }

    // Host phase: at most `concurrency` tasks exist at once; new ones start as others end.
    progress.host_phase(jobs.len());
    let concurrency = opts.concurrency.max(1);
    let mut pending = jobs.into_iter();
    let mut running: JoinSet<ServerRow> = JoinSet::new();
    let mut names: HashMap<tokio::task::Id, InventoryEntry> = HashMap::new();
    loop {
        while running.len() < concurrency && !cancel.is_cancelled() {
            let Some(job) = pending.next() else { break };
            let entry = job.entry.clone();
            let handle = running.spawn(host_task(shared.clone(), job));
            names.insert(handle.id(), entry);
        }
        match running.join_next_with_id().await {
            None => break,
            Some(Ok((id, row))) => {
                names.remove(&id);
                emit(row, sinks)?;
            }
            Some(Err(join_error)) => {
                // A bug in our code, not the server's fault: still one row for it.
                let entry = names.remove(&join_error.id());
                let mut row = match &entry {
                    Some(e) => identity_row(e),
                    None => ServerRow::new("(unknown)"),
                };
                row.status = Status::Error;
                row.error = Some("internal error while probing this server".into());
                emit(row, sinks)?;
            }
        }
    }
    let interrupted = cancel.is_cancelled();
    for job in pending {
        let mut row = identity_row(&job.entry);
        if let Some(f) = &job.facts {
            fill_server_facts(&mut row, f, shared.org.mitigations_enabled);
        }
        row.status = Status::Error;
        row.error = Some("interrupted: the scan was stopped before this server was probed".into());
        emit(row, sinks)?;
    }

    let end = ScanEnd {
        finished_at: now_rfc3339(),
        summary: summary.clone(),
        not_in_inventory: not_in_inventory.clone(),
        interrupted,
    };
    for s in sinks.iter_mut() {
        s.finish(&end)?;
    }
    progress.finished();
    Ok(ScanOutcome {
        organization,
        summary,
        console_rows,
        interrupted,
        not_in_inventory,
    })
}

/// Where to try the org probe: `--org-server` first, then the inventory's in-scope
/// servers in order, at most [`ORG_ATTEMPTS`] in all.
fn org_targets(
    opts: &ScanOptions,
    candidates: &[InventoryEntry],
    discover_from: Option<&str>,
) -> Vec<Target> {
    let target_of = |e: &InventoryEntry| Target {
        name: e.name.clone(),
        host: e.connect_host().to_string(),
        port: e.port,
    };
    if let Some(from) = discover_from {
        return vec![Target {
            name: from.to_string(),
            host: from.to_string(),
            port: None,
        }];
    }
    let mut out = Vec::new();
    if let Some(first) = &opts.org_server {
        match candidates
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(first))
        {
            Some(e) => out.push(target_of(e)),
            None => out.push(Target {
                name: first.clone(),
                host: first.clone(),
                port: None,
            }),
        }
    }
    for e in candidates {
        if out.len() >= ORG_ATTEMPTS {
            break;
        }
        if !out.iter().any(|t| t.name.eq_ignore_ascii_case(&e.name)) {
            out.push(target_of(e));
        }
    }
    out
}

async fn org_phase(shared: &Shared, targets: &[Target], progress: &dyn Progress) -> OrgResult {
    #[cfg(feature = "kerberos")]
    if let OrgVia::RemotePowerShell { port } = shared.opts.org_via {
        return org_source::org_over_remote_powershell(shared, targets, port, progress).await;
    }
    #[cfg(not(feature = "kerberos"))]
    if let OrgVia::RemotePowerShell { .. } = shared.opts.org_via {
        return OrgResult {
            facts: None,
            queried_on: None,
            error: Some(
                "the org query over Remote PowerShell needs Kerberos: rebuild with `--features kerberos`".into(),
            ),
        };
    }
    let mut errors = Vec::new();
    let script = probe::org_script();
    for t in targets {
        if shared.cancel.is_cancelled() {
            errors.push("interrupted".to_string());
            break;
        }
        if lockout_tripped(shared) {
            errors.push(format!("{}: not attempted (lockout guard)", t.name));
            break;
        }
        progress.org_phase(&t.name);
        tracing::info!(server = %t.name, "org probe");
        let outcome = transport::run_probe(
            &shared.opts.transport,
            t,
            &script,
            shared.opts.timeout,
            &shared.cancel,
        )
        .await;
        match outcome {
            Err(e) => {
                note_auth_failure(shared, &e);
                tracing::warn!(server = %t.name, error = %e, "org probe failed");
                errors.push(format!("{}: {e}", t.name));
            }
            Ok(out) => match parse::parse_org(&out.stdout) {
                Ok(facts) => {
                    return OrgResult {
                        facts: Some(facts),
                        queried_on: Some(t.name.clone()),
                        error: None,
                    };
                }
                Err(pe) => {
                    let why = script_failure(&pe.to_string(), &out);
                    tracing::warn!(server = %t.name, error = %why, "org probe output unusable");
                    errors.push(format!("{}: {why}", t.name));
                }
            },
        }
    }
    let error = if targets.is_empty() {
        "no in-scope server to run the org probe on".to_string()
    } else {
        format!(
            "org probe failed on every server tried: {}",
            errors.join("; ")
        )
    };
    OrgResult {
        facts: None,
        queried_on: None,
        error: Some(error),
    }
}

/// A probe that ran but printed no usable result: say what the host said, briefly.
fn script_failure(parse_error: &str, out: &transport::ProbeOutput) -> String {
    let stderr = out.stderr.trim();
    let snapin = stderr.contains("snap-in") || stderr.contains("PSSnapin");
    match out.exit_code {
        Some(code) if code != 0 && snapin => format!(
            "the Exchange management snap-in is not available on this server (exit {code}): {}",
            excerpt(stderr, 160)
        ),
        Some(code) if code != 0 && !stderr.is_empty() => format!(
            "the probe failed with exit code {code}: {}",
            excerpt(stderr, 160)
        ),
        _ => format!("unexpected probe output: {parse_error}"),
    }
}

fn lockout_tripped(shared: &Shared) -> bool {
    let k = shared.opts.max_auth_failures;
    k > 0 && shared.auth_failures.load(Ordering::SeqCst) >= k
}

/// Counts a server whose authentication failed, for the lockout guard; only while no
/// server has accepted the credentials: after that a rejection cannot be a wrong password
/// and cannot lock the account out.
fn note_auth_failure(shared: &Shared, e: &ProbeError) {
    if e.kind == FailureKind::Auth && !shared.opts.transport.clients.auth_proven() {
        shared.auth_failures.fetch_add(1, Ordering::SeqCst);
    }
}

async fn host_task(shared: Arc<Shared>, job: Job) -> ServerRow {
    let started = Instant::now();
    let mut row = identity_row(&job.entry);
    if let Some(f) = &job.facts {
        fill_server_facts(&mut row, f, shared.org.mitigations_enabled);
    }
    if lockout_tripped(&shared) {
        row.status = Status::Error;
        row.error = Some(format!(
            "not attempted: authentication failed on {} servers (lockout guard); check the \
             user name and password before scanning again, the account may be close to lockout",
            shared.opts.max_auth_failures
        ));
        return row;
    }
    let proxy = job
        .facts
        .as_ref()
        .and_then(|f| f.internet_web_proxy.as_deref());
    let script = match probe::host_script(&HostProbeParams {
        ocs_url: &shared.opts.ocs_url,
        proxy,
        ocs_timeout_secs: shared.opts.ocs_timeout_secs,
    }) {
        Ok(s) => s,
        Err(e) => {
            row.status = Status::Error;
            row.error = Some(format!("not attempted: {e}"));
            return row;
        }
    };
    let target = Target {
        name: job.entry.name.clone(),
        host: job.entry.connect_host().to_string(),
        port: job.entry.port,
    };
    tracing::debug!(server = %target.name, host = %target.host, "host probe");
    let outcome = transport::run_probe(
        &shared.opts.transport,
        &target,
        &script,
        shared.opts.timeout,
        &shared.cancel,
    )
    .await;
    row.duration_ms = started.elapsed().as_millis() as u64;
    let out = match outcome {
        Err(e) => {
            note_auth_failure(&shared, &e);
            tracing::info!(server = %target.name, error = %e, "host probe failed");
            row.status = Status::Error;
            row.error_stage = Some(e.stage);
            row.error = Some(e.to_string());
            return row;
        }
        Ok(out) => out,
    };
    let host = match parse::parse_host(&out.stdout) {
        Ok(h) => h,
        Err(pe) => {
            row.status = Status::Error;
            row.error_stage = Some(Stage::Parse);
            row.error = Some(format!(
                "{} (stage parse, after {:.1} s)",
                script_failure(&pe.to_string(), &out),
                out.elapsed.as_secs_f64()
            ));
            return row;
        }
    };
    let server = job.facts.clone().unwrap_or_else(|| ExchangeServerFacts {
        name: job.entry.name.clone(),
        ..Default::default()
    });
    fill_assessment(&mut row, &shared.org, &server, &host);
    if job.facts.is_none()
        && let Some(e) = &shared.org.servers_error
    {
        // The organisation answered but Get-ExchangeServer did not: the server-level
        // switch is unknown, and reading it as absent would say "Disabled". The host
        // facts stay in the row; the verdict is that the server could not be assessed.
        row.status = Status::Error;
        row.error = Some(format!(
            "server settings unknown: Get-ExchangeServer failed on {}: {}",
            shared.org_server.as_deref().unwrap_or("the org server"),
            excerpt(e, 200)
        ));
    }
    row
}

/// The row's identity columns from the inventory.
fn identity_row(e: &InventoryEntry) -> ServerRow {
    let mut row = ServerRow::new(&e.name);
    row.address = e.address.clone();
    row.role = e.role.clone();
    row.site = e.site.clone();
    row
}

/// What the org probe knows about a server, before (or without) its host probe.
fn fill_server_facts(row: &mut ServerRow, f: &ExchangeServerFacts, org_enabled: Option<bool>) {
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
}

fn fill_assessment(
    row: &mut ServerRow,
    org: &OrgFacts,
    server: &ExchangeServerFacts,
    host: &HostFacts,
) {
    let a = analysis::assess_in_org(org, server, host);
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

fn discovered_entry(s: &ExchangeServerFacts, line: usize) -> InventoryEntry {
    InventoryEntry {
        name: s.name.clone(),
        address: s.fqdn.clone(),
        port: None,
        role: s.server_role.clone(),
        site: s.site.clone(),
        line,
    }
}

/// Runs only the org probe on `from` and returns what the organisation says about its
/// servers (for `discover`).
pub async fn discover(
    transport: &TransportConfig,
    org_via: OrgVia,
    from: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<OrgFacts, String> {
    let shared = Shared {
        opts: ScanOptions {
            transport: transport.clone(),
            concurrency: 1,
            timeout,
            org_server: None,
            ocs_url: String::new(),
            ocs_timeout_secs: 0,
            max_auth_failures: 0,
            org_via,
            org_data: None,
        },
        org: OrgFacts::default(),
        org_server: None,
        auth_failures: AtomicUsize::new(0),
        cancel: cancel.clone(),
    };
    let target = Target {
        name: from.to_string(),
        host: from.to_string(),
        port: None,
    };
    let r = org_phase(&shared, &[target], &Silent).await;
    match r.facts {
        Some(f) => match &f.servers_error {
            Some(e) => Err(format!("Get-ExchangeServer failed on {from}: {e}")),
            None => Ok(f),
        },
        None => Err(r.error.unwrap_or_else(|| "org probe failed".into())),
    }
}
