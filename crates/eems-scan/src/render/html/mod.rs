//! The HTML reports: the fleet report of one scan, and the drift page of `compare`.
//!
//! One self-contained file each (inline CSS and JS, nothing from the network), rendered
//! with askama from `templates/`. Every value from outside (server names, errors, proxies,
//! mitigation IDs, the organisation's name) goes through askama's HTML escaping; nothing is
//! marked safe, and the script reads what it needs from the DOM. A Content-Security-Policy
//! that allows only our own script (by hash) is a second line of defence.
//!
//! [`fleet`] renders the scan report and [`drift`] the comparison; this file holds what
//! both pages share, so that a value has one colour and one sort order on either page.

mod drift;
mod fleet;
mod org_evidence;
#[cfg(test)]
mod tests;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use eems_core::analysis::{Status, WriteType};

pub use drift::{ScanLabel, drift_side, render_drift};
pub use fleet::{HtmlSink, render_report};

/// The page script as `base.html` includes it, hashed for the CSP. askama drops a
/// template file's final newline (Jinja's default), so the hash is over the rest; a test
/// checks the rendered script against this.
const SCRIPT: &str = trim_final_newline(include_str!("../../../templates/eems.js"));

const fn trim_final_newline(s: &str) -> &str {
    match s.as_bytes() {
        [rest @ .., b'\n'] => match std::str::from_utf8(rest) {
            Ok(t) => t,
            Err(_) => s,
        },
        _ => s,
    }
}

/// `default-src 'none'`: no fetches, fonts, images or frames; inline styles; and only the
/// script whose hash we know, so an injected `<script>` or `onerror=` would not run even if
/// escaping ever failed.
fn csp() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT));
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{hash}'; \
         base-uri 'none'; form-action 'none'"
    )
}

/// The status cell and tile: the same palette, by severity.
fn status_class(s: Status) -> &'static str {
    match s {
        Status::Ok => "Green",
        Status::Warning => "Yellow",
        Status::Critical | Status::Error => "Red",
        Status::Skipped => "",
    }
}

/// Sort key for the status column: ascending puts what needs attention first.
fn status_rank(s: Status) -> u8 {
    match s {
        Status::Critical => 0,
        Status::Error => 1,
        Status::Warning => 2,
        Status::Skipped => 3,
        Status::Ok => 4,
    }
}

const ALL_STATUSES: [Status; 5] = [
    Status::Ok,
    Status::Warning,
    Status::Critical,
    Status::Error,
    Status::Skipped,
];

/// Shown for a value the scan does not have.
const UNKNOWN: &str = "—";

/// Sort key of a check cell: by severity, the cell's colour (red, yellow, grey, green, as
/// the status column), then by its text; a value the scan does not have after the known
/// ones. Ranks 8 and 9 are the error and skipped rows' spanning cell, so those rows stay
/// together after every real value instead of sorting by their message among them.
fn check_sort(class: &str, text: &str) -> String {
    let rank = match class {
        _ if text == UNKNOWN => 4,
        "Red" => 0,
        "Yellow" => 1,
        "Green" => 3,
        _ => 2,
    };
    format!("{rank} {}", text.to_lowercase())
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| UNKNOWN.to_string(), ToString::to_string)
}

fn bool_text(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "True",
        Some(false) => "False",
        None => UNKNOWN,
    }
}

/// A verdict's cell class: HealthChecker's colour for it, none when there is no verdict.
fn colour(w: Option<WriteType>) -> &'static str {
    w.map_or("", WriteType::css_class)
}
