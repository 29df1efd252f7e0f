//! One server's steps, in the order a scan depends on them, each failure with its fix.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::scan::{OrgVia, match_org_server};
use crate::transport::{self, AuthKind, FailureKind, ProbeError, Target, TransportConfig};
use eems_core::probe::{self, HostProbeParams, parse};
use eems_core::report::Stage;
use eems_core::text::excerpt;

use super::{Outcome, STEPS, ServerCheck, Shared, Step};

/// Authentication failures, while no server has accepted the credentials, after which no
/// server is asked again: each try of a wrong password counts towards the account's
/// lockout (the scan's `--max-auth-failures` default).
const MAX_AUTH_FAILURES: usize = 3;
/// Resolved addresses tried for the TCP step, as a client tries a few before giving up.
const MAX_ADDRESSES: usize = 4;

fn step(step: &'static str, result: Outcome, detail: String, fix: Option<String>) -> Step {
    Step {
        step,
        result,
        detail,
        fix,
    }
}

pub(super) fn passed(name: &'static str, detail: String) -> Step {
    step(name, Outcome::Passed, detail, None)
}

fn skipped(name: &'static str, detail: impl Into<String>) -> Step {
    step(name, Outcome::Skipped, detail.into(), None)
}

pub(super) fn failed(name: &'static str, detail: String, fix: &str) -> Step {
    let fix = (!fix.is_empty()).then(|| fix.to_string());
    step(name, Outcome::Failed, detail, fix)
}

/// Every step not run yet; TLS over HTTP, and in a build without Kerberos its two steps, are
/// skipped whatever happens.
pub(super) fn blank(t: &Target, port: u16, https: bool) -> ServerCheck {
    let steps = STEPS
        .iter()
        .map(|&name| match name {
            "kerberos" if !cfg!(feature = "kerberos") => skipped(
                name,
                "built without Kerberos (the `kerberos` feature): ticket or password, realm and \
                 KDC, clock skew, service ticket for HTTP/<fqdn>",
            ),
            "tls" if !https => skipped(
                name,
                "HTTP: no TLS (NTLM and Kerberos seal the messages); --https checks it",
            ),
            "powershell" if !cfg!(feature = "kerberos") => skipped(
                name,
                "built without Kerberos (the `kerberos` feature), which /PowerShell needs: TCP \
                 and authentication to /PowerShell, and whether the account may run \
                 Get-ExchangeServer (RBAC)",
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

pub(super) async fn check_server(shared: &Shared, t: Target) -> ServerCheck {
    let cfg = &shared.cfg;
    let port = t
        .port
        .or(cfg.port)
        .unwrap_or(if cfg.https { 5986 } else { 5985 });
    let mut check = blank(&t, port, cfg.https);
    let connect_timeout = cfg.connect_timeout;

    let auth = cfg.mechanism_for(&t).await;
    let ps_port = match shared.org_via {
        OrgVia::RemotePowerShell { port } => Some(port),
        OrgVia::WinRs => None,
    };
    if cfg!(feature = "kerberos") {
        if ps_port.is_none() {
            set(
                &mut check,
                skipped(
                    "powershell",
                    "not used: the org query goes over WinRS (--org-via winrs); \
                     --org-via remote-powershell checks /PowerShell",
                ),
            );
        }
        if auth != AuthKind::Kerberos && ps_port.is_none() {
            set(
                &mut check,
                skipped(
                    "kerberos",
                    format!(
                        "not used: WinRM authenticates with {} and the org query goes over WinRS",
                        auth.name()
                    ),
                ),
            );
        }
    }

    // Name resolution, of the name the scan connects to (`Target::host`): the inventory's
    // address, else the FQDN, else the name.
    let kerberos_fqdn = t.fqdn.as_deref().filter(|_| auth == AuthKind::Kerberos);
    let bare = t.host.trim_start_matches('[').trim_end_matches(']');
    let spn = kerberos_fqdn
        .map(|f| format!(" (Kerberos: SPN and Host HTTP/{f})"))
        .unwrap_or_default();
    let addrs: Vec<SocketAddr> = if let Ok(ip) = bare.parse::<IpAddr>() {
        let s = if t.name.eq_ignore_ascii_case(bare) {
            skipped("dns", format!("{bare} is an address: nothing to resolve"))
        } else {
            passed(
                "dns",
                format!(
                    "{} is at {bare}, the inventory's address column (no DNS lookup){spn}",
                    t.name
                ),
            )
        };
        set(&mut check, s);
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
                    passed(
                        "dns",
                        format!("{bare} resolves to {}{spn}", list.join(", ")),
                    ),
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
    let addrs = &addrs[..addrs.len().min(MAX_ADDRESSES)];
    let connected_ip = match connect_any(addrs, connect_timeout).await {
        Ok((addr, took)) => {
            set(
                &mut check,
                passed(
                    "tcp",
                    format!("{addr} accepted the connection in {} ms", took.as_millis()),
                ),
            );
            addr.ip()
        }
        Err((last_error, refused)) => {
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
    };

    // Kerberos: for WinRM, or for /PowerShell, which takes nothing else.
    #[cfg(feature = "kerberos")]
    let ticket = if auth == AuthKind::Kerberos || ps_port.is_some() {
        match super::kerberos::kerberos_step(shared, &t, auth).await {
            Ok((s, ticket)) => {
                set(&mut check, s);
                Some(ticket)
            }
            Err(s) => {
                set(&mut check, s);
                return check;
            }
        }
    } else {
        None
    };
    #[cfg(not(feature = "kerberos"))]
    let _ = connected_ip;

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
    let outcome = transport::run_probe(
        cfg,
        &t,
        transport::Feed::CommandLine(&script),
        shared.timeout,
        &shared.cancel,
    )
    .await;
    let out = match outcome {
        Err(e) => {
            if e.kind == FailureKind::Auth && !cfg.clients.auth_proven() {
                shared.auth_failures.fetch_add(1, Ordering::SeqCst);
            }
            winrm_failure(&mut check, cfg, auth, &e);
            return check;
        }
        Ok(out) => out,
    };
    if cfg.https {
        set(&mut check, tls_passed(cfg));
    }
    set(&mut check, auth_accepted(cfg, auth));
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

    #[cfg(feature = "kerberos")]
    if let (Some(ticket), Some(ps_port)) = (&ticket, ps_port) {
        let s = super::kerberos::powershell_step(shared, &t, ticket, connected_ip, ps_port).await;
        let stop = s.result == Outcome::Failed;
        set(&mut check, s);
        if stop {
            return check;
        }
    }

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

/// The first of `addrs` that accepts a TCP connection, and how long it took; else the last
/// error and whether any address refused (nothing listening) rather than stayed silent.
pub(super) async fn connect_any(
    addrs: &[SocketAddr],
    timeout: std::time::Duration,
) -> Result<(SocketAddr, std::time::Duration), (String, bool)> {
    let mut last_error = String::new();
    let mut refused = false;
    for addr in addrs {
        let t0 = Instant::now();
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => return Ok((*addr, t0.elapsed())),
            Ok(Err(e)) => {
                refused |= e.kind() == std::io::ErrorKind::ConnectionRefused;
                last_error = format!("{addr}: {e}");
            }
            Err(_) => {
                last_error = format!("{addr}: no answer in {} s", timeout.as_secs());
            }
        }
    }
    Err((last_error, refused))
}

/// "LAB\\user accepted (ntlm)", with the mechanism that got in.
fn auth_accepted(cfg: &TransportConfig, auth: AuthKind) -> Step {
    passed(
        "winrm-auth",
        format!("{} accepted ({})", cfg.account.display(), auth.name()),
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
fn winrm_failure(check: &mut ServerCheck, cfg: &TransportConfig, auth: AuthKind, e: &ProbeError) {
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
                // The Kerberos step got the ticket: the server is what refused it.
                FailureKind::Auth if auth == AuthKind::Kerberos => {
                    "the server refused a valid ticket: its clock must agree with the \
                     domain's (w32tm /resync on the server), HTTP/<fqdn> must belong to this \
                     server's computer account (setspn -Q HTTP/<fqdn>), and WinRM must accept \
                     Kerberos (winrm get winrm/config/service/auth)"
                }
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
            set(check, auth_accepted(cfg, auth));
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
