//! `eems-scan doctor`: for each server, the steps a scan depends on, in order, stopping at
//! the first that fails and saying how to fix it.
//!
//! Nothing here is a second transport: name resolution and the TCP connects are the only
//! network calls of its own; TLS, authentication and the command are the scanner's host
//! probe through [`run_probe`](crate::transport::run_probe), and the stage its error names tells which step
//! failed. The Kerberos step is kerberos.rs's credentials and service ticket, the
//! `/PowerShell` step exchange_ps.rs's client. The mitigation-endpoint step reads the host
//! probe's OCS result, fetched through the server's InternetWebProxy as a scan does, which
//! one org query provides.
//!
//! A step that does not apply (Kerberos when nothing uses it, `/PowerShell` when the org
//! query goes over WinRS, both in a build without Kerberos) is skipped with the reason,
//! never passed.
//!
//! [`checks`] holds one server's steps, in order, and what each failure's fix says;
//! [`kerberos`] the Kerberos and `/PowerShell` steps; this file the targets, the one org
//! query and the run over all servers; [`table`] the text `doctor` prints.

mod checks;
#[cfg(feature = "kerberos")]
mod kerberos;
mod table;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::DoctorArgs;
use crate::scan::{self, ORG_ATTEMPTS, OrgVia};
use crate::transport::{AuthKind, Target, TransportConfig};
use eems_core::facts::ExchangeServerFacts;
use eems_core::inventory;

use checks::{blank, check_server, failed};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    Failed,
    /// Not checked: not applicable here (the reason says why).
    Skipped,
    /// An earlier step failed.
    NotRun,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "FAILED",
            Outcome::Skipped => "skipped",
            Outcome::NotRun => "not run",
        }
    }
}

/// The steps, in the order they run.
pub const STEPS: [&str; 8] = [
    "dns",
    "tcp",
    "tls",
    "kerberos",
    "winrm-auth",
    "winrm-command",
    "powershell",
    "mitigation-endpoint",
];

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub result: Outcome,
    pub detail: String,
    /// What to do about a failure, in plain words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerCheck {
    pub server: String,
    pub host: String,
    pub port: u16,
    pub steps: Vec<Step>,
}

impl ServerCheck {
    pub fn failed_step(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.result == Outcome::Failed)
    }
}

/// Where the InternetWebProxy of each server came from.
#[derive(Debug, Clone, Serialize)]
pub struct OrgQuery {
    pub answered_by: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub org_query: OrgQuery,
    pub servers: Vec<ServerCheck>,
    /// Inventory entries left out (Edge servers), with why.
    pub left_out: Vec<String>,
}

impl DoctorReport {
    /// OK when no step failed on any server, FINDINGS otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.servers.iter().any(|s| s.failed_step().is_some()) {
            crate::exit::FINDINGS
        } else {
            crate::exit::OK
        }
    }
}

/// The servers to check: the SERVER arguments (reached at their inventory address and
/// port when the inventory lists them), else every non-Edge server of the inventory.
pub fn targets(args: &DoctorArgs) -> Result<(Vec<Target>, Vec<String>), String> {
    let entries = match &args.inventory {
        Some(path) => inventory::load(path).map_err(|e| e.to_string())?,
        None if args.servers.is_empty() => {
            return Err("name a SERVER to check, or give --inventory FILE".into());
        }
        None => Vec::new(),
    };
    let target_of = Target::of;
    if !args.servers.is_empty() {
        let targets = args
            .servers
            .iter()
            .map(|name| {
                let name = name.trim();
                match entries.iter().find(|e| e.name.eq_ignore_ascii_case(name)) {
                    Some(e) => target_of(e),
                    None => Target::named(name),
                }
            })
            .collect();
        return Ok((targets, Vec::new()));
    }
    let mut left_out = Vec::new();
    let mut targets = Vec::new();
    for e in &entries {
        if e.is_edge() {
            left_out.push(format!(
                "{}: Edge Transport server (inventory role); EEMS is not installed on Edge",
                e.name
            ));
        } else {
            targets.push(target_of(e));
        }
    }
    if targets.is_empty() {
        return Err(
            "nothing to check: name a SERVER or give an inventory with a Mailbox server".into(),
        );
    }
    Ok((targets, left_out))
}

struct Shared {
    cfg: TransportConfig,
    timeout: Duration,
    ocs_url: String,
    ocs_timeout_secs: u64,
    /// `Err`: the org query failed, and why.
    org_servers: Result<Vec<ExchangeServerFacts>, String>,
    auth_failures: AtomicUsize,
    cancel: CancellationToken,
    org_via: OrgVia,
    #[cfg(feature = "kerberos")]
    ps: kerberos::PsShared,
}

/// Runs every step on every target, `concurrency` servers at once.
pub async fn run(
    args: &DoctorArgs,
    cfg: &TransportConfig,
    targets: Vec<Target>,
    left_out: Vec<String>,
    cancel: &CancellationToken,
) -> DoctorReport {
    let timeout = args.connection.timeout();
    // As a scan: with Kerberos, TCP goes to the inventory's address while the URL, the SPN
    // and `Host` keep the FQDN.
    let cfg = &TransportConfig {
        resolve: Arc::new(
            targets
                .iter()
                .filter_map(|t| Some((t.fqdn.clone()?, t.host.parse().ok()?)))
                .collect(),
        ),
        ..cfg.clone()
    };
    let mut shared = Shared {
        cfg: cfg.clone(),
        timeout,
        ocs_url: args.fleet.ocs_url.clone(),
        ocs_timeout_secs: args.fleet.ocs_timeout,
        org_servers: Err(String::new()),
        auth_failures: AtomicUsize::new(0),
        cancel: cancel.clone(),
        org_via: crate::app::org_via(&args.org, cfg.https),
        #[cfg(feature = "kerberos")]
        ps: Default::default(),
    };
    let (org_query, org_servers) =
        org_query(&shared, args.fleet.org_server.as_deref(), &targets).await;
    shared.org_servers = org_servers;
    let shared = Arc::new(shared);
    let limit = Arc::new(tokio::sync::Semaphore::new(
        args.fleet.concurrency.max(1) as usize
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, t) in targets.iter().cloned().enumerate() {
        let (shared, limit) = (shared.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (i, check_server(&shared, t).await)
        });
    }
    let mut results: Vec<Option<ServerCheck>> = vec![None; targets.len()];
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, check)) = done {
            results[i] = Some(check);
        }
    }
    let servers = results
        .into_iter()
        .zip(&targets)
        .map(|(r, t)| {
            // Only a bug in this module ends a task without a result: still one entry.
            r.unwrap_or_else(|| {
                let mut c = blank(t, 0, cfg.https);
                c.steps[0] = failed(
                    "dns",
                    "internal error while checking this server (a bug in eems-scan)".into(),
                    "",
                );
                c
            })
        })
        .collect();
    DoctorReport {
        org_query,
        servers,
        left_out,
    }
}

/// The org query, as a scan runs it, for each server's InternetWebProxy: on
/// `--org-server`, then on the servers to check, three in all; never again after an
/// authentication failure.
async fn org_query(
    shared: &Shared,
    org_server: Option<&str>,
    targets: &[Target],
) -> (OrgQuery, Result<Vec<ExchangeServerFacts>, String>) {
    let (cfg, timeout) = (&shared.cfg, shared.timeout);
    let mut order: Vec<Target> = Vec::new();
    if let Some(name) = org_server {
        order.push(
            targets
                .iter()
                .find(|t| t.name.eq_ignore_ascii_case(name))
                .cloned()
                .unwrap_or_else(|| Target::named(name)),
        );
    }
    for t in targets {
        if !order.iter().any(|o| o.name.eq_ignore_ascii_case(&t.name)) {
            order.push(t.clone());
        }
    }
    order.truncate(ORG_ATTEMPTS);
    let mut errors = Vec::new();
    for t in &order {
        // `discover` knows no per-server port; the client cache is keyed by port, so a
        // config with this server's port shares the clients.
        let cfg = TransportConfig {
            port: t.port.or(cfg.port),
            ..cfg.clone()
        };
        let answer = match shared.org_via {
            // doctor's own: `discover` knows the server only by the host it connects to,
            // while Kerberos needs the inventory's FQDN too.
            #[cfg(feature = "kerberos")]
            OrgVia::RemotePowerShell { port } => {
                kerberos::org_query(&cfg, &shared.ps, t, port, timeout).await
            }
            // With Kerberos, `discover` needs the FQDN (its SPN), which `resolve` maps to
            // the inventory's address.
            via => {
                let from = match (&t.fqdn, cfg.mechanism_for(t).await) {
                    (Some(fqdn), AuthKind::Kerberos) => fqdn,
                    _ => &t.host,
                };
                scan::discover(&cfg, via, from, timeout, &shared.cancel)
                    .await
                    .map(|facts| facts.servers)
            }
        };
        match answer {
            Ok(servers) => {
                let q = OrgQuery {
                    answered_by: Some(t.name.clone()),
                    error: None,
                };
                return (q, Ok(servers));
            }
            Err(e) => {
                let auth = e.contains("authentication failed");
                errors.push(format!("{}: {e}", t.name));
                if auth {
                    if !cfg.clients.auth_proven() {
                        shared.auth_failures.fetch_add(1, Ordering::SeqCst);
                    }
                    break;
                }
            }
        }
    }
    let error = if errors.is_empty() {
        "no server to ask".to_string()
    } else {
        errors.join("; ")
    };
    let q = OrgQuery {
        answered_by: None,
        error: Some(error.clone()),
    };
    (q, Err(error))
}

pub use table::render_table;
