//! The WinRM listeners of the simulated hosts: HTTP and HTTPS on each host's own loopback
//! address, with the authentication and encryption rules of a stock Windows listener
//! (reference §2, §4, §6) and the HTTP-level faults of the fleet file.
//!
//! NTLM state (the pending challenge, then the sealing session) belongs to one TCP connection:
//! each connection gets its own service with its own [`ConnState`]. Nothing is keyed by the
//! client's address, so pooled connections from one client never share a context.

use crate::fleet::{AccountSpec, ListenerSpec, ServerSpec};
use crate::log::{self, LogRecord, RequestLog};
use crate::ntlm::{self, CbtPolicy, ServerIdentity};
use crate::tls::HostTls;
use crate::wsman::{self, WsmanRequest};
use base64::Engine;
use bytes::Bytes;
use eems_core::sealing::Protocol;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SOAP_CONTENT_TYPE: &str = "application/soap+xml;charset=UTF-8";
const SERVER_HEADER: &str = "Microsoft-HTTPAPI/2.0";
/// Far above `MaxEnvelopeSizekb` (500): only a guard against unbounded memory.
const MAX_REQUEST_BODY: usize = 8 * 1024 * 1024;
/// HTTP.sys closes idle connections after two minutes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Hard bound on one connection's life, so nothing a client does keeps a task forever.
const MAX_CONNECTION_LIFE: Duration = Duration::from_secs(3600);
/// A `hang` host holds the connection this long if the client never gives up.
const HANG_LIMIT: Duration = Duration::from_secs(600);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything one simulated host's listeners need.
pub struct HostCtx {
    pub spec: ServerSpec,
    pub listener: ListenerSpec,
    pub accounts: Arc<Vec<AccountSpec>>,
    pub identity: ServerIdentity,
    pub cbt: CbtPolicy,
    pub tls: HostTls,
    pub wsman: Arc<wsman::HostState>,
    pub log: Arc<RequestLog>,
    /// Shared by every host of the lab: connection numbers are unique per run.
    pub conn_ids: Arc<AtomicU64>,
    /// `drop_mid_response` hits the first Command only.
    command_dropped: AtomicBool,
    /// The keys of `HTTP/<fqdn>` when the lab runs with a realm; without, Kerberos tokens get
    /// 401 as on a host outside any domain.
    #[cfg(feature = "kerberos")]
    pub kerberos: Option<crate::kerberos::Acceptor>,
}

impl HostCtx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spec: ServerSpec,
        listener: ListenerSpec,
        accounts: Arc<Vec<AccountSpec>>,
        identity: ServerIdentity,
        cbt: CbtPolicy,
        tls: HostTls,
        wsman: Arc<wsman::HostState>,
        log: Arc<RequestLog>,
        conn_ids: Arc<AtomicU64>,
    ) -> HostCtx {
        HostCtx {
            spec,
            listener,
            accounts,
            identity,
            cbt,
            tls,
            wsman,
            log,
            conn_ids,
            command_dropped: AtomicBool::new(false),
            #[cfg(feature = "kerberos")]
            kerberos: None,
        }
    }

    fn address(&self) -> Ipv4Addr {
        self.spec.address
    }

    fn ntlm_blocked(&self) -> bool {
        !self.listener.ntlm || self.spec.faults.ntlm_disabled
    }
}

/// Which of its listeners each host opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Listen {
    /// HTTP and HTTPS, as a stock Windows server with an HTTPS listener.
    Both,
    /// HTTP only (port 5985 or the fleet's).
    Http,
    /// HTTPS only (port 5986 or the fleet's).
    Https,
}

impl Listen {
    fn opens(self, tls: bool) -> bool {
        match self {
            Listen::Both => true,
            Listen::Http => !tls,
            Listen::Https => tls,
        }
    }
}

/// Binds the host's listeners that `listen` asks for (none for a `down` host) and starts
/// accepting. Every bind happens before this returns, so a caller sees address conflicts
/// at once.
pub async fn start_host(
    host: Arc<HostCtx>,
    listen: Listen,
    cancel: CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    if host.spec.faults.down {
        return Ok(Vec::new());
    }
    let mut listeners = Vec::new();
    for (port, tls) in [
        (host.spec.http_port(&host.listener), false),
        (host.spec.https_port(&host.listener), true),
    ] {
        if !listen.opens(tls) {
            continue;
        }
        let addr = SocketAddr::from((host.address(), port));
        let l = TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!("server {}: cannot listen on {addr}: {e}", host.spec.name)
        })?;
        listeners.push((l, tls));
    }
    Ok(listeners
        .into_iter()
        .map(|(l, tls)| tokio::spawn(accept_loop(host.clone(), l, tls, cancel.clone())))
        .collect())
}

async fn accept_loop(
    host: Arc<HostCtx>,
    listener: TcpListener,
    tls: bool,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let host = host.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::time::timeout(MAX_CONNECTION_LIFE, connection(host, stream, peer, tls)) => {}
                    }
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on the error.
                tracing::warn!(server = %host.spec.name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(host: Arc<HostCtx>, stream: TcpStream, peer: SocketAddr, tls: bool) {
    let _ = stream.set_nodelay(true);
    let id = host.conn_ids.fetch_add(1, Ordering::Relaxed) + 1;
    if tls {
        let acceptor = tokio_rustls::TlsAcceptor::from(host.tls.config.clone());
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(s)) => serve(host, s, peer, id, true).await,
            Ok(Err(e)) => {
                tracing::debug!(server = %host.spec.name, conn = id, "TLS handshake failed: {e}")
            }
            Err(_) => {
                tracing::debug!(server = %host.spec.name, conn = id, "TLS handshake timed out")
            }
        }
    } else {
        serve(host, stream, peer, id, false).await
    }
}

async fn serve<I>(host: Arc<HostCtx>, io: I, peer: SocketAddr, id: u64, tls: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if host.spec.faults.hang {
        return hang(io).await;
    }
    let conn = Arc::new(ConnCtx {
        id,
        tls,
        peer,
        state: Mutex::new(AuthState::None),
    });
    let svc = hyper::service::service_fn(move |req| {
        let host = host.clone();
        let conn = conn.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&host, &conn, req).await) }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc)
        .await;
    if let Err(e) = result {
        tracing::debug!(conn = id, "connection ended: {e}");
    }
}

/// Reads and discards whatever the client sends, answering nothing, until the client leaves.
async fn hang<I: AsyncRead + Unpin>(mut io: I) {
    let mut buf = vec![0u8; 8192];
    let _ = tokio::time::timeout(HANG_LIMIT, async {
        // Each read either returns data or ends the loop on EOF/error; the timeout bounds time.
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Per-connection state and request handling

enum AuthState {
    None,
    /// CHALLENGE sent; the AUTHENTICATE must come on this connection.
    Challenged(ntlm::Challenge),
    Ntlm {
        user: String,
        /// Boxed: the two RC4 states make it several times the size of the other variants.
        session: Box<ntlm::Session>,
    },
    /// A Kerberos context, established or (SPNEGO continuation) on its way; it seals under
    /// the MIME protocol of the scheme that carried the token.
    #[cfg(feature = "kerberos")]
    Kerberos {
        user: String,
        ctx: Box<crate::kerberos::AcceptContext>,
        protocol: Protocol,
    },
}

struct ConnCtx {
    id: u64,
    tls: bool,
    peer: SocketAddr,
    /// hyper serves one request at a time per HTTP/1.1 connection: never contended.
    state: Mutex<AuthState>,
}

impl ConnCtx {
    fn state(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type LabBody = BoxBody<Bytes, std::io::Error>;

/// What to answer, before latency and logging.
struct Reply {
    status: u16,
    content_type: Option<&'static str>,
    www_authenticate: Vec<String>,
    body: Vec<u8>,
    /// Write the headers and half the body, then break the connection.
    truncate: bool,
}

impl Reply {
    fn empty(status: u16) -> Reply {
        Reply {
            status,
            content_type: None,
            www_authenticate: Vec::new(),
            body: Vec::new(),
            truncate: false,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// A session-based mechanism (NTLM or Kerberos): the connection's context seals.
    Session,
    Basic,
}

async fn handle(host: &HostCtx, conn: &ConnCtx, req: Request<Incoming>) -> Response<LabBody> {
    let (parts, body) = req.into_parts();
    let mut rec = LogRecord::request(host.spec.name.clone(), conn.id, conn.tls);
    // The body is always read in full before answering, 401s included: a client that sent
    // one must find the connection clean for its next request.
    let reply = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(b) => route(host, conn, &parts, b.to_bytes(), &mut rec).await,
        Err(e) => {
            rec.note = Some(format!("request body not read: {e}"));
            Reply::empty(400)
        }
    };
    if host.spec.faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(host.spec.faults.latency_ms)).await;
    }
    rec.status = reply.status;
    rec.ts_ms = log::now_ms();
    host.log.record(rec);
    build_response(reply)
}

fn build_response(reply: Reply) -> Response<LabBody> {
    let len = reply.body.len();
    let body: LabBody = if reply.truncate {
        TruncatedBody {
            first: Some(Bytes::from(reply.body[..len / 2].to_vec())),
            total: len as u64,
        }
        .boxed()
    } else {
        Full::new(Bytes::from(reply.body))
            .map_err(|never| match never {})
            .boxed()
    };
    let mut resp = Response::new(body);
    *resp.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static(SERVER_HEADER));
    if let Some(ct) = reply.content_type {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    for v in reply.www_authenticate {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.append(header::WWW_AUTHENTICATE, v);
        }
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// A body that yields its first half and then fails, so hyper drops the connection
/// mid-response with the full `Content-Length` already announced.
struct TruncatedBody {
    first: Option<Bytes>,
    total: u64,
}

impl Body for TruncatedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(Some(match self.first.take() {
            Some(b) => Ok(Frame::data(b)),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "drop_mid_response fault",
            )),
        }))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total)
    }
}

fn is_sealed(parts: &hyper::http::request::Parts) -> bool {
    parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/encrypted")
        })
}

async fn route(
    host: &HostCtx,
    conn: &ConnCtx,
    parts: &hyper::http::request::Parts,
    body: Bytes,
    rec: &mut LogRecord,
) -> Reply {
    let sealed = is_sealed(parts) && !body.is_empty();
    rec.sealed = sealed;
    rec.plaintext_soap = !conn.tls && !sealed && !body.is_empty();

    if !parts.uri.path().eq_ignore_ascii_case("/wsman") {
        rec.note = Some(format!("no WinRM endpoint at {}", parts.uri.path()));
        return Reply::empty(404);
    }
    if parts.method != Method::POST {
        rec.note = Some(format!("method {} not allowed", parts.method));
        return Reply::empty(405);
    }

    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let Some(authorization) = authorization else {
        let mechanism = match &*conn.state() {
            AuthState::Ntlm { .. } => Some(log::AUTH_NTLM),
            #[cfg(feature = "kerberos")]
            AuthState::Kerberos { ctx, .. } if ctx.is_established() => Some(log::AUTH_KERBEROS),
            _ => None,
        };
        if let Some(mechanism) = mechanism {
            rec.auth = mechanism.into();
            return process(host, conn, Scheme::Session, sealed, body, rec).await;
        }
        if sealed {
            return reject(
                host,
                conn,
                rec,
                log::AUTH_NONE,
                "sealed request on a connection without a security context".into(),
            );
        }
        rec.step = log::STEP_REJECTED.into();
        rec.note = Some("no credentials".into());
        return unauthorized(host, conn);
    };
    let (scheme, token) = authorization
        .trim()
        .split_once(' ')
        .unwrap_or((authorization.trim(), ""));
    if scheme.eq_ignore_ascii_case("Negotiate") {
        negotiate(
            host,
            conn,
            Protocol::Spnego,
            token.trim(),
            sealed,
            body,
            rec,
        )
        .await
    } else if scheme.eq_ignore_ascii_case("Kerberos") {
        negotiate(
            host,
            conn,
            Protocol::Kerberos,
            token.trim(),
            sealed,
            body,
            rec,
        )
        .await
    } else if scheme.eq_ignore_ascii_case("Basic") {
        basic(host, conn, token.trim(), sealed, body, rec).await
    } else {
        reject(
            host,
            conn,
            rec,
            log::AUTH_NONE,
            format!("unsupported authorization scheme {scheme:?}"),
        )
    }
}

/// 401 with one `WWW-Authenticate` per scheme this listener offers on this connection.
fn unauthorized(host: &HostCtx, conn: &ConnCtx) -> Reply {
    let mut r = Reply::empty(401);
    r.www_authenticate = vec!["Negotiate".into(), "Kerberos".into()];
    if basic_allowed(host, conn) {
        r.www_authenticate.push("Basic realm=\"WSMAN\"".into());
    }
    r
}

fn basic_allowed(host: &HostCtx, conn: &ConnCtx) -> bool {
    host.listener.basic && (conn.tls || host.listener.allow_unencrypted)
}

/// A failed authentication: the connection loses any context it had.
fn reject(host: &HostCtx, conn: &ConnCtx, rec: &mut LogRecord, auth: &str, note: String) -> Reply {
    *conn.state() = AuthState::None;
    rec.auth = auth.into();
    rec.step = log::STEP_REJECTED.into();
    rec.note = Some(note);
    unauthorized(host, conn)
}

/// `Negotiate` (NTLM or Kerberos, raw or in SPNEGO) and `Kerberos` tokens.
async fn negotiate(
    host: &HostCtx,
    conn: &ConnCtx,
    protocol: Protocol,
    token: &str,
    sealed: bool,
    body: Bytes,
    rec: &mut LogRecord,
) -> Reply {
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(token) else {
        return reject(
            host,
            conn,
            rec,
            log::AUTH_NONE,
            format!("{} token is not base64", protocol.scheme()),
        );
    };
    let is_ntlm = ntlm::token_type(&raw).is_some();
    #[cfg(feature = "kerberos")]
    let is_ntlm = is_ntlm || crate::kerberos::token_kind(&raw) == crate::kerberos::TokenKind::Ntlm;
    if !is_ntlm {
        #[cfg(feature = "kerberos")]
        return kerberos(host, conn, protocol, &raw, sealed, body, rec).await;
        #[cfg(not(feature = "kerberos"))]
        return reject(
            host,
            conn,
            rec,
            log::AUTH_KERBEROS,
            "token is not NTLM (this lab is built without the kerberos feature)".into(),
        );
    }
    rec.auth = log::AUTH_NTLM.into();
    if host.ntlm_blocked() || protocol == Protocol::Kerberos {
        return reject(
            host,
            conn,
            rec,
            log::AUTH_NTLM,
            format!(
                "NTLM refused ({}): NTLM is blocked on this host",
                protocol.scheme()
            ),
        );
    }
    match ntlm::token_type(&raw) {
        Some(1) => match ntlm::challenge(&raw, &host.identity) {
            Ok((type2, ch)) => {
                *conn.state() = AuthState::Challenged(ch);
                rec.step = log::STEP_CHALLENGE.into();
                let mut r = Reply::empty(401);
                r.www_authenticate = vec![format!(
                    "Negotiate {}",
                    base64::engine::general_purpose::STANDARD.encode(type2)
                )];
                r
            }
            Err(e) => reject(host, conn, rec, log::AUTH_NTLM, e.to_string()),
        },
        Some(3) => {
            let pending = std::mem::replace(&mut *conn.state(), AuthState::None);
            let AuthState::Challenged(ch) = pending else {
                return reject(
                    host,
                    conn,
                    rec,
                    log::AUTH_NTLM,
                    "AUTHENTICATE without a CHALLENGE on this connection".into(),
                );
            };
            if host.spec.faults.wrong_password {
                return reject(
                    host,
                    conn,
                    rec,
                    log::AUTH_NTLM,
                    "fault wrong_password: every credential refused".into(),
                );
            }
            let cb = if conn.tls {
                host.tls.channel_binding
            } else {
                None
            };
            match ntlm::authenticate(&ch, &raw, &host.accounts, cb, host.cbt) {
                Ok(a) => {
                    let user = windows_name(&host.accounts, &host.identity, &a.domain, &a.user);
                    rec.step = log::STEP_AUTHENTICATED.into();
                    rec.user = Some(user.clone());
                    *conn.state() = AuthState::Ntlm {
                        user,
                        session: Box::new(a.session),
                    };
                    process(host, conn, Scheme::Session, sealed, body, rec).await
                }
                Err(e) => reject(host, conn, rec, log::AUTH_NTLM, e.to_string()),
            }
        }
        _ => reject(
            host,
            conn,
            rec,
            log::AUTH_NTLM,
            "NTLMSSP token that is neither NEGOTIATE nor AUTHENTICATE".into(),
        ),
    }
}

/// One leg of a Kerberos exchange on this connection: a new token starts a new context
/// (as HTTP.sys does), a SPNEGO continuation goes on with the pending one. Over HTTPS the
/// token must be bound to this host's certificate when the listener says `Strict`.
#[cfg(feature = "kerberos")]
async fn kerberos(
    host: &HostCtx,
    conn: &ConnCtx,
    protocol: Protocol,
    raw: &[u8],
    sealed: bool,
    body: Bytes,
    rec: &mut LogRecord,
) -> Reply {
    use crate::kerberos::{TokenKind, token_kind};
    rec.auth = log::AUTH_KERBEROS.into();
    let Some(acceptor) = &host.kerberos else {
        return reject(
            host,
            conn,
            rec,
            log::AUTH_KERBEROS,
            "Kerberos token, but this lab runs without a realm".into(),
        );
    };
    if host.spec.faults.wrong_password {
        return reject(
            host,
            conn,
            rec,
            log::AUTH_KERBEROS,
            "fault wrong_password: every credential refused".into(),
        );
    }
    let pending = std::mem::replace(&mut *conn.state(), AuthState::None);
    let mut ctx = match pending {
        AuthState::Kerberos { ctx, .. }
            if !ctx.is_established() && token_kind(raw) == TokenKind::Other =>
        {
            ctx
        }
        _ => Box::new(acceptor.context()),
    };
    let bindings = if conn.tls {
        eems_core::channel_binding::tls_server_end_point(&host.tls.cert_der)
    } else {
        None
    };
    let out = match ctx.step(raw, bindings.as_deref()) {
        Ok(out) => out,
        Err(e) => return reject(host, conn, rec, log::AUTH_KERBEROS, e.to_string()),
    };
    let header = out.map(|t| {
        format!(
            "{} {}",
            protocol.scheme(),
            base64::engine::general_purpose::STANDARD.encode(t)
        )
    });
    if !ctx.is_established() {
        rec.step = log::STEP_CHALLENGE.into();
        *conn.state() = AuthState::Kerberos {
            user: String::new(),
            ctx,
            protocol,
        };
        let mut r = Reply::empty(401);
        r.www_authenticate = header.into_iter().collect();
        return r;
    }
    if conn.tls && host.cbt == CbtPolicy::Strict && !ctx.channel_bound() {
        return reject(
            host,
            conn,
            rec,
            log::AUTH_KERBEROS,
            "Kerberos token without channel binding (CbtHardeningLevel=Strict)".into(),
        );
    }
    let principal = ctx.client_principal().unwrap_or_default();
    let (user, _) = principal.split_once('@').unwrap_or((&principal, ""));
    let user = host
        .accounts
        .iter()
        .find(|a| a.user.eq_ignore_ascii_case(user))
        .map(|a| format!("{}\\{}", a.domain, a.user))
        .unwrap_or(principal);
    rec.step = log::STEP_AUTHENTICATED.into();
    rec.user = Some(user.clone());
    *conn.state() = AuthState::Kerberos {
        user,
        ctx,
        protocol,
    };
    let mut r = process(host, conn, Scheme::Session, sealed, body, rec).await;
    if r.status != 401 {
        r.www_authenticate.extend(header);
    }
    r
}

async fn basic(
    host: &HostCtx,
    conn: &ConnCtx,
    token: &str,
    sealed: bool,
    body: Bytes,
    rec: &mut LogRecord,
) -> Reply {
    if !host.listener.basic {
        return reject(
            host,
            conn,
            rec,
            log::AUTH_BASIC,
            "Basic is disabled (Auth/Basic=false)".into(),
        );
    }
    if !basic_allowed(host, conn) {
        return reject(
            host,
            conn,
            rec,
            log::AUTH_BASIC,
            "Basic over HTTP refused (AllowUnencrypted=false)".into(),
        );
    }
    if host.spec.faults.wrong_password {
        return reject(
            host,
            conn,
            rec,
            log::AUTH_BASIC,
            "fault wrong_password: every credential refused".into(),
        );
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some((login, password)) = decoded.as_deref().and_then(|s| s.split_once(':')) else {
        return reject(
            host,
            conn,
            rec,
            log::AUTH_BASIC,
            "malformed Basic credentials".into(),
        );
    };
    let (domain, user) = login.split_once('\\').unwrap_or(("", login));
    let account = host.accounts.iter().find(|a| {
        ntlm::account_matches(a, &host.identity, domain, user)
            && ntlm::ct_eq(a.password.as_bytes(), password.as_bytes())
    });
    let Some(account) = account else {
        return reject(
            host,
            conn,
            rec,
            log::AUTH_BASIC,
            format!("Basic credentials refused for {login:?}"),
        );
    };
    rec.auth = log::AUTH_BASIC.into();
    rec.user = Some(format!("{}\\{}", account.domain, account.user));
    process(host, conn, Scheme::Basic, sealed, body, rec).await
}

/// `DOMAIN\user` as Windows names the account (its own spelling, whatever the client typed).
fn windows_name(accounts: &[AccountSpec], id: &ServerIdentity, domain: &str, user: &str) -> String {
    accounts
        .iter()
        .find(|a| ntlm::account_matches(a, id, domain, user))
        .map(|a| format!("{}\\{}", a.domain, a.user))
        .unwrap_or_else(|| format!("{domain}\\{user}"))
}

/// Unseals with the connection's security context, if it has one. The lock is released
/// before the caller acts on the result (a rejection takes the lock again).
fn unseal(conn: &ConnCtx, body: &[u8]) -> Option<Result<Vec<u8>, String>> {
    match &mut *conn.state() {
        AuthState::Ntlm { session, .. } => {
            Some(session.unseal_body(body).map_err(|e| e.to_string()))
        }
        #[cfg(feature = "kerberos")]
        AuthState::Kerberos { ctx, protocol, .. } => {
            Some(ctx.unseal(body, *protocol).map_err(|e| e.to_string()))
        }
        AuthState::None | AuthState::Challenged(_) => None,
    }
}

/// Seals a response with the connection's context, with the content type of its protocol.
fn seal(conn: &ConnCtx, body: &[u8]) -> Option<(Vec<u8>, &'static str)> {
    match &mut *conn.state() {
        AuthState::Ntlm { session, .. } => {
            Some((session.seal_body(body), ntlm::SEALED_CONTENT_TYPE))
        }
        #[cfg(feature = "kerberos")]
        AuthState::Kerberos { ctx, protocol, .. } => ctx
            .seal(body, *protocol)
            .ok()
            .map(|b| (b, protocol.content_type())),
        AuthState::None | AuthState::Challenged(_) => None,
    }
}

/// The authenticated request's body: empty (context set-up), sealed or plaintext.
async fn process(
    host: &HostCtx,
    conn: &ConnCtx,
    scheme: Scheme,
    sealed: bool,
    body: Bytes,
    rec: &mut LogRecord,
) -> Reply {
    if body.is_empty() {
        return Reply::empty(200);
    }
    let user = match &*conn.state() {
        AuthState::Ntlm { user, .. } if scheme == Scheme::Session => user.clone(),
        #[cfg(feature = "kerberos")]
        AuthState::Kerberos { user, .. } if scheme == Scheme::Session => user.clone(),
        _ => rec.user.clone().unwrap_or_default(),
    };
    rec.user = Some(user.clone());

    let plaintext = if sealed {
        if scheme != Scheme::Session {
            rec.note = Some("sealed body under Basic".into());
            return Reply::empty(400);
        }
        let Some(unsealed) = unseal(conn, &body) else {
            let auth = rec.auth.clone();
            return reject(host, conn, rec, &auth, "context lost".into());
        };
        match unsealed {
            Ok(p) => p,
            Err(e) => {
                // HTTP.sys answers a badly framed or unverifiable sealed body with 400.
                rec.note = Some(e);
                return Reply::empty(400);
            }
        }
    } else {
        if !conn.tls && !host.listener.allow_unencrypted {
            rec.note = Some("plaintext SOAP refused on HTTP (AllowUnencrypted=false)".into());
            let status = host.listener.plaintext_refusal_status;
            return if status == 401 {
                unauthorized(host, conn)
            } else {
                Reply::empty(status)
            };
        }
        body.to_vec()
    };

    if host.spec.faults.http500 {
        rec.note = Some("fault http500".into());
        return Reply::empty(500);
    }

    let endpoint = if conn.tls {
        format!(
            "https://{}:{}/wsman",
            host.spec.address,
            host.spec.https_port(&host.listener)
        )
    } else {
        format!(
            "http://{}:{}/wsman",
            host.spec.address,
            host.spec.http_port(&host.listener)
        )
    };
    let reply = host
        .wsman
        .handle(WsmanRequest {
            user: &user,
            client_ip: conn.peer.ip(),
            endpoint: &endpoint,
            body: &plaintext,
        })
        .await;
    rec.action = Some(reply.action.clone());
    rec.shell_id = reply.shell_id.clone();
    rec.probe = reply.probe.map(str::to_string);
    if reply.note.is_some() {
        rec.note = reply.note.clone();
    }
    let truncate = reply.action == "Command"
        && host.spec.faults.drop_mid_response
        && !host.command_dropped.swap(true, Ordering::Relaxed);
    if truncate {
        rec.note = Some("fault drop_mid_response: connection dropped mid-response".into());
    }
    if sealed {
        let Some((framed, content_type)) = seal(conn, &reply.body) else {
            let auth = rec.auth.clone();
            return reject(host, conn, rec, &auth, "context lost".into());
        };
        Reply {
            status: reply.status,
            content_type: Some(content_type),
            www_authenticate: Vec::new(),
            body: framed,
            truncate,
        }
    } else {
        Reply {
            status: reply.status,
            content_type: Some(SOAP_CONTENT_TYPE),
            www_authenticate: Vec::new(),
            body: reply.body,
            truncate,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The connection rules, driven byte by byte with the acceptor's test initiator.
    use crate::ntlm::test_client::{self, Options};
    use crate::{Lab, LabOptions};
    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Answer {
        fn header(&self, name: &str) -> Vec<&str> {
            self.headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect()
        }
    }

    async fn post(
        c: &mut TcpStream,
        auth: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Answer {
        let auth = auth
            .map(|a| format!("Authorization: Negotiate {a}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST /wsman HTTP/1.1\r\nHost: lab\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).await.unwrap();
        c.write_all(body).await.unwrap();
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            assert_eq!(c.read(&mut byte).await.unwrap(), 1, "connection closed");
            raw.push(byte[0]);
        }
        let text = String::from_utf8(raw).unwrap();
        let mut lines = text.split("\r\n");
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .unwrap()
            .1
            .parse()
            .unwrap();
        let mut body = vec![0u8; len];
        c.read_exact(&mut body).await.unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Type 1 → Type 2 → empty Type 3 on `c`; returns the client's sealing session.
    async fn handshake(c: &mut TcpStream) -> crate::ntlm::Session {
        let t1 = test_client::type1();
        let a = post(c, Some(&B64.encode(&t1)), super::SOAP_CONTENT_TYPE, b"").await;
        assert_eq!(a.status, 401);
        let challenge = a.header("www-authenticate");
        assert_eq!(challenge.len(), 1);
        let t2 = B64
            .decode(challenge[0].strip_prefix("Negotiate ").unwrap())
            .unwrap();
        let o = Options {
            user: "administrator",
            domain: "LAB",
            password: "Lab-Passw0rd!",
            cb: None,
            corrupt_mic: false,
        };
        let (t3, session) = test_client::type3(&t1, &t2, &o);
        let a = post(c, Some(&B64.encode(&t3)), super::SOAP_CONTENT_TYPE, b"").await;
        assert_eq!((a.status, a.body.len()), (200, 0));
        session
    }

    fn envelope(action: &str, shell: Option<&str>) -> Vec<u8> {
        let selector = shell
            .map(|s| {
                format!(
                    r#"<w:SelectorSet><w:Selector Name="ShellId">{s}</w:Selector></w:SelectorSet>"#
                )
            })
            .unwrap_or_default();
        format!(
            r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:0A1B2C3D-0000-4000-8000-00000000ABCD</a:MessageID>{selector}</s:Header><s:Body/></s:Envelope>"#
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn sealed_answers_faults_sealed_and_type1_resets_the_context() {
        let free = || {
            std::net::TcpListener::bind("127.0.77.20:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (http, https) = (free(), free());
        let fleet: crate::fleet::Fleet = toml::from_str(&format!(
            "[org]\nname = \"C\"\n[listener]\nhttp_port = {http}\nhttps_port = {https}\n\
             [[server]]\nname = \"EX20\"\naddress = \"127.0.77.20\"\n"
        ))
        .unwrap();
        let lab = Lab::start(
            fleet,
            LabOptions {
                log_path: None,
                keep_log_in_memory: true,
            },
        )
        .await
        .unwrap();
        let mut c = TcpStream::connect(("127.0.77.20", http)).await.unwrap();
        let mut client = handshake(&mut c).await;

        let create = envelope(
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
            None,
        );
        let a = post(
            &mut c,
            None,
            crate::ntlm::SEALED_CONTENT_TYPE,
            &client.seal_body(&create),
        )
        .await;
        assert_eq!(a.status, 200);
        assert_eq!(
            a.header("content-type"),
            vec![crate::ntlm::SEALED_CONTENT_TYPE]
        );
        assert_eq!(a.header("server"), vec!["Microsoft-HTTPAPI/2.0"]);
        let text = String::from_utf8(client.unseal_body(&a.body).unwrap()).unwrap();
        assert!(text.contains("ShellId"), "{text}");

        // A fault comes back sealed, with HTTP 500.
        let receive = envelope(
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive",
            Some("NOPE"),
        );
        let a = post(
            &mut c,
            None,
            crate::ntlm::SEALED_CONTENT_TYPE,
            &client.seal_body(&receive),
        )
        .await;
        assert_eq!(a.status, 500);
        assert_eq!(
            a.header("content-type"),
            vec![crate::ntlm::SEALED_CONTENT_TYPE]
        );
        assert!(
            String::from_utf8(client.unseal_body(&a.body).unwrap())
                .unwrap()
                .contains("InvalidSelectors")
        );

        // Plaintext on the authenticated HTTP connection: refused (AllowUnencrypted=false).
        let a = post(&mut c, None, super::SOAP_CONTENT_TYPE, &create).await;
        assert_eq!(a.status, 401);

        // A new Type 1 resets the context: the old session's sealed request is now refused.
        let a = post(
            &mut c,
            Some(&B64.encode(test_client::type1())),
            super::SOAP_CONTENT_TYPE,
            b"",
        )
        .await;
        assert_eq!(a.status, 401);
        let a = post(
            &mut c,
            None,
            crate::ntlm::SEALED_CONTENT_TYPE,
            &client.seal_body(&create),
        )
        .await;
        assert_eq!(a.status, 401);

        // A fresh handshake on the same connection works again, with fresh RC4 streams.
        let mut client = handshake(&mut c).await;
        let a = post(
            &mut c,
            None,
            crate::ntlm::SEALED_CONTENT_TYPE,
            &client.seal_body(&create),
        )
        .await;
        assert_eq!(a.status, 200);
        client.unseal_body(&a.body).unwrap();

        // Another connection has no context, whatever this one has.
        let mut other = TcpStream::connect(("127.0.77.20", http)).await.unwrap();
        let a = post(
            &mut other,
            None,
            crate::ntlm::SEALED_CONTENT_TYPE,
            &client.seal_body(&create),
        )
        .await;
        assert_eq!(a.status, 401);

        let log = lab.log_records();
        assert!(
            log.iter().all(|r| !r.plaintext_soap || r.status == 401),
            "{log:?}"
        );
        assert_eq!(lab.open_shells(), 2);
        lab.shutdown().await;
    }
}
