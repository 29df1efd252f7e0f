//! Building and caching the `WinrmClient`s, and the Kerberos credentials each client holds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use winrm_rs::{
    AuthMethod, EncryptionMode, WinrmClient, WinrmConfig, WinrmCredentials, WinrmError,
};

use super::{AuthKind, TransportConfig};

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
    pub(super) auth_proven: Arc<std::sync::atomic::AtomicBool>,
    /// Kerberos credentials, got once per scan by the first probe that needs them.
    #[cfg(feature = "kerberos")]
    pub(crate) kerberos: Arc<crate::kerberos_scan::ScanKerberos>,
    /// Kerberos clients use the scan's ticket cache itself, not a copy each: a copy lacks
    /// MIT's KDC time offset, so with this machine's clock off from the KDC's its ticket
    /// requests failed as clock skew while the scan's own cache still works.
    #[cfg(feature = "kerberos")]
    pub(super) shared_ticket_cache: Arc<std::sync::atomic::AtomicBool>,
}

/// Probes one `WinrmClient` serves in its life: winrm-rs 2.0.1's `MAX_IDLE_TOTAL`, the
/// idle connections a client keeps before it closes the oldest. Each probe leaves at
/// most one connection behind (a failed one is discarded), so a client never has a
/// reason to close one. Also below its 128 requests in flight per client.
pub(super) const PROBES_PER_CLIENT: usize = 32;

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

    pub(super) fn take_auth_retry(&self) -> bool {
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
pub(super) const PROVEN_AUTH_RETRIES_PER_HOST: u32 = 2;

impl TransportConfig {
    /// The client for the next probe on `port` (see [`ClientCache`]), with its Kerberos
    /// credentials when `kerberos` (the scan's) is given. Building one holds the lock, once
    /// per [`PROBES_PER_CLIENT`] probes.
    pub(super) fn client_for(
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
pub(super) type KerberosCred = crate::kerberos::Credentials;

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
pub(super) enum KerberosCred {}
