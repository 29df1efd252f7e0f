//! Everyday use (issue 16): `doctor` against the lab, each step failing on purpose; the
//! profile's precedence; completions and the man page from the real command line.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;
use serde_json::Value;

/// Runs the binary with exactly these variables of ours set (no EEMS_* leaks in from the
/// caller, no profile from the caller's configuration folder unless `env` sets one).
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eems-scan"));
        for (k, _) in std::env::vars() {
            if k.starts_with("EEMS_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(&args)
            .env("NO_COLOR", "1")
            .env(
                "XDG_CONFIG_HOME",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-config"),
            )
            .env_remove("RUST_LOG")
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `doctor --json` on `servers` (or the whole inventory), the password given, the org query
/// over WinRS (these labs have no KDC; doctor_kerberos.rs has the Kerberos side).
async fn doctor(password: &str, extra: &[&str]) -> (Output, Value) {
    let mut args = vec!["doctor", "--json", "--user", USER, "--org-via", "winrs"];
    args.extend_from_slice(extra);
    let out = run(&args, &[("EEMS_PASSWORD", password)]).await;
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}):\n{}", text(&out)));
    (out, json)
}

pub(crate) fn server<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["server"] == name)
        .unwrap_or_else(|| panic!("no entry for {name}: {report:#}"))
}

pub(crate) fn step<'a>(server: &'a Value, name: &str) -> &'a Value {
    server["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {server:#}"))
}

/// The first failed step: (step, detail, fix).
pub(crate) fn failure(server: &Value) -> Option<(String, String, String)> {
    server["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["result"] == "failed")
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["detail"].as_str().unwrap().to_string(),
                s["fix"].as_str().unwrap_or("").to_string(),
            )
        })
}

/// NTLM and the org query over WinRS use neither Kerberos nor /PowerShell: both skipped with
/// why, never passed.
fn assert_kerberos_steps_skipped(server: &Value) {
    let why = if cfg!(feature = "kerberos") {
        "not used"
    } else {
        "built without Kerberos"
    };
    for name in ["kerberos", "powershell"] {
        let s = step(server, name);
        assert_eq!(s["result"], "skipped", "{server:#}");
        assert!(s["detail"].as_str().unwrap().contains(why), "{s:#}");
    }
}

/// After the failed step nothing else ran.
pub(crate) fn assert_stopped_after(server: &Value, failed: &str) {
    let steps = server["steps"].as_array().unwrap();
    let at = steps.iter().position(|s| s["step"] == failed).unwrap();
    for s in &steps[at + 1..] {
        assert!(
            s["result"] == "not-run" || s["result"] == "skipped",
            "a step ran after {failed} failed: {server:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_demo_servers_causes_as_the_scan_rows_do() {
    let dir = scratch("doctor_demo");
    // Doctor's org query still loads the snap-in over WinRS (issue 16 moves it to
    // /PowerShell): an organisation that delegates, with EX01 lacking the Exchange tools.
    let mut fleet = demo_fleet(161);
    fleet.org.second_hop_denied = false;
    fleet.servers[0].faults.no_snapin = true;
    let lab = start_lab(fleet, &dir).await;
    let inv = dir.join("inventory.csv");
    let (out, rep) = doctor(
        PASSWORD,
        &[
            "--inventory",
            inv.to_str().unwrap(),
            "--timeout",
            "5",
            "--operation-timeout",
            "2",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // EX01 has no Exchange tools: the org query moves on, as the scan's does.
    assert_eq!(rep["org_query"]["answered_by"], "EX02", "{rep:#}");
    assert!(
        rep["left_out"][0].as_str().unwrap().starts_with("EDGE01"),
        "{rep:#}"
    );
    // (server, failed step, detail contains: the scan's error-row words for the server)
    let broken = [
        ("EX07", "mitigation-endpoint", "cannot reach"),
        ("EX13", "tcp", "connection refused"),
        ("EX14", "winrm-auth", "timeout after"),
        ("EX15", "winrm-auth", "authentication failed"),
        ("EX16", "winrm-command", "EEMS-PROBE-RESULT"),
        ("EX17", "winrm-command", "500"),
        ("EX18", "winrm-command", "dropped the connection"),
    ];
    for s in rep["servers"].as_array().unwrap() {
        let name = s["server"].as_str().unwrap();
        assert_kerberos_steps_skipped(s);
        let dns = step(s, "dns");
        assert_eq!(dns["result"], "passed", "{s:#}");
        assert!(
            dns["detail"]
                .as_str()
                .unwrap()
                .contains("the inventory's address column (no DNS lookup)"),
            "the scan connects to the address: {s:#}"
        );
        assert_eq!(step(s, "tls")["result"], "skipped", "HTTP: {s:#}");
        match broken.iter().find(|b| b.0 == name) {
            Some((_, want_step, want_detail)) => {
                let (got_step, detail, fix) =
                    failure(s).unwrap_or_else(|| panic!("{name} did not fail: {s:#}"));
                assert_eq!(&got_step, want_step, "{s:#}");
                assert!(
                    detail
                        .to_ascii_lowercase()
                        .contains(&want_detail.to_ascii_lowercase()),
                    "{name}: {detail}"
                );
                assert!(!fix.is_empty(), "{name}: a failure comes with a fix: {s:#}");
                assert_stopped_after(s, want_step);
            }
            None => {
                assert_eq!(failure(s), None, "{name} failed: {s:#}");
                assert_eq!(step(s, "mitigation-endpoint")["result"], "passed", "{s:#}");
            }
        }
    }
    // EX08 reaches the endpoint only through its proxy, which the org query provides.
    let ex08 = step(server(&rep, "EX08"), "mitigation-endpoint");
    assert!(
        ex08["detail"]
            .as_str()
            .unwrap()
            .contains("http://proxy.contoso.com:8080"),
        "{ex08:#}"
    );
    assert_eq!(
        rep["servers"].as_array().unwrap().len(),
        22,
        "every non-Edge inventory server (EX21 is not in the inventory)"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_on_a_wrong_port_fails_at_tcp_and_says_which_port() {
    let dir = scratch("doctor_port");
    let fleet = fleet_from_toml(&fleet_toml(
        "",
        &[("DP1".into(), "127.0.162.1".into(), String::new())],
    ));
    let lab = start_lab(fleet, &dir).await;
    let inv = dir.join("inventory-noport.csv");
    let (out, rep) = doctor(
        PASSWORD,
        &[
            "DP1",
            "--inventory",
            inv.to_str().unwrap(),
            "--port",
            "5999",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s = server(&rep, "DP1");
    assert_eq!(s["port"], 5999);
    let (at, detail, fix) = failure(s).unwrap();
    assert_eq!(at, "tcp", "{s:#}");
    assert!(detail.contains("127.0.162.1:5999"), "{detail}");
    assert!(fix.contains("5999") && fix.contains("--port"), "{fix}");
    assert_stopped_after(s, "tcp");
    assert_kerberos_steps_skipped(s);

    // The same server on its real port passes every step that is built.
    let (out, rep) = doctor(PASSWORD, &["DP1", "--inventory", inv.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = server(&rep, "DP1");
    for name in ["tcp", "winrm-auth", "winrm-command", "mitigation-endpoint"] {
        assert_eq!(step(s, name)["result"], "passed", "{s:#}");
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_over_https_fails_at_tls_without_the_ca_and_passes_with_it() {
    let dir = scratch("doctor_tls");
    let fleet = fleet_from_toml(&fleet_toml(
        "",
        &[("DT1".into(), "127.0.163.1".into(), String::new())],
    ));
    let lab = start_lab(fleet, &dir).await;
    let inv = dir.join("inventory-noport.csv");
    let inv = inv.to_str().unwrap();
    let (out, rep) = doctor(PASSWORD, &["--inventory", inv, "--https"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s = server(&rep, "DT1");
    assert_eq!(step(s, "tcp")["result"], "passed", "{s:#}");
    let (at, detail, fix) = failure(s).unwrap();
    assert_eq!(at, "tls", "{s:#}");
    assert!(
        detail.to_ascii_lowercase().contains("certificate"),
        "{detail}"
    );
    assert!(fix.contains("--ca-cert"), "{fix}");
    assert_stopped_after(s, "tls");

    let ca = dir.join("ca.pem");
    let (out, rep) = doctor(
        PASSWORD,
        &[
            "--inventory",
            inv,
            "--https",
            "--ca-cert",
            ca.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = server(&rep, "DT1");
    assert_eq!(s["port"], 5986);
    let tls = step(s, "tls");
    assert_eq!(tls["result"], "passed", "{s:#}");
    assert!(
        tls["detail"].as_str().unwrap().contains("ca.pem"),
        "{tls:#}"
    );

    // --insecure connects, but an unverified certificate is not a passed check.
    let (out, rep) = doctor(PASSWORD, &["--inventory", inv, "--https", "--insecure"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let tls = step(server(&rep, "DT1"), "tls");
    assert_eq!(tls["result"], "skipped", "{tls:#}");
    assert!(
        tls["detail"].as_str().unwrap().contains("NOT verified"),
        "{tls:#}"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_with_a_wrong_password_fails_at_authentication_and_guards_the_account() {
    let dir = scratch("doctor_auth");
    let servers: Vec<(String, String, String)> = (1..=5)
        .map(|i| (format!("DA{i}"), format!("127.0.164.{i}"), String::new()))
        .collect();
    let lab = start_lab(fleet_from_toml(&fleet_toml("", &servers)), &dir).await;
    let inv = dir.join("inventory.csv");
    let wrong = "Wrong-Passw0rd-sentinel";
    let (out, rep) = doctor(wrong, &["--inventory", inv.to_str().unwrap(), "-j", "1"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        !text(&out).contains(wrong),
        "the password leaked: {}",
        text(&out)
    );
    assert!(
        rep["org_query"]["error"]
            .as_str()
            .unwrap()
            .contains("authentication failed")
    );
    let mut guarded = 0;
    for s in rep["servers"].as_array().unwrap() {
        let (at, detail, fix) = failure(s).unwrap();
        assert_eq!(at, "winrm-auth", "{s:#}");
        assert!(fix.contains("password"), "{fix}");
        assert_eq!(step(s, "winrm-command")["result"], "not-run", "{s:#}");
        if detail.starts_with("not attempted") {
            guarded += 1;
        } else {
            assert!(detail.contains("authentication failed"), "{detail}");
        }
    }
    // The org query's failure and two servers' make three: the last three are not tried.
    assert_eq!(guarded, 3, "{rep:#}");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_table_shows_unused_steps_as_skipped_and_a_fix_under_the_failure() {
    let dir = scratch("doctor_table");
    let fleet = fleet_from_toml(&fleet_toml(
        "",
        &[(
            "DE1".into(),
            "127.0.165.1".into(),
            "ocs_reachable = false\n".into(),
        )],
    ));
    let lab = start_lab(fleet, &dir).await;
    let inv = dir.join("inventory.csv");
    let out = run(
        &[
            "doctor",
            "--user",
            USER,
            "--org-via",
            "winrs",
            "--inventory",
            inv.to_str().unwrap(),
        ],
        &[("EEMS_PASSWORD", PASSWORD)],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let line = |step: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(step) || l.contains(&format!(" {step} ")))
            .unwrap_or_else(|| panic!("no {step} line:\n{table}"))
            .to_string()
    };
    assert!(
        line("kerberos").trim_start().starts_with("skipped"),
        "{table}"
    );
    let why = if cfg!(feature = "kerberos") {
        "not used: WinRM authenticates with ntlm"
    } else {
        "built without Kerberos"
    };
    assert!(line("kerberos").contains(why), "{table}");
    assert!(
        line("powershell").trim_start().starts_with("skipped"),
        "{table}"
    );
    assert!(
        line("mitigation-endpoint")
            .trim_start()
            .starts_with("FAILED"),
        "{table}"
    );
    assert!(table.contains("fix: let the server reach"), "{table}");
    assert!(
        table.contains("1 failed: DE1 (mitigation-endpoint)"),
        "{table}"
    );
    lab.shutdown().await;
}

/// Writes a profile and returns its path.
fn profile(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// `--show-settings` lines as flag → (value, source).
fn settings(out: &Output) -> std::collections::HashMap<String, (String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let flag = parts.next()?.to_string();
            let value = parts.next()?.to_string();
            Some((flag, (value, parts.collect::<Vec<_>>().join(" "))))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_precedence_is_flag_then_environment_then_profile_then_default() {
    let dir = scratch("profile_precedence");
    let p = profile(
        &dir,
        "p.toml",
        "# saved settings\nuser = 'LAB\\admin'\nport = 5986\nconcurrency = 8\ntimeout = 30\ninventory = 'inv.csv'\n",
    );
    let out = run(
        &[
            "--profile",
            &p,
            "scan",
            "--show-settings",
            "--concurrency",
            "4",
        ],
        &[
            ("EEMS_PORT", "6000"),
            ("EEMS_TIMEOUT", "45"),
            // A switch's variable as people write it.
            ("EEMS_INSECURE", "1"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = settings(&out);
    let get = |f: &str| {
        s.get(f)
            .cloned()
            .unwrap_or_else(|| panic!("no {f}: {}", text(&out)))
    };
    assert_eq!(get("--concurrency"), ("4".into(), "flag".into()));
    assert_eq!(
        get("--port"),
        ("6000".into(), "environment (EEMS_PORT)".into())
    );
    assert_eq!(
        get("--timeout"),
        ("45".into(), "environment (EEMS_TIMEOUT)".into())
    );
    assert_eq!(get("--user").0, "LAB\\admin");
    assert_eq!(get("--user").1, format!("profile ({p} line 2)"));
    assert_eq!(get("--inventory").1, format!("profile ({p} line 6)"));
    // No default: unset means Kerberos where credentials can be had, else NTLM.
    assert_eq!(get("--auth"), ("-".into(), "not set".into()));
    assert_eq!(get("--insecure").1, "environment (EEMS_INSECURE)");
    assert_eq!(get("--profile"), (p.clone(), "flag".into()));
    assert!(String::from_utf8_lossy(&out.stdout).contains("never shown"));

    // The configuration folder's profile applies without --profile; --no-profile drops it.
    let config = dir.join("config");
    std::fs::create_dir_all(config.join("eems-scan")).unwrap();
    std::fs::copy(&p, config.join("eems-scan/profile.toml")).unwrap();
    let xdg = config.to_str().unwrap();
    let out = run(&["scan", "--show-settings"], &[("XDG_CONFIG_HOME", xdg)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    if cfg!(target_os = "linux") {
        assert_eq!(
            settings(&out)["--profile"].1,
            "configuration folder",
            "{}",
            text(&out)
        );
    }
    let out = run(
        &["scan", "--show-settings", "--no-profile"],
        &[("XDG_CONFIG_HOME", xdg)],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "no user without the profile: {}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_with_a_password_or_a_bad_value_is_refused_naming_the_line() {
    let dir = scratch("profile_refused");
    let secret = "Hunter2-sentinel";
    for (body, line, words) in [
        (
            format!("user = 'a'\n\npassword = '{secret}'\n"),
            3,
            "never holds a password",
        ),
        ("user = 'a'\nport = 70000\n".to_string(), 2, "65535"),
        ("auth = 'kerb'\n".to_string(), 1, "auth"),
        ("https = 'yes'\n".to_string(), 1, "true or false"),
        ("colour = 'blue'\n".to_string(), 1, "not a scan flag"),
    ] {
        let p = profile(&dir, "bad.toml", &body);
        let out = run(&["--profile", &p, "scan", "--show-settings"], &[]).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}: {}", text(&out));
        assert!(err.contains(&format!("{p} line {line}:")), "{body}: {err}");
        assert!(err.contains(words), "{body}: {err}");
        assert!(!text(&out).contains(secret), "{body}: {}", text(&out));
    }
    let out = run(&["--profile", "/nonexistent/p.toml", "scan"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/p.toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_takes_its_user_inventory_and_dated_report_path_from_the_profile() {
    let dir = scratch("profile_scan");
    let fleet = fleet_from_toml(&fleet_toml(
        "",
        &[("PS1".into(), "127.0.166.1".into(), String::new())],
    ));
    let lab = start_lab(fleet, &dir).await;
    let p = profile(
        &dir,
        "p.toml",
        &format!(
            "user = {}\ninventory = {}\norg-data = {}\njson = {}\nquiet = true\n",
            toml::Value::String(USER.into()),
            toml::Value::String(dir.join("inventory.csv").to_str().unwrap().into()),
            toml::Value::String(dir.join(ORG_DATA).to_str().unwrap().into()),
            toml::Value::String(dir.join("eems-{date}.json").to_str().unwrap().into()),
        ),
    );
    let out = run(&["--profile", &p, "scan"], &[("EEMS_PASSWORD", PASSWORD)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dated: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("eems-") && n.ends_with(".json"))
        .collect();
    assert_eq!(dated.len(), 1, "{dated:?}");
    let date = &dated[0]["eems-".len()..dated[0].len() - ".json".len()];
    assert!(
        date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
        "{date}"
    );
    assert!(
        !date.contains('{'),
        "the placeholder was not filled: {date}"
    );
    let rep = report(&dir.join(&dated[0]));
    assert_eq!(row(&rep, "PS1")["status"], "ok", "{rep:#}");
    lab.shutdown().await;
}

#[tokio::test]
async fn completions_and_the_man_page_are_generated_from_the_real_command_line() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = run(&["completions", shell], &[]).await;
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        for word in ["doctor", "show-settings", "ca-cert"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
        if shell == "bash" && Path::new("/bin/bash").exists() {
            let dir = scratch("completions");
            let file = dir.join("eems-scan.bash");
            std::fs::write(&file, script.as_bytes()).unwrap();
            let check = Command::new("/bin/bash")
                .arg("-n")
                .arg(&file)
                .output()
                .unwrap();
            assert!(check.status.success(), "bash -n: {}", text(&check));
        }
    }
    let out = run(&["man"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH eems-scan"),
        "{page}"
    );
    assert!(
        page.contains("doctor") && page.contains("completions"),
        "{page}"
    );

    // A folder that does not exist yet is made, as `--root` of cargo install is.
    let dir = scratch("man_pages").join("man1");
    let out = run(&["man", "--out-dir", dir.to_str().unwrap()], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let scan_page = std::fs::read_to_string(dir.join("eems-scan-scan.1")).unwrap();
    assert!(
        scan_page.contains("EEMS_CA_CERT"),
        "the environment is documented"
    );
    assert!(dir.join("eems-scan-doctor.1").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_resolves_a_name_before_connecting() {
    // `localhost` resolves from the hosts file, never through a DNS server; the lab
    // server listens on 127.0.0.1 on ports no other test uses, below the ephemeral range.
    let dir = scratch("doctor_dns");
    let fleet = fleet_from_toml(&fleet_toml(
        "",
        &[(
            "localhost".into(),
            "127.0.0.1".into(),
            "http_port = 29585\nhttps_port = 29586\n".into(),
        )],
    ));
    let lab = start_lab(fleet, &dir).await;
    let (out, rep) = doctor(PASSWORD, &["localhost", "--port", "29585"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = server(&rep, "localhost");
    let dns = step(s, "dns");
    assert_eq!(dns["result"], "passed", "{s:#}");
    assert!(
        dns["detail"].as_str().unwrap().contains("127.0.0.1"),
        "{dns:#}"
    );
    assert!(
        step(s, "tcp")["detail"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:29585"),
        "{s:#}"
    );
    lab.shutdown().await;
}
