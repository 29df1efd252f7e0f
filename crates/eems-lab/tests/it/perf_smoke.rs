//! CI's performance smoke run: a 200-server generated fleet in a separate lab process,
//! scanned by the real binary. Fails when the scan's wall time drifts from the floor the
//! latency and execution time set, or when a server costs more HTTP requests than the
//! budget. The full benchmark is `eems-lab bench` (README, Performance).

use std::path::{Path, PathBuf};

use eems_lab::bench::{BenchOptions, run};

#[test]
fn two_hundred_servers_scan_near_the_floor() {
    let work_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("perf-smoke");
    let _ = std::fs::remove_dir_all(&work_dir);
    let report = run(&BenchOptions {
        servers: 200,
        concurrency: 40,
        latency_ms: 10,
        exec_ms: 500,
        https: false,
        seed: 7,
        work_dir,
        lab_bin: PathBuf::from(env!("CARGO_BIN_EXE_eems-lab")),
        scan_bin: eems_lab::scanner_beside(Path::new(env!("CARGO_BIN_EXE_eems-lab"))).unwrap(),
        peer_python: None,
        peer_script: PathBuf::new(),
    })
    .unwrap();
    println!("{}", report.table());
    assert!(report.in_scope >= 150, "{report:?}");
    // The typical server's cost. The maximum is printed, not bounded: a Create retried
    // after winrm-rs's connection race (README, Performance) costs a handshake more, and
    // whether the race hits the lone org query is chance.
    assert!(
        report.requests_per_server <= 7.0,
        "a server cost {} HTTP requests (budget 7)",
        report.requests_per_server
    );
    assert!(
        report.wall_over_floor <= 1.5,
        "wall {:.2} s is {:.2}x the floor {:.2} s (budget 1.5x)",
        report.scan.wall_s,
        report.wall_over_floor,
        report.floor_s
    );
}
