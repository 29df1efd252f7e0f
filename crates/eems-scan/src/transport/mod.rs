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

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eems_core::report::Stage;
use winrm_rs::SecretString;

mod classify;
mod client;
mod run;
#[cfg(test)]
mod tests;

pub use classify::classify;
pub use client::ClientCache;
pub use run::run_probe;

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
}

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
