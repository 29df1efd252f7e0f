//! The lab's MIT realm (src/kdc.rs): a real krb5kdc on loopback, driven by the real MIT client
//! tools. Ignored (shown as such) when the tools are not installed; CI sets EEMS_REQUIRE_KDC,
//! which turns a missing KDC into a build failure instead.

use std::path::Path;

use eems_lab::kdc::{Realm, RealmSpec};
use eems_lab::testkit::{PASSWORD, demo_fleet};

#[tokio::test]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn realm_issues_tickets_for_the_lab_account_and_every_host_then_goes_away() {
    let fleet = demo_fleet(60);
    let spec = RealmSpec::for_fleet(&fleet).unwrap();
    assert_eq!(spec.realm, "LAB.LOCAL");
    assert_eq!(spec.hosts.len(), fleet.servers.len());
    let mut realm = Realm::start(spec.clone()).await.unwrap();
    let dir = realm.dir().to_path_buf();
    let kdc = realm.kdc_addr();
    assert!(kdc.ip().is_loopback());
    let cc = dir.join("user.ccache");

    // The password goes on kinit's stdin; a wrong one is refused by the KDC.
    let wrong = realm
        .kinit(&realm.user_principal(), "not-the-password", &cc, None)
        .await
        .unwrap_err();
    assert!(
        format!("{wrong:#}").contains("Password incorrect"),
        "{wrong:#}"
    );
    realm
        .kinit(&realm.user_principal(), PASSWORD, &cc, None)
        .await
        .unwrap();
    for host in &spec.hosts {
        realm
            .kvno(&realm.service_principal(host), &cc)
            .await
            .unwrap();
    }
    let unknown = realm
        .kvno(&realm.service_principal("nosuchhost.lab.local"), &cc)
        .await
        .unwrap_err();
    assert!(
        format!("{unknown:#}").contains("not found in Kerberos database"),
        "{unknown:#}"
    );
    // The keytab holds every HTTP/<fqdn> and the account: klist -k lists them.
    let klist = std::process::Command::new("klist")
        .arg("-k")
        .arg(realm.keytab())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&klist.stdout);
    for host in &spec.hosts {
        assert!(
            listing.contains(&realm.service_principal(host)),
            "{listing}"
        );
    }
    assert!(listing.contains(&realm.user_principal()), "{listing}");
    // The KDC saw those requests (it is the real one, logging to the realm's directory).
    let log = realm.kdc_log();
    assert!(log.contains("AS_REQ"), "{log}");
    assert!(log.contains("TGS_REQ"), "{log}");
    // Pre-authentication is required, so the wrong password above failed at the KDC.
    assert!(log.contains("PREAUTH_FAILED"), "{log}");

    realm.stop_kdc().await;
    assert!(
        tokio::net::TcpStream::connect(kdc).await.is_err(),
        "KDC still accepting after stop"
    );
    drop(realm);
    assert!(!Path::new(&dir).exists(), "{} left behind", dir.display());
}

#[test]
fn realm_spec_refuses_a_host_outside_the_domain() {
    let mut fleet = demo_fleet(61);
    fleet.servers[1].fqdn = Some("ex02.other.example".into());
    let err = RealmSpec::for_fleet(&fleet).unwrap_err().to_string();
    assert!(err.contains("ex02.other.example"), "{err}");
}

/// Names reach kadmin.local's command stream: one that could inject a command is refused
/// before any tool runs.
#[tokio::test]
async fn realm_refuses_names_that_could_inject_kadmin_commands() {
    let mut spec = RealmSpec::for_fleet(&demo_fleet(69)).unwrap();
    spec.hosts[0] = "ex01.lab.local\ndelprinc -force K/M".into();
    let err = Realm::start(spec).await.err().unwrap().to_string();
    assert!(
        err.contains("host FQDN") && err.contains("delprinc"),
        "{err}"
    );
}
