//! Independent-client check of the `/PowerShell` endpoint (issue 10): pypsrp with Kerberos,
//! `configuration_name="Microsoft.Exchange"`, `path="PowerShell/"` (tests/pypsrp/check_exchange.py).
//!
//! Needs a Python with `pypsrp[kerberos]` (`.venv/bin/python`, which .ci/run creates, or
//! EEMS_PYTHON) and MIT Kerberos, so it is ignored in a plain `cargo test` and run by .ci/run
//! with `--ignored`.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use eems_lab::exchange_ps::{self, ExchangePs};
use eems_lab::kdc::{Realm, RealmSpec};
use eems_lab::log::RequestLog;
use eems_lab::testkit::{PASSWORD, fleet_from_toml, fleet_toml};

use crate::pywinrm::python_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pypsrp[kerberos] in .venv and MIT Kerberos: .ci/run runs it with --ignored"]
async fn pypsrp_runs_the_cmdlets_over_kerberos_and_script_text_is_refused() {
    let py = python_with("pypsrp, gssapi").expect(
        "no Python with pypsrp[kerberos]: create .venv as .ci/run does, or point EEMS_PYTHON at one",
    );
    // One EEMS change within 90 days, one older: Search-AdminAuditLog must filter by StartDate.
    let fleet = fleet_from_toml(&fleet_toml(
        r#"admin_audit = [
  { caller = "lab.local/Users/bob", hours_ago = 20.0, cmdlet_name = "Set-OrganizationConfig", object_modified = "Fabrikam", parameters = [{ name = "MitigationsEnabled", value = "False" }] },
  { caller = "lab.local/Users/dave", hours_ago = 2400.0, cmdlet_name = "Set-OrganizationConfig", object_modified = "Fabrikam", parameters = [{ name = "MitigationsEnabled", value = "True" }] },
]"#,
        &[
            ("PS01".into(), "127.0.72.1".into(), String::new()),
            ("PS02".into(), "127.0.72.2".into(), String::new()),
        ],
    ));
    let realm = Realm::start(RealmSpec::for_fleet(&fleet).unwrap())
        .await
        .unwrap();
    let log = Arc::new(RequestLog::new(None, true).unwrap());
    let start = |https| {
        ExchangePs::start(
            &fleet,
            &realm,
            exchange_ps::Options {
                port: 0,
                no_role: vec![],
                no_audit_role: vec![],
                log: log.clone(),
                https,
                extended_protection: true,
            },
        )
    };
    let ps = start(false).await.unwrap();
    let tls = start(true).await.unwrap();
    let ccache = realm.dir().join("pypsrp.ccache");
    realm
        .kinit(&realm.user_principal(), PASSWORD, &ccache, None)
        .await
        .unwrap();
    let ca = realm.dir().join("pypsrp-ca.pem");
    std::fs::write(&ca, tls.ca_pem.as_deref().unwrap()).unwrap();
    let addr = ps.addr("PS01").unwrap();
    check_with_pypsrp(&py, &realm, &ccache, addr, None).await;
    // HTTPS under Extended Protection: pyspnego binds the ticket to the certificate, as the
    // lab requires, so this also checks the lab's binding against an independent client's.
    check_with_pypsrp(&py, &realm, &ccache, tls.addr("PS01").unwrap(), Some(&ca)).await;
    assert!(
        log.records()
            .iter()
            .any(|r| r.tls && r.auth == exchange_ps::AUTH_KERBEROS && r.status == 200),
        "no Kerberos request over HTTPS got in"
    );
    tls.shutdown().await;
    // What pypsrp sent: Kerberos, sealed, and the script text visible as such in the log.
    let records = log.records();
    assert!(
        records
            .iter()
            .any(|r| r.auth == exchange_ps::AUTH_KERBEROS && r.sealed)
    );
    let probes: Vec<_> = records.iter().filter_map(|r| r.probe.clone()).collect();
    assert!(
        probes.iter().any(|p| p.starts_with("script:")),
        "{probes:?}"
    );
    // Raw requests: NTLM (bare or in SPNEGO) and Basic get 401, another path 404.
    let ntlm = "TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAF1YAAAADw==";
    for (path, authz, want) in [
        ("/PowerShell/", format!("Negotiate {ntlm}"), "401"),
        ("/PowerShell/", format!("Kerberos {ntlm}"), "401"),
        (
            "/PowerShell/",
            "Basic TEFCXGFkbWluaXN0cmF0b3I6eA==".to_string(),
            "401",
        ),
        ("/wsman", "Kerberos AAAA".to_string(), "404"),
    ] {
        let status = raw_status(addr, path, &authz).await;
        assert_eq!(status, want, "{path} {authz}");
    }
    let records = log.records();
    assert!(
        records.iter().any(|r| r.auth == "ntlm"
            && r.status == 401
            && r.note.as_deref().unwrap_or("").contains("Kerberos only")),
        "{records:?}"
    );
    ps.shutdown().await;
}

/// Runs tests/pypsrp/check_exchange.py against `addr` (HTTPS trusting `ca` when given).
async fn check_with_pypsrp(
    py: &Path,
    realm: &Realm,
    ccache: &Path,
    addr: std::net::SocketAddr,
    ca: Option<&Path>,
) {
    let mut env = realm.client_env();
    env.push(("KRB5CCNAME", format!("FILE:{}", ccache.display()).into()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pypsrp/check_exchange.py");
    let mut args: Vec<OsString> = vec![
        script.into(),
        addr.ip().to_string().into(),
        addr.port().to_string().into(),
        "ps01.lab.local".into(),
        "Fabrikam".into(),
        "2".into(),
    ];
    args.extend(ca.map(OsString::from));
    let py = py.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&py)
            .args(args)
            .envs(env)
            .output()
            .expect("a Python with pypsrp (.venv/bin/python or EEMS_PYTHON)")
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("pypsrp: all checks passed"),
        "{} {text}",
        if ca.is_some() { "HTTPS" } else { "HTTP" }
    );
}

/// The status code of one raw HTTP/1.1 POST with an empty body.
async fn raw_status(addr: std::net::SocketAddr, path: &str, authz: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: ps01.lab.local\r\nAuthorization: {authz}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf)
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_string()
}
