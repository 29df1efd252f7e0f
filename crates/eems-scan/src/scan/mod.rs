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
//!
//! The split follows the scan's phases: [`org`] (the one org query), [`plan`] (who gets a
//! host probe), [`hosts`] (one server's probes), [`rows`] (what fills a row's columns);
//! this file holds what they share and the loop that runs them and streams the rows.

mod hosts;
mod matching;
mod org;
mod org_source;
mod plan;
mod rows;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::exit;
use crate::render::console::ConsoleRow;
use crate::render::{RowSink, ScanEnd, ScanStart};
use crate::transport::{self, FailureKind, ProbeError, TransportConfig};
use eems_core::analysis::Status;
use eems_core::facts::{ExchangeServerFacts, OrgFacts};
use eems_core::inventory::InventoryEntry;
use eems_core::report::{OrgSection, ServerRow, Summary, UninventoriedServer, now_rfc3339};
use eems_core::text::excerpt;

pub use matching::match_org_server;
use org::OrgFailure;
pub use org::discover;
pub use org_source::{MAX_ORG_DATA_AGE, ORG_COMMAND, OrgVia, WINRS_SNAPIN_WARNING, load_org_data};
use rows::{fill_server_facts, identity_row};

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
    /// Days the evidence part of the host probe looks back; 0 = no evidence part.
    pub evidence_days: u32,
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
    /// 1 for a warning or critical, 0 otherwise. (130 for an interrupt and 4 for a report
    /// that cannot be written are the caller's.)
    pub fn exit_code(&self) -> i32 {
        if self.summary.error > 0 {
            exit::UNSCANNED
        } else if self.summary.warning + self.summary.critical > 0 {
            exit::FINDINGS
        } else {
            exit::OK
        }
    }
}

/// Everything a probe task shares with the others.
struct Shared {
    opts: ScanOptions,
    /// The org probe's answer without its server list (or, when it failed, why), once
    /// the org phase is over.
    org: OrgFacts,
    /// Where the org query answered.
    org_server: Option<String>,
    org_failures: Vec<OrgFailure>,
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
    let mut opts = opts.clone();
    if let Servers::Listed(entries) = &servers
        && (opts.transport.auth == transport::AuthKind::Kerberos || opts.transport.auth_auto)
    {
        opts.transport.resolve = Arc::new(transport::resolve_overrides(entries));
    }
    let opts = &opts;
    let mut shared = Shared {
        opts: opts.clone(),
        org: OrgFacts::default(),
        org_server: None,
        org_failures: Vec::new(),
        auth_failures: AtomicUsize::new(0),
        cancel: cancel.clone(),
    };

    // Edge servers named by the inventory are never contacted.
    let (entries, discover_from) = match servers {
        Servers::Listed(e) => (e, None),
        Servers::DiscoverFrom(s) => (Vec::new(), Some(s)),
    };
    let (mut early_rows, candidates) = plan::set_aside_edge(&entries);

    let org_targets = org::org_targets(opts, &candidates, discover_from.as_deref());
    let org = match &opts.org_data {
        Some(file) => org_source::org_from_file(file, &candidates),
        None => org::org_phase(&shared, &org_targets, progress).await,
    };
    let organization = org.section();
    shared.org_server = org.queried_on.clone();
    shared.org_failures = org.failures.clone();
    shared.org = org.shared_facts();
    let shared = Arc::new(shared);

    let plan = plan::plan(
        &entries,
        candidates,
        &org,
        discover_from.as_deref(),
        shared.org.mitigations_enabled,
    );
    early_rows.extend(plan.early_rows);
    let (jobs, not_in_inventory) = (plan.jobs, plan.not_in_inventory);

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
            let handle = running.spawn(hosts::host_task(shared.clone(), job));
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
