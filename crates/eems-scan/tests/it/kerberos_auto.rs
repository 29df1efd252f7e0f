//! The default mechanism (no `--auth`) against the lab and a real KDC: Kerberos where the
//! Kerberos configuration knows the account's realm, NTLM elsewhere, and never a password sent
//! to a realm the configuration does not name. The lab accepts both mechanisms here, so the
//! log shows which one each scan chose.

use std::path::Path;

use eems_lab::Lab;
use eems_lab::kdc::Realm;

use crate::common::{PASSWORD, USER, eems_scan_env, org_data, report};
use crate::kerberos::{assert_kerberos_only, client_env, kerberos_lab_of, rows, text};

/// AS exchanges (a password or a ticket cache turned into a TGT) the KDC has logged.
fn as_reqs(realm: &Realm) -> usize {
    realm
        .kdc_log()
        .lines()
        .filter(|l| l.contains("AS_REQ"))
        .count()
}

/// A scan without `--auth` as `user`, with `krb5_conf` as KRB5_CONFIG, no ticket cache, and
/// the org facts from `--org-data`.
async fn default_scan(
    realm: &Realm,
    dir: &Path,
    krb5_conf: &Path,
    user: &str,
    password: &str,
) -> (i32, serde_json::Value) {
    let json = dir.join("auto.json");
    let _ = std::fs::remove_file(&json);
    let mut env = client_env(realm, &dir.join("none.ccache"));
    env.retain(|(k, _)| *k != "KRB5_CONFIG");
    env.push(("KRB5_CONFIG", krb5_conf.as_os_str().to_owned()));
    let inventory = dir.join("inventory.csv");
    // The org facts from the file: this test is about the host probes' mechanism (the org
    // query takes Kerberos alone; org_psrp.rs).
    let org = org_data(dir);
    let out = eems_scan_env(
        &[
            "scan",
            "-i",
            inventory.to_str().unwrap(),
            "-u",
            user,
            "--json",
            json.to_str().unwrap(),
            "--timeout",
            "30",
            &org[0],
            &org[1],
        ],
        password,
        &env,
    )
    .await;
    let rep = report(&json);
    (out.status.code().unwrap_or(-1), rep)
}

/// The lab's records from `from` on.
fn new_records(lab: &Lab, from: usize) -> Vec<eems_lab::log::LogRecord> {
    lab.log_records().into_iter().skip(from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn without_auth_kerberos_where_krb5_conf_knows_the_realm_and_ntlm_elsewhere() {
    let servers: Vec<_> = (1..=2)
        .map(|i| (format!("KA{i:02}"), format!("127.0.156.{i}"), String::new()))
        .collect();
    let (realm, lab, dir) = kerberos_lab_of("kerberos-auto", &servers, true, 0).await;
    let lab_conf = realm.krb5_conf();

    // 1. DOMAIN\user, no ticket: the lab's krb5.conf maps ka01.lab.local to LAB.LOCAL, whose
    // first label is the account's domain, so the password gets a ticket.
    let before = as_reqs(&realm);
    let (code, rep) = default_scan(&realm, &dir, &lab_conf, USER, PASSWORD).await;
    assert_eq!(code, 0, "{rep}");
    for r in rows(&rep) {
        assert_eq!(text(&r["auth"]), "kerberos", "{r}");
    }
    assert_kerberos_only(&lab);
    assert!(as_reqs(&realm) > before, "{}", realm.kdc_log());

    // 2. user@REALM with the realm in [realms]: Kerberos too.
    let (code, rep) =
        default_scan(&realm, &dir, &lab_conf, "administrator@lab.local", PASSWORD).await;
    assert_eq!(code, 0, "{rep}");
    assert!(
        rows(&rep).iter().all(|r| text(&r["auth"]) == "kerberos"),
        "{rep}"
    );
    assert_kerberos_only(&lab);

    // 3. A krb5.conf that does not know the realm (a stock one, naming another realm and
    // mapping other domains): NTLM, and the password goes to no KDC.
    let foreign = dir.join("krb5-foreign.conf");
    std::fs::write(
        &foreign,
        "[libdefaults]\n\tdefault_realm = ATHENA.MIT.EDU\n[realms]\n\tATHENA.MIT.EDU = {\n\
         \t\tkdc = 127.0.0.1:9\n\t}\n[domain_realm]\n\t.mit.edu = ATHENA.MIT.EDU\n",
    )
    .unwrap();
    let before = as_reqs(&realm);
    let from = lab.log_records().len();
    let (code, rep) = default_scan(&realm, &dir, &foreign, USER, PASSWORD).await;
    assert_eq!(code, 0, "{rep}");
    for r in rows(&rep) {
        assert_eq!(text(&r["auth"]), "ntlm", "{r}");
    }
    let records = new_records(&lab, from);
    assert!(records.iter().all(|r| r.auth != "kerberos"), "{records:?}");
    assert!(records.iter().any(|r| r.auth == "ntlm" && r.status == 200));
    // The same account spelled user@REALM, the realm unknown here: NTLM as well.
    let (_, rep) = default_scan(&realm, &dir, &foreign, "administrator@lab.local", PASSWORD).await;
    assert!(
        rows(&rep).iter().all(|r| text(&r["auth"]) != "kerberos"),
        "{rep}"
    );
    assert_eq!(as_reqs(&realm), before, "{}", realm.kdc_log());

    // 4. A wrong password for a configured realm: the KDC's refusal is the row (counted by the
    // lockout guard), and no NTLM logon is tried with it on top.
    let from = lab.log_records().len();
    let (code, rep) = default_scan(&realm, &dir, &lab_conf, USER, "not-the-password").await;
    assert_eq!(code, 3, "{rep}");
    assert!(
        rows(&rep)
            .iter()
            .any(|r| text(&r["error"]).contains("refused the password")),
        "{rep}"
    );
    let records = new_records(&lab, from);
    assert!(records.iter().all(|r| r.auth != "ntlm"), "{records:?}");
    lab.shutdown().await;
}
