//! The org query over Exchange Remote PowerShell (issue 10) against the lab's `/PowerShell`
//! endpoints: real Kerberos from the lab's MIT KDC, sealed WS-Man, MS-PSRP. libkrb5 reads
//! KRB5_CONFIG from the environment, so the client half runs in a child copy of this test
//! binary (`testkit::run_in_child`); the KDC and the endpoints stay in the parent.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use eems_lab::exchange_ps::{self, ExchangePs};
use eems_lab::kdc::{Realm, RealmSpec};
use eems_lab::log::RequestLog;
use eems_lab::testkit::{PASSWORD, USER, fleet_from_toml, fleet_toml, in_child, run_in_child};
use eems_scan::exchange_ps::{Endpoint, OrgQueryError, query_org};
use eems_scan::kerberos::Credentials;
use winrm_rs::SecretString;

const THIS_TEST: &str =
    "org_psrp::the_org_query_runs_its_cmdlets_over_sealed_kerberos_psrp_and_names_each_failure";

fn endpoint(var: &str) -> Endpoint {
    let v = std::env::var(var).unwrap_or_else(|_| panic!("{var} not set"));
    let (fqdn, addr) = v.split_once('=').unwrap();
    let tls = std::env::var_os("EEMS_PS_CA")
        .map(|ca| eems_scan::exchange_ps::tls_config(Some(std::path::Path::new(&ca))).unwrap());
    Endpoint {
        fqdn: fqdn.into(),
        connect: addr.parse().unwrap(),
        tls: if var.ends_with("_TLS") { tls } else { None },
    }
}

async fn child() {
    let creds = Arc::new(
        tokio::task::spawn_blocking(|| {
            Credentials::acquire(USER, Some(&SecretString::from(PASSWORD.to_string())))
        })
        .await
        .unwrap()
        .unwrap(),
    );
    let t = Duration::from_secs(30);
    // The organisation as Exchange's remote session describes it.
    let started = std::time::Instant::now();
    let facts = query_org(creds.clone(), &endpoint("EEMS_PS_OK"), t)
        .await
        .unwrap();
    // Measured, not asserted: the time of one whole org query (service ticket included).
    println!(
        "child: one org query over PSRP took {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(facts.name.as_deref(), Some("Fabrikam"), "{facts:?}");
    assert_eq!(facts.mitigations_enabled, Some(true));
    assert_eq!(facts.error, None);
    assert_eq!(facts.servers_error, None);
    let names: Vec<_> = facts.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["EX01", "EX02", "EX03"]);
    let ex01 = &facts.servers[0];
    assert_eq!(ex01.site.as_deref(), Some("Site-A"));
    assert_eq!(ex01.fqdn.as_deref(), Some("ex01.lab.local"));
    assert_eq!(ex01.mitigations_applied, ["PING1"]);
    assert!(ex01.mitigations_blocked.is_empty(), "null list is empty");
    assert_eq!(
        ex01.mitigations_applied_time.as_deref(),
        Some("2026-11-03T04:05:06Z")
    );
    assert_eq!(
        ex01.admin_display_version.as_deref(),
        Some("Version 15.2 (Build 1748.10)")
    );
    assert_eq!(facts.servers[2].mitigations_blocked, ["M1", "M2"]);
    assert_eq!(facts.servers[2].mitigations_applied_time, None);
    // Feature Flighting and the AD change, with Exchange's names and shapes (Int32,
    // DateTime, null): EX01 is CU15 with a run 30 days old, EX03 a CU14 without it.
    assert_eq!(ex01.when_changed.as_deref(), Some("2026-11-03T04:05:06Z"));
    assert_eq!(ex01.ring_level, Some(2));
    let ran = time::OffsetDateTime::parse(
        ex01.last_flighting_run.as_deref().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let days = (time::OffsetDateTime::now_utc() - ran).whole_hours();
    assert!((719..=721).contains(&days), "{ran}");
    let ex03 = &facts.servers[2];
    assert_eq!(
        (ex03.ring_level, ex03.last_flighting_run.as_deref()),
        (None, None)
    );
    assert_eq!(ex03.when_changed.as_deref(), Some("2024-06-03T10:00:00Z"));
    // The admin audit log: the two EEMS changes within 90 days, newest first; the entry of
    // another cmdlet and the one older than 90 days are not asked for.
    let audit = facts.admin_audit.as_ref().unwrap();
    assert_eq!(audit.error, None);
    let who: Vec<_> = audit
        .entries
        .iter()
        .map(|e| e.who.as_deref().unwrap())
        .collect();
    assert_eq!(
        who,
        ["lab.local/Users/bob", "lab.local/Users/alice"],
        "{audit:?}"
    );
    let bob = &audit.entries[0];
    assert_eq!(bob.cmdlet.as_deref(), Some("Set-OrganizationConfig"));
    assert_eq!(bob.object.as_deref(), Some("Fabrikam"));
    assert_eq!(bob.changes[0].name, "MitigationsEnabled");
    assert_eq!(bob.changes[0].value.as_deref(), Some("False"));
    assert!(bob.when.as_deref().unwrap().ends_with('Z'));
    // An account without an Exchange role: RBAC hides the cmdlets.
    let e = query_org(creds.clone(), &endpoint("EEMS_PS_NOROLE"), t)
        .await
        .unwrap_err();
    assert!(matches!(e, OrgQueryError::Rbac { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("it needs an Exchange role such as View-Only Organization Management"),
        "{e}"
    );
    // The endpoint is down on this server.
    let e = query_org(creds.clone(), &endpoint("EEMS_PS_DOWN"), t)
        .await
        .unwrap_err();
    assert!(matches!(e, OrgQueryError::Connect { .. }), "{e}");
    assert!(e.to_string().contains("/PowerShell/"), "{e}");
    // HTTPS: the same query inside TLS, bodies not sealed.
    let facts = query_org(creds.clone(), &endpoint("EEMS_PS_OK_TLS"), t)
        .await
        .unwrap();
    assert_eq!(facts.servers.len(), 3, "{facts:?}");
    // An account without the audit role: the org facts stand, the audit search says why.
    let facts = query_org(creds.clone(), &endpoint("EEMS_PS_NOAUDIT"), t)
        .await
        .unwrap();
    assert_eq!(facts.servers.len(), 3, "{facts:?}");
    assert_eq!(facts.mitigations_enabled, Some(true));
    let audit = facts.admin_audit.unwrap();
    assert!(audit.entries.is_empty());
    assert!(
        audit
            .error
            .as_deref()
            .unwrap()
            .contains("The term 'Search-AdminAuditLog' is not recognized as the name of a cmdlet"),
        "{audit:?}"
    );
    let words = eems_core::analysis::admin_audit_report(&audit)
        .error
        .unwrap();
    assert!(words.contains("View-Only Audit Logs"), "{words}");
    // The search itself fails (AD unreachable): the org facts stand.
    let facts = query_org(creds.clone(), &endpoint("EEMS_PS_AUDITFAIL"), t)
        .await
        .unwrap();
    assert_eq!(facts.servers.len(), 3, "{facts:?}");
    assert_eq!(facts.error, None);
    let audit = facts.admin_audit.unwrap();
    assert_eq!(
        audit.error.as_deref(),
        Some("Active Directory operation failed on dc01.lab.local."),
        "{audit:?}"
    );
    println!("child: all org query scenarios passed");
}

#[tokio::test]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn the_org_query_runs_its_cmdlets_over_sealed_kerberos_psrp_and_names_each_failure() {
    if in_child() {
        child().await;
        return;
    }
    let fleet = fleet_from_toml(&fleet_toml(
        AUDIT_TRAIL,
        &[
            (
                "EX01".into(),
                "127.0.68.1".into(),
                "site = \"Site-A\"\nmitigations_applied = [\"PING1\"]\nmitigations_applied_time = \"2026-11-03T05:05:06+01:00\"\n\
                 build = \"15.2.1748.10\"\nfeature_flighting = { ring_level = 2, last_run_hours_ago = 720.0 }".into(),
            ),
            (
                "EX02".into(),
                "127.0.68.2".into(),
                "[server.faults]\nps_down = true".into(),
            ),
            (
                "EX03".into(),
                "127.0.68.3".into(),
                "mitigations_blocked = [\"M1\", \"M2\"]".into(),
            ),
        ],
    ));
    let realm = Realm::start(RealmSpec::for_fleet(&fleet).unwrap())
        .await
        .unwrap();
    let log = Arc::new(RequestLog::new(None, true).unwrap());
    let options = |no_role: Vec<String>| exchange_ps::Options {
        port: 0,
        no_role,
        no_audit_role: vec![],
        log: log.clone(),
        https: false,
        extended_protection: true,
    };
    let ok = ExchangePs::start(&fleet, &realm, options(vec![]))
        .await
        .unwrap();
    let no_role = ExchangePs::start(&fleet, &realm, options(vec![realm.user_principal()]))
        .await
        .unwrap();
    let tls = ExchangePs::start(
        &fleet,
        &realm,
        exchange_ps::Options {
            https: true,
            ..options(vec![])
        },
    )
    .await
    .unwrap();
    let no_audit = ExchangePs::start(
        &fleet,
        &realm,
        exchange_ps::Options {
            no_audit_role: vec![realm.user_principal()],
            ..options(vec![])
        },
    )
    .await
    .unwrap();
    let mut failing = fleet.clone();
    failing.org.admin_audit_error =
        Some("Active Directory operation failed on dc01.lab.local.".into());
    let audit_fails = ExchangePs::start(&failing, &realm, options(vec![]))
        .await
        .unwrap();
    let ca = realm.dir().join("ps-ca.pem");
    std::fs::write(&ca, tls.ca_pem.as_deref().unwrap()).unwrap();
    assert!(ok.addr("EX02").is_none(), "ps_down takes the endpoint down");
    // A closed port on EX02's address stands for its endpoint.
    let down = std::net::TcpListener::bind("127.0.68.2:0").unwrap();
    let down_addr = down.local_addr().unwrap();
    drop(down);
    let mut env = realm.client_env();
    let ccache = realm.dir().join("no-such.ccache");
    env.push(("KRB5CCNAME", format!("FILE:{}", ccache.display()).into()));
    env.push((
        "EEMS_PS_OK",
        OsString::from(format!("ex01.lab.local={}", ok.addr("EX01").unwrap())),
    ));
    env.push((
        "EEMS_PS_NOROLE",
        OsString::from(format!("ex03.lab.local={}", no_role.addr("EX03").unwrap())),
    ));
    env.push((
        "EEMS_PS_OK_TLS",
        OsString::from(format!("ex01.lab.local={}", tls.addr("EX01").unwrap())),
    ));
    env.push(("EEMS_PS_CA", ca.into_os_string()));
    env.push((
        "EEMS_PS_NOAUDIT",
        OsString::from(format!("ex01.lab.local={}", no_audit.addr("EX01").unwrap())),
    ));
    env.push((
        "EEMS_PS_AUDITFAIL",
        OsString::from(format!(
            "ex01.lab.local={}",
            audit_fails.addr("EX01").unwrap()
        )),
    ));
    env.push((
        "EEMS_PS_DOWN",
        OsString::from(format!("ex02.lab.local={down_addr}")),
    ));
    let out = tokio::task::spawn_blocking(move || run_in_child(THIS_TEST, &env))
        .await
        .unwrap();
    assert!(out.contains("all org query scenarios passed"), "{out}");
    for line in out.lines().filter(|l| l.contains(" took ")) {
        println!("{line}");
    }
    let records = log.records();
    let ps: Vec<_> = records
        .iter()
        .filter(|r| r.server.ends_with("/PowerShell"))
        .collect();
    // Kerberos, sealed, no script text, and the shells cleaned up.
    assert!(
        ps.iter().all(|r| r.auth == exchange_ps::AUTH_KERBEROS),
        "{ps:?}"
    );
    assert!(
        ps.iter()
            .filter(|r| r.action.is_some())
            .all(|r| r.sealed != r.tls && !r.plaintext_soap),
        "sealed over HTTP, plain inside TLS: {ps:?}"
    );
    assert!(
        ps.iter()
            .any(|r| r.tls && r.action.as_deref() == Some("Command"))
    );
    let invoked: Vec<_> = ps.iter().filter_map(|r| r.probe.clone()).collect();
    assert_eq!(
        invoked,
        [
            "Get-OrganizationConfig",
            "Get-ExchangeServer",
            "Search-AdminAuditLog",
            "Get-OrganizationConfig",
            "Get-OrganizationConfig",
            "Get-ExchangeServer",
            "Search-AdminAuditLog",
            "Get-OrganizationConfig",
            "Get-ExchangeServer",
            "Search-AdminAuditLog",
            "Get-OrganizationConfig",
            "Get-ExchangeServer",
            "Search-AdminAuditLog",
        ],
        "{ps:?}"
    );
    for action in ["Create", "Command", "Receive", "Signal", "Delete"] {
        assert!(
            ps.iter()
                .any(|r| r.action.as_deref() == Some(action) && r.status == 200),
            "no {action}: {ps:?}"
        );
    }
    ok.shutdown().await;
    no_role.shutdown().await;
    tls.shutdown().await;
    no_audit.shutdown().await;
    audit_fails.shutdown().await;
}

/// The organisation's admin audit log (`[org] admin_audit`): two EEMS changes within 90
/// days, one of another cmdlet and one older than 90 days, which the search must leave out.
const AUDIT_TRAIL: &str = r#"admin_audit = [
  { caller = "lab.local/Users/alice", hours_ago = 300.0, cmdlet_name = "Set-ExchangeServer", object_modified = "EX03", parameters = [{ name = "Identity", value = "EX03" }, { name = "MitigationsBlocked", value = "M1,M2" }] },
  { caller = "lab.local/Users/bob", hours_ago = 20.0, cmdlet_name = "Set-OrganizationConfig", object_modified = "Fabrikam", parameters = [{ name = "MitigationsEnabled", value = "False" }] },
  { caller = "lab.local/Users/carol", hours_ago = 10.0, cmdlet_name = "Set-TransportConfig", object_modified = "Fabrikam", parameters = [{ name = "MaxSendSize", value = "25 MB" }] },
  { caller = "lab.local/Users/dave", hours_ago = 2400.0, cmdlet_name = "Set-OrganizationConfig", object_modified = "Fabrikam", parameters = [{ name = "MitigationsEnabled", value = "True" }] },
]"#;

/// The real binary: `scan` (the org query over Remote PowerShell by default) against the
/// lab, host probes over WinRS. EX01's `/PowerShell` is down, so the org query falls back to EX02, the
/// next in-scope server; the WinRS side never sees the snap-in org probe.
#[tokio::test]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn scan_takes_the_org_from_remote_powershell_with_fallback_and_host_probes_over_winrs() {
    const PS_PORT: u16 = 18069;
    // The lab's default, as on a real organisation: WinRS logons cannot reach AD, so the
    // snap-in path fails.
    let fleet = fleet_from_toml(&fleet_toml(
        AUDIT_TRAIL,
        &[
            (
                "EX01".into(),
                "127.0.69.1".into(),
                "[server.faults]\nps_down = true".into(),
            ),
            ("EX02".into(), "127.0.69.2".into(), String::new()),
            (
                "EX03".into(),
                "127.0.69.3".into(),
                "build = \"15.2.1748.10\"\nfeature_flighting = { last_run_hours_ago = 240.0 }"
                    .into(),
            ),
        ],
    ));
    let dir = eems_lab::testkit::scratch(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
        "org-psrp-scan",
    );
    let realm = Realm::start(RealmSpec::for_fleet(&fleet).unwrap())
        .await
        .unwrap();
    // The servers are members of the realm, as a real organisation's are: without --auth, a
    // scan whose krb5.conf knows the realm uses Kerberos for WinRS too.
    let lab = eems_lab::testkit::start_kerberos_lab(fleet.clone(), &dir, &realm).await;
    let log = Arc::new(RequestLog::new(None, true).unwrap());
    let ps = ExchangePs::start(
        &fleet,
        &realm,
        exchange_ps::Options {
            port: PS_PORT,
            no_role: vec![],
            no_audit_role: vec![],
            log: log.clone(),
            https: false,
            extended_protection: true,
        },
    )
    .await
    .unwrap();
    let json = dir.join("out.json");
    let inv = dir.join("inventory.csv");
    let mut env = realm.client_env();
    env.push((
        "KRB5CCNAME",
        format!("FILE:{}", realm.dir().join("none.ccache").display()).into(),
    ));
    let run = |args: Vec<String>, env: Vec<(&'static str, OsString)>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_eems-scan"))
                .args(&args)
                .envs(env)
                .env("EEMS_PASSWORD", PASSWORD)
                .env("NO_COLOR", "1")
                .env_remove("RUST_LOG")
                .output()
                .unwrap()
        })
    };
    // The legacy snap-in org probe, asked for explicitly, warns, then hits the second hop on
    // every org server it tries.
    let winrs_json = dir.join("winrs.json");
    let winrs_args: Vec<String> = [
        "scan",
        "--inventory",
        inv.to_str().unwrap(),
        "--user",
        USER,
        "--json",
        winrs_json.to_str().unwrap(),
        "--org-via",
        "winrs-snapin",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run(winrs_args, env.clone()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("KB 2827611").count(),
        1,
        "one warning line: {stderr}"
    );
    let winrs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&winrs_json).unwrap()).unwrap();
    let err = winrs["organization"]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("Active Directory operation failed"),
        "{}",
        winrs["organization"]
    );
    let records_before = lab.log_records().len();

    let args: Vec<String> = [
        "scan",
        "--inventory",
        inv.to_str().unwrap(),
        "--user",
        USER,
        "--json",
        json.to_str().unwrap(),
        "--org-port",
        &PS_PORT.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run(args, env).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let org = &report["organization"];
    assert_eq!(org["queried_on"], "EX02", "{org}\n{stderr}");
    assert_eq!(org["name"], "Fabrikam");
    assert!(org["error"].is_null(), "{org}");
    for r in report["servers"].as_array().unwrap() {
        assert_eq!(r["status"], "ok", "{r}");
    }
    // Org-level evidence: the audit trail in the report and one line on the console.
    let audit = &org["admin_audit"];
    assert_eq!(audit["window_days"], 90, "{org}");
    assert_eq!(audit["entries"].as_array().unwrap().len(), 2, "{audit}");
    assert_eq!(audit["entries"][0]["who"], "lab.local/Users/bob");
    assert_eq!(audit["entries"][0]["changes"][0]["value"], "False");
    assert!(audit["error"].is_null(), "{audit}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Admin audit: 2 changes in 90 days (1 disabled EEMS), newest by bob at "),
        "{stdout}"
    );
    let ex02 = report["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["server"] == "EX02")
        .unwrap();
    assert_eq!(ex02["when_changed"], "2024-06-03T10:00:00Z", "{ex02}");
    assert!(ex02["ring_level"].is_null() && ex02["last_flighting_run"].is_null());
    // EX03's Flighting last ran 10 days ago: a finding, and still "ok" (asserted above).
    let ex03 = report["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["server"] == "EX03")
        .unwrap();
    assert_eq!(ex03["ring_level"], 1, "{ex03}");
    let findings = ex03["findings"].to_string();
    assert!(
        findings.contains("Feature Flighting last ran at") && findings.contains(", 10 days ago"),
        "{findings}"
    );
    // No second hop: the WinRS side ran host probes only.
    let records = lab.log_records();
    let this_scan = &records[records_before..];
    assert!(this_scan.iter().any(|r| r.probe.as_deref() == Some("host")));
    assert!(
        this_scan.iter().all(|r| r.probe.as_deref() != Some("org")),
        "the snap-in org probe ran over WinRS"
    );
    let invoked: Vec<_> = log.records().into_iter().filter_map(|r| r.probe).collect();
    assert_eq!(
        invoked,
        [
            "Get-OrganizationConfig",
            "Get-ExchangeServer",
            "Search-AdminAuditLog"
        ]
    );
    // `discover` asks the same way.
    let discover: Vec<String> = [
        "discover",
        "--from",
        "EX03",
        "--user",
        USER,
        "--org-port",
        &PS_PORT.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut env = realm.client_env();
    env.push((
        "KRB5CCNAME",
        format!("FILE:{}", realm.dir().join("none.ccache").display()).into(),
    ));
    // EX03 is not in DNS: the org query connects to the name `discover` was given.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_eems-scan"))
            .args(&discover)
            .envs(env)
            .env("EEMS_PASSWORD", PASSWORD)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains("EX03: cannot resolve EX03"), "{stderr}");
    ps.shutdown().await;
    lab.shutdown().await;
}

/// The org query's own Kerberos failures, on a realistic lab: no ticket and no password says
/// to kinit (or use --org-data); a password the KDC refuses counts for the lockout guard, so
/// that with K = 1 no host is tried with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn the_org_query_says_how_to_get_kerberos_and_a_refused_password_counts_for_the_lockout_guard()
 {
    use crate::common::{eems_scan_env, report, scratch};
    let fleet = fleet_from_toml(&fleet_toml(
        "",
        &[
            ("EX01".into(), "127.0.192.1".into(), String::new()),
            ("EX02".into(), "127.0.192.2".into(), String::new()),
        ],
    ));
    let dir = scratch("org-psrp-kerberos-failures");
    let lab = eems_lab::testkit::start_realistic_lab(fleet, &dir).await;
    let json = dir.join("out.json");
    let inv = dir.join("inventory.csv");
    let mut env = lab.scan_env();
    env.retain(|(k, _)| *k != "KRB5CCNAME");
    env.push((
        "KRB5CCNAME",
        format!("FILE:{}", dir.join("none.ccache").display()).into(),
    ));
    let port = lab.ps_port.to_string();
    let scan = |password: &'static str, extra: &'static [&'static str]| {
        let mut args = vec![
            "scan",
            "-i",
            inv.to_str().unwrap(),
            "-u",
            USER,
            "--json",
            json.to_str().unwrap(),
            "--org-port",
            &port,
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let env = env.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            eems_scan_env(&args, password, &env).await
        }
    };
    // No ticket, no password.
    let out = scan("", &["--auth", "kerberos"]).await;
    let rep = report(&json);
    let error = rep["organization"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no Kerberos ticket")
            && error.contains("kinit administrator@LAB.LOCAL")
            && error.contains("--org-data"),
        "{error}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A wrong password, no --auth: the org query asks the KDC (the hosts would get NTLM);
    // its refusal alone trips the guard at K = 1, so not one NTLM attempt follows.
    let before = lab.lab.log_records().len();
    scan("not-the-password", &["--max-auth-failures", "1"]).await;
    let rep = report(&json);
    let error = rep["organization"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("wrong password"), "{error}");
    for r in rep["servers"].as_array().unwrap() {
        assert!(
            r["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with("not attempted"),
            "{r}"
        );
    }
    assert_eq!(
        lab.lab.log_records().len(),
        before,
        "a host was contacted after the KDC refused the password"
    );
    lab.shutdown().await;
}
