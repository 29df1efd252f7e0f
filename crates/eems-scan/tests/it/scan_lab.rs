//! The scanner against the lab's demo organisation, over real WinRM: as a real organisation
//! is (Kerberos from a real KDC, NTLM refused everywhere, no second hop, the org query over
//! Exchange's /PowerShell), and NTLM over HTTPS trusting the lab's CA with the org facts from
//! `--org-data`. Each scenario's expected row follows HealthChecker's decision table.

use crate::common::*;
use serde_json::Value;

/// (server, status, eems_state, service_check, pattern_service, error must contain)
const EXPECTED: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("EX01", "ok", "Enabled", "Running", "200 - Reachable", ""),
    ("EX02", "ok", "Enabled", "Running", "200 - Reachable", ""),
    (
        "EX03",
        "warning",
        "Disabled on server level",
        "Running",
        "200 - Reachable",
        "",
    ),
    (
        "EX04",
        "warning",
        "Enabled",
        "Investigate",
        "200 - Reachable",
        "",
    ),
    (
        "EX05",
        "warning",
        "Enabled",
        "Investigate",
        "200 - Reachable",
        "",
    ),
    (
        "EX06",
        "warning",
        "Enabled",
        "Unknown",
        "200 - Reachable",
        "",
    ),
    ("EX07", "warning", "Enabled", "Running", "Unreachable", ""),
    ("EX08", "ok", "Enabled", "Running", "200 - Reachable", ""),
    (
        "EX09",
        "warning",
        "Enabled",
        "Running",
        "200 - Reachable",
        "",
    ),
    ("EX10", "ok", "Enabled", "Running", "200 - Reachable", ""),
    ("EX11", "skipped", "", "", "", ""),
    // Below the March 2023 SU: a warning since host probe v2 (cert_floor).
    (
        "EX12",
        "warning",
        "Enabled",
        "Running",
        "200 - Reachable",
        "",
    ),
    ("EDGE01", "skipped", "", "", "", ""),
    ("EX13", "error", "", "", "", "connection refused"),
    ("EX14", "error", "", "", "", "timeout after 5 s"),
    // NTLM: "authentication failed"; Kerberos: "refused the Kerberos ticket".
    ("EX15", "error", "", "", "", "(stage auth,"),
    ("EX16", "error", "", "", "", "EEMS-PROBE-RESULT"),
    ("EX17", "error", "", "", "", "500"),
    ("EX18", "error", "", "", "", "dropped the connection"),
    ("EX19", "ok", "Enabled", "Running", "200 - Reachable", ""),
    ("EX20", "ok", "Enabled", "Running", "200 - Reachable", ""),
    (
        "EX22",
        "error",
        "",
        "",
        "",
        "Get-ExchangeServer does not list",
    ),
    // HealthChecker quirk: org true, server property absent reads "Disabled".
    (
        "EX23",
        "warning",
        "Disabled",
        "Running",
        "200 - Reachable",
        "",
    ),
];

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `org_source`: where the org facts came from (`queried_on` starts with it).
fn check_report(report: &Value, org_source: &str) {
    let servers = report["servers"].as_array().unwrap();
    assert_eq!(
        servers.len(),
        EXPECTED.len(),
        "one row per inventory server"
    );
    for (name, status, eems, service, pattern, error) in EXPECTED {
        let r = row(report, name);
        let ctx = format!("{name}: {r}");
        assert_eq!(s(&r["status"]), *status, "{ctx}");
        assert_eq!(s(&r["eems_state"]), *eems, "{ctx}");
        assert_eq!(s(&r["service_check"]), *service, "{ctx}");
        assert_eq!(s(&r["pattern_service"]), *pattern, "{ctx}");
        if error.is_empty() {
            assert!(r["error"].is_null(), "{ctx}");
        } else {
            assert!(s(&r["error"]).contains(error), "{ctx}");
        }
    }
    // Details the table does not show.
    assert_eq!(
        row(report, "EX02")["mitigations_applied"],
        serde_json::json!(["PING1", "M2.1.0"])
    );
    assert_eq!(
        row(report, "EX02")["mitigations_applied_time"],
        "2026-11-29T08:00:00Z"
    );
    assert_eq!(
        row(report, "EX09")["mitigations_blocked"],
        serde_json::json!(["M2"])
    );
    assert_eq!(
        row(report, "EX08")["ocs_proxy"],
        "http://proxy.contoso.com:8080"
    );
    assert_eq!(row(report, "EX10")["telemetry_enabled"], true);
    assert_eq!(row(report, "EX04")["service_status"], "Stopped");
    assert_eq!(row(report, "EX05")["service_start_type"], "Manual");
    assert_eq!(row(report, "EX07")["ocs_status_code"], Value::Null);
    assert_eq!(row(report, "EX01")["ocs_status_code"], 200);
    assert_eq!(row(report, "EX13")["error_stage"], "connect");
    assert_eq!(row(report, "EX15")["error_stage"], "auth");
    assert_eq!(row(report, "EX16")["error_stage"], "parse");
    assert!(
        s(&row(report, "EX11")["findings"][0]).contains("below EEMS"),
        "{}",
        row(report, "EX11")
    );
    assert!(s(&row(report, "EDGE01")["findings"][0]).contains("Edge"));
    let ex12 = row(report, "EX12")["findings"].to_string();
    assert!(ex12.contains("March 2023"), "{ex12}");
    assert_eq!(row(report, "EX12")["product"], "Exchange 2016");
    let queried_on = s(&report["organization"]["queried_on"]);
    assert!(
        queried_on.starts_with(org_source),
        "{}",
        report["organization"]
    );
    assert_eq!(report["organization"]["name"], "Contoso");
    assert_eq!(report["organization"]["mitigations_enabled"], true);
    let gap: Vec<&str> = report["not_in_inventory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| s(&v["name"]))
        .collect();
    assert_eq!(gap, ["EX21"]);
    let sum = &report["summary"];
    assert_eq!(sum["total"], EXPECTED.len());
    assert_eq!(sum["skipped"], 2);
    assert_eq!(sum["error"], 7);
    assert_eq!(report["interrupted"], false);
}

/// The demo holds one server of each evidence verdict (README "Evidence"); every other row
/// keeps the status the table above gives it.
fn check_evidence(report: &Value) {
    let rows = report["servers"].as_array().unwrap();
    let values = |field: &str| -> Vec<String> {
        rows.iter()
            .filter(|r| !r[field].is_null())
            .map(|r| match &r[field] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    };
    let fetch = values("fetch_state");
    for want in ["Fetching", "Failing", "No evidence", "Unknown"] {
        assert!(fetch.iter().any(|v| v == want), "no {want} in {fetch:?}");
    }
    assert_eq!(s(&row(report, "EX07")["fetch_state"]), "Failing");
    assert_eq!(s(&row(report, "EX04")["fetch_state"]), "No evidence");
    assert_eq!(s(&row(report, "EX10")["fetch_state"]), "Unknown");
    assert_eq!(
        s(&row(report, "EX12")["cert_floor"]),
        "cannot fetch since the January 2025 certificate change"
    );
    let iis = values("iis_state").join(" ");
    for want in [
        "consistent",
        "unknown",
        "applied_but_missing",
        "applied_but_disabled",
        "orphaned_rule",
        "blocked_but_present",
    ] {
        assert!(iis.contains(want), "no {want} in {iis}");
    }
    assert!(s(&row(report, "EX05")["service_changed"]).contains("demand start"));
    assert_eq!(
        row(report, "EX19")["flighting_service"],
        "Running/Automatic"
    );
    assert_eq!(row(report, "EX20")["flighting_service"], "Stopped/Disabled");
}

fn check_csv(path: &std::path::Path) {
    let mut rdr = csv::Reader::from_path(path).unwrap();
    let headers = rdr.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), EXPECTED.len());
    let ex02 = rows.iter().find(|r| &r[col("server")] == "EX02").unwrap();
    assert_eq!(&ex02[col("mitigations_applied")], "PING1;M2.1.0");
    assert_eq!(&ex02[col("org_mitigations_enabled")], "True");
    let ex10 = rows.iter().find(|r| &r[col("server")] == "EX10").unwrap();
    assert_eq!(&ex10[col("telemetry_enabled")], "True");
}

fn check_wire(lab: &eems_lab::Lab) {
    let log = lab.log_records();
    assert!(!log.is_empty());
    assert!(
        log.iter().all(|r| !r.plaintext_soap),
        "a SOAP body crossed HTTP unencrypted"
    );
    assert!(
        log.iter().all(|r| !r.server.contains("EDGE01")),
        "the Edge server was contacted"
    );
    assert_eq!(lab.open_shells(), 0, "every shell is deleted");
}

/// The demo organisation as a real one is, scanned with default flags after `kinit` (only
/// `--org-port`: the lab cannot bind port 80): Kerberos, NTLM refused on every host, no
/// second hop, the org query over /PowerShell. An NTLM-only build (`--no-default-features`)
/// scans it with NTLM and the org facts from `--org-data`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    all(feature = "kerberos", eems_no_kdc),
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn demo_org_over_sealed_http_as_a_real_organisation() {
    let dir = scratch("scan-http");
    #[cfg(feature = "kerberos")]
    let (lab, env, extra) = {
        let lab = testkit::start_realistic_lab(demo_fleet(31), &dir).await;
        let (env, args) = (lab.scan_env(), lab.scan_args());
        (lab, env, args)
    };
    #[cfg(not(feature = "kerberos"))]
    let (lab, env, extra) = (
        start_lab(demo_fleet(31), &dir).await,
        Vec::new(),
        org_data(&dir).to_vec(),
    );
    let (inventory, csv, json) = (
        dir.join("inventory.csv"),
        dir.join("out.csv"),
        dir.join("out.json"),
    );
    let mut args = vec![
        "scan",
        "--inventory",
        inventory.to_str().unwrap(),
        "--user",
        USER,
        "--csv",
        csv.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--timeout",
        "5",
        "--operation-timeout",
        "1",
        "--evidence-days",
    ];
    args.extend(extra.iter().map(String::as_str));
    let out = eems_scan_env(&args, PASSWORD, &env).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit 3: some servers could not be scanned\n{stdout}\n{stderr}"
    );
    // EX01's /PowerShell is down: the org query fell back to EX02.
    let (org_source, mechanism) = if cfg!(feature = "kerberos") {
        ("EX02", "kerberos")
    } else {
        ("org data file", "ntlm")
    };
    check_report(&report(&json), org_source);
    check_evidence(&report(&json));
    check_csv(&csv);
    assert!(
        stdout.contains("EX04") && stdout.contains("Investigate"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("authenticated with {mechanism} on 17")),
        "{stdout}"
    );
    for line in stdout.lines() {
        assert!(
            line.chars().count() <= 80,
            "console line over 80 columns: {line}"
        );
    }
    // Give the lab a moment to finish Delete bookkeeping of the last responses.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    #[cfg(feature = "kerberos")]
    {
        use eems_lab::log::{AUTH_KERBEROS, AUTH_NTLM, OrgQueryAudit};
        check_wire(&lab.lab);
        let log = lab.lab.log_records();
        assert!(
            log.iter().all(|r| r.auth != AUTH_NTLM),
            "an NTLM token reached the lab"
        );
        assert!(
            log.iter()
                .filter(|r| r.action.is_some())
                .all(|r| r.auth == AUTH_KERBEROS),
            "a WS-Man request without Kerberos"
        );
        // Three bare cmdlets on /PowerShell (the org's two, then Search-AdminAuditLog), no
        // script text, and the snap-in never loaded.
        let audit = OrgQueryAudit::of(&log);
        assert!(audit.is_clean() && audit.cmdlets == 3, "{audit}");
    }
    #[cfg(not(feature = "kerberos"))]
    check_wire(&lab);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_org_over_https_with_the_lab_ca() {
    let dir = scratch("scan-https");
    let lab = start_lab(demo_fleet(32), &dir).await;
    let out = eems_scan(
        &[
            "scan",
            "--inventory",
            dir.join("inventory-noport.csv").to_str().unwrap(),
            "--user",
            USER,
            "--https",
            "--ca-cert",
            dir.join("ca.pem").to_str().unwrap(),
            "--json",
            dir.join("out.json").to_str().unwrap(),
            "--timeout",
            "5",
            "--operation-timeout",
            "1",
            "--quiet",
            "--no-evidence",
            "--org-data",
            dir.join(ORG_DATA).to_str().unwrap(),
        ],
        PASSWORD,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&dir.join("out.json"));
    check_report(&r, "org data file");
    // With --no-evidence: no evidence fields, the same statuses.
    assert!(
        r["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["fetch_state"].is_null())
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        lab.log_records()
            .iter()
            .filter(|x| x.step == "request")
            .all(|x| x.tls)
    );
    assert_eq!(lab.open_shells(), 0);
    lab.shutdown().await;
}
