//! `doctor`'s Kerberos and `/PowerShell` steps (issue 16) against the lab with NTLM blocked,
//! the keys of a real MIT KDC, and the lab's Exchange `/PowerShell` endpoints: each step
//! failing on purpose, with the fix it names, and one run where every step passes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use eems_lab::Lab;
use eems_lab::exchange_ps::{self, ExchangePs};
use eems_lab::kdc::{Realm, RealmSpec};
use eems_lab::log::RequestLog;
use eems_lab::testkit::start_kerberos_lab;
use serde_json::Value;

use crate::common::{PASSWORD, USER, eems_scan_env, scratch};
use crate::everyday::{assert_stopped_after, failure, server, step, text};
use crate::kerberos::kerberos_fleet;

/// Ports of the `/PowerShell` endpoints on every lab address (their own loopback addresses,
/// so no other test shares them): HTTPS with roles, HTTP with roles, HTTP without a role.
const PS_HTTPS: u16 = 18_443;
const PS_HTTP: u16 = 18_080;
const PS_NO_ROLE: u16 = 18_081;

struct KerberosLab {
    realm: Realm,
    lab: Lab,
    dir: PathBuf,
    ps: Vec<ExchangePs>,
    ps_log: Arc<RequestLog>,
}

/// DK1 (all well), DK2 (its `/PowerShell` down), DK3 (a server Exchange does not list) on
/// `127.0.<octet>.x`; the realm; the WinRM
/// lab; the `/PowerShell` endpoints; `both-ca.pem` trusting the WinRM and the IIS
/// certificates, `ca.pem` only the WinRM ones.
async fn start(name: &str, octet: u8, kdc_skew_secs: i64) -> KerberosLab {
    let fleet = kerberos_fleet(&[
        ("DK1".into(), format!("127.0.{octet}.1"), String::new()),
        (
            "DK2".into(),
            format!("127.0.{octet}.2"),
            "[server.faults]\nps_down = true".into(),
        ),
        (
            "DK3".into(),
            format!("127.0.{octet}.3"),
            "in_org = false".into(),
        ),
    ]);
    let spec = RealmSpec {
        kdc_clock_offset_secs: kdc_skew_secs,
        ..RealmSpec::for_fleet(&fleet).unwrap()
    };
    let realm = Realm::start(spec).await.unwrap();
    let dir = scratch(name);
    let lab = start_kerberos_lab(fleet.clone(), &dir, &realm).await;
    let ps_log = Arc::new(RequestLog::new(None, true).unwrap());
    let options = |port, https, no_role: Vec<String>| exchange_ps::Options {
        port,
        no_role,
        no_audit_role: Vec::new(),
        log: ps_log.clone(),
        https,
        extended_protection: true,
    };
    let mut ps = Vec::new();
    for (port, https, no_role) in [
        (PS_HTTPS, true, vec![]),
        (PS_HTTP, false, vec![]),
        (PS_NO_ROLE, false, vec![realm.user_principal()]),
    ] {
        ps.push(
            ExchangePs::start(&fleet, &realm, options(port, https, no_role))
                .await
                .unwrap(),
        );
    }
    let both = format!(
        "{}\n{}",
        std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        ps[0].ca_pem.as_deref().unwrap()
    );
    std::fs::write(dir.join("both-ca.pem"), both).unwrap();
    KerberosLab {
        realm,
        lab,
        dir,
        ps,
        ps_log,
    }
}

impl KerberosLab {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// `doctor --json --auth kerberos` with the realm's krb5.conf, no ticket cache, the password.
    async fn doctor(&self, extra: &[&str]) -> (Output, Value) {
        let mut env: Vec<(&str, OsString)> = self
            .realm
            .client_env()
            .into_iter()
            .filter(|(k, _)| *k == "KRB5_CONFIG")
            .collect();
        let none = self.dir.join("none.ccache");
        env.push(("KRB5CCNAME", format!("FILE:{}", none.display()).into()));
        let mut args = vec!["doctor", "--json", "--user", USER, "--auth", "kerberos"];
        args.extend_from_slice(extra);
        let out = eems_scan_env(&args, PASSWORD, &env).await;
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}):\n{}", text(&out)));
        (out, json)
    }

    async fn shutdown(self) {
        for ps in self.ps {
            ps.shutdown().await;
        }
        self.lab.shutdown().await;
    }
}

fn detail<'a>(server: &'a Value, name: &str) -> &'a str {
    step(server, name)["detail"].as_str().unwrap()
}

/// The failed step of `name`'s entry is `at`, its detail and fix contain the words given, and
/// nothing ran after it.
fn assert_fails_at(rep: &Value, name: &str, at: &str, in_detail: &str, in_fix: &str) {
    let s = server(rep, name);
    let (got, detail, fix) = failure(s).unwrap_or_else(|| panic!("{name} did not fail: {s:#}"));
    assert_eq!(got, at, "{s:#}");
    assert!(detail.contains(in_detail), "{name} {at}: {detail}");
    assert!(fix.contains(in_fix), "{name} {at} fix: {fix}");
    assert_stopped_after(s, at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn doctor_passes_every_step_over_kerberos_and_names_each_kerberos_and_powershell_failure() {
    let mut k = start("doctor-kerberos", 221, 0).await;
    let inv = k.path("inventory-noport.csv");
    let https = |port: u16, ca: &str| -> Vec<String> {
        [
            "--inventory",
            &inv,
            "--https",
            "--ca-cert",
            &k.path(ca),
            "--org-via",
            "remote-powershell",
            "--org-port",
            &port.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = |v: &[String]| v.to_vec();

    // 1. All green: HTTPS with both CAs, Kerberos for WinRM and /PowerShell, NTLM blocked.
    let mut all = args(&https(PS_HTTPS, "both-ca.pem"));
    all.insert(0, "DK1".into());
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let (out, rep) = k.doctor(&all).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dk1 = server(&rep, "DK1");
    for s in dk1["steps"].as_array().unwrap() {
        assert_eq!(s["result"], "passed", "{dk1:#}");
    }
    assert_eq!(
        dk1["steps"].as_array().unwrap().len(),
        8,
        "every step: {dk1:#}"
    );
    assert!(
        detail(dk1, "dns").contains("127.0.221.1") && detail(dk1, "dns").contains("dk1.lab.local"),
        "{dk1:#}"
    );
    let krb = detail(dk1, "kerberos");
    assert!(
        krb.contains("administrator@LAB.LOCAL")
            && krb.ends_with("for WinRM and /PowerShell")
            && krb.contains("password")
            && krb.contains("HTTP/dk1.lab.local"),
        "{krb}"
    );
    assert!(detail(dk1, "winrm-auth").contains("kerberos"), "{dk1:#}");
    let ps = detail(dk1, "powershell");
    assert!(
        ps.contains("https://dk1.lab.local/PowerShell/")
            && ps.contains("Get-ExchangeServer -Identity DK1")
            && ps.contains("Version 15"),
        "{ps}"
    );
    // The --json shape: the org query, one entry per server, every step with its result.
    assert_eq!(rep["org_query"]["answered_by"], "DK1", "{rep:#}");
    assert!(rep["org_query"]["error"].is_null(), "{rep:#}");
    assert_eq!(rep["left_out"], serde_json::json!([]));
    assert_eq!(dk1["host"], "127.0.221.1");
    assert_eq!(dk1["port"], 5986);
    let names: Vec<&str> = dk1["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "dns",
            "tcp",
            "tls",
            "kerberos",
            "winrm-auth",
            "winrm-command",
            "powershell",
            "mitigation-endpoint"
        ]
    );
    assert!(
        dk1["steps"][0].get("fix").is_none(),
        "no fix on a pass: {dk1:#}"
    );
    // Nothing but Kerberos reached the WinRM listeners; /PowerShell ran bare cmdlets only.
    for r in k.lab.log_records() {
        assert_ne!(r.auth, "ntlm", "{r:?}");
    }
    let invoked: Vec<String> = k
        .ps_log
        .records()
        .into_iter()
        .filter_map(|r| r.probe)
        .collect();
    assert_eq!(
        invoked,
        [
            "Get-OrganizationConfig",
            "Get-ExchangeServer",
            "Search-AdminAuditLog",
            "Get-ExchangeServer"
        ],
        "the org query as a scan runs it (its audit search included), then the RBAC probe"
    );

    // 2. A bad certificate: the IIS certificate's CA is not trusted.
    let bad = args(&https(PS_HTTPS, "ca.pem"));
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    let (out, rep) = k.doctor(&bad).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(step(server(&rep, "DK1"), "winrm-auth")["result"], "passed");
    assert_fails_at(&rep, "DK1", "powershell", "TLS", "--ca-cert");

    // 3. /PowerShell down on DK2 (HTTP); DK3 unknown to Exchange; an account without an
    // Exchange role.
    let http = |port: u16| -> Vec<String> {
        [
            "--inventory",
            &inv,
            "--org-via",
            "remote-powershell",
            "--org-port",
            &port.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let down = http(PS_HTTP);
    let down: Vec<&str> = down.iter().map(String::as_str).collect();
    let (out, rep) = k.doctor(&down).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(failure(server(&rep, "DK1")), None, "{rep:#}");
    assert_eq!(
        step(server(&rep, "DK1"), "tls")["result"],
        "skipped",
        "HTTP"
    );
    assert_fails_at(
        &rep,
        "DK2",
        "powershell",
        "127.0.221.2:18080",
        "nothing listens on port 18080",
    );
    assert!(
        failure(server(&rep, "DK2"))
            .unwrap()
            .2
            .contains("--org-port"),
        "{rep:#}"
    );
    assert_fails_at(
        &rep,
        "DK3",
        "powershell",
        "Get-ExchangeServer -Identity DK3 failed on http://dk3.lab.local/PowerShell/: The \
         operation couldn't be performed because object 'DK3' couldn't be found",
        "the account may run it",
    );
    let no_role = http(PS_NO_ROLE);
    let mut no_role: Vec<&str> = no_role.iter().map(String::as_str).collect();
    no_role.insert(0, "DK1");
    let (out, rep) = k.doctor(&no_role).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_fails_at(
        &rep,
        "DK1",
        "powershell",
        "the account may not run Get-ExchangeServer: it needs an Exchange role such as \
         View-Only Organization Management",
        "Add-RoleGroupMember",
    );
    assert!(
        rep["org_query"]["error"]
            .as_str()
            .unwrap()
            .contains("may not run"),
        "{rep:#}"
    );

    // 4. The wrong WinRM port: TCP fails before any Kerberos.
    let (out, rep) = k
        .doctor(&["DK1", "--inventory", &inv, "--port", "5999"])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_fails_at(&rep, "DK1", "tcp", "127.0.221.1:5999", "--port");
    assert_eq!(step(server(&rep, "DK1"), "kerberos")["result"], "not-run");

    // 5. An FQDN the realm has no HTTP/ principal for.
    let ghost = k.dir.join("ghost.csv");
    std::fs::write(
        &ghost,
        "name,address,fqdn\nDK1,127.0.221.1,ghost.lab.local\n",
    )
    .unwrap();
    let (out, rep) = k.doctor(&["--inventory", ghost.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_fails_at(
        &rep,
        "DK1",
        "kerberos",
        "HTTP/ghost.lab.local",
        "setspn -S HTTP/ghost.lab.local <account>",
    );
    assert_eq!(step(server(&rep, "DK1"), "tcp")["result"], "passed");

    // 6. The KDC down.
    k.realm.stop_kdc().await;
    let (out, rep) = k.doctor(&["DK1", "--inventory", &inv]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_fails_at(
        &rep,
        "DK1",
        "kerberos",
        "cannot reach a KDC for realm LAB.LOCAL",
        "port 88",
    );
    assert!(!text(&out).contains(PASSWORD), "the password leaked");
    k.shutdown().await;
}

/// The table: the Kerberos step passed, the `/PowerShell` step failed on RBAC with its fix
/// under it, and the summary naming the step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn doctor_table_over_kerberos_shows_the_kerberos_and_powershell_lines() {
    let k = start("doctor-kerberos-table", 222, 0).await;
    let inv = k.path("inventory-noport.csv");
    let mut env: Vec<(&str, OsString)> = k
        .realm
        .client_env()
        .into_iter()
        .filter(|(key, _)| *key == "KRB5_CONFIG")
        .collect();
    env.push((
        "KRB5CCNAME",
        format!("FILE:{}", Path::new(&k.path("none.ccache")).display()).into(),
    ));
    let out = eems_scan_env(
        &[
            "doctor",
            "DK1",
            "-i",
            &inv,
            "-u",
            USER,
            "--auth",
            "kerberos",
            "--org-via",
            "remote-powershell",
            "--org-port",
            &PS_NO_ROLE.to_string(),
        ],
        PASSWORD,
        &env,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let line = |step: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(step))
            .unwrap_or_else(|| panic!("no {step} line:\n{table}"))
            .to_string()
    };
    assert!(
        line("kerberos").trim_start().starts_with("passed"),
        "{table}"
    );
    assert!(
        line("powershell").trim_start().starts_with("FAILED"),
        "{table}"
    );
    assert!(
        table.contains("fix: add the account to an Exchange role group"),
        "{table}"
    );
    assert!(table.contains("1 failed: DK1 (powershell)"), "{table}");
    k.shutdown().await;
}

/// A KDC an hour ahead of the server: MIT's client adopts the KDC's time, so the ticket is
/// issued (the Kerberos step passes) and the server refuses it as not yet valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn doctor_blames_the_clocks_when_the_server_refuses_a_ticket_from_a_skewed_kdc() {
    let k = start("doctor-kerberos-skew", 223, 3600).await;
    let inv = k.path("inventory-noport.csv");
    let (out, rep) = k.doctor(&["DK1", "--inventory", &inv]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(step(server(&rep, "DK1"), "kerberos")["result"], "passed");
    assert_fails_at(&rep, "DK1", "winrm-auth", "clock", "clock must agree");
    k.shutdown().await;
}
