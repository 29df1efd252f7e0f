//! What the `eems-scan` binary does with its command line: credentials, logging,
//! signals, report files, the console summary, and the exit status.
//!
//! One file per kind of work: [`connection`] turns the connection flags and the password
//! into a transport config, [`scan_cmd`] runs `scan` with its progress bar, [`saved`] renders
//! saved scans (`report`, `compare`); this file dispatches and holds what they share
//! (failures, signals, report destinations) and the two small network commands.

mod connection;
mod saved;
mod scan_cmd;

use std::path::Path;

use tokio_util::sync::CancellationToken;
use winrm_rs::SecretString;

use crate::cli::{Cli, Command, DiscoverArgs, DoctorArgs};
use crate::exit;
use crate::render::output::{Destination, Output, same_file};
use crate::scan;

use connection::{read_password, transport_config};

/// Probe output beyond this is cut off: the probes print a few KiB.
pub const MAX_OUTPUT_BYTES: usize = 4 << 20;

/// Where the password comes from. The binary reads the environment; the lab demo hands
/// its fixture password over directly.
pub enum PasswordSource {
    /// EEMS_PASSWORD, then --password-file, then a prompt on the terminal.
    Interactive,
    Given(SecretString),
}

/// An error that ends the run with a status and a message for stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: exit::USAGE,
        message: message.into(),
    }
}

/// `what` failed after servers were contacted; `e` names the path (see `Output`).
fn unwritten(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure {
        code: exit::REPORT,
        message: format!("cannot write {what}: {e}"),
    }
}

/// Runs a parsed command line; returns the exit status.
pub async fn run(cli: Cli, password: PasswordSource) -> Result<i32, Failure> {
    // One descriptor per connection: a big fleet passes the usual soft limit of 1024 long
    // before the hard one. Best effort: without it a small scan still works.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
    match cli.command {
        Command::Scan(args) => scan_cmd::scan(args, password).await,
        Command::Discover(args) => discover(args, password).await,
        Command::Report(args) => saved::report(args),
        Command::Compare(args) => saved::compare(args),
        Command::OrgCommand => {
            println!("{}", scan::ORG_COMMAND);
            Ok(exit::OK)
        }
        Command::Doctor(args) => doctor(args, password).await,
        Command::Completions { shell } => {
            let mut cmd = crate::cli::command();
            clap_complete::generate(shell, &mut cmd, "eems-scan", &mut std::io::stdout());
            Ok(exit::OK)
        }
        Command::Man { out_dir } => {
            let written = match &out_dir {
                Some(dir) => std::fs::create_dir_all(dir)
                    .and_then(|()| clap_mangen::generate_to(crate::cli::command(), dir)),
                None => clap_mangen::Man::new(crate::cli::command()).render(&mut std::io::stdout()),
            };
            written.map(|_| exit::OK).map_err(|e| {
                let place = out_dir.map(|d| format!(" into {}", d.display()));
                usage(format!(
                    "cannot write the manual page{}: {e}",
                    place.unwrap_or_default()
                ))
            })
        }
    }
}

/// Sets up `tracing` on stderr. Never logs SOAP bodies (winrm-rs logs them only when asked).
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn,winrm_rs::ntlm_over_http=off",
        1 => "info,winrm_rs=warn",
        2 => "debug,winrm_rs=info,hyper=info,reqwest=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose >= 2)
        .try_init();
}

/// First Ctrl-C (or SIGTERM): stop starting probes, clean up, write the reports.
/// Second: leave at once.
fn install_signal_handlers(cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut count = 0u32;
        loop {
            wait_for_signal().await;
            count += 1;
            if count == 1 {
                eprintln!(
                    "\ninterrupted: closing open sessions and writing the reports (Ctrl-C again to quit at once)"
                );
                cancel.cancel();
            } else {
                std::process::exit(exit::INTERRUPTED);
            }
        }
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Whether any report goes to stdout (the console summary then goes to stderr).
fn to_stdout(dests: &[&Option<Destination>]) -> bool {
    dests.iter().any(|d| **d == Some(Destination::Stdout))
}

/// Before anything else: at most one report on stdout, each writable, none overwriting
/// an input or another report.
fn check_destinations(
    dests: &[&Option<Destination>],
    flags: &str,
    inputs: &[&Path],
) -> Result<(), Failure> {
    if dests
        .iter()
        .filter(|d| ***d == Some(Destination::Stdout))
        .count()
        > 1
    {
        return Err(usage(format!("only one of {flags} can go to stdout")));
    }
    let mut earlier: Vec<&Path> = Vec::new();
    for d in dests.iter().filter_map(|d| d.as_ref()) {
        d.preflight(inputs).map_err(usage)?;
        if let Destination::File(path) = d {
            // Two flags naming one file would leave only the last report.
            if earlier.iter().any(|e| same_file(e, path)) {
                return Err(usage(format!("{}: named for two reports", path.display())));
            }
            earlier.push(path);
        }
    }
    Ok(())
}

/// Writes one report: open (beside the target), fill, rename into place. Any failure is
/// exit 2 for `report` and `compare`, which have no servers to blame.
fn write_report(
    dest: &Destination,
    fill: impl FnOnce(&mut Output) -> std::io::Result<()>,
) -> Result<(), Failure> {
    let fail = |e: std::io::Error| usage(format!("cannot write report: {e}"));
    let mut out = dest.open().map_err(fail)?;
    fill(&mut out).map_err(fail)?;
    out.commit().map_err(fail)
}

async fn doctor(args: DoctorArgs, password: PasswordSource) -> Result<i32, Failure> {
    let (targets, left_out) = crate::doctor::targets(&args).map_err(usage)?;
    let password = read_password(password, &args.connection)?;
    let transport = transport_config(&args.connection, password)?;
    let cancel = CancellationToken::new();
    install_signal_handlers(cancel.clone());
    let report = crate::doctor::run(&args, &transport, targets, left_out, &cancel).await;
    if args.json_output {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| usage(format!("cannot write JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", crate::doctor::render_table(&report));
    }
    Ok(if cancel.is_cancelled() {
        exit::INTERRUPTED
    } else {
        report.exit_code()
    })
}

async fn discover(args: DiscoverArgs, password: PasswordSource) -> Result<i32, Failure> {
    let dest = Destination::parse(&args.out);
    dest.preflight(&[]).map_err(usage)?;
    let password = read_password(password, &args.connection)?;
    let transport = transport_config(&args.connection, password)?;
    let cancel = CancellationToken::new();
    install_signal_handlers(cancel.clone());
    let facts = scan::discover(
        &transport,
        org_via(&args.org, args.connection.https),
        &args.from,
        args.connection.timeout(),
        &cancel,
    )
    .await
    .map_err(|e| Failure {
        code: exit::UNSCANNED,
        message: e,
    })?;
    let fail = |e: &dyn std::fmt::Display| unwritten("the inventory", e);
    let mut out = dest.open().map_err(|e| fail(&e))?;
    let mut w = csv::Writer::from_writer(&mut out);
    w.write_record(["name", "address", "role", "site"])
        .map_err(|e| fail(&e))?;
    for s in &facts.servers {
        let role = match (s.is_edge_server, s.server_role.as_deref()) {
            (Some(true), Some(r)) if !r.to_ascii_lowercase().contains("edge") => {
                format!("{r} Edge")
            }
            (Some(true), None) => "Edge".into(),
            (_, r) => r.unwrap_or("").to_string(),
        };
        w.write_record([
            s.name.as_str(),
            s.fqdn.as_deref().unwrap_or(""),
            role.as_str(),
            s.site.as_deref().unwrap_or(""),
        ])
        .map_err(|e| fail(&e))?;
    }
    w.flush().map_err(|e| fail(&e))?;
    drop(w);
    out.commit().map_err(|e| fail(&e))?;
    eprintln!(
        "{} Exchange server(s) found via {}",
        facts.servers.len(),
        args.from
    );
    Ok(exit::OK)
}

/// Where the org query goes: `--org-via`, with the Remote PowerShell port defaulting to
/// the Default Web Site's (80, or 443 with `--https`). The legacy snap-in path warns once on
/// stderr: it is only there for organisations that delegate, and an admin who picked it from
/// an old script should learn why it fails before reading the rows.
pub(crate) fn org_via(args: &crate::cli::OrgArgs, https: bool) -> scan::OrgVia {
    match args.org_via {
        crate::cli::OrgViaArg::WinrsSnapin => {
            eprintln!("{}", scan::WINRS_SNAPIN_WARNING);
            scan::OrgVia::WinRs
        }
        crate::cli::OrgViaArg::RemotePowershell => scan::OrgVia::RemotePowerShell {
            port: args.org_port.unwrap_or(if https { 443 } else { 80 }),
        },
    }
}
