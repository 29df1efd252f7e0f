//! `--auth kerberos` end to end: the real binary against the lab's listeners with the keys of
//! a real MIT KDC (a throwaway realm on loopback), NTLM blocked on every host, so a scan can
//! only succeed through Kerberos. Each failure the issue names gets its own row text.

use std::ffi::OsString;
use std::path::Path;
use std::process::Output;

use eems_lab::Lab;
use eems_lab::kdc::{Realm, RealmSpec};
use eems_lab::testkit::start_kerberos_lab;

use crate::common::{
    PASSWORD, USER, eems_scan_env, fleet_from_toml, fleet_toml, org_data, report, scratch,
};

/// `servers` (name, address, extra TOML) with NTLM blocked.
pub fn kerberos_fleet(servers: &[(String, String, String)]) -> eems_lab::fleet::Fleet {
    let mut fleet = fleet_from_toml(&fleet_toml("", servers));
    fleet.listener.ntlm = false;
    fleet
}

/// `n` servers on `127.0.<octet>.x` with NTLM blocked, a realm with their `HTTP/<fqdn>` (its
/// KDC's clock `kdc_skew_secs` off), and the lab serving Kerberos with its keytab.
pub async fn kerberos_lab(
    name: &str,
    octet: u8,
    n: usize,
    kdc_skew_secs: i64,
) -> (Realm, Lab, std::path::PathBuf) {
    let servers: Vec<_> = (1..=n)
        .map(|i| {
            (
                format!("KR{i:02}"),
                format!("127.0.{octet}.{i}"),
                String::new(),
            )
        })
        .collect();
    kerberos_lab_of(name, &servers, false, kdc_skew_secs).await
}

/// [`kerberos_lab`] with `servers` as `fleet_toml` takes them (name, address, fault line),
/// NTLM accepted beside Kerberos when `ntlm`.
pub async fn kerberos_lab_of(
    name: &str,
    servers: &[(String, String, String)],
    ntlm: bool,
    kdc_skew_secs: i64,
) -> (Realm, Lab, std::path::PathBuf) {
    let mut fleet = kerberos_fleet(servers);
    fleet.listener.ntlm = ntlm;
    let spec = RealmSpec {
        kdc_clock_offset_secs: kdc_skew_secs,
        ..RealmSpec::for_fleet(&fleet).unwrap()
    };
    let realm = Realm::start(spec).await.unwrap();
    let dir = scratch(name);
    let lab = start_kerberos_lab(fleet, &dir, &realm).await;
    (realm, lab, dir)
}

/// The environment of a scan: the realm's krb5.conf, `ccache` as KRB5CCNAME, no keytab.
pub fn client_env(realm: &Realm, ccache: &Path) -> Vec<(&'static str, OsString)> {
    let mut env: Vec<(&str, OsString)> = realm
        .client_env()
        .into_iter()
        .filter(|(k, _)| *k != "KRB5CCNAME" && *k != "KRB5_KTNAME")
        .collect();
    env.push(("KRB5CCNAME", format!("FILE:{}", ccache.display()).into()));
    env
}

/// `eems-scan scan --auth kerberos` on `inventory`, with the realm's krb5.conf and `ccache` as
/// KRB5CCNAME; the password (maybe empty) in EEMS_PASSWORD as always.
pub async fn scan(
    realm: &Realm,
    dir: &Path,
    inventory: &Path,
    ccache: &Path,
    password: &str,
    extra: &[&str],
) -> (Output, serde_json::Value) {
    let json = dir.join("out.json");
    let _ = std::fs::remove_file(&json);
    let env = client_env(realm, ccache);
    let mut args = vec![
        "scan",
        "--inventory",
        inventory.to_str().unwrap(),
        "--user",
        USER,
        "--auth",
        "kerberos",
        "--json",
        json.to_str().unwrap(),
        "--timeout",
        "30",
    ];
    // These tests are about the host probes' Kerberos; the org query's is org_psrp's and
    // scan_lab's.
    let org = org_data(dir);
    if !extra.contains(&"--org-via") {
        args.extend(org.iter().map(String::as_str));
    }
    args.extend_from_slice(extra);
    let out = eems_scan_env(&args, password, &env).await;
    let rep = if json.exists() {
        report(&json)
    } else {
        serde_json::Value::Null
    };
    (out, rep)
}

pub fn rows(rep: &serde_json::Value) -> &Vec<serde_json::Value> {
    rep["servers"].as_array().unwrap()
}

pub fn text(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Kerberos for every authenticated request, and no NTLM token at all.
pub fn assert_kerberos_only(lab: &Lab) {
    let records = lab.log_records();
    assert!(records.iter().any(|r| r.status == 200));
    for r in &records {
        assert_ne!(r.auth, "ntlm", "an NTLM token reached the lab: {r:?}");
        if r.status == 200 {
            assert_eq!(r.auth, "kerberos", "{r:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn a_kinit_cache_and_a_password_alone_both_scan_with_ntlm_blocked() {
    let (realm, lab, dir) = kerberos_lab("kerberos-ok", 150, 3, 0).await;
    let inventory = dir.join("inventory.csv");

    // 1. A ticket cache from kinit, no password at all.
    let ccache = dir.join("user.ccache");
    realm
        .kinit(&realm.user_principal(), PASSWORD, &ccache, None)
        .await
        .unwrap();
    let (out, rep) = scan(&realm, &dir, &inventory, &ccache, "", &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{rep}");
    assert_eq!(rows(&rep).len(), 3);
    for r in rows(&rep) {
        assert_eq!(text(&r["status"]), "ok", "{r}");
        assert_eq!(text(&r["auth"]), "kerberos", "{r}");
    }
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("authenticated with kerberos on 3"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_kerberos_only(&lab);

    // 2. Only the password: a private in-memory cache; no file appears where KRB5CCNAME points.
    let absent = dir.join("never-written.ccache");
    let (out, rep) = scan(&realm, &dir, &inventory, &absent, PASSWORD, &[]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{rep}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rows(&rep).iter().all(|r| text(&r["status"]) == "ok"),
        "{rep}"
    );
    assert!(!absent.exists());
    assert_kerberos_only(&lab);
    // The KDC issued service tickets for the lab's FQDNs.
    assert!(realm.kdc_log().contains("HTTP/kr01.lab.local@LAB.LOCAL"));

    // 3. No --auth: the kinit ticket makes it Kerberos (the choice without a ticket:
    // kerberos_auto.rs).
    let json = dir.join("auto.json");
    let org = org_data(&dir);
    let args = [
        "scan",
        "-i",
        inventory.to_str().unwrap(),
        "-u",
        USER,
        "--json",
        json.to_str().unwrap(),
        &org[0],
        &org[1],
    ];
    let out = eems_scan_env(&args, PASSWORD, &client_env(&realm, &ccache)).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = report(&json);
    assert!(
        rows(&rep).iter().all(|r| text(&r["auth"]) == "kerberos"),
        "{rep}"
    );
    assert_kerberos_only(&lab);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn each_kerberos_failure_is_an_error_row_in_plain_words() {
    let (mut realm, lab, dir) = kerberos_lab("kerberos-errors", 151, 2, 0).await;
    let inventory = dir.join("inventory.csv");
    let no_cache = dir.join("none.ccache");

    // No FQDN: the name is not a DNS name and there is no fqdn column.
    let bare = dir.join("bare.csv");
    std::fs::write(&bare, "name,address\nKR01,127.0.151.1\n").unwrap();
    let (_, rep) = scan(&realm, &dir, &bare, &no_cache, PASSWORD, &[]).await;
    let e = text(&rows(&rep)[0]["error"]);
    assert!(e.contains("Kerberos needs the server's FQDN"), "{e}");

    // Unknown SPN: an FQDN the realm has no HTTP/ principal for.
    let ghost = dir.join("ghost.csv");
    std::fs::write(
        &ghost,
        "name,address,fqdn\nKR01,127.0.151.1,ghost.lab.local\n",
    )
    .unwrap();
    let (_, rep) = scan(&realm, &dir, &ghost, &no_cache, PASSWORD, &[]).await;
    let e = text(&rows(&rep)[0]["error"]);
    assert!(
        e.contains("S_PRINCIPAL_UNKNOWN") && e.contains("HTTP/ghost.lab.local"),
        "{e}"
    );

    // No ticket and no password.
    let (_, rep) = scan(&realm, &dir, &inventory, &no_cache, "", &[]).await;
    let e = text(&rows(&rep)[0]["error"]);
    assert!(
        e.contains("no Kerberos ticket") && e.contains("kinit"),
        "{e}"
    );

    // An expiring ticket and no password to renew it.
    let short = dir.join("short.ccache");
    realm
        .kinit(&realm.user_principal(), PASSWORD, &short, Some("1m"))
        .await
        .unwrap();
    let (_, rep) = scan(&realm, &dir, &inventory, &short, "", &[]).await;
    let e = text(&rows(&rep)[0]["error"]);
    assert!(e.contains("has expired"), "{e}");

    // Wrong password: one attempt at the KDC for the whole scan, and the lockout guard
    // stops at K servers.
    let (out, rep) = scan(
        &realm,
        &dir,
        &inventory,
        &no_cache,
        "not-the-password",
        &["-j", "1", "--max-auth-failures", "1"],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    let errors: Vec<&str> = rows(&rep).iter().map(|r| text(&r["error"])).collect();
    assert!(errors[0].contains("refused the password"), "{errors:?}");
    assert!(errors[1].contains("lockout guard"), "{errors:?}");
    let preauth_failures = realm
        .kdc_log()
        .lines()
        .filter(|l| l.contains("PREAUTH_FAILED"))
        .count();
    assert_eq!(preauth_failures, 1, "{}", realm.kdc_log());

    // KDC down.
    realm.stop_kdc().await;
    let (_, rep) = scan(&realm, &dir, &inventory, &no_cache, PASSWORD, &[]).await;
    let e = text(&rows(&rep)[0]["error"]);
    assert!(e.contains("cannot reach a KDC"), "{e}");

    // None of it reached a server with anything but Kerberos, and nothing succeeded.
    assert!(lab.log_records().iter().all(|r| r.auth != "ntlm"));
    lab.shutdown().await;
}

/// A KDC whose clock is an hour ahead of the server's: MIT's client adopts the KDC's time
/// (kdc_timesync), so the ticket is issued and the server refuses it as not yet valid; a bare
/// 401 names no reason, so the row names the clock as the likely cause. (A client's private
/// copy of the ticket cache lacks MIT's KDC time offset, so its ticket request fails as skew;
/// the scanner then uses the scan's own cache: the lab seeing the ticket proves it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn a_kdc_clock_an_hour_off_is_a_clock_skew_row() {
    let (realm, lab, dir) = kerberos_lab("kerberos-skew", 154, 1, 3600).await;
    let (out, rep) = scan(
        &realm,
        &dir,
        &dir.join("inventory.csv"),
        &dir.join("none.ccache"),
        PASSWORD,
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    let e = text(&rows(&rep)[0]["error"]);
    assert!(e.contains("clock") && e.contains("synchronise"), "{e}");
    let records = lab.log_records();
    assert!(
        records.iter().any(|r| r.auth == "kerberos"
            && r.status == 401
            && r.note
                .as_deref()
                .is_some_and(|n| n.contains("not yet valid") || n.contains("skew"))),
        "{records:?}"
    );
    lab.shutdown().await;
}

/// The argument lists of process `pid` and all its descendants (threads' children
/// included), read from /proc: what `ps` shows any user of the machine.
pub fn argv_of_tree(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    // A process tree of a scan is a handful of processes; the bound only stops a loop.
    while let Some(p) = todo.pop().filter(|_| out.len() < 1000) {
        let Ok(argv) = std::fs::read(format!("/proc/{p}/cmdline")) else {
            continue;
        };
        out.push(String::from_utf8_lossy(&argv).replace('\0', " "));
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            todo.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// Ctrl-C in the middle of a scan that got its ticket from the password: exit 130 with the
/// partial report, and no ticket cache left anywhere. The private cache is MIT's `MEMORY:`
/// cache of the credential (`kerberos.rs`), so the check is that no cache ever reached the
/// disk: not where KRB5CCNAME points, not in the scanner's TMPDIR, not as an open file of the
/// running scanner; and the password is in no argument list meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn ctrl_c_mid_scan_leaves_no_ticket_cache_and_writes_the_partial_report() {
    let mut servers = vec![("KQ01".to_string(), "127.0.155.1".to_string(), String::new())];
    // Servers that run long: their shells are open when the interrupt comes.
    servers.extend((2..=4).map(|i| {
        (
            format!("KL{i:02}"),
            format!("127.0.155.{i}"),
            "faults = { exec_ms = 60000 }".to_string(),
        )
    }));
    let (realm, lab, dir) = kerberos_lab_of("kerberos-sigint", &servers, false, 0).await;
    let ccache = dir.join("never-written.ccache");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let json = dir.join("out.json");
    let mut env = client_env(&realm, &ccache);
    env.push(("TMPDIR", tmp.clone().into_os_string()));
    let inventory = dir.join("inventory.csv");
    let child = crate::common::scan_command(
        &[
            "scan",
            "-i",
            inventory.to_str().unwrap(),
            "-u",
            USER,
            "--auth",
            "kerberos",
            "--json",
            json.to_str().unwrap(),
            "--timeout",
            "120",
            "--operation-timeout",
            "1",
        ],
        PASSWORD,
        &env,
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let pid = child.id();
    crate::reliability::wait_for_open_shells(&lab, 3).await;

    // Mid-scan, with the ticket in use: no argument list holds the password, and no open
    // file of the scanner is a ticket cache.
    for argv in argv_of_tree(pid) {
        assert!(
            !argv.contains(PASSWORD),
            "the password is in an argument list: {argv}"
        );
    }
    let open_files: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        !open_files
            .iter()
            .any(|f| f.contains("krb5cc") || f.contains("ccache")),
        "{open_files:?}"
    );

    unsafe {
        libc::kill(pid as i32, libc::SIGINT);
    }
    let out = crate::reliability::wait_for_exit(child).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let rep = report(&json);
    assert_eq!(rep["interrupted"], true, "{rep}");
    assert_eq!(rows(&rep).len(), 4, "every server has a row: {rep}");
    for r in rows(&rep)
        .iter()
        .filter(|r| text(&r["server"]).starts_with("KL"))
    {
        assert!(text(&r["error"]).contains("interrupted"), "{r}");
    }
    // Kerberos did the work (so there was a ticket to leave behind)...
    assert_kerberos_only(&lab);
    assert!(realm.kdc_log().contains("HTTP/kl02.lab.local@LAB.LOCAL"));
    // ...and none was left.
    assert!(!ccache.exists(), "{} written", ccache.display());
    assert_eq!(
        crate::common::file_names(&tmp),
        Vec::<String>::new(),
        "files left in the scanner's TMPDIR"
    );
    lab.shutdown().await;
}
