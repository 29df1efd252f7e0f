//! `scan --org-data FILE` (issue 10): the org facts from the JSON the Exchange Management
//! Shell line of `eems-scan org-command` writes, instead of an org query. The real binary
//! against the lab: host probes over WinRS as always, no org query at all.

use crate::common::{
    PASSWORD, USER, eems_scan, fleet_from_toml, fleet_toml, report, scan_lab, scratch, start_lab,
};

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn org_file(org: &str, servers: &[&str]) -> String {
    let servers: Vec<String> = servers
        .iter()
        .map(|n| {
            format!(
                "{{\"name\":\"{n}\",\"fqdn\":\"{}.lab.local\",\"site\":\"Default-First-Site-Name\",\"server_role\":\"Mailbox\",\
                 \"is_edge_server\":false,\"admin_display_version\":\"Version 15.2 (Build 1544.4)\",\"mitigations_enabled\":true,\
                 \"mitigations_applied\":[\"PING1\"],\"mitigations_blocked\":[],\"mitigations_applied_time\":null,\
                 \"data_collection_enabled\":false,\"internet_web_proxy\":null}}",
                n.to_ascii_lowercase()
            )
        })
        .collect();
    format!(
        "{{\"eems_org_data\":1,\"written\":\"{}\",\"name\":\"{org}\",\"mitigations_enabled\":true,\"servers\":[{}]}}",
        now(),
        servers.join(",")
    )
}

#[tokio::test]
async fn org_data_file_replaces_the_org_query_and_bad_files_are_named() {
    let fleet = fleet_from_toml(&fleet_toml(
        "",
        &[
            ("EX01".into(), "127.0.71.1".into(), String::new()),
            ("EX02".into(), "127.0.71.2".into(), String::new()),
        ],
    ));
    let dir = scratch("org-data");
    let lab = start_lab(fleet, &dir).await;

    let good = dir.join("eems-org.json");
    std::fs::write(&good, org_file("Fabrikam", &["EX01", "EX02"])).unwrap();
    let (out, rep) = scan_lab(&dir, PASSWORD, &["--org-data", good.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let org = &rep["organization"];
    let queried_on = org["queried_on"].as_str().unwrap_or_default();
    assert!(
        queried_on.starts_with("org data file") && queried_on.contains("eems-org.json (written 20"),
        "{org}\n{stderr}"
    );
    assert_eq!(org["name"], "Fabrikam");
    for r in rep["servers"].as_array().unwrap() {
        assert_eq!(r["status"], "ok", "{r}");
    }
    let records = lab.log_records();
    assert!(records.iter().any(|r| r.probe.as_deref() == Some("host")));
    assert!(records.iter().all(|r| r.probe.as_deref() != Some("org")));

    // Malformed, stale and foreign files: the org section says which file and why.
    let cases = [
        (
            "broken.json",
            "{\"eems_org_data\":1,".to_string(),
            "not the JSON `eems-scan org-command` writes",
        ),
        (
            "stale.json",
            org_file("Fabrikam", &["EX01"]).replace(&now()[..4], "2020"),
            "older than 24 h",
        ),
        (
            "foreign.json",
            org_file("Contoso", &["CX01"]),
            "from another organisation",
        ),
    ];
    for (name, text, want) in cases {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        let (_, rep) = scan_lab(&dir, PASSWORD, &["--org-data", f.to_str().unwrap()]).await;
        let err = rep["organization"]["error"].as_str().unwrap_or_default();
        assert!(
            err.contains(name) && err.contains(want),
            "{name}: {}",
            rep["organization"]
        );
    }
    lab.shutdown().await;
}

#[tokio::test]
async fn org_command_prints_one_ems_line_with_no_script_for_remote_use() {
    let out = eems_scan(&["org-command"], "").await;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim().lines().count(), 1, "{text}");
    for needed in [
        "Get-OrganizationConfig",
        "Get-ExchangeServer",
        "eems_org_data = 1",
        "ConvertTo-Json",
        "eems-org.json",
        "$_.WhenChangedUTC",
        "$_.RingLevel",
        "$_.LastFlightingServiceRunTime",
        "Search-AdminAuditLog -Cmdlets Set-OrganizationConfig,Set-ExchangeServer -Parameters MitigationsEnabled,MitigationsBlocked -StartDate",
        "admin_audit = $a",
    ] {
        assert!(text.contains(needed), "{needed} missing: {text}");
    }
    // Runs in the admin's own EMS session: it never loads the snap-in.
    assert!(!text.contains("Add-PSSnapin"));
}

/// The default org query (Exchange Remote PowerShell) where Kerberos cannot be had (here: no
/// krb5.conf; in an NTLM-only build: no Kerberos at all): the org error says why and names
/// the `--org-data` way round, and the host probes still run.
#[tokio::test]
async fn without_kerberos_the_default_org_query_names_the_fix_and_the_host_probes_still_run() {
    let fleet = fleet_from_toml(&fleet_toml(
        "",
        &[
            ("EX01".into(), "127.0.191.1".into(), String::new()),
            ("EX02".into(), "127.0.191.2".into(), String::new()),
        ],
    ));
    let dir = scratch("org-default-no-kerberos");
    let lab = start_lab(fleet, &dir).await;
    let json = dir.join("out.json");
    let inv = dir.join("inventory.csv");
    let out = eems_scan(
        &[
            "scan",
            "-i",
            inv.to_str().unwrap(),
            "-u",
            USER,
            "--json",
            json.to_str().unwrap(),
        ],
        PASSWORD,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rep = report(&json);
    let org = &rep["organization"];
    let error = org["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("eems-scan org-command") && error.contains("--org-data FILE"),
        "{org}\n{stderr}"
    );
    if cfg!(feature = "kerberos") {
        assert!(error.contains("no Kerberos realm"), "{error}");
    } else {
        assert!(error.contains("built without it"), "{error}");
    }
    for r in rep["servers"].as_array().unwrap() {
        assert_eq!(r["service_status"], "Running", "the host probe ran: {r}");
    }
    let probes: Vec<_> = lab
        .log_records()
        .into_iter()
        .filter_map(|r| r.probe)
        .collect();
    assert_eq!(probes, ["host", "host"], "no snap-in org probe over WinRS");
    lab.shutdown().await;
}
