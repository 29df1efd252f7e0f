//! Lab set-ups the test suites of every crate share: the demo fleet moved to its own
//! loopback range, fleets written inline, and a started lab with its inventory files on
//! disk the way a user would hand them to `eems-scan`.
//!
//! Helpers panic on failure: they only ever run inside tests, where a panic is the report.

use std::path::{Path, PathBuf};

use crate::fleet::{self, Fleet};
use crate::{Lab, LabOptions};

/// The lab's fixture account, as a user types it.
pub const USER: &str = r"LAB\administrator";
pub const PASSWORD: &str = fleet::DEFAULT_PASSWORD;

/// The demo fleet moved to `127.0.<octet>.x`, so tests running in parallel never share an
/// address.
pub fn demo_fleet(octet: u8) -> Fleet {
    fleet_from_toml(&crate::demo::DEMO_FLEET.replace("127.0.10.", &format!("127.0.{octet}.")))
}

pub fn fleet_from_toml(text: &str) -> Fleet {
    let fleet: Fleet = toml::from_str(text).unwrap();
    fleet.validate().unwrap();
    fleet
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

/// A fresh, empty directory `root/name` (`root` is the test crate's CARGO_TARGET_TMPDIR).
pub fn scratch(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts the lab with its request log in `dir` (and in memory), and writes beside it
/// `inventory.csv`, `ca.pem`, and `inventory-noport.csv` (the same servers without the
/// port column, for scans that pick the port by `--https`).
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
