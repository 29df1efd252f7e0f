//! The HTML reports in a real browser: the demo organisation scanned over WinRM (as a real
//! organisation is: Kerberos, no NTLM, the org query over /PowerShell), a second
//! scan after the lab changed, and `compare` between them; then headless Chromium, driven
//! over WebDriver by tests/browser/check_pages.py (selenium), checks both pages: console
//! errors, sort orders, filters, keyboard, JavaScript off, 800 px and print layout,
//! contrast.
//!
//! Needs Chromium, chromedriver (Debian: chromium, chromium-driver) and a Python with
//! selenium (`.venv/bin/python`, what .ci/run creates, or EEMS_PYTHON). It is #[ignore]d
//! so a machine without them shows it as ignored, not passed; `cargo test -- --include-ignored`
//! (what .ci/run runs) requires it, and then anything missing fails it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

fn python() -> PathBuf {
    std::env::var_os("EEMS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"))
}

/// The first scan's lab, then the second's: EX07 reaches the pattern service again
/// (improvement), EX02's service stops (regression), and EX19 leaves the inventory
/// (a removed server, which the summary must count among the changed).
fn demo_toml(octet: u8, changed: bool) -> String {
    let t = eems_lab::demo::DEMO_FLEET.replace("127.0.10.", &format!("127.0.{octet}."));
    if !changed {
        return t;
    }
    let t2 = t
        .replace("ocs_reachable = false", "ocs_reachable = true")
        .replace(
            "faults = { ps51_quirks = true }",
            "faults = { ps51_quirks = true }\nservice_status = \"Stopped\"",
        );
    assert_ne!(t, t2, "the demo fleet no longer has what this test changes");
    t2
}

/// Scans the lab of `toml` as a real organisation is (Kerberos, no NTLM, the org query over
/// /PowerShell); an NTLM-only build scans with NTLM and `--org-data`.
async fn scan(dir: &Path, toml: &str, drop_server: Option<&str>, json: &Path, html: &Path) {
    #[cfg(feature = "kerberos")]
    let (lab, env, org_args) = {
        let lab = testkit::start_realistic_lab(fleet_from_toml(toml), dir).await;
        let (env, args) = (lab.scan_env(), lab.scan_args());
        (lab, env, args)
    };
    #[cfg(not(feature = "kerberos"))]
    let (lab, env, org_args) = (
        start_lab(fleet_from_toml(toml), dir).await,
        Vec::new(),
        org_data(dir).to_vec(),
    );
    let inventory = dir.join("inventory.csv");
    if let Some(name) = drop_server {
        let text = std::fs::read_to_string(&inventory).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{name},")))
            .collect();
        assert_eq!(kept.len() + 1, text.lines().count(), "{name} not in {text}");
        std::fs::write(&inventory, kept.join("\n") + "\n").unwrap();
    }
    let mut args = vec![
        "scan",
        "--inventory",
        inventory.to_str().unwrap(),
        "--user",
        USER,
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--timeout",
        "5",
        "--operation-timeout",
        "1",
        // The demo fleet holds every evidence verdict: the evidence columns have
        // something to sort.
        "--evidence-days",
        "7",
        "--quiet",
    ];
    args.extend(org_args.iter().map(String::as_str));
    let out = eems_scan_env(&args, PASSWORD, &env).await;
    // Exit 3: the demo's broken servers could not be scanned, on purpose.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    lab.shutdown().await;
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium, chromedriver and selenium in .venv; .ci/run runs it with --include-ignored"]
async fn fleet_and_drift_pages_work_in_chromium() {
    let dir = scratch("browser");
    let (old_dir, new_dir) = (dir.join("old"), dir.join("new"));
    std::fs::create_dir_all(&old_dir).unwrap();
    std::fs::create_dir_all(&new_dir).unwrap();
    let (old_json, fleet_html) = (dir.join("old.json"), dir.join("fleet.html"));
    let (new_json, new_html) = (dir.join("new.json"), dir.join("new.html"));
    scan(
        &old_dir,
        &demo_toml(33, false),
        None,
        &old_json,
        &fleet_html,
    )
    .await;
    scan(
        &new_dir,
        &demo_toml(34, true),
        Some("EX19"),
        &new_json,
        &new_html,
    )
    .await;

    // Compared by file name from their folder, so the page's layout does not depend on
    // where the checkout lives (a long absolute path is free text, not a word the check
    // may require unbroken).
    let drift_html = dir.join("drift.html");
    let cwd = dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_eems-scan"))
            .args(["compare", "old.json", "new.json", "--html", "drift.html"])
            .current_dir(cwd)
            .env("EEMS_NO_PROFILE", "1")
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    // Exit 1: the second scan has a regression.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/check_pages.py");
    let py = python();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&py)
            .arg(script)
            .arg("check")
            .arg("--fleet")
            .arg(&fleet_html)
            .arg("--drift")
            .arg(&drift_html)
            .arg("--old")
            .arg(&old_json)
            .arg("--new")
            .arg(&new_json)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): create .venv with selenium (see .ci/run) or set EEMS_PYTHON",
                    py.display()
                )
            })
    })
    .await
    .unwrap();
    println!("{}", text(&out));
    assert!(
        out.status.success(),
        "browser checks failed:\n{}",
        text(&out)
    );
}
