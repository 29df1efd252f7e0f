//! Running one probe on one host over WinRM (winrm-rs 2.0.1), and naming what went wrong.
//!
//! The probe is driven step by step (open shell, start command, receive polls, close)
//! instead of through `run_powershell_*`, for three reasons:
//! - an error row must say at which stage it failed (connect, auth, shell, command);
//! - the per-server deadline and the scan-wide cancellation must both end the command
//!   and delete the shell (a dropped `Shell` leaks on the host until its idle timeout);
//! - output is capped while it arrives, so an endless producer cannot grow our memory.
//!
//! A Command is never retried: once it may have reached the host it may be running.
//! (winrm-rs's own `max_retries` only retries connection errors raised before anything
//! was sent, which is safe, and is left at its default of 0.)

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eems_core::report::Stage;
use tokio_util::sync::CancellationToken;
use winrm_rs::{
    AuthMethod, EncryptionMode, SecretString, WinrmClient, WinrmConfig, WinrmCredentials,
    WinrmError,
};

/// How long clean-up (terminate signal, shell delete) may take after a deadline or an
/// interruption. Best effort: the host reaps the shell after its idle timeout anyway.
const CLEANUP_BOUND: Duration = Duration::from_secs(3);
/// Quick empty polls before backing off. A Windows host long-polls Receive, so empty
/// answers are rare; a host that answers empty at once must not make us spin.
const QUICK_EMPTY_POLLS: u32 = 3;
const POWERSHELL_EXE: &str = r"%SystemRoot%\System32\WindowsPowerShell\v1.0\powershell.exe";

/// Authentication scheme for the WinRM connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum AuthKind {
    /// NTLMv2; over HTTP the messages are sealed (a stock Exchange server accepts this).
    Ntlm,
    /// Basic: HTTPS only, local accounts only on the Windows side.
    Basic,
    /// Kerberos (needs the `kerberos` cargo feature): a ticket from kinit, else one got
    /// from the password; the SPN is HTTP/<fqdn>.
    Kerberos,
    /// TLS client certificate mapped to an account (HTTPS only).
    Certificate,
}

impl AuthKind {
    /// The name the reports use, as `--auth` spells it.
    pub fn name(self) -> &'static str {
        match self {
            AuthKind::Ntlm => "ntlm",
            AuthKind::Basic => "basic",
            AuthKind::Kerberos => "kerberos",
            AuthKind::Certificate => "certificate",
        }
    }
}

/// A user name split the way NTLM needs it (winrm-rs puts both parts on the wire as given).
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub domain: String,
}

impl Account {
    /// `DOMAIN\user` → (user, DOMAIN); `user@dns.domain` → the UPN whole with an empty
    /// domain (as Windows clients send a UPN); `user` → empty domain.
    pub fn parse(s: &str) -> Result<Account, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the user name is empty".into());
        }
        if let Some((domain, user)) = s.split_once('\\') {
            if domain.is_empty() || user.is_empty() || user.contains('\\') {
                return Err(format!("'{s}' is not of the form DOMAIN\\user"));
            }
            return Ok(Account {
                user: user.into(),
                domain: domain.into(),
            });
        }
        Ok(Account {
            user: s.into(),
            domain: String::new(),
        })
    }

    pub fn display(&self) -> String {
        if self.domain.is_empty() {
            self.user.clone()
        } else {
            format!("{}\\{}", self.domain, self.user)
        }
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// Everything about the connection that is the same for every host of a scan.
#[derive(Clone)]
pub struct TransportConfig {
    pub https: bool,
    /// `None`: 5985 for HTTP, 5986 for HTTPS (an inventory row may override per host).
    pub port: Option<u16>,
    /// The mechanism `--auth` forced, or (`auth_auto`) the one used when Kerberos is not.
    pub auth: AuthKind,
    /// No `--auth`: Kerberos for each server with an FQDN when credentials can be had for its
    /// realm (`kerberos_scan::credentials_for`: a valid ticket in the cache, or the password when
    /// krb5.conf knows the account's realm), else `auth`.
    pub auth_auto: bool,
    pub account: Account,
    /// Never printed: `SecretString` redacts itself in Debug.
    pub password: SecretString,
    pub ca_cert: Option<PathBuf>,
    pub insecure: bool,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// WS-Management OperationTimeout: how long one Receive may wait on the host.
    pub operation_timeout_secs: u64,
    /// Probe output above this is cut off and reported as an error.
    pub max_output_bytes: usize,
    /// Kerberos: where each FQDN's TCP connection goes (the inventory's `address`), for
    /// every client, since a client serves many hosts. Empty for the other mechanisms.
    pub resolve: Arc<Vec<(String, IpAddr)>>,
    /// Clients built so far, one per port, shared by every host on that port.
    pub clients: ClientCache,
}

/// `WinrmClient`s shared across hosts: per port, the current one serves the next
/// [`PROBES_PER_CLIENT`] probes, then a new one takes over and the old one is dropped
/// (closing its connections) when its last probe ends.
///
/// Building a client costs about 2.5 ms of CPU (reqwest and rustls set-up), two thirds
/// of a whole probe, so one client per host would double the scan's CPU. One client for
/// the whole fleet breaks "one connection per server": winrm-rs 2.0.1 keeps at most 32
/// idle authenticated connections per client, all hosts together (oldest closed first),
/// and at most 128 requests in flight. Between two requests of a probe its connection is
/// idle in that pool, so past about 32 probes at once the pool closed connections still
/// in use: the next request opened a new one and authenticated again (three NTLM
/// handshakes per server at -j 500). A client that only ever serves 32 probes never holds
/// more than 32 connections, idle or busy, so none is closed under a probe.
#[derive(Clone)]
pub struct ClientCache {
    clients: Arc<Mutex<HashMap<ClientKey, CurrentClient>>>,
    /// Authentication retries left before any server accepted the credentials.
    auth_retries: Arc<std::sync::atomic::AtomicUsize>,
    /// Some server accepted the credentials during this scan.
    auth_proven: Arc<std::sync::atomic::AtomicBool>,
    /// Kerberos credentials, got once per scan by the first probe that needs them.
    #[cfg(feature = "kerberos")]
    pub(crate) kerberos: Arc<crate::kerberos_scan::ScanKerberos>,
    /// Kerberos clients use the scan's ticket cache itself, not a copy each: a copy lacks
    /// MIT's KDC time offset, so with this machine's clock off from the KDC's its ticket
    /// requests failed as clock skew while the scan's own cache still works.
    #[cfg(feature = "kerberos")]
    shared_ticket_cache: Arc<std::sync::atomic::AtomicBool>,
}

/// Probes one `WinrmClient` serves in its life: winrm-rs 2.0.1's `MAX_IDLE_TOTAL`, the
/// idle connections a client keeps before it closes the oldest. Each probe leaves at
/// most one connection behind (a failed one is discarded), so a client never has a
/// reason to close one. Also below its 128 requests in flight per client.
const PROBES_PER_CLIENT: usize = 32;

/// A client serves one port with one mechanism (without `--auth` a scan may use two).
type ClientKey = (Option<u16>, AuthKind);

struct CurrentClient {
    client: Arc<WinrmClient>,
    /// Kerberos: the client's own copy of the scan's credentials
    /// (`Credentials::for_client`), where its probes' service tickets go.
    kerberos: Option<Arc<KerberosCred>>,
    /// The scan's credentials that copy came from: without `--auth` a scan may hold one per
    /// realm, and a probe only takes a client made from its own.
    made_from: Option<Arc<KerberosCred>>,
    probes: usize,
}

impl Default for ClientCache {
    fn default() -> Self {
        ClientCache {
            clients: Arc::default(),
            auth_retries: Arc::new(std::sync::atomic::AtomicUsize::new(
                UNPROVEN_AUTH_RETRIES_PER_SCAN,
            )),
            auth_proven: Arc::default(),
            #[cfg(feature = "kerberos")]
            kerberos: Arc::default(),
            #[cfg(feature = "kerberos")]
            shared_ticket_cache: Arc::default(),
        }
    }
}

impl ClientCache {
    #[cfg(feature = "kerberos")]
    fn shared_ticket_cache(&self) -> bool {
        self.shared_ticket_cache
            .load(std::sync::atomic::Ordering::SeqCst)
    }
    #[cfg(not(feature = "kerberos"))]
    fn shared_ticket_cache(&self) -> bool {
        false
    }

    fn take_auth_retry(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.auth_retries
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Whether a server of this scan has accepted the credentials. From then on a
    /// rejected authentication cannot be a wrong password (a domain controller counts a
    /// bad password only when it checks one), so it can neither lock the account out
    /// nor needs the lockout guard.
    pub fn auth_proven(&self) -> bool {
        self.auth_proven.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Authentication failures retried per scan before any server accepted the credentials.
/// Each such retry of a wrong password is one more bad attempt on the account, so this
/// stays at one: the lockout guard's bound becomes `--max-auth-failures` + 1 attempts.
const UNPROVEN_AUTH_RETRIES_PER_SCAN: usize = 1;
/// Retries of a rejected authentication on one server once the credentials are proven.
const PROVEN_AUTH_RETRIES_PER_HOST: u32 = 2;

impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportConfig")
            .field("https", &self.https)
            .field("port", &self.port)
            .field("auth", &self.auth)
            .field("account", &self.account)
            .field("password", &"<redacted>")
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl TransportConfig {
    /// The mechanism for `target`: the forced one, or without `--auth` Kerberos when the
    /// server has an FQDN and credentials can be had for its realm (got once per scan).
    pub async fn mechanism_for(&self, target: &Target) -> AuthKind {
        #[cfg(feature = "kerberos")]
        if self.auth_auto
            && let Some(fqdn) = &target.fqdn
            && crate::kerberos_scan::credentials_for(self, fqdn)
                .await
                .is_some()
        {
            return AuthKind::Kerberos;
        }
        #[cfg(not(feature = "kerberos"))]
        let _ = target;
        self.auth
    }

    /// Checks combinations Windows or winrm-rs would refuse, with a reason a user can act on.
    pub fn validate(&self) -> Result<(), String> {
        match self.auth {
            AuthKind::Basic if !self.https => Err(
                "Basic authentication over HTTP would send the password and every SOAP body \
                 in clear text, and Windows refuses it (AllowUnencrypted=false); use --https, \
                 or NTLM (the default), which seals messages over HTTP"
                    .into(),
            ),
            AuthKind::Basic if self.insecure => Err(
                "Basic authentication with --insecure would hand the password to whoever \
                 answers; trust the listener's CA with --ca-cert instead"
                    .into(),
            ),
            AuthKind::Certificate if !self.https => {
                Err("certificate authentication needs --https".into())
            }
            AuthKind::Certificate if self.client_cert.is_none() || self.client_key.is_none() => {
                Err("certificate authentication needs --client-cert and --client-key".into())
            }
            AuthKind::Kerberos if !cfg!(feature = "kerberos") => Err(
                "--auth kerberos: this build has no Kerberos support; rebuild with the \
                 `kerberos` feature (cargo build --features kerberos; needs libkrb5-dev)"
                    .into(),
            ),
            _ if self.insecure && self.ca_cert.is_some() => {
                Err("--insecure and --ca-cert contradict each other; choose one".into())
            }
            _ => Ok(()),
        }
    }

    /// The client for the next probe on `port` (see [`ClientCache`]), with its Kerberos
    /// credentials when `kerberos` (the scan's) is given. Building one holds the lock, once
    /// per [`PROBES_PER_CLIENT`] probes.
    fn client_for(
        &self,
        port: Option<u16>,
        auth: AuthKind,
        kerberos: Option<&Arc<KerberosCred>>,
    ) -> Result<(Arc<WinrmClient>, Option<Arc<KerberosCred>>), WinrmError> {
        let key = (port.or(self.port), auth);
        let shared = self.clients.shared_ticket_cache();
        let mut cache = self
            .clients
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(current) = cache.get_mut(&key)
            && current.probes < PROBES_PER_CLIENT
            && !(shared && current.kerberos.as_deref().is_some_and(is_copy))
            && match (kerberos, &current.made_from) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (a, b) => a.is_none() && b.is_none(),
            }
        {
            current.probes += 1;
            return Ok((current.client.clone(), current.kerberos.clone()));
        }
        let own = match kerberos {
            Some(scan) if shared => Some(scan.clone()),
            Some(scan) => Some(Arc::new(client_credentials(scan)?)),
            None => None,
        };
        let client = Arc::new(self.build_client(key.0, auth, own.as_deref())?);
        cache.insert(
            key,
            CurrentClient {
                client: client.clone(),
                kerberos: own.clone(),
                made_from: kerberos.cloned(),
                probes: 1,
            },
        );
        Ok((client, own))
    }

    #[cfg_attr(not(feature = "kerberos"), allow(unused_variables))]
    fn build_client(
        &self,
        port: Option<u16>,
        auth: AuthKind,
        kerberos: Option<&KerberosCred>,
    ) -> Result<WinrmClient, WinrmError> {
        let base = if self.https {
            WinrmConfig::https()
        } else {
            WinrmConfig::http()
        };
        let auth_method = match auth {
            AuthKind::Ntlm => AuthMethod::Ntlm,
            AuthKind::Basic => AuthMethod::Basic,
            AuthKind::Kerberos => kerberos_method(),
            AuthKind::Certificate => AuthMethod::Certificate,
        };
        let read_pem = |p: &Option<PathBuf>| -> Result<Option<String>, WinrmError> {
            match p {
                None => Ok(None),
                Some(p) => std::fs::read_to_string(p).map(Some).map_err(|e| {
                    WinrmError::AuthFailed(format!("cannot read {}: {e}", p.display()))
                }),
            }
        };
        // NTLM/Kerberos over HTTPS are sealed inside TLS too. Unsealed, winrm-rs 2.0.1
        // re-authenticates every request, and its pool can send the AUTHENTICATE on
        // another connection than the NEGOTIATE, which Windows (and the lab) refuse
        // with 401. Sealed, each connection authenticates once and keeps its context;
        // Windows accepts sealed bodies over HTTPS.
        let encryption = match auth {
            AuthKind::Ntlm | AuthKind::Kerberos if self.https => EncryptionMode::Always,
            _ => EncryptionMode::Auto,
        };
        let config = WinrmConfig {
            port,
            auth_method,
            accept_invalid_certs: self.insecure,
            connect_timeout_secs: self.connect_timeout.as_secs().max(1),
            operation_timeout_secs: self.operation_timeout_secs.max(1),
            encryption,
            max_output_bytes: Some(self.max_output_bytes),
            client_cert_pem: read_pem(&self.client_cert)?,
            client_key_pem: read_pem(&self.client_key)?,
            user_agent: Some(concat!("eems-scan/", env!("CARGO_PKG_VERSION")).into()),
            resolve: self.resolve.to_vec(),
            #[cfg(feature = "kerberos")]
            kerberos_credential: kerberos.map(|c| c.gss_cred().clone()),
            ..base
        };
        let creds = WinrmCredentials {
            username: self.account.user.clone(),
            password: self.password.clone(),
            domain: self.account.domain.clone(),
        };
        let mut builder = WinrmClient::builder(config).credentials(creds);
        if let Some(ca) = &self.ca_cert {
            builder = builder.add_root_certificates_pem(ca.clone());
        }
        builder.build()
    }
}

#[cfg(feature = "kerberos")]
fn kerberos_method() -> AuthMethod {
    AuthMethod::Kerberos
}
#[cfg(not(feature = "kerberos"))]
fn kerberos_method() -> AuthMethod {
    // validate() refuses Kerberos in this build; NTLM is never reached through here.
    AuthMethod::Ntlm
}

#[cfg(feature = "kerberos")]
type KerberosCred = crate::kerberos::Credentials;

#[cfg(feature = "kerberos")]
fn client_credentials(scan: &KerberosCred) -> Result<KerberosCred, WinrmError> {
    scan.for_client()
        .map_err(|e| WinrmError::AuthFailed(e.to_string()))
}
#[cfg(feature = "kerberos")]
fn is_copy(c: &KerberosCred) -> bool {
    c.is_copy()
}
#[cfg(not(feature = "kerberos"))]
fn client_credentials(scan: &KerberosCred) -> Result<KerberosCred, WinrmError> {
    match *scan {}
}
#[cfg(not(feature = "kerberos"))]
fn is_copy(c: &KerberosCred) -> bool {
    match *c {}
}
/// Never built: without the feature no probe has Kerberos credentials.
#[cfg(not(feature = "kerberos"))]
enum KerberosCred {}

/// One host to probe: the name from the inventory, where to connect, and its port.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// Address or DNS name handed to the client (bare: no scheme, port or path).
    pub host: String,
    pub port: Option<u16>,
    /// The DNS name Kerberos needs (SPN `HTTP/<fqdn>`, HTTP `Host`).
    pub fqdn: Option<String>,
}

impl Target {
    pub fn of(e: &eems_core::inventory::InventoryEntry) -> Target {
        Target {
            name: e.name.clone(),
            host: e.connect_host().to_string(),
            port: e.port,
            fqdn: e.kerberos_fqdn().map(str::to_string),
        }
    }

    /// A server known only by the name a user typed.
    pub fn named(name: &str) -> Target {
        Target {
            name: name.to_string(),
            host: name.to_string(),
            port: None,
            fqdn: eems_core::inventory::as_fqdn(name).map(|f| f.trim_end_matches('.').to_string()),
        }
    }
}

/// `fqdn -> address` for every entry whose `address` is an IP address: Kerberos dials the
/// address while the URL, `Host`, TLS name and SPN keep the FQDN.
pub fn resolve_overrides(
    entries: &[eems_core::inventory::InventoryEntry],
) -> Vec<(String, IpAddr)> {
    entries
        .iter()
        .filter_map(|e| {
            let ip = e.address.as_deref()?.parse::<IpAddr>().ok()?;
            Some((e.kerberos_fqdn()?.to_string(), ip))
        })
        .collect()
}

/// The cause of a failure, in the few classes an admin acts on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    ConnectionRefused,
    Dns,
    Tls,
    Timeout,
    Auth,
    ConnectionDropped,
    Http,
    WinrmFault,
    OutputTooLarge,
    ScriptFailed,
    BadOutput,
    Interrupted,
    Other,
}

/// A probe that could not be done, with what happened in plain words.
#[derive(Debug, Clone)]
pub struct ProbeError {
    pub stage: Stage,
    pub kind: FailureKind,
    pub message: String,
    pub elapsed: Duration,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (stage {}, after {:.1} s)",
            self.message,
            self.stage.as_str(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// What a finished probe printed.
#[derive(Debug, Clone)]
pub struct ProbeOutput {
    pub stdout: String,
    /// Decoded stderr (CLIXML already turned into text by winrm-rs).
    pub stderr: String,
    pub exit_code: Option<i32>,
    pub elapsed: Duration,
}

/// How the script reaches powershell.exe.
#[derive(Debug, Clone, Copy)]
pub enum Feed<'a> {
    /// In `-EncodedCommand`: fits [`eems_core::probe::MAX_SCRIPT_UTF16`] units.
    CommandLine(&'a str),
    /// On stdin behind [`eems_core::probe::STDIN_BOOTSTRAP`], in the same command: one
    /// more request (the Send), no second command.
    Stdin(&'a str),
}

/// Why the run stopped early, when it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Deadline,
    Cancelled,
}

/// Runs the script on `target` within `deadline`, ending early (with clean-up) when `cancel`
/// fires. The client is shared with up to 31 other probes ([`ClientCache`]); winrm-rs keeps
/// connections and NTLM contexts per host, so the handshake is done once per host on a
/// kept-alive connection.
pub async fn run_probe(
    cfg: &TransportConfig,
    target: &Target,
    script: Feed<'_>,
    deadline: Duration,
    cancel: &CancellationToken,
) -> Result<ProbeOutput, ProbeError> {
    let start = Instant::now();
    let until = tokio::time::Instant::now() + deadline;
    let fail = |stage: Stage, kind: FailureKind, message: String| ProbeError {
        stage,
        kind,
        message,
        elapsed: start.elapsed(),
    };
    let stopped = |stage: Stage, why: Stop| match why {
        Stop::Deadline => fail(
            stage,
            FailureKind::Timeout,
            format!("timeout after {} s", deadline.as_secs()),
        ),
        Stop::Cancelled => fail(stage, FailureKind::Interrupted, "interrupted".into()),
    };

    // Kerberos talks to the FQDN (the SPN and `Host` come from the URL); TCP still goes to
    // the address through `resolve`.
    let auth = cfg.mechanism_for(target).await;
    let (host, kerberos) = match auth {
        #[cfg(feature = "kerberos")]
        AuthKind::Kerberos => {
            let (fqdn, creds) = crate::kerberos::preflight(cfg, target)
                .await
                .map_err(|(kind, message)| fail(Stage::Auth, kind, message))?;
            (fqdn, Some(creds))
        }
        _ => (target.host.clone(), None::<Arc<KerberosCred>>),
    };
    // The client's credentials, not the scan's: a probe holds them as long as the client,
    // and the last one to let go destroys the client's ticket cache.
    let client_for = || {
        cfg.client_for(target.port, auth, kerberos.as_ref())
            .map_err(|e| fail(Stage::Connect, FailureKind::Other, client_setup_message(&e)))
    };
    #[cfg_attr(not(feature = "kerberos"), allow(unused_mut))]
    let (mut client, mut _client_kerberos) = client_for()?;
    #[cfg(feature = "kerberos")]
    if let Some(creds) = _client_kerberos.clone() {
        let mut got = crate::kerberos::service_ticket(&creds, &host).await;
        if got.as_ref().is_err_and(|e| e.is_clock_skew()) && creds.is_copy() {
            tracing::info!("Kerberos: a private ticket cache hit a clock skew; using the scan's");
            cfg.clients
                .shared_ticket_cache
                .store(true, std::sync::atomic::Ordering::SeqCst);
            (client, _client_kerberos) = client_for()?;
            if let Some(shared) = &_client_kerberos {
                got = crate::kerberos::service_ticket(shared, &host).await;
            }
        }
        got.map_err(|e| {
            let (kind, message) = crate::kerberos::kerberos_error(&e);
            fail(Stage::Auth, kind, message)
        })?;
    }

    // Opening the shell is the first request: TCP, TLS and authentication happen here.
    //
    // winrm-rs 2.0.1 can send the first sealed request (this Create) on a pooled
    // connection other than the one it just authenticated: a connect hyper started during
    // the handshake lands in the pool after the handshake has locked it (hyper-util races
    // a connect against the pool whenever the CHALLENGE's connection is not back in the
    // pool yet when the AUTHENTICATE goes out). The server answers 401 without running
    // anything. No setting of winrm-rs 2.0.1 closes that window, so the retries stay.
    // Measured in the lab (README, Performance): it hit the first handshake of a scan
    // (the org query) in one scan of 14, twice in a row there, and no host probe in
    // about 25,000 handshakes. Each retry is a new handshake
    // with the same odds. A Create is safe to send again (nothing ran; a Command is never
    // resent).
    let mut opened = bounded(until, cancel, client.open_shell(&host)).await;
    let mut auth_retries = 0;
    for pause_ms in [0, 10, 50, 100, 200] {
        let retry = match &opened {
            Ok(Err(e)) if is_stale_context(e) => true,
            // The same race one step earlier: the AUTHENTICATE goes out on a connection
            // other than the one that got the CHALLENGE, and the server refuses it as it
            // refuses a wrong password. The client cannot tell the two apart. Once the
            // credentials are proven the retry is harmless; before that it is one more
            // bad attempt if the password is wrong, so only one per scan.
            Ok(Err(WinrmError::AuthFailed(_))) => {
                auth_retries += 1;
                if cfg.clients.auth_proven() {
                    auth_retries <= PROVEN_AUTH_RETRIES_PER_HOST
                } else {
                    auth_retries == 1 && cfg.clients.take_auth_retry()
                }
            }
            _ => false,
        };
        if !retry {
            break;
        }
        tracing::debug!(server = %target.name, "Create refused on a fresh connection; retrying");
        // A rejected authentication waits longer: back-to-back handshakes race alike.
        let pause_ms = match &opened {
            Ok(Err(WinrmError::AuthFailed(_))) => pause_ms.max(100),
            _ => pause_ms,
        };
        if bounded(
            until,
            cancel,
            tokio::time::sleep(Duration::from_millis(pause_ms)),
        )
        .await
        .is_err()
        {
            break;
        }
        opened = bounded(until, cancel, client.open_shell(&host)).await;
    }
    let shell = match opened {
        Err(why) => return Err(stopped(Stage::Connect, why)),
        Ok(Err(e)) => {
            let (kind, msg) = classify(&e, cfg);
            let stage = match kind {
                FailureKind::ConnectionRefused | FailureKind::Dns | FailureKind::Tls => {
                    Stage::Connect
                }
                FailureKind::Auth => Stage::Auth,
                FailureKind::Timeout if !matches!(e, WinrmError::Soap(_)) => Stage::Connect,
                _ => Stage::Shell,
            };
            return Err(fail(stage, kind, msg));
        }
        Ok(Ok(shell)) => {
            cfg.clients
                .auth_proven
                .store(true, std::sync::atomic::Ordering::SeqCst);
            shell
        }
    };

    let result = drive_command(&shell, script, until, cancel, cfg).await;
    // Close on every path. After a stop the host may still be busy: bound the clean-up.
    let cleanup_until = tokio::time::Instant::now() + CLEANUP_BOUND;
    if let Err((_, _, Some(command_id))) = &result {
        let _ = tokio::time::timeout_at(
            cleanup_until,
            client.signal_terminate(&target.host, shell.shell_id(), command_id),
        )
        .await;
    }
    match tokio::time::timeout_at(cleanup_until, shell.close()).await {
        Ok(Err(e)) => tracing::debug!(server = %target.name, error = %e, "shell delete failed"),
        Err(_) => tracing::debug!(server = %target.name, "shell delete timed out"),
        Ok(Ok(())) => {}
    }

    match result {
        Ok(out) => Ok(ProbeOutput {
            stdout: String::from_utf8_lossy(&out.0).into_owned(),
            stderr: String::from_utf8_lossy(&out.1).into_owned(),
            exit_code: out.2,
            elapsed: start.elapsed(),
        }),
        Err((Failure::Stopped(why), stage, _)) => Err(stopped(stage, why)),
        Err((Failure::Error(kind, msg), stage, _)) => Err(fail(stage, kind, msg)),
    }
}

enum Failure {
    Stopped(Stop),
    Error(FailureKind, String),
}

type Collected = (Vec<u8>, Vec<u8>, Option<i32>);

/// Starts the command, feeds its stdin when the script goes that way, and polls until
/// Done. On failure also returns the command id (when there is one) so the caller can send
/// the terminate signal.
async fn drive_command(
    shell: &winrm_rs::Shell<'_>,
    script: Feed<'_>,
    until: tokio::time::Instant,
    cancel: &CancellationToken,
    cfg: &TransportConfig,
) -> Result<Collected, (Failure, Stage, Option<String>)> {
    let (command_line, stdin) = match script {
        Feed::CommandLine(s) => (s, None),
        Feed::Stdin(s) => (
            eems_core::probe::STDIN_BOOTSTRAP,
            Some(eems_core::probe::stdin_payload(s)),
        ),
    };
    let encoded = winrm_rs::encode_powershell_command(command_line);
    let args = [
        "-NoProfile",
        "-NonInteractive",
        "-EncodedCommand",
        encoded.as_str(),
    ];
    let command_id = match bounded(until, cancel, shell.start_command(POWERSHELL_EXE, &args)).await
    {
        Err(why) => return Err((Failure::Stopped(why), Stage::Command, None)),
        Ok(Err(e)) => {
            let (kind, msg) = classify(&e, cfg);
            return Err((Failure::Error(kind, msg), Stage::Command, None));
        }
        Ok(Ok(id)) => id,
    };
    if let Some(input) = stdin {
        // All of it with End: the bootstrap reads to the end of stdin before running.
        match bounded(until, cancel, shell.send_input(&command_id, &input, true)).await {
            Err(why) => return Err((Failure::Stopped(why), Stage::Command, Some(command_id))),
            Ok(Err(e)) => {
                let (kind, msg) = classify(&e, cfg);
                return Err((Failure::Error(kind, msg), Stage::Command, Some(command_id)));
            }
            Ok(Ok(())) => {}
        }
    }

    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut empty_polls = 0u32;
    loop {
        let polled = match bounded(until, cancel, shell.receive_next(&command_id)).await {
            Err(why) => return Err((Failure::Stopped(why), Stage::Command, Some(command_id))),
            Ok(Err(e)) => {
                let (kind, msg) = classify(&e, cfg);
                return Err((Failure::Error(kind, msg), Stage::Command, Some(command_id)));
            }
            Ok(Ok(o)) => o,
        };
        let got_something = !polled.stdout.is_empty() || !polled.stderr.is_empty();
        stdout.extend_from_slice(&polled.stdout);
        stderr.extend_from_slice(&polled.stderr);
        if stdout.len() + stderr.len() > cfg.max_output_bytes {
            let msg = format!(
                "the probe printed more than {} KiB; output cut off (is something on the \
                 host writing to the console without end?)",
                cfg.max_output_bytes / 1024
            );
            return Err((
                Failure::Error(FailureKind::OutputTooLarge, msg),
                Stage::Command,
                Some(command_id),
            ));
        }
        if polled.done {
            return Ok((stdout, stderr, polled.exit_code));
        }
        if got_something {
            empty_polls = 0;
        } else {
            empty_polls += 1;
            if empty_polls > QUICK_EMPTY_POLLS {
                let pause = Duration::from_millis(100 * u64::from(empty_polls.min(20)));
                if let Err(why) = bounded(until, cancel, tokio::time::sleep(pause)).await {
                    return Err((Failure::Stopped(why), Stage::Command, Some(command_id)));
                }
            }
        }
    }
}

/// A 401 to a sealed request: the connection it went out on had no NTLM context.
fn is_stale_context(e: &WinrmError) -> bool {
    matches!(e, WinrmError::Ntlm(n) if n.to_string().contains("401 to a sealed"))
}

/// Awaits `fut` unless the deadline passes or the scan is cancelled first.
async fn bounded<F: std::future::Future>(
    until: tokio::time::Instant,
    cancel: &CancellationToken,
    fut: F,
) -> Result<F::Output, Stop> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Stop::Cancelled),
        r = tokio::time::timeout_at(until, fut) => r.map_err(|_| Stop::Deadline),
    }
}

fn client_setup_message(e: &WinrmError) -> String {
    format!("cannot set up the WinRM client: {e}")
}

/// Turns a winrm-rs error into a class and a sentence an admin can act on.
pub fn classify(e: &WinrmError, cfg: &TransportConfig) -> (FailureKind, String) {
    match e {
        WinrmError::Http(re) => {
            let chain = error_chain(re);
            let lower = chain.to_ascii_lowercase();
            let port = cfg.port.unwrap_or(if cfg.https { 5986 } else { 5985 });
            let dropped = [
                "close_notify",
                "unexpected eof",
                "unexpected-eof",
                "connection closed",
                "connection reset",
                "reset by peer",
                "incomplete",
                "broken pipe",
            ];
            if dropped.iter().any(|d| lower.contains(d)) {
                (
                    FailureKind::ConnectionDropped,
                    format!("the server dropped the connection mid-response ({chain})"),
                )
            } else if lower.contains("certificate")
                || lower.contains("handshake")
                || lower.contains("tls")
            {
                (
                    FailureKind::Tls,
                    format!(
                        "TLS: the listener's certificate was not accepted ({chain}); pass the issuing CA with --ca-cert"
                    ),
                )
            } else if lower.contains("connection refused") {
                (
                    FailureKind::ConnectionRefused,
                    format!(
                        "connection refused: nothing listens on the WinRM port (is WinRM enabled, is {port} the right port, is a firewall in the way?)"
                    ),
                )
            } else if lower.contains("dns") || lower.contains("lookup") || lower.contains("resolve")
            {
                (
                    FailureKind::Dns,
                    format!("DNS: the server name does not resolve ({chain})"),
                )
            } else if re.is_timeout() {
                (FailureKind::Timeout, format!("no answer in time ({chain})"))
            } else if re.is_connect() {
                (
                    FailureKind::ConnectionRefused,
                    format!("cannot connect: {chain}"),
                )
            } else if let Some(status) = re.status() {
                (
                    FailureKind::Http,
                    format!("HTTP {status} from the WinRM listener ({chain})"),
                )
            } else {
                (FailureKind::Http, format!("HTTP: {chain}"))
            }
        }
        // The same for Kerberos, which winrm-rs reports as an authentication failure.
        WinrmError::AuthFailed(m) if m.contains("without sealing") && m.contains("HTTP ") => (
            FailureKind::Http,
            format!(
                "the WinRM listener answered {} instead of a sealed reply (the WinRM service \
                 failed on the server; see its event log)",
                m.find("HTTP ").map_or(m.as_str(), |at| &m[at..])
            ),
        ),
        // The KDC issued the ticket (the pre-flight got it), so the server refused a valid
        // one: a bare 401 carries no reason, these are the causes left.
        WinrmError::AuthFailed(m) if m.contains("Kerberos authentication rejected") => (
            FailureKind::Auth,
            "the server refused the Kerberos ticket the KDC issued for it: most often the \
                 server's clock differs from the KDC's by more than the allowed skew (5 minutes \
                 unless configured; synchronise it, NTP), or its keytab no longer matches \
                 HTTP/<fqdn> (reset the computer account)"
                .into(),
        ),
        WinrmError::AuthFailed(m) => (
            FailureKind::Auth,
            format!(
                "authentication failed for {}: {m} (check the user name, the password and \
                 that the account may use WinRM on this server)",
                cfg.account.display()
            ),
        ),
        WinrmError::Ntlm(n) => {
            let text = n.to_string();
            // winrm-rs reports any unsealed answer to a sealed request as an NTLM error;
            // an HTTP error status there is the server failing, not the credentials.
            match text.find("HTTP ") {
                Some(at) if text.contains("without sealing") => (
                    FailureKind::Http,
                    format!(
                        "the WinRM listener answered {} instead of a sealed reply (the \
                         WinRM service failed on the server; see its event log)",
                        &text[at..]
                    ),
                ),
                _ => (
                    FailureKind::Auth,
                    format!("authentication failed (NTLM): {text}"),
                ),
            }
        }
        WinrmError::Soap(s) => {
            let text = s.to_string();
            if text.contains("TimedOut") {
                (FailureKind::Timeout, format!("WinRM: {text}"))
            } else if text.contains("500") && text.to_ascii_lowercase().contains("empty") {
                (
                    FailureKind::Http,
                    format!("HTTP 500 with an empty body from the WinRM listener ({text})"),
                )
            } else {
                (FailureKind::WinrmFault, format!("WinRM fault: {text}"))
            }
        }
        WinrmError::Timeout(s) => (FailureKind::Timeout, format!("timeout after {s} s")),
        WinrmError::Transfer(m) => (FailureKind::OutputTooLarge, format!("output cut off: {m}")),
        WinrmError::Cancelled => (FailureKind::Interrupted, "interrupted".into()),
        other => (FailureKind::Other, other.to_string()),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
        if parts.len() > 8 {
            break;
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_user_names_as_ntlm_needs_them() {
        let a = Account::parse(r"LAB\administrator").unwrap();
        assert_eq!(
            (a.user.as_str(), a.domain.as_str()),
            ("administrator", "LAB")
        );
        let a = Account::parse("admin@lab.local").unwrap();
        assert_eq!(
            (a.user.as_str(), a.domain.as_str()),
            ("admin@lab.local", "")
        );
        let a = Account::parse("admin").unwrap();
        assert_eq!((a.user.as_str(), a.domain.as_str()), ("admin", ""));
        assert!(Account::parse(r"\admin").is_err());
        assert!(Account::parse(r"LAB\").is_err());
        assert!(Account::parse(r"A\B\C").is_err());
        assert!(Account::parse("  ").is_err());
    }

    fn cfg(auth: AuthKind, https: bool) -> TransportConfig {
        TransportConfig {
            https,
            port: None,
            auth,
            account: Account::parse(r"LAB\a").unwrap(),
            password: SecretString::from("sentinel-pw".to_string()),
            ca_cert: None,
            insecure: false,
            client_cert: None,
            client_key: None,
            connect_timeout: Duration::from_secs(5),
            operation_timeout_secs: 20,
            max_output_bytes: 1 << 22,
            auth_auto: false,
            resolve: Arc::default(),
            clients: ClientCache::default(),
        }
    }

    #[test]
    fn kerberos_without_the_feature_is_a_usage_error_naming_it() {
        let e = cfg(AuthKind::Kerberos, false).validate();
        if cfg!(feature = "kerberos") {
            assert!(e.is_ok(), "{e:?}");
        } else {
            let e = e.unwrap_err();
            assert!(
                e.contains("`kerberos` feature") && e.contains("--auth kerberos"),
                "{e}"
            );
        }
    }

    #[test]
    fn basic_over_http_is_refused_with_a_reason() {
        let e = cfg(AuthKind::Basic, false).validate().unwrap_err();
        assert!(e.contains("--https"), "{e}");
        assert!(cfg(AuthKind::Basic, true).validate().is_ok());
        assert!(cfg(AuthKind::Ntlm, false).validate().is_ok());
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let text = format!("{:?}", cfg(AuthKind::Ntlm, false));
        assert!(!text.contains("sentinel-pw"), "{text}");
    }

    #[test]
    fn a_client_serves_at_most_probes_per_client_probes() {
        let c = cfg(AuthKind::Ntlm, false);
        let first = c.client_for(None, AuthKind::Ntlm, None).unwrap().0;
        for _ in 1..PROBES_PER_CLIENT {
            assert!(Arc::ptr_eq(
                &first,
                &c.client_for(None, AuthKind::Ntlm, None).unwrap().0
            ));
        }
        let next = c.client_for(None, AuthKind::Ntlm, None).unwrap().0;
        assert!(
            !Arc::ptr_eq(&first, &next),
            "probe {} got the client that already served {PROBES_PER_CLIENT}",
            PROBES_PER_CLIENT + 1
        );
        // Another port has its own client; the first port's count is not reset by it.
        assert!(!Arc::ptr_eq(
            &next,
            &c.client_for(Some(15985), AuthKind::Ntlm, None).unwrap().0
        ));
        assert!(Arc::ptr_eq(
            &next,
            &c.client_for(None, AuthKind::Ntlm, None).unwrap().0
        ));
    }
}
