//! `eems-scan doctor`: for each server, the steps a scan depends on, in order, stopping at
//! the first that fails and saying how to fix it.
//!
//! Nothing here is a second transport: name resolution and the TCP connect are the only
//! network calls of its own; TLS, authentication and the command are the scanner's host
//! probe through [`transport::run_probe`], and the stage its error names tells which step
//! failed. The mitigation-endpoint step reads the same probe's OCS result, fetched through
//! the server's InternetWebProxy as a scan does, which one org query provides.
//!
//! Steps that are not built yet (Kerberos, issue 9; the /PowerShell endpoint and RBAC,
//! issue 10) are reported as skipped, never as passed.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::DoctorArgs;
use crate::scan::{self, ORG_ATTEMPTS, match_org_server};
use crate::transport::{self, FailureKind, ProbeError, Target, TransportConfig};
use eems_core::facts::ExchangeServerFacts;
use eems_core::inventory;
use eems_core::probe::{self, HostProbeParams, parse};
use eems_core::report::Stage;
use eems_core::text::excerpt;

/// Authentication failures, while no server has accepted the credentials, after which no
/// server is asked again: each try of a wrong password counts towards the account's
/// lockout (the scan's `--max-auth-failures` default).
const MAX_AUTH_FAILURES: usize = 3;
/// Resolved addresses tried for the TCP step, as a client tries a few before giving up.
const MAX_ADDRESSES: usize = 4;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    Failed,
    /// Not checked: not built yet, or not applicable (the reason says which).
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
    let target_of = |e: &inventory::InventoryEntry| Target {
        name: e.name.clone(),
        host: e.connect_host().to_string(),
        port: e.port,
    };
    if !args.servers.is_empty() {
        let targets = args
            .servers
            .iter()
            .map(|name| {
                let name = name.trim();
                match entries.iter().find(|e| e.name.eq_ignore_ascii_case(name)) {
                    Some(e) => target_of(e),
                    None => Target {
                        name: name.to_string(),
                        host: name.to_string(),
                        port: None,
                    },
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
    let auth_failures = AtomicUsize::new(0);
    let (org_query, org_servers) = org_query(
        cfg,
        args.fleet.org_server.as_deref(),
        &targets,
        timeout,
        &auth_failures,
        cancel,
    )
    .await;
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        timeout,
        ocs_url: args.fleet.ocs_url.clone(),
        ocs_timeout_secs: args.fleet.ocs_timeout,
        org_servers,
        auth_failures,
        cancel: cancel.clone(),
    });
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
    cfg: &TransportConfig,
    org_server: Option<&str>,
    targets: &[Target],
    timeout: Duration,
    auth_failures: &AtomicUsize,
    cancel: &CancellationToken,
) -> (OrgQuery, Result<Vec<ExchangeServerFacts>, String>) {
    let mut order: Vec<Target> = Vec::new();
    if let Some(name) = org_server {
        order.push(
            targets
                .iter()
                .find(|t| t.name.eq_ignore_ascii_case(name))
                .cloned()
                .unwrap_or_else(|| Target {
                    name: name.to_string(),
                    host: name.to_string(),
                    port: None,
                }),
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
        match scan::discover(&cfg, &t.host, timeout, cancel).await {
            Ok(facts) => {
                let q = OrgQuery {
                    answered_by: Some(t.name.clone()),
                    error: None,
                };
                return (q, Ok(facts.servers));
            }
            Err(e) => {
                let auth = e.contains("authentication failed");
                errors.push(format!("{}: {e}", t.name));
                if auth {
                    if !cfg.clients.auth_proven() {
                        auth_failures.fetch_add(1, Ordering::SeqCst);
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

fn step(step: &'static str, result: Outcome, detail: String, fix: Option<String>) -> Step {
    Step {
        step,
        result,
        detail,
        fix,
    }
}

fn passed(name: &'static str, detail: String) -> Step {
    step(name, Outcome::Passed, detail, None)
}

fn skipped(name: &'static str, detail: impl Into<String>) -> Step {
    step(name, Outcome::Skipped, detail.into(), None)
}

fn failed(name: &'static str, detail: String, fix: &str) -> Step {
    let fix = (!fix.is_empty()).then(|| fix.to_string());
    step(name, Outcome::Failed, detail, fix)
}

/// Every step not run yet; those not built yet, and TLS over HTTP, are skipped whatever
/// happens.
fn blank(t: &Target, port: u16, https: bool) -> ServerCheck {
    let steps = STEPS
        .iter()
        .map(|&name| match name {
            "kerberos" => skipped(
                name,
                "not built yet (issue 9): ticket or password, realm and KDC, clock skew, \
                 service ticket for HTTP/<fqdn>",
            ),
            "tls" if !https => skipped(
                name,
                "HTTP: no TLS (NTLM seals the messages); --https checks it",
            ),
            "powershell" => skipped(
                name,
                "not built yet (issue 10): TCP and authentication to /PowerShell, and \
                 whether the account may run Get-ExchangeServer (RBAC)",
            ),
            _ => step(
                name,
                Outcome::NotRun,
                "not run: an earlier step failed".into(),
                None,
            ),
        })
        .collect();
    ServerCheck {
        server: t.name.clone(),
        host: t.host.clone(),
        port,
        steps,
    }
}

fn set(check: &mut ServerCheck, s: Step) {
    if let Some(slot) = check.steps.iter_mut().find(|x| x.step == s.step) {
        *slot = s;
    }
}

async fn check_server(shared: &Shared, t: Target) -> ServerCheck {
    let cfg = &shared.cfg;
    let port = t
        .port
        .or(cfg.port)
        .unwrap_or(if cfg.https { 5986 } else { 5985 });
    let mut check = blank(&t, port, cfg.https);
    let connect_timeout = cfg.connect_timeout;

    // Name resolution.
    let bare = t.host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = if let Ok(ip) = bare.parse::<IpAddr>() {
        set(
            &mut check,
            skipped("dns", format!("{bare} is an address: nothing to resolve")),
        );
        vec![SocketAddr::new(ip, port)]
    } else {
        match tokio::time::timeout(connect_timeout, tokio::net::lookup_host((bare, port))).await {
            Ok(Ok(found)) => {
                let found: Vec<SocketAddr> = found.collect();
                if found.is_empty() {
                    set(
                        &mut check,
                        failed("dns", format!("{bare} resolves to no address"), DNS_FIX),
                    );
                    return check;
                }
                let list: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                set(
                    &mut check,
                    passed("dns", format!("{bare} resolves to {}", list.join(", "))),
                );
                found
            }
            Ok(Err(e)) => {
                set(
                    &mut check,
                    failed("dns", format!("{bare} does not resolve: {e}"), DNS_FIX),
                );
                return check;
            }
            Err(_) => {
                set(
                    &mut check,
                    failed(
                        "dns",
                        format!(
                            "no answer from the resolver for {bare} in {} s",
                            connect_timeout.as_secs()
                        ),
                        DNS_FIX,
                    ),
                );
                return check;
            }
        }
    };

    // TCP to the WinRM port.
    let mut last_error = String::new();
    let mut refused = false;
    let mut connected = None;
    for addr in addrs.iter().take(MAX_ADDRESSES) {
        let t0 = Instant::now();
        match tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => {
                connected = Some((addr, t0.elapsed()));
                break;
            }
            Ok(Err(e)) => {
                refused |= e.kind() == std::io::ErrorKind::ConnectionRefused;
                last_error = format!("{addr}: {e}");
            }
            Err(_) => {
                last_error = format!("{addr}: no answer in {} s", connect_timeout.as_secs());
            }
        }
    }
    match connected {
        Some((addr, took)) => set(
            &mut check,
            passed(
                "tcp",
                format!("{addr} accepted the connection in {} ms", took.as_millis()),
            ),
        ),
        None => {
            let fix = if refused {
                format!(
                    "nothing listens on port {port}: enable WinRM on the server \
                     (Enable-PSRemoting or winrm quickconfig), check the port (--port or the \
                     inventory's port column; 5985 for HTTP, 5986 for HTTPS) and that a \
                     firewall lets it through"
                )
            } else {
                format!(
                    "no answer on port {port}: a firewall drops the connection, the server \
                     is off, or the address is wrong"
                )
            };
            set(&mut check, failed("tcp", last_error, &fix));
            return check;
        }
    }

    // WinRM: the scan's own host probe. TLS, authentication and the command are its stages.
    if !cfg.clients.auth_proven()
        && shared.auth_failures.load(Ordering::SeqCst) >= MAX_AUTH_FAILURES
    {
        set(
            &mut check,
            failed(
                "winrm-auth",
                format!(
                    "not attempted: authentication failed on {MAX_AUTH_FAILURES} servers and \
                     none accepted the credentials (each try counts towards the account's lockout)"
                ),
                AUTH_FIX,
            ),
        );
        return check;
    }
    let proxy = match &shared.org_servers {
        Ok(list) => {
            match_org_server(&t.name, list).and_then(|i| list[i].internet_web_proxy.clone())
        }
        Err(_) => None,
    };
    let script = match probe::host_script(&HostProbeParams {
        ocs_url: &shared.ocs_url,
        proxy: proxy.as_deref(),
        ocs_timeout_secs: shared.ocs_timeout_secs,
    }) {
        Ok(s) => s,
        Err(e) => {
            set(
                &mut check,
                failed("winrm-command", format!("not attempted: {e}"), ""),
            );
            return check;
        }
    };
    // The scan's own deadline for the probe (name resolution and TCP had theirs).
    let outcome = transport::run_probe(cfg, &t, &script, shared.timeout, &shared.cancel).await;
    let out = match outcome {
        Err(e) => {
            if e.kind == FailureKind::Auth && !cfg.clients.auth_proven() {
                shared.auth_failures.fetch_add(1, Ordering::SeqCst);
            }
            winrm_failure(&mut check, cfg, &e);
            return check;
        }
        Ok(out) => out,
    };
    if cfg.https {
        set(&mut check, tls_passed(cfg));
    }
    set(&mut check, auth_accepted(cfg));
    let host = match parse::parse_host(&out.stdout) {
        Ok(h) => h,
        Err(pe) => {
            let stderr = out.stderr.trim();
            let detail = match out.exit_code {
                Some(code) if code != 0 && !stderr.is_empty() => format!(
                    "the probe failed with exit code {code}: {}",
                    excerpt(stderr, 160)
                ),
                _ => format!("unexpected probe output: {pe}"),
            };
            set(
                &mut check,
                failed(
                    "winrm-command",
                    format!("{detail} (after {:.1} s)", out.elapsed.as_secs_f64()),
                    "the command ran but printed no probe result: something on the server \
                     writes to the console or stops PowerShell (a profile, a banner, an \
                     execution policy by GPO); run the probe by hand to see (README \"Contract\")",
                ),
            );
            return check;
        }
    };
    set(
        &mut check,
        passed(
            "winrm-command",
            format!(
                "the host probe ran in {:.1} s (exit {})",
                out.elapsed.as_secs_f64(),
                out.exit_code.map_or("-".to_string(), |c| c.to_string())
            ),
        ),
    );

    // The mitigation endpoint, as the server reached it.
    let ocs = &host.ocs;
    let url = ocs.url.as_deref().unwrap_or(&shared.ocs_url);
    let via = match (&ocs.proxy, &shared.org_servers) {
        (Some(p), _) => format!("through the server's InternetWebProxy {p}"),
        (None, Ok(list)) if match_org_server(&t.name, list).is_some() => {
            "direct (no InternetWebProxy set)".to_string()
        }
        (None, Ok(_)) => {
            "direct (Get-ExchangeServer does not list this server: its InternetWebProxy is unknown)"
                .to_string()
        }
        (None, Err(why)) => format!(
            "direct (InternetWebProxy unknown: the org query failed: {})",
            excerpt(why, 200)
        ),
    };
    if ocs.status_code == Some(200) {
        set(
            &mut check,
            passed(
                "mitigation-endpoint",
                format!(
                    "HTTP 200 from {url} in {} ms, {via}",
                    ocs.elapsed_ms.unwrap_or(0)
                ),
            ),
        );
    } else {
        let why = match (&ocs.error, ocs.status_code) {
            (Some(e), _) if !e.trim().is_empty() => excerpt(e, 200),
            (_, Some(code)) => format!("HTTP {code}"),
            _ => "no response recorded".to_string(),
        };
        set(
            &mut check,
            failed(
                "mitigation-endpoint",
                format!("the server cannot reach {url}: {why}, {via}"),
                "let the server reach the endpoint on port 443: through the firewall, or \
                 through a proxy set with Set-ExchangeServer -InternetWebProxy (EEMS uses \
                 it); see https://aka.ms/HelpConnectivityEEMS",
            ),
        );
    }
    check
}

/// "LAB\\user accepted (ntlm)", the auth as the user typed it.
fn auth_accepted(cfg: &TransportConfig) -> Step {
    use clap::ValueEnum;
    let auth = cfg
        .auth
        .to_possible_value()
        .map_or_else(String::new, |v| format!(" ({})", v.get_name()));
    passed(
        "winrm-auth",
        format!("{} accepted{auth}", cfg.account.display()),
    )
}

const DNS_FIX: &str = "check the name (the SERVER argument or the inventory's address \
     column), the workstation's DNS servers and search suffix, or put the server's address in \
     the inventory's address column";

const AUTH_FIX: &str = "check the user (DOMAIN\\user or user@dns.domain) and the password \
     (EEMS_PASSWORD, --password-file or the prompt), and that the account may use WinRM on \
     this server (local Administrators or Remote Management Users) with this authentication \
     (WinRM Service/Auth)";

fn tls_passed(cfg: &TransportConfig) -> Step {
    if cfg.insecure {
        return skipped(
            "tls",
            "the certificate was NOT verified (--insecure): anyone on the path could \
             impersonate the server",
        );
    }
    let trust = match &cfg.ca_cert {
        Some(ca) => format!("the CA in {}", ca.display()),
        None => "the system's trusted roots".to_string(),
    };
    passed(
        "tls",
        format!("certificate chain and name verified against {trust}"),
    )
}

/// A failed host probe, placed at the step its stage names. The detail is the scan's
/// error-row text for the same failure.
fn winrm_failure(check: &mut ServerCheck, cfg: &TransportConfig, e: &ProbeError) {
    let detail = e.to_string();
    let https = cfg.https;
    match e.stage {
        // TCP passed: on HTTPS the TLS handshake is what comes next.
        Stage::Connect if https => {
            let fix = match e.kind {
                FailureKind::Tls => {
                    "trust the CA that issued the listener's certificate with --ca-cert (PEM), \
                     and connect by a name the certificate carries"
                }
                FailureKind::Timeout => {
                    "the port accepts connections but the TLS handshake got no answer: is it \
                     the HTTPS listener (5986)? (winrm enumerate winrm/config/listener)"
                }
                _ => "check the HTTPS listener (winrm enumerate winrm/config/listener)",
            };
            set(check, failed("tls", detail, fix));
        }
        Stage::Connect | Stage::Auth => {
            if https && e.stage == Stage::Auth {
                set(check, tls_passed(cfg));
            }
            let fix = match e.kind {
                FailureKind::Auth => AUTH_FIX,
                FailureKind::Timeout => {
                    "the port accepts connections but the WinRM listener does not answer: \
                     check the WinRM service (Test-WSMan on the server), or whether something \
                     else holds the port"
                }
                _ => "check the WinRM listener (winrm enumerate winrm/config/listener)",
            };
            set(check, failed("winrm-auth", detail, fix));
        }
        _ => {
            if https {
                set(check, tls_passed(cfg));
            }
            set(check, auth_accepted(cfg));
            let fix = match e.kind {
                FailureKind::Timeout => {
                    "the server accepted the command but did not finish it in time: check \
                     that PowerShell starts on the server, or raise --timeout"
                }
                FailureKind::Http | FailureKind::WinrmFault => {
                    "the WinRM service failed on the server: see its Windows Remote \
                     Management event log, and restart the WinRM service"
                }
                FailureKind::ConnectionDropped => {
                    "the connection was cut mid-answer: a proxy, load balancer or IPS between \
                     here and the server, or the WinRM service; try from the server's own \
                     network"
                }
                _ => "see the server's Windows Remote Management and PowerShell event logs",
            };
            set(check, failed("winrm-command", detail, fix));
        }
    }
}

/// The table: one block per server, one line per step.
pub fn render_table(report: &DoctorReport) -> String {
    let mut out = String::new();
    match (&report.org_query.answered_by, &report.org_query.error) {
        (Some(s), _) => {
            let _ = writeln!(
                out,
                "org query (each server's InternetWebProxy): answered by {s}"
            );
        }
        (None, Some(e)) => {
            let _ = writeln!(
                out,
                "org query (each server's InternetWebProxy) failed; servers are tried direct: {e}"
            );
        }
        (None, None) => {}
    }
    for note in &report.left_out {
        let _ = writeln!(out, "left out: {note}");
    }
    let width = STEPS.iter().map(|s| s.len()).max().unwrap_or(0);
    for s in &report.servers {
        let _ = writeln!(out, "\n{}  {}:{}", s.server, s.host, s.port);
        for st in &s.steps {
            let _ = writeln!(
                out,
                "  {:8} {:width$}  {}",
                st.result.label(),
                st.step,
                st.detail
            );
            if let Some(fix) = &st.fix {
                let _ = writeln!(out, "  {:8} {:width$}  fix: {fix}", "", "");
            }
        }
    }
    let failed: Vec<String> = report
        .servers
        .iter()
        .filter_map(|s| {
            s.failed_step()
                .map(|f| format!("{} ({})", s.server, f.step))
        })
        .collect();
    let _ = writeln!(
        out,
        "\n{} server(s): {} without a failed step, {} failed{}{}",
        report.servers.len(),
        report.servers.len() - failed.len(),
        failed.len(),
        if failed.is_empty() { "" } else { ": " },
        failed.join(", ")
    );
    let _ = writeln!(
        out,
        "not checked yet: Kerberos (issue 9), the /PowerShell endpoint and RBAC (issue 10)"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_built_steps_are_skipped_and_never_passed() {
        let t = Target {
            name: "EX01".into(),
            host: "ex01".into(),
            port: None,
        };
        let c = blank(&t, 5985, false);
        let kerberos = c.steps.iter().find(|s| s.step == "kerberos").unwrap();
        assert_eq!(kerberos.result, Outcome::Skipped);
        assert!(kerberos.detail.contains("issue 9"));
        let ps = c.steps.iter().find(|s| s.step == "powershell").unwrap();
        assert_eq!(ps.result, Outcome::Skipped);
        assert!(ps.detail.contains("issue 10"));
        assert_eq!(c.steps.len(), STEPS.len());
    }
}
