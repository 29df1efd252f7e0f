//! `eems-scan report` and `eems-scan compare` as a user runs them: saved JSON reports in,
//! files, console output and exit status out. No servers, no lab.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use eems_core::analysis::{EemsState, PatternService, ServiceCheck, Status};
use eems_core::report::{OrgSection, ScanReport, ServerRow, Summary, ToolInfo};
use scraper::{Html, Selector};

use crate::common::file_names;

fn dir(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("report_cli-{test}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn eems_scan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eems-scan"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn healthy(name: &str) -> ServerRow {
    let mut r = ServerRow::new(name);
    r.status = Status::Ok;
    r.fqdn = Some(format!("{}.contoso.com", name.to_lowercase()));
    r.site = Some("Default-First-Site-Name".into());
    r.build = Some("15.2.1544.4".into());
    r.product = Some("Exchange 2019".into());
    r.eems_state = Some(EemsState::Enabled);
    r.org_mitigations_enabled = Some(true);
    r.server_mitigations_enabled = Some(true);
    r.service_check = Some(ServiceCheck::Running);
    r.service_status = Some("Running".into());
    r.service_start_type = Some("Automatic".into());
    r.pattern_service = Some(PatternService::Reachable);
    r.ocs_status_code = Some(200);
    r.mitigations_applied = vec!["PING1".into()];
    r.telemetry_enabled = Some(false);
    r.duration_ms = 1800;
    r
}

fn scan(started_at: &str, servers: Vec<ServerRow>) -> ScanReport {
    let mut summary = Summary::default();
    for r in &servers {
        summary.add(r.status);
    }
    ScanReport {
        tool: ToolInfo::default(),
        started_at: started_at.into(),
        finished_at: started_at.replace(":00Z", ":42Z"),
        organization: OrgSection {
            name: Some("Contoso".into()),
            mitigations_enabled: Some(true),
            queried_on: Some("EX01".into()),
            error: None,
            admin_audit: None,
        },
        summary,
        servers,
        not_in_inventory: vec![],
        interrupted: false,
    }
}

fn fleet() -> Vec<ServerRow> {
    let mut down = ServerRow::new("EX04");
    down.error = Some("connection refused (stage connect, after 0.1 s)".into());
    vec![healthy("EX01"), healthy("EX02"), healthy("EX03"), down]
}

fn save(path: &Path, report: &ScanReport) {
    std::fs::write(path, serde_json::to_string_pretty(report).unwrap()).unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn report_rerenders_html_and_csv() {
    let d = dir("rerender");
    let json = d.join("scan.json");
    save(&json, &scan("2026-11-29T10:00:00Z", fleet()));
    let (html, csv) = (d.join("fleet.html"), d.join("fleet.csv"));
    let o = eems_scan(&["report", p(&json), "--html", p(&html), "--csv", p(&csv)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let page = std::fs::read_to_string(&html).unwrap();
    let doc = Html::parse_document(&page);
    let rows = Selector::parse("#matrix tbody tr").unwrap();
    assert_eq!(doc.select(&rows).count(), 4);
    assert!(page.contains("Contoso"));

    let mut reader = csv::Reader::from_path(&csv).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        eems_scan::render::csv::HEADER.to_vec()
    );
    let records: Vec<_> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 4);
    assert_eq!(&records[3][0], "EX04");
    assert_eq!(&records[3][6], "error");
    // Nothing but the files: no leftovers from the atomic writes.
    assert_eq!(file_names(&d), ["fleet.csv", "fleet.html", "scan.json"]);
}

#[test]
fn report_html_to_stdout() {
    let d = dir("stdout");
    let json = d.join("scan.json");
    save(&json, &scan("2026-11-29T10:00:00Z", fleet()));
    let o = eems_scan(&["report", p(&json), "--html", "-"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("<!DOCTYPE html>"));
}

#[test]
fn report_refuses_to_overwrite_its_input_and_needs_an_output() {
    let d = dir("overwrite");
    let json = d.join("scan.json");
    save(&json, &scan("2026-11-29T10:00:00Z", fleet()));
    let o = eems_scan(&["report", p(&json), "--html", p(&json)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("overwrite"), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&json).unwrap().contains("EX04"));

    let o = eems_scan(&["report", p(&json)]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn compare_reports_exactly_the_regressions() {
    let d = dir("regressions");
    let (old, new) = (d.join("old.json"), d.join("new.json"));
    save(&old, &scan("2026-11-29T10:00:00Z", fleet()));
    let mut servers = fleet();
    // EX02: the service was stopped. EX03: a mitigation is newly blocked.
    servers[1].status = Status::Warning;
    servers[1].service_check = Some(ServiceCheck::Investigate);
    servers[1].service_status = Some("Stopped".into());
    servers[2].status = Status::Warning;
    servers[2].mitigations_blocked = vec!["M2.1.0".into()];
    save(&new, &scan("2026-12-06T10:00:00Z", servers));

    let json_out = d.join("drift.json");
    let html_out = d.join("drift.html");
    let csv_out = d.join("drift.csv");
    let o = eems_scan(&[
        "compare",
        p(&old),
        p(&new),
        "--json",
        p(&json_out),
        "--html",
        p(&html_out),
        "--csv",
        p(&csv_out),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    let mut regressions: Vec<(String, String, String)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "regression")
        .map(|c| {
            (
                c["server"].as_str().unwrap().to_string(),
                c["field"].as_str().unwrap().to_string(),
                c["new"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    regressions.sort();
    assert_eq!(
        regressions,
        [
            (
                "EX02".into(),
                "service".into(),
                "Investigate (Stopped, Automatic)".into()
            ),
            ("EX02".into(), "status".into(), "warning".into()),
            ("EX03".into(), "mitigations_blocked".into(), "M2.1.0".into()),
            ("EX03".into(), "status".into(), "warning".into()),
        ]
    );
    assert_eq!(v["changes"].as_array().unwrap().len(), 4, "no other change");
    assert_eq!(v["summary"]["regressions"], 4);
    assert_eq!(v["summary"]["servers_changed"], 2);
    assert_eq!(v["summary"]["servers_compared"], 4);

    // The console table names both, within 80 columns, without colour under NO_COLOR.
    let text = stdout(&o);
    assert!(text.contains("EX02") && text.contains("M2.1.0"), "{text}");
    assert!(!text.contains('\x1b'));
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "{line}");
    }

    let page = std::fs::read_to_string(&html_out).unwrap();
    let doc = Html::parse_document(&page);
    let sel = Selector::parse(r#"#drift tbody tr[data-verdict="regression"]"#).unwrap();
    assert_eq!(doc.select(&sel).count(), 4);

    let csv = std::fs::read_to_string(&csv_out).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.starts_with("server,change,old,new,verdict\n"));
}

#[test]
fn identical_reports_exit_0() {
    let d = dir("identical");
    let (old, new) = (d.join("old.json"), d.join("new.json"));
    save(&old, &scan("2026-11-29T10:00:00Z", fleet()));
    save(&new, &scan("2026-12-06T10:00:00Z", fleet()));
    let o = eems_scan(&["compare", p(&old), p(&new)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("No changes (4 servers compared)"));
}

#[test]
fn improvements_alone_exit_0() {
    let d = dir("improvement");
    let (old, new) = (d.join("old.json"), d.join("new.json"));
    let mut servers = fleet();
    servers[1].status = Status::Warning;
    servers[1].pattern_service = Some(PatternService::Unreachable);
    save(&old, &scan("2026-11-29T10:00:00Z", servers));
    save(&new, &scan("2026-12-06T10:00:00Z", fleet()));
    let o = eems_scan(&["compare", p(&old), p(&new), "--json", "-"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The report took stdout, so the table went to stderr.
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["summary"]["improvements"], 2);
    assert!(stderr(&o).contains("improvement"));
}

#[test]
fn unreadable_input_exits_2_naming_the_file() {
    let d = dir("garbage");
    let (good, garbage) = (d.join("good.json"), d.join("garbage.json"));
    save(&good, &scan("2026-11-29T10:00:00Z", fleet()));
    std::fs::write(&garbage, "this is not JSON\n").unwrap();

    let o = eems_scan(&["compare", p(&good), p(&garbage)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("garbage.json"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());

    let o = eems_scan(&["compare", p(&garbage), p(&good)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("garbage.json"), "{}", stderr(&o));

    let missing = d.join("missing.json");
    let o = eems_scan(&["compare", p(&good), p(&missing)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.json"), "{}", stderr(&o));

    let o = eems_scan(&["report", p(&garbage), "--html", p(&d.join("x.html"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("garbage.json"), "{}", stderr(&o));
    assert!(!d.join("x.html").exists());
}

#[test]
fn different_organisations_are_incompatible() {
    let d = dir("orgs");
    let (old, new) = (d.join("contoso.json"), d.join("fabrikam.json"));
    save(&old, &scan("2026-11-29T10:00:00Z", fleet()));
    let mut other = scan("2026-12-06T10:00:00Z", fleet());
    other.organization.name = Some("Fabrikam".into());
    save(&new, &other);
    let o = eems_scan(&["compare", p(&old), p(&new)]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("fabrikam.json") && e.contains("not the same organisation"),
        "{e}"
    );
}

/// `scan --html` is checked with the other reports before any connection (no server is
/// contacted: the host does not exist and the run must stop before trying).
#[test]
fn scan_html_destination_is_checked_up_front() {
    let d = dir("scan-html");
    let base = [
        "scan",
        "--discover-from",
        "nonexistent.invalid",
        "-u",
        r"LAB\administrator",
    ];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_eems-scan"))
            .args(&args)
            .env("EEMS_PASSWORD", "not-used")
            .output()
            .unwrap()
    };
    let o = run(&["--csv", "-", "--html", "-"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("only one of --csv, --json and --html"),
        "{}",
        stderr(&o)
    );

    let o = run(&["--html", "/nonexistent-eems-dir/fleet.html"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent-eems-dir/fleet.html"),
        "{}",
        stderr(&o)
    );

    let same = d.join("same.out");
    let o = run(&["--json", p(&same), "--html", p(&same)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("named for two reports"),
        "{}",
        stderr(&o)
    );
}
