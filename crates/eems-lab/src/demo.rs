//! `eems-lab demo`: the one command that shows eems-scan working. It serves the demo
//! organisation ([`DEMO_FLEET`]) and runs the real `eems-scan` binary built beside this one
//! against it exactly as a user would run `eems-scan scan`, then stops the lab.
//!
//! With MIT's KDC installed (and the `kerberos` feature, on by default) the organisation is
//! a realistic one (issue 10): Kerberos from a throwaway realm, NTLM refused on every host,
//! WinRS logons without a second hop, and the org query over Exchange's `/PowerShell` (down
//! on EX01, so the org-server fallback shows). Without, the demo says what it skipped and
//! scans with NTLM, the org facts from the file `eems-scan org-command` would write.

use std::path::Path;

use crate::fleet::{self, Fleet};
use crate::log::{OrgQueryAudit, read_jsonl};
use crate::{Lab, LabOptions};

/// The demo organisation (fleets/demo.toml), embedded so the binary works from anywhere.
pub const DEMO_FLEET: &str = include_str!("../fleets/demo.toml");

/// Runs the demo. The scan's own exit status is printed, not returned: the demo's servers
/// are broken on purpose, so a non-zero status is its expected outcome. An org query that
/// sent script text to `/PowerShell` or loaded the snap-in over WinRS is an error.
pub async fn run(out_dir: &Path) -> anyhow::Result<()> {
    let scanner = crate::scanner_beside(&std::env::current_exe()?)?;
    std::fs::create_dir_all(out_dir).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot create the output folder: {e}",
            out_dir.display()
        )
    })?;
    let mut fleet: Fleet = toml::from_str(DEMO_FLEET)?;
    fleet
        .validate()
        .map_err(|e| anyhow::anyhow!("demo fleet: {e}"))?;
    let servers = fleet.servers.len();
    let log_path = out_dir.join("lab-requests.jsonl");
    let opts = LabOptions {
        log_path: Some(log_path.clone()),
        keep_log_in_memory: false,
    };
    let kerberos = kerberos_realm(&fleet).await;
    if kerberos.is_ok() {
        // As an organisation that restricts NTLM: Kerberos or nothing, on every host.
        fleet.listener.ntlm = false;
    }
    #[cfg(feature = "kerberos")]
    let (lab, ps) = match &kerberos {
        Ok(realm) => {
            let lab = Lab::start_with_realm(fleet, opts, crate::http::Listen::Both, realm).await?;
            let ps = lab.start_exchange_ps(realm).await?;
            (lab, Some(ps))
        }
        Err(_) => (Lab::start(fleet, opts).await?, None),
    };
    #[cfg(not(feature = "kerberos"))]
    let (lab, ps): (Lab, Option<((), u16)>) = (Lab::start(fleet, opts).await?, None);
    let inventory = out_dir.join("inventory.csv");
    std::fs::write(&inventory, lab.inventory_csv())?;

    let csv = out_dir.join("eems-report.csv");
    let json = out_dir.join("eems-report.json");
    let html = out_dir.join("eems-report.html");
    let org_data = out_dir.join("eems-org.json");
    let user = format!("{}\\{}", fleet::DEFAULT_DOMAIN, fleet::DEFAULT_USER);
    // A short deadline and OperationTimeout keep the demo's hung and slow servers brief;
    // a real fleet keeps the defaults (120 s, 20 s).
    let mut args: Vec<String> = [
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
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mechanism = match (&kerberos, &ps) {
        (Ok(_), Some((_, port))) => {
            // The lab cannot bind port 80: its /PowerShell listens on a free port.
            args.extend(["--auth", "kerberos", "--org-port", &port.to_string()].map(String::from));
            "Kerberos from a real MIT KDC on loopback, sealed; NTLM refused on every host; \
             the org query over Exchange Remote PowerShell (/PowerShell), no second hop"
        }
        (why, _) => {
            let why = why.as_ref().err().map_or("no /PowerShell", |w| w.as_str());
            eprintln!(
                "eems-lab demo: Kerberos skipped: {why}; scanning with NTLM, and the org facts \
                 from {} (written as the line of `eems-scan org-command` writes it in the \
                 Exchange Management Shell) instead of the org query over Remote PowerShell",
                org_data.display()
            );
            std::fs::write(&org_data, lab.org_data_json()?).map_err(|e| {
                anyhow::anyhow!("{}: cannot write the org data: {e}", org_data.display())
            })?;
            args.extend(["--org-data".to_string(), path_str(&org_data)?.to_string()]);
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
    #[cfg(feature = "kerberos")]
    if let Some((ps, _)) = ps {
        ps.shutdown().await;
    }
    lab.shutdown().await;
    drop(kerberos);
    eprintln!(
        "\nreports: {}, {} and {} (exit status {code}: some demo servers are broken on purpose)",
        csv.display(),
        json.display(),
        html.display()
    );
    let audit = OrgQueryAudit::of(&read_jsonl(&log_path)?);
    eprintln!("lab log {}: {audit}", log_path.display());
    if !audit.is_clean() {
        anyhow::bail!(
            "the org query sent script text to /PowerShell or loaded the snap-in over WinRS"
        );
    }
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
        "this eems-lab is built without Kerberos (--no-default-features; the default build \
         needs libkrb5-dev and libclang-dev)"
            .into(),
    )
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow::anyhow!("{}: not valid UTF-8", p.display()))
}
