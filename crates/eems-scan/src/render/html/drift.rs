//! The drift page of `compare`: what changed between two scans, coloured as the fleet
//! report colours each value.

use askama::Template;

use super::{ALL_STATUSES, UNKNOWN, bool_text, check_sort, colour, csp, status_class};
use eems_core::analysis::{CertFloor, EemsState, FetchState, PatternService, ServiceCheck};
use eems_core::drift::{Drift, Field, Verdict};
use eems_core::report::ScanReport;

/// One side of a comparison, as the drift page names it.
pub struct ScanLabel<'a> {
    /// The file as given on the command line.
    pub file: String,
    pub report: &'a ScanReport,
}

struct SideView {
    file: String,
    started_at: String,
    servers: usize,
    org_enabled: &'static str,
    tool: String,
}

impl SideView {
    fn new(l: &ScanLabel<'_>) -> SideView {
        SideView {
            file: l.file.clone(),
            started_at: l.report.started_at.clone(),
            servers: l.report.servers.len(),
            org_enabled: bool_text(l.report.organization.mitigations_enabled),
            tool: format!("{} {}", l.report.tool.name, l.report.tool.version),
        }
    }
}

struct DriftRow {
    server: String,
    field: &'static str,
    label: &'static str,
    old: Side,
    new: Side,
    verdict: &'static str,
    verdict_sort: u8,
    class: &'static str,
}

/// Old or new value of a change, coloured as the fleet report colours it, and sorting as
/// its check cells do; an absent value sorts after every present one.
struct Side {
    text: String,
    class: &'static str,
    sort: String,
}

impl Side {
    fn new(field: Field, value: &Option<String>) -> Side {
        let text = drift_side(field, value);
        let class = drift_class(field, value);
        let sort = match value {
            Some(_) => check_sort(class, &text),
            None => format!("4 {}", text.to_lowercase()),
        };
        Side { text, class, sort }
    }
}

/// The drift filter's options: the field's key (what rows carry) and its label.
struct FieldOption {
    key: &'static str,
    label: &'static str,
}

/// The summary's "N of M servers changed": servers in either scan, and those with any
/// change including being added or removed (a removed server changed too).
struct ServerCounts {
    changed: usize,
    total: usize,
}

#[derive(Template)]
#[template(path = "drift.html", whitespace = "minimize")]
struct DriftPage {
    csp: String,
    version: &'static str,
    title: String,
    org: String,
    warnings: Vec<String>,
    old: SideView,
    new: SideView,
    summary: eems_core::drift::DriftSummary,
    servers: ServerCounts,
    fields: Vec<FieldOption>,
    headers: [(&'static str, &'static str); 5],
    rows: Vec<DriftRow>,
}

/// What the drift page and the console call a change's old/new side when it is absent.
pub fn drift_side(field: Field, v: &Option<String>) -> String {
    match (field, v) {
        (_, Some(s)) => s.clone(),
        (Field::Server, None) => "(not in scan)".into(),
        (Field::MitigationsBlocked, None) => "(not blocked)".into(),
        (Field::MitigationsApplied, None) => "(not applied)".into(),
        (_, None) => UNKNOWN.into(),
    }
}

/// The colour a drift side's value has in the fleet report, so old and new read the same
/// way there; values of fields without colours stay plain.
fn drift_class(field: Field, value: &Option<String>) -> &'static str {
    let Some(v) = value.as_deref() else {
        return "";
    };
    match field {
        Field::Status | Field::Server => ALL_STATUSES
            .iter()
            .find(|s| s.as_str() == v)
            .map_or("", |&s| status_class(s)),
        Field::EemsState => colour(EemsState::from_label(v).map(EemsState::write_type)),
        // "Investigate (Stopped, Manual)": the verdict is the first word.
        Field::Service => colour(
            ServiceCheck::from_label(v.split(' ').next().unwrap_or(""))
                .map(ServiceCheck::write_type),
        ),
        Field::PatternService => {
            colour(PatternService::from_label(v).map(PatternService::write_type))
        }
        Field::OrgMitigationsEnabled => match v {
            "True" => "Green",
            "False" => "Yellow",
            _ => "",
        },
        Field::FetchState => colour(FetchState::from_label(v).map(FetchState::write_type)),
        Field::CertFloor => colour(CertFloor::from_label(v).map(CertFloor::write_type)),
        // A side holds the issue (IIS) or the change (service) while it exists.
        Field::MitigationsBlocked | Field::IisState | Field::ServiceChanged => "Yellow",
        Field::MitigationsApplied | Field::Build | Field::TelemetryEnabled => "",
    }
}

/// Renders the drift page of `compare`.
pub fn render_drift(
    old: &ScanLabel<'_>,
    new: &ScanLabel<'_>,
    drift: &Drift,
) -> Result<String, askama::Error> {
    let org = new
        .report
        .organization
        .name
        .clone()
        .or_else(|| old.report.organization.name.clone())
        .unwrap_or_else(|| "(unknown organisation)".into());
    let mut warnings = Vec::new();
    for (side, l) in [("old", old), ("new", new)] {
        if l.report.interrupted {
            warnings.push(format!(
                "The {side} scan ({}) was interrupted: servers it had not reached count as errors.",
                l.file
            ));
        }
    }
    let mut fields: Vec<Field> = drift.changes.iter().map(|c| c.field).collect();
    fields.sort_by_key(|f| f.label());
    fields.dedup();
    let s = &drift.summary;
    let page = DriftPage {
        csp: csp(),
        version: env!("CARGO_PKG_VERSION"),
        title: format!(
            "EEMS drift: {org} ({} to {})",
            old.report.started_at, new.report.started_at
        ),
        org,
        warnings,
        old: SideView::new(old),
        new: SideView::new(new),
        summary: drift.summary.clone(),
        servers: ServerCounts {
            changed: s.servers_changed + s.servers_added + s.servers_removed,
            total: s.servers_compared + s.servers_added + s.servers_removed,
        },
        fields: fields
            .into_iter()
            .map(|f| FieldOption {
                key: f.as_str(),
                label: f.label(),
            })
            .collect(),
        headers: [
            ("server", "Server"),
            ("field", "Change"),
            ("old", "Old"),
            ("new", "New"),
            ("verdict", "Verdict"),
        ],
        rows: drift
            .changes
            .iter()
            .map(|c| DriftRow {
                server: c.server.clone().unwrap_or_else(|| "(organisation)".into()),
                field: c.field.as_str(),
                label: c.field.label(),
                old: Side::new(c.field, &c.old),
                new: Side::new(c.field, &c.new),
                verdict: c.verdict.as_str(),
                verdict_sort: c.verdict as u8,
                class: match c.verdict {
                    Verdict::Regression => "Red",
                    Verdict::Improvement => "Green",
                    Verdict::Neutral => "",
                },
            })
            .collect(),
    };
    page.render()
}
