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
    write_inventories(&lab, dir);
    lab
}

/// [`start_lab`] with Kerberos: every host accepts tickets of `realm` for its `HTTP/<fqdn>`.
#[cfg(feature = "kerberos")]
pub async fn start_kerberos_lab(fleet: Fleet, dir: &Path, realm: &crate::kdc::Realm) -> Lab {
    let lab = Lab::start_with_realm(
        fleet,
        LabOptions {
            log_path: Some(dir.join("lab.jsonl")),
            keep_log_in_memory: true,
        },
        crate::http::Listen::Both,
        realm,
    )
    .await
    .unwrap();
    write_inventories(&lab, dir);
    lab
}

fn write_inventories(lab: &Lab, dir: &Path) {
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
}

/// Set in a test process started by [`run_in_child`].
const CHILD_VAR: &str = "EEMS_TEST_CHILD";
/// Budget of one child test run.
const CHILD_BUDGET: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether this test process is a child of [`run_in_child`]: the test then runs its body.
pub fn in_child() -> bool {
    std::env::var_os(CHILD_VAR).is_some()
}

/// Runs the test `name` (its full path in this test binary, e.g. `kerberos::tests::foo`)
/// again in a child process, with `env` added, and panics unless it passed. For code that
/// takes its configuration from the process environment, as libkrb5 does (`KRB5_CONFIG`,
/// `KRB5CCNAME`): a multi-threaded test process must not change its own environment. The
/// child must report exactly one passed test, so a misspelt name fails instead of passing.
/// Returns the child's output.
pub fn run_in_child(name: &str, env: &[(&str, std::ffi::OsString)]) -> String {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(CHILD_VAR, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained while it runs, so that a chatty child cannot block on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + CHILD_BUDGET;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child test {name} did not finish within {CHILD_BUDGET:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = stdout.join().unwrap() + &stderr.join().unwrap();
    assert!(
        status.success() && out.contains("test result: ok. 1 passed"),
        "child test {name} failed ({status}):\n{out}"
    );
    out
}
