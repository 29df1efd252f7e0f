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
/// `inventory.csv`, `ca.pem`, `inventory-noport.csv` (the same servers without the
/// port column, for scans that pick the port by `--https`) and `org-data.json` (what
/// `eems-scan org-command` would write for this organisation, for `--org-data`).
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
    std::fs::write(dir.join(ORG_DATA), lab.org_data_json().unwrap()).unwrap();
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

/// The org data file [`start_lab`] writes beside the inventory.
pub const ORG_DATA: &str = "org-data.json";

/// One MIT realm (`LAB.LOCAL`, the lab account) for the whole test process: starting a KDC
/// takes a second or more, and most Kerberos tests need nothing of their own from it. Each
/// fleet's hosts are added by [`start_realistic_lab`]. A static is never dropped, so the KDC
/// is stopped and its directory removed when the process exits (`atexit`).
#[cfg(feature = "kerberos")]
pub async fn shared_realm() -> &'static crate::kdc::Realm {
    static REALM: tokio::sync::OnceCell<crate::kdc::Realm> = tokio::sync::OnceCell::const_new();
    extern "C" fn stop_shared_realm() {
        if let Some(realm) = REALM.get() {
            if let Some(pid) = realm.kdc_pid().and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: kill(2) on our own child's pid; no memory is involved.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            let _ = std::fs::remove_dir_all(realm.dir());
        }
    }
    REALM
        .get_or_init(|| async {
            let spec = crate::kdc::RealmSpec {
                realm: "LAB.LOCAL".into(),
                domain: "lab.local".into(),
                user: fleet::DEFAULT_USER.into(),
                password: fleet::DEFAULT_PASSWORD.into(),
                hosts: Vec::new(),
                kdc_clock_offset_secs: 0,
            };
            let realm = crate::kdc::Realm::start(spec).await.unwrap();
            // SAFETY: registers a plain function with no captured state.
            assert_eq!(unsafe { libc::atexit(stop_shared_realm) }, 0);
            realm
        })
        .await
}

/// A lab as a real organisation is (issue 10): Kerberos from a real KDC, NTLM refused on
/// every host, WinRS logons without a second hop, Exchange's `/PowerShell` on every host, and
/// an admin who ran `kinit`. A scan needs only [`RealisticLab::scan_env`] and
/// [`RealisticLab::scan_args`] besides the inventory: no `--auth`, no `--org-via`.
#[cfg(feature = "kerberos")]
pub struct RealisticLab {
    pub lab: Lab,
    pub ps: crate::exchange_ps::ExchangePs,
    /// The one port of every host's `/PowerShell` (`--org-port`).
    pub ps_port: u16,
    pub realm: &'static crate::kdc::Realm,
    ccache: PathBuf,
}

#[cfg(feature = "kerberos")]
impl RealisticLab {
    /// The realm's krb5.conf and the admin's ticket cache (kinit done).
    pub fn scan_env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        let mut env = self.realm.client_env();
        env.retain(|(k, _)| *k == "KRB5_CONFIG");
        env.push((
            "KRB5CCNAME",
            format!("FILE:{}", self.ccache.display()).into(),
        ));
        env
    }

    /// Where `/PowerShell` listens: the lab cannot bind port 80.
    pub fn scan_args(&self) -> Vec<String> {
        vec!["--org-port".into(), self.ps_port.to_string()]
    }

    pub async fn shutdown(self) {
        self.ps.shutdown().await;
        self.lab.shutdown().await;
    }
}

/// Starts `fleet` as a [`RealisticLab`] (its files in `dir` as [`start_lab`] writes them),
/// on the process's [`shared_realm`]; the fleet's FQDNs must be in `lab.local`.
#[cfg(feature = "kerberos")]
pub async fn start_realistic_lab(mut fleet: Fleet, dir: &Path) -> RealisticLab {
    fleet.listener.ntlm = false;
    fleet.listener.kerberos = true;
    fleet.org.second_hop_denied = true;
    let realm = shared_realm().await;
    let hosts: Vec<String> = fleet.servers.iter().map(|s| s.fqdn()).collect();
    realm.add_hosts(&hosts).await.unwrap();
    let lab = start_kerberos_lab(fleet, dir, realm).await;
    let (ps, ps_port) = lab.start_exchange_ps(realm).await.unwrap();
    let ccache = dir.join("admin.ccache");
    realm
        .kinit(&realm.user_principal(), PASSWORD, &ccache, None)
        .await
        .unwrap();
    RealisticLab {
        lab,
        ps,
        ps_port,
        realm,
        ccache,
    }
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
