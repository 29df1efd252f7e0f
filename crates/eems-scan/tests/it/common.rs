//! Shared set-up for the integration tests: the lab's test kit, and the real `eems-scan`
//! binary run against it as a user would run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use eems_lab::testkit::{
    self, PASSWORD, USER, demo_fleet, fleet_from_toml, fleet_toml, start_lab,
};

/// A fresh scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    testkit::scratch(Path::new(env!("CARGO_TARGET_TMPDIR")), name)
}

/// Runs the `eems-scan` binary with the password in EEMS_PASSWORD (never an argument).
pub async fn eems_scan(args: &[&str], password: &str) -> Output {
    eems_scan_env(args, password, &[]).await
}

/// [`eems_scan`] with `env` added (a realm's `KRB5_CONFIG`, `KRB5CCNAME`).
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
    cmd.args(args)
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

/// Runs `eems-scan scan` on the lab's inventory with JSON/CSV into `dir`; extra args after.
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
    args.extend_from_slice(extra);
    let out = eems_scan(&args, password).await;
    let rep = if json.exists() {
        report(&json)
    } else {
        serde_json::Value::Null
    };
    (out, rep)
}
