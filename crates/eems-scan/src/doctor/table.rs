//! The text `doctor` prints: one block per server, one line per step.

use std::fmt::Write as _;

use super::{DoctorReport, STEPS};

/// The table: one block per server, one line per step.
pub fn render_table(report: &DoctorReport) -> String {
    let mut out = String::new();
    match (&report.org_query.answered_by, &report.org_query.error) {
        (Some(s), _) => {
            let _ = writeln!(
                out,
                "org query (each server's InternetWebProxy): answered by {s}"
            );
        }
        (None, Some(e)) => {
            let _ = writeln!(
                out,
                "org query (each server's InternetWebProxy) failed; servers are tried direct: {e}"
            );
        }
        (None, None) => {}
    }
    for note in &report.left_out {
        let _ = writeln!(out, "left out: {note}");
    }
    let width = STEPS.iter().map(|s| s.len()).max().unwrap_or(0);
    for s in &report.servers {
        let _ = writeln!(out, "\n{}  {}:{}", s.server, s.host, s.port);
        for st in &s.steps {
            let _ = writeln!(
                out,
                "  {:8} {:width$}  {}",
                st.result.label(),
                st.step,
                st.detail
            );
            if let Some(fix) = &st.fix {
                let _ = writeln!(out, "  {:8} {:width$}  fix: {fix}", "", "");
            }
        }
    }
    let failed: Vec<String> = report
        .servers
        .iter()
        .filter_map(|s| {
            s.failed_step()
                .map(|f| format!("{} ({})", s.server, f.step))
        })
        .collect();
    let _ = writeln!(
        out,
        "\n{} server(s): {} without a failed step, {} failed{}{}",
        report.servers.len(),
        report.servers.len() - failed.len(),
        failed.len(),
        if failed.is_empty() { "" } else { ": " },
        failed.join(", ")
    );
    out
}
