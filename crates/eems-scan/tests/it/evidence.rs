//! Host probe v2's evidence (issue 11) through the real binary against the lab over
//! WinRM/NTLM: every evidence part reaches the JSON and CSV reports with its verdict, each
//! part failing alone leaves the others and the v1 verdict intact, v1 and evidence run as
//! one command (the script on stdin), and with `--no-evidence` v1 runs alone on the command
//! line.

use crate::common::*;
use serde_json::{Value, json};

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn findings(r: &Value) -> String {
    r["findings"].to_string()
}

/// (name, extra fleet TOML). One server per verdict; octet 61.
fn verdict_fleet() -> Vec<(String, String, String)> {
    let rows: &[(&str, &str)] = &[
        ("HEALTHY", ""),
        (
            "FAILING",
            "[server.evidence]\nfetch_errors = { count = 30, newest_hours_ago = 0.5 }\n\
             log_problem_lines = [\"FetchMitigation,S:LogLevel=Warning;S:Message=TLS certificate or its chain validation failed\"]\n",
        ),
        (
            "OLDFAIL",
            "[server.evidence]\nfetch_errors = { count = 3, newest_hours_ago = 30.0 }\nlog_hours_ago = 48.0\n",
        ),
        (
            "APPLIED",
            "[server.evidence]\napplied = { count = 1, newest_hours_ago = 100.0 }\nlog_hours_ago = 200.0\n",
        ),
        ("CERTFLOOR", "build = \"15.2.986.41\"\n"),
        (
            "MISSING",
            "mitigations_applied = [\"PING1\", \"M1.1.0\"]\n[server.evidence]\niis_rules = []\n",
        ),
        (
            "DISABLED",
            "mitigations_applied = [\"PING1\", \"M2.1.0\"]\n[server.evidence]\niis_rules = [\
             { name = \"EEMS M2.1 OWA CSP - outbound\", section = \"outboundRules\", file = \"owa web.config\", enabled = false }]\n",
        ),
        (
            "ORPHAN",
            "[server.evidence]\niis_rules = [{ name = \"EEMS M1.1 PowerShell - inbound\" }]\n",
        ),
        (
            "TAMPERED",
            "[server.evidence]\nservice_changes = [\
             { hours_ago = 3.0, id = 7040, message = \"The start type of the Microsoft Exchange Emergency Mitigation Service service was changed from disabled to auto start.\" },\
             { hours_ago = 2.0, id = 7036, message = \"The Microsoft Exchange Emergency Mitigation Service service entered the running state.\" }]\n",
        ),
        (
            "FLIGHT",
            "build = \"15.2.1748.10\"\nfaults = { ps51_quirks = true }\n[server.evidence]\n\
             flighting = { status = \"Stopped\", start_type = \"Manual\" }\nservice_started_hours_ago = 0.1\n",
        ),
    ];
    rows.iter()
        .enumerate()
        .map(|(i, (n, extra))| {
            (
                n.to_string(),
                format!("127.0.61.{}", i + 1),
                extra.to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_evidence_verdict_reaches_json_and_csv() {
    let dir = scratch("evidence-verdicts");
    let lab = start_lab(fleet_from_toml(&fleet_toml("", &verdict_fleet())), &dir).await;
    let (out, rep) = scan_lab(&dir, PASSWORD, &["--timeout", "20", "--evidence-days"]).await;
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // (server, status, fetch_state, cert_floor, iis_state (CSV text), a finding containing)
    let table: &[(&str, &str, &str, &str, &str, &str)] = &[
        (
            "HEALTHY",
            "ok",
            "Fetching",
            "above the March 2023 SU",
            "Consistent",
            "",
        ),
        (
            "FAILING",
            "warning",
            "Failing",
            "above the March 2023 SU",
            "Consistent",
            "event 1008 at",
        ),
        (
            "OLDFAIL",
            "ok",
            "No evidence",
            "above the March 2023 SU",
            "Consistent",
            "no evidence that EEMS fetched",
        ),
        (
            "APPLIED",
            "ok",
            "Fetching",
            "above the March 2023 SU",
            "Consistent",
            "",
        ),
        (
            "CERTFLOOR",
            "warning",
            "Fetching",
            "cannot fetch since the January 2025 certificate change",
            "Consistent",
            "older than the March 2023 SU",
        ),
        (
            "MISSING",
            "warning",
            "Fetching",
            "above the March 2023 SU",
            "applied but missing: M1.1.0",
            "applied but missing",
        ),
        (
            "DISABLED",
            "warning",
            "Fetching",
            "above the March 2023 SU",
            "applied but disabled: M2.1.0",
            "applied but disabled",
        ),
        (
            "ORPHAN",
            "ok",
            "Fetching",
            "above the March 2023 SU",
            "orphaned rule: EEMS M1.1 PowerShell - inbound",
            "orphaned rule",
        ),
        (
            "TAMPERED",
            "ok",
            "Fetching",
            "above the March 2023 SU",
            "Consistent",
            "start type changed",
        ),
        (
            "FLIGHT",
            "ok",
            "Fetching",
            "above the March 2023 SU",
            "Consistent",
            "MSExchangeFlighting is Stopped/Manual",
        ),
    ];
    let mut rdr = csv::Reader::from_path(dir.join("out.csv")).unwrap();
    let headers = rdr.headers().unwrap().clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no CSV column {name}"))
    };
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    for (name, status, fetch, floor, iis, finding) in table {
        let r = row(&rep, name);
        let ctx = format!("{name}: {r}");
        assert_eq!(s(&r["status"]), *status, "{ctx}");
        assert_eq!(s(&r["fetch_state"]), *fetch, "{ctx}");
        assert_eq!(s(&r["cert_floor"]), *floor, "{ctx}");
        if !finding.is_empty() {
            assert!(findings(r).contains(finding), "{ctx}");
        }
        let c = rows.iter().find(|c| &c[col("server")] == *name).unwrap();
        assert_eq!(&c[col("fetch_state")], *fetch, "{name} CSV");
        assert_eq!(&c[col("cert_floor")], *floor, "{name} CSV");
        assert_eq!(&c[col("iis_state")], *iis, "{name} CSV");
        // HealthChecker's columns are untouched by the evidence.
        assert_eq!(s(&r["eems_state"]), "Enabled", "{ctx}");
        assert_eq!(s(&r["service_check"]), "Running", "{ctx}");
    }
    // Details.
    let failing = row(&rep, "FAILING");
    assert_eq!(failing["fetch_errors_window"], 30);
    assert!(s(&failing["last_fetch_error"]).contains("Exception encountered while fetching"));
    assert!(s(&failing["last_fetch_error_time"]).ends_with('Z'));
    assert_eq!(
        failing["evidence"]["log"]["problem_lines"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert!(findings(failing).contains("TLS certificate or its chain validation failed"));
    assert!(row(&rep, "APPLIED")["last_applied_event"].is_string());
    assert!(row(&rep, "HEALTHY")["log_last_write"].is_string());
    let tampered = row(&rep, "TAMPERED");
    assert!(s(&tampered["service_changed"]).contains("from disabled to auto start"));
    assert_eq!(
        tampered["evidence"]["service_changes"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "7036 is collected, only 7040 is the verdict"
    );
    let flight = row(&rep, "FLIGHT");
    assert_eq!(flight["flighting_service"], "Stopped/Manual");
    assert!(flight["service_started"].is_string(), "{flight}");
    assert!(row(&rep, "HEALTHY")["flighting_service"].is_null());
    let disabled = &row(&rep, "DISABLED")["evidence"]["iis_rules"]["rules"];
    assert_eq!(
        disabled,
        &json!([{"name": "EEMS M2.1 OWA CSP - outbound", "section": "outboundRules",
                 "enabled": false, "file": "owa web.config"}])
    );
    // One command per server: the bootstrap on the command line, v1 and the evidence part
    // on its stdin, sent in one Send, in the same shell. (HEALTHY also answered the org
    // query, in a shell of its own.)
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = lab.log_records();
    let sends: Vec<_> = log
        .iter()
        .filter(|r| r.server.contains("HEALTHY") && r.action.as_deref() == Some("Send"))
        .collect();
    assert_eq!(sends.len(), 1, "{log:?}");
    assert_eq!(
        sends[0].probe.as_deref(),
        Some("host"),
        "the Send ran the probe"
    );
    let shell = sends[0].shell_id.as_deref();
    let actions: Vec<_> = log
        .iter()
        .filter(|r| r.shell_id.as_deref() == shell)
        .filter_map(|r| r.action.as_deref())
        .collect();
    assert_eq!(actions, ["Create", "Command", "Send", "Receive", "Delete"]);
    let shells: std::collections::HashSet<_> = log
        .iter()
        .filter(|r| r.server.contains("HEALTHY") && r.probe.as_deref() != Some("org"))
        .filter(|r| r.action.as_deref() == Some("Create"))
        .filter_map(|r| r.shell_id.as_deref())
        .collect();
    assert_eq!(
        shells.len(),
        1,
        "the host probe's alone: the org facts came from --org-data"
    );
    assert_eq!(lab.open_shells(), 0);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_evidence_part_fails_alone() {
    let dir = scratch("evidence-fail-alone");
    // Every server has an orphaned M1 rule, a 7040 change, flighting and fresh 1008s, so a
    // part that failed is visibly missing while the others are visibly present.
    let base = "[server.evidence]\nfetch_errors = { count = 5, newest_hours_ago = 1.0 }\n\
        iis_rules = [{ name = \"EEMS M1.1 PowerShell - inbound\" }]\n\
        service_changes = [{ hours_ago = 5.0, id = 7040, message = \"changed from auto start to disabled\" }]\n\
        flighting = { status = \"Running\", start_type = \"Automatic\" }\n";
    let list: Vec<(String, String, String)> = [
        (
            "NOEVENTS",
            "events_error = \"The RPC server is unavailable.\"\n",
        ),
        (
            "NOSYSLOG",
            "service_changes_error = \"Access is denied.\"\n",
        ),
        ("NOLOG", "log_error = \"Access to the path is denied.\"\n"),
        (
            "NOIIS",
            "iis_error = \"Cannot read applicationHost.config.\"\n",
        ),
    ]
    .iter()
    .enumerate()
    .map(|(i, (n, x))| {
        (
            n.to_string(),
            format!("127.0.62.{}", i + 1),
            format!("{base}{x}"),
        )
    })
    .collect();
    let lab = start_lab(fleet_from_toml(&fleet_toml("", &list)), &dir).await;
    let (_, rep) = scan_lab(&dir, PASSWORD, &["--timeout", "20", "--evidence-days"]).await;
    let present = |r: &Value| {
        (
            s(&r["fetch_state"]).to_string(),
            r["iis_state"]
                != json!({"issues": [{"orphaned_rule": "EEMS M1.1 PowerShell - inbound"}]}),
            r["service_changed"].is_string(),
            r["log_last_write"].is_string(),
            r["flighting_service"] == "Running/Automatic",
        )
    };
    // (server, (fetch_state, iis part failed, 7040 seen, log seen, flighting seen), finding)
    let table = [
        (
            "NOEVENTS",
            ("Unknown", false, true, true, true),
            "EEMS events not readable: The RPC server is unavailable.",
        ),
        (
            "NOSYSLOG",
            ("Failing", false, false, true, true),
            "System log not readable: Access is denied.",
        ),
        (
            "NOLOG",
            ("Failing", false, true, false, true),
            "EEMS log folder not readable: Access to the path is denied.",
        ),
        (
            "NOIIS",
            ("Failing", true, true, true, true),
            "IIS configuration not readable: Cannot read applicationHost.config.",
        ),
    ];
    for (name, (fetch, iis_failed, change, log, flight), finding) in table {
        let r = row(&rep, name);
        let got = present(r);
        assert_eq!(
            got,
            (fetch.to_string(), iis_failed, change, log, flight),
            "{name}: {r}"
        );
        assert!(findings(r).contains(finding), "{name}: {r}");
        // The v1 part is whole.
        assert_eq!(s(&r["eems_state"]), "Enabled", "{name}");
        assert_eq!(r["ocs_status_code"], 200, "{name}");
    }
    assert_eq!(row(&rep, "NOIIS")["iis_state"], "unknown");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_evidence_sends_v1_alone_and_the_window_reaches_the_host() {
    let dir = scratch("evidence-days");
    let list = vec![(
        "WIN".to_string(),
        "127.0.64.1".to_string(),
        // 1008 every day for ten days, the newest 4 days ago.
        "[server.evidence]\nfetch_errors = { count = 10, newest_hours_ago = 96.0, every_hours = 24.0 }\n"
            .to_string(),
    )];
    let lab = start_lab(fleet_from_toml(&fleet_toml("", &list)), &dir).await;

    let (_, rep) = scan_lab(&dir, PASSWORD, &["--no-evidence"]).await;
    let r = row(&rep, "WIN");
    assert_eq!(s(&r["status"]), "ok");
    assert!(r["fetch_state"].is_null() && r["evidence"].is_null(), "{r}");
    assert_eq!(
        r["cert_floor"], "above the March 2023 SU",
        "judged from the build alone"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // v1 on the command line: the Command itself ran the host probe, nothing on stdin.
    let log = lab.log_records();
    let host_commands = log
        .iter()
        .filter(|r| r.action.as_deref() == Some("Command") && r.probe.as_deref() == Some("host"))
        .count();
    assert_eq!(host_commands, 1);
    assert!(!log.iter().any(|r| r.action.as_deref() == Some("Send")));

    // The default: evidence over 7 days, in one command.
    let (_, rep) = scan_lab(&dir, PASSWORD, &[]).await;
    let r = row(&rep, "WIN");
    assert_eq!(r["evidence"]["window_days"], 7, "{r}");
    assert_eq!(r["fetch_errors_window"], 4, "{r}");

    // A 30-day window sees 10 events (newest 4 days ago): not failing now.
    let (_, rep) = scan_lab(&dir, PASSWORD, &["--evidence-days", "30"]).await;
    let r = row(&rep, "WIN");
    assert_eq!(r["evidence"]["window_days"], 30);
    assert_eq!(r["fetch_errors_window"], 10);
    assert_eq!(s(&r["fetch_state"]), "Fetching", "{r}");
    // The default 7-day window sees 4 of them (96, 120, 144, 168 hours ago).
    let (_, rep) = scan_lab(&dir, PASSWORD, &["--evidence-days"]).await;
    let r = row(&rep, "WIN");
    assert_eq!(
        r["evidence"]["window_days"],
        eems_core::probe::DEFAULT_EVIDENCE_DAYS
    );
    assert_eq!(r["fetch_errors_window"], 4);

    let out = eems_scan(
        &[
            "scan",
            "--inventory",
            "x.csv",
            "--user",
            USER,
            "--evidence-days",
            "0",
        ],
        PASSWORD,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--evidence-days"));
    let out = eems_scan(
        &[
            "scan",
            "--inventory",
            "x.csv",
            "--user",
            USER,
            "--evidence-days",
            "3",
            "--no-evidence",
        ],
        PASSWORD,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "contradicting options");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-evidence"));
    lab.shutdown().await;
}

/// Two scans of the same servers, a week apart: the first healthy, the second with EEMS
/// failing, a rule gone and the start type changed. `report` re-renders the evidence
/// columns from the saved JSON, and `compare` calls each evidence change a regression.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_and_compare_carry_the_evidence() {
    let dir = scratch("evidence-compare");
    let before = vec![(
        "EX1".to_string(),
        "127.0.65.1".to_string(),
        "mitigations_applied = [\"PING1\", \"M1.1.0\"]\n".to_string(),
    )];
    let after = vec![(
        "EX1".to_string(),
        "127.0.65.1".to_string(),
        "mitigations_applied = [\"PING1\", \"M1.1.0\"]\n[server.evidence]\niis_rules = []\n\
         fetch_errors = { count = 20, newest_hours_ago = 0.5 }\n\
         service_changes = [{ hours_ago = 20.0, id = 7040, message = \"changed from auto start to disabled\" }]\n"
            .to_string(),
    )];
    let mut reports = Vec::new();
    for (i, fleet) in [before, after].iter().enumerate() {
        let lab = start_lab(fleet_from_toml(&fleet_toml("", fleet)), &dir).await;
        let (_, rep) = scan_lab(&dir, PASSWORD, &["--evidence-days"]).await;
        assert!(rep["servers"][0]["fetch_state"].is_string(), "{rep}");
        let saved = dir.join(format!("scan{i}.json"));
        std::fs::copy(dir.join("out.json"), &saved).unwrap();
        if i == 1 {
            // The saved JSON re-renders the same evidence columns the scan wrote.
            let re = dir.join("re.csv");
            let out = eems_scan(
                &[
                    "report",
                    saved.to_str().unwrap(),
                    "--csv",
                    re.to_str().unwrap(),
                ],
                PASSWORD,
            )
            .await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let cells = |p: &std::path::Path| {
                let mut rdr = csv::Reader::from_path(p).unwrap();
                let h = rdr.headers().unwrap().clone();
                let rec = rdr.records().next().unwrap().unwrap();
                let at = h.iter().position(|x| x == "fetch_state").unwrap();
                rec.iter().skip(at).map(str::to_string).collect::<Vec<_>>()
            };
            assert_eq!(cells(&re), cells(&dir.join("out.csv")));
            assert_eq!(cells(&re)[0], "Failing");
        }
        reports.push(saved);
        lab.shutdown().await;
    }
    let out = eems_scan(
        &[
            "compare",
            reports[0].to_str().unwrap(),
            reports[1].to_str().unwrap(),
            "--json",
            "-",
            "-q",
        ],
        PASSWORD,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "regressions");
    let drift: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut got: Vec<(String, String)> = drift["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (s(&c["field"]).to_string(), s(&c["verdict"]).to_string()))
        .collect();
    got.sort();
    let want = [
        ("fetch_state", "regression"),
        ("iis_state", "regression"),
        ("service_changed", "regression"),
        ("status", "regression"),
    ];
    assert_eq!(
        got,
        want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec(),
        "{drift}"
    );
}
