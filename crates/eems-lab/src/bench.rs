//! `eems-lab bench`: scan a generated lab fleet served by a separate process and measure
//! what it cost, against the floor the network and the servers set.
//!
//! The lab, the scanner and the peer (pywinrm) each run as their own process, so each
//! one's CPU time and peak memory come from the kernel (`wait4` rusage), not from
//! estimates. The floor is `ceil(N_in_scope / C) * (R * L + E)`: waves of C servers, each
//! costing R HTTP round trips of latency L plus the remote execution time E, with R
//! counted from the lab's request log.
//!
//! The org query is the scanner's default where it can be: with Kerberos over plain HTTP,
//! Remote PowerShell to the `/PowerShell` endpoint `serve` starts beside the realm. NTLM
//! cannot authenticate there (Exchange's `/PowerShell` is Kerberos only) and the lab's
//! endpoint is HTTP only, so the other runs take the org facts from the file
//! `eems-scan org-command` would write (`--org-data`): no org query crosses the network.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::Serialize;

use crate::fleet::{self, Fleet};
use crate::generate::{GenOptions, generate};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub servers: usize,
    pub concurrency: usize,
    pub latency_ms: u64,
    pub exec_ms: u64,
    pub https: bool,
    /// The scan's `--evidence-days`; 0 scans with `--no-evidence` (host probe v1 alone).
    pub evidence_days: u32,
    /// Kerberos from a throwaway realm the lab process starts, NTLM blocked, instead of NTLM.
    pub kerberos: bool,
    pub seed: u64,
    pub work_dir: PathBuf,
    pub lab_bin: PathBuf,
    pub scan_bin: PathBuf,
    /// Also run the pywinrm fan-out (benches/peer_pywinrm.py) with this Python.
    pub peer_python: Option<PathBuf>,
    pub peer_script: PathBuf,
}

/// Cost of one process, from the kernel.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcessCost {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub peak_rss_mib: f64,
    pub exit_code: i32,
}

/// The benchmark's findings.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub servers: usize,
    pub in_scope: usize,
    pub concurrency: usize,
    pub latency_ms: u64,
    pub exec_ms: u64,
    pub transport: &'static str,
    /// The scan's `--evidence-days`; 0: `--no-evidence`.
    pub evidence_days: u32,
    /// HTTP requests per server (median, handshake included, extra Receive polls not).
    pub requests_per_server: f64,
    pub max_requests_per_server: usize,
    /// TCP connections that carried a request, per server (median).
    pub connections_per_server: f64,
    pub max_connections_per_server: usize,
    /// Authentications per server (median): NTLM handshakes, counted as CHALLENGEs sent.
    /// Each is a logon a domain controller checks.
    pub authentications_per_server: f64,
    pub max_authentications_per_server: usize,
    /// Servers that cost more than one authentication.
    pub servers_reauthenticated: usize,
    /// Where the org facts came from: [`ORG_VIA_PSRP`] or [`ORG_VIA_FILE`].
    pub org_path: &'static str,
    /// The org query's cost on `/PowerShell`, from the lab log (0 with `--org-data`).
    pub org: OrgCost,
    pub floor_s: f64,
    /// The floor plus the org query, which must finish before host probes can start (they
    /// carry each server's proxy): its `org.requests * L` serially. The lab's `/PowerShell`
    /// adds L to each response like every other endpoint and no execution time (the
    /// cmdlets answer from the fleet file); with `--org-data` nothing is added.
    pub floor_with_org_s: f64,
    pub scan: ProcessCost,
    pub wall_over_floor: f64,
    pub wall_over_floor_with_org: f64,
    pub scanner_cpu_ms_per_server: f64,
    pub lab: ProcessCost,
    pub peer: Option<ProcessCost>,
    pub peer_cpu_ms_per_server: Option<f64>,
}

/// [`BenchReport::org_path`] of a run whose org query went over Remote PowerShell.
pub const ORG_VIA_PSRP: &str = "Remote PowerShell (/PowerShell, Kerberos)";
/// [`BenchReport::org_path`] of a run that read the org facts from a file.
pub const ORG_VIA_FILE: &str = "--org-data file (no org query)";

/// What the org query cost on `/PowerShell`, from the lab's log.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct OrgCost {
    pub requests: usize,
    pub connections: usize,
    /// Kerberos AP-REQs accepted.
    pub authentications: usize,
    /// Cmdlet invocations (bare commands; script text would have failed the run).
    pub cmdlets: usize,
}

/// Runs the benchmark. Every wait is bounded.
pub fn run(o: &BenchOptions) -> anyhow::Result<BenchReport> {
    // One descriptor per connection: a big fleet passes the usual soft limit of 1024 long
    // before the hard one. Best effort: without it a small scan still works.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
    std::fs::create_dir_all(&o.work_dir)
        .with_context(|| format!("{}: cannot create", o.work_dir.display()))?;
    for bin in [&o.lab_bin, &o.scan_bin] {
        if !bin.exists() {
            bail!(
                "{} not found: build both binaries first (cargo build --release --ignore-rust-version --bins)",
                bin.display()
            );
        }
    }
    if o.kerberos && o.peer_python.is_some() {
        bail!("--peer runs pywinrm with NTLM: it cannot be measured against a Kerberos-only lab");
    }
    let mut fleet = generate(&GenOptions {
        servers: o.servers,
        seed: o.seed,
        latency_ms: o.latency_ms,
        exec_ms: o.exec_ms,
        faults: false,
    });
    if o.kerberos {
        fleet.listener.kerberos = true;
        fleet.listener.ntlm = false;
    }
    let fleet_path = o.work_dir.join("fleet.toml");
    std::fs::write(&fleet_path, toml::to_string(&fleet)?)?;
    let inventory = o.work_dir.join("inventory.csv");
    std::fs::write(&inventory, fleet.inventory_csv(o.https, |_| true))?;
    let log_path = o.work_dir.join("lab.jsonl");
    let ca_path = o.work_dir.join("ca.pem");
    let krb5_conf = o.work_dir.join("krb5.conf");

    let mut serve = Command::new(&o.lab_bin);
    serve.arg("serve");
    if o.kerberos {
        serve.arg("--krb5-conf-out").arg(&krb5_conf);
    }
    let mut lab = serve
        .arg("--fleet")
        .arg(&fleet_path)
        .arg("--ca-out")
        .arg(&ca_path)
        .arg("--log")
        .arg(&log_path)
        .args(["--listen", if o.https { "https" } else { "http" }])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", o.lab_bin.display()))?;
    let lab_started = Instant::now();
    let result =
        wait_ready(&mut lab).and_then(|ps_port| measure(o, &fleet, &inventory, &ca_path, ps_port));
    // SIGTERM: the lab shuts down cleanly and flushes its log.
    unsafe {
        libc::kill(lab.id() as i32, libc::SIGTERM);
    }
    let lab_cost = wait_cost(&lab, lab_started, Duration::from_secs(60))?;
    let (scan, in_scope, peer, scan_end_ms, org_path) = result?;
    let cost = per_server_cost(&log_path, scan_end_ms)?;
    if org_path == ORG_VIA_PSRP && cost.org.cmdlets == 0 {
        bail!(
            "the scan ran no cmdlet on /PowerShell: its org query did not take the path measured"
        );
    }
    let median = cost.requests.median;

    let waves = in_scope.div_ceil(o.concurrency.max(1)) as f64;
    let one_server_s = (median * o.latency_ms as f64 + o.exec_ms as f64) / 1000.0;
    let floor_s = waves * one_server_s;
    let floor_with_org_s = floor_s + (cost.org.requests as u64 * o.latency_ms) as f64 / 1000.0;
    let ratio = |floor: f64| {
        if floor > 0.0 {
            scan.wall_s / floor
        } else {
            f64::NAN
        }
    };
    Ok(BenchReport {
        servers: o.servers,
        in_scope,
        concurrency: o.concurrency,
        latency_ms: o.latency_ms,
        exec_ms: o.exec_ms,
        transport: match (o.kerberos, o.https) {
            (false, true) => "NTLM/HTTPS",
            (false, false) => "NTLM/HTTP sealed",
            (true, true) => "Kerberos/HTTPS",
            (true, false) => "Kerberos/HTTP sealed",
        },
        evidence_days: o.evidence_days,
        requests_per_server: median,
        max_requests_per_server: cost.requests.max,
        connections_per_server: cost.connections.median,
        max_connections_per_server: cost.connections.max,
        authentications_per_server: cost.authentications.median,
        max_authentications_per_server: cost.authentications.max,
        servers_reauthenticated: cost.reauthenticated,
        org_path,
        org: cost.org,
        floor_s,
        floor_with_org_s,
        scan,
        wall_over_floor: ratio(floor_s),
        wall_over_floor_with_org: ratio(floor_with_org_s),
        scanner_cpu_ms_per_server: scan.cpu_s * 1000.0 / in_scope.max(1) as f64,
        lab: lab_cost,
        peer,
        peer_cpu_ms_per_server: peer.map(|p| p.cpu_s * 1000.0 / in_scope.max(1) as f64),
    })
}

/// The scan's cost, servers in scope, the peer's cost, when the scan ended (ms since the
/// epoch, to keep the peer's requests out of the scan's count) and its org path.
type Measured = (ProcessCost, usize, Option<ProcessCost>, u64, &'static str);

fn measure(
    o: &BenchOptions,
    served: &Fleet,
    inventory: &Path,
    ca: &Path,
    ps_port: Option<u16>,
) -> anyhow::Result<Measured> {
    let json = o.work_dir.join("scan.json");
    let user = format!("{}\\{}", fleet::DEFAULT_DOMAIN, fleet::DEFAULT_USER);
    let mut cmd = Command::new(&o.scan_bin);
    cmd.arg("scan")
        .arg("--inventory")
        .arg(inventory)
        .args(["--user", &user, "--quiet", "--no-progress"])
        .args(["--concurrency", &o.concurrency.to_string()])
        .arg("--json")
        .arg(&json)
        .env("EEMS_PASSWORD", fleet::DEFAULT_PASSWORD)
        // The measured scan is the documented one: no saved profile of the user's applies.
        .env("EEMS_NO_PROFILE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if o.https {
        cmd.arg("--https").arg("--ca-cert").arg(ca);
    }
    let org_path = match (o.kerberos && !o.https, ps_port) {
        // The scanner's default org query (no --org-via): the lab's /PowerShell is on this
        // port of every host, not on 80.
        (true, Some(port)) => {
            cmd.args(["--org-port", &port.to_string()]);
            ORG_VIA_PSRP
        }
        (true, None) => bail!("the lab serves Kerberos but printed no /PowerShell port"),
        (false, _) => {
            let org_data = o.work_dir.join("org-data.json");
            std::fs::write(&org_data, crate::powershell::org_data_json(served)?)
                .with_context(|| format!("{}: cannot write the org data", org_data.display()))?;
            cmd.arg("--org-data").arg(&org_data);
            ORG_VIA_FILE
        }
    };
    match o.evidence_days {
        0 => cmd.arg("--no-evidence"),
        days => cmd.args(["--evidence-days", &days.to_string()]),
    };
    if o.kerberos {
        // The lab's realm, and no ticket cache of the user's: the scan gets its own ticket
        // from the password, as an unattended scan does.
        cmd.args(["--auth", "kerberos"])
            .env("KRB5_CONFIG", o.work_dir.join("krb5.conf"))
            .env(
                "KRB5CCNAME",
                format!("FILE:{}", o.work_dir.join("no-such.ccache").display()),
            );
    }
    let started = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", o.scan_bin.display()))?;
    let scan = wait_cost(&child, started, Duration::from_secs(1800))?;
    let scan_end_ms = epoch_ms();
    if !matches!(scan.exit_code, 0 | 1 | 3) {
        bail!("the scan failed with exit status {}", scan.exit_code);
    }
    let report = eems_core::report::ScanReport::load(&json).map_err(|e| anyhow!(e))?;
    if report.summary.error > 0 {
        bail!(
            "{} servers could not be scanned: the measurement is void",
            report.summary.error
        );
    }
    if let Some(e) = &report.organization.error {
        bail!("the scan got no org facts ({org_path}): {e}; the measurement is void");
    }
    let in_scope = report.summary.total - report.summary.skipped;

    let peer = match &o.peer_python {
        None => None,
        Some(py) => {
            let script = o.work_dir.join("host-probe.ps1");
            let probe = eems_core::probe::host_script(&eems_core::probe::HostProbeParams {
                ocs_url: eems_core::probe::DEFAULT_OCS_URL,
                proxy: None,
                ocs_timeout_secs: 20,
            })?;
            std::fs::write(&script, probe)?;
            // The peer probes exactly the servers the scanner probed.
            let peer_inventory = o.work_dir.join("peer-inventory.csv");
            let probed: std::collections::HashSet<&str> = report
                .servers
                .iter()
                .filter(|r| r.status != eems_core::analysis::Status::Skipped)
                .map(|r| r.server.as_str())
                .collect();
            std::fs::write(
                &peer_inventory,
                served.inventory_csv(o.https, |s| probed.contains(s.name.as_str())),
            )?;
            let started = Instant::now();
            let child = Command::new(py)
                .arg(&o.peer_script)
                .arg("--inventory")
                .arg(&peer_inventory)
                .args(["--concurrency", &o.concurrency.to_string()])
                .arg("--script")
                .arg(&script)
                .args(["--scheme", if o.https { "https" } else { "http" }])
                .env("EEMS_PASSWORD", fleet::DEFAULT_PASSWORD)
                .env("EEMS_USER", &user)
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("cannot start {}", py.display()))?;
            let cost = wait_cost(&child, started, Duration::from_secs(3600))?;
            if cost.exit_code != 0 {
                bail!("the pywinrm peer failed (exit {})", cost.exit_code);
            }
            Some(cost)
        }
    };
    Ok((scan, in_scope, peer, scan_end_ms, org_path))
}

/// Waits for the lab's ready line; returns the `/PowerShell` port it printed, if any.
fn wait_ready(lab: &mut Child) -> anyhow::Result<Option<u16>> {
    let stdout = lab
        .stdout
        .take()
        .ok_or_else(|| anyhow!("lab stdout not captured"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut ps_port = None;
        let ready = lines.by_ref().map_while(Result::ok).any(|l| {
            if let Some(port) = l.strip_prefix(crate::PS_PORT_LINE) {
                ps_port = port.trim().parse::<u16>().ok();
            }
            l.starts_with("eems-lab ready")
        });
        let _ = tx.send(ready.then_some(ps_port));
        // Keep draining so the lab never blocks on a full pipe.
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(Some(ps_port)) => Ok(ps_port),
        Ok(None) => bail!("the lab exited before it was ready"),
        Err(_) => bail!("the lab was not ready within 300 s"),
    }
}

/// Waits for a child (bounded) and returns its kernel-measured cost.
fn wait_cost(child: &Child, started: Instant, limit: Duration) -> anyhow::Result<ProcessCost> {
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            let wall_s = started.elapsed().as_secs_f64();
            let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            let exit_code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
            return Ok(ProcessCost {
                wall_s,
                cpu_s: tv(usage.ru_utime) + tv(usage.ru_stime),
                // Linux reports ru_maxrss in KiB.
                peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
                exit_code,
            });
        }
        if r < 0 {
            bail!("wait4({pid}) failed: {}", std::io::Error::last_os_error());
        }
        if Instant::now() > deadline {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            bail!("process {pid} did not finish within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Median and maximum over the servers.
#[derive(Debug, Clone, Copy)]
struct Spread {
    median: f64,
    max: usize,
}

impl Spread {
    fn of(mut counts: Vec<usize>) -> Spread {
        counts.sort_unstable();
        Spread {
            median: counts.get(counts.len() / 2).copied().unwrap_or(0) as f64,
            max: counts.last().copied().unwrap_or(0),
        }
    }
}

struct ServerCost {
    requests: Spread,
    connections: Spread,
    authentications: Spread,
    reauthenticated: usize,
    org: OrgCost,
}

/// What each server cost, from the lab log up to `until_ms`: HTTP requests (the handshake
/// and every operation, but Receive polls beyond the first of each command), connections
/// that carried them, and authentications. The org query runs once per scan, on
/// `/PowerShell` (its own listener, its own connection numbers): it is counted apart, not
/// against the server it ran on.
fn per_server_cost(log: &Path, until_ms: u64) -> anyhow::Result<ServerCost> {
    let records: Vec<crate::log::LogRecord> = crate::log::read_jsonl(log)?
        .into_iter()
        .filter(|r| r.ts_ms <= until_ms)
        .collect();
    let audit = crate::log::OrgQueryAudit::of(&records);
    if !audit.is_clean() {
        bail!("the org query left the measured path: {audit}");
    }
    let (org, winrs): (Vec<_>, Vec<_>) = records
        .iter()
        .partition(|r| r.server.ends_with("/PowerShell"));
    let org = OrgCost {
        requests: org.len(),
        // Connection numbers are per /PowerShell host.
        connections: org
            .iter()
            .map(|r| (r.server.as_str(), r.conn))
            .collect::<HashSet<_>>()
            .len(),
        authentications: org.iter().filter(|r| is_authentication(r)).count(),
        cmdlets: audit.cmdlets,
    };
    #[derive(Default)]
    struct Tally {
        requests: usize,
        conns: HashSet<u64>,
        handshakes: usize,
    }
    let mut per_server: HashMap<&str, Tally> = HashMap::new();
    let mut receives: HashMap<(&str, &str), usize> = HashMap::new();
    for r in winrs {
        let shell = r.shell_id.as_deref();
        let action = r.action.as_deref().unwrap_or("");
        if action == "Receive" || action == "Fault:TimedOut" {
            let n = receives
                .entry((r.server.as_str(), shell.unwrap_or_default()))
                .or_insert(0);
            *n += 1;
            if *n > 1 {
                continue;
            }
        }
        let t = per_server.entry(r.server.as_str()).or_default();
        t.requests += 1;
        t.conns.insert(r.conn);
        if is_authentication(r) {
            t.handshakes += 1;
        }
    }
    if per_server.is_empty() {
        bail!("the lab logged no request");
    }
    let tallies: Vec<Tally> = per_server.into_values().collect();
    Ok(ServerCost {
        requests: Spread::of(tallies.iter().map(|t| t.requests).collect()),
        connections: Spread::of(tallies.iter().map(|t| t.conns.len()).collect()),
        authentications: Spread::of(tallies.iter().map(|t| t.handshakes).collect()),
        reauthenticated: tallies.iter().filter(|t| t.handshakes > 1).count(),
        org,
    })
}

/// NTLM: one CHALLENGE per handshake; Kerberos: one AP-REQ accepted, no challenge.
fn is_authentication(r: &crate::log::LogRecord) -> bool {
    r.step == crate::log::STEP_CHALLENGE
        || (r.auth == crate::log::AUTH_KERBEROS && r.step == crate::log::STEP_AUTHENTICATED)
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl BenchReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut t = format!(
            "servers {} (in scope {}), concurrency {}, latency {} ms, exec {} ms, {}, {}\n",
            self.servers,
            self.in_scope,
            self.concurrency,
            self.latency_ms,
            self.exec_ms,
            self.transport,
            match self.evidence_days {
                0 => "--no-evidence".to_string(),
                d => format!("--evidence-days {d}"),
            }
        );
        t.push_str(&format!("org facts            {}\n", self.org_summary()));
        t.push_str(&format!(
            "requests/server      {:.0} (max {})\nconnections/server   {:.0} (max {})\nauthentications/server {:.0} (max {}; {} servers more than one)\nfloor                {:.2} s (with the org query {:.2} s)\nwall                 {:.2} s\nwall/floor           {:.3} (with the org query {:.3})\nscanner CPU/server   {:.2} ms\nscanner peak RSS     {:.1} MiB\nlab CPU              {:.2} s (peak RSS {:.1} MiB)\n",
            self.requests_per_server,
            self.max_requests_per_server,
            self.connections_per_server,
            self.max_connections_per_server,
            self.authentications_per_server,
            self.max_authentications_per_server,
            self.servers_reauthenticated,
            self.floor_s,
            self.floor_with_org_s,
            self.scan.wall_s,
            self.wall_over_floor,
            self.wall_over_floor_with_org,
            self.scanner_cpu_ms_per_server,
            self.scan.peak_rss_mib,
            self.lab.cpu_s,
            self.lab.peak_rss_mib
        ));
        if let (Some(p), Some(cpu)) = (&self.peer, self.peer_cpu_ms_per_server) {
            t.push_str(&format!(
                "pywinrm peer         wall {:.2} s, CPU/server {:.2} ms, peak RSS {:.1} MiB\nratio peer/eems-scan wall {:.1}x, CPU/server {:.1}x\n",
                p.wall_s,
                cpu,
                p.peak_rss_mib,
                p.wall_s / self.scan.wall_s,
                cpu / self.scanner_cpu_ms_per_server
            ));
        }
        t
    }

    /// Where the org facts came from and, for the org query, what it cost.
    pub fn org_summary(&self) -> String {
        if self.org_path == ORG_VIA_PSRP {
            format!(
                "{}: {} requests, {} connection(s), {} authentication(s), {} cmdlets",
                self.org_path,
                self.org.requests,
                self.org.connections,
                self.org.authentications,
                self.org.cmdlets
            )
        } else {
            self.org_path.to_string()
        }
    }

    /// Header of [`BenchReport::row`]: one Markdown table for a sweep.
    pub const ROW_HEADER: &'static str = "| servers | -j | org facts | requests/server (max) | connections/server (max) | authentications/server (max) | wall | wall/floor | wall/(floor + org query) | scanner CPU/server | scanner peak RSS | lab CPU |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";

    /// This run as one row under [`BenchReport::ROW_HEADER`].
    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {:.0} ({}) | {:.0} ({}) | {:.0} ({}) | {:.2} s | {:.3} | {:.3} | {:.2} ms | {:.1} MiB | {:.2} s |\n",
            self.servers,
            self.concurrency,
            self.org_summary(),
            self.requests_per_server,
            self.max_requests_per_server,
            self.connections_per_server,
            self.max_connections_per_server,
            self.authentications_per_server,
            self.max_authentications_per_server,
            self.scan.wall_s,
            self.wall_over_floor,
            self.wall_over_floor_with_org,
            self.scanner_cpu_ms_per_server,
            self.scan.peak_rss_mib,
            self.lab.cpu_s
        )
    }
}
