//! Shared set-up for the integration tests: the lab's test kit, and the real `eems-scan`
//! binary run against it as a user would run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use eems_lab::testkit::{
    self, ORG_DATA, PASSWORD, USER, demo_fleet, fleet_from_toml, fleet_toml, start_lab,
};

/// A fresh scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    testkit::scratch(Path::new(env!("CARGO_TARGET_TMPDIR")), name)
}

/// Runs the `eems-scan` binary with the password in EEMS_PASSWORD (never an argument).
pub async fn eems_scan(args: &[&str], password: &str) -> Output {
    eems_scan_env(args, password, &[]).await
}

/// [`eems_scan`] with `env` added (a realm's `KRB5_CONFIG`, `KRB5CCNAME`). Without them the
/// scanner sees no Kerberos configuration and no ticket cache, whatever the machine has: the
/// org query over Remote PowerShell then fails at once with "no Kerberos realm", and nothing
/// reaches a KDC that a stock /etc/krb5.conf names.
pub async fn eems_scan_env(
    args: &[&str],
    password: &str,
    env: &[(&str, std::ffi::OsString)],
) -> Output {
    let mut cmd = scan_command(args, password, env);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// The `eems-scan` command as the tests run it: the password in EEMS_PASSWORD (never an
/// argument), `env` added.
pub fn scan_command(args: &[&str], password: &str, env: &[(&str, std::ffi::OsString)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eems-scan"));
    // No test reaches a KDC named in the machine's /etc/krb5.conf, or a ticket cache of the
    // tester's, unless `env` says so.
    let nowhere = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-krb5");
    cmd.args(args)
        .env("KRB5_CONFIG", nowhere.join("krb5.conf"))
        .env(
            "KRB5CCNAME",
            format!("FILE:{}", nowhere.join("ccache").display()),
        )
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("EEMS_PASSWORD", password)
        // A profile in the tester's configuration folder must not change the run.
        .env("EEMS_NO_PROFILE", "1")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    cmd
}

/// The names in `dir`, sorted: to show that nothing but the reports is left there.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn report(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

pub fn row<'a>(report: &'a serde_json::Value, server: &str) -> &'a serde_json::Value {
    report["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["server"] == server)
        .unwrap_or_else(|| panic!("no row for {server}"))
}

/// `--org-data` with the file [`start_lab`] wrote in `dir`: for scans whose test is not about
/// the org query (its own tests are `org_psrp`, `org_data` and `scan_lab`).
pub fn org_data(dir: &Path) -> [String; 2] {
    [
        "--org-data".into(),
        dir.join(ORG_DATA).to_str().unwrap().to_string(),
    ]
}

/// Runs `eems-scan scan` on the lab's inventory with JSON/CSV into `dir`; extra args after.
/// The org facts come from [`org_data`] unless `extra` says where the org query goes.
pub async fn scan_lab(dir: &Path, password: &str, extra: &[&str]) -> (Output, serde_json::Value) {
    let inv = dir.join("inventory.csv");
    let json = dir.join("out.json");
    let csv = dir.join("out.csv");
    let mut args = vec![
        "scan",
        "--inventory",
        inv.to_str().unwrap(),
        "--user",
        USER,
        "--json",
        json.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ];
    let org = org_data(dir);
    let org_flags = ["--org-via", "--org-server", "--org-data", "--discover-from"];
    if !extra.iter().any(|a| org_flags.contains(a)) {
        args.extend(org.iter().map(String::as_str));
    }
    args.extend_from_slice(extra);
    let out = eems_scan(&args, password).await;
    let rep = if json.exists() {
        report(&json)
    } else {
        serde_json::Value::Null
    };
    (out, rep)
}
