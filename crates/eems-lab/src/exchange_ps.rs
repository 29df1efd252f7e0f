//! Exchange's remote PowerShell endpoint, `http://<fqdn>/PowerShell/` (feature `kerberos`;
//! reference psrp-kerberos.md §A): WS-Man + MS-PSRP with the `Microsoft.Exchange`
//! configuration, the way the back end's `pwrshplugin.dll` behind `kerbauth` answers.
//!
//! - Kerberos only: NTLMSSP (bare or inside SPNEGO) and Basic get 401, as Exchange's IIS
//!   configuration (Windows and Basic auth disabled, `kerbauth` in front) does.
//! - Every SOAP body is sealed with the Kerberos session under the MIME protocol of the scheme
//!   that authenticated (`Kerberos` -> `HTTP-Kerberos-session-encrypted`).
//! - The runspace is NoLanguage: only command invocations of the allow-list run; script text
//!   gets Exchange's no-language error. An account without an Exchange role sees no cmdlets at
//!   all ("The term ... is not recognized"), as RBAC hides them.
//! - `Get-ExchangeServer -Identity <name or FQDN>` answers that server, or Exchange's
//!   "couldn't be found" error (what `eems-scan doctor` sends); other parameters are ignored.
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
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use psrp_rs::fragment::{Reassembler, encode_message};
use psrp_rs::message::{Destination, MessageType, PsrpMessage};
use psrp_rs::{PsObject, PsValue, parse_clixml, to_clixml};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::fleet::{Fleet, OrgSpec, ServerSpec};
use crate::kdc::Realm;
use crate::kerberos::{AcceptContext, Acceptor, TokenKind, token_kind};
use crate::log::{self, LogRecord, RequestLog};
use crate::wsman::{Node, parse_xml, xml_escape};
use eems_core::sealing::Protocol;

pub const RESOURCE_URI: &str = "http://schemas.microsoft.com/powershell/Microsoft.Exchange";
/// What a real client of this endpoint asks for and Exchange's back end allows.
pub const ALLOWED_CMDLETS: &[&str] = &["Get-OrganizationConfig", "Get-ExchangeServer"];
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
    pub log: Arc<RequestLog>,
    /// HTTPS (`https://<fqdn>/PowerShell/`) with a CA made at start ([`ExchangePs::ca_pem`]);
    /// the bodies are then not sealed, as Windows does not seal inside TLS.
    pub https: bool,
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
            let tls = match &pki {
                Some(p) => Some(p.host(&s.name, &fqdn, s.address)?.config),
                None => None,
            };
            endpoints.push((s.name.clone(), fqdn, bound));
            let host = Arc::new(Host {
                name: s.name.clone(),
                acceptor,
                org: org.clone(),
                servers: servers.clone(),
                no_role: no_role.clone(),
                log: opts.log.clone(),
                shells: Mutex::new(HashMap::new()),
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
    org: Arc<OrgSpec>,
    servers: Arc<Vec<ServerSpec>>,
    no_role: Arc<Vec<String>>,
    log: Arc<RequestLog>,
    shells: Mutex<HashMap<String, Shell>>,
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
        match ctx.step(&raw, None) {
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

fn envelope(action: &str, relates_to: &str, body: &str) -> Vec<u8> {
    let mut o = String::with_capacity(body.len() + 600);
    let _ = write!(
        o,
        "<s:Envelope xml:lang=\"en-US\" xmlns:s=\"{NS_S}\" xmlns:a=\"{NS_A}\" xmlns:w=\"{NS_W}\" xmlns:rsp=\"{NS_RSP}\">\
         <s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{}</a:MessageID>\
         <a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>\
         <a:RelatesTo>{}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>",
        Uuid::new_v4().to_string().to_ascii_uppercase(),
        xml_escape(relates_to)
    );
    o.into_bytes()
}

fn fault(code: &str, subcode: &str, reason: &str) -> Vec<u8> {
    envelope(
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
        "",
        &format!(
            "<s:Fault><s:Code><s:Value>{code}</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code>\
             <s:Reason><s:Text xml:lang=\"en-US\">{}</s:Text></s:Reason></s:Fault>",
            xml_escape(reason)
        ),
    )
}

fn header<'a>(doc: &'a Node, name: &str) -> Option<&'a Node> {
    doc.child("Header")?.child(name)
}

fn selector_shell_id(doc: &Node) -> Option<String> {
    header(doc, "SelectorSet")?
        .children_named("Selector")
        .find(|s| s.attr("Name") == Some("ShellId"))
        .map(|s| s.text_trimmed().to_string())
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

impl Host {
    /// Answers one unsealed SOAP request: (HTTP status, SOAP envelope).
    fn soap(&self, doc: &Node, who: &str, rec: &mut LogRecord) -> (u16, Vec<u8>) {
        let action = header(doc, "Action")
            .map(|n| n.text_trimmed().to_string())
            .unwrap_or_default();
        let msg_id = header(doc, "MessageID")
            .map(|n| n.text_trimmed().to_string())
            .unwrap_or_default();
        let resource = header(doc, "ResourceURI")
            .map(|n| n.text_trimmed().to_string())
            .unwrap_or_default();
        let op = action.rsplit('/').next().unwrap_or_default().to_string();
        rec.action = Some(op.clone());
        if resource != RESOURCE_URI {
            return (
                500,
                fault(
                    "s:Sender",
                    "w:DestinationUnreachable",
                    &format!(
                        "The WS-Management service cannot process the request. The resource URI ({resource}) was not found in the WS-Management catalog."
                    ),
                ),
            );
        }
        let body = doc.child("Body");
        let shell_id = selector_shell_id(doc);
        rec.shell_id = shell_id.clone();
        match op.as_str() {
            "Create" => self.create(body, who, &msg_id, rec),
            "Command" | "Send" | "Receive" | "Signal" | "Delete" => {
                let Some(shell_id) = shell_id else {
                    return (500, fault("s:Sender", "w:InvalidSelectors", "no ShellId"));
                };
                let mut shells = lock(&self.shells);
                let Some(shell) = shells.get_mut(&shell_id) else {
                    return (
                        500,
                        fault(
                            "s:Sender",
                            "w:InvalidSelectors",
                            "The request for the Windows Remote Shell with ShellId failed because the shell was not found on the server.",
                        ),
                    );
                };
                if !shell.owner.eq_ignore_ascii_case(who) {
                    return (
                        500,
                        fault("s:Sender", "w:AccessDenied", "Access is denied."),
                    );
                }
                match op.as_str() {
                    "Delete" => {
                        shells.remove(&shell_id);
                        (
                            200,
                            envelope(
                                &format!(
                                    "{}/DeleteResponse",
                                    "http://schemas.xmlsoap.org/ws/2004/09/transfer"
                                ),
                                &msg_id,
                                "",
                            ),
                        )
                    }
                    "Command" => {
                        let line = body.and_then(|b| b.child("CommandLine"));
                        let cmd_id = line
                            .and_then(|l| l.attr("CommandId"))
                            .map(str::to_ascii_uppercase)
                            .unwrap_or_else(|| Uuid::new_v4().to_string().to_ascii_uppercase());
                        let args = line
                            .and_then(|l| l.child("Arguments"))
                            .map(|a| a.text_trimmed().to_string())
                            .unwrap_or_default();
                        if let Some(bytes) = b64(&args) {
                            self.feed(shell, &bytes, Some(&cmd_id), who, rec);
                        }
                        shell.output.entry(Some(cmd_id.clone())).or_default();
                        (
                            200,
                            envelope(
                                &format!("{ACTION_BASE}/CommandResponse"),
                                &msg_id,
                                &format!(
                                    "<rsp:CommandResponse><rsp:CommandId>{cmd_id}</rsp:CommandId></rsp:CommandResponse>"
                                ),
                            ),
                        )
                    }
                    "Send" => {
                        let stream = body
                            .and_then(|b| b.child("Send"))
                            .and_then(|s| s.child("Stream"));
                        let cmd = stream
                            .and_then(|s| s.attr("CommandId"))
                            .map(str::to_ascii_uppercase);
                        if let Some(bytes) = stream.and_then(|s| b64(s.text_trimmed())) {
                            self.feed(shell, &bytes, cmd.as_deref(), who, rec);
                        }
                        (
                            200,
                            envelope(
                                &format!("{ACTION_BASE}/SendResponse"),
                                &msg_id,
                                "<rsp:SendResponse/>",
                            ),
                        )
                    }
                    "Signal" => {
                        let cmd = body
                            .and_then(|b| b.child("Signal"))
                            .and_then(|s| s.attr("CommandId"))
                            .map(str::to_ascii_uppercase);
                        if let Some(c) = &cmd {
                            shell.output.remove(&Some(c.clone()));
                            shell.done.retain(|d| d != c);
                        }
                        (
                            200,
                            envelope(
                                &format!("{ACTION_BASE}/SignalResponse"),
                                &msg_id,
                                "<rsp:SignalResponse/>",
                            ),
                        )
                    }
                    _ => {
                        let cmd = body
                            .and_then(|b| b.child("Receive"))
                            .and_then(|r| r.child("DesiredStream"))
                            .and_then(|d| d.attr("CommandId"))
                            .map(str::to_ascii_uppercase);
                        let data = shell
                            .output
                            .get_mut(&cmd)
                            .map(std::mem::take)
                            .unwrap_or_default();
                        let mut b = String::from("<rsp:ReceiveResponse>");
                        let attr = cmd
                            .as_ref()
                            .map(|c| format!(" CommandId=\"{c}\""))
                            .unwrap_or_default();
                        if !data.is_empty() {
                            let _ = write!(
                                b,
                                "<rsp:Stream Name=\"stdout\"{attr}>{}</rsp:Stream>",
                                base64::engine::general_purpose::STANDARD.encode(&data)
                            );
                        }
                        if let Some(c) = &cmd
                            && shell.done.contains(c)
                        {
                            let _ = write!(
                                b,
                                "<rsp:CommandState CommandId=\"{c}\" State=\"{ACTION_BASE}/CommandState/Done\"/>"
                            );
                        } else if cmd.is_some() || !data.is_empty() {
                            let _ = write!(
                                b,
                                "<rsp:CommandState{attr} State=\"{ACTION_BASE}/CommandState/Running\"/>"
                            );
                        } else {
                            // Nothing for the pool: the long poll runs out.
                            return (
                                500,
                                fault(
                                    "s:Receiver",
                                    "w:TimedOut",
                                    "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.",
                                ),
                            );
                        }
                        b.push_str("</rsp:ReceiveResponse>");
                        (
                            200,
                            envelope(&format!("{ACTION_BASE}/ReceiveResponse"), &msg_id, &b),
                        )
                    }
                }
            }
            other => (
                500,
                fault(
                    "s:Sender",
                    "w:ActionNotSupported",
                    &format!("action {other} is not supported"),
                ),
            ),
        }
    }

    fn create(
        &self,
        body: Option<&Node>,
        who: &str,
        msg_id: &str,
        rec: &mut LogRecord,
    ) -> (u16, Vec<u8>) {
        let creation = body
            .and_then(|b| b.child("Shell"))
            .and_then(|s| s.child("creationXml"))
            .map(|c| c.text_trimmed().to_string())
            .unwrap_or_default();
        let Some(bytes) = b64(&creation) else {
            return (
                500,
                fault(
                    "s:Sender",
                    "w:InvalidParameter",
                    "creationXml is not base64",
                ),
            );
        };
        let shell_id = Uuid::new_v4().to_string().to_ascii_uppercase();
        let mut shell = Shell {
            rpid: Uuid::nil(),
            reassembler: Reassembler::new(),
            next_oid: 1,
            output: HashMap::new(),
            done: Vec::new(),
            owner: who.to_string(),
        };
        self.feed(&mut shell, &bytes, None, who, rec);
        if shell.rpid.is_nil() {
            return (
                500,
                fault(
                    "s:Sender",
                    "w:InvalidParameter",
                    "creationXml holds no InitRunspacePool",
                ),
            );
        }
        lock(&self.shells).insert(shell_id.clone(), shell);
        rec.shell_id = Some(shell_id.clone());
        let b = format!(
            "<x:ResourceCreated xmlns:x=\"http://schemas.xmlsoap.org/ws/2004/09/transfer\"><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address>\
             <a:ReferenceParameters><w:ResourceURI>{RESOURCE_URI}</w:ResourceURI><w:SelectorSet><w:Selector Name=\"ShellId\">{shell_id}</w:Selector></w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>\
             <rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId><rsp:ResourceUri>{RESOURCE_URI}</rsp:ResourceUri><rsp:State>Connected</rsp:State></rsp:Shell>"
        );
        (
            200,
            envelope(
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
                msg_id,
                &b,
            ),
        )
    }

    /// Feeds client fragments to the pool and answers every complete message.
    fn feed(
        &self,
        shell: &mut Shell,
        bytes: &[u8],
        cmd: Option<&str>,
        who: &str,
        rec: &mut LogRecord,
    ) {
        let messages = match shell.reassembler.feed(bytes) {
            Ok(m) => m,
            Err(e) => {
                rec.note = Some(format!("bad PSRP fragment: {e}"));
                return;
            }
        };
        for m in messages {
            let Ok(msg) = PsrpMessage::decode(&m) else {
                rec.note = Some("bad PSRP message".into());
                continue;
            };
            match msg.message_type {
                MessageType::SessionCapability => {
                    let caps = PsObject::new()
                        .with("protocolversion", PsValue::Version("2.3".into()))
                        .with("PSVersion", PsValue::Version("2.0".into()))
                        .with("SerializationVersion", PsValue::Version("1.1.0.1".into()));
                    self.push(
                        shell,
                        None,
                        MessageType::SessionCapability,
                        Uuid::nil(),
                        PsValue::Object(caps),
                    );
                }
                MessageType::InitRunspacePool => {
                    shell.rpid = msg.rpid;
                    let data = PsObject::new().with("ApplicationPrivateData", PsValue::Null);
                    self.push(
                        shell,
                        None,
                        MessageType::ApplicationPrivateData,
                        Uuid::nil(),
                        PsValue::Object(data),
                    );
                    let state = PsObject::new().with("RunspaceState", PsValue::I32(2));
                    self.push(
                        shell,
                        None,
                        MessageType::RunspacePoolState,
                        Uuid::nil(),
                        PsValue::Object(state),
                    );
                }
                MessageType::CreatePipeline => {
                    let key = cmd.map(str::to_string);
                    self.pipeline(shell, &msg, key, who, rec);
                }
                MessageType::CloseRunspacePool => {
                    let state = PsObject::new().with("RunspaceState", PsValue::I32(3));
                    self.push(
                        shell,
                        None,
                        MessageType::RunspacePoolState,
                        Uuid::nil(),
                        PsValue::Object(state),
                    );
                }
                // Availability, host responses, keys: nothing this endpoint needs.
                _ => {}
            }
        }
    }

    fn push(
        &self,
        shell: &mut Shell,
        cmd: Option<String>,
        ty: MessageType,
        pid: Uuid,
        value: PsValue,
    ) {
        let msg = PsrpMessage {
            destination: Destination::Client,
            message_type: ty,
            rpid: shell.rpid,
            pid,
            data: to_clixml(&value),
        };
        let oid = shell.next_oid;
        shell.next_oid += 1;
        shell
            .output
            .entry(cmd)
            .or_default()
            .extend_from_slice(&encode_message(oid, &msg.encode()));
    }

    fn pipeline(
        &self,
        shell: &mut Shell,
        msg: &PsrpMessage,
        cmd: Option<String>,
        who: &str,
        rec: &mut LogRecord,
    ) {
        let commands = commands_of(&msg.data);
        rec.probe = Some(
            commands
                .iter()
                .map(|(name, is_script)| {
                    if *is_script {
                        format!("script:{name}")
                    } else {
                        name.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join("|"),
        );
        let pid = msg.pid;
        let result = self.run(&commands, identity_of(&msg.data).as_deref(), who);
        match result {
            Ok(objects) => {
                for o in objects {
                    self.push(shell, cmd.clone(), MessageType::PipelineOutput, pid, o);
                }
                let state = PsObject::new().with("PipelineState", PsValue::I32(4));
                self.push(
                    shell,
                    cmd.clone(),
                    MessageType::PipelineState,
                    pid,
                    PsValue::Object(state),
                );
            }
            Err((message, error_id, exception_type)) => {
                let exception = PsObject::new()
                    .with("Message", PsValue::String(message.clone()))
                    .with_type_names([exception_type, "System.Exception", "System.Object"]);
                // The members PowerShell's ErrorRecord serialization always writes (pypsrp
                // requires SerializeExtendedInfo and the category).
                let (category, category_name) = match error_id {
                    "ScriptsNotAllowed" => (17, "ParserError"),
                    "CommandNotFoundException" => (13, "ObjectNotFound"),
                    _ => (0, "NotSpecified"),
                };
                let reason = exception_type.rsplit('.').next().unwrap_or(exception_type);
                let record = PsObject::new()
                    .with("Exception", PsValue::Object(exception))
                    .with("TargetObject", PsValue::Null)
                    .with("FullyQualifiedErrorId", PsValue::String(error_id.into()))
                    .with("SerializeExtendedInfo", PsValue::Bool(false))
                    .with("ErrorCategory_Category", PsValue::I32(category))
                    .with("ErrorCategory_Activity", PsValue::String(String::new()))
                    .with("ErrorCategory_Reason", PsValue::String(reason.into()))
                    .with("ErrorCategory_TargetName", PsValue::String(String::new()))
                    .with("ErrorCategory_TargetType", PsValue::String(String::new()))
                    .with(
                        "ErrorCategory_Message",
                        PsValue::String(format!("{category_name}: (:) [], {reason}")),
                    )
                    .with_type_names(["System.Management.Automation.ErrorRecord", "System.Object"]);
                let state = PsObject::new()
                    .with("PipelineState", PsValue::I32(5))
                    .with("ExceptionAsErrorRecord", PsValue::Object(record));
                self.push(
                    shell,
                    cmd.clone(),
                    MessageType::PipelineState,
                    pid,
                    PsValue::Object(state),
                );
            }
        }
        if let Some(c) = cmd {
            shell.done.push(c);
        }
    }

    /// Runs a pipeline of command invocations: Ok(output objects) or Err((message,
    /// FullyQualifiedErrorId, exception type)).
    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        commands: &[(String, bool)],
        identity: Option<&str>,
        who: &str,
    ) -> Result<Vec<PsValue>, (String, &'static str, &'static str)> {
        if commands.is_empty() {
            return Err((
                "No commands are specified.".into(),
                "NoCommands",
                "System.Management.Automation.RuntimeException",
            ));
        }
        if commands.iter().any(|(_, is_script)| *is_script) {
            return Err((
                NO_LANGUAGE.into(),
                "ScriptsNotAllowed",
                "System.Management.Automation.ParseException",
            ));
        }
        let has_role = !self.no_role.contains(&who.to_ascii_lowercase());
        let mut out = Vec::new();
        for (name, _) in commands {
            let allowed = ALLOWED_CMDLETS
                .iter()
                .find(|c| c.eq_ignore_ascii_case(name));
            let Some(cmdlet) = allowed.filter(|_| has_role) else {
                return Err((
                    format!(
                        "The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again."
                    ),
                    "CommandNotFoundException",
                    "System.Management.Automation.CommandNotFoundException",
                ));
            };
            match *cmdlet {
                "Get-OrganizationConfig" => {
                    if let Some(e) = &self.org.error {
                        return Err((
                            e.clone(),
                            "GetOrganizationConfigFailed",
                            "Microsoft.Exchange.Data.Directory.ADTransientException",
                        ));
                    }
                    out.push(organization_config(&self.org));
                }
                _ => {
                    if let Some(e) = &self.org.servers_error {
                        return Err((
                            e.clone(),
                            "GetExchangeServerFailed",
                            "Microsoft.Exchange.Data.Directory.ADTransientException",
                        ));
                    }
                    let wanted = |s: &ServerSpec| {
                        identity.is_none_or(|id| {
                            s.name.eq_ignore_ascii_case(id) || s.fqdn().eq_ignore_ascii_case(id)
                        })
                    };
                    let found: Vec<PsValue> = self
                        .servers
                        .iter()
                        .filter(|s| s.in_org && wanted(s))
                        .map(|s| exchange_server(&self.org, s))
                        .collect();
                    if let (Some(id), true) = (identity, found.is_empty()) {
                        return Err((
                            format!(
                                "The operation couldn't be performed because object '{id}' couldn't be found on 'dc01.{}'.",
                                self.org.name.to_ascii_lowercase()
                            ),
                            "ManagementObjectNotFoundException",
                            "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
                        ));
                    }
                    out.extend(found);
                }
            }
        }
        Ok(out)
    }
}

/// The value of an `-Identity` parameter in a CreatePipeline message (an `Args` entry with
/// `N` = Identity), as `Get-ExchangeServer -Identity EX01` sends it.
fn identity_of(data: &str) -> Option<String> {
    fn walk(v: &PsValue) -> Option<String> {
        match v {
            PsValue::Object(o) => {
                let named = o
                    .get("N")
                    .and_then(PsValue::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case("Identity"));
                match o.get("V").and_then(PsValue::as_str) {
                    Some(v) if named => Some(v.to_string()),
                    _ => o.properties.values().find_map(walk),
                }
            }
            PsValue::List(l) => l.iter().find_map(walk),
            _ => None,
        }
    }
    parse_clixml(data).ok()?.iter().find_map(walk)
}

/// `(command text, IsScript)` of each command of a CreatePipeline message: every object with a
/// `Cmd` under `PowerShell` (the `Cmds` list and, for a nested pipeline, `ExtraCmds`), found by
/// walking the tree rather than by one path, so that a client's extra wrapping cannot hide a
/// script from the allow-list.
fn commands_of(data: &str) -> Vec<(String, bool)> {
    fn walk(v: &PsValue, out: &mut Vec<(String, bool)>) {
        match v {
            PsValue::Object(o) => {
                if let Some(cmd) = o.get("Cmd").and_then(PsValue::as_str) {
                    let is_script = o
                        .get("IsScript")
                        .and_then(PsValue::as_bool)
                        .unwrap_or(false);
                    out.push((cmd.to_string(), is_script));
                }
                o.properties.values().for_each(|p| walk(p, out));
            }
            PsValue::List(l) => l.iter().for_each(|p| walk(p, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(values) = parse_clixml(data) {
        values.iter().for_each(|v| walk(v, &mut out));
    }
    out
}

fn strings(list: &[String]) -> PsValue {
    PsValue::List(list.iter().map(|s| PsValue::String(s.clone())).collect())
}

fn opt_bool(v: Option<bool>) -> Option<PsValue> {
    v.map(PsValue::Bool)
}

/// A deserialized `OrganizationConfig` as Exchange's remote session returns it (a property
/// bag; `MitigationsEnabled` absent on builds before the November 2021 SU).
fn organization_config(org: &OrgSpec) -> PsValue {
    let mut o = PsObject::new()
        .with("Name", PsValue::String(org.name.clone()))
        .with("Identity", PsValue::String(org.name.clone()))
        .with("IsDehydrated", PsValue::Bool(false))
        .with_type_names([
            "Deserialized.Microsoft.Exchange.Data.Directory.Management.OrganizationConfig",
            "Deserialized.Microsoft.Exchange.Data.Directory.ADPresentationObject",
            "Deserialized.System.Object",
        ]);
    if let Some(v) = opt_bool(org.mitigations_enabled) {
        o = o.with("MitigationsEnabled", v);
    }
    o.to_string = Some(org.name.clone());
    PsValue::Object(o)
}

/// `Version 15.2 (Build 1544.4)` from `15.2.1544.4`.
fn admin_display_version(build: &str) -> String {
    let p: Vec<&str> = build.split('.').collect();
    match p.as_slice() {
        [a, b, c, d] => format!("Version {a}.{b} (Build {c}.{d})"),
        _ => build.to_string(),
    }
}

/// A deserialized `ExchangeServer`: Site as the ADObjectId's string form, the mitigation
/// lists null when empty (as AD returns an unset multi-valued attribute), the applied time a
/// DateTime.
fn exchange_server(org: &OrgSpec, s: &ServerSpec) -> PsValue {
    let domain = s
        .fqdn()
        .split_once('.')
        .map(|(_, d)| d.to_string())
        .unwrap_or_default();
    let list_or_null = |l: &[String]| {
        if l.is_empty() {
            PsValue::Null
        } else {
            strings(l)
        }
    };
    let mut o = PsObject::new()
        .with("Name", PsValue::String(s.name.clone()))
        .with("Fqdn", PsValue::String(s.fqdn()))
        .with(
            "Site",
            PsValue::String(format!("{domain}/Configuration/Sites/{}", s.site)),
        )
        .with(
            "ServerRole",
            PsValue::String(if s.is_edge() {
                "Edge".into()
            } else {
                "Mailbox".into()
            }),
        )
        .with("IsEdgeServer", PsValue::Bool(s.is_edge()))
        .with(
            "AdminDisplayVersion",
            PsValue::String(admin_display_version(&s.build)),
        )
        .with("MitigationsApplied", list_or_null(&s.mitigations_applied))
        .with("MitigationsBlocked", list_or_null(&s.mitigations_blocked))
        .with(
            "MitigationsAppliedTime",
            s.mitigations_applied_time
                .clone()
                .map_or(PsValue::Null, PsValue::DateTime),
        )
        .with(
            "InternetWebProxy",
            s.internet_web_proxy
                .clone()
                .map_or(PsValue::Null, PsValue::Uri),
        )
        .with("OrganizationName", PsValue::String(org.name.clone()))
        .with_type_names([
            "Deserialized.Microsoft.Exchange.Data.Directory.Management.ExchangeServer",
            "Deserialized.Microsoft.Exchange.Data.Directory.ADPresentationObject",
            "Deserialized.System.Object",
        ]);
    if let Some(v) = opt_bool(s.mitigations_enabled) {
        o = o.with("MitigationsEnabled", v);
    }
    if let Some(v) = opt_bool(s.data_collection_enabled) {
        o = o.with("DataCollectionEnabled", v);
    }
    o.to_string = Some(s.name.clone());
    PsValue::Object(o)
}
