//! Independent-client check of the lab's Kerberos acceptor and sealing: pyspnego, the library
//! pywinrm uses against Windows, as the client (tests/pyspnego/kerberos_peer.py), with a ticket
//! from the lab's real KDC. Its wrap_winrm/unwrap_winrm are an implementation of the Windows
//! sealing layout independent of ours. Needs a Python with pyspnego and python-gssapi
//! (`.venv`, as .ci/run makes it, or EEMS_PYTHON): a plain `cargo test` lists it as ignored,
//! and .ci/run runs it with --include-ignored, where anything missing fails it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use eems_core::sealing::{self, Protocol};
use eems_lab::kdc::{Realm, RealmSpec};
use eems_lab::kerberos::{Acceptor, TokenKind, token_kind};
use eems_lab::testkit::{PASSWORD, demo_fleet};

use crate::pywinrm::{crate_dir, python_with};

/// Budget of one whole dialogue with the Python peer.
const PEER_BUDGET: Duration = Duration::from_secs(60);
const MESSAGES: usize = 3;

#[tokio::test]
#[ignore = "needs MIT Kerberos and a Python with pyspnego[kerberos] (.venv); .ci/run runs it"]
async fn pyspnego_authenticates_and_seals_with_the_lab_acceptor() {
    let py = python_with("spnego, gssapi").expect(
        "no Python with pyspnego[kerberos]: create .venv as .ci/run does, or point EEMS_PYTHON at one",
    );
    let realm = Realm::start(RealmSpec::for_fleet(&demo_fleet(70)).unwrap())
        .await
        .unwrap();
    let fqdn = realm.spec().hosts[0].clone();
    let cc = realm.dir().join("py.ccache");
    realm
        .kinit(&realm.user_principal(), PASSWORD, &cc, None)
        .await
        .unwrap();
    let acceptor = Acceptor::from_keytab(&realm.keytab(), &realm.service_principal(&fqdn)).unwrap();
    let mut env = realm.client_env();
    env.push(("KRB5CCNAME", format!("FILE:{}", cc.display()).into()));
    // Raw Kerberos (what `Kerberos` and winrm-rs send) and SPNEGO (what `Negotiate` sends).
    for (protocol, kind) in [
        ("kerberos", TokenKind::Kerberos),
        ("negotiate", TokenKind::Spnego),
    ] {
        let mut child = Command::new(&py)
            .arg(crate_dir().join("tests/pyspnego/kerberos_peer.py"))
            .args([fqdn.as_str(), protocol, &MESSAGES.to_string()])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Kills the peer if the dialogue hangs, so the reads below end. The child is reaped
        // only after the watchdog is told the dialogue is over, so its pid cannot have been
        // reused by another process when the signal goes.
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if finished.recv_timeout(PEER_BUDGET).is_err() {
                // SAFETY: a plain signal to our own, not yet reaped, child.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        });
        let mut to_peer = child.stdin.take().unwrap();
        let mut from_peer = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = |tag: &str| -> Vec<Vec<u8>> {
            let line = from_peer.next().expect("peer ended early").unwrap();
            let mut parts = line.split(' ');
            assert_eq!(parts.next(), Some(tag), "{line}");
            parts.map(|p| B64.decode(p).unwrap()).collect()
        };

        let token = next("TOKEN").remove(0);
        assert_eq!(token_kind(&token), kind);
        let mut ctx = acceptor.context();
        let reply = ctx.step(&token, None).unwrap().expect("an AP-REP");
        assert!(ctx.is_established());
        assert_eq!(ctx.client_principal(), Some(realm.user_principal()));
        writeln!(to_peer, "REPLY {}", B64.encode(&reply)).unwrap();
        for i in 0..MESSAGES {
            let sealed = next("SEALED");
            let body = sealing::frame(Protocol::Spnego, sealed[1].len(), &sealed[0], &sealed[1]);
            let plain = ctx.unseal(&body, Protocol::Spnego).unwrap();
            assert_eq!(
                plain,
                format!("<s:Envelope>request {i}</s:Envelope>").as_bytes()
            );

            let answer = format!("<s:Envelope>answer {i}</s:Envelope>");
            let body = ctx.seal(answer.as_bytes(), Protocol::Spnego).unwrap();
            let frame = sealing::parse(&body, Protocol::Spnego, |_| true).unwrap();
            writeln!(
                to_peer,
                "ANSWER {} {}",
                B64.encode(frame.header),
                B64.encode(frame.data)
            )
            .unwrap();
            assert_eq!(next("PLAIN").remove(0), answer.as_bytes());
        }
        drop(to_peer);
        let _ = done.send(());
        watchdog.join().unwrap();
        assert!(child.wait().unwrap().success());
    }
}
