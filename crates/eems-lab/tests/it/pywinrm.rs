//! Independent-client check: pywinrm against the lab (see tests/pywinrm/check_lab.py).
//!
//! Needs a Python with pywinrm: `.venv/bin/python` (what .ci/run creates) or
//! `EEMS_PYTHON`. A plain `cargo test` lists it as ignored rather than passing a check
//! it did not make; `.ci/run` runs it with `--ignored`, and then a missing pywinrm fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use eems_lab::testkit::{fleet_from_toml, scratch, start_lab};

pub(crate) fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `.venv/bin/python` (or EEMS_PYTHON) when it can import `modules` (e.g. `"winrm"`).
pub(crate) fn python_with(modules: &str) -> Option<PathBuf> {
    let candidate = std::env::var_os("EEMS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("../../.venv/bin/python"));
    let ok = Command::new(&candidate)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(candidate)
}

const FLEET: &str = r#"
[org]
name = "PyLab"
# pywinrm runs the legacy snap-in org probe too: an organisation that delegates.
second_hop_denied = false
[listener]
http_port = 15985
https_port = 15986
[[server]]
name = "PY01"
address = "127.0.40.1"
mitigations_applied = ["PING1"]
[[server]]
name = "PY02"
address = "127.0.40.2"
faults = { timed_out_polls = 2 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Python with pywinrm (.venv/bin/python or EEMS_PYTHON); .ci/run runs it"]
async fn pywinrm_talks_to_the_lab() {
    let py = python_with("winrm").expect(
        "no Python with pywinrm: create .venv as .ci/run does, or point EEMS_PYTHON at one",
    );
    let dir = scratch(Path::new(env!("CARGO_TARGET_TMPDIR")), "pywinrm");
    let lab = start_lab(fleet_from_toml(FLEET), &dir).await;
    let script = crate_dir().join("tests/pywinrm/check_lab.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(script)
            .args(["127.0.40.1", "127.0.40.2", "15985", "15986"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = lab.log_records();
    assert!(
        log.iter().all(|r| !r.plaintext_soap || r.status >= 400),
        "plaintext SOAP was processed"
    );
    lab.shutdown().await;
}

/// pywinrm with `transport=kerberos` (requests_kerberos over pykerberos, as Ansible runs it) against
/// the lab's Kerberos WinRS with a kinit'ed ticket: HTTP sealed with the Kerberos session,
/// HTTPS bound to the certificate, NTLM refused; the lab saw Kerberos only.
#[cfg(feature = "kerberos")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Python with pywinrm[kerberos] (.venv/bin/python or EEMS_PYTHON) and MIT Kerberos; .ci/run runs it"]
async fn pywinrm_kerberos_talks_to_the_lab() {
    use eems_lab::kdc::{Realm, RealmSpec};
    let py = python_with("winrm, kerberos").expect(
        "no Python with pywinrm[kerberos]: create .venv as .ci/run does, or point EEMS_PYTHON at one",
    );
    let mut fleet = fleet_from_toml(
        &FLEET
            .replace("127.0.40.", "127.0.41.")
            .replace("1598", "1698"),
    );
    fleet.listener.ntlm = false;
    fleet.listener.cbt_hardening = "Strict".into();
    let server = fleet.servers[0].clone();
    let realm = Realm::start(RealmSpec::for_fleet(&fleet).unwrap())
        .await
        .unwrap();
    let dir = scratch(Path::new(env!("CARGO_TARGET_TMPDIR")), "pywinrm-kerberos");
    let lab = eems_lab::testkit::start_kerberos_lab(fleet.clone(), &dir, &realm).await;
    let ccache = dir.join("user.ccache");
    realm
        .kinit(
            &realm.user_principal(),
            eems_lab::testkit::PASSWORD,
            &ccache,
            None,
        )
        .await
        .unwrap();
    let script = crate_dir().join("tests/pywinrm/check_kerberos.py");
    let mut env = realm.client_env();
    env.retain(|(k, _)| *k != "KRB5CCNAME");
    env.push(("KRB5CCNAME", format!("FILE:{}", ccache.display()).into()));
    let args = [
        server.fqdn(),
        server.address.to_string(),
        server.http_port(&fleet.listener).to_string(),
        server.https_port(&fleet.listener).to_string(),
        dir.join("ca.pem").display().to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(script)
            .args(args)
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = lab.log_records();
    assert!(log.iter().any(|r| r.status == 200));
    assert!(
        log.iter()
            .filter(|r| r.status == 200)
            .all(|r| r.auth == "kerberos"),
        "{log:?}"
    );
    lab.shutdown().await;
}
