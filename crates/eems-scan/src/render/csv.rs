//! The CSV report: one line per server, written as each server finishes.

use std::io::Write;

use super::{RowSink, ScanEnd, ScanStart};
use eems_core::report::ServerRow;

/// Column names, the report contract. Order is part of the file, not of the contract.
pub const HEADER: [&str; 38] = [
    "server",
    "address",
    "role",
    "site",
    "build",
    "product",
    "status",
    "eems_state",
    "org_mitigations_enabled",
    "server_mitigations_enabled",
    "service_status",
    "service_start_type",
    "service_check",
    "pattern_service",
    "ocs_status_code",
    "ocs_error",
    "mitigations_applied",
    "mitigations_blocked",
    "mitigations_applied_time",
    "telemetry_enabled",
    "findings",
    "error",
    "duration_ms",
    "fetch_state",
    "fetch_errors_window",
    "last_fetch_error_time",
    "last_fetch_error",
    "last_applied_event",
    "log_last_write",
    "cert_floor",
    "iis_state",
    "service_changed_time",
    "service_changed",
    "service_started",
    "flighting_service",
    "when_changed",
    "ring_level",
    "last_flighting_run",
];

/// Streams rows to any writer; `W` is an `Output` for reports.
pub struct CsvSink<W: Write> {
    w: csv::Writer<W>,
}

impl<W: Write> CsvSink<W> {
    pub fn new(w: W) -> Self {
        CsvSink {
            w: csv::Writer::from_writer(w),
        }
    }

    pub fn into_inner(self) -> std::io::Result<W> {
        self.w.into_inner().map_err(|e| e.into_error())
    }
}

/// The fields of a row in [`HEADER`] order.
pub fn record(r: &ServerRow) -> Vec<String> {
    fn opt<T: ToString>(v: &Option<T>) -> String {
        v.as_ref().map(ToString::to_string).unwrap_or_default()
    }
    vec![
        r.server.clone(),
        opt(&r.address),
        opt(&r.role),
        opt(&r.site),
        opt(&r.build),
        opt(&r.product),
        r.status.as_str().to_string(),
        opt(&r.eems_state),
        bool_cell(r.org_mitigations_enabled),
        bool_cell(r.server_mitigations_enabled),
        opt(&r.service_status),
        opt(&r.service_start_type),
        opt(&r.service_check),
        opt(&r.pattern_service),
        r.ocs_status_code.map(|c| c.to_string()).unwrap_or_default(),
        opt(&r.ocs_error),
        r.mitigations_applied.join(";"),
        r.mitigations_blocked.join(";"),
        opt(&r.mitigations_applied_time),
        bool_cell(r.telemetry_enabled),
        r.findings.join(";"),
        opt(&r.error),
        r.duration_ms.to_string(),
        opt(&r.fetch_state),
        opt(&r.fetch_errors_window),
        opt(&r.last_fetch_error_time),
        opt(&r.last_fetch_error),
        opt(&r.last_applied_event),
        opt(&r.log_last_write),
        opt(&r.cert_floor),
        opt(&r.iis_state),
        opt(&r.service_changed_time),
        opt(&r.service_changed),
        opt(&r.service_started),
        opt(&r.flighting_service),
        opt(&r.when_changed),
        opt(&r.ring_level),
        opt(&r.last_flighting_run),
    ]
    .into_iter()
    .map(defuse_formula)
    .collect()
}

/// True/False as PowerShell and HealthChecker print them; empty for unknown.
fn bool_cell(b: Option<bool>) -> String {
    match b {
        Some(true) => "True".into(),
        Some(false) => "False".into(),
        None => String::new(),
    }
}

/// Server names, errors and proxies come from outside; a cell starting with `=`, `+`,
/// `-`, `@`, TAB or CR would run as a formula when an auditor opens the file in a
/// spreadsheet. A leading apostrophe keeps it text (OWASP CSV injection advice).
pub fn defuse_formula(cell: String) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell,
    }
}

impl<W: Write> RowSink for CsvSink<W> {
    fn begin(&mut self, _start: &ScanStart) -> std::io::Result<()> {
        self.w.write_record(HEADER)?;
        self.w.flush()
    }

    fn row(&mut self, row: &ServerRow) -> std::io::Result<()> {
        self.w.write_record(record(row))?;
        // Flushed per row so an interrupted run leaves every finished row on disk.
        self.w.flush()
    }

    fn finish(&mut self, _end: &ScanEnd) -> std::io::Result<()> {
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eems_core::analysis::Status;

    #[test]
    fn lists_and_booleans_as_the_contract_says() {
        let mut r = ServerRow::new("EX01");
        r.status = Status::Warning;
        r.mitigations_applied = vec!["PING1".into(), "M2.1.0".into()];
        r.org_mitigations_enabled = Some(true);
        r.server_mitigations_enabled = Some(false);
        let rec = record(&r);
        let col = |name: &str| rec[HEADER.iter().position(|h| *h == name).unwrap()].clone();
        assert_eq!(col("mitigations_applied"), "PING1;M2.1.0");
        assert_eq!(col("org_mitigations_enabled"), "True");
        assert_eq!(col("server_mitigations_enabled"), "False");
        assert_eq!(col("telemetry_enabled"), "");
        assert_eq!(col("status"), "warning");
    }

    #[test]
    fn formula_cells_are_defused() {
        let r = ServerRow::new("=HYPERLINK(\"http://x\")");
        assert!(record(&r)[0].starts_with("'="));
    }
}
