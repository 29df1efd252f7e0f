//! The org query the supported way (issue 10; feature `kerberos`): Exchange Remote PowerShell,
//! MS-PSRP over WS-Man to `http://<fqdn>/PowerShell/` with the `Microsoft.Exchange`
//! configuration, Kerberos, the bodies sealed with the Kerberos session the way Windows'
//! `-Authentication Kerberos` does (`Kerberos` HTTP scheme,
//! `multipart/encrypted;protocol="application/HTTP-Kerberos-session-encrypted"`).
//!
//! With `--https`, `https://<fqdn>/PowerShell/` (443): TLS carries the privacy, the bodies are
//! plain SOAP after the Kerberos handshake, as Windows does over HTTPS. The AP-REQ carries the
//! channel bindings of the certificate that connection presented (RFC 5929
//! `tls-server-end-point`, the initiator and acceptor addresses left empty as Windows does):
//! Extended Protection, on by default since Exchange 2019 CU14, refuses a ticket without them.
//!
//! Only bare command invocations are sent, `Get-OrganizationConfig`, `Get-ExchangeServer` and
//! `Search-AdminAuditLog` with parameters (`exchange_ps/audit.rs`): Exchange's runspace is NoLanguage, so
//! script text is refused, and the projection the old `org.ps1` did in PowerShell happens here
//! on deserialized property bags.
//!
//! # Why an own WS-Man transport here
//!
//! psrp-rs gives the PSRP layer (runspace pool, pipeline, fragments, CLIXML) and is used for
//! it. Its `WinrmPsrpTransport` cannot reach this endpoint: winrm-rs hard-codes the URL path
//! `/wsman`, psrp-rs the `Microsoft.PowerShell` resource URI, and winrm-rs sends Kerberos only
//! under `Negotiate` with SPNEGO-labelled sealing, while Exchange's `kerbauth` is what Windows'
//! `Kerberos` scheme talks to (psrp-kerberos.md §C, §D, §F). Patching all three into
//! `patches/winrm-rs` would grow that fork well beyond its two seams; the six WS-Man
//! operations a PSRP shell needs (Create, Command, Send, Receive, Signal, Delete) are small.
//! The whole exchange runs on one TCP connection, because the Kerberos context (and so the
//! sealing) belongs to the connection on IIS as on HTTP.sys.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use eems_core::facts::{ExchangeServerFacts, OrgFacts};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use libgssapi::context::{ClientCtx, SecurityContext};
use libgssapi::util::{GssIov, GssIovType};
use psrp_rs::{Command, Pipeline, PsValue, PsrpError, PsrpTransport, RunspacePool};
use tokio::sync::Mutex;

use crate::kerberos::{Credentials, KerberosError};

mod audit;

use eems_core::sealing::{self, Protocol};

pub const RESOURCE_URI: &str = "http://schemas.microsoft.com/powershell/Microsoft.Exchange";
/// Exchange's Default Web Site.
pub const DEFAULT_PORT: u16 = 80;
const ACTION_SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
const ACTION_TRANSFER: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer";
/// Bounds on the long-poll loop of one Receive sequence.
const MAX_EMPTY_POLLS: usize = 60;
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Where to send the org query: the URL carries the FQDN (HTTP `Host`, SPN `HTTP/<fqdn>`), the
/// socket goes to `connect` (the inventory's address).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub fqdn: String,
    pub connect: SocketAddr,
    /// HTTPS with this client configuration ([`tls_config`]); `None`: HTTP, bodies sealed.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// TLS for `--https`: the system's roots, plus `--ca-cert` when given. Errors name the file.
pub fn tls_config(ca_cert: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_cert {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "--ca-cert {}: no PEM certificate in it",
                path.display()
            ));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Over HTTPS the ticket is bound to the certificate this connection saw (Extended
/// Protection), which anything re-encrypting in between breaks.
const EP_HINT: &str = "; over HTTPS the ticket is bound to the certificate this connection received (Extended Protection), so a TLS-inspecting proxy or an SSL-offloading load balancer in between also gets it refused";

/// Why the org query failed on one server, in words that name the cause.
#[derive(Debug, thiserror::Error)]
pub enum OrgQueryError {
    #[error("cannot connect to {addr} for {fqdn}/PowerShell/: {detail}")]
    Connect {
        fqdn: String,
        addr: SocketAddr,
        detail: String,
    },
    #[error(
        "http://{fqdn}/PowerShell/ does not exist (HTTP 404): no Exchange remote PowerShell endpoint on this server"
    )]
    NotFound { fqdn: String },
    #[error("Kerberos: {0}")]
    Kerberos(#[from] KerberosError),
    #[error(
        "{}://{fqdn}/PowerShell/ refused the Kerberos ticket (HTTP 401): check the server's HTTP/{fqdn} SPN and the clocks{}",
        if *.https { "https" } else { "http" },
        if *.https { EP_HINT } else { "" }
    )]
    KerberosRefused { fqdn: String, https: bool },
    #[error(
        "the account may not run {cmdlet}: it needs an Exchange role such as View-Only Organization Management"
    )]
    Rbac { cmdlet: &'static str },
    #[error("http://{fqdn}/PowerShell/: {detail}")]
    Protocol { fqdn: String, detail: String },
    #[error("no answer from http://{fqdn}/PowerShell/ within {secs} s")]
    Timeout { fqdn: String, secs: u64 },
}

/// Runs `Get-OrganizationConfig` and `Get-ExchangeServer` on `ep`, then the admin audit
/// search (`exchange_ps/audit.rs`), all within `timeout`.
pub async fn query_org(
    creds: Arc<Credentials>,
    ep: &Endpoint,
    timeout: Duration,
) -> Result<OrgFacts, OrgQueryError> {
    let deadline = tokio::time::Instant::now() + timeout;
    within(timeout, &ep.fqdn, query_inner(creds, ep, deadline)).await
}

async fn within<T>(
    timeout: Duration,
    fqdn: &str,
    work: impl std::future::Future<Output = Result<T, OrgQueryError>>,
) -> Result<T, OrgQueryError> {
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(OrgQueryError::Timeout {
            fqdn: fqdn.to_string(),
            secs: timeout.as_secs(),
        }),
    }
}

async fn query_inner(
    creds: Arc<Credentials>,
    ep: &Endpoint,
    deadline: tokio::time::Instant,
) -> Result<OrgFacts, OrgQueryError> {
    let mut session = Session::open(creds, ep).await?;
    let answers = async {
        let org = session
            .run(
                "Get-OrganizationConfig",
                Command::new("Get-OrganizationConfig"),
            )
            .await?;
        let servers = session
            .run("Get-ExchangeServer", Command::new("Get-ExchangeServer"))
            .await?;
        Ok::<_, OrgQueryError>((org, servers))
    }
    .await;
    // Only once the org facts are in: whatever happens to the audit search, they stand.
    let admin_audit = match &answers {
        Ok(_) => Some(audit::search(&mut session.pool, deadline).await),
        Err(_) => None,
    };
    session.close().await;
    let (org, servers) = answers?;
    let mut facts = OrgFacts::default();
    match org {
        Ok(values) => org_config(&mut facts, &values),
        Err(msg) => facts.error = Some(msg),
    }
    match servers {
        Ok(values) => facts.servers = values.iter().map(server_facts).collect(),
        Err(msg) => facts.servers_error = Some(msg),
    }
    facts.admin_audit = admin_audit;
    Ok(facts)
}

/// An open runspace pool on one endpoint.
struct Session {
    pool: RunspacePool<ExchangeTransport>,
    failure: Failure,
    fqdn: String,
}

impl Session {
    async fn open(creds: Arc<Credentials>, ep: &Endpoint) -> Result<Session, OrgQueryError> {
        let mut conn = Connection::open(creds, ep).await?;
        let (rpid, creation) = RunspacePool::<ExchangeTransport>::build_creation_fragments(1, 1)
            .map_err(|e| conn.protocol(e.to_string()))?;
        conn.create_shell(&creation).await?;
        let failure: Failure = Arc::default();
        let transport = ExchangeTransport {
            inner: Mutex::new(conn),
            failure: failure.clone(),
        };
        let fqdn = ep.fqdn.clone();
        match RunspacePool::open_from_transport(transport, rpid, 1, 1).await {
            Ok(pool) => Ok(Session {
                pool,
                failure,
                fqdn,
            }),
            Err(e) => Err(typed(&failure, &fqdn, e)),
        }
    }

    /// Outer error: the query cannot go on (RBAC, transport); inner error: the cmdlet failed
    /// and said why (kept in the facts, as the old probe did).
    async fn run(
        &mut self,
        cmdlet: &'static str,
        command: Command,
    ) -> Result<Result<Vec<PsValue>, String>, OrgQueryError> {
        match run_command(&mut self.pool, command).await {
            // RBAC hides the cmdlets an account may not run: they do not exist for it.
            Ok(Err(msg)) if msg.contains(NOT_RECOGNIZED) => Err(OrgQueryError::Rbac { cmdlet }),
            Ok(r) => Ok(r),
            Err(e) => Err(typed(&self.failure, &self.fqdn, e)),
        }
    }

    /// Best effort and bounded: the server drops an idle shell on its own.
    async fn close(self) {
        let _ = tokio::time::timeout(audit::CLOSE_MARGIN, self.pool.close()).await;
    }
}

/// The transport's typed failure behind a psrp-rs error, if it recorded one.
fn typed(failure: &Failure, fqdn: &str, e: PsrpError) -> OrgQueryError {
    failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .unwrap_or_else(|| OrgQueryError::Protocol {
            fqdn: fqdn.to_string(),
            detail: e.to_string(),
        })
}

const NOT_RECOGNIZED: &str = "is not recognized as the name of a cmdlet";

/// One command invocation: outer error, the transport; inner error, the cmdlet's own.
async fn run_command(
    pool: &mut RunspacePool<ExchangeTransport>,
    command: Command,
) -> Result<Result<Vec<PsValue>, String>, PsrpError> {
    match Pipeline::empty().add_command(command).run(pool).await {
        Ok(v) => Ok(Ok(v)),
        Err(PsrpError::PipelineFailed(msg)) => Ok(Err(msg)),
        Err(e) => Err(e),
    }
}

/// The facts `Get-OrganizationConfig`'s first object gives.
fn org_config(facts: &mut OrgFacts, values: &[PsValue]) {
    let o = values.first();
    facts.name = o.and_then(|o| string(o, "Name"));
    facts.mitigations_enabled = o.and_then(|o| boolean(o, "MitigationsEnabled"));
}

fn prop<'a>(v: &'a PsValue, name: &str) -> Option<&'a PsValue> {
    v.properties()?.get(name)
}

fn string(v: &PsValue, name: &str) -> Option<String> {
    prop(v, name)
        .and_then(PsValue::as_str)
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

fn boolean(v: &PsValue, name: &str) -> Option<bool> {
    prop(v, name).and_then(PsValue::as_bool)
}

/// The elements of a multi-valued property: null (an unset AD attribute) is none, a single
/// value is one. psrp-rs decodes a list-valued `<Obj N=..><LST>` property as an object holding
/// the list under `_value`.
fn items<'a>(v: &'a PsValue, name: &str) -> Vec<&'a PsValue> {
    let value = match prop(v, name) {
        Some(PsValue::Object(o)) if o.get("_value").is_some() => o.get("_value"),
        other => other,
    };
    match value {
        Some(PsValue::List(l)) => l.iter().collect(),
        Some(PsValue::Null) | None => Vec::new(),
        Some(one) => vec![one],
    }
}

fn strings(v: &PsValue, name: &str) -> Vec<String> {
    items(v, name)
        .into_iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// `dom/Configuration/Sites/Site1` (an ADObjectId's string form) -> `Site1`.
fn site_name(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_string()
}

/// A CLIXML `<DT>` (`2026-11-03T04:05:06.1234567Z`, or with an offset) as RFC 3339 UTC; an
/// unparseable value is kept as it came rather than dropped.
fn utc(dt: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(dt, &Rfc3339)
        .ok()
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok())
        .unwrap_or_else(|| dt.to_string())
}

// A plain remote session sends Exchange's rich types as their string form; serialized in
// full, as Export-Clixml on real servers records them (tests/fixtures/css-exchange), they are
// `<Obj>`s with properties, and psrp-rs drops their `<ToString>`: both shapes are read.

/// `Site`, an ADObjectId: its string form's last segment, or the object's `Name`.
fn site(v: &PsValue) -> Option<String> {
    match prop(v, "Site")? {
        PsValue::Object(o) => o.get("Name").and_then(PsValue::as_str).map(str::to_string),
        other => other.as_str().map(site_name),
    }
    .filter(|s| !s.is_empty())
}

/// `AdminDisplayVersion`, a ServerVersion: its string form, or the same text
/// (`Version 15.2 (Build 1544.4)`) rebuilt from the object's numbers.
fn admin_display_version(v: &PsValue) -> Option<String> {
    match prop(v, "AdminDisplayVersion")? {
        PsValue::Object(o) => {
            let n = |k: &str| o.get(k).and_then(PsValue::as_i32);
            Some(format!(
                "Version {}.{} (Build {}.{})",
                n("Major")?,
                n("Minor")?,
                n("Build")?,
                n("Revision")?
            ))
        }
        other => other.as_str().map(str::to_string),
    }
    .filter(|s| !s.is_empty())
}

fn server_facts(v: &PsValue) -> ExchangeServerFacts {
    ExchangeServerFacts {
        name: string(v, "Name").unwrap_or_default(),
        fqdn: string(v, "Fqdn"),
        site: site(v),
        server_role: string(v, "ServerRole"),
        is_edge_server: boolean(v, "IsEdgeServer"),
        admin_display_version: admin_display_version(v),
        mitigations_enabled: boolean(v, "MitigationsEnabled"),
        mitigations_applied: strings(v, "MitigationsApplied"),
        mitigations_blocked: strings(v, "MitigationsBlocked"),
        mitigations_applied_time: string(v, "MitigationsAppliedTime").map(|t| utc(&t)),
        data_collection_enabled: boolean(v, "DataCollectionEnabled"),
        internet_web_proxy: string(v, "InternetWebProxy"),
        when_changed: string(v, "WhenChangedUTC").map(|t| utc(&t)),
        ring_level: prop(v, "RingLevel").and_then(PsValue::as_i32),
        last_flighting_run: string(v, "LastFlightingServiceRunTime").map(|t| utc(&t)),
    }
}

/// One authenticated, sealing HTTP connection to `/PowerShell/` and the shell on it.
struct Connection {
    send: SendRequest<Full<Bytes>>,
    ctx: ClientCtx,
    fqdn: String,
    url: String,
    shell_id: Option<String>,
    /// The running pipeline's command id (Send and Receive address it).
    command_id: Option<String>,
    /// Bodies sealed with the Kerberos session (HTTP); inside TLS they are not.
    sealed: bool,
    _driver: tokio::task::JoinHandle<()>,
}

/// An HTTP/1.1 client connection over `io` (TCP, or TLS over it), its driver on a task of
/// its own.
async fn http1<I>(io: I) -> Result<(SendRequest<Full<Bytes>>, tokio::task::JoinHandle<()>), String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((send, driver))
}

impl Connection {
    fn protocol(&self, detail: String) -> OrgQueryError {
        OrgQueryError::Protocol {
            fqdn: self.fqdn.clone(),
            detail,
        }
    }

    async fn open(creds: Arc<Credentials>, ep: &Endpoint) -> Result<Connection, OrgQueryError> {
        let stream = tokio::net::TcpStream::connect(ep.connect)
            .await
            .map_err(|e| OrgQueryError::Connect {
                fqdn: ep.fqdn.clone(),
                addr: ep.connect,
                detail: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        let connect_err = |detail: String| OrgQueryError::Connect {
            fqdn: ep.fqdn.clone(),
            addr: ep.connect,
            detail,
        };
        let (mut send, driver, bindings) = match &ep.tls {
            None => {
                let (send, driver) = http1(stream).await.map_err(connect_err)?;
                (send, driver, None)
            }
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(ep.fqdn.clone())
                    .map_err(|e| connect_err(format!("bad server name: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, stream)
                    .await
                    .map_err(|e| connect_err(format!("TLS: {e}")))?;
                // Extended Protection: the ticket names the certificate this very connection
                // presented, so it is worthless on a connection to anyone else. A certificate
                // RFC 5929 defines no hash for gets no bindings: an IIS with Extended
                // Protection then refuses the ticket (KerberosRefused), one without takes it.
                let bindings = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| eems_core::channel_binding::tls_server_end_point(c));
                let (send, driver) = http1(tls).await.map_err(connect_err)?;
                (send, driver, bindings)
            }
        };
        let (scheme, default_port) = if ep.tls.is_some() {
            ("https", 443)
        } else {
            ("http", DEFAULT_PORT)
        };
        let port = ep.connect.port();
        let authority = if port == default_port {
            ep.fqdn.clone()
        } else {
            format!("{}:{port}", ep.fqdn)
        };
        let url = format!("{scheme}://{authority}/PowerShell/");
        // libkrb5 talks to the KDC synchronously.
        let fqdn = ep.fqdn.clone();
        let (mut ctx, token) =
            tokio::task::spawn_blocking(move || creds.initial_token(&fqdn, bindings.as_deref()))
                .await
                .map_err(|e| OrgQueryError::Protocol {
                    fqdn: ep.fqdn.clone(),
                    detail: e.to_string(),
                })??;
        let req = hyper::Request::post(&url)
            .header("Host", &authority)
            .header(
                "Authorization",
                format!(
                    "Kerberos {}",
                    base64::engine::general_purpose::STANDARD.encode(token)
                ),
            )
            .header("Content-Length", "0")
            .body(Full::new(Bytes::new()))
            .map_err(|e| OrgQueryError::Protocol {
                fqdn: ep.fqdn.clone(),
                detail: e.to_string(),
            })?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| OrgQueryError::Connect {
                fqdn: ep.fqdn.clone(),
                addr: ep.connect,
                detail: e.to_string(),
            })?;
        match resp.status().as_u16() {
            200 => {}
            404 => {
                return Err(OrgQueryError::NotFound {
                    fqdn: ep.fqdn.clone(),
                });
            }
            401 => {
                return Err(OrgQueryError::KerberosRefused {
                    fqdn: ep.fqdn.clone(),
                    https: ep.tls.is_some(),
                });
            }
            s => {
                return Err(OrgQueryError::Protocol {
                    fqdn: ep.fqdn.clone(),
                    detail: format!("HTTP {s} to the Kerberos handshake"),
                });
            }
        }
        // Mutual authentication: the server's AP-REP proves it holds the SPN's key.
        let ap_rep = resp
            .headers()
            .get_all("WWW-Authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("Kerberos "))
            .and_then(|t| {
                base64::engine::general_purpose::STANDARD
                    .decode(t.trim())
                    .ok()
            })
            .ok_or_else(|| OrgQueryError::Protocol {
                fqdn: ep.fqdn.clone(),
                detail: "no Kerberos AP-REP in the answer (mutual authentication)".into(),
            })?;
        ctx.step(Some(&ap_rep), None)
            .map_err(|e| OrgQueryError::Protocol {
                fqdn: ep.fqdn.clone(),
                detail: format!("the server's Kerberos answer does not verify: {e}"),
            })?;
        let _ = resp.into_body().collect().await;
        Ok(Connection {
            send,
            ctx,
            fqdn: ep.fqdn.clone(),
            url,
            shell_id: None,
            command_id: None,
            sealed: ep.tls.is_none(),
            _driver: driver,
        })
    }

    /// Seals like Windows: header, data and padding IOVs, the trailer rotated into the header.
    fn seal(&mut self, plain: &[u8]) -> Result<Vec<u8>, OrgQueryError> {
        let mut data = plain.to_vec();
        let (header, padding) = {
            let mut iov = [
                GssIov::new_alloc(GssIovType::Header),
                GssIov::new(GssIovType::Data, &mut data),
                GssIov::new_alloc(GssIovType::Padding),
            ];
            self.ctx
                .wrap_iov(true, &mut iov)
                .map_err(|e| self.protocol(format!("sealing failed: {e}")))?;
            (iov[0].to_vec(), iov[2].to_vec())
        };
        data.extend_from_slice(&padding);
        Ok(sealing::frame(
            Protocol::Kerberos,
            plain.len(),
            &header,
            &data,
        ))
    }

    fn unseal(&mut self, body: &[u8]) -> Result<Vec<u8>, OrgQueryError> {
        let frame = sealing::parse(body, Protocol::Kerberos, |n| (16..=1024).contains(&n))
            .map_err(|e| self.protocol(format!("sealed answer: {e}")))?;
        let mut token = frame.header.to_vec();
        token.extend_from_slice(frame.data);
        let length = frame.length;
        let plain = self
            .ctx
            .unwrap(&token)
            .map_err(|e| self.protocol(format!("sealed answer does not unwrap: {e}")))?
            .to_vec();
        if plain.len() != length {
            return Err(self.protocol("sealed answer has the wrong length".into()));
        }
        Ok(plain)
    }

    /// One sealed SOAP round trip: the answer's XML, or the SOAP fault's reason.
    async fn soap(
        &mut self,
        action: &str,
        selector: bool,
        body: &str,
    ) -> Result<String, OrgQueryError> {
        let selectors = match (&self.shell_id, selector) {
            (Some(id), true) => format!(
                "<w:SelectorSet><w:Selector Name=\"ShellId\">{id}</w:Selector></w:SelectorSet>"
            ),
            _ => String::new(),
        };
        let envelope = format!(
            "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" \
             xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\" xmlns:p=\"http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd\" \
             xmlns:rsp=\"http://schemas.microsoft.com/wbem/wsman/1/windows/shell\"><s:Header>\
             <a:To>{}</a:To><w:ResourceURI s:mustUnderstand=\"true\">{RESOURCE_URI}</w:ResourceURI>\
             <a:ReplyTo><a:Address s:mustUnderstand=\"true\">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>\
             <a:Action s:mustUnderstand=\"true\">{action}</a:Action><w:MaxEnvelopeSize s:mustUnderstand=\"true\">512000</w:MaxEnvelopeSize>\
             <a:MessageID>uuid:{}</a:MessageID><w:Locale xml:lang=\"en-US\" s:mustUnderstand=\"false\"/>\
             <w:OperationTimeout>PT20S</w:OperationTimeout>{selectors}</s:Header><s:Body>{body}</s:Body></s:Envelope>",
            self.url,
            uuid::Uuid::new_v4().to_string().to_ascii_uppercase()
        );
        let (content_type, body) = if self.sealed {
            (
                Protocol::Kerberos.content_type(),
                self.seal(envelope.as_bytes())?,
            )
        } else {
            ("application/soap+xml;charset=UTF-8", envelope.into_bytes())
        };
        let req = hyper::Request::post(&self.url)
            .header("Content-Type", content_type)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.protocol(e.to_string()))?;
        // hyper refuses (canceled) a request sent before the connection is back to idle,
        // which it is only once the driver task has processed the previous response.
        self.send
            .ready()
            .await
            .map_err(|e| self.protocol(format!("connection lost: {e}")))?;
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| self.protocol(format!("connection lost: {e}")))?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| self.protocol(format!("reading the answer: {e}")))?
            .to_bytes();
        if status == 401 {
            return Err(OrgQueryError::KerberosRefused {
                fqdn: self.fqdn.clone(),
                https: !self.sealed,
            });
        }
        if body.is_empty() {
            return Err(self.protocol(format!("HTTP {status} with an empty body")));
        }
        let plain = if self.sealed {
            self.unseal(&body)?
        } else {
            body.to_vec()
        };
        let xml =
            String::from_utf8(plain).map_err(|_| self.protocol("answer is not UTF-8".into()))?;
        if let Some(fault) = fault_of(&xml) {
            return Err(self.protocol(fault));
        }
        Ok(xml)
    }

    async fn create_shell(&mut self, creation: &[u8]) -> Result<(), OrgQueryError> {
        let body = format!(
            "<rsp:Shell><rsp:InputStreams>stdin pr</rsp:InputStreams><rsp:OutputStreams>stdout</rsp:OutputStreams>\
             <creationXml xmlns=\"http://schemas.microsoft.com/powershell\">{}</creationXml></rsp:Shell>",
            base64::engine::general_purpose::STANDARD.encode(creation)
        );
        let xml = self
            .soap(&format!("{ACTION_TRANSFER}/Create"), false, &body)
            .await?;
        let id = elements(&xml, "ShellId")
            .into_iter()
            .next()
            .map(|(_, text)| text)
            .ok_or_else(|| self.protocol("CreateResponse without a ShellId".into()))?;
        self.shell_id = Some(id);
        Ok(())
    }
}

/// The transport psrp-rs drives: pool messages on the shell, pipeline messages on the
/// pipeline's command.
struct ExchangeTransport {
    inner: Mutex<Connection>,
    /// The typed cause of the last transport failure: psrp-rs passes only text up, and the
    /// caller needs to tell Kerberos from a lost connection.
    failure: Failure,
}

type Failure = Arc<std::sync::Mutex<Option<OrgQueryError>>>;

fn fail(failure: &Failure, e: OrgQueryError) -> PsrpError {
    let text = e.to_string();
    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    PsrpError::Protocol(text)
}

#[async_trait]
impl PsrpTransport for ExchangeTransport {
    async fn send_fragment(&self, bytes: &[u8]) -> psrp_rs::Result<()> {
        let failure = self.failure.clone();
        let mut c = self.inner.lock().await;
        let cmd = c
            .command_id
            .as_ref()
            .map(|id| format!(" CommandId=\"{id}\""))
            .unwrap_or_default();
        let body = format!(
            "<rsp:Send><rsp:Stream Name=\"stdin\"{cmd}>{}</rsp:Stream></rsp:Send>",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        c.soap(&format!("{ACTION_SHELL}/Send"), true, &body)
            .await
            .map(|_| ())
            .map_err(|e| fail(&failure, e))
    }

    async fn recv_chunk(&mut self) -> psrp_rs::Result<Vec<u8>> {
        let failure = self.failure.clone();
        let c = self.inner.get_mut();
        let started = Instant::now();
        for _ in 0..MAX_EMPTY_POLLS {
            let cmd = c
                .command_id
                .as_ref()
                .map(|id| format!(" CommandId=\"{id}\""))
                .unwrap_or_default();
            let body = format!(
                "<rsp:Receive><rsp:DesiredStream{cmd}>stdout</rsp:DesiredStream></rsp:Receive>"
            );
            let xml = match c
                .soap(&format!("{ACTION_SHELL}/Receive"), true, &body)
                .await
            {
                Ok(x) => x,
                // The long poll ran out with nothing to say: ask again.
                Err(OrgQueryError::Protocol { detail, .. }) if detail.contains("TimedOut") => {
                    continue;
                }
                Err(e) => return Err(fail(&failure, e)),
            };
            let mut out = Vec::new();
            for (_, text) in elements(&xml, "Stream") {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| PsrpError::Protocol("Receive stream is not base64".into()))?;
                out.extend_from_slice(&bytes);
            }
            let done = elements(&xml, "CommandState")
                .iter()
                .any(|(state, _)| state.ends_with("/Done"));
            if done && let Some(id) = c.command_id.take() {
                // As WinRS clients do: release the finished command.
                let body = format!(
                    "<rsp:Signal CommandId=\"{id}\"><rsp:Code>{ACTION_SHELL}/signal/terminate</rsp:Code></rsp:Signal>"
                );
                c.soap(&format!("{ACTION_SHELL}/Signal"), true, &body)
                    .await
                    .map_err(|e| fail(&failure, e))?;
            }
            if !out.is_empty() {
                return Ok(out);
            }
            if started.elapsed() > Duration::from_secs(600) {
                break;
            }
        }
        Err(PsrpError::Protocol(
            "no PSRP output after repeated Receive polls".into(),
        ))
    }

    async fn signal_stop(&self) -> psrp_rs::Result<()> {
        let failure = self.failure.clone();
        let mut c = self.inner.lock().await;
        let Some(id) = c.command_id.clone() else {
            return Ok(());
        };
        let body = format!(
            "<rsp:Signal CommandId=\"{id}\"><rsp:Code>powershell/signal/crtl_c</rsp:Code></rsp:Signal>"
        );
        c.soap(&format!("{ACTION_SHELL}/Signal"), true, &body)
            .await
            .map(|_| ())
            .map_err(|e| fail(&failure, e))
    }

    async fn close_shell(&mut self) -> psrp_rs::Result<()> {
        let failure = self.failure.clone();
        let c = self.inner.get_mut();
        if c.shell_id.is_none() {
            return Ok(());
        }
        let r = c.soap(&format!("{ACTION_TRANSFER}/Delete"), true, "").await;
        c.shell_id = None;
        r.map(|_| ()).map_err(|e| fail(&failure, e))
    }

    async fn execute_pipeline(
        &mut self,
        fragment_bytes: &[u8],
        pipeline_id: uuid::Uuid,
    ) -> psrp_rs::Result<()> {
        let failure = self.failure.clone();
        let c = self.inner.get_mut();
        let id = pipeline_id.to_string().to_ascii_uppercase();
        let body = format!(
            "<rsp:CommandLine CommandId=\"{id}\"><rsp:Command></rsp:Command><rsp:Arguments>{}</rsp:Arguments></rsp:CommandLine>",
            base64::engine::general_purpose::STANDARD.encode(fragment_bytes)
        );
        c.soap(&format!("{ACTION_SHELL}/Command"), true, &body)
            .await
            .map_err(|e| fail(&failure, e))?;
        c.command_id = Some(id);
        Ok(())
    }
}

/// `(State attribute, text)` of every element whose local name is `local`.
fn elements(xml: &str, local: &str) -> Vec<(String, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut open: Option<(String, String)> = None;
    for _ in 0..100_000 {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.local_name().as_ref() == local.as_bytes() => {
                open = Some((state_attr(&e), String::new()));
            }
            Ok(Event::Empty(e)) if e.local_name().as_ref() == local.as_bytes() => {
                out.push((state_attr(&e), String::new()));
            }
            Ok(Event::Text(t)) => {
                if let Some((_, text)) = open.as_mut() {
                    text.push_str(&String::from_utf8_lossy(t.as_ref()));
                }
            }
            Ok(Event::End(e)) if e.local_name().as_ref() == local.as_bytes() => {
                if let Some(o) = open.take() {
                    out.push(o);
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

fn state_attr(e: &quick_xml::events::BytesStart<'_>) -> String {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == b"State")
        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
        .unwrap_or_default()
}

/// A SOAP fault's subcode and reason, if the answer is one.
fn fault_of(xml: &str) -> Option<String> {
    if elements(xml, "Fault").is_empty() {
        return None;
    }
    let reason = elements(xml, "Text")
        .into_iter()
        .map(|(_, t)| t)
        .next()
        .unwrap_or_default();
    let sub = elements(xml, "Value")
        .into_iter()
        .map(|(_, t)| t)
        .nth(1)
        .unwrap_or_default();
    Some(format!("WS-Man fault {sub}: {}", reason.trim()))
}

/// For `doctor`: `Get-ExchangeServer -Identity <identity>` on `ep` within `timeout`, the
/// cheapest call that proves the account's Exchange role lets it run what the org query
/// needs. Outer error as [`query_org`]'s (RBAC refusal included); inner error: the cmdlet ran
/// and failed (Exchange knows no such server, say), with its message.
pub async fn get_exchange_server(
    creds: Arc<Credentials>,
    ep: &Endpoint,
    identity: &str,
    timeout: Duration,
) -> Result<Result<Vec<ExchangeServerFacts>, String>, OrgQueryError> {
    within(timeout, &ep.fqdn, async {
        let mut session = Session::open(creds, ep).await?;
        let command = Command::new("Get-ExchangeServer")
            .with_parameter("Identity", PsValue::String(identity.to_string()));
        let answer = session.run("Get-ExchangeServer", command).await;
        session.close().await;
        Ok(answer?.map(|values| values.iter().map(server_facts).collect()))
    })
    .await
}

#[cfg(test)]
mod recorded_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_and_time_shapes() {
        assert_eq!(site_name("lab.local/Configuration/Sites/Site-A"), "Site-A");
        assert_eq!(utc("2026-11-03T05:05:06+01:00"), "2026-11-03T04:05:06Z");
        assert_eq!(utc("not a date"), "not a date");
    }

    #[test]
    fn fault_reason_is_read() {
        let xml = "<s:Envelope xmlns:s=\"x\"><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:TimedOut</s:Value></s:Subcode></s:Code><s:Reason><s:Text>late</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>";
        assert_eq!(fault_of(xml).unwrap(), "WS-Man fault w:TimedOut: late");
        assert!(fault_of("<a><b/></a>").is_none());
    }

    #[test]
    fn a_refused_ticket_over_https_names_extended_protection() {
        let refused = |https| {
            OrgQueryError::KerberosRefused {
                fqdn: "ex01.lab.local".into(),
                https,
            }
            .to_string()
        };
        let tls = refused(true);
        assert!(
            tls.starts_with("https://ex01.lab.local/PowerShell/"),
            "{tls}"
        );
        assert!(tls.contains("Extended Protection"), "{tls}");
        let plain = refused(false);
        assert!(
            plain.starts_with("http://ex01.lab.local/PowerShell/"),
            "{plain}"
        );
        assert!(!plain.contains("Extended Protection"), "{plain}");
    }
}
