//! Renderers: the console table, CSV, JSON and the HTML pages, streamed while the scan
//! runs, and the atomic file output they write through. The row model they render lives
//! in `eems_core::report`.

pub mod console;
pub mod csv;
pub mod drift;
pub mod html;
pub mod json;
pub mod output;

use eems_core::report::{OrgSection, ServerRow, Summary, UninventoriedServer};

/// Receives results while the scan runs. Writers stream; nothing waits for the end.
pub trait RowSink {
    /// Once, after the org phase, before any row.
    fn begin(&mut self, start: &ScanStart) -> std::io::Result<()>;
    fn row(&mut self, row: &ServerRow) -> std::io::Result<()>;
    /// Once, at the end (also after an interruption).
    fn finish(&mut self, end: &ScanEnd) -> std::io::Result<()>;
}

/// What is known when the host phase starts.
#[derive(Debug, Clone)]
pub struct ScanStart {
    pub started_at: String,
    pub organization: OrgSection,
}

/// What is known only when the scan is over.
#[derive(Debug, Clone)]
pub struct ScanEnd {
    pub finished_at: String,
    pub summary: Summary,
    pub not_in_inventory: Vec<UninventoriedServer>,
    pub interrupted: bool,
}
