//! `eems-lab demo`: the one command that shows eems-scan working. It serves the demo
//! organisation ([`DEMO_FLEET`]), runs the real `eems-scan` binary built beside this one
//! against it over NTLM-sealed HTTP exactly as a user would run `eems-scan scan`, and
//! stops the lab.

use std::path::Path;

use crate::fleet::{self, Fleet};
use crate::{Lab, LabOptions};

/// The demo organisation (fleets/demo.toml), embedded so the binary works from anywhere.
pub const DEMO_FLEET: &str = include_str!("../fleets/demo.toml");

/// Runs the demo. The scan's own exit status is printed, not returned: the demo's servers
/// are broken on purpose, so a non-zero status is its expected outcome.
pub async fn run(out_dir: &Path) -> anyhow::Result<()> {
    let scanner = crate::scanner_beside(&std::env::current_exe()?)?;
    std::fs::create_dir_all(out_dir).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot create the output folder: {e}",
            out_dir.display()
        )
    })?;
    let fleet: Fleet = toml::from_str(DEMO_FLEET)?;
    fleet
        .validate()
        .map_err(|e| anyhow::anyhow!("demo fleet: {e}"))?;
    let servers = fleet.servers.len();
    let opts = LabOptions {
        log_path: Some(out_dir.join("lab-requests.jsonl")),
        keep_log_in_memory: false,
    };
    // Kerberos when this build has it and MIT's KDC is installed: a throwaway realm, NTLM
    // still accepted (some demo hosts are broken on purpose, not by policy).
    let kerberos = kerberos_realm(&fleet).await;
    #[cfg(feature = "kerberos")]
    let lab = match &kerberos {
        Ok(realm) => Lab::start_with_realm(fleet, opts, crate::http::Listen::Both, realm).await?,
        Err(_) => Lab::start(fleet, opts).await?,
    };
    #[cfg(not(feature = "kerberos"))]
    let lab = Lab::start(fleet, opts).await?;
    let inventory = out_dir.join("inventory.csv");
    std::fs::write(&inventory, lab.inventory_csv())?;

    let csv = out_dir.join("eems-report.csv");
    let json = out_dir.join("eems-report.json");
    let html = out_dir.join("eems-report.html");
    let user = format!("{}\\{}", fleet::DEFAULT_DOMAIN, fleet::DEFAULT_USER);
    // A short deadline and OperationTimeout keep the demo's hung and slow servers brief;
    // a real fleet keeps the defaults (120 s, 20 s).
    let mut args = vec![
        "scan",
        "--inventory",
        path_str(&inventory)?,
        "--user",
        &user,
        "--csv",
        path_str(&csv)?,
        "--json",
        path_str(&json)?,
        "--html",
        path_str(&html)?,
        "--timeout",
        "10",
        "--operation-timeout",
        "2",
        // The demo fleet holds one server of each evidence verdict.
        "--evidence-days",
        "7",
    ];
    let mechanism = match &kerberos {
        Ok(_) => {
            args.extend(["--auth", "kerberos"]);
            "Kerberos from a real MIT KDC on loopback, sealed"
        }
        Err(why) => {
            eprintln!("eems-lab demo: Kerberos skipped: {why}; scanning with NTLM");
            "NTLM, sealed"
        }
    };
    eprintln!(
        "eems-lab demo: {servers} simulated Exchange servers on 127.0.10.x (WinRM over HTTP, {mechanism})"
    );
    eprintln!(
        "running: eems-scan {} (password from the lab's fixture account, in EEMS_PASSWORD)\n",
        args.join(" ")
    );
    // The password goes through the environment, never the argument list.
    let mut scan = tokio::process::Command::new(&scanner);
    #[cfg(feature = "kerberos")]
    if let Ok(realm) = &kerberos {
        // The realm's krb5.conf; no ticket cache, so the scanner gets its own ticket from
        // the password, in memory.
        scan.envs(
            realm
                .client_env()
                .into_iter()
                .filter(|(k, _)| *k == "KRB5_CONFIG"),
        );
    }
    let status = scan
        .args(&args)
        .env("EEMS_PASSWORD", fleet::DEFAULT_PASSWORD)
        // The demo's scan is the documented one: no saved profile of the user's applies.
        .env("EEMS_NO_PROFILE", "1")
        .status()
        .await
        .map_err(|e| anyhow::anyhow!("{}: cannot run: {e}", scanner.display()))?;
    let code = status.code().unwrap_or(-1);
    lab.shutdown().await;
    drop(kerberos);
    eprintln!(
        "\nreports: {}, {} and {} (exit status {code}: some demo servers are broken on purpose)",
        csv.display(),
        json.display(),
        html.display()
    );
    Ok(())
}

/// The demo's realm, or why there is none (said before the scan).
#[cfg(feature = "kerberos")]
async fn kerberos_realm(fleet: &Fleet) -> Result<crate::kdc::Realm, String> {
    if let Some(why) = crate::kdc::unavailable() {
        return Err(why);
    }
    let spec = crate::kdc::RealmSpec::for_fleet(fleet).map_err(|e| e.to_string())?;
    crate::kdc::Realm::start(spec)
        .await
        .map_err(|e| format!("the KDC did not start: {e:#}"))
}

#[cfg(not(feature = "kerberos"))]
async fn kerberos_realm(_fleet: &Fleet) -> Result<std::convert::Infallible, String> {
    Err(
        "this build has no Kerberos (build with --features kerberos, which needs libkrb5-dev)"
            .into(),
    )
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow::anyhow!("{}: not valid UTF-8", p.display()))
}
