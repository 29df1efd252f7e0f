//! `eems-lab demo`: the one command that shows eems-scan working. It serves the demo
//! organisation (inventory/lab/demo.toml, embedded so the binary works from anywhere),
//! runs the real scanner against it over NTLM-sealed HTTP exactly as a user would run
//! `eems-scan scan`, and stops the lab.

use std::path::Path;

use clap::Parser;
use winrm_rs::SecretString;

use crate::app::{self, PasswordSource};
use crate::cli::Cli;
use crate::lab::fleet::{self, Fleet};
use crate::lab::{Lab, LabOptions};

const DEMO_FLEET: &str = include_str!("../../inventory/lab/demo.toml");

/// Runs the demo. The scan's own exit status is printed, not returned: the demo's servers
/// are broken on purpose, so a non-zero status is its expected outcome.
pub async fn run(out_dir: &Path) -> anyhow::Result<()> {
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
    let lab = Lab::start(
        fleet,
        LabOptions {
            log_path: Some(out_dir.join("lab-requests.jsonl")),
            keep_log_in_memory: false,
        },
    )
    .await?;
    let inventory = out_dir.join("inventory.csv");
    std::fs::write(&inventory, lab.inventory_csv())?;

    let csv = out_dir.join("eems-report.csv");
    let json = out_dir.join("eems-report.json");
    let html = out_dir.join("eems-report.html");
    let user = format!("{}\\{}", fleet::DEFAULT_DOMAIN, fleet::DEFAULT_USER);
    // A short deadline and OperationTimeout keep the demo's hung and slow servers brief;
    // a real fleet keeps the defaults (120 s, 20 s).
    let args = [
        "eems-scan",
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
    ];
    eprintln!(
        "eems-lab demo: {servers} simulated Exchange servers on 127.0.10.x (WinRM over HTTP, NTLM, sealed)"
    );
    eprintln!(
        "running: {} (password from the lab's fixture account)\n",
        args.join(" ")
    );
    let cli = Cli::try_parse_from(args)?;
    let password = PasswordSource::Given(SecretString::from(fleet::DEFAULT_PASSWORD.to_string()));
    let code = match app::run(cli, password).await {
        Ok(code) => code,
        Err(f) => {
            eprintln!("eems-scan: {}", f.message);
            f.code
        }
    };
    lab.shutdown().await;
    eprintln!(
        "\nreports: {}, {} and {} (exit status {code}: some demo servers are broken on purpose)",
        csv.display(),
        json.display(),
        html.display()
    );
    Ok(())
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow::anyhow!("{}: not valid UTF-8", p.display()))
}
