//! Extended Protection on the HTTPS `/PowerShell` endpoint: real TLS, a real MIT ticket, and
//! the AP-REQ bound (or not) to the certificate the connection presented. The scanner's side
//! is crates/eems-scan/tests/it/org_psrp.rs (its HTTPS org query runs against this check).

use std::sync::Arc;

use base64::Engine;
use eems_lab::exchange_ps::{self, ExchangePs};
use eems_lab::kdc::{Realm, RealmSpec};
use eems_lab::kerberos::acquire_from;
use eems_lab::log::RequestLog;
use eems_lab::testkit::{PASSWORD, fleet_from_toml, fleet_toml};
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FQDN: &str = "ep01.lab.local";

/// What the client binds its ticket to.
#[derive(Clone, Copy, Debug)]
enum Bind {
    Nothing,
    /// A certificate other than the one presented: a relayed ticket.
    OtherCertificate,
    PresentedCertificate,
}

#[tokio::test]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn over_https_only_a_ticket_bound_to_the_presented_certificate_gets_in() {
    let fleet = fleet_from_toml(&fleet_toml(
        "",
        &[("EP01".into(), "127.0.74.1".into(), String::new())],
    ));
    let realm = Realm::start(RealmSpec::for_fleet(&fleet).unwrap())
        .await
        .unwrap();
    let log = Arc::new(RequestLog::new(None, true).unwrap());
    let start = |extended_protection| {
        ExchangePs::start(
            &fleet,
            &realm,
            exchange_ps::Options {
                port: 0,
                no_role: vec![],
                no_audit_role: vec![],
                log: log.clone(),
                https: true,
                extended_protection,
            },
        )
    };
    let required = start(true).await.unwrap();
    let off = start(false).await.unwrap();
    let spn = realm.service_principal(FQDN);
    let ccache = realm.dir().join("epa.ccache");
    realm
        .kinit(&realm.user_principal(), PASSWORD, &ccache, None)
        .await
        .unwrap();
    // The service ticket in the cache: the contexts below need no KDC.
    realm.kvno(&spn, &ccache).await.unwrap();
    let cred = acquire_from(
        &[("ccache", &format!("FILE:{}", ccache.display()))],
        CredUsage::Initiate,
    )
    .unwrap();

    for (ps, bind, want) in [
        (&required, Bind::Nothing, 401),
        (&required, Bind::OtherCertificate, 401),
        (&required, Bind::PresentedCertificate, 200),
        (&off, Bind::Nothing, 200),
        (&off, Bind::PresentedCertificate, 200),
    ] {
        let status = handshake(ps, &cred, &spn, bind).await;
        assert_eq!(
            status,
            want,
            "{bind:?}, Extended Protection {}: {:?}",
            std::ptr::eq(ps, &required),
            log.records()
        );
    }
    let notes: Vec<String> = log
        .records()
        .iter()
        .filter(|r| r.status == 401)
        .map(|r| r.note.clone().unwrap_or_default())
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].contains("not bound to this TLS channel"),
        "{notes:?}"
    );
    assert!(
        notes[1].to_ascii_lowercase().contains("channel binding"),
        "{notes:?}"
    );
    required.shutdown().await;
    off.shutdown().await;
}

/// One TLS connection to `ps`'s EP01, the Kerberos token bound as `bind` says, and the
/// status of the POST that carries it.
async fn handshake(ps: &ExchangePs, cred: &Cred, spn: &str, bind: Bind) -> u16 {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(ps.ca_pem.as_deref().unwrap().as_bytes()).unwrap();
    roots.add(ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let addr = ps.addr("EP01").unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(FQDN.try_into().unwrap(), tcp)
        .await
        .unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let bindings = match bind {
        Bind::Nothing => None,
        Bind::OtherCertificate => {
            let mut other = b"tls-server-end-point:".to_vec();
            other.extend_from_slice(&[0x5a; 32]);
            Some(other)
        }
        Bind::PresentedCertificate => {
            Some(eems_core::channel_binding::tls_server_end_point(&presented).unwrap())
        }
    };
    let name = Name::new(spn.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).unwrap();
    let mut ctx = ClientCtx::new(
        Some(cred.clone()),
        name,
        CtxFlags::GSS_C_MUTUAL_FLAG | CtxFlags::GSS_C_CONF_FLAG | CtxFlags::GSS_C_INTEG_FLAG,
        Some(GSS_MECH_KRB5),
    );
    let token = ctx
        .step(None, bindings.as_deref())
        .unwrap()
        .unwrap()
        .to_vec();
    let req = format!(
        "POST /PowerShell/ HTTP/1.1\r\nHost: {FQDN}\r\nAuthorization: Kerberos {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        base64::engine::general_purpose::STANDARD.encode(token)
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut buf),
    )
    .await
    .unwrap()
    .unwrap();
    String::from_utf8_lossy(&buf)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
