//! The fleet report of one scan: tiles, the sortable matrix, and each server's details.

use std::io::Write;

use askama::Template;

use super::org_evidence::{AuditView, audit_view, detail_lines};
use super::{
    ALL_STATUSES, UNKNOWN, bool_text, check_sort, colour, csp, opt, status_class, status_rank,
};
use crate::render::{RowSink, ScanEnd, ScanStart};
use eems_core::analysis::{
    CertFloor, EemsState, FetchState, IisState, PatternService, ServiceCheck, Status,
};
use eems_core::report::{ScanReport, ServerRow, Summary, ToolInfo};

/// A build sorts by version (the page compares digit runs as numbers); unknown last.
fn build_sort(build: &Option<String>) -> String {
    match build {
        Some(b) => format!("0 {b}"),
        None => "1".into(),
    }
}

/// AD site names are case-insensitive: "HQ" and "hq" are one site. This key is what the
/// site filter offers, dedupes, orders and matches rows by.
pub(super) fn site_key(site: &str) -> String {
    site.to_lowercase()
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// "4.2 s", "3 min 07 s", "1 h 02 min".
pub(super) fn human_duration(ms: u64) -> String {
    let secs = ms / 1000;
    if secs < 60 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if secs < 3600 {
        format!("{} min {:02} s", secs / 60, secs % 60)
    } else {
        format!("{} h {:02} min", secs / 3600, (secs % 3600) / 60)
    }
}

pub(super) fn scan_duration(started: &str, finished: &str) -> String {
    match (parse_time(started), parse_time(finished)) {
        (Some(a), Some(b)) if b >= a => {
            human_duration(u64::try_from((b - a).whole_milliseconds()).unwrap_or(u64::MAX))
        }
        _ => "unknown".into(),
    }
}

struct Cell {
    col: &'static str,
    text: String,
    class: &'static str,
    sort: String,
}

struct Span {
    text: String,
    class: &'static str,
    sort: &'static str,
}

struct MatrixRow {
    id: String,
    server: String,
    status: &'static str,
    status_class: &'static str,
    status_sort: u8,
    /// The [`CHECKS`] check cells, or none when `span` covers them.
    cells: Vec<Cell>,
    span: Option<Span>,
    build: String,
    build_sort: String,
    site: String,
    site_key: String,
}

struct HcView {
    name: String,
    details: String,
    class: &'static str,
}

/// One line of a server's evidence (README "Evidence"), coloured as its verdict.
struct EvidenceView {
    name: &'static str,
    text: String,
    class: &'static str,
}

struct DetailView<'a> {
    id: String,
    row: &'a ServerRow,
    /// Open by default when the server needs attention.
    open: bool,
    stage: Option<&'static str>,
    org_enabled: &'static str,
    server_enabled: &'static str,
    service: Option<String>,
    ocs: Option<String>,
    duration: String,
    hc: Vec<HcView>,
    evidence: Vec<EvidenceView>,
}

struct Tile {
    status: &'static str,
    class: &'static str,
    count: usize,
}

/// One entry of the site filter: the first spelling seen, and the key rows carry.
struct SiteOption {
    key: String,
    label: String,
}

struct OrgView {
    name: String,
    enabled: &'static str,
    enabled_class: &'static str,
    error: Option<String>,
    queried_on: Option<String>,
    /// Who changed the EEMS switches; `None` where the org query did not search.
    audit: Option<AuditView>,
}

struct CoverageRow {
    name: String,
    fqdn: String,
    site: String,
    role: String,
    edge: &'static str,
}

#[derive(Template)]
#[template(path = "report.html", whitespace = "minimize")]
struct ReportPage<'a> {
    csp: String,
    version: &'static str,
    title: String,
    org: OrgView,
    interrupted: bool,
    started_at: &'a str,
    finished_at: &'a str,
    duration: String,
    tool: String,
    summary: Summary,
    tiles: Vec<Tile>,
    sites: Vec<SiteOption>,
    headers: [(&'static str, &'static str); 13],
    /// The columns an error or skipped row's one cell spans.
    checks: usize,
    rows: Vec<MatrixRow>,
    details: Vec<DetailView<'a>>,
    not_in_inventory: Vec<CoverageRow>,
    /// The tile's count: unknown when the organisation query failed.
    missing: String,
    coverage_note: &'static str,
}

const MATRIX_HEADERS: [(&str, &str); 13] = [
    ("server", "Server"),
    ("status", "Status"),
    ("eems", "EEMS state"),
    ("service", "Windows service"),
    ("pattern", "Pattern service"),
    ("fetch", "Fetch state"),
    ("cert", "Cert floor"),
    ("iis", "IIS rules"),
    ("blocked", "Blocked"),
    ("applied", "Applied"),
    ("telemetry", "Telemetry"),
    ("build", "Build"),
    ("site", "Site"),
];

/// The check columns: every heading but server, status, build and site.
const CHECKS: usize = MATRIX_HEADERS.len() - 4;

fn matrix_row(id: String, r: &ServerRow) -> MatrixRow {
    // A server without EEMS facts gets one cell across the checks saying why.
    let span = match r.status {
        Status::Error => Some(Span {
            text: r
                .error
                .clone()
                .unwrap_or_else(|| "could not be scanned".into()),
            class: "Red",
            sort: "8",
        }),
        Status::Skipped => Some(Span {
            text: r
                .findings
                .first()
                .cloned()
                .unwrap_or_else(|| "skipped".into()),
            class: "",
            sort: "9",
        }),
        _ => None,
    };
    let cells = if span.is_some() {
        Vec::new()
    } else {
        let blocked = r.mitigations_blocked.join(", ");
        let check = |col, text: String, class| Cell {
            col,
            sort: check_sort(class, &text),
            text,
            class,
        };
        vec![
            check(
                "eems",
                opt(&r.eems_state),
                colour(r.eems_state.map(EemsState::write_type)),
            ),
            check(
                "service",
                opt(&r.service_check),
                colour(r.service_check.map(ServiceCheck::write_type)),
            ),
            check(
                "pattern",
                opt(&r.pattern_service),
                colour(r.pattern_service.map(PatternService::write_type)),
            ),
            // The evidence verdicts: empty (sorting after every value) where not collected.
            check(
                "fetch",
                opt(&r.fetch_state),
                colour(r.fetch_state.map(FetchState::write_type)),
            ),
            check(
                "cert",
                r.cert_floor
                    .map_or_else(|| UNKNOWN.to_string(), |c| c.short().to_string()),
                colour(r.cert_floor.map(CertFloor::write_type)),
            ),
            check(
                "iis",
                opt(&r.iis_state),
                colour(r.iis_state.as_ref().map(IisState::write_type)),
            ),
            check(
                "blocked",
                blocked.clone(),
                if blocked.is_empty() { "" } else { "Yellow" },
            ),
            check("applied", r.mitigations_applied.join(", "), ""),
            check("telemetry", bool_text(r.telemetry_enabled).into(), ""),
        ]
    };
    MatrixRow {
        id,
        server: r.server.clone(),
        status: r.status.as_str(),
        status_class: status_class(r.status),
        status_sort: status_rank(r.status),
        cells,
        span,
        build: match (&r.build, &r.product) {
            (Some(b), Some(p)) => format!("{b} ({p})"),
            (b, _) => opt(b),
        },
        build_sort: build_sort(&r.build),
        site: r.site.clone().unwrap_or_default(),
        site_key: site_key(r.site.as_deref().unwrap_or_default()),
    }
}

fn detail_view(id: String, r: &ServerRow) -> DetailView<'_> {
    DetailView {
        id,
        row: r,
        open: !matches!(r.status, Status::Ok | Status::Skipped),
        stage: r.error_stage.map(|s| s.as_str()),
        org_enabled: bool_text(r.org_mitigations_enabled),
        server_enabled: bool_text(r.server_mitigations_enabled),
        service: match (&r.service_check, &r.service_status, &r.service_start_type) {
            (None, None, None) => None,
            (c, s, t) => Some(format!(
                "{} (status {}, start type {})",
                opt(c),
                opt(s),
                opt(t)
            )),
        },
        ocs: match (&r.pattern_service, r.ocs_status_code) {
            (None, None) => None,
            (p, code) => Some(format!(
                "{}; HTTP status {}",
                opt(p),
                code.map(|c| c.to_string()).unwrap_or_else(|| "none".into())
            )),
        },
        duration: human_duration(r.duration_ms),
        hc: r
            .healthchecker
            .iter()
            .filter(|l| l.html)
            .map(|l| HcView {
                name: l.name.clone().unwrap_or_default(),
                details: l.details.clone(),
                class: l.write_type.css_class(),
            })
            .collect(),
        evidence: evidence_view(r),
    }
}

/// The evidence fields a row has, in the README's order; none for a server without any.
fn evidence_view(r: &ServerRow) -> Vec<EvidenceView> {
    let line = |name, text: String, class| EvidenceView { name, text, class };
    let mut out = Vec::new();
    if let Some(f) = r.fetch_state {
        out.push(line(
            "Fetch state",
            f.to_string(),
            colour(Some(f.write_type())),
        ));
    }
    if r.fetch_errors_window.is_some() || r.last_fetch_error_time.is_some() {
        let mut text = match r.fetch_errors_window {
            Some(n) => format!("{n} in the window"),
            None => "count unknown".to_string(),
        };
        if let Some(t) = &r.last_fetch_error_time {
            text.push_str(&format!("; newest at {t}"));
        }
        if let Some(m) = &r.last_fetch_error {
            text.push_str(&format!(": {m}"));
        }
        out.push(line("Fetch errors (event 1008)", text, ""));
    }
    if let Some(t) = &r.last_applied_event {
        out.push(line("Last applied (event 1005/1006)", t.clone(), ""));
    }
    if let Some(t) = &r.log_last_write {
        out.push(line("EEMS log last written", t.clone(), ""));
    }
    if let Some(c) = r.cert_floor {
        out.push(line(
            "Certificate floor",
            c.to_string(),
            colour(Some(c.write_type())),
        ));
    }
    if let Some(i) = &r.iis_state {
        out.push(line(
            "IIS rewrite rules",
            i.to_string(),
            colour(Some(i.write_type())),
        ));
    }
    if let Some(c) = &r.service_changed {
        let text = match &r.service_changed_time {
            Some(t) => format!("{t}: {c}"),
            None => c.clone(),
        };
        out.push(line("Start type changed (event 7040)", text, ""));
    }
    if let Some(t) = &r.service_started {
        out.push(line("Service started", t.clone(), ""));
    }
    if let Some(f) = &r.flighting_service {
        out.push(line("MSExchangeFlighting", f.clone(), ""));
    }
    for (name, text, class) in detail_lines(r) {
        out.push(line(name, text, class));
    }
    out
}

/// Renders the fleet report of a scan.
pub fn render_report(report: &ScanReport) -> Result<String, askama::Error> {
    // Worst first, then by name: the order an admin works through, also without JS.
    let mut order: Vec<&ServerRow> = report.servers.iter().collect();
    order.sort_by_cached_key(|r| (status_rank(r.status), r.server.to_lowercase()));

    // Tiles count the rows shown, so the page is consistent even if the file's summary
    // was edited.
    let mut summary = Summary::default();
    for r in &order {
        summary.add(r.status);
    }
    let count = |s: Status| match s {
        Status::Ok => summary.ok,
        Status::Warning => summary.warning,
        Status::Critical => summary.critical,
        Status::Error => summary.error,
        Status::Skipped => summary.skipped,
    };
    let tiles = ALL_STATUSES
        .iter()
        .map(|&s| Tile {
            status: s.as_str(),
            class: if count(s) > 0 { status_class(s) } else { "" },
            count: count(s),
        })
        .collect();

    let mut sites: Vec<SiteOption> = order
        .iter()
        .filter_map(|r| r.site.as_deref())
        .map(|s| SiteOption {
            key: site_key(s),
            label: s.to_string(),
        })
        .collect();
    // Stable: the first spelling of a site in the page order names its option.
    sites.sort_by(|a, b| a.key.cmp(&b.key));
    sites.dedup_by(|a, b| a.key == b.key);

    let org = &report.organization;
    let org_name = org
        .name
        .clone()
        .unwrap_or_else(|| "(unknown organisation)".into());
    let (enabled, enabled_class) = match org.mitigations_enabled {
        Some(true) => ("True", "Green"),
        Some(false) => ("False", "Yellow"),
        None => ("unknown", "Red"),
    };
    let coverage_note = if org.error.is_some() {
        "Unknown: the organisation query failed, so servers missing from the inventory cannot be listed."
    } else {
        "Every Exchange server the organisation lists was in the inventory (or the organisation was discovered)."
    };

    let page = ReportPage {
        csp: csp(),
        version: env!("CARGO_PKG_VERSION"),
        title: format!("EEMS fleet report: {org_name} ({})", report.started_at),
        org: OrgView {
            name: org_name,
            enabled,
            enabled_class,
            error: org.error.clone(),
            queried_on: org.queried_on.clone(),
            audit: org.admin_audit.as_ref().map(audit_view),
        },
        interrupted: report.interrupted,
        started_at: &report.started_at,
        finished_at: &report.finished_at,
        duration: scan_duration(&report.started_at, &report.finished_at),
        tool: format!("{} {}", report.tool.name, report.tool.version),
        summary,
        tiles,
        sites,
        headers: MATRIX_HEADERS,
        checks: CHECKS,
        rows: order
            .iter()
            .enumerate()
            .map(|(i, r)| matrix_row(format!("srv-{i}"), r))
            .collect(),
        details: order
            .iter()
            .enumerate()
            .map(|(i, r)| detail_view(format!("srv-{i}"), r))
            .collect(),
        not_in_inventory: report
            .not_in_inventory
            .iter()
            .map(|u| CoverageRow {
                name: u.name.clone(),
                fqdn: opt(&u.fqdn),
                site: opt(&u.site),
                role: opt(&u.role),
                edge: bool_text(u.is_edge_server),
            })
            .collect(),
        missing: if org.error.is_some() {
            UNKNOWN.into()
        } else {
            report.not_in_inventory.len().to_string()
        },
        coverage_note,
    };
    page.render()
}

/// Keeps the rows and writes the page at the end: the matrix needs every row, and a
/// half-written page would be useless anyway. `W` is an `Output`, renamed into place.
pub struct HtmlSink<W: Write> {
    w: W,
    start: Option<ScanStart>,
    rows: Vec<ServerRow>,
}

impl<W: Write> HtmlSink<W> {
    pub fn new(w: W) -> Self {
        HtmlSink {
            w,
            start: None,
            rows: Vec::new(),
        }
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

impl<W: Write> RowSink for HtmlSink<W> {
    fn begin(&mut self, start: &ScanStart) -> std::io::Result<()> {
        self.start = Some(start.clone());
        Ok(())
    }

    fn row(&mut self, row: &ServerRow) -> std::io::Result<()> {
        self.rows.push(row.clone());
        Ok(())
    }

    fn finish(&mut self, end: &ScanEnd) -> std::io::Result<()> {
        let start = self.start.take().unwrap_or_else(|| ScanStart {
            started_at: end.finished_at.clone(),
            organization: Default::default(),
        });
        let report = ScanReport {
            tool: ToolInfo::default(),
            started_at: start.started_at,
            finished_at: end.finished_at.clone(),
            organization: start.organization,
            summary: end.summary.clone(),
            servers: std::mem::take(&mut self.rows),
            not_in_inventory: end.not_in_inventory.clone(),
            interrupted: end.interrupted,
        };
        let html = render_report(&report).map_err(std::io::Error::other)?;
        self.w.write_all(html.as_bytes())?;
        self.w.flush()
    }
}
