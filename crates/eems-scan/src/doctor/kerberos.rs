//! The Kerberos and `/PowerShell` steps (feature `kerberos`), and the org query over Exchange
//! Remote PowerShell when `--org-via remote-powershell` asks for it.
//!
//! The credentials are the scan's ([`crate::kerberos_scan`]): with Kerberos for WinRM the
//! transport's own, otherwise, for `/PowerShell` only, the ticket cache or the password, as
//! the scan's org query gets them; each got once per run. So a wrong password costs one
//! logon attempt at the KDC, not one per server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::exchange_ps::{self, Endpoint, OrgQueryError};
use crate::kerberos::{self, Credentials, KerberosError, Source};
use crate::scan::{OrgVia, match_org_server};
use crate::transport::{AuthKind, Target, TransportConfig};
use eems_core::facts::ExchangeServerFacts;
use eems_core::text::excerpt;

use super::checks::{connect_any, failed, passed};
use super::{Shared, Step};

/// The `/PowerShell` side's credentials and TLS set-up, shared by every server of a run.
#[derive(Default)]
pub(super) struct PsShared {
    tls: tokio::sync::OnceCell<Result<Option<Arc<rustls::ClientConfig>>, String>>,
}

/// What the Kerberos step proved, for the steps after it.
pub(super) struct Ticket {
    creds: Arc<Credentials>,
    fqdn: String,
}

async fn tls(
    cfg: &TransportConfig,
    ps: &PsShared,
) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    ps.tls
        .get_or_init(|| async {
            if !cfg.https {
                return Ok(None);
            }
            if cfg.insecure {
                return Err(
                    "--insecure is not supported for /PowerShell: Kerberos over \
                            HTTPS needs a verified certificate"
                        .to_string(),
                );
            }
            exchange_ps::tls_config(cfg.ca_cert.as_deref()).map(Some)
        })
        .await
        .clone()
}

/// The FQDN Kerberos names for `t`: with Kerberos for WinRM the transport's own rule (the
/// address must then be an IP address); for `/PowerShell` alone, the inventory's FQDN.
fn fqdn_of(t: &Target, winrm: bool) -> Result<String, String> {
    match (&t.fqdn, winrm) {
        (Some(f), false) => Ok(f.clone()),
        _ => kerberos::spn_host(t),
    }
}

/// Credentials (ticket cache or password), the realm's KDC, the clocks, and a service ticket
/// for `HTTP/<fqdn>`, each failure in kerberos.rs's plain words.
pub(super) async fn kerberos_step(
    shared: &Shared,
    t: &Target,
    auth: AuthKind,
) -> Result<(Step, Ticket), Step> {
    let winrm = auth == AuthKind::Kerberos;
    let fqdn = fqdn_of(t, winrm).map_err(|e| {
        failed(
            "kerberos",
            e,
            "give the server's FQDN in the inventory's fqdn column (and its IP address in \
             the address column, or nothing there to connect to the FQDN)",
        )
    })?;
    // WinRM's credentials when it uses Kerberos, else those of the org query.
    let creds = crate::kerberos_scan::org_credentials(&shared.cfg, &fqdn)
        .await
        .map_err(|e| failed("kerberos", e.to_string(), &fix(&e, &fqdn)))?;
    kerberos::service_ticket(&creds, &fqdn)
        .await
        .map_err(|e| failed("kerberos", e.to_string(), &fix(&e, &fqdn)))?;
    let from = match creds.source() {
        Source::TicketCache => "the ticket cache",
        Source::Password => "the password (a private in-memory ticket cache)",
    };
    let ps = matches!(shared.org_via, OrgVia::RemotePowerShell { .. });
    let needed_for = match (winrm, ps) {
        (true, true) => "WinRM and /PowerShell",
        (true, false) => "WinRM",
        _ => "/PowerShell",
    };
    let detail = format!(
        "{} from {from}; the KDC of {} issued a service ticket for HTTP/{fqdn} (clocks within \
         the allowed skew); for {needed_for}",
        creds.principal(),
        creds.realm()
    );
    Ok((passed("kerberos", detail), Ticket { creds, fqdn }))
}

/// What to do about a Kerberos failure, in plain words.
fn fix(e: &KerberosError, fqdn: &str) -> String {
    match e {
        KerberosError::NoTicketNoPassword { principal, .. }
        | KerberosError::TicketExpired { principal, .. } => format!(
            "run `kinit {principal}`, or give the password (EEMS_PASSWORD, --password-file \
             or the prompt) with --auth kerberos"
        ),
        KerberosError::NoRealm { config, .. } => {
            format!("give the user as user@REALM (--user), or set default_realm in {config}")
        }
        KerberosError::RealmNotDomain { name, config, .. } => format!(
            "give the user as {name}@<the domain's DNS name> (--user), or set default_realm \
             in {config} to the domain's realm"
        ),
        KerberosError::KdcUnreachable { realm, config } => format!(
            "check the KDC of {realm} in {config} ([realms] {realm} = {{ kdc = <domain \
             controller> }}, or DNS SRV records with dns_lookup_kdc) and that this machine \
             reaches it on port 88, TCP and UDP"
        ),
        KerberosError::ClockSkew { .. } => "synchronise this machine's clock with the domain's \
             (NTP: chronyc makestep, or w32tm /resync on Windows); Kerberos refuses more than \
             5 minutes of difference"
            .into(),
        KerberosError::WrongPassword { .. } => {
            "check the password (EEMS_PASSWORD, --password-file or the prompt); each wrong \
             one counts towards the account's lockout"
                .into()
        }
        KerberosError::UnknownUser { .. } => {
            "check the user name (--user): the domain does not know this account".into()
        }
        KerberosError::PasswordExpired { .. } => "change the account's password".into(),
        KerberosError::AccountRevoked { .. } => {
            "ask a domain administrator to enable or unlock the account".into()
        }
        KerberosError::UnknownSpn { .. } => format!(
            "check the FQDN (the inventory's fqdn column; never an IP address): the domain \
             knows no service HTTP/{fqdn}; if the name is right, register it on the server's \
             computer account: setspn -S HTTP/{fqdn} <account>"
        ),
        KerberosError::Other { .. } => {
            "check krb5.conf (KRB5_CONFIG) and the ticket cache (klist); -v shows more".into()
        }
    }
}

/// TCP to the org port, Kerberos to `/PowerShell/` with the `Microsoft.Exchange`
/// configuration, and `Get-ExchangeServer -Identity <server>`: what the org query needs.
pub(super) async fn powershell_step(
    shared: &Shared,
    t: &Target,
    ticket: &Ticket,
    ip: std::net::IpAddr,
    port: u16,
) -> Step {
    let cfg = &shared.cfg;
    let connect = SocketAddr::new(ip, port);
    let tls = match tls(cfg, &shared.ps).await {
        Ok(tls) => tls,
        Err(e) => {
            return failed(
                "powershell",
                e,
                "trust the CA of the server's IIS certificate with --ca-cert (PEM)",
            );
        }
    };
    if let Err((e, refused)) = connect_any(&[connect], cfg.connect_timeout).await {
        let why = if refused {
            format!("nothing listens on port {port}")
        } else {
            format!("no answer on port {port}")
        };
        return failed(
            "powershell",
            e,
            &format!(
                "{why}: /PowerShell is on IIS's Default Web Site (port 80, 443 with --https): \
                 check --org-port, that IIS (W3SVC) runs on the server, and that a firewall \
                 lets the port through"
            ),
        );
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/PowerShell/", ticket.fqdn);
    let ep = Endpoint {
        fqdn: ticket.fqdn.clone(),
        connect,
        tls,
    };
    let answer =
        exchange_ps::get_exchange_server(ticket.creds.clone(), &ep, &t.name, shared.timeout).await;
    let servers = match answer {
        Ok(Ok(servers)) => servers,
        Ok(Err(msg)) => {
            return failed(
                "powershell",
                format!(
                    "Get-ExchangeServer -Identity {} failed on {url}: {}",
                    t.name,
                    excerpt(&msg, 200)
                ),
                "the account may run it, but Exchange could not answer: see the server's \
                 MSExchange Management event log; the scan's org query would fail the same way",
            );
        }
        Err(e) => return failed("powershell", e.to_string(), &ps_fix(&e, &ticket.fqdn, port)),
    };
    let who = ticket.creds.principal();
    let found = match match_org_server(&t.name, &servers) {
        Some(i) => describe(&servers[i]),
        None => format!(
            "Exchange lists no server named {} (the scan matches servers by name or FQDN)",
            t.name
        ),
    };
    passed(
        "powershell",
        format!(
            "{url} ({connect}) accepted {who} over Kerberos; Get-ExchangeServer -Identity {} \
             ran: {found}",
            t.name
        ),
    )
}

fn describe(s: &ExchangeServerFacts) -> String {
    let version = s
        .admin_display_version
        .as_deref()
        .unwrap_or("version unknown");
    format!("{} ({version})", s.name)
}

fn ps_fix(e: &OrgQueryError, fqdn: &str, port: u16) -> String {
    match e {
        OrgQueryError::Connect { detail, .. } if detail.starts_with("TLS") => {
            "trust the CA that issued the IIS certificate with --ca-cert (PEM), and check that \
             the certificate carries the server's FQDN"
                .into()
        }
        OrgQueryError::Connect { .. } => format!(
            "check that IIS's Default Web Site listens on port {port} (--org-port) and that \
             nothing between here and the server cuts the connection"
        ),
        OrgQueryError::NotFound { .. } => format!(
            "port {port} answers but has no /PowerShell/: is this an Exchange Mailbox server, \
             and is --org-port the Default Web Site's port? (Get-PowerShellVirtualDirectory \
             shows the virtual directory)"
        ),
        OrgQueryError::Kerberos(k) => fix(k, fqdn),
        OrgQueryError::KerberosRefused { .. } => format!(
            "the server could not use the ticket: HTTP/{fqdn} must belong to this server's \
             computer account (setspn -Q HTTP/{fqdn}), and the clocks must agree"
        ),
        OrgQueryError::Rbac { .. } => "add the account to an Exchange role group that may run \
             Get-ExchangeServer, for example: Add-RoleGroupMember \"View-Only Organization \
             Management\" -Member <account>"
            .into(),
        OrgQueryError::Timeout { .. } => "the endpoint accepted the connection but did not \
             answer in time: check the MSExchangePowerShellAppPool application pool in IIS, or \
             raise --timeout"
            .into(),
        OrgQueryError::Protocol { .. } => "see the server's IIS log for /PowerShell and its \
             MSExchange Management event log"
            .into(),
    }
}

/// The org query over Exchange Remote PowerShell on one server (doctor's, for each server's
/// InternetWebProxy): the credentials and TLS of the `/PowerShell` step, TCP to the server's
/// address on the org port.
pub(super) async fn org_query(
    cfg: &TransportConfig,
    ps: &PsShared,
    t: &Target,
    port: u16,
    timeout: Duration,
) -> Result<Vec<ExchangeServerFacts>, String> {
    let winrm = cfg.mechanism_for(t).await == AuthKind::Kerberos;
    let fqdn = fqdn_of(t, winrm)?;
    let creds = crate::kerberos_scan::org_credentials(cfg, &fqdn)
        .await
        .map_err(|e| format!("Kerberos: {e}"))?;
    let host = t.host.trim_start_matches('[').trim_end_matches(']');
    let connect = tokio::time::timeout(cfg.connect_timeout, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| format!("no answer from the resolver for {host}"))?
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    let ep = Endpoint {
        fqdn,
        connect,
        tls: tls(cfg, ps).await?,
    };
    let facts = exchange_ps::query_org(creds, &ep, timeout)
        .await
        .map_err(|e| e.to_string())?;
    match facts.servers_error {
        Some(e) => Err(format!("Get-ExchangeServer failed: {e}")),
        None => Ok(facts.servers),
    }
}
