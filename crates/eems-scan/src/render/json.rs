//! The JSON report, the stable format: streamed while the scan runs (rows in completion
//! order), and read back by `report` and `compare`.

use std::io::Write;

use super::{RowSink, ScanEnd, ScanStart};
use eems_core::report::{ServerRow, ToolInfo};

/// Streams the report: the head when the host phase starts, a line per row, the tail at
/// the end. Keys appear in that order; JSON readers do not care.
pub struct JsonSink<W: Write> {
    w: W,
    rows: usize,
}

impl<W: Write> JsonSink<W> {
    pub fn new(w: W) -> Self {
        JsonSink { w, rows: 0 }
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

impl<W: Write> RowSink for JsonSink<W> {
    fn begin(&mut self, start: &ScanStart) -> std::io::Result<()> {
        write!(
            self.w,
            "{{\n  \"tool\": {},\n  \"started_at\": {},\n  \"organization\": {},\n  \"servers\": [",
            serde_json::to_string(&ToolInfo::default())?,
            serde_json::to_string(&start.started_at)?,
            serde_json::to_string(&start.organization)?,
        )?;
        self.w.flush()
    }

    fn row(&mut self, row: &ServerRow) -> std::io::Result<()> {
        let sep = if self.rows == 0 { "\n    " } else { ",\n    " };
        self.w.write_all(sep.as_bytes())?;
        serde_json::to_writer(&mut self.w, row)?;
        self.rows += 1;
        self.w.flush()
    }

    fn finish(&mut self, end: &ScanEnd) -> std::io::Result<()> {
        let close = if self.rows == 0 { "]" } else { "\n  ]" };
        write!(
            self.w,
            "{close},\n  \"not_in_inventory\": {},\n  \"summary\": {},\n  \"finished_at\": {},\n  \"interrupted\": {}\n}}\n",
            serde_json::to_string(&end.not_in_inventory)?,
            serde_json::to_string(&end.summary)?,
            serde_json::to_string(&end.finished_at)?,
            end.interrupted,
        )?;
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eems_core::analysis::Status;
    use eems_core::report::{OrgSection, ScanReport, Summary};

    #[test]
    fn streamed_report_reads_back() {
        let mut sink = JsonSink::new(Vec::new());
        sink.begin(&ScanStart {
            started_at: "2026-11-29T10:00:00Z".into(),
            organization: OrgSection {
                name: Some("Contoso".into()),
                mitigations_enabled: Some(true),
                queried_on: Some("EX01".into()),
                error: None,
                admin_audit: None,
            },
        })
        .unwrap();
        let mut summary = Summary::default();
        for name in ["EX01", "EX02"] {
            let mut r = ServerRow::new(name);
            r.status = Status::Ok;
            summary.add(r.status);
            sink.row(&r).unwrap();
        }
        sink.finish(&ScanEnd {
            finished_at: "2026-11-29T10:00:05Z".into(),
            summary,
            not_in_inventory: vec![],
            interrupted: false,
        })
        .unwrap();
        let text = String::from_utf8(sink.into_inner()).unwrap();
        let back: ScanReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back.servers.len(), 2);
        assert_eq!(back.summary.ok, 2);
        assert_eq!(back.organization.name.as_deref(), Some("Contoso"));
    }

    #[test]
    fn empty_scan_is_valid_json() {
        let mut sink = JsonSink::new(Vec::new());
        sink.begin(&ScanStart {
            started_at: "t".into(),
            organization: OrgSection::default(),
        })
        .unwrap();
        sink.finish(&ScanEnd {
            finished_at: "t".into(),
            summary: Summary::default(),
            not_in_inventory: vec![],
            interrupted: true,
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&sink.into_inner()).unwrap();
        assert_eq!(v["interrupted"], true);
    }
}
