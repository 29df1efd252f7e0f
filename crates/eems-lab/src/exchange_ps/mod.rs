//! Exchange's remote PowerShell endpoint, `http://<fqdn>/PowerShell/` (feature `kerberos`;
//! reference psrp-kerberos.md §A): WS-Man + MS-PSRP with the `Microsoft.Exchange`
//! configuration, the way the back end's `pwrshplugin.dll` behind `kerbauth` answers.
//!
//! - Kerberos only: NTLMSSP (bare or inside SPNEGO) and Basic get 401, as Exchange's IIS
//!   configuration (Windows and Basic auth disabled, `kerbauth` in front) does.
//! - Over HTTPS, Extended Protection "Required" (IIS's default on Exchange 2019 CU14+ and SE,
//!   [`Options::extended_protection`]): the AP-REQ must carry the channel bindings of this
//!   host's certificate; none, or another certificate's, get 401.
//! - Every SOAP body is sealed with the Kerberos session under the MIME protocol of the scheme
//!   that authenticated (`Kerberos` -> `HTTP-Kerberos-session-encrypted`).
//! - The runspace is NoLanguage: only command invocations of the allow-list run; script text
//!   gets Exchange's no-language error. An account without an Exchange role sees no cmdlets at
//!   all ("The term ... is not recognized"), as RBAC hides them; one without the audit role
//!   does not see Search-AdminAuditLog.
//! - `Get-ExchangeServer -Identity <name or FQDN>` answers that server, or Exchange's
//!   "couldn't be found" error (what `eems-scan doctor` sends).
//! - No second hop: the cmdlets answer from the fleet file (what the Exchange Trusted
//!   Subsystem would read from AD), never from anything the caller's token could reach.
//!
//! Its own listener per host (the fleet's address, a port the caller picks), not a route in
//! [`crate::http`]: on Exchange `/PowerShell` is IIS on 80/443, a different server from the
//! WinRM service on 5985/5986, with different authentication rules.
//!
//! The PSRP layer (fragments, messages, CLIXML) is psrp-rs's public codec, so the lab and the
//! scanner share no hand-written PSRP; the independent check is pypsrp (`.ci/run`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use psrp_rs::fragment::Reassembler;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::fleet::{Fleet, OrgSpec, ServerSpec};
use crate::kdc::Realm;
use crate::kerberos::{AcceptContext, Acceptor, TokenKind, token_kind};
use crate::log::{self, LogRecord, RequestLog};
use crate::wsman::parse_xml;
use eems_core::sealing::Protocol;
use soap::fault;

mod audit;
mod cmdlets;
mod objects;
mod soap;

pub const RESOURCE_URI: &str = "http://schemas.microsoft.com/powershell/Microsoft.Exchange";
/// What a real client of this endpoint asks for and Exchange's back end allows.
pub const ALLOWED_CMDLETS: &[&str] = &[
    "Get-OrganizationConfig",
    "Get-ExchangeServer",
    "Search-AdminAuditLog",
];
pub const NO_LANGUAGE: &str = "The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode.";
/// The log's `auth` value for a Kerberos-authenticated request.
pub const AUTH_KERBEROS: &str = "kerberos";

const NS_S: &str = "http://www.w3.org/2003/05/soap-envelope";
const NS_A: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
const NS_W: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
const NS_RSP: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
const ACTION_BASE: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
const MAX_BODY: usize = 4 * 1024 * 1024;
const IDLE: Duration = Duration::from_secs(120);
/// Bound on one connection's life, so nothing a client does keeps a task forever.
const MAX_CONNECTION_LIFE: Duration = Duration::from_secs(3600);

/// Options of the endpoint.
pub struct Options {
    /// Port on every host's own loopback address (0: one free port per host).
    pub port: u16,
    /// Accounts (`user@REALM`, any case) that authenticate but hold no Exchange role.
    pub no_role: Vec<String>,
    /// Accounts that hold View-Only Organization Management but not the View-Only Audit Logs
    /// role: Search-AdminAuditLog does not exist for them.
    pub no_audit_role: Vec<String>,
    pub log: Arc<RequestLog>,
    /// HTTPS (`https://<fqdn>/PowerShell/`) with a CA made at start ([`ExchangePs::ca_pem`]);
    /// the bodies are then not sealed, as Windows does not seal inside TLS.
    pub https: bool,
    /// With `https`: Extended Protection "Required", as IIS has it on Exchange 2019 CU14+ and
    /// SE: a ticket whose AP-REQ is not bound to this host's certificate gets 401. `false`:
    /// "Off", as on older Exchange, where any ticket is taken.
    pub extended_protection: bool,
}

/// The running endpoints: one listener per host that is neither `down` nor `ps_down`.
pub struct ExchangePs {
    /// (server name, fqdn, bound address).
    pub endpoints: Vec<(String, String, SocketAddr)>,
    /// The CA of the HTTPS endpoints.
    pub ca_pem: Option<String>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl ExchangePs {
    pub async fn start(fleet: &Fleet, realm: &Realm, opts: Options) -> anyhow::Result<ExchangePs> {
        let cancel = CancellationToken::new();
        let org = Arc::new(fleet.org.clone());
        let servers = Arc::new(fleet.servers.clone());
        let no_role = Arc::new(
            opts.no_role
                .iter()
                .map(|u| u.to_ascii_lowercase())
                .collect::<Vec<_>>(),
        );
        let no_audit_role = Arc::new(
            opts.no_audit_role
                .iter()
                .map(|u| u.to_ascii_lowercase())
                .collect::<Vec<_>>(),
        );
        let mut endpoints = Vec::new();
        let mut tasks = Vec::new();
        let pki = if opts.https {
            Some(crate::tls::LabPki::new(&fleet.org.name)?)
        } else {
            None
        };
        for s in fleet.servers.iter() {
            if s.faults.down || s.faults.ps_down {
                continue;
            }
            let fqdn = s.fqdn();
            let acceptor = Acceptor::from_keytab(&realm.keytab(), &realm.service_principal(&fqdn))
                .map_err(|e| anyhow::anyhow!("server {}: {e}", s.name))?;
            let addr = SocketAddr::from((s.address, opts.port));
            let l = TcpListener::bind(addr).await.map_err(|e| {
                // The hosts already listening stop, so that a caller can try another port.
                cancel.cancel();
                anyhow::anyhow!(
                    "server {}: /PowerShell cannot listen on {addr}: {e}",
                    s.name
                )
            })?;
            let bound = l.local_addr()?;
            let (tls, bindings) = match &pki {
                Some(p) => {
                    let t = p.host(&s.name, &fqdn, s.address)?;
                    let bindings = match opts.extended_protection {
                        true => Some(
                            eems_core::channel_binding::tls_server_end_point(&t.cert_der)
                                .ok_or_else(|| {
                                    anyhow::anyhow!(
                                        "server {}: its certificate has no channel binding",
                                        s.name
                                    )
                                })?,
                        ),
                        false => None,
                    };
                    (Some(t.config), bindings)
                }
                None => (None, None),
            };
            endpoints.push((s.name.clone(), fqdn, bound));
            let host = Arc::new(Host {
                name: s.name.clone(),
                acceptor,
                bindings,
                org: org.clone(),
                servers: servers.clone(),
                no_role: no_role.clone(),
                no_audit_role: no_audit_role.clone(),
                log: opts.log.clone(),
                shells: Mutex::new(HashMap::new()),
                latency: Duration::from_millis(s.faults.latency_ms),
            });
            tasks.push(tokio::spawn(accept_loop(host, l, tls, cancel.clone())));
        }
        Ok(ExchangePs {
            endpoints,
            ca_pem: pki.map(|p| p.ca_pem().to_string()),
            cancel,
            tasks,
        })
    }

    /// The bound address of `server`'s endpoint (None: down).
    pub fn addr(&self, server: &str) -> Option<SocketAddr> {
        self.endpoints
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(server))
            .map(|e| e.2)
    }

    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

struct Host {
    name: String,
    acceptor: Acceptor,
    /// Extended Protection: the channel bindings every AP-REQ must carry (the listener is
    /// HTTPS-only, so they are those of the one certificate it presents).
    bindings: Option<Vec<u8>>,
    org: Arc<OrgSpec>,
    servers: Arc<Vec<ServerSpec>>,
    no_role: Arc<Vec<String>>,
    no_audit_role: Arc<Vec<String>>,
    log: Arc<RequestLog>,
    shells: Mutex<HashMap<String, Shell>>,
    /// The fleet's `latency_ms`, which it adds to every HTTP response of the host: the
    /// network between client and server is the same for IIS as for WinRM.
    latency: Duration,
}

/// One runspace pool (a WS-Man shell) and the output waiting for Receive, per command id
/// (`None`: the pool's own stream).
struct Shell {
    rpid: Uuid,
    reassembler: Reassembler,
    next_oid: u64,
    output: HashMap<Option<String>, Vec<u8>>,
    /// Commands whose pipeline has finished (CommandState Done on the next Receive).
    done: Vec<String>,
    /// The authenticated principal that created it.
    owner: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn accept_loop(
    host: Arc<Host>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    cancel: CancellationToken,
) {
    let conn_ids = Arc::new(std::sync::atomic::AtomicU64::new(0));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => r,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let id = conn_ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let host = host.clone();
        let cancel = cancel.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let serve = async {
                match tls {
                    Some(config) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(config);
                        if let Ok(Ok(s)) =
                            tokio::time::timeout(Duration::from_secs(30), acceptor.accept(stream))
                                .await
                        {
                            serve(host, s, id, true).await;
                        }
                    }
                    None => serve(host, stream, id, false).await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::timeout(MAX_CONNECTION_LIFE, serve) => {}
            }
        });
    }
}

async fn serve<I>(host: Arc<Host>, io: I, id: u64, tls: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let ctx: Arc<ConnAuth> = Arc::new(Mutex::new(None));
    let svc = hyper::service::service_fn(move |req| {
        let host = host.clone();
        let ctx = ctx.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&host, &ctx, id, tls, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(IDLE)
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

type ConnAuth = Mutex<Option<(AcceptContext, Protocol, String)>>;

fn reply(status: u16, headers: &[(&str, String)], body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("Server", "Microsoft-IIS/10.0");
    for (k, v) in headers {
        r = r.header(*k, v.as_str());
    }
    r.body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn unauthorized() -> Response<Full<Bytes>> {
    // kerbauth offers the Kerberos scheme only (what `-Authentication Kerberos` and pypsrp
    // then use, with HTTP-Kerberos-session-encrypted); a Negotiate header carrying a raw
    // Kerberos token is still accepted, sealed under the SPNEGO MIME protocol.
    reply(401, &[("WWW-Authenticate", "Kerberos".into())], Vec::new())
}

async fn handle(
    host: &Host,
    conn: &ConnAuth,
    id: u64,
    tls: bool,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let mut rec = LogRecord::request(format!("{}/PowerShell", host.name), id, tls);
    rec.ts_ms = log::now_ms();
    let resp = handle_inner(host, conn, req, &mut rec).await;
    if !host.latency.is_zero() {
        tokio::time::sleep(host.latency).await;
    }
    rec.status = resp.status().as_u16();
    host.log.record(rec);
    resp
}

async fn handle_inner(
    host: &Host,
    conn: &ConnAuth,
    req: Request<hyper::body::Incoming>,
    rec: &mut LogRecord,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/').to_ascii_lowercase();
    if path != "/powershell" {
        rec.note = Some(format!("no such path {}", req.uri().path()));
        return reply(404, &[], Vec::new());
    }
    if req.method() != hyper::Method::POST {
        return reply(405, &[], Vec::new());
    }
    let authz = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_type = req
        .headers()
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(413, &[], Vec::new()),
    };
    let mut out_headers = Vec::new();
    if let Some(authz) = authz {
        let (scheme, token) = authz.split_once(' ').unwrap_or((authz.as_str(), ""));
        let protocol = if scheme.eq_ignore_ascii_case("Kerberos") {
            Protocol::Kerberos
        } else if scheme.eq_ignore_ascii_case("Negotiate") {
            Protocol::Spnego
        } else {
            rec.step = log::STEP_REJECTED.into();
            rec.auth = scheme.to_ascii_lowercase();
            rec.note = Some(format!("{scheme} is disabled on /PowerShell"));
            *lock(conn) = None;
            return unauthorized();
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
            rec.step = log::STEP_REJECTED.into();
            rec.note = Some("token is not base64".into());
            return unauthorized();
        };
        if token_kind(&raw) == TokenKind::Ntlm {
            rec.step = log::STEP_REJECTED.into();
            rec.auth = log::AUTH_NTLM.into();
            rec.note = Some("NTLM is not accepted on /PowerShell (Kerberos only)".into());
            *lock(conn) = None;
            return unauthorized();
        }
        rec.auth = AUTH_KERBEROS.into();
        let mut ctx = host.acceptor.context();
        // MIT refuses bindings of another certificate itself, but takes a ticket without any
        // and only says so in the context's flags.
        match ctx.step(&raw, host.bindings.as_deref()) {
            Ok(_) if host.bindings.is_some() && ctx.is_established() && !ctx.channel_bound() => {
                rec.step = log::STEP_REJECTED.into();
                rec.note = Some(
                    "Extended Protection: the Kerberos ticket is not bound to this TLS channel"
                        .into(),
                );
                *lock(conn) = None;
                return unauthorized();
            }
            Ok(answer) if ctx.is_established() => {
                let who = ctx.client_principal().unwrap_or_default();
                rec.step = log::STEP_AUTHENTICATED.into();
                rec.user = Some(who.clone());
                if let Some(a) = answer {
                    out_headers.push((
                        "WWW-Authenticate",
                        format!(
                            "{scheme} {}",
                            base64::engine::general_purpose::STANDARD.encode(a)
                        ),
                    ));
                }
                *lock(conn) = Some((ctx, protocol, who));
            }
            Ok(_) => {
                rec.step = log::STEP_REJECTED.into();
                rec.note = Some("multi-leg SPNEGO is not supported here".into());
                return unauthorized();
            }
            Err(e) => {
                rec.step = log::STEP_REJECTED.into();
                rec.note = Some(e.to_string());
                *lock(conn) = None;
                return unauthorized();
            }
        }
    }
    let mut guard = lock(conn);
    let Some((ctx, protocol, who)) = guard.as_mut() else {
        rec.note = Some("no Kerberos context on this connection".into());
        return unauthorized();
    };
    rec.user = Some(who.clone());
    rec.auth = AUTH_KERBEROS.into();
    if body.is_empty() {
        let h: Vec<(&str, String)> = out_headers;
        return reply(200, &h, Vec::new());
    }
    let sealed_body = content_type
        .to_ascii_lowercase()
        .starts_with("multipart/encrypted");
    if !sealed_body && !rec.tls {
        rec.plaintext_soap = true;
        rec.note = Some("plaintext SOAP refused: the body must be sealed".into());
        return reply(400, &[], Vec::new());
    }
    let plain = if sealed_body {
        match ctx.unseal(&body, *protocol) {
            Ok(p) => p,
            Err(e) => {
                rec.note = Some(e.to_string());
                return reply(400, &[], Vec::new());
            }
        }
    } else {
        body.to_vec()
    };
    rec.sealed = sealed_body;
    let who = who.clone();
    let (status, soap) = match parse_xml(&plain) {
        Ok(doc) => host.soap(&doc, &who, rec),
        Err(e) => (
            500,
            fault(
                "s:Sender",
                "w:SchemaValidationError",
                &format!("bad XML: {e}"),
            ),
        ),
    };
    if !sealed_body {
        out_headers.push((
            "Content-Type",
            "application/soap+xml;charset=UTF-8".to_string(),
        ));
        return reply(status, &out_headers, soap);
    }
    let sealed = match ctx.seal(&soap, *protocol) {
        Ok(s) => s,
        Err(e) => {
            rec.note = Some(e.to_string());
            return reply(500, &[], Vec::new());
        }
    };
    out_headers.push(("Content-Type", protocol.content_type().to_string()));
    reply(status, &out_headers, sealed)
}
