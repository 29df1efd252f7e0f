//! Reliability and safety of a fleet scan against the lab: faults, the lockout guard,
//! interruption, bounded output, credential hygiene, transport safety and injection.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use eems_lab::Lab;
use serde_json::Value;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn servers(prefix: &str, octet: u8, n: usize, extra: &str) -> Vec<(String, String, String)> {
    (1..=n)
        .map(|i| {
            (
                format!("{prefix}{i:02}"),
                format!("127.0.{octet}.{i}"),
                extra.to_string(),
            )
        })
        .collect()
}

/// Starts `eems-scan scan` on the lab's inventory with stdout and stderr piped, for a
/// test that acts while the scan runs.
fn spawn_scan(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_eems-scan"))
        .args(["scan", "-i", dir.join("inventory.csv").to_str().unwrap()])
        .args(["-u", USER])
        .args(args)
        .env("EEMS_PASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits, 20 s at most, until the lab has `n` shells open: long probes are under way.
pub async fn wait_for_open_shells(lab: &Lab, n: usize) {
    let t0 = Instant::now();
    while lab.open_shells() < n && t0.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(lab.open_shells() >= n, "long probes never started");
}

/// Waits (up to 5 s) for the lab to have no shell open: the scanner's last Deletes may still
/// be in the lab's hands when the scanner has exited.
async fn wait_for_no_open_shells(lab: &Lab) -> usize {
    let t0 = Instant::now();
    while lab.open_shells() > 0 && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lab.open_shells()
}

pub async fn wait_for_exit(child: Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

/// Exit 4, and a message naming the report (`what`) and the OS error.
fn assert_unwritten(out: &std::process::Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    let named = format!("cannot write report: {what}: ");
    assert!(stderr.contains(&named), "{stderr}");
    assert!(stderr.contains("os error"), "{stderr}");
}

/// Healthy rows minus what legitimately varies between runs.
fn comparable(row: &Value) -> Value {
    let mut r = row.clone();
    r.as_object_mut().unwrap().remove("duration_ms");
    mask_times(&mut r);
    r
}

/// The lab dates evidence (log writes, process start, events) back from the moment it
/// answers, so two scans seconds apart differ there and nowhere else.
fn mask_times(v: &mut Value) {
    match v {
        Value::String(s)
            if time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .is_ok() =>
        {
            *s = "<time>".into();
        }
        Value::Array(a) => a.iter_mut().for_each(mask_times),
        Value::Object(o) => o.values_mut().for_each(mask_times),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_every_server_once_with_the_right_cause() {
    // 60 servers: 10% down, 10% hang, 5% wrong password, 5% garbage, 5% HTTP 500,
    // 5% dropped mid-response, 5% timed-out polls, the rest healthy.
    let kinds: &[(&str, usize, &str)] = &[
        ("DOWN", 6, "faults = { down = true }"),
        ("HANG", 6, "faults = { hang = true }"),
        ("AUTH", 3, "faults = { wrong_password = true }"),
        ("JUNK", 3, "faults = { garbage = true }"),
        ("E500", 3, "faults = { http500 = true }"),
        ("DROP", 3, "faults = { drop_mid_response = true }"),
        ("SLOW", 3, "faults = { timed_out_polls = 2 }"),
        ("GOOD", 33, ""),
    ];
    let mut all = Vec::new();
    let mut healthy = Vec::new();
    for (octet, (prefix, n, extra)) in (41u8..).zip(kinds) {
        let list = servers(prefix, octet, *n, extra);
        if *prefix == "GOOD" || *prefix == "SLOW" {
            healthy.extend(list.iter().cloned());
        }
        all.extend(list);
    }
    assert_eq!(all.len(), 60);
    let timeout = 6u64;
    let args = [
        "--timeout",
        "6",
        "--operation-timeout",
        "1",
        "--max-auth-failures",
        "0",
    ];

    // Fault-free baseline: the healthy servers alone.
    let dir_ok = scratch("matrix-baseline");
    let lab_ok = start_lab(fleet_from_toml(&fleet_toml("", &healthy)), &dir_ok).await;
    let t0 = Instant::now();
    let (out_ok, base) = scan_lab(&dir_ok, PASSWORD, &args).await;
    let healthy_wall = t0.elapsed();
    assert_eq!(
        out_ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out_ok.stderr)
    );
    lab_ok.shutdown().await;

    let dir = scratch("matrix");
    let lab = start_lab(fleet_from_toml(&fleet_toml("", &all)), &dir).await;
    let t0 = Instant::now();
    let (out, rep) = scan_lab(&dir, PASSWORD, &args).await;
    let wall = t0.elapsed();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rows = rep["servers"].as_array().unwrap();
    assert_eq!(rows.len(), 60, "every server exactly once");
    let mut names: Vec<&str> = rows.iter().map(|r| s(&r["server"])).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 60);

    let expect_error = |prefix: &str, stage: &str, words: &str| {
        for r in rows.iter().filter(|r| s(&r["server"]).starts_with(prefix)) {
            assert_eq!(s(&r["status"]), "error", "{r}");
            assert_eq!(s(&r["error_stage"]), stage, "{r}");
            assert!(s(&r["error"]).contains(words), "{prefix}: {r}");
        }
    };
    expect_error("DOWN", "connect", "connection refused");
    expect_error("HANG", "connect", &format!("timeout after {timeout} s"));
    expect_error("AUTH", "auth", "authentication failed");
    expect_error("JUNK", "parse", "no EEMS-PROBE-RESULT line");
    expect_error("E500", "shell", "500");
    expect_error("DROP", "command", "dropped the connection");
    for r in rows
        .iter()
        .filter(|r| s(&r["server"]).starts_with("SLOW") || s(&r["server"]).starts_with("GOOD"))
    {
        let name = s(&r["server"]);
        let b = row(&base, name);
        assert_eq!(
            comparable(r),
            comparable(b),
            "{name} differs from the fault-free run"
        );
    }

    let bound = Duration::from_secs(timeout) + healthy_wall + Duration::from_secs(3);
    println!(
        "fault matrix: 60 servers, wall {:.2} s, bound {:.2} s (timeout {timeout} s + healthy-only run {:.2} s + 3 s slack)",
        wall.as_secs_f64(),
        bound.as_secs_f64(),
        healthy_wall.as_secs_f64()
    );
    assert!(
        wall <= bound,
        "hung servers held the scan: {wall:?} > {bound:?}"
    );
    lab.shutdown().await;
}

/// The servers the lab saw reject an authentication, and how many rejections in all.
fn rejections(lab: &Lab) -> (BTreeSet<String>, usize) {
    let log = lab.log_records();
    let rejected: Vec<_> = log.iter().filter(|r| r.step == "rejected").collect();
    let servers = rejected.iter().map(|r| r.server.clone()).collect();
    (servers, rejected.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_guard_stops_after_k_authentication_failures() {
    let dir = scratch("lockout");
    let list = servers("LK", 50, 8, "");
    let lab = start_lab(fleet_from_toml(&fleet_toml("", &list)), &dir).await;
    // Every server rejects this password; with -j 1 the order is deterministic. The legacy
    // org probe over WinRS, whose rejections count like the host probes'.
    let (out, rep) = scan_lab(
        &dir,
        "not-the-password",
        &["-j", "1", "--timeout", "30", "--org-via", "winrs-snapin"],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    let rows = rep["servers"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    // The org phase tried the first 3 servers and each refused the password: that alone
    // trips the guard (K = 3), so no other server is contacted.
    let (rejected_on, attempts) = rejections(&lab);
    let org_tried: BTreeSet<String> = ["LK01", "LK02", "LK03"].map(String::from).into();
    assert_eq!(rejected_on, org_tried);
    for r in rows {
        let error = s(&r["error"]);
        if org_tried.contains(s(&r["server"])) {
            assert!(
                error.starts_with("rejected during the org query: authentication failed for"),
                "{r}"
            );
            assert_eq!(s(&r["error_stage"]), "auth", "{r}");
        } else {
            assert!(
                error.starts_with(
                    "not attempted: authentication failed on 3 servers (lockout guard)"
                ),
                "{r}"
            );
            assert!(r["error_stage"].is_null(), "{r}");
        }
        assert!(error.contains("check the user name and password"), "{r}");
    }
    // README: a wrong password costs the account at most K + 1 failed attempts.
    println!("lockout guard: {attempts} rejected authentications (bound K + 1 = 4)");
    assert!(attempts <= 3 + 1, "{attempts} rejected authentications");
    assert!(
        s(&rep["organization"]["error"]).contains("authentication failed"),
        "{}",
        rep["organization"]
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_guard_off_tries_every_server() {
    let dir = scratch("lockout-off");
    let list = servers("LO", 51, 6, "");
    let lab = start_lab(fleet_from_toml(&fleet_toml("", &list)), &dir).await;
    let (out, rep) = scan_lab(
        &dir,
        "not-the-password",
        &["--max-auth-failures", "0", "--timeout", "30"],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{rep}");
    let rows = rep["servers"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{rows:#?}");
    for r in rows {
        assert!(s(&r["error"]).contains("authentication failed for"), "{r}");
        assert_eq!(s(&r["error_stage"]), "auth", "{r}");
    }
    let (rejected_on, _) = rejections(&lab);
    let all: BTreeSet<String> = list.into_iter().map(|(name, _, _)| name).collect();
    assert_eq!(rejected_on, all, "every server is tried with the guard off");
    lab.shutdown().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_writes_reports_with_unfinished_servers_interrupted() {
    let dir = scratch("interrupt");
    let mut list = servers("QK", 52, 3, "");
    // Servers that run long: their shells are open when the interrupt comes.
    list.extend(servers("LONG", 53, 6, "faults = { exec_ms = 60000 }"));
    let lab = start_lab(fleet_from_toml(&fleet_toml("", &list)), &dir).await;
    let json = dir.join("out.json");
    let csv = dir.join("out.csv");
    let child = spawn_scan(
        &dir,
        &[
            "--json",
            json.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
            "-j",
            "4",
            "--operation-timeout",
            "1",
            "--timeout",
            "120",
        ],
    );
    let pid = child.id() as i32;
    wait_for_open_shells(&lab, 3).await;
    let sent = Instant::now();
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let out = wait_for_exit(child).await;
    let took = sent.elapsed();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(8), "took {took:?} to stop");
    let rep = report(&json);
    assert_eq!(rep["interrupted"], true);
    let rows = rep["servers"].as_array().unwrap();
    assert_eq!(rows.len(), 9, "every server has a row");
    for r in rows.iter().filter(|r| s(&r["server"]).starts_with("LONG")) {
        assert!(s(&r["error"]).contains("interrupted"), "{r}");
    }
    let csv_rows = csv::Reader::from_path(&csv).unwrap().records().count();
    assert_eq!(csv_rows, 9);
    assert_eq!(
        wait_for_no_open_shells(&lab).await,
        0,
        "in-flight shells were not closed"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_report_path_is_refused_before_any_connection() {
    let dir = scratch("unwritable");
    let lab = start_lab(
        fleet_from_toml(&fleet_toml("", &servers("UW", 54, 2, ""))),
        &dir,
    )
    .await;
    let inv = dir.join("inventory.csv");
    let out = eems_scan(
        &[
            "scan",
            "-i",
            inv.to_str().unwrap(),
            "-u",
            USER,
            "--csv",
            "/nonexistent-eems/x.csv",
        ],
        PASSWORD,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-eems/x.csv"));
    let out = eems_scan(
        &[
            "scan",
            "-i",
            inv.to_str().unwrap(),
            "-u",
            USER,
            "--json",
            inv.to_str().unwrap(),
        ],
        PASSWORD,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("overwrite the input"));
    assert!(lab.log_records().is_empty(), "a server was contacted");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_cannot_be_written_after_the_scan_exits_4_and_leaves_no_temporary_file() {
    let dir = scratch("unwritten");
    let mut list = servers("UN", 67, 1, "");
    // Long enough to take the report's name while the scan runs.
    list.extend(servers("US", 68, 1, "faults = { exec_ms = 3000 }"));
    let lab = start_lab(fleet_from_toml(&fleet_toml("", &list)), &dir).await;
    let out_dir = dir.join("reports");
    std::fs::create_dir(&out_dir).unwrap();
    let (json, csv, html) = (
        out_dir.join("out.json"),
        out_dir.join("out.csv"),
        out_dir.join("out.html"),
    );
    let child = spawn_scan(
        &dir,
        &[
            "--timeout",
            "30",
            "--org-data",
            dir.join(ORG_DATA).to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
    );
    wait_for_open_shells(&lab, 1).await;
    // The JSON report's name is taken by a directory: the rename at the end must fail.
    std::fs::create_dir(&json).unwrap();
    std::fs::write(json.join("keep"), "").unwrap();
    let out = wait_for_exit(child).await;
    assert_unwritten(&out, &json.display().to_string());
    // The other reports are finished; nothing else is left beside them.
    assert_eq!(csv::Reader::from_path(&csv).unwrap().records().count(), 2);
    assert!(std::fs::read_to_string(&html).unwrap().contains("US01"));
    assert_eq!(file_names(&out_dir), ["out.csv", "out.html", "out.json"]);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_failing_during_the_scan_exits_4_and_the_others_leave_nothing() {
    let dir = scratch("unwritten-mid-scan");
    let lab = start_lab(
        fleet_from_toml(&fleet_toml("", &servers("UM", 69, 2, ""))),
        &dir,
    )
    .await;
    let csv = dir.join("out.csv");
    // The JSON goes to a pipe nobody reads (`| head -c0`): its first write fails, after
    // the CSV report was opened.
    let mut child = spawn_scan(&dir, &["--csv", csv.to_str().unwrap(), "--json", "-"]);
    drop(child.stdout.take());
    let out = wait_for_exit(child).await;
    assert_unwritten(&out, "stdout");
    let left: Vec<String> = file_names(&dir)
        .into_iter()
        .filter(|n| n.contains("out.csv"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_output_is_cut_off_and_memory_stays_flat() {
    let dir = scratch("endless");
    let mut list = servers("EN", 55, 1, "faults = { endless_output = true }");
    list.extend(servers("OK", 56, 1, ""));
    let lab = start_lab(fleet_from_toml(&fleet_toml("", &list)), &dir).await;
    let (inventory, json) = (dir.join("inventory.csv"), dir.join("out.json"));
    let org = org_data(&dir);
    let mut cmd = scan_command(
        &[
            "scan",
            "--inventory",
            inventory.to_str().unwrap(),
            "--user",
            USER,
            "--json",
            json.to_str().unwrap(),
            &org[0],
            &org[1],
            "--timeout",
            "60",
        ],
        PASSWORD,
        &[],
    );
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    // The scan's own peak, VmHWM of its address space, sampled until it exits (bounded).
    // Not ru_maxrss: Linux carries the parent's RSS into a child's at exec, so with the
    // test process large (other tests running) that number says nothing about the scan.
    let pid = child.id();
    let peak_kib = tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        let mut peak = 0u64;
        while t0.elapsed() < Duration::from_secs(90) {
            let Some(hwm) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|st| {
                    st.lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                })
            else {
                break; // exited (a zombie has no address space left)
            };
            peak = peak.max(hwm);
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    })
    .await
    .unwrap();
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap().code())
        .await
        .unwrap();
    assert!(peak_kib > 0, "the scan's memory was never seen");
    assert_eq!(code, Some(3));
    let rep = report(&json);
    let r = row(&rep, "EN01");
    assert!(s(&r["error"]).contains("cut off"), "{r}");
    assert_eq!(s(&row(&rep, "OK01")["status"]), "ok");
    println!("peak RSS of the scan: {peak_kib} KiB");
    assert!(peak_kib < 100 * 1024, "peak RSS {peak_kib} KiB");
    assert_eq!(wait_for_no_open_shells(&lab).await, 0);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_appears_nowhere() {
    const SENTINEL: &str = "S3ntinel-Pw-7f3a9c";
    let dir = scratch("sentinel");
    let mut list = servers("SN", 57, 2, "");
    list.extend(servers("SX", 58, 1, "faults = { wrong_password = true }"));
    list.extend(servers("SD", 59, 1, "faults = { down = true }"));
    let mut toml = fleet_toml("", &list);
    toml.push_str(&format!(
        "[[account]]\ndomain = \"LAB\"\nuser = \"administrator\"\npassword = \"{SENTINEL}\"\n"
    ));
    let lab = start_lab(fleet_from_toml(&toml), &dir).await;
    let (out, rep) = scan_lab(&dir, SENTINEL, &["-vvv", "--timeout", "30"]).await;
    assert_eq!(s(&row(&rep, "SN01")["status"]), "ok", "{rep}");
    let mut haystacks = vec![
        ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
        ("stderr", String::from_utf8_lossy(&out.stderr).into_owned()),
    ];
    for f in ["out.json", "out.csv", "lab.jsonl"] {
        haystacks.push((f, std::fs::read_to_string(dir.join(f)).unwrap_or_default()));
    }
    assert!(haystacks[1].1.len() > 1000, "-vvv produced no trace output");
    for (name, text) in &haystacks {
        assert!(!text.contains(SENTINEL), "the password leaked into {name}");
    }
    lab.shutdown().await;
}

/// The same with `--auth kerberos` and only the password: it goes to libkrb5 in this process
/// (no kinit), so it is in no argument list of the scanner or of any child while the scan
/// runs, and in no output, report, lab log or KDC log; a wrong password is in no error text.
#[cfg(feature = "kerberos")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    eems_no_kdc,
    ignore = "MIT Kerberos not installed: apt-get install -y krb5-kdc krb5-admin-server krb5-user faketime"
)]
async fn the_password_appears_nowhere_with_kerberos() {
    const SENTINEL: &str = "S3ntinel-Krb-4e1b";
    const WRONG: &str = "S3ntinel-Wrong-9d2c";
    let mut list = servers("SK", 152, 2, "");
    // A slow one, so that the scan is still running while its processes are looked at.
    list.extend(servers("SL", 153, 1, "faults = { exec_ms = 2000 }"));
    let mut toml = fleet_toml("", &list);
    toml.push_str(&format!(
        "[[account]]\ndomain = \"LAB\"\nuser = \"administrator\"\npassword = \"{SENTINEL}\"\n"
    ));
    let mut fleet = fleet_from_toml(&toml);
    fleet.listener.ntlm = false;
    let realm = eems_lab::kdc::Realm::start(eems_lab::kdc::RealmSpec::for_fleet(&fleet).unwrap())
        .await
        .unwrap();
    let dir = scratch("sentinel-kerberos");
    let lab = eems_lab::testkit::start_kerberos_lab(fleet, &dir, &realm).await;
    let json = dir.join("out.json");
    let org = crate::common::org_data(&dir);
    let run = |password: &'static str| {
        let env = crate::kerberos::client_env(&realm, &dir.join("none.ccache"));
        let inventory = dir.join("inventory.csv");
        crate::common::scan_command(
            &[
                "scan",
                &org[0],
                &org[1],
                "-i",
                inventory.to_str().unwrap(),
                "-u",
                USER,
                "--auth",
                "kerberos",
                "--json",
                json.to_str().unwrap(),
                "--timeout",
                "30",
                "-vvv",
            ],
            password,
            &env,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };

    let child = run(SENTINEL);
    // Every argument list of the scan's process tree, sampled until the scan ends (bounded).
    let pid = child.id();
    let t0 = Instant::now();
    let mut argvs = Vec::new();
    while Path::new(&format!("/proc/{pid}/cmdline")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
        && t0.elapsed() < Duration::from_secs(60)
    {
        argvs.extend(crate::kerberos::argv_of_tree(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = wait_for_exit(child).await;
    assert!(!argvs.is_empty(), "the scan's processes were never seen");
    let rep = report(&json);
    assert_eq!(s(&row(&rep, "SK01")["status"]), "ok", "{rep}");
    let mut haystacks = vec![
        ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
        ("stderr", String::from_utf8_lossy(&out.stderr).into_owned()),
        ("kdc log", realm.kdc_log()),
        ("argument lists", argvs.join("\n")),
    ];
    for f in ["out.json", "lab.jsonl"] {
        haystacks.push((f, std::fs::read_to_string(dir.join(f)).unwrap_or_default()));
    }
    assert!(haystacks[1].1.len() > 1000, "-vvv produced no trace output");
    for (name, text) in &haystacks {
        assert!(!text.contains(SENTINEL), "the password leaked into {name}");
    }

    // A wrong password: refused by the KDC, and named in no error text.
    let out = wait_for_exit(run(WRONG)).await;
    assert_eq!(out.status.code(), Some(3));
    let rep = std::fs::read_to_string(&json).unwrap();
    assert!(rep.contains("refused the password"), "{rep}");
    for (name, text) in [
        ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
        ("stderr", String::from_utf8_lossy(&out.stderr).into_owned()),
        ("out.json", rep),
        ("kdc log", realm.kdc_log()),
    ] {
        assert!(
            !text.contains(WRONG),
            "the wrong password leaked into {name}"
        );
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_is_a_tls_error_row_and_insecure_warns_once() {
    let dir = scratch("wrong-ca");
    let lab = start_lab(
        fleet_from_toml(&fleet_toml("", &servers("TL", 60, 2, ""))),
        &dir,
    )
    .await;
    // A CA that did not issue the listeners' certificates: another lab's.
    let other_dir = scratch("wrong-ca-other");
    let other = start_lab(
        fleet_from_toml(&fleet_toml("", &servers("OT", 61, 1, ""))),
        &other_dir,
    )
    .await;
    let inv = dir.join("inventory-noport.csv");
    let json = dir.join("out.json");
    let out = eems_scan(
        &[
            "scan",
            "-i",
            inv.to_str().unwrap(),
            "-u",
            USER,
            "--https",
            "--ca-cert",
            other_dir.join("ca.pem").to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--timeout",
            "30",
            "--org-data",
            dir.join(ORG_DATA).to_str().unwrap(),
        ],
        PASSWORD,
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    let rep = report(&json);
    for r in rep["servers"].as_array().unwrap() {
        assert_eq!(s(&r["error_stage"]), "connect", "{r}");
        assert!(s(&r["error"]).starts_with("TLS"), "{r}");
    }
    let out = eems_scan(
        &[
            "scan",
            "-i",
            inv.to_str().unwrap(),
            "-u",
            USER,
            "--https",
            "--insecure",
            "--timeout",
            "30",
            "--org-data",
            dir.join(ORG_DATA).to_str().unwrap(),
        ],
        PASSWORD,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("--insecure").count(), 1, "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Basic over HTTP is refused with an explanation, before any connection.
    let before = lab.log_records().len();
    let out = eems_scan(
        &[
            "scan",
            "-i",
            inv.to_str().unwrap(),
            "-u",
            USER,
            "--auth",
            "basic",
        ],
        PASSWORD,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("clear text"));
    assert_eq!(lab.log_records().len(), before);
    other.shutdown().await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_proxy_and_site_reach_the_host_as_inert_literals() {
    let dir = scratch("inject");
    let hostiles = [
        "http://p.lab:8080/'; Stop-Computer; '",
        "http://p.lab:8080/$(Remove-Item C:\\ -Recurse)",
        "http://p.lab:8080/`whoami`;x",
        "http://p.lab:8080/\n$Proxy = 'http://evil'",
        "http://p.lab:8080/\u{2019}; evil \u{00e9}\u{4e2d}",
    ];
    let list: Vec<(String, String, String)> = hostiles
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let p = toml::Value::String(p.to_string()).to_string();
            let site = toml::Value::String(format!("Site'; $(evil{i}) `x`")).to_string();
            (
                format!("IN{i:02}"),
                format!("127.0.62.{}", i + 1),
                format!("internet_web_proxy = {p}\nproxy_required = true\nsite = {site}"),
            )
        })
        .collect();
    let lab = start_lab(fleet_from_toml(&fleet_toml("", &list)), &dir).await;
    let (out, rep) = scan_lab(&dir, PASSWORD, &["--timeout", "10"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{rep}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (i, p) in hostiles.iter().enumerate() {
        let r = row(&rep, &format!("IN{i:02}"));
        // The lab answers 200 only when the script's $Proxy literal is exactly this value.
        assert_eq!(r["pattern_service"], "200 - Reachable", "{r}");
        assert_eq!(s(&r["ocs_proxy"]), *p);
    }
    assert!(
        lab.log_records()
            .iter()
            .all(|r| !r.note.as_deref().unwrap_or("").contains("parse error"))
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_is_never_an_argument_and_a_loose_password_file_is_refused() {
    let dir = scratch("pw-arg");
    std::fs::write(dir.join("inv.txt"), "EX01\n").unwrap();
    let inv = dir.join("inv.txt");
    let out = eems_scan(
        &[
            "scan",
            "-i",
            inv.to_str().unwrap(),
            "-u",
            USER,
            "--password",
            "x",
        ],
        "",
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "a --password flag must not exist"
    );
    // The refusal, not the no-password error that also exits 2.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unexpected argument '--password'"),
        "{stderr}"
    );
    let pw = dir.join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = eems_scan(
            &[
                "scan",
                "-i",
                inv.to_str().unwrap(),
                "-u",
                USER,
                "--password-file",
                pw.to_str().unwrap(),
            ],
            "",
        )
        .await;
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    }
    // No password at all, no terminal: a clear refusal, not a hang.
    let out = eems_scan(&["scan", "-i", inv.to_str().unwrap(), "-u", USER], "").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("EEMS_PASSWORD"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_level_failures_reach_every_row() {
    // Get-OrganizationConfig throws: HealthChecker's red "Failed to query config".
    let dir = scratch("org-error");
    let toml = fleet_toml(
        "error = \"The operation couldn't be performed because object 'x' couldn't be found\"",
        &servers("OE", 63, 2, ""),
    );
    let lab = start_lab(fleet_from_toml(&toml), &dir).await;
    let (out, rep) = scan_lab(&dir, PASSWORD, &[]).await;
    assert_eq!(out.status.code(), Some(1));
    for r in rep["servers"].as_array().unwrap() {
        assert_eq!(s(&r["status"]), "critical", "{r}");
        assert_eq!(s(&r["eems_state"]), "Failed to query config");
        assert!(
            r["findings"].to_string().contains("couldn't be found"),
            "{r}"
        );
        // The host probe's data is still there.
        assert_eq!(s(&r["service_check"]), "Running");
    }
    assert!(s(&rep["organization"]["error"]).contains("couldn't be found"));
    lab.shutdown().await;

    // Get-ExchangeServer throws: server-level settings unknown, never read as "Disabled".
    let dir = scratch("servers-error");
    let toml = fleet_toml(
        "servers_error = \"Active Directory server is not available\"",
        &servers("SE", 64, 2, ""),
    );
    let lab = start_lab(fleet_from_toml(&toml), &dir).await;
    let (out, rep) = scan_lab(&dir, PASSWORD, &[]).await;
    assert_eq!(out.status.code(), Some(3));
    for r in rep["servers"].as_array().unwrap() {
        assert_eq!(s(&r["status"]), "error", "{r}");
        assert!(s(&r["error"]).contains("Get-ExchangeServer failed"), "{r}");
        assert!(s(&r["error"]).contains("not available"), "{r}");
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_after_the_credentials_are_proven_do_not_trip_the_guard() {
    // The password is right (the first server accepts it); five servers refuse this
    // account. That cannot lock the account out, so every one is tried and reported.
    let dir = scratch("lockout-proven");
    let mut list = servers("PV", 65, 1, "");
    list.extend(servers("PX", 66, 5, "faults = { wrong_password = true }"));
    let lab = start_lab(fleet_from_toml(&fleet_toml("", &list)), &dir).await;
    let (out, rep) = scan_lab(&dir, PASSWORD, &["-j", "1", "--timeout", "10"]).await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(s(&row(&rep, "PV01")["status"]), "ok");
    for i in 1..=5 {
        let r = row(&rep, &format!("PX{i:02}"));
        assert!(s(&r["error"]).contains("authentication failed for"), "{r}");
        assert!(!s(&r["error"]).contains("lockout guard"), "{r}");
    }
    lab.shutdown().await;
}
