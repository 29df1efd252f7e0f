//! `scan`: the inventory or discovery, the reports, the progress bar and the console summary.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::cli::ScanArgs;
use crate::exit;
use crate::render::csv::CsvSink;
use crate::render::html::HtmlSink;
use crate::render::json::JsonSink;
use crate::render::output::{Destination, Output};
use crate::render::{RowSink, console};
use crate::scan::{self, Progress, ScanOptions, Servers};
use eems_core::inventory;
use eems_core::report::ServerRow;

use super::{
    Failure, PasswordSource, check_destinations, install_signal_handlers, read_password, to_stdout,
    transport_config, unwritten, usage,
};

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

pub(super) async fn scan(args: ScanArgs, password: PasswordSource) -> Result<i32, Failure> {
    if args.show_settings {
        print!("{}", crate::profile::render_settings(&args.settings));
        return Ok(exit::OK);
    }
    // Everything that can be wrong with the input is checked before any connection.
    // --discover-from first: clap lets it meet an inventory only from the profile.
    let servers = match (&args.inventory, &args.discover_from) {
        (_, Some(from)) => Servers::DiscoverFrom(from.clone()),
        (Some(path), None) => {
            let entries = inventory::load(path).map_err(|e| usage(e.to_string()))?;
            Servers::Listed(entries)
        }
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
        concurrency: args.fleet.concurrency as usize,
        timeout: args.connection.timeout(),
        org_server: args.fleet.org_server.clone(),
        ocs_url: args.fleet.ocs_url.clone(),
        ocs_timeout_secs: args.fleet.ocs_timeout,
        evidence_days: if args.no_evidence {
            0
        } else {
            args.evidence_days
        },
        max_auth_failures: args.max_auth_failures,
        org_via: super::org_via(&args.org, args.connection.https),
        org_data: args.org_data.clone(),
    };

    let open = |d: &Destination| {
        d.open().map_err(|e| Failure {
            code: exit::USAGE,
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
    // On an error the open reports are dropped, which deletes their temporary files.
    let outcome = scan::run(&opts, servers, &mut sinks, &bar, cancel)
        .await
        .map_err(|e| unwritten("report", e))?;
    drop(sinks);

    // One report that cannot be moved into place does not cost the others.
    let finished = [
        csv_sink.map(CsvSink::into_inner),
        json_sink.map(|s| Ok(s.into_inner())),
        html_sink.map(|s| Ok(s.into_inner())),
    ];
    let failed: Vec<String> = finished
        .into_iter()
        .flatten()
        .filter_map(|o| o.and_then(Output::commit).err())
        .map(|e| e.to_string())
        .collect();

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
    if !failed.is_empty() {
        return Err(unwritten("report", failed.join("; ")));
    }
    if outcome.interrupted {
        return Ok(exit::INTERRUPTED);
    }
    Ok(outcome.exit_code())
}
