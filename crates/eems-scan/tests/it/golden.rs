//! Golden reports: a saved scan of the demo organisation (tests/golden/eems-report.json,
//! written by the scanner before the workspace split) and a later copy with changes
//! (new.json) must render to exactly the bytes saved beside them. A renamed label, a
//! reordered column or a changed rank shows up here as a diff, not in an auditor's file.
//!
//! To accept a deliberate change, rerun the commands below and replace the files.

use std::path::{Path, PathBuf};
use std::process::Command;

use eems_core::report::ScanReport;
use eems_scan::render::json::JsonSink;
use eems_scan::render::{RowSink, ScanEnd, ScanStart};

use crate::common::scratch;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn assert_same(written: &Path, golden_name: &str) {
    let got = std::fs::read_to_string(written).unwrap();
    let want = std::fs::read_to_string(golden().join(golden_name)).unwrap();
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "{} differs from tests/golden/{golden_name} at line {}:\n got: {:?}\nwant: {:?}",
            written.display(),
            line + 1,
            got.lines().nth(line),
            want.lines().nth(line)
        );
    }
}

/// Runs the binary in the golden folder, so the inputs are named as they were saved.
fn eems_scan(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eems-scan"))
        .args(args)
        .current_dir(golden())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn report_renders_the_saved_scan_byte_for_byte() {
    let dir = scratch("golden-report");
    let (csv, html) = (dir.join("report.csv"), dir.join("report.html"));
    let out = eems_scan(&[
        "report",
        "eems-report.json",
        "--csv",
        csv.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_same(&csv, "report.csv");
    assert_same(&html, "report.html");
}

#[test]
fn compare_renders_the_saved_drift_byte_for_byte() {
    let dir = scratch("golden-drift");
    let paths = ["drift.csv", "drift.html", "drift.json"].map(|n| dir.join(n));
    let out = eems_scan(&[
        "compare",
        "eems-report.json",
        "new.json",
        "--csv",
        paths[0].to_str().unwrap(),
        "--html",
        paths[1].to_str().unwrap(),
        "--json",
        paths[2].to_str().unwrap(),
    ]);
    // Exit 1: the later scan has regressions.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    for p in &paths {
        assert_same(p, p.file_name().unwrap().to_str().unwrap());
    }
}

#[test]
fn json_sink_streams_the_saved_scan_byte_for_byte() {
    let saved = golden().join("eems-report.json");
    let report = ScanReport::load(&saved).unwrap();
    let mut sink = JsonSink::new(Vec::new());
    sink.begin(&ScanStart {
        started_at: report.started_at.clone(),
        organization: report.organization.clone(),
    })
    .unwrap();
    for row in &report.servers {
        sink.row(row).unwrap();
    }
    sink.finish(&ScanEnd {
        finished_at: report.finished_at.clone(),
        summary: report.summary.clone(),
        not_in_inventory: report.not_in_inventory.clone(),
        interrupted: report.interrupted,
    })
    .unwrap();
    let written = scratch("golden-json").join("eems-report.json");
    std::fs::write(&written, sink.into_inner()).unwrap();
    assert_same(&written, "eems-report.json");
}
