//! Exit statuses: the contract scripts and schedulers rely on, in one place (README "Exit
//! status", and each command's `--help`).

/// Done, nothing to report.
pub const OK: i32 = 0;
/// `scan`: a warning or critical finding; `compare`: a regression; `doctor`: a step failed.
pub const FINDINGS: i32 = 1;
/// Usage or input error: nothing was contacted, or there was nothing to contact.
pub const USAGE: i32 = 2;
/// `scan`: a server could not be scanned (wins over [`FINDINGS`]); `discover`: the org
/// query failed.
pub const UNSCANNED: i32 = 3;
/// `scan` and `discover`: a report could not be written after servers were contacted.
/// Their findings are lost, which is neither a finding nor a server that could not be
/// scanned.
pub const REPORT: i32 = 4;
/// Interrupted (128 + SIGINT).
pub const INTERRUPTED: i32 = 130;
