//! What the `eems-scan` binary does with its command line: credentials, logging,
//! signals, report files, the console summary, and the exit status.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;
use winrm_rs::SecretString;

use crate::cli::{Cli, Command, CompareArgs, ConnectionArgs, DiscoverArgs, ReportArgs, ScanArgs};
use crate::render::csv::CsvSink;
use crate::render::html::{HtmlSink, ScanLabel};
use crate::render::json::JsonSink;
use crate::render::output::{Destination, Output, same_file};
use crate::render::{RowSink, ScanEnd, ScanStart, console, drift, html};
use crate::scan::{self, Progress, ScanOptions, Servers};
use crate::transport::{Account, TransportConfig};
use eems_core::inventory;
use eems_core::report::{ScanReport, ServerRow};

/// Exit status for usage and input errors.
pub const EXIT_USAGE: i32 = 2;
/// Exit status after an interruption (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;
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
        code: EXIT_USAGE,
        message: message.into(),
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
        Command::Scan(args) => scan(args, password).await,
        Command::Discover(args) => discover(args, password).await,
        Command::Report(args) => report(args),
        Command::Compare(args) => compare(args),
        Command::OrgCommand => {
            println!("{}", scan::ORG_COMMAND);
            Ok(0)
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

fn read_password(source: PasswordSource, conn: &ConnectionArgs) -> Result<SecretString, Failure> {
    if let PasswordSource::Given(p) = source {
        return Ok(p);
    }
    if let Some(file) = &conn.password_file {
        return read_password_file(file);
    }
    if let Ok(p) = std::env::var("EEMS_PASSWORD")
        && !p.is_empty()
    {
        return Ok(SecretString::from(p));
    }
    if std::io::stdin().is_terminal() {
        let prompt = format!("Password for {}: ", conn.user);
        return rpassword::prompt_password(prompt)
            .map(SecretString::from)
            .map_err(|e| usage(format!("cannot read the password from the terminal: {e}")));
    }
    Err(usage(
        "no password: set EEMS_PASSWORD, use --password-file, or run in a terminal to be \
         prompted (the password is never taken as an argument)",
    ))
}

fn read_password_file(path: &Path) -> Result<SecretString, Failure> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| {
            usage(format!(
                "{}: cannot read the password file: {e}",
                path.display()
            ))
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(usage(format!(
                "{}: the password file is readable by group or others; chmod 600 it",
                path.display()
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        usage(format!(
            "{}: cannot read the password file: {e}",
            path.display()
        ))
    })?;
    let first = text.lines().next().unwrap_or("").to_string();
    if first.is_empty() {
        return Err(usage(format!(
            "{}: the password file is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(first))
}

fn transport_config(
    conn: &ConnectionArgs,
    password: SecretString,
) -> Result<TransportConfig, Failure> {
    let account = Account::parse(&conn.user).map_err(|e| usage(format!("--user: {e}")))?;
    let cfg = TransportConfig {
        https: conn.https,
        port: conn.port,
        auth: conn.auth,
        account,
        password,
        ca_cert: conn.ca_cert.clone(),
        insecure: conn.insecure,
        client_cert: conn.client_cert.clone(),
        client_key: conn.client_key.clone(),
        connect_timeout: Duration::from_secs(conn.connect_timeout),
        operation_timeout_secs: conn.operation_timeout,
        max_output_bytes: MAX_OUTPUT_BYTES,
        clients: Default::default(),
    };
    cfg.validate().map_err(usage)?;
    for (flag, path) in [
        ("--ca-cert", &cfg.ca_cert),
        ("--client-cert", &cfg.client_cert),
        ("--client-key", &cfg.client_key),
    ] {
        if let Some(p) = path
            && let Err(e) = std::fs::metadata(p)
        {
            return Err(usage(format!("{flag} {}: {e}", p.display())));
        }
    }
    if cfg.insecure {
        eprintln!(
            "warning: --insecure: HTTPS certificates are NOT verified; anyone on the path can \
             impersonate the servers and receive the authentication. Use --ca-cert outside a lab."
        );
    }
    Ok(cfg)
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
                std::process::exit(EXIT_INTERRUPTED);
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

/// The indicatif bar for the host phase, on stderr.
struct Bar {
    bar: ProgressBar,
}

impl Bar {
    fn new(visible: bool) -> Bar {
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bar { bar }
    }
}

impl Progress for Bar {
    fn org_phase(&self, server: &str) {
        self.bar
            .set_message(format!("org query on {}", console::clip(server, 30)));
        self.bar.enable_steady_tick(Duration::from_millis(200));
    }
    fn host_phase(&self, servers: usize) {
        self.bar.set_length(servers as u64 + self.bar.position());
        self.bar.set_message("probing servers");
    }
    fn row_done(&self, row: &ServerRow) {
        if self.bar.length().is_some_and(|l| self.bar.position() >= l) {
            self.bar.inc_length(1);
        }
        self.bar.inc(1);
        self.bar.set_message(console::clip(&row.server, 30));
    }
    fn finished(&self) {
        self.bar.finish_and_clear();
    }
}

async fn scan(args: ScanArgs, password: PasswordSource) -> Result<i32, Failure> {
    // Everything that can be wrong with the input is checked before any connection.
    let servers = match (&args.inventory, &args.discover_from) {
        (Some(path), _) => {
            let entries = inventory::load(path).map_err(|e| usage(e.to_string()))?;
            Servers::Listed(entries)
        }
        (None, Some(from)) => Servers::DiscoverFrom(from.clone()),
        (None, None) => return Err(usage("give --inventory FILE or --discover-from SERVER")),
    };
    let inputs: Vec<&Path> = args.inventory.iter().map(|p| p.as_path()).collect();
    let csv_dest = args.csv.as_deref().map(Destination::parse);
    let json_dest = args.json.as_deref().map(Destination::parse);
    let html_dest = args.html.as_deref().map(Destination::parse);
    let dests = [&csv_dest, &json_dest, &html_dest];
    check_destinations(&dests, "--csv, --json and --html", &inputs)?;
    let password = read_password(password, &args.connection)?;
    let transport = transport_config(&args.connection, password)?;
    let opts = ScanOptions {
        transport,
        concurrency: args.concurrency as usize,
        timeout: args.connection.timeout(),
        org_server: args.org_server.clone(),
        ocs_url: args.ocs_url.clone(),
        ocs_timeout_secs: args.ocs_timeout,
        max_auth_failures: args.max_auth_failures,
        org_via: org_via(&args.org, args.connection.https),
        org_data: args.org_data.clone(),
    };

    let open = |d: &Destination| {
        d.open().map_err(|e| Failure {
            code: EXIT_USAGE,
            message: format!("cannot write report: {e}"),
        })
    };
    let mut csv_sink = csv_dest.as_ref().map(open).transpose()?.map(CsvSink::new);
    let mut json_sink = json_dest.as_ref().map(open).transpose()?.map(JsonSink::new);
    let mut html_sink = html_dest.as_ref().map(open).transpose()?.map(HtmlSink::new);
    let mut sinks: Vec<&mut dyn RowSink> = Vec::new();
    if let Some(s) = csv_sink.as_mut() {
        sinks.push(s);
    }
    if let Some(s) = json_sink.as_mut() {
        sinks.push(s);
    }
    if let Some(s) = html_sink.as_mut() {
        sinks.push(s);
    }

    let cancel = CancellationToken::new();
    install_signal_handlers(cancel.clone());
    let bar = Bar::new(!args.quiet && !args.no_progress && crate::cli::stderr_is_terminal());
    let outcome = scan::run(&opts, servers, &mut sinks, &bar, cancel)
        .await
        .map_err(|e| Failure {
            code: 3,
            message: format!("writing a report failed: {e}"),
        })?;
    drop(sinks);

    let commit = |o: Output| {
        o.commit().map_err(|e| Failure {
            code: 3,
            message: format!("{e}"),
        })
    };
    if let Some(s) = csv_sink {
        commit(s.into_inner().map_err(|e| Failure {
            code: 3,
            message: e.to_string(),
        })?)?;
    }
    if let Some(s) = json_sink {
        commit(s.into_inner())?;
    }
    if let Some(s) = html_sink {
        commit(s.into_inner())?;
    }

    if !args.quiet {
        let to_stdout = to_stdout(&dests);
        let terminal = if to_stdout {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let text = console::render(
            &outcome.organization,
            &outcome.console_rows,
            &outcome.summary,
            console::Style::detect(terminal),
        );
        if to_stdout {
            eprint!("{text}");
        } else {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
        if !outcome.not_in_inventory.is_empty() {
            eprintln!(
                "note: {} Exchange server(s) of the organisation are not in the inventory (see not_in_inventory in the JSON report)",
                outcome.not_in_inventory.len()
            );
        }
    }
    if outcome.interrupted {
        return Ok(EXIT_INTERRUPTED);
    }
    Ok(outcome.exit_code())
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

/// `report`: a saved scan, re-rendered. No credentials, no network.
fn report(args: ReportArgs) -> Result<i32, Failure> {
    let html_dest = args.html.as_deref().map(Destination::parse);
    let csv_dest = args.csv.as_deref().map(Destination::parse);
    check_destinations(&[&html_dest, &csv_dest], "--html and --csv", &[&args.scan])?;
    let scan = ScanReport::load(&args.scan).map_err(|e| usage(e.to_string()))?;
    if let Some(d) = &csv_dest {
        write_report(d, |out| {
            // The same sink `scan` streams through, so the columns cannot drift apart.
            let mut sink = CsvSink::new(out);
            sink.begin(&ScanStart {
                started_at: scan.started_at.clone(),
                organization: scan.organization.clone(),
            })?;
            for row in &scan.servers {
                sink.row(row)?;
            }
            sink.finish(&ScanEnd {
                finished_at: scan.finished_at.clone(),
                summary: scan.summary.clone(),
                not_in_inventory: scan.not_in_inventory.clone(),
                interrupted: scan.interrupted,
            })?;
            sink.into_inner().map(|_| ())
        })?;
    }
    if let Some(d) = &html_dest {
        let page = html::render_report(&scan)
            .map_err(|e| usage(format!("cannot render the HTML report: {e}")))?;
        write_report(d, |out| out.write_all(page.as_bytes()))?;
    }
    Ok(0)
}

/// `compare`: exit 1 when anything got worse.
fn compare(args: CompareArgs) -> Result<i32, Failure> {
    let csv_dest = args.csv.as_deref().map(Destination::parse);
    let json_dest = args.json.as_deref().map(Destination::parse);
    let html_dest = args.html.as_deref().map(Destination::parse);
    let dests = [&csv_dest, &json_dest, &html_dest];
    check_destinations(&dests, "--csv, --json and --html", &[&args.old, &args.new])?;
    let old = ScanReport::load(&args.old).map_err(|e| usage(e.to_string()))?;
    let new = ScanReport::load(&args.new).map_err(|e| usage(e.to_string()))?;
    let drift = eems_core::drift::compare(&old, &new).map_err(|e| {
        let path = match e.which {
            eems_core::drift::Which::Old => &args.old,
            eems_core::drift::Which::New => &args.new,
        };
        usage(format!("{}: cannot compare: {}", path.display(), e.reason))
    })?;
    let old = ScanLabel {
        file: args.old.display().to_string(),
        report: &old,
    };
    let new = ScanLabel {
        file: args.new.display().to_string(),
        report: &new,
    };
    if let Some(d) = &csv_dest {
        write_report(d, |out| drift::write_csv(out, &drift))?;
    }
    if let Some(d) = &json_dest {
        write_report(d, |out| drift::write_json(out, &old, &new, &drift))?;
    }
    if let Some(d) = &html_dest {
        let page = html::render_drift(&old, &new, &drift)
            .map_err(|e| usage(format!("cannot render the HTML report: {e}")))?;
        write_report(d, |out| out.write_all(page.as_bytes()))?;
    }
    if !args.quiet {
        let on_stderr = to_stdout(&dests);
        let terminal = if on_stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let text = drift::render_console(&old, &new, &drift, console::Style::detect(terminal));
        if on_stderr {
            eprint!("{text}");
        } else {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
    }
    Ok(if drift.has_regression() { 1 } else { 0 })
}

fn org_via(args: &crate::cli::OrgArgs, https: bool) -> scan::OrgVia {
    match args.org_via {
        crate::cli::OrgViaArg::Winrs => scan::OrgVia::WinRs,
        crate::cli::OrgViaArg::RemotePowershell => scan::OrgVia::RemotePowerShell {
            port: args.org_port.unwrap_or(if https { 443 } else { 80 }),
        },
    }
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
        code: 3,
        message: e,
    })?;
    let mut out = dest
        .open()
        .map_err(|e| usage(format!("cannot write the inventory: {e}")))?;
    let mut w = csv::Writer::from_writer(&mut out);
    let io = |e: csv::Error| Failure {
        code: 3,
        message: format!("cannot write the inventory: {e}"),
    };
    w.write_record(["name", "address", "role", "site"])
        .map_err(io)?;
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
        .map_err(io)?;
    }
    w.flush().map_err(|e| Failure {
        code: 3,
        message: e.to_string(),
    })?;
    drop(w);
    out.commit().map_err(|e| Failure {
        code: 3,
        message: e.to_string(),
    })?;
    eprintln!(
        "{} Exchange server(s) found via {}",
        facts.servers.len(),
        args.from
    );
    Ok(0)
}
