//! The lab: a simulated Exchange organisation that speaks real WinRM.
//!
//! One process serves every host of a [`fleet::Fleet`], each on its own loopback address,
//! with the wire behaviour of a stock Windows WinRM listener (see
//! `../shared/reference/winrm-on-the-wire.md`):
//!
//! - [`http`]: listeners, per-connection authentication state (NTLM context and sealing keys
//!   belong to the TCP connection), Basic over HTTPS, `AllowUnencrypted=false`, HTTP-level
//!   faults and latency, the request log;
//! - [`ntlm`]: the NTLMv2 acceptor and MS-WSMV message sealing;
//! - `eems_core::sealing`: the MS-WSMV `multipart/encrypted` framing NTLM and Kerberos share;
//! - [`tls`]: a CA and per-host certificates made at start;
//! - [`kdc`]: a throwaway MIT Kerberos realm (a real `krb5kdc`) on loopback;
//! - `kerberos` (feature `kerberos`): the Kerberos/SPNEGO acceptor and Kerberos sealing;
//! - [`wsman`]: WS-Management/WinRS operations and the per-host shell table;
//! - [`powershell`]: what `powershell.exe -EncodedCommand` does with the probe scripts;
//! - [`log`]: the JSON-lines request log tests assert on;
//! - [`org_evidence`]: Feature Flighting and the admin audit log as the org query sees them;
//! - [`generate`]: the fleet generator for scale tests;
//! - [`demo`] and [`bench`]: the demo and the benchmark, which run the real `eems-scan`
//!   binary against a lab;
//! - [`testkit`]: set-ups the test suites share.

pub mod bench;
pub mod demo;
pub mod evidence;
#[cfg(feature = "kerberos")]
pub mod exchange_ps;
pub mod fleet;
pub mod generate;
pub mod http;
pub mod kdc;
#[cfg(feature = "kerberos")]
pub mod kerberos;
pub mod log;
pub mod ntlm;
pub mod org_evidence;
pub mod powershell;
pub mod testkit;
pub mod tls;
pub mod wsman;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The `eems-scan` binary built beside `exe` (the lab's own executable, or a test's).
/// The lab never links the scanner: it runs it, as a user would.
pub fn scanner_beside(exe: &std::path::Path) -> anyhow::Result<PathBuf> {
    let name = format!("eems-scan{}", std::env::consts::EXE_SUFFIX);
    let dir = exe.parent().unwrap_or(std::path::Path::new("."));
    // Test executables live one level down, in deps/.
    let candidates = [dir.join(&name), dir.join("..").join(&name)];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no eems-scan binary here; build the whole workspace first \
                 (cargo build --ignore-rust-version, with --release for a release lab)",
                dir.display()
            )
        })
}

/// What `eems-lab serve` prints on stdout, before its ready line, when it serves Exchange's
/// `/PowerShell` (a fleet with a Kerberos realm), followed by the port: the scanner's
/// `--org-port`. Scripts (and `bench`) read it.
pub const PS_PORT_LINE: &str = "eems-lab /PowerShell port: ";

pub struct LabOptions {
    /// Request log as JSON lines.
    pub log_path: Option<PathBuf>,
    /// Keep every log record in memory for [`Lab::log_records`] (tests); off for big fleets.
    pub keep_log_in_memory: bool,
}

/// A running lab: every listener of the fleet, bound and accepting.
pub struct Lab {
    fleet: fleet::Fleet,
    ca_pem: String,
    log: Arc<log::RequestLog>,
    hosts: Vec<Arc<wsman::HostState>>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Lab {
    /// Makes the PKI, binds every listener, HTTP and HTTPS (the error names the address
    /// that failed) and starts serving.
    pub async fn start(fleet: fleet::Fleet, opts: LabOptions) -> anyhow::Result<Lab> {
        Lab::start_listening(fleet, opts, http::Listen::Both).await
    }

    /// [`Lab::start`] with only the listeners `listen` names. Each listener is a file
    /// descriptor: 10,000 hosts with both would take all 20,000 of a usual hard limit,
    /// leaving none for connections.
    pub async fn start_listening(
        fleet: fleet::Fleet,
        opts: LabOptions,
        listen: http::Listen,
    ) -> anyhow::Result<Lab> {
        Lab::start_inner(fleet, opts, listen, None).await
    }

    /// [`Lab::start_listening`] with Kerberos: every host accepts tickets for its
    /// `HTTP/<fqdn>` with the keys of `realm`'s keytab.
    #[cfg(feature = "kerberos")]
    pub async fn start_with_realm(
        fleet: fleet::Fleet,
        opts: LabOptions,
        listen: http::Listen,
        realm: &kdc::Realm,
    ) -> anyhow::Result<Lab> {
        Lab::start_inner(fleet, opts, listen, Some(realm)).await
    }

    async fn start_inner(
        fleet: fleet::Fleet,
        opts: LabOptions,
        listen: http::Listen,
        #[cfg_attr(not(feature = "kerberos"), allow(unused_variables))] realm: Option<&kdc::Realm>,
    ) -> anyhow::Result<Lab> {
        fleet
            .validate()
            .map_err(|e| anyhow::anyhow!("fleet: {e}"))?;
        // One descriptor per connection: a big fleet passes the usual soft limit of 1024 long
        // before the hard one. Best effort: without it a small scan still works.
        if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
            tracing::warn!("cannot raise the open-file limit: {e}");
        }
        let cbt = ntlm::CbtPolicy::parse(&fleet.listener.cbt_hardening).ok_or_else(|| {
            anyhow::anyhow!(
                "fleet: listener.cbt_hardening {:?} is not None, Relaxed or Strict",
                fleet.listener.cbt_hardening
            )
        })?;
        let log = Arc::new(log::RequestLog::new(
            opts.log_path.as_deref(),
            opts.keep_log_in_memory,
        )?);
        let pki = tls::LabPki::new(&fleet.org.name)?;
        let accounts = Arc::new(fleet.accounts());
        let shared_fleet = Arc::new(fleet.clone());
        let conn_ids = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        let mut hosts = Vec::with_capacity(fleet.servers.len());
        let mut tasks = Vec::new();
        for (index, s) in fleet.servers.iter().enumerate() {
            let fqdn = s.fqdn();
            let dns_domain = fqdn
                .split_once('.')
                .map(|(_, d)| d.to_string())
                .unwrap_or_default();
            let identity = ntlm::ServerIdentity {
                nb_domain: accounts
                    .first()
                    .map(|a| a.domain.to_ascii_uppercase())
                    .unwrap_or_default(),
                nb_computer: s.name.to_ascii_uppercase().chars().take(15).collect(),
                dns_domain,
                dns_computer: fqdn.clone(),
            };
            let state = wsman::HostState::new(shared_fleet.clone(), index);
            #[cfg_attr(not(feature = "kerberos"), allow(unused_mut))]
            let mut ctx = http::HostCtx::new(
                s.clone(),
                fleet.listener.clone(),
                accounts.clone(),
                identity,
                cbt,
                pki.host(&s.name, &fqdn, s.address)?,
                state.clone(),
                log.clone(),
                conn_ids.clone(),
            );
            #[cfg(feature = "kerberos")]
            if let Some(realm) = realm {
                let spn = realm.service_principal(&fqdn);
                ctx.kerberos = Some(
                    kerberos::Acceptor::from_keytab(&realm.host_keytab(&fqdn), &spn)
                        .map_err(|e| anyhow::anyhow!("server {}: {e}", s.name))?,
                );
            }
            match http::start_host(Arc::new(ctx), listen, cancel.clone()).await {
                Ok(t) => tasks.extend(t),
                Err(e) => {
                    // Release what is already bound before reporting.
                    cancel.cancel();
                    for t in tasks {
                        let _ = t.await;
                    }
                    return Err(e);
                }
            }
            hosts.push(state);
        }
        Ok(Lab {
            ca_pem: pki.ca_pem().to_string(),
            fleet,
            log,
            hosts,
            cancel,
            tasks,
        })
    }

    /// Exchange's `/PowerShell` endpoint (HTTP) on every host of this lab but those `down` or
    /// `ps_down`, all on one port (what the scanner's `--org-port` names), its requests in
    /// this lab's log beside the WinRS ones. The port is one free on the first host's address;
    /// another host's address may hold it, so a few ports are tried.
    #[cfg(feature = "kerberos")]
    pub async fn start_exchange_ps(
        &self,
        realm: &kdc::Realm,
    ) -> anyhow::Result<(exchange_ps::ExchangePs, u16)> {
        const PORT_ATTEMPTS: usize = 3;
        let first = self
            .fleet
            .servers
            .iter()
            .find(|s| !s.faults.down && !s.faults.ps_down)
            .ok_or_else(|| anyhow::anyhow!("no lab host serves /PowerShell"))?;
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = std::net::TcpListener::bind((first.address, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| {
                    anyhow::anyhow!("/PowerShell: no free port on {}: {e}", first.address)
                })?
                .port();
            let opts = exchange_ps::Options {
                port,
                no_role: Vec::new(),
                no_audit_role: Vec::new(),
                log: self.log.clone(),
                https: false,
                extended_protection: true,
            };
            match exchange_ps::ExchangePs::start(&self.fleet, realm, opts).await {
                Ok(ps) => return Ok((ps, port)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("/PowerShell did not start")))
    }

    /// What `eems-scan org-command`'s line would write for this organisation, now
    /// (`--org-data`).
    pub fn org_data_json(&self) -> anyhow::Result<String> {
        powershell::org_data_json(&self.fleet)
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The scanner's inventory: `name,address,port,role,site,fqdn`, one row per server with
    /// `in_inventory`, port = its HTTP port.
    pub fn inventory_csv(&self) -> String {
        self.fleet.inventory_csv(false, |s| s.in_inventory)
    }

    pub fn log_records(&self) -> Vec<log::LogRecord> {
        self.log.records()
    }

    pub fn open_shells(&self) -> usize {
        self.hosts.iter().map(|h| h.open_shells()).sum()
    }

    /// Stops accepting, drops every connection and flushes the log.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.log.flush();
    }
}
