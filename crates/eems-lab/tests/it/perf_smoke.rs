//! CI's performance smoke run: a 400-server generated fleet in a separate lab process,
//! scanned by the real binary at -j 200 with its defaults (evidence included), where one client per fleet used to run out of
//! pooled connections and authenticate servers again. NTLM cannot reach Exchange's
//! Kerberos-only `/PowerShell`, so the org facts come from an `--org-data` file and every
//! request the lab logs is a host probe's. The full benchmark is `eems-lab bench` (README,
//! Performance).

use std::path::{Path, PathBuf};

use eems_lab::bench::{BenchOptions, BenchReport, ORG_VIA_FILE, run};

/// Generated fleets always take the same loopback addresses: one bench at a time.
static ONE_FLEET: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn four_hundred_servers_at_j200_authenticate_once_each_near_the_floor() {
    let report = bench("perf-smoke", 400, 200, 10, 1000, false);
    println!("{}", report.table());
    assert!(report.in_scope >= 300, "{report:?}");
    assert_eq!(report.org_path, ORG_VIA_FILE, "{report:?}");
    assert_eq!(report.org.requests, 0, "no org query crosses the network");
    assert_eq!(
        report.authentications_per_server, 1.0,
        "the median server cost {} NTLM authentications (expected 1)",
        report.authentications_per_server
    );
    // One server may authenticate again: winrm-rs's connection race (README,
    // Performance) hits a scan's first handshake now and then.
    assert!(
        report.servers_reauthenticated <= 1,
        "{} servers cost more than one NTLM authentication (expected at most 1, the \
         connection race's)",
        report.servers_reauthenticated
    );
    assert_eq!(
        report.connections_per_server, 1.0,
        "the median server's probe used {} connections (expected 1)",
        report.connections_per_server
    );
    // The default scan sends host probe v2 (with its evidence part) on stdin: one Send
    // more than v1 alone, in the same command.
    assert!(
        report.requests_per_server <= 7.0,
        "the median server cost {} HTTP requests (expected at most 7: NEGOTIATE, \
         AUTHENTICATE, Create, Command, Send, Receive, Delete)",
        report.requests_per_server
    );
    // No org query runs before the host probes: the floor is the two waves alone.
    assert_eq!(report.floor_with_org_s, report.floor_s);
    assert!(
        report.wall_over_floor <= 1.5,
        "wall {:.2} s is {:.2}x the floor, {:.2} s (budget 1.5x)",
        report.scan.wall_s,
        report.wall_over_floor,
        report.floor_s
    );
}

/// The Kerberos bench takes the scanner's default org query over the `/PowerShell` endpoint
/// `eems-lab serve` starts beside its realm (the port it prints, as `--org-port`), and counts
/// that query apart from the host probes: one connection, one AP-REQ, the three cmdlets.
#[cfg(feature = "kerberos")]
#[test]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
fn kerberos_bench_sends_the_default_org_query_to_the_labs_powershell_and_counts_it_apart() {
    let latency_ms = 10;
    let report = bench("perf-smoke-kerberos", 40, 20, latency_ms, 200, true);
    println!("{}", report.table());
    assert_eq!(report.org_path, eems_lab::bench::ORG_VIA_PSRP, "{report:?}");
    assert_eq!(report.org.cmdlets, 3, "{report:?}");
    assert_eq!(report.org.connections, 1, "{report:?}");
    assert_eq!(report.org.authentications, 1, "{report:?}");
    // The handshake, the pool's Create and Receive, each cmdlet's Command, Receive and
    // Signal, and the close: far fewer than a WinRS probe per server would add.
    assert!(
        (10..=20).contains(&report.org.requests),
        "the org query cost {} requests on /PowerShell",
        report.org.requests
    );
    let org_floor_s = (report.org.requests as u64 * latency_ms) as f64 / 1000.0;
    assert!(
        (report.floor_with_org_s - report.floor_s - org_floor_s).abs() < 1e-9,
        "{report:?}"
    );
    // The query's requests are not any host's: each host still costs one AP-REQ.
    assert_eq!(report.authentications_per_server, 1.0, "{report:?}");
    assert_eq!(report.max_authentications_per_server, 1, "{report:?}");
    assert!(report.wall_over_floor_with_org >= 1.0, "{report:?}");
}

/// One bench run of a generated fleet (seed 7, evidence on) in its own folder, the two
/// smoke tests one after the other: generated fleets bind the same addresses.
fn bench(
    name: &str,
    servers: usize,
    concurrency: usize,
    latency_ms: u64,
    exec_ms: u64,
    kerberos: bool,
) -> BenchReport {
    let work_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&work_dir);
    let _fleet = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    run(&BenchOptions {
        servers,
        concurrency,
        latency_ms,
        exec_ms,
        https: false,
        evidence_days: eems_core::probe::DEFAULT_EVIDENCE_DAYS,
        kerberos,
        seed: 7,
        work_dir,
        lab_bin: PathBuf::from(env!("CARGO_BIN_EXE_eems-lab")),
        scan_bin: eems_lab::scanner_beside(Path::new(env!("CARGO_BIN_EXE_eems-lab"))).unwrap(),
        peer_python: None,
        peer_script: PathBuf::new(),
    })
    .unwrap()
}
