//! `compare`'s outputs other than HTML: the console table, CSV and JSON.

use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;

use super::console::{Style, clip, pad};
use super::csv::defuse_formula;
use super::html::{ScanLabel, drift_side};
use eems_core::drift::{Change, Drift, DriftSummary, Verdict};
use eems_core::report::ToolInfo;

/// CSV columns of the drift report.
pub const CSV_HEADER: [&str; 5] = ["server", "change", "old", "new", "verdict"];

/// One side of the comparison as the JSON names it.
#[derive(Debug, Serialize)]
pub struct SideInfo {
    pub file: String,
    pub started_at: String,
    pub finished_at: String,
    pub organization: Option<String>,
    pub interrupted: bool,
    pub servers: usize,
}

impl SideInfo {
    fn new(l: &ScanLabel<'_>) -> SideInfo {
        SideInfo {
            file: l.file.clone(),
            started_at: l.report.started_at.clone(),
            finished_at: l.report.finished_at.clone(),
            organization: l.report.organization.name.clone(),
            interrupted: l.report.interrupted,
            servers: l.report.servers.len(),
        }
    }
}

/// The JSON drift report. `changes[].server` is null for an organisation-level change;
/// for the mitigation lists, `old` alone means removed and `new` alone means added.
#[derive(Debug, Serialize)]
pub struct DriftReport<'a> {
    pub tool: ToolInfo,
    pub old: SideInfo,
    pub new: SideInfo,
    pub summary: &'a DriftSummary,
    pub changes: &'a [Change],
}

pub fn write_json(
    w: &mut impl Write,
    old: &ScanLabel<'_>,
    new: &ScanLabel<'_>,
    drift: &Drift,
) -> std::io::Result<()> {
    let report = DriftReport {
        tool: ToolInfo::default(),
        old: SideInfo::new(old),
        new: SideInfo::new(new),
        summary: &drift.summary,
        changes: &drift.changes,
    };
    serde_json::to_writer_pretty(&mut *w, &report)?;
    w.write_all(b"\n")
}

pub fn write_csv(w: &mut impl Write, drift: &Drift) -> std::io::Result<()> {
    let mut out = csv::Writer::from_writer(w);
    out.write_record(CSV_HEADER)?;
    for c in &drift.changes {
        let record = [
            c.server.clone().unwrap_or_default(),
            c.field.as_str().to_string(),
            c.old.clone().unwrap_or_default(),
            c.new.clone().unwrap_or_default(),
            c.verdict.as_str().to_string(),
        ];
        // Server names and mitigation IDs come from outside: never a spreadsheet formula.
        out.write_record(record.map(defuse_formula))?;
    }
    out.flush()
}

const W_SERVER: usize = 13;
const W_CHANGE: usize = 10;
const W_VALUE: usize = 21;

fn verdict_colour(v: Verdict) -> &'static str {
    match v {
        Verdict::Regression => "1;31",
        Verdict::Improvement => "32",
        Verdict::Neutral => "",
    }
}

/// The console table: one line per change, 80 columns at most.
pub fn render_console(
    old: &ScanLabel<'_>,
    new: &ScanLabel<'_>,
    drift: &Drift,
    style: Style,
) -> String {
    let mut out = String::new();
    for (side, l) in [("old", old), ("new", new)] {
        // The warning first: a long path is what gets clipped.
        let warn = if l.report.interrupted {
            " (INTERRUPTED scan)"
        } else {
            ""
        };
        let line = format!("{side}{warn}: {} ({})", l.file, l.report.started_at);
        let _ = writeln!(out, "{}", clip(&line, 80));
    }
    if drift.changes.is_empty() {
        let _ = writeln!(
            out,
            "No changes ({} servers compared).",
            drift.summary.servers_compared
        );
        return out;
    }
    let _ = writeln!(
        out,
        "{} {} {} {} VERDICT",
        pad("SERVER", W_SERVER),
        pad("CHANGE", W_CHANGE),
        pad("OLD", W_VALUE),
        pad("NEW", W_VALUE)
    );
    for c in &drift.changes {
        let server = c.server.as_deref().unwrap_or("(org)");
        let _ = writeln!(
            out,
            "{} {} {} {} {}",
            pad(&clip(server, W_SERVER), W_SERVER),
            pad(&clip(c.field.label(), W_CHANGE), W_CHANGE),
            pad(
                &clip(&first_line(&drift_side(c.field, &c.old)), W_VALUE),
                W_VALUE
            ),
            pad(
                &clip(&first_line(&drift_side(c.field, &c.new)), W_VALUE),
                W_VALUE
            ),
            style.sgr(verdict_colour(c.verdict), c.verdict.as_str())
        );
    }
    let s = &drift.summary;
    let _ = writeln!(
        out,
        "{} regression(s), {} improvement(s), {} neutral\n\
         servers: {} of {} changed, {} added, {} removed",
        s.regressions,
        s.improvements,
        s.neutral,
        s.servers_changed,
        s.servers_compared,
        s.servers_added,
        s.servers_removed
    );
    out
}

/// HealthChecker's Unreachable label carries a help link on a second line.
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use eems_core::analysis::{EemsState, ServiceCheck, Status};
    use eems_core::drift::compare;
    use eems_core::report::{OrgSection, ScanReport, ServerRow, Summary};

    fn report(rows: Vec<ServerRow>) -> ScanReport {
        ScanReport {
            tool: ToolInfo::default(),
            started_at: "2026-11-29T10:00:00Z".into(),
            finished_at: "2026-11-29T10:00:05Z".into(),
            organization: OrgSection::default(),
            summary: Summary::default(),
            servers: rows,
            not_in_inventory: vec![],
            interrupted: true,
        }
    }

    fn row(name: &str, service: ServiceCheck) -> ServerRow {
        let mut r = ServerRow::new(name);
        r.status = Status::Ok;
        r.eems_state = Some(EemsState::Enabled);
        r.service_check = Some(service);
        r.service_status = Some("Stopped".into());
        r.service_start_type = Some("Automatic (Delayed Start)".into());
        r
    }

    #[test]
    fn console_fits_80_columns_and_csv_is_defused() {
        let long = "A-VERY-LONG-SERVER-NAME-INDEED-AND-MORE";
        let old = report(vec![
            row(long, ServiceCheck::Running),
            row("=cmd|x", ServiceCheck::Running),
        ]);
        let mut new = report(vec![
            row(long, ServiceCheck::Investigate),
            row("=cmd|x", ServiceCheck::Running),
        ]);
        new.servers[1].mitigations_blocked = vec!["@SUM(1)".into()];
        let drift = compare(&old, &new).unwrap();
        let label = |file: &str, report| ScanLabel {
            file: file.repeat(30),
            report,
        };
        let text = render_console(
            &label("old.json", &old),
            &label("new.json", &new),
            &drift,
            Style { color: false },
        );
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line}");
        }
        assert!(text.contains("INTERRUPTED"));
        let mut csv = Vec::new();
        write_csv(&mut csv, &drift).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert!(csv.contains("'=cmd|x"), "{csv}");
        assert!(csv.contains("'@SUM(1)"), "{csv}");
    }
}
