//! Kerberos credentials for a scan (issue 9; feature `kerberos`), got once per scan by
//! `transport.rs` for `--auth kerberos`.
//!
//! Where they come from, in this order:
//! 1. the user's ticket cache (`KRB5CCNAME`, after `kinit`) when it holds a TGT of the wanted
//!    realm, for the account `--user` names, valid for at least [`MIN_TICKET_LIFE`];
//! 2. otherwise the password (EEMS_PASSWORD, `--password-file`, the prompt), through
//!    `gss_acquire_cred_with_password`: MIT keeps the resulting TGT in a `MEMORY:` cache that
//!    belongs to the credential, so the private cache never touches the disk, dies with the
//!    [`Credentials`] (or with the process, Ctrl-C included), and the password never reaches
//!    another process (no `kinit`, no argument list, no environment).
//!
//! Realm and KDC come from the standard MIT/Heimdal configuration (`KRB5_CONFIG`, else
//! `/etc/krb5.conf`), read by libkrb5 itself. Failures say what went wrong in plain words
//! ([`KerberosError`]); wrong-password failures are marked for the lockout guard.
//!
//! # Decision: the SPN is `HTTP/<fqdn>` while TCP goes to the inventory's `address`
//!
//! winrm-rs 2.0.1 takes the TCP target, the HTTP `Host`, the TLS name and the SPN all from
//! the endpoint URL, and gets Kerberos credentials only from the default ticket cache. We keep
//! a small in-tree `[patch]` of winrm-rs (`patches/winrm-rs`, changes and upstream needs in its
//! `PATCH.md`) rather than write an own transport: a "thin" layer would have to re-implement
//! what winrm-rs already does for the NTLM path (WinRS shells, SOAP, MS-WSMV sealing, channel
//! binding, the connection pool and its retry rules), a second implementation to keep in step,
//! while the gaps are two narrow seams, both additive:
//!
//! 1. `WinrmConfig::resolve: Vec<(String, IpAddr)>`, applied with reqwest's
//!    `ClientBuilder::resolve` where winrm-rs builds its clients (curl's `--connect-to`).
//!    The transport puts every inventory row's `fqdn -> address` in it; the URL carries the
//!    FQDN, so the SPN `HTTP/<fqdn>`, the `Host` header and TLS verification follow the FQDN
//!    and only the socket goes to the address. No DNS, no `/etc/hosts`.
//! 2. `WinrmConfig::kerberos_credential: Option<libgssapi::credential::Cred>` (give it
//!    `Credentials::gss_cred().clone()`), used through `cross_krb5::ClientCtx::new_with_cred`,
//!    so that a password-derived credential needs no `KRB5CCNAME` in the running process.
//!
//! The SPN is never overridden apart from the URL host, on purpose: the name the client
//! verifies over TLS and the name it asks a ticket for stay the same. Exchange's `/PowerShell`
//! (issue 10) will also need the `Kerberos` HTTP scheme and a URL path: not patched yet.
//!
//! # Build
//!
//! The feature stays off by default: it links MIT GSSAPI and needs `libkrb5-dev` and
//! `libclang-dev` (bindgen) at build time, which a default build must not require.

use std::sync::Arc;
use std::time::Duration;

use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::error::{Error as GssError, MajorFlags};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL, OidSet};
use winrm_rs::{ExposeSecret, SecretString};

use crate::transport::FailureKind;

/// A ticket that expires sooner than this is not used: a scan of a large fleet runs minutes,
/// and a ticket dying mid-scan would turn the last servers into errors.
pub const MIN_TICKET_LIFE: Duration = Duration::from_secs(5 * 60);

/// MIT/Heimdal com_err codes (krb5.h), the minor status of a failed GSSAPI call. Stable ABI:
/// they are the protocol's error numbers offset by the krb5 error table base.
mod code {
    pub const C_PRINCIPAL_UNKNOWN: i32 = -1765328378;
    pub const S_PRINCIPAL_UNKNOWN: i32 = -1765328377;
    pub const CLIENT_REVOKED: i32 = -1765328366;
    pub const KEY_EXP: i32 = -1765328361;
    pub const PREAUTH_FAILED: i32 = -1765328360;
    pub const BAD_INTEGRITY: i32 = -1765328353;
    pub const TKT_EXPIRED: i32 = -1765328352;
    pub const TKT_NYV: i32 = -1765328351;
    pub const SKEW: i32 = -1765328347;
    pub const CC_NOTFOUND: i32 = -1765328243;
    pub const REALM_UNKNOWN: i32 = -1765328230;
    pub const KDC_UNREACH: i32 = -1765328228;
    pub const FCC_NOFILE: i32 = -1765328189;
    pub const PREAUTH_FAILED_GENERIC: i32 = -1765328174;
    pub const REALM_CANT_RESOLVE: i32 = -1765328164;
    pub const CONFIG_NODEFREALM: i32 = -1765328160;
}

/// Why Kerberos credentials or a service ticket could not be had. Every text names the cause
/// and what to do; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum KerberosError {
    #[error(
        "no Kerberos ticket for {realm} in the ticket cache ({ccache}) and no password to get \
         one: run `kinit {principal}`, or give the password (EEMS_PASSWORD, --password-file, \
         or the prompt)"
    )]
    NoTicketNoPassword {
        principal: String,
        realm: String,
        ccache: String,
    },
    #[error(
        "the Kerberos ticket of {principal} in {ccache} has expired (or expires within \
         {min} minutes) and there is no password to renew it: run `kinit {principal}` again, \
         or give the password",
        min = MIN_TICKET_LIFE.as_secs() / 60
    )]
    TicketExpired { principal: String, ccache: String },
    #[error(
        "no Kerberos realm for {user:?}: give the user as user@REALM, or set default_realm in \
         {config}"
    )]
    NoRealm { user: String, config: String },
    #[error(
        "cannot reach a KDC for realm {realm} (KDCs from {config}): check its [realms] entry \
         and that its KDC is reachable from here (port 88 unless it names another)"
    )]
    KdcUnreachable { realm: String, config: String },
    #[error(
        "the clocks of this machine and of the KDC of {realm} differ by more than the allowed \
         skew (5 minutes unless configured): synchronise the clock (NTP)"
    )]
    ClockSkew { realm: String },
    #[error(
        "the Kerberos default realm {realm} (from {config}) does not match the domain \
         {domain} of the user {user:?}, so the password was not sent to its KDC: give the \
         user as user@REALM (--user {name}@<the domain's DNS name>), or set default_realm \
         in {config}"
    )]
    RealmNotDomain {
        user: String,
        name: String,
        domain: String,
        realm: String,
        config: String,
    },
    #[error("the KDC refused the password of {principal} (wrong password)")]
    WrongPassword { principal: String },
    #[error("the KDC does not know the account {principal}")]
    UnknownUser { principal: String },
    #[error("the password of {principal} has expired: change it, then scan again")]
    PasswordExpired { principal: String },
    #[error("the account {principal} is disabled or locked out")]
    AccountRevoked { principal: String },
    #[error(
        "the KDC has no service principal {spn} (S_PRINCIPAL_UNKNOWN): check the server's \
         FQDN in the inventory (the SPN is HTTP/<fqdn>, never an IP address), or register it \
         (setspn -S {spn} <computer>)"
    )]
    UnknownSpn { spn: String },
    #[error("Kerberos: {what}: {detail}")]
    Other { what: &'static str, detail: String },
}

impl KerberosError {
    /// Whether the KDC rejected the password: the lockout guard counts these like NTLM
    /// rejections, since each one is a failed logon on the account.
    pub fn is_rejected_password(&self) -> bool {
        matches!(self, KerberosError::WrongPassword { .. })
    }

    pub fn is_clock_skew(&self) -> bool {
        matches!(self, KerberosError::ClockSkew { .. })
    }
}

/// Where the credentials came from (the console and the JSON say which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The user's ticket cache, after `kinit`.
    TicketCache,
    /// The password, into a private in-memory cache.
    Password,
}

/// Kerberos initiator credentials for one scan. Dropping them destroys a password-derived
/// ticket cache (MIT's `MEMORY:` cache of the credential).
#[derive(Debug)]
pub struct Credentials {
    cred: Cred,
    principal: String,
    realm: String,
    source: Source,
    /// A copy's own cache ([`Self::for_client`]), destroyed after `cred` is released (fields
    /// drop in order).
    own_cache: Option<crate::kerberos_cache::PrivateCache>,
}

/// The wanted client principal, parsed from `--user`: `user@realm`, `DOMAIN\user` or `user`.
/// A NetBIOS domain is not a realm, so the last two take the configured default realm.
fn client_name(user: &str) -> Result<Name, KerberosError> {
    let principal = match user.split_once('@') {
        Some((name, realm)) => format!("{name}@{}", realm.to_ascii_uppercase()),
        None => user
            .rsplit_once('\\')
            .map_or(user, |(_, name)| name)
            .to_string(),
    };
    let name = Name::new(principal.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).map_err(|e| {
        KerberosError::Other {
            what: "bad user name",
            detail: e.to_string(),
        }
    })?;
    // Canonicalising adds the default realm, and fails when there is none.
    name.canonicalize(Some(GSS_MECH_KRB5)).map_err(|e| {
        if minor(&e) == code::CONFIG_NODEFREALM {
            KerberosError::NoRealm {
                user: user.to_string(),
                config: config_path(),
            }
        } else {
            KerberosError::Other {
                what: "bad user name",
                detail: e.to_string(),
            }
        }
    })
}

fn krb5_mechs() -> Result<OidSet, KerberosError> {
    let mut set = OidSet::new();
    set.add(GSS_MECH_KRB5).map_err(|e| other("GSSAPI", &e))?;
    Ok(set)
}

fn other(what: &'static str, e: &GssError) -> KerberosError {
    KerberosError::Other {
        what,
        detail: e.to_string(),
    }
}

/// The library's minor status as the signed com_err code.
fn minor(e: &GssError) -> i32 {
    e.minor as i32
}

/// Whether a failed call's routine error is GSS_S_CREDENTIALS_EXPIRED (the major status holds
/// one routine error code in bits 16-23, not a set of flags).
fn is_expired(e: &GssError) -> bool {
    const ROUTINE_ERROR_MASK: u32 = 0x00ff_0000;
    e.major.bits() & ROUTINE_ERROR_MASK == MajorFlags::GSS_S_CREDENTIALS_EXPIRED.bits()
        || minor(e) == code::TKT_EXPIRED
}

/// The configuration libkrb5 reads (for messages; the library reads it itself).
fn config_path() -> String {
    std::env::var("KRB5_CONFIG").unwrap_or_else(|_| "/etc/krb5.conf".into())
}

/// The ticket cache libkrb5 uses by default (for messages).
fn ccache_name() -> String {
    std::env::var("KRB5CCNAME").unwrap_or_else(|_| "the default ticket cache".into())
}

fn realm_of(principal: &str) -> &str {
    principal.rsplit_once('@').map_or("", |(_, r)| r)
}

fn user_of(principal: &str) -> &str {
    principal.rsplit_once('@').map_or(principal, |(u, _)| u)
}

/// Maps a failed AS exchange (getting a TGT) for `principal` to plain words.
fn as_error(e: &GssError, principal: &str) -> KerberosError {
    let realm = realm_of(principal).to_string();
    let principal = principal.to_string();
    match minor(e) {
        code::PREAUTH_FAILED | code::BAD_INTEGRITY | code::PREAUTH_FAILED_GENERIC => {
            KerberosError::WrongPassword { principal }
        }
        code::C_PRINCIPAL_UNKNOWN => KerberosError::UnknownUser { principal },
        code::KEY_EXP => KerberosError::PasswordExpired { principal },
        code::CLIENT_REVOKED => KerberosError::AccountRevoked { principal },
        code::SKEW => KerberosError::ClockSkew { realm },
        code::KDC_UNREACH | code::REALM_UNKNOWN | code::REALM_CANT_RESOLVE => {
            KerberosError::KdcUnreachable {
                realm,
                config: config_path(),
            }
        }
        _ => other("getting a ticket-granting ticket", e),
    }
}

impl Credentials {
    /// Credentials for `user` (as `--user` gives it): the ticket cache when it has a usable
    /// TGT for that account's realm, else the password, else an error saying both are missing.
    /// Blocking (libkrb5 talks to the KDC synchronously): call it from a blocking thread.
    pub fn acquire(
        user: &str,
        password: Option<&SecretString>,
    ) -> Result<Credentials, KerberosError> {
        let wanted = client_name(user)?.to_string();
        let realm = realm_of(&wanted).to_string();
        let mechs = krb5_mechs()?;
        // 1. The ticket cache, if it holds this account's TGT with enough life left.
        // MIT hands out a cache whose TGT has expired, then refuses to describe it
        // (GSS_S_CREDENTIALS_EXPIRED, without the principal): "expired", not "no ticket".
        let mut expired = None;
        let mut cached = None;
        if let Ok(c) = Cred::acquire(None, None, CredUsage::Initiate, Some(&mechs)) {
            match c.info() {
                Ok(info) => cached = Some((c, info.name.to_string(), info.lifetime)),
                Err(e) if is_expired(&e) => expired = Some(wanted.clone()),
                Err(_) => {}
            }
        }
        if let Some((cred, principal, life)) = cached {
            let same_account = principal.eq_ignore_ascii_case(&wanted)
                || (user_of(&principal).eq_ignore_ascii_case(user_of(&wanted))
                    && realm_of(&principal) == realm);
            if same_account && life >= MIN_TICKET_LIFE {
                return Ok(Credentials {
                    cred,
                    principal,
                    realm,
                    source: Source::TicketCache,
                    own_cache: None,
                });
            }
            if same_account {
                expired = Some(principal);
            }
        }
        // 2. The password, into the credential's own in-memory cache.
        let Some(password) = password else {
            return Err(match expired {
                Some(principal) => KerberosError::TicketExpired {
                    principal,
                    ccache: ccache_name(),
                },
                None => KerberosError::NoTicketNoPassword {
                    principal: wanted,
                    realm,
                    ccache: ccache_name(),
                },
            });
        };
        // `DOMAIN\user` takes the default realm, which a stock krb5.conf sets to someone
        // else's (Debian's names ATHENA.MIT.EDU): the password goes to a KDC only when the
        // realm is that domain's.
        if let Some((domain, name)) = user.split_once('\\') {
            let first_label = realm.split('.').next().unwrap_or_default();
            if !first_label.eq_ignore_ascii_case(domain) {
                return Err(KerberosError::RealmNotDomain {
                    user: user.to_string(),
                    name: name.to_string(),
                    domain: domain.to_string(),
                    realm,
                    config: config_path(),
                });
            }
        }
        let name = client_name(user)?;
        let cred = Cred::acquire_with_password(
            Some(&name),
            password.expose_secret(),
            None,
            CredUsage::Initiate,
            Some(&mechs),
        )
        .map_err(|e| as_error(&e, &wanted))?;
        Ok(Credentials {
            cred,
            principal: wanted,
            realm,
            source: Source::Password,
            own_cache: None,
        })
    }

    /// The same account's credentials in a private in-memory cache of their own, for one
    /// WinRM client: its service tickets go there, so that looking one up never walks the
    /// whole scan's tickets (`kerberos_cache`). No KDC is asked.
    pub fn for_client(&self) -> Result<Credentials, KerberosError> {
        let (cred, cache) = crate::kerberos_cache::copy_to_private_cache(&self.cred)
            .map_err(|e| other("copying the ticket-granting ticket", &e))?;
        Ok(Credentials {
            cred,
            principal: self.principal.clone(),
            realm: self.realm.clone(),
            source: self.source,
            own_cache: Some(cache),
        })
    }

    /// Whether these are a client's copy ([`Self::for_client`]).
    pub fn is_copy(&self) -> bool {
        self.own_cache.is_some()
    }

    /// `user@REALM`.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn source(&self) -> Source {
        self.source
    }

    /// The GSSAPI credential, for the transport (`cross_krb5::Cred::from`).
    pub fn gss_cred(&self) -> &Cred {
        &self.cred
    }

    /// The first token of a context with `HTTP/<fqdn>` (mutual authentication, sealing):
    /// gets the service ticket from the KDC, so it is also the pre-flight check of a server's
    /// SPN. Over HTTPS `channel_bindings` is the connection's RFC 5929 application data
    /// ([`eems_core::channel_binding`]), which the AP-REQ then carries. Blocking, like
    /// [`Self::acquire`].
    pub fn initial_token(
        &self,
        fqdn: &str,
        channel_bindings: Option<&[u8]>,
    ) -> Result<(ClientCtx, Vec<u8>), KerberosError> {
        let spn = format!("HTTP/{fqdn}@{}", self.realm);
        let target = Name::new(spn.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL))
            .map_err(|e| other("bad service principal", &e))?;
        let mut ctx = ClientCtx::new(
            Some(self.cred.clone()),
            target,
            CtxFlags::GSS_C_MUTUAL_FLAG
                | CtxFlags::GSS_C_CONF_FLAG
                | CtxFlags::GSS_C_INTEG_FLAG
                | CtxFlags::GSS_C_SEQUENCE_FLAG,
            Some(GSS_MECH_KRB5),
        );
        let token = ctx
            .step(None, channel_bindings)
            .map_err(|e| self.tgs_error(&e, &spn))?
            .map(|t| t.to_vec())
            .ok_or_else(|| KerberosError::Other {
                what: "starting a context",
                detail: format!("no token for {spn}"),
            })?;
        Ok((ctx, token))
    }

    /// Maps a failed TGS exchange (getting a service ticket for `spn`) to plain words.
    fn tgs_error(&self, e: &GssError, spn: &str) -> KerberosError {
        let realm = self.realm.clone();
        match minor(e) {
            code::S_PRINCIPAL_UNKNOWN => KerberosError::UnknownSpn {
                spn: spn.to_string(),
            },
            code::TKT_EXPIRED => KerberosError::TicketExpired {
                principal: self.principal.clone(),
                ccache: ccache_name(),
            },
            // A server whose clock is behind the KDC's sees a ticket not yet valid.
            code::SKEW | code::TKT_NYV => KerberosError::ClockSkew { realm },
            code::KDC_UNREACH | code::REALM_UNKNOWN | code::REALM_CANT_RESOLVE => {
                KerberosError::KdcUnreachable {
                    realm,
                    config: config_path(),
                }
            }
            // A password-derived credential gets its TGT lazily on some libraries: the AS
            // exchange's failures can surface here.
            code::PREAUTH_FAILED
            | code::BAD_INTEGRITY
            | code::PREAUTH_FAILED_GENERIC
            | code::C_PRINCIPAL_UNKNOWN
            | code::KEY_EXP
            | code::CLIENT_REVOKED => as_error(e, &self.principal),
            code::FCC_NOFILE | code::CC_NOTFOUND => KerberosError::NoTicketNoPassword {
                principal: self.principal.clone(),
                realm,
                ccache: ccache_name(),
            },
            _ if is_expired(e) => KerberosError::TicketExpired {
                principal: self.principal.clone(),
                ccache: ccache_name(),
            },
            _ => other("getting a service ticket", e),
        }
    }
}

/// The scan's Kerberos credentials (got on first use, on a blocking thread, once) and this
/// server's FQDN: a missing FQDN, a KDC that cannot be reached, a clock skew or a wrong
/// password are named here in plain words instead of surfacing as a refused HTTP request
/// ([`service_ticket`] does the same for an unknown SPN).
pub(crate) async fn preflight(
    cfg: &crate::transport::TransportConfig,
    target: &crate::transport::Target,
) -> Result<(String, Arc<Credentials>), (FailureKind, String)> {
    let fqdn = spn_host(target).map_err(|e| (FailureKind::Other, e))?;
    let creds = crate::kerberos_scan::credentials_for(cfg, &fqdn)
        .await
        .ok_or_else(|| {
            (
                FailureKind::Other,
                "Kerberos: no credentials for this server's realm".to_string(),
            )
        })?
        .map_err(|e| kerberos_error(&e))?;
    Ok((fqdn, creds))
}

/// Gets the service ticket of `fqdn` into `creds` (the client's, [`Credentials::for_client`])
/// on a blocking thread, naming a failure in plain words; winrm-rs's own context then finds it
/// there and asks the KDC nothing more.
pub(crate) async fn service_ticket(
    creds: &Arc<Credentials>,
    fqdn: &str,
) -> Result<(), KerberosError> {
    let (c, f) = (creds.clone(), fqdn.to_string());
    tokio::task::spawn_blocking(move || c.initial_token(&f, None).map(|_| ()))
        .await
        .map_err(|e| KerberosError::Other {
            what: "getting a service ticket",
            detail: e.to_string(),
        })?
}

/// A Kerberos failure as a probe's failure: a refused password counts for the lockout guard.
pub(crate) fn kerberos_error(e: &KerberosError) -> (FailureKind, String) {
    let kind = if e.is_rejected_password() {
        FailureKind::Auth
    } else {
        FailureKind::Other
    };
    (kind, e.to_string())
}

/// The FQDN a Kerberos connection to `target` names (SPN `HTTP/<fqdn>`, HTTP `Host`), or why
/// there is none that works.
pub(crate) fn spn_host(target: &crate::transport::Target) -> Result<String, String> {
    let Some(fqdn) = target.fqdn.clone() else {
        return Err(format!(
            "Kerberos needs the server's FQDN (the SPN is HTTP/<fqdn>) and {} has none: add \
             an fqdn column to the inventory, or list the server by its DNS name",
            target.name
        ));
    };
    if !target.host.eq_ignore_ascii_case(&fqdn) && target.host.parse::<std::net::IpAddr>().is_err()
    {
        return Err(format!(
            "with Kerberos the address column must be an IP address (or empty, to connect \
             to the FQDN); {} is a DNS name",
            target.host
        ));
    }
    Ok(fqdn)
}

#[cfg(test)]
mod tests {
    //! Against the lab's real MIT KDC. libkrb5 reads KRB5_CONFIG and KRB5CCNAME from the
    //! process environment, so each scenario runs in a child copy of this test binary that
    //! gets them from the start (`testkit::run_in_child`); the KDC stays in the parent.
    use super::*;
    use eems_lab::kdc::{Realm, RealmSpec};
    use eems_lab::testkit::{PASSWORD, demo_fleet, in_child, run_in_child};
    use std::ffi::OsString;

    const THIS_TEST: &str = "kerberos::tests::credentials_from_the_cache_or_the_password_and_each_failure_in_plain_words";
    const SCENARIO: &str = "EEMS_TEST_KRB_SCENARIO";
    const KEYTAB: &str = "EEMS_TEST_KRB_KEYTAB";
    const FQDN: &str = "EEMS_TEST_KRB_FQDN";
    const USER: &str = r"LAB\administrator";

    fn var(name: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
    }

    /// The server side of one handshake, with the lab's acceptor and the realm's keytab, the
    /// ticket bound to a TLS channel as over HTTPS.
    fn accepted_by_the_lab(creds: &Credentials) {
        let fqdn = var(FQDN);
        let spn = format!("HTTP/{fqdn}@{}", creds.realm());
        let acceptor =
            eems_lab::kerberos::Acceptor::from_keytab(std::path::Path::new(&var(KEYTAB)), &spn)
                .unwrap();
        let bindings = b"tls-server-end-point:\x01\x02\x03";
        let (mut client, token) = creds.initial_token(&fqdn, Some(bindings)).unwrap();
        let mut server = acceptor.context();
        let reply = server
            .step(&token, Some(bindings))
            .unwrap()
            .expect("an AP-REP");
        assert!(client.step(Some(&reply), None).unwrap().is_none());
        assert!(server.channel_bound());
        assert_eq!(
            server.client_principal().as_deref(),
            Some(creds.principal())
        );
    }

    fn no_secret_in(e: &KerberosError) -> String {
        let text = e.to_string();
        assert!(!text.contains(PASSWORD), "password in {text}");
        text
    }

    /// The child's half: one scenario.
    fn scenario(name: &str) {
        let password = SecretString::from(PASSWORD);
        let wrong = SecretString::from("not-the-password");
        let fqdn = var(FQDN);
        match name {
            "no-ticket-no-password" => {
                let e = Credentials::acquire(USER, None).unwrap_err();
                assert!(
                    matches!(&e, KerberosError::NoTicketNoPassword { realm, .. } if realm == "LAB.LOCAL"),
                    "{e}"
                );
                assert!(no_secret_in(&e).contains("kinit administrator@LAB.LOCAL"));
            }
            "password" => {
                let creds = Credentials::acquire(USER, Some(&password)).unwrap();
                assert_eq!(creds.source(), Source::Password);
                assert_eq!(creds.principal(), "administrator@LAB.LOCAL");
                accepted_by_the_lab(&creds);
                // A client's copy in its own cache works the same, asking the KDC only for
                // the service ticket (the TGT came along).
                let copy = creds.for_client().unwrap();
                assert!(copy.is_copy() && !creds.is_copy());
                accepted_by_the_lab(&copy);
                // The private cache lives in memory only: nothing appeared where the
                // default cache would be.
                let cc = var("KRB5CCNAME");
                let path = cc.trim_start_matches("FILE:");
                assert!(!std::path::Path::new(path).exists(), "{path} written");
            }
            "wrong-password" => {
                let e = Credentials::acquire(USER, Some(&wrong)).unwrap_err();
                assert!(e.is_rejected_password(), "{e}");
                no_secret_in(&e);
            }
            "realm-not-domain" => {
                // LAB.LOCAL is the default realm; CONTOSO is another domain.
                let e =
                    Credentials::acquire(r"CONTOSO\administrator", Some(&password)).unwrap_err();
                assert!(
                    matches!(&e, KerberosError::RealmNotDomain { realm, domain, .. } if realm == "LAB.LOCAL" && domain == "CONTOSO"),
                    "{e}"
                );
                assert!(no_secret_in(&e).contains("administrator@<the domain's DNS name>"));
            }
            "unknown-user" => {
                let e = Credentials::acquire("nobody@lab.local", Some(&password)).unwrap_err();
                assert!(
                    matches!(&e, KerberosError::UnknownUser { principal } if principal == "nobody@LAB.LOCAL"),
                    "{e}"
                );
                assert!(!e.is_rejected_password());
            }
            "unknown-spn" => {
                let creds = Credentials::acquire(USER, Some(&password)).unwrap();
                let e = creds
                    .initial_token("nosuchhost.lab.local", None)
                    .unwrap_err();
                assert!(
                    matches!(&e, KerberosError::UnknownSpn { spn } if spn == "HTTP/nosuchhost.lab.local@LAB.LOCAL"),
                    "{e}"
                );
                // The known one works with the same credentials.
                creds.initial_token(&fqdn, None).unwrap();
            }
            "cache" => {
                // kinit'ed by the parent: no password needed.
                let creds = Credentials::acquire("administrator@lab.local", None).unwrap();
                assert_eq!(creds.source(), Source::TicketCache);
                accepted_by_the_lab(&creds);
            }
            "cache-of-another-account" => {
                // The cache holds administrator's TGT; the scan asks for someone else.
                let e = Credentials::acquire("svc-scan@LAB.LOCAL", None).unwrap_err();
                assert!(matches!(e, KerberosError::NoTicketNoPassword { .. }), "{e}");
            }
            "short-ticket" => {
                let e = Credentials::acquire(USER, None).unwrap_err();
                assert!(matches!(e, KerberosError::TicketExpired { .. }), "{e}");
                // With the password, a fresh private TGT instead.
                let creds = Credentials::acquire(USER, Some(&password)).unwrap();
                assert_eq!(creds.source(), Source::Password);
            }
            "expired" => {
                let e = Credentials::acquire(USER, None).unwrap_err();
                assert!(matches!(e, KerberosError::TicketExpired { .. }), "{e}");
            }
            "kdc-down" => {
                let e = Credentials::acquire(USER, Some(&password)).unwrap_err();
                assert!(
                    matches!(&e, KerberosError::KdcUnreachable { realm, .. } if realm == "LAB.LOCAL"),
                    "{e}"
                );
            }
            other => panic!("unknown scenario {other}"),
        }
    }

    #[tokio::test]
    #[cfg_attr(
        eems_no_kdc,
        ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
    )]
    async fn credentials_from_the_cache_or_the_password_and_each_failure_in_plain_words() {
        if in_child() {
            scenario(&var(SCENARIO));
            return;
        }
        let mut realm = Realm::start(RealmSpec::for_fleet(&demo_fleet(63)).unwrap())
            .await
            .unwrap();
        let fqdn = realm.spec().hosts[0].clone();
        let cache = realm.dir().join("user.ccache");
        let run = |name: &str, realm: &Realm| {
            let mut env = realm.client_env();
            env.push(("KRB5CCNAME", format!("FILE:{}", cache.display()).into()));
            env.push((KEYTAB, realm.keytab().into_os_string()));
            env.push((FQDN, OsString::from(&fqdn)));
            env.push((SCENARIO, OsString::from(name)));
            // Blocking is fine here: the KDC is another process, nothing else runs on this
            // runtime meanwhile.
            let out = run_in_child(THIS_TEST, &env);
            assert!(out.contains("1 passed"), "{name}: {out}");
        };
        for name in [
            "no-ticket-no-password",
            "password",
            "wrong-password",
            "unknown-user",
            "unknown-spn",
        ] {
            run(name, &realm);
        }
        // A NetBIOS domain that is not the default realm's: refused before the KDC is asked.
        let as_reqs = |log: &str| log.lines().filter(|l| l.contains("AS_REQ")).count();
        let before = as_reqs(&realm.kdc_log());
        run("realm-not-domain", &realm);
        assert_eq!(as_reqs(&realm.kdc_log()), before, "the KDC was asked");
        realm
            .kinit(&realm.user_principal(), PASSWORD, &cache, None)
            .await
            .unwrap();
        run("cache", &realm);
        run("cache-of-another-account", &realm);
        realm
            .kinit(&realm.user_principal(), PASSWORD, &cache, Some("2m"))
            .await
            .unwrap();
        run("short-ticket", &realm);
        realm
            .kinit(&realm.user_principal(), PASSWORD, &cache, Some("2s"))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        run("expired", &realm);
        realm.stop_kdc().await;
        run("kdc-down", &realm);
    }
}
