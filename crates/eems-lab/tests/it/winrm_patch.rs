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
    /// password, in memory, handed to winrm-rs; the lab (started without a realm)
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

    const WIRE_TEST: &str =
        "winrm_patch::kerberos::winrm_rs_kerberos_and_the_lab_acceptor_seal_for_each_other";
    /// The fault text the responder seals back: winrm-rs can only report it if it unsealed it.
    const FAULT_TEXT: &str = "lab-kerberos-wire-check";

    /// What a Windows listener does, cut to the Kerberos part: the AP-REQ on an empty-body
    /// request gets 200 with the AP-REP; a sealed request is unsealed with the connection's
    /// context and answered with a sealed SOAP fault (HTTP 500, as Windows answers faults).
    async fn responder(
        acceptor: eems_lab::kerberos::Acceptor,
        seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        tls: Option<eems_lab::tls::HostTls>,
    ) -> std::net::SocketAddr {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD as B64;
        use eems_core::sealing::Protocol;
        use http_body_util::{BodyExt, Full};
        use hyper::{Response, StatusCode};
        use std::sync::{Arc, Mutex};

        // Over HTTPS the AP-REQ must be bound to this certificate (RFC 5929).
        let bindings = tls
            .as_ref()
            .map(|t| eems_core::channel_binding::tls_server_end_point(&t.cert_der).unwrap());
        let tls = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.config));
        let listener = tokio::net::TcpListener::bind("127.0.68.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // Bounded: the child makes a handful of connections at most.
            for _ in 0..16 {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let ctx = Arc::new(Mutex::new(acceptor.context()));
                let seen = seen.clone();
                let bindings = bindings.clone();
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let ctx = ctx.clone();
                        let seen = seen.clone();
                        let bindings = bindings.clone();
                        async move {
                            let auth = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.strip_prefix("Negotiate "))
                                .map(|t| B64.decode(t.trim()).unwrap());
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let mut ctx = ctx.lock().unwrap();
                            let mut resp = Response::builder();
                            let out = if auth.is_none() && body.is_empty() {
                                // The unauthenticated probe winrm-rs sends over HTTPS to learn
                                // the certificate: Windows answers 401 and closes.
                                resp.status(StatusCode::UNAUTHORIZED)
                                    .header("WWW-Authenticate", "Negotiate")
                                    .header("Connection", "close")
                                    .body(Full::new(bytes::Bytes::new()))
                            } else if let Some(token) = auth {
                                let reply = ctx.step(&token, bindings.as_deref()).unwrap();
                                assert!(ctx.is_established());
                                assert_eq!(ctx.channel_bound(), bindings.is_some());
                                seen.lock().unwrap().push(format!(
                                    "client {}",
                                    ctx.client_principal().unwrap_or_default()
                                ));
                                if let Some(r) = reply {
                                    resp = resp.header(
                                        "WWW-Authenticate",
                                        format!("Negotiate {}", B64.encode(r)),
                                    );
                                }
                                resp.status(StatusCode::OK)
                                    .body(Full::new(bytes::Bytes::new()))
                            } else {
                                let plain = ctx.unseal(&body, Protocol::Spnego).unwrap();
                                let plain = String::from_utf8(plain).unwrap();
                                let id = plain
                                    .split_once("MessageID>")
                                    .and_then(|(_, rest)| rest.split_once('<'))
                                    .map(|(id, _)| id.to_string())
                                    .unwrap_or_default();
                                seen.lock().unwrap().push(plain);
                                let fault = format!(
                                    "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
                                 xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\">\
                                 <s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action>\
                                 <a:RelatesTo>{id}</a:RelatesTo></s:Header><s:Body><s:Fault>\
                                 <s:Code><s:Value>s:Receiver</s:Value></s:Code>\
                                 <s:Reason><s:Text>{FAULT_TEXT}</s:Text></s:Reason>\
                                 </s:Fault></s:Body></s:Envelope>"
                                );
                                let sealed = ctx.seal(fault.as_bytes(), Protocol::Spnego).unwrap();
                                resp.status(StatusCode::INTERNAL_SERVER_ERROR)
                                    .header("Content-Type", Protocol::Spnego.content_type())
                                    .body(Full::new(bytes::Bytes::from(sealed)))
                            };
                            Ok::<_, std::convert::Infallible>(out.unwrap())
                        }
                    },
                );
                let tls = tls.clone();
                tokio::spawn(async move {
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            let _ = http
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                .await;
                        }
                        None => {
                            let _ = http
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                .await;
                        }
                    }
                });
            }
        });
        addr
    }

    /// The child's half of the wire check: a scan-like client with the password credential.
    async fn wire_child() {
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
        let ca = std::env::var_os("EEMS_TEST_CA");
        let base = if ca.is_some() {
            // As the scanner does over HTTPS: sealed inside TLS too.
            WinrmConfig {
                encryption: winrm_rs::EncryptionMode::Always,
                ..WinrmConfig::https()
            }
        } else {
            WinrmConfig::http()
        };
        let mut builder = WinrmClient::builder(WinrmConfig {
            port: Some(var("EEMS_TEST_PORT").parse().unwrap()),
            operation_timeout_secs: 5,
            auth_method: AuthMethod::Kerberos,
            resolve: vec![(fqdn.clone(), var("EEMS_TEST_ADDR").parse().unwrap())],
            kerberos_credential: Some(cred),
            ..base
        })
        .credentials(WinrmCredentials::new("", "", ""));
        if let Some(ca) = ca {
            builder = builder.add_root_certificates_pem(std::path::PathBuf::from(ca));
        }
        let client = builder.build().unwrap();
        let err = client.open_shell(&fqdn).await.err().unwrap().to_string();
        assert!(err.contains(FAULT_TEXT), "{err}");
    }

    /// winrm-rs's Kerberos (raw krb5 under `Negotiate`, mutual authentication, MS-WSMV sealing
    /// over HTTP) against the lab's acceptor and sealing: the lab unseals winrm-rs's request
    /// and winrm-rs unseals the lab's answer. The last piece before http.rs serves Kerberos.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        eems_no_kdc,
        ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
    )]
    async fn winrm_rs_kerberos_and_the_lab_acceptor_seal_for_each_other() {
        if in_child() {
            wire_child().await;
            return;
        }
        wire_check(WIRE_TEST, 68, false).await;
    }

    /// The same over HTTPS, as the scanner runs it (sealed inside TLS): winrm-rs learns the
    /// certificate, verifies it for the FQDN, and binds its AP-REQ to it; the acceptor checks
    /// the binding against its own certificate.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        eems_no_kdc,
        ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
    )]
    async fn over_https_the_ap_req_is_bound_to_the_lab_certificate() {
        if in_child() {
            wire_child().await;
            return;
        }
        wire_check(
            "winrm_patch::kerberos::over_https_the_ap_req_is_bound_to_the_lab_certificate",
            71,
            true,
        )
        .await;
    }

    async fn wire_check(test: &'static str, octet: u8, https: bool) {
        let fleet = demo_fleet(octet);
        let realm = Realm::start(RealmSpec::for_fleet(&fleet).unwrap())
            .await
            .unwrap();
        let server = &fleet.servers[0];
        let fqdn = server.fqdn();
        let acceptor = eems_lab::kerberos::Acceptor::from_keytab(
            &realm.keytab(),
            &realm.service_principal(&fqdn),
        )
        .unwrap();
        let mut env = realm.client_env();
        let tls = if https {
            let pki = eems_lab::tls::LabPki::new("Kerberos").unwrap();
            let ca = realm.dir().join("ca.pem");
            std::fs::write(&ca, pki.ca_pem()).unwrap();
            env.push(("EEMS_TEST_CA", ca.into_os_string()));
            Some(
                pki.host(&server.name, &fqdn, "127.0.68.1".parse().unwrap())
                    .unwrap(),
            )
        } else {
            None
        };
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let addr = responder(acceptor, seen.clone(), tls).await;
        env.push(("EEMS_TEST_FQDN", OsString::from(&fqdn)));
        env.push(("EEMS_TEST_ADDR", OsString::from(addr.ip().to_string())));
        env.push(("EEMS_TEST_PORT", OsString::from(addr.port().to_string())));
        tokio::task::spawn_blocking(move || run_in_child(test, &env))
            .await
            .unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.first().map(String::as_str),
            Some("client administrator@LAB.LOCAL")
        );
        assert!(
            seen.iter()
                .any(|s| s.contains("http://schemas.xmlsoap.org/ws/2004/09/transfer/Create")),
            "{seen:?}"
        );
    }

    const LAB_TEST: &str =
        "winrm_patch::kerberos::the_lab_serves_winrm_rs_kerberos_with_ntlm_blocked";

    /// The child: winrm-rs with a password credential opens and closes a shell over HTTP
    /// (sealed with the Kerberos session) and over HTTPS (bound to the certificate), then an
    /// NTLM client is refused by the same host.
    async fn lab_child() {
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
        let addr: IpAddr = var("EEMS_TEST_ADDR").parse().unwrap();
        for (port, base) in [
            ("EEMS_TEST_PORT", WinrmConfig::http()),
            (
                "EEMS_TEST_TLS_PORT",
                WinrmConfig {
                    encryption: winrm_rs::EncryptionMode::Always,
                    ..WinrmConfig::https()
                },
            ),
        ] {
            let client = WinrmClient::builder(WinrmConfig {
                port: Some(var(port).parse().unwrap()),
                operation_timeout_secs: 5,
                auth_method: AuthMethod::Kerberos,
                resolve: vec![(fqdn.clone(), addr)],
                kerberos_credential: Some(cred.clone()),
                ..base
            })
            .credentials(WinrmCredentials::new("", "", ""))
            .add_root_certificates_pem(std::path::PathBuf::from(var("EEMS_TEST_CA")))
            .build()
            .unwrap();
            let shell = client.open_shell(&fqdn).await.unwrap();
            shell.close().await.unwrap();
        }
        let (domain, user) = USER.split_once('\\').unwrap();
        let ntlm = WinrmClient::new(
            WinrmConfig {
                port: Some(var("EEMS_TEST_PORT").parse().unwrap()),
                operation_timeout_secs: 5,
                resolve: vec![(fqdn.clone(), addr)],
                ..WinrmConfig::http()
            },
            WinrmCredentials::new(user, PASSWORD, domain),
        )
        .unwrap();
        assert!(ntlm.open_shell(&fqdn).await.is_err());
    }

    /// The lab's own listener (http.rs) with the realm's keytab and `ntlm = false`: Kerberos
    /// authenticates, seals and binds; the log names the mechanism of every request, and the
    /// only NTLM token is the one it refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        eems_no_kdc,
        ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
    )]
    async fn the_lab_serves_winrm_rs_kerberos_with_ntlm_blocked() {
        if in_child() {
            lab_child().await;
            return;
        }
        let mut fleet = demo_fleet(72);
        fleet.listener.ntlm = false;
        fleet.listener.cbt_hardening = "Strict".into();
        let server = fleet.servers[0].clone();
        let realm = Realm::start(RealmSpec::for_fleet(&fleet).unwrap())
            .await
            .unwrap();
        let dir = scratch(Path::new(env!("CARGO_TARGET_TMPDIR")), "winrm-patch-lab");
        let lab = eems_lab::testkit::start_kerberos_lab(fleet.clone(), &dir, &realm).await;
        let mut env = realm.client_env();
        env.push(("EEMS_TEST_FQDN", OsString::from(server.fqdn())));
        env.push(("EEMS_TEST_ADDR", OsString::from(server.address.to_string())));
        env.push((
            "EEMS_TEST_PORT",
            OsString::from(server.http_port(&fleet.listener).to_string()),
        ));
        env.push((
            "EEMS_TEST_TLS_PORT",
            OsString::from(server.https_port(&fleet.listener).to_string()),
        ));
        env.push(("EEMS_TEST_CA", dir.join("ca.pem").into_os_string()));
        tokio::task::spawn_blocking(move || run_in_child(LAB_TEST, &env))
            .await
            .unwrap();
        let records = lab.log_records();
        let served: Vec<_> = records.iter().filter(|r| r.status == 200).collect();
        for tls in [false, true] {
            let creates = served
                .iter()
                .filter(|r| r.tls == tls && r.action.as_deref() == Some("Create"))
                .count();
            assert_eq!(creates, 1, "tls={tls}: {records:?}");
        }
        assert!(served.iter().all(|r| r.auth == "kerberos"), "{records:?}");
        assert!(
            served
                .iter()
                .filter(|r| !r.tls)
                .all(|r| r.sealed || r.action.is_none()),
            "{records:?}"
        );
        let ntlm: Vec<_> = records.iter().filter(|r| r.auth == "ntlm").collect();
        assert!(
            !ntlm.is_empty() && ntlm.iter().all(|r| r.status == 401 && r.step == "rejected"),
            "{records:?}"
        );
        assert!(
            records
                .iter()
                .any(|r| r.user.as_deref() == Some(r"LAB\administrator") && r.auth == "kerberos"),
            "{records:?}"
        );
        lab.shutdown().await;
    }
}
