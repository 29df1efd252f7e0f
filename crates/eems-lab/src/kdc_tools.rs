//! Which MIT Kerberos tools this machine has. Shared, as a file, by the lab ([`super`]) and
//! by the build scripts of eems-lab and eems-scan, which mark the tests needing a KDC
//! `#[ignore]`d (a visible skip, never a pass) when the tools are missing.

use std::path::PathBuf;

/// The tools a realm needs, and the Debian packages that ship them.
pub const TOOLS: [(&str, &str); 5] = [
    ("kdb5_util", "krb5-kdc"),
    ("krb5kdc", "krb5-kdc"),
    ("kadmin.local", "krb5-admin-server"),
    ("kinit", "krb5-user"),
    ("kvno", "krb5-user"),
];
/// Where Debian puts the admin tools; a non-root PATH usually lacks them.
pub const SBIN: [&str; 3] = ["/usr/sbin", "/usr/local/sbin", "/sbin"];
pub const INSTALL: &str = "apt-get install -y krb5-kdc krb5-admin-server krb5-user";
/// The tests also run a KDC whose clock is off (the clock-skew case), under libfaketime.
pub const TEST_TOOLS: [(&str, &str); 1] = [("faketime", "faketime")];

pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `tool (package)` for every missing tool a realm needs.
pub fn missing() -> Vec<String> {
    missing_of(&TOOLS)
}

fn missing_of(tools: &[(&str, &str)]) -> Vec<String> {
    tools
        .iter()
        .filter(|(t, _)| find(t).is_none())
        .map(|(t, pkg)| format!("{t} ({pkg})"))
        .collect()
}

/// For a build script: sets `cfg(eems_no_kdc)` when a tool is missing, and fails the build
/// instead when `EEMS_REQUIRE_KDC` is set (CI), so that there a missing KDC cannot turn the
/// Kerberos tests into skips.
#[allow(dead_code)] // build scripts only
pub fn emit_build_cfg() {
    println!("cargo::rustc-check-cfg=cfg(eems_no_kdc)");
    println!("cargo::rerun-if-env-changed=EEMS_REQUIRE_KDC");
    println!("cargo::rerun-if-env-changed=PATH");
    // Installing the packages changes these directories.
    for dir in SBIN.iter().chain(&["/usr/bin"]) {
        if std::path::Path::new(dir).is_dir() {
            println!("cargo::rerun-if-changed={dir}");
        }
    }
    let mut missing = missing();
    missing.extend(missing_of(&TEST_TOOLS));
    if missing.is_empty() {
        return;
    }
    if std::env::var_os("EEMS_REQUIRE_KDC").is_some() {
        panic!(
            "EEMS_REQUIRE_KDC is set but MIT Kerberos tools are missing: {}; {INSTALL} faketime",
            missing.join(", ")
        );
    }
    println!("cargo::rustc-cfg=eems_no_kdc");
    println!(
        "cargo::warning=Kerberos tests ignored: missing {}; {INSTALL} faketime",
        missing.join(", ")
    );
}
