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
    "org_psrp::the_org_query_runs_two_cmdlets_over_sealed_kerberos_psrp_and_names_each_failure";

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
        Some("Version 15.2 (Build 1544.4)")
    );
    assert_eq!(facts.servers[2].mitigations_blocked, ["M1", "M2"]);
    assert_eq!(facts.servers[2].mitigations_applied_time, None);
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
    println!("child: all org query scenarios passed");
}

#[tokio::test]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn the_org_query_runs_two_cmdlets_over_sealed_kerberos_psrp_and_names_each_failure() {
    if in_child() {
        child().await;
        return;
    }
    let fleet = fleet_from_toml(&fleet_toml(
        "",
        &[
            (
                "EX01".into(),
                "127.0.68.1".into(),
                "site = \"Site-A\"\nmitigations_applied = [\"PING1\"]\nmitigations_applied_time = \"2026-11-03T05:05:06+01:00\"".into(),
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
        log: log.clone(),
        https: false,
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
            "Get-OrganizationConfig",
            "Get-OrganizationConfig",
            "Get-ExchangeServer",
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
}

/// The real binary: `scan --org-via remote-powershell` against the lab, host probes over
/// WinRS as before. EX01's `/PowerShell` is down, so the org query falls back to EX02, the
/// next in-scope server; the WinRS side never sees the snap-in org probe.
#[tokio::test]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn scan_takes_the_org_from_remote_powershell_with_fallback_and_host_probes_over_winrs() {
    const PS_PORT: u16 = 18069;
    // As on a real organisation: WinRS logons cannot reach AD, so the snap-in path fails.
    let fleet = fleet_from_toml(&fleet_toml(
        "second_hop_denied = true",
        &[
            (
                "EX01".into(),
                "127.0.69.1".into(),
                "[server.faults]\nps_down = true".into(),
            ),
            ("EX02".into(), "127.0.69.2".into(), String::new()),
            ("EX03".into(), "127.0.69.3".into(), String::new()),
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
            log: log.clone(),
            https: false,
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
    // The default WinRS org probe hits the second hop on every org server it tries.
    let winrs_json = dir.join("winrs.json");
    let winrs_args: Vec<String> = [
        "scan",
        "--inventory",
        inv.to_str().unwrap(),
        "--user",
        USER,
        "--json",
        winrs_json.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run(winrs_args, env.clone()).await.unwrap();
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
        "--org-via",
        "remote-powershell",
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
    // No second hop: the WinRS side ran host probes only.
    let records = lab.log_records();
    let this_scan = &records[records_before..];
    assert!(this_scan.iter().any(|r| r.probe.as_deref() == Some("host")));
    assert!(
        this_scan.iter().all(|r| r.probe.as_deref() != Some("org")),
        "the snap-in org probe ran over WinRS"
    );
    let invoked: Vec<_> = log.records().into_iter().filter_map(|r| r.probe).collect();
    assert_eq!(invoked, ["Get-OrganizationConfig", "Get-ExchangeServer"]);
    // `discover` asks the same way.
    let discover: Vec<String> = [
        "discover",
        "--from",
        "EX03",
        "--user",
        USER,
        "--org-via",
        "remote-powershell",
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
