//! Commands on saved scans (`report`, `compare`): no credentials, no network.

use std::io::{IsTerminal, Write};

use crate::cli::{CompareArgs, ReportArgs};
use crate::exit;
use crate::render::csv::CsvSink;
use crate::render::html::ScanLabel;
use crate::render::output::Destination;
use crate::render::{RowSink, ScanEnd, ScanStart, console, drift, html};
use eems_core::report::ScanReport;

use super::{Failure, check_destinations, to_stdout, usage, write_report};

pub(super) fn report(args: ReportArgs) -> Result<i32, Failure> {
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
    Ok(exit::OK)
}

/// `compare`: exit 1 when anything got worse.
pub(super) fn compare(args: CompareArgs) -> Result<i32, Failure> {
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
    Ok(if drift.has_regression() {
        exit::FINDINGS
    } else {
        exit::OK
    })
}
