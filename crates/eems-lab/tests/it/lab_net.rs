//! End to end: the real client (winrm-rs 2.0.1) against the in-process lab's network layer.
//!
//! Every test uses its own 127.0.77.x address and ports picked free at start, so the tests can
//! run in parallel with each other and with other suites. The assertions stay on what the
//! listener owns (authentication, sealing, status codes, the request log, a full WinRS cycle
//! ending with exit code 0), not on script output.

use eems_lab::fleet::Fleet;
use eems_lab::log::LogRecord;
use eems_lab::{Lab, LabOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use winrm_rs::{
    AuthMethod, EncryptionMode, WinrmClient, WinrmConfig, WinrmCredentials, WinrmError,
};

const USER: &str = "administrator";
const PASSWORD: &str = "Lab-Passw0rd!";

fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One host at `ip`, with extra `[listener]` lines and `[server.faults]` lines.
struct Setup {
    ip: Ipv4Addr,
    http: u16,
    https: u16,
    fleet: Fleet,
}

fn setup(last_octet: u8, listener: &str, faults: &str) -> Setup {
    let ip = Ipv4Addr::new(127, 0, 77, last_octet);
    let (http, https) = (free_port(ip), free_port(ip));
    let text = format!(
        "[org]\nname = \"Contoso\"\n\n[listener]\nhttp_port = {http}\nhttps_port = {https}\n{listener}\n\n\
         [[server]]\nname = \"EX{last_octet:02}\"\naddress = \"{ip}\"\n\n[server.faults]\n{faults}\n"
    );
    let fleet: Fleet = toml::from_str(&text).unwrap();
    Setup {
        ip,
        http,
        https,
        fleet,
    }
}

async fn start(fleet: Fleet) -> Lab {
    Lab::start(
        fleet,
        LabOptions {
            log_path: None,
            keep_log_in_memory: true,
        },
    )
    .await
    .unwrap()
}

fn http_client(port: u16, user: &str, password: &str, domain: &str) -> WinrmClient {
    let cfg = WinrmConfig {
        port: Some(port),
        operation_timeout_secs: 5,
        ..WinrmConfig::http()
    };
    WinrmClient::new(cfg, WinrmCredentials::new(user, password, domain)).unwrap()
}

/// Plain HTTP with `EncryptionMode::Never`: SOAP bodies travel in plaintext.
fn unsealed_http_client(port: u16, auth: AuthMethod) -> WinrmClient {
    let cfg = WinrmConfig {
        port: Some(port),
        operation_timeout_secs: 5,
        encryption: EncryptionMode::Never,
        auth_method: auth,
        ..WinrmConfig::http()
    };
    WinrmClient::new(cfg, WinrmCredentials::new(USER, PASSWORD, "LAB")).unwrap()
}

fn ca_file(lab: &Lab, name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("eems-lab-net-{}-{name}.pem", std::process::id()));
    std::fs::write(&p, lab.ca_pem()).unwrap();
    p
}

fn https_client(lab: &Lab, port: u16, auth: AuthMethod, user: &str, domain: &str) -> WinrmClient {
    let cfg = WinrmConfig {
        port: Some(port),
        operation_timeout_secs: 5,
        auth_method: auth,
        ..WinrmConfig::https()
    };
    WinrmClient::builder(cfg)
        .credentials(WinrmCredentials::new(user, PASSWORD, domain))
        .add_root_certificates_pem(ca_file(lab, &format!("{port}")))
        .build()
        .unwrap()
}

/// Runs the scanner's host probe: the lab answers it (a script without a probe marker
/// fails like an unknown PowerShell command).
async fn run(client: &WinrmClient, ip: Ipv4Addr) -> Result<winrm_rs::CommandOutput, WinrmError> {
    let script = eems_core::probe::host_script(&eems_core::probe::HostProbeParams {
        ocs_url: "https://officeclient.microsoft.com/GetExchangeMitigations",
        proxy: None,
        ocs_timeout_secs: 5,
    })
    .expect("probe fits");
    client
        .run_powershell_with_timeout(&ip.to_string(), &script, Duration::from_secs(30))
        .await
}

fn actions(log: &[LogRecord]) -> Vec<String> {
    log.iter().filter_map(|r| r.action.clone()).collect()
}

fn assert_full_cycle(log: &[LogRecord]) {
    let a = actions(log);
    for op in ["Create", "Command", "Receive", "Signal", "Delete"] {
        assert!(a.iter().any(|x| x == op), "{op} missing from {a:?}");
    }
}

#[tokio::test]
async fn ntlm_sealed_over_http_runs_a_full_cycle_without_plaintext() {
    let s = setup(1, "", "");
    let lab = start(s.fleet).await;
    let out = run(&http_client(s.http, USER, PASSWORD, "LAB"), s.ip)
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(lab.open_shells(), 0);

    let log = lab.log_records();
    assert_full_cycle(&log);
    assert!(
        log.iter().all(|r| !r.plaintext_soap),
        "plaintext SOAP crossed HTTP: {log:?}"
    );
    assert!(log.iter().all(|r| !r.tls));
    // Every WinRS operation travelled sealed, as the authenticated Windows user.
    for r in log.iter().filter(|r| r.action.is_some()) {
        assert!(r.sealed && r.status == 200 && r.auth == "ntlm", "{r:?}");
        assert_eq!(r.user.as_deref(), Some("LAB\\administrator"));
    }
    // At most one handshake per connection: as many distinct connections as challenges.
    let challenges: Vec<u64> = log
        .iter()
        .filter(|r| r.step == "challenge")
        .map(|r| r.conn)
        .collect();
    let conns: std::collections::HashSet<u64> = challenges.iter().copied().collect();
    assert!(
        !challenges.is_empty() && conns.len() == challenges.len(),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|r| r.step == "authenticated" && r.status == 200 && !r.sealed)
    );
    lab.shutdown().await;
}

#[tokio::test]
async fn ntlm_over_https_checks_channel_binding_under_strict() {
    // Strict requires the binding and a match: success proves the client's CBT was right.
    let s = setup(2, "cbt_hardening = \"Strict\"", "");
    let lab = start(s.fleet).await;
    let client = https_client(&lab, s.https, AuthMethod::Ntlm, USER, "LAB");
    let out = run(&client, s.ip).await.unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(lab.open_shells(), 0);
    let log = lab.log_records();
    assert_full_cycle(&log);
    assert!(log.iter().all(|r| r.tls && r.auth == "ntlm"), "{log:?}");
    assert!(log.iter().all(|r| r.step != "rejected"), "{log:?}");
    lab.shutdown().await;
}

#[tokio::test]
async fn upn_over_https_and_basic_over_https() {
    let s = setup(3, "", "");
    let lab = start(s.fleet).await;
    let upn = https_client(
        &lab,
        s.https,
        AuthMethod::Ntlm,
        "Administrator@lab.local",
        "",
    );
    assert_eq!(run(&upn, s.ip).await.unwrap().exit_code, 0);

    let basic = https_client(&lab, s.https, AuthMethod::Basic, "LAB\\Administrator", "");
    assert_eq!(run(&basic, s.ip).await.unwrap().exit_code, 0);
    let log = lab.log_records();
    let b: Vec<_> = log.iter().filter(|r| r.auth == "basic").collect();
    assert!(!b.is_empty());
    assert!(
        b.iter()
            .all(|r| r.tls && r.user.as_deref() == Some("LAB\\administrator")),
        "{b:?}"
    );
    assert_eq!(lab.open_shells(), 0);
    lab.shutdown().await;
}

#[tokio::test]
async fn wrong_password_unknown_user_and_fault_are_auth_errors() {
    let s = setup(4, "", "");
    let lab = start(s.fleet).await;
    let err = run(&http_client(s.http, USER, "wrong", "LAB"), s.ip)
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::AuthFailed(_)), "{err:?}");
    let err = run(&http_client(s.http, "nobody", PASSWORD, "LAB"), s.ip)
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::AuthFailed(_)), "{err:?}");
    let log = lab.log_records();
    assert!(log.iter().any(|r| {
        r.step == "rejected"
            && r.note
                .as_deref()
                .is_some_and(|n| n.contains("wrong password"))
    }));
    assert!(log.iter().any(|r| {
        r.step == "rejected"
            && r.note
                .as_deref()
                .is_some_and(|n| n.contains("unknown user"))
    }));
    assert!(log.iter().all(|r| r.action.is_none()));
    lab.shutdown().await;

    let s = setup(5, "", "wrong_password = true");
    let lab = start(s.fleet).await;
    let err = run(&http_client(s.http, USER, PASSWORD, "LAB"), s.ip)
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::AuthFailed(_)), "{err:?}");
    lab.shutdown().await;
}

#[tokio::test]
async fn plaintext_and_basic_over_http_are_refused() {
    let s = setup(6, "", "");
    let lab = start(s.fleet).await;
    // NTLM without sealing: the body rides on the Type 3 in plaintext, Windows says 401.
    let client = unsealed_http_client(s.http, AuthMethod::Ntlm);
    assert!(matches!(
        run(&client, s.ip).await.unwrap_err(),
        WinrmError::AuthFailed(_)
    ));
    let client = unsealed_http_client(s.http, AuthMethod::Basic);
    assert!(run(&client, s.ip).await.is_err());

    let log = lab.log_records();
    let refused = log.iter().find(|r| {
        r.note
            .as_deref()
            .is_some_and(|n| n.contains("AllowUnencrypted=false") && n.contains("plaintext"))
    });
    let refused = refused.unwrap_or_else(|| panic!("{log:?}"));
    assert!(refused.plaintext_soap && refused.status == 401 && refused.action.is_none());
    assert!(
        log.iter()
            .any(|r| r.auth == "basic" && r.step == "rejected" && r.status == 401)
    );
    assert_eq!(lab.open_shells(), 0);
    lab.shutdown().await;
}

#[tokio::test]
async fn allow_unencrypted_accepts_plaintext_and_a_500_knob_refuses_it() {
    let s = setup(7, "allow_unencrypted = true", "");
    let lab = start(s.fleet).await;
    let client = unsealed_http_client(s.http, AuthMethod::Ntlm);
    assert_eq!(run(&client, s.ip).await.unwrap().exit_code, 0);
    assert!(
        lab.log_records()
            .iter()
            .any(|r| r.plaintext_soap && r.status == 200)
    );
    lab.shutdown().await;

    let s = setup(8, "plaintext_refusal_status = 500", "");
    let lab = start(s.fleet).await;
    let client = unsealed_http_client(s.http, AuthMethod::Ntlm);
    assert!(run(&client, s.ip).await.is_err());
    assert!(
        lab.log_records()
            .iter()
            .any(|r| r.plaintext_soap && r.status == 500)
    );
    lab.shutdown().await;
}

#[tokio::test]
async fn down_is_a_connect_error_and_hang_is_cut_by_the_client_without_blocking_others() {
    let mut s = setup(9, "", "down = true");
    let hang = setup(10, "", "hang = true");
    let healthy = setup(11, "", "");
    for other in [&hang, &healthy] {
        let mut srv = other.fleet.servers[0].clone();
        srv.http_port = Some(other.http);
        srv.https_port = Some(other.https);
        s.fleet.servers.push(srv);
    }
    let lab = start(s.fleet).await;

    let err = run(&http_client(s.http, USER, PASSWORD, "LAB"), s.ip)
        .await
        .unwrap_err();
    assert!(matches!(err, WinrmError::Http(_)), "{err:?}");

    let cfg = WinrmConfig {
        port: Some(hang.http),
        operation_timeout_secs: 1,
        ..WinrmConfig::http()
    };
    let hang_client = WinrmClient::new(cfg, WinrmCredentials::new(USER, PASSWORD, "LAB")).unwrap();
    let healthy_client = http_client(healthy.http, USER, PASSWORD, "LAB");
    let started = Instant::now();
    let hung = async {
        let r = hang_client
            .run_powershell_with_timeout(&hang.ip.to_string(), "hostname", Duration::from_secs(3))
            .await;
        (r, started.elapsed())
    };
    let other = async {
        let r = run(&healthy_client, healthy.ip).await;
        (r, started.elapsed())
    };
    let ((hung, hung_after), (ok, ok_after)) = tokio::join!(hung, other);
    assert!(hung.is_err(), "{hung:?}");
    assert!(hung_after < Duration::from_secs(30), "{hung_after:?}");
    assert_eq!(ok.unwrap().exit_code, 0);
    assert!(
        ok_after < Duration::from_secs(3),
        "healthy host waited {ok_after:?}"
    );
    // The hung host never logged a request: it never answered one.
    assert!(lab.log_records().iter().all(|r| r.server != "EX10"));
    lab.shutdown().await;
}

#[tokio::test]
async fn http500_drop_mid_response_and_latency() {
    let s = setup(12, "", "http500 = true");
    let lab = start(s.fleet).await;
    assert!(
        run(&http_client(s.http, USER, PASSWORD, "LAB"), s.ip)
            .await
            .is_err()
    );
    let log = lab.log_records();
    assert!(
        log.iter()
            .any(|r| r.status == 500 && r.sealed && r.note.as_deref() == Some("fault http500")),
        "{log:?}"
    );
    lab.shutdown().await;

    let s = setup(13, "", "drop_mid_response = true");
    let lab = start(s.fleet).await;
    let client = http_client(s.http, USER, PASSWORD, "LAB");
    let err = run(&client, s.ip).await.unwrap_err();
    assert!(
        matches!(err, WinrmError::Http(_) | WinrmError::Ntlm(_)),
        "{err:?}"
    );
    let log = lab.log_records();
    assert!(log.iter().any(|r| {
        r.action.as_deref() == Some("Command")
            && r.note
                .as_deref()
                .is_some_and(|n| n.contains("drop_mid_response"))
    }));
    // Only the first Command is cut; the next run goes through.
    assert_eq!(run(&client, s.ip).await.unwrap().exit_code, 0);
    lab.shutdown().await;

    let s = setup(14, "", "latency_ms = 150");
    let lab = start(s.fleet).await;
    let started = Instant::now();
    assert_eq!(
        run(&http_client(s.http, USER, PASSWORD, "LAB"), s.ip)
            .await
            .unwrap()
            .exit_code,
        0
    );
    let responses = lab.log_records().len() as u32;
    assert!(responses >= 7);
    assert!(
        started.elapsed() >= Duration::from_millis(150) * responses,
        "{:?}",
        started.elapsed()
    );
    lab.shutdown().await;
}

// --- Raw HTTP: the listener's own Windows behaviour, without a client library ----------------

/// Sends one request on `s` and returns (status line, headers, body).
fn exchange(s: &mut TcpStream, req: &str, body: &[u8]) -> (String, Vec<(String, String)>, Vec<u8>) {
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(s.read(&mut byte).unwrap() == 1, "connection closed");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, headers, body)
}

fn values<'a>(h: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    h.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[tokio::test]
async fn raw_http_behaviour_is_windows_like() {
    let s = setup(15, "", "");
    let (ip, port) = (s.ip, s.http);
    let lab = start(s.fleet).await;
    tokio::task::spawn_blocking(move || {
        let mut c = TcpStream::connect((ip, port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let soap = b"<s:Envelope/>";
        let post = |extra: &str, len: usize| {
            format!("POST /wsman HTTP/1.1\r\nHost: {ip}:{port}\r\nContent-Type: application/soap+xml;charset=UTF-8\r\n{extra}Content-Length: {len}\r\n\r\n")
        };

        // Unauthenticated: 401, empty body, one header per scheme; Basic not offered on HTTP.
        let (st, h, b) = exchange(&mut c, &post("", soap.len()), soap);
        assert!(st.starts_with("HTTP/1.1 401"), "{st}");
        assert!(b.is_empty());
        assert_eq!(values(&h, "www-authenticate"), vec!["Negotiate", "Kerberos"]);
        assert_eq!(values(&h, "server"), vec!["Microsoft-HTTPAPI/2.0"]);

        // GET is not WinRM; another path neither. Same keep-alive connection throughout.
        let (st, _, _) = exchange(&mut c, &format!("GET /wsman HTTP/1.1\r\nHost: {ip}\r\n\r\n"), b"");
        assert!(st.starts_with("HTTP/1.1 405"), "{st}");
        let (st, _, _) = exchange(&mut c, &format!("POST /other HTTP/1.1\r\nHost: {ip}\r\nContent-Length: 0\r\n\r\n"), b"");
        assert!(st.starts_with("HTTP/1.1 404"), "{st}");

        // A sealed body on a connection without context: 401.
        let sealed = "POST /wsman HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\"\r\nContent-Length: 5\r\n\r\n";
        let (st, _, _) = exchange(&mut c, sealed, b"xxxxx");
        assert!(st.starts_with("HTTP/1.1 401"), "{st}");

        // Type 1: exactly one WWW-Authenticate carrying the Type 2, Content-Length 0.
        let type1 = "TlRMTVNTUAABAAAANYII4gAAAAAAAAAAAAAAAAAAAAAADAEAAAAADw==";
        let (st, h, b) = exchange(&mut c, &post(&format!("Authorization: Negotiate {type1}\r\n"), 0), b"");
        assert!(st.starts_with("HTTP/1.1 401"), "{st}");
        let challenges = values(&h, "www-authenticate");
        assert_eq!(challenges.len(), 1, "{challenges:?}");
        assert!(challenges[0].starts_with("Negotiate TlRMTVNTUAACAAAA"), "{challenges:?}");
        assert_eq!(values(&h, "content-length"), vec!["0"]);
        assert!(b.is_empty());

        // A Kerberos/SPNEGO token is not something the lab can accept: 401 and the scheme list.
        let (st, h, _) = exchange(&mut c, &post("Authorization: Negotiate YIIBhgYGKwYBBQUCoA==\r\n", 0), b"");
        assert!(st.starts_with("HTTP/1.1 401"), "{st}");
        assert_eq!(values(&h, "www-authenticate").len(), 2);
    })
    .await
    .unwrap();
    let log = lab.log_records();
    assert_eq!(log.len(), 6, "{log:?}");
    assert!(
        log.iter().all(|r| r.conn == log[0].conn),
        "one connection, kept alive"
    );
    assert!(
        log[0].plaintext_soap,
        "an unauthenticated plaintext body on HTTP is still plaintext SOAP"
    );
    lab.shutdown().await;
}

#[tokio::test]
async fn inventory_ca_and_bind_errors() {
    let mut s = setup(16, "", "");
    let extra = setup(17, "", "");
    let mut hidden = extra.fleet.servers[0].clone();
    hidden.in_inventory = false;
    hidden.http_port = Some(extra.http);
    hidden.https_port = Some(extra.https);
    s.fleet.servers.push(hidden);
    let fleet = s.fleet.clone();
    let lab = start(s.fleet).await;
    assert_eq!(
        lab.inventory_csv(),
        format!(
            "name,address,port,role,site,fqdn\nEX16,127.0.77.16,{},Mailbox,Default-First-Site-Name,ex16.lab.local\n",
            s.http
        )
    );
    assert!(lab.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));

    // A second lab on the same addresses cannot bind: the error names the address.
    let err = Lab::start(
        fleet,
        LabOptions {
            log_path: None,
            keep_log_in_memory: false,
        },
    )
    .await
    .err()
    .unwrap();
    assert!(
        err.to_string().contains(&format!("127.0.77.16:{}", s.http)),
        "{err}"
    );
    lab.shutdown().await;
}

#[tokio::test]
async fn log_file_gets_json_lines() {
    let s = setup(18, "", "");
    let path = std::env::temp_dir().join(format!("eems-lab-net-{}-log.jsonl", std::process::id()));
    let lab = Lab::start(
        s.fleet,
        LabOptions {
            log_path: Some(path.clone()),
            keep_log_in_memory: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        run(&http_client(s.http, USER, PASSWORD, "LAB"), s.ip)
            .await
            .unwrap()
            .exit_code,
        0
    );
    assert!(lab.log_records().is_empty());
    lab.shutdown().await;
    let text = std::fs::read_to_string(&path).unwrap();
    let records: Vec<LogRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_full_cycle(&records);
    let _ = std::fs::remove_file(path);
}
