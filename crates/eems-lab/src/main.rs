//! `eems-lab`: serve a simulated Exchange organisation over real WinRM, or generate a fleet.
//!
//! The command line is an interface other tools script: keep flags and the ready line stable.

use clap::{Parser, Subcommand};
use eems_lab::fleet::Fleet;
use eems_lab::generate::{GenOptions, generate};
use eems_lab::http::Listen;
use eems_lab::{Lab, LabOptions};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "eems-lab",
    version,
    about = "Simulated Exchange organisation speaking WinRM on loopback"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve every host of a fleet file until SIGINT/SIGTERM. A Kerberos fleet also gets
    /// Exchange's /PowerShell (HTTP, one port for every host, printed before the ready line).
    Serve {
        #[arg(long)]
        fleet: PathBuf,
        /// Write the scanner's inventory CSV here.
        #[arg(long)]
        inventory_out: Option<PathBuf>,
        /// Write the lab CA certificate (PEM) here, for HTTPS clients to trust.
        #[arg(long)]
        ca_out: Option<PathBuf>,
        /// Write one JSON line per HTTP request here (the file is replaced).
        #[arg(long)]
        log: Option<PathBuf>,
        /// Which listeners each server opens (one file descriptor each).
        #[arg(long, value_enum, default_value = "both")]
        listen: Listen,
        /// With a fleet that asks for Kerberos: write the realm's krb5.conf here, for
        /// clients' KRB5_CONFIG.
        #[arg(long)]
        krb5_conf_out: Option<PathBuf>,
    },
    /// Serve the demo organisation, scan it with eems-scan as a user would, stop.
    Demo {
        /// Where the reports (eems-report.csv, eems-report.json) and the lab log go.
        #[arg(long, default_value = "eems-demo")]
        out: PathBuf,
    },
    /// Measure a scan of a generated fleet served by a separate lab process.
    Bench(BenchArgs),
    /// Generate a fleet file.
    Gen {
        #[arg(long)]
        servers: usize,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        #[arg(long, default_value_t = 0)]
        exec_ms: u64,
        /// Sprinkle faults over the fleet.
        #[arg(long)]
        faults: bool,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Serve {
            fleet,
            inventory_out,
            ca_out,
            log,
            listen,
            krb5_conf_out,
        } => {
            let fleet = Fleet::load(&fleet)?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(
                    fleet,
                    inventory_out,
                    ca_out,
                    log,
                    listen,
                    krb5_conf_out,
                ))
        }
        Cmd::Demo { out } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(eems_lab::demo::run(&out)),
        Cmd::Bench(args) => bench(args),
        Cmd::Gen {
            servers,
            seed,
            out,
            latency_ms,
            exec_ms,
            faults,
        } => {
            let fleet = generate(&GenOptions {
                servers,
                seed,
                latency_ms,
                exec_ms,
                faults,
            });
            let text = toml::to_string(&fleet)?;
            std::fs::write(&out, text)
                .map_err(|e| anyhow::anyhow!("{}: cannot write fleet: {e}", out.display()))
        }
    }
}

async fn serve(
    fleet: Fleet,
    inventory_out: Option<PathBuf>,
    ca_out: Option<PathBuf>,
    log: Option<PathBuf>,
    listen: Listen,
    krb5_conf_out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let n = fleet.servers.len();
    let opts = LabOptions {
        log_path: log,
        keep_log_in_memory: false,
    };
    #[cfg(feature = "kerberos")]
    if krb5_conf_out.is_some() && !fleet.listener.kerberos {
        anyhow::bail!(
            "--krb5-conf-out: the fleet does not ask for Kerberos ([listener] kerberos = true)"
        );
    }
    #[cfg(feature = "kerberos")]
    let (lab, realm_ps) = if fleet.listener.kerberos {
        let spec = eems_lab::kdc::RealmSpec::for_fleet(&fleet)?;
        let realm = eems_lab::kdc::Realm::start(spec).await?;
        if let Some(p) = &krb5_conf_out {
            std::fs::copy(realm.krb5_conf(), p)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        }
        eprintln!(
            "eems-lab: Kerberos realm {} (KDC {}), krb5.conf {}",
            realm.realm(),
            realm.kdc_addr(),
            realm.krb5_conf().display()
        );
        let lab = Lab::start_with_realm(fleet, opts, listen, &realm).await?;
        // Exchange's /PowerShell, so that the scanner's default org query has its endpoint.
        let ps = match lab.start_exchange_ps(&realm).await {
            Ok(ps) => ps,
            Err(e) => {
                lab.shutdown().await;
                return Err(e);
            }
        };
        (lab, Some((realm, ps)))
    } else {
        (Lab::start_listening(fleet, opts, listen).await?, None)
    };
    #[cfg(feature = "kerberos")]
    let ps_port = realm_ps.as_ref().map(|(_, (_, port))| *port);
    #[cfg(not(feature = "kerberos"))]
    let ps_port: Option<u16> = None;
    #[cfg(not(feature = "kerberos"))]
    let lab = {
        if fleet.listener.kerberos || krb5_conf_out.is_some() {
            anyhow::bail!(
                "the fleet asks for Kerberos ([listener] kerberos = true), but this eems-lab is \
                 built without the kerberos feature (cargo build --features eems-lab/kerberos; \
                 needs libkrb5-dev)"
            );
        }
        Lab::start_listening(fleet, opts, listen).await?
    };
    let written = (|| -> anyhow::Result<()> {
        if let Some(p) = &inventory_out {
            std::fs::write(p, lab.inventory_csv())
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        }
        if let Some(p) = &ca_out {
            std::fs::write(p, lab.ca_pem()).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        lab.shutdown().await;
        return Err(e);
    }
    {
        let mut out = std::io::stdout().lock();
        if let Some(port) = ps_port {
            writeln!(out, "{}{port}", eems_lab::PS_PORT_LINE)?;
        }
        writeln!(out, "eems-lab ready: {n} servers")?;
        out.flush()?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    #[cfg(feature = "kerberos")]
    if let Some((_, (ps, _))) = realm_ps {
        ps.shutdown().await;
    }
    lab.shutdown().await;
    Ok(())
}

/// What `bench` measures: the options of `eems_lab::bench::BenchOptions` a user picks.
#[derive(clap::Args)]
struct BenchArgs {
    #[arg(long, default_value_t = 1000)]
    servers: usize,
    /// Scanner concurrency (-j); several, comma-separated, measure one run each.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    concurrency: Vec<usize>,
    /// Added by the lab to every HTTP response.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Remote execution time before each probe's output.
    #[arg(long, default_value_t = 1000)]
    exec_ms: u64,
    /// NTLM over HTTPS instead of sealed HTTP.
    #[arg(long)]
    https: bool,
    /// The scan's `--evidence-days` (its default, 7, unless given); 0 scans with
    /// `--no-evidence`, host probe v1 alone.
    #[arg(long, value_name = "DAYS", default_value_t = eems_core::probe::DEFAULT_EVIDENCE_DAYS, value_parser = clap::value_parser!(u32).range(0..=365))]
    evidence_days: u32,
    /// How the scanner authenticates: `kerberos` has the lab start a throwaway MIT realm
    /// and block NTLM (needs the kerberos feature and krb5kdc).
    #[arg(long, value_parser = ["ntlm", "kerberos"], default_value = "ntlm")]
    auth: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also run the pywinrm fan-out (benches/peer_pywinrm.py) with this Python.
    #[arg(long, value_name = "PYTHON")]
    peer: Option<PathBuf>,
    /// Scratch folder for the fleet, inventory, logs and reports.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// Also write the measurements as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs the benchmark with the binaries beside this one, once per concurrency: each run
/// its own fleet, lab process and work folder, so no run inherits another's connections.
#[cfg(unix)]
fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let here = std::env::current_exe()?;
    let scan_bin = eems_lab::scanner_beside(&here)?;
    if let Some(zero) = a.concurrency.iter().find(|&&c| c == 0) {
        anyhow::bail!("--concurrency {zero}: each value must be at least 1");
    }
    let mut reports = Vec::new();
    for &concurrency in &a.concurrency {
        let work_dir = if a.concurrency.len() > 1 {
            a.work_dir.join(format!("j{concurrency}"))
        } else {
            a.work_dir.clone()
        };
        let report = eems_lab::bench::run(&eems_lab::bench::BenchOptions {
            servers: a.servers,
            concurrency,
            latency_ms: a.latency_ms,
            exec_ms: a.exec_ms,
            https: a.https,
            evidence_days: a.evidence_days,
            kerberos: a.auth == "kerberos",
            seed: a.seed,
            work_dir,
            lab_bin: here.clone(),
            scan_bin: scan_bin.clone(),
            peer_python: a.peer.clone(),
            peer_script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peer_pywinrm.py"),
        })?;
        print!("{}", report.table());
        println!();
        reports.push(report);
    }
    print!("{}", eems_lab::bench::BenchReport::ROW_HEADER);
    for r in &reports {
        print!("{}", r.row());
    }
    if let Some(path) = a.json {
        std::fs::write(&path, serde_json::to_string_pretty(&reports)?)
            .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))?;
    }
    Ok(())
}

/// The benchmark reads process costs with `wait4`: Unix only.
#[cfg(not(unix))]
fn bench(_: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("eems-lab bench needs a Unix system (it measures processes with wait4)")
}
