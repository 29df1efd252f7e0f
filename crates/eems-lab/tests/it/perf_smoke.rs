//! CI's performance smoke run: a 400-server generated fleet in a separate lab process,
//! scanned by the real binary at -j 200 with its defaults (evidence included), where one client per fleet used to run out of
//! pooled connections and authenticate servers again. The full benchmark is
//! `eems-lab bench` (README, Performance).

use std::path::{Path, PathBuf};

use eems_lab::bench::{BenchOptions, run};

#[test]
fn four_hundred_servers_at_j200_authenticate_once_each_near_the_floor() {
    let work_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("perf-smoke");
    let _ = std::fs::remove_dir_all(&work_dir);
    let report = run(&BenchOptions {
        servers: 400,
        concurrency: 200,
        latency_ms: 10,
        exec_ms: 1000,
        https: false,
        evidence_days: eems_core::probe::DEFAULT_EVIDENCE_DAYS,
        kerberos: false,
        seed: 7,
        work_dir,
        lab_bin: PathBuf::from(env!("CARGO_BIN_EXE_eems-lab")),
        scan_bin: eems_lab::scanner_beside(Path::new(env!("CARGO_BIN_EXE_eems-lab"))).unwrap(),
        peer_python: None,
        peer_script: PathBuf::new(),
    })
    .unwrap();
    println!("{}", report.table());
    assert!(report.in_scope >= 300, "{report:?}");
    assert_eq!(
        report.authentications_per_server, 1.0,
        "the median server cost {} NTLM authentications (expected 1)",
        report.authentications_per_server
    );
    // Only the org query's server may authenticate again: winrm-rs's connection race
    // (README, Performance) hits the first handshake of a scan now and then.
    assert!(
        report.servers_reauthenticated <= 1,
        "{} servers cost more than one NTLM authentication (expected at most 1, the org \
         query's)",
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
    // The org query runs before any host probe and is a wave of its own: against the
    // floor without it, two waves could never do better than 1.5x.
    assert!(
        report.wall_over_floor_with_org <= 1.5,
        "wall {:.2} s is {:.2}x the floor with the org query, {:.2} s (budget 1.5x)",
        report.scan.wall_s,
        report.wall_over_floor_with_org,
        report.floor_with_org_s
    );
}
