//! The two seams of the in-tree winrm-rs patch (patches/winrm-rs/PATCH.md) that Kerberos
//! needs, against the lab: connect-to (the URL names the FQDN, TCP goes to the address) and a
//! caller's Kerberos credential (a TGT from the password, in memory, no ticket cache).

use std::net::IpAddr;
use std::path::Path;

use eems_lab::testkit::{PASSWORD, USER, demo_fleet, scratch, start_lab};
use winrm_rs::{WinrmClient, WinrmConfig, WinrmCredentials};

/// `ex01.lab.local` is in no DNS: the scan works only because the connection goes to the
/// server's loopback address, while NTLM and, over HTTPS, certificate verification see the FQDN.
#[tokio::test]
async fn connect_to_keeps_the_fqdn_in_the_url_and_dials_the_address() {
    let fleet = demo_fleet(66);
    let server = fleet.servers[0].clone();
    let (fqdn, ip) = (server.fqdn(), IpAddr::V4(server.address));
    let dir = scratch(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "winrm-patch-connect-to",
    );
    let lab = start_lab(fleet.clone(), &dir).await;
    let (domain, user) = USER.split_once('\\').unwrap();

    let http = WinrmClient::new(
        WinrmConfig {
            port: Some(server.http_port(&fleet.listener)),
            operation_timeout_secs: 5,
            resolve: vec![(fqdn.clone(), ip)],
            ..WinrmConfig::http()
        },
        WinrmCredentials::new(user, PASSWORD, domain),
    )
    .unwrap();
    let https = WinrmClient::builder(WinrmConfig {
        port: Some(server.https_port(&fleet.listener)),
        operation_timeout_secs: 5,
        resolve: vec![(fqdn.clone(), ip)],
        ..WinrmConfig::https()
    })
    .credentials(WinrmCredentials::new(user, PASSWORD, domain))
    .add_root_certificates_pem(dir.join("ca.pem"))
    .build()
    .unwrap();
    for client in [&http, &https] {
        let shell = client.open_shell(&fqdn).await.unwrap();
        shell.close().await.unwrap();
    }
    // Without the override the name does not resolve: the seam is what made it work.
    let plain = WinrmClient::new(
        WinrmConfig {
            port: Some(server.http_port(&fleet.listener)),
            operation_timeout_secs: 5,
            connect_timeout_secs: 5,
            ..WinrmConfig::http()
        },
        WinrmCredentials::new(user, PASSWORD, domain),
    )
    .unwrap();
    assert!(plain.open_shell(&fqdn).await.is_err());
    let served: Vec<_> = lab
        .log_records()
        .into_iter()
        .filter(|r| r.status == 200)
        .map(|r| r.server)
        .collect();
    assert!(
        !served.is_empty() && served.iter().all(|s| *s == server.name),
        "{served:?}"
    );
    lab.shutdown().await;
}

#[cfg(feature = "kerberos")]
mod kerberos {
    use super::*;
    use eems_lab::kdc::{Realm, RealmSpec};
    use eems_lab::testkit::{in_child, run_in_child};
    use libgssapi::credential::{Cred, CredUsage};
    use libgssapi::name::Name;
    use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL, OidSet};
    use std::ffi::OsString;
    use winrm_rs::AuthMethod;

    const THIS_TEST: &str = "winrm_patch::kerberos::a_password_credential_asks_the_kdc_for_http_fqdn_and_dials_the_address";

    fn var(name: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
    }

    /// The child's half (libkrb5 reads KRB5_CONFIG from the environment): a TGT from the
    /// password, in memory, handed to winrm-rs; the lab (no Kerberos acceptor wired yet)
    /// refuses the token, which proves the request got there.
    async fn child() {
        let name = Name::new(b"administrator@LAB.LOCAL", Some(GSS_NT_KRB5_PRINCIPAL)).unwrap();
        let mut mechs = OidSet::new();
        mechs.add(GSS_MECH_KRB5).unwrap();
        let cred = Cred::acquire_with_password(
            Some(&name),
            PASSWORD,
            None,
            CredUsage::Initiate,
            Some(&mechs),
        )
        .unwrap();
        let fqdn = var("EEMS_TEST_FQDN");
        let client = WinrmClient::new(
            WinrmConfig {
                port: Some(var("EEMS_TEST_PORT").parse().unwrap()),
                operation_timeout_secs: 5,
                auth_method: AuthMethod::Kerberos,
                resolve: vec![(fqdn.clone(), var("EEMS_TEST_ADDR").parse().unwrap())],
                kerberos_credential: Some(cred),
                ..WinrmConfig::http()
            },
            WinrmCredentials::new("", "", ""),
        )
        .unwrap();
        let err = client.open_shell(&fqdn).await.err().unwrap().to_string();
        assert!(err.contains("Kerberos authentication rejected"), "{err}");
    }

    #[tokio::test]
    #[cfg_attr(
        eems_no_kdc,
        ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
    )]
    async fn a_password_credential_asks_the_kdc_for_http_fqdn_and_dials_the_address() {
        if in_child() {
            child().await;
            return;
        }
        let fleet = demo_fleet(67);
        let server = fleet.servers[0].clone();
        let realm = Realm::start(RealmSpec::for_fleet(&fleet).unwrap())
            .await
            .unwrap();
        let dir = scratch(
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            "winrm-patch-kerberos",
        );
        let lab = start_lab(fleet.clone(), &dir).await;
        let ccache = realm.dir().join("must-not-exist.ccache");
        let mut env = realm.client_env();
        env.push(("KRB5CCNAME", format!("FILE:{}", ccache.display()).into()));
        env.push(("EEMS_TEST_FQDN", OsString::from(server.fqdn())));
        env.push(("EEMS_TEST_ADDR", OsString::from(server.address.to_string())));
        env.push((
            "EEMS_TEST_PORT",
            OsString::from(server.http_port(&fleet.listener).to_string()),
        ));
        // The lab runs on this runtime: wait for the child off it.
        tokio::task::spawn_blocking(move || run_in_child(THIS_TEST, &env))
            .await
            .unwrap();
        // The KDC issued a ticket for HTTP/<fqdn> to the lab account...
        let log = realm.kdc_log();
        let spn = realm.service_principal(&server.fqdn());
        assert!(
            log.lines().any(|l| l.contains("TGS_REQ")
                && l.contains("ISSUE")
                && l.contains(&realm.user_principal())
                && l.contains(&spn)),
            "{log}"
        );
        // ...the request reached that server's address...
        let records = lab.log_records();
        assert!(
            records
                .iter()
                .any(|r| r.server == server.name && r.status == 401),
            "{records:?}"
        );
        // ...and no ticket cache was written: the TGT lived in the child's memory.
        assert!(!ccache.exists());
        lab.shutdown().await;
    }
}
