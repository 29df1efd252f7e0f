//! `eems-lab bench`: scan a generated lab fleet served by a separate process and measure
//! what it cost, against the floor the network and the servers set.
//!
//! The lab, the scanner and the peer (pywinrm) each run as their own process, so each
//! one's CPU time and peak memory come from the kernel (`wait4` rusage), not from
//! estimates. The floor is `ceil(N_in_scope / C) * (R * L + E)`: waves of C servers, each
//! costing R HTTP round trips of latency L plus the remote execution time E, with R
//! counted from the lab's request log.

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
    pub floor_s: f64,
    /// The floor plus the org query, which must finish before host probes can start
    /// (it costs one server's R * L + E, serially).
    pub floor_with_org_s: f64,
    pub scan: ProcessCost,
    pub wall_over_floor: f64,
    pub wall_over_floor_with_org: f64,
    pub scanner_cpu_ms_per_server: f64,
    pub lab: ProcessCost,
    pub peer: Option<ProcessCost>,
    pub peer_cpu_ms_per_server: Option<f64>,
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
    let result = wait_ready(&mut lab).and_then(|()| measure(o, &fleet, &inventory, &ca_path));
    // SIGTERM: the lab shuts down cleanly and flushes its log.
    unsafe {
        libc::kill(lab.id() as i32, libc::SIGTERM);
    }
    let lab_cost = wait_cost(&lab, lab_started, Duration::from_secs(60))?;
    let (scan, in_scope, peer, scan_end_ms) = result?;
    let cost = per_server_cost(&log_path, scan_end_ms)?;
    let median = cost.requests.median;

    let waves = in_scope.div_ceil(o.concurrency.max(1)) as f64;
    let one_server_s = (median * o.latency_ms as f64 + o.exec_ms as f64) / 1000.0;
    let floor_s = waves * one_server_s;
    let floor_with_org_s = floor_s + one_server_s;
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

/// The scan's cost, servers in scope, the peer's cost, and when the scan ended (ms since
/// the epoch, to keep the peer's requests out of the scan's count).
type Measured = (ProcessCost, usize, Option<ProcessCost>, u64);

fn measure(
    o: &BenchOptions,
    served: &Fleet,
    inventory: &Path,
    ca: &Path,
) -> anyhow::Result<Measured> {
    let json = o.work_dir.join("scan.json");
    let user = format!("{}\\{}", fleet::DEFAULT_DOMAIN, fleet::DEFAULT_USER);
    let mut cmd = Command::new(&o.scan_bin);
    cmd.arg("scan")
        .arg("--inventory")
        .arg(inventory)
        .args(["--user", &user, "--quiet", "--no-progress"])
        .args(["--concurrency", &o.concurrency.to_string()])
        // Named, not defaulted, so a run means the same whatever the scanner's default org
        // path: `serve` has no Exchange `/PowerShell` endpoint, so the org query goes over
        // WinRS (one shell on one server, not counted per server).
        .args(["--org-via", "winrs"])
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
    Ok((scan, in_scope, peer, scan_end_ms))
}

fn wait_ready(lab: &mut Child) -> anyhow::Result<()> {
    let stdout = lab
        .stdout
        .take()
        .ok_or_else(|| anyhow!("lab stdout not captured"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.starts_with("eems-lab ready"));
        let _ = tx.send(ready);
        // Keep draining so the lab never blocks on a full pipe.
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(true) => Ok(()),
        Ok(false) => bail!("the lab exited before it was ready"),
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
}

/// What each server cost, from the lab log up to `until_ms`: HTTP requests (the handshake
/// and every operation, but Receive polls beyond the first of each command), connections
/// that carried them, and NTLM handshakes. The org query runs once per scan, not per
/// server: its shell, and the handshake of the connection that carried it, are not counted
/// against the server it ran on (a later probe reusing that connection is counted).
fn per_server_cost(log: &Path, until_ms: u64) -> anyhow::Result<ServerCost> {
    let text = std::fs::read_to_string(log).with_context(|| format!("{}", log.display()))?;
    let mut records = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let r: crate::log::LogRecord = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not a log record", log.display(), n + 1))?;
        if r.ts_ms <= until_ms {
            records.push(r);
        }
    }
    let org_shells: HashSet<&str> = records
        .iter()
        .filter(|r| r.probe.as_deref() == Some("org"))
        .filter_map(|r| r.shell_id.as_deref())
        .collect();
    let org_conns: HashSet<u64> = records
        .iter()
        .filter(|r| {
            r.shell_id
                .as_deref()
                .is_some_and(|id| org_shells.contains(id))
        })
        .map(|r| r.conn)
        .collect();
    #[derive(Default)]
    struct Tally {
        requests: usize,
        conns: HashSet<u64>,
        handshakes: usize,
    }
    let mut per_server: HashMap<&str, Tally> = HashMap::new();
    let mut receives: HashMap<(&str, &str), usize> = HashMap::new();
    for r in &records {
        let shell = r.shell_id.as_deref();
        let org = match shell {
            Some(id) => org_shells.contains(id),
            None => org_conns.contains(&r.conn),
        };
        if org {
            continue;
        }
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
        // NTLM: one CHALLENGE per handshake; Kerberos: one AP-REQ accepted, no challenge.
        if r.step == crate::log::STEP_CHALLENGE
            || (r.auth == crate::log::AUTH_KERBEROS && r.step == crate::log::STEP_AUTHENTICATED)
        {
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
    })
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

    /// Header of [`BenchReport::row`]: one Markdown table for a sweep.
    pub const ROW_HEADER: &'static str = "| servers | -j | requests/server (max) | connections/server (max) | authentications/server (max) | wall | wall/floor | wall/(floor + org query) | scanner CPU/server | scanner peak RSS | lab CPU |\n|---|---|---|---|---|---|---|---|---|---|---|\n";

    /// This run as one row under [`BenchReport::ROW_HEADER`].
    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {:.0} ({}) | {:.0} ({}) | {:.0} ({}) | {:.2} s | {:.3} | {:.3} | {:.2} ms | {:.1} MiB | {:.2} s |\n",
            self.servers,
            self.concurrency,
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
