//! Shared set-up for the integration tests: a lab on its own loopback range, and the
//! real `eems-scan` binary run against it as a user would run it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use eems_scan::lab::fleet::Fleet;
use eems_scan::lab::{Lab, LabOptions};

pub const USER: &str = r"LAB\administrator";
pub const PASSWORD: &str = "Lab-Passw0rd!";

/// The demo fleet moved to `127.0.<octet>.x` so tests running in parallel never share
/// an address.
pub fn demo_fleet(octet: u8) -> Fleet {
    let text = std::fs::read_to_string(repo().join("inventory/lab/demo.toml")).unwrap();
    fleet_from_toml(&text.replace("127.0.10.", &format!("127.0.{octet}.")))
}

pub fn fleet_from_toml(text: &str) -> Fleet {
    let fleet: Fleet = toml::from_str(text).unwrap();
    fleet.validate().unwrap();
    fleet
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn start_lab(fleet: Fleet, dir: &Path) -> Lab {
    let lab = Lab::start(
        fleet,
        LabOptions {
            log_path: Some(dir.join("lab.jsonl")),
            keep_log_in_memory: true,
        },
    )
    .await
    .unwrap();
    std::fs::write(dir.join("inventory.csv"), lab.inventory_csv()).unwrap();
    std::fs::write(dir.join("ca.pem"), lab.ca_pem()).unwrap();
    // The same servers without the port column, for scans that pick the port by --https.
    let mut no_ports = csv::Writer::from_path(dir.join("inventory-noport.csv")).unwrap();
    let inventory = lab.inventory_csv();
    let mut rdr = csv::Reader::from_reader(inventory.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    let keep: Vec<usize> = (0..headers.len())
        .filter(|&i| &headers[i] != "port")
        .collect();
    no_ports
        .write_record(keep.iter().map(|&i| &headers[i]))
        .unwrap();
    for rec in rdr.records() {
        let rec = rec.unwrap();
        no_ports
            .write_record(keep.iter().map(|&i| &rec[i]))
            .unwrap();
    }
    no_ports.flush().unwrap();
    lab
}

/// Runs the `eems-scan` binary with the password in EEMS_PASSWORD (never an argument).
pub async fn eems_scan(args: &[&str], password: &str) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_eems-scan"))
            .args(&args)
            .env("EEMS_PASSWORD", password)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
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

/// A fleet file with one `[[server]]` per entry: (name, address, extra TOML lines).
pub fn fleet_toml(org_extra: &str, servers: &[(String, String, String)]) -> String {
    let mut t = format!("[org]\nname = \"Fabrikam\"\n{org_extra}\n");
    for (name, address, extra) in servers {
        // PING1 applied unless the entry says otherwise.
        let applied = if extra.contains("mitigations_applied") {
            ""
        } else {
            "mitigations_applied = [\"PING1\"]\n"
        };
        t.push_str(&format!(
            "[[server]]\nname = {}\naddress = \"{address}\"\n{applied}{extra}\n",
            toml::Value::String(name.clone())
        ));
    }
    t
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
