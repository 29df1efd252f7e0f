//! The HTML reports: the fleet report of one scan, and the drift page of `compare`.
//!
//! One self-contained file each (inline CSS and JS, nothing from the network), rendered
//! with askama from `templates/`. Every value from outside (server names, errors, proxies,
//! mitigation IDs, the organisation's name) goes through askama's HTML escaping; nothing is
//! marked safe, and the script reads what it needs from the DOM. A Content-Security-Policy
//! that allows only our own script (by hash) is a second line of defence.

use std::io::Write;

use askama::Template;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{RowSink, ScanEnd, ScanStart};
use eems_core::analysis::{
    CertFloor, EemsState, FetchState, PatternService, ServiceCheck, Status, WriteType,
};
use eems_core::drift::{Drift, Field, Verdict};
use eems_core::report::{ScanReport, ServerRow, Summary, ToolInfo};

/// The page script as `base.html` includes it, hashed for the CSP. askama drops a
/// template file's final newline (Jinja's default), so the hash is over the rest; a test
/// checks the rendered script against this.
const SCRIPT: &str = trim_final_newline(include_str!("../../templates/eems.js"));

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

/// A build sorts by version (the page compares digit runs as numbers); unknown last.
fn build_sort(build: &Option<String>) -> String {
    match build {
        Some(b) => format!("0 {b}"),
        None => "1".into(),
    }
}

/// AD site names are case-insensitive: "HQ" and "hq" are one site. This key is what the
/// site filter offers, dedupes, orders and matches rows by.
fn site_key(site: &str) -> String {
    site.to_lowercase()
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

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// "4.2 s", "3 min 07 s", "1 h 02 min".
fn human_duration(ms: u64) -> String {
    let secs = ms / 1000;
    if secs < 60 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if secs < 3600 {
        format!("{} min {:02} s", secs / 60, secs % 60)
    } else {
        format!("{} h {:02} min", secs / 3600, (secs % 3600) / 60)
    }
}

fn scan_duration(started: &str, finished: &str) -> String {
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
    /// The six check cells, or none when `span` covers them.
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
    headers: [(&'static str, &'static str); 10],
    rows: Vec<MatrixRow>,
    details: Vec<DetailView<'a>>,
    not_in_inventory: Vec<CoverageRow>,
    /// The tile's count: unknown when the organisation query failed.
    missing: String,
    coverage_note: &'static str,
}

const MATRIX_HEADERS: [(&str, &str); 10] = [
    ("server", "Server"),
    ("status", "Status"),
    ("eems", "EEMS state"),
    ("service", "Windows service"),
    ("pattern", "Pattern service"),
    ("blocked", "Blocked"),
    ("applied", "Applied"),
    ("telemetry", "Telemetry"),
    ("build", "Build"),
    ("site", "Site"),
];

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
    }
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

/// A verdict's cell class: HealthChecker's colour for it, none when there is no verdict.
fn colour(w: Option<WriteType>) -> &'static str {
    w.map_or("", WriteType::css_class)
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

#[cfg(test)]
mod tests {
    use super::*;
    use eems_core::drift::compare;
    use eems_core::report::Stage;
    use eems_core::report::{HcLine, OrgSection, UninventoriedServer};
    use scraper::{Html, Selector};

    const HOSTILE: &str = "<img src=x onerror=alert(1)>";

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    fn scanned(name: &str, status: Status) -> ServerRow {
        let mut r = ServerRow::new(name);
        r.status = status;
        r.site = Some("Default-First-Site-Name".into());
        r.build = Some("15.2.1544.4".into());
        r.product = Some("Exchange 2019".into());
        r.eems_state = Some(EemsState::Enabled);
        r.service_check = Some(ServiceCheck::Running);
        r.service_status = Some("Running".into());
        r.service_start_type = Some("Automatic".into());
        r.pattern_service = Some(PatternService::Reachable);
        r.ocs_status_code = Some(200);
        r.mitigations_applied = vec!["PING1".into()];
        r.telemetry_enabled = Some(false);
        r
    }

    /// A fleet with one server in every state the matrix colours, and hostile values
    /// wherever the outside world writes into the report.
    fn fleet() -> ScanReport {
        let ok = scanned("EX01", Status::Ok);
        let mut off = scanned("EX02", Status::Warning);
        off.eems_state = Some(EemsState::DisabledOnServer);
        off.service_check = Some(ServiceCheck::Investigate);
        off.service_status = Some("Stopped".into());
        off.pattern_service = Some(PatternService::Unreachable);
        off.mitigations_blocked = vec![format!("M1{HOSTILE}")];
        off.ocs_proxy = Some(format!("http://proxy:8080/{HOSTILE}"));
        off.findings = vec!["EEMS is disabled on this server".into()];
        off.healthchecker = vec![HcLine {
            name: Some("Exchange Emergency Mitigation Service".into()),
            details: "Disabled on server level".into(),
            write_type: WriteType::Yellow,
            html: true,
        }];
        let mut crit = scanned("EX03", Status::Critical);
        crit.eems_state = Some(EemsState::FailedToQuery);
        crit.service_check = Some(ServiceCheck::Unknown);
        let mut hostile = scanned(HOSTILE, Status::Ok);
        hostile.site = Some(format!("Site{HOSTILE}"));
        let mut down = ServerRow::new("EX05");
        down.error = Some(format!(
            "connection refused {HOSTILE} (stage connect, after 0.1 s)"
        ));
        down.error_stage = Some(Stage::Connect);
        let mut edge = ServerRow::new("EDGE01");
        edge.status = Status::Skipped;
        edge.findings = vec!["skipped: Edge Transport server (inventory role)".into()];
        let servers = vec![ok, off, crit, hostile, down, edge];
        let mut summary = Summary::default();
        for r in &servers {
            summary.add(r.status);
        }
        ScanReport {
            tool: ToolInfo::default(),
            started_at: "2026-11-29T10:00:00Z".into(),
            finished_at: "2026-11-29T10:01:05Z".into(),
            organization: OrgSection {
                name: Some(format!("Contoso{HOSTILE}")),
                mitigations_enabled: Some(true),
                queried_on: Some("EX01".into()),
                error: None,
            },
            summary,
            servers,
            not_in_inventory: vec![UninventoriedServer {
                name: format!("EX99{HOSTILE}"),
                fqdn: None,
                site: None,
                role: Some("Mailbox".into()),
                is_edge_server: Some(false),
            }],
            interrupted: false,
        }
    }

    fn row_of<'a>(doc: &'a Html, server: &str) -> scraper::ElementRef<'a> {
        doc.select(&sel("#matrix tbody tr"))
            .find(|tr| {
                tr.select(&sel(r#"td[data-col="server"]"#))
                    .next()
                    .is_some_and(|td| td.text().collect::<String>() == server)
            })
            .unwrap_or_else(|| panic!("no row for {server}"))
    }

    fn class_of(row: scraper::ElementRef<'_>, col: &str) -> Option<String> {
        row.select(&sel(&format!(r#"td[data-col="{col}"]"#)))
            .next()
            .unwrap_or_else(|| panic!("no {col} cell"))
            .value()
            .attr("class")
            .map(String::from)
    }

    fn assert_no_markup_injection(html: &str) {
        let doc = Html::parse_document(html);
        assert_eq!(
            doc.select(&sel("img")).count(),
            0,
            "an img element was created"
        );
        assert!(!html.contains("<img"), "raw <img in the output");
        let handler = doc.select(&sel("[onerror], [onload], [onclick]")).next();
        assert!(handler.is_none(), "event handler attribute: {handler:?}");
        // The only script is ours.
        let scripts: Vec<_> = doc.select(&sel("script")).collect();
        assert_eq!(scripts.len(), 1);
        assert_eq!(scripts[0].text().collect::<String>(), SCRIPT);
    }

    fn assert_self_contained(html: &str) {
        let doc = Html::parse_document(html);
        for el in doc.select(&sel(
            "link, script, img, iframe, object, embed, source, audio, video",
        )) {
            for attr in ["src", "href", "data"] {
                if let Some(v) = el.value().attr(attr) {
                    let v = v.to_ascii_lowercase();
                    assert!(
                        !v.starts_with("http://")
                            && !v.starts_with("https://")
                            && !v.starts_with("//"),
                        "external reference {v}"
                    );
                }
            }
        }
        assert_eq!(doc.select(&sel("link")).count(), 0);
        assert!(!html.contains("@import"));
        assert!(!html.contains("url("), "CSS must not load anything");
        // Every in-page link points inside the page.
        for a in doc.select(&sel("a[href]")) {
            assert!(a.value().attr("href").unwrap().starts_with('#'));
        }
    }

    #[test]
    fn one_matrix_row_per_server_and_details_for_each() {
        let r = fleet();
        let html = render_report(&r).unwrap();
        let doc = Html::parse_document(&html);
        assert_eq!(
            doc.select(&sel("#matrix tbody tr")).count(),
            r.servers.len()
        );
        assert_eq!(doc.select(&sel("details")).count(), r.servers.len());
        // Every server link lands on its details.
        for a in doc.select(&sel("#matrix a[href]")) {
            let id = &a.value().attr("href").unwrap()[1..];
            assert_eq!(doc.select(&sel(&format!("details#{id}"))).count(), 1);
        }
        // Worst first without JavaScript.
        let first = doc.select(&sel("#matrix tbody tr")).next().unwrap();
        assert_eq!(first.value().attr("data-status"), Some("critical"));
    }

    #[test]
    fn cells_carry_healthcheckers_classes() {
        let html = render_report(&fleet()).unwrap();
        let doc = Html::parse_document(&html);
        let ok = row_of(&doc, "EX01");
        assert_eq!(class_of(ok, "eems").as_deref(), Some("Green"));
        assert_eq!(class_of(ok, "service"), None);
        assert_eq!(class_of(ok, "pattern"), None);
        assert_eq!(class_of(ok, "blocked"), None);
        assert_eq!(class_of(ok, "applied"), None);
        assert_eq!(class_of(ok, "telemetry"), None);

        let off = row_of(&doc, "EX02");
        assert_eq!(class_of(off, "eems").as_deref(), Some("Yellow"));
        assert_eq!(class_of(off, "service").as_deref(), Some("Yellow"));
        assert_eq!(class_of(off, "pattern").as_deref(), Some("Yellow"));
        assert_eq!(class_of(off, "blocked").as_deref(), Some("Yellow"));
        let pattern: String = off
            .select(&sel(r#"td[data-col="pattern"]"#))
            .next()
            .unwrap()
            .text()
            .collect();
        assert_eq!(pattern, "Unreachable");

        let crit = row_of(&doc, "EX03");
        assert_eq!(class_of(crit, "eems").as_deref(), Some("Red"));
        assert_eq!(class_of(crit, "service").as_deref(), Some("Yellow"));

        // The error spans the six check columns, in red.
        let down = row_of(&doc, "EX05");
        let span = down.select(&sel("td[data-span]")).next().unwrap();
        assert_eq!(span.value().attr("colspan"), Some("6"));
        assert_eq!(span.value().attr("class"), Some("Red"));
        assert!(
            span.text()
                .collect::<String>()
                .contains("connection refused")
        );
        assert_eq!(down.select(&sel("td")).count(), 5);

        // Each row has as many columns as the header.
        let headers = doc.select(&sel("#matrix thead th")).count();
        for tr in doc.select(&sel("#matrix tbody tr")) {
            let cols: usize = tr
                .select(&sel("td"))
                .map(|td| {
                    td.value()
                        .attr("colspan")
                        .map_or(1, |c| c.parse::<usize>().unwrap())
                })
                .sum();
            assert_eq!(cols, headers);
        }

        // HealthChecker lines in the details keep their colour on both cells.
        let hc: Vec<_> = doc.select(&sel("table.hc td.Yellow")).collect();
        assert_eq!(hc.len(), 2);
    }

    #[test]
    fn summary_tiles_count_the_rows() {
        let html = render_report(&fleet()).unwrap();
        let doc = Html::parse_document(&html);
        let tile = |s: &str| -> String {
            doc.select(&sel(&format!(
                r#"#summary .tile[data-status="{s}"] .count"#
            )))
            .next()
            .unwrap()
            .text()
            .collect()
        };
        assert_eq!(tile("total"), "6");
        assert_eq!(tile("ok"), "2");
        assert_eq!(tile("warning"), "1");
        assert_eq!(tile("critical"), "1");
        assert_eq!(tile("error"), "1");
        assert_eq!(tile("skipped"), "1");
        assert!(doc.select(&sel("#interrupted")).next().is_none());
    }

    #[test]
    fn hostile_values_render_as_text() {
        let html = render_report(&fleet()).unwrap();
        assert_no_markup_injection(&html);
        let doc = Html::parse_document(&html);
        // The name is there, as text, intact.
        let row = row_of(&doc, HOSTILE);
        assert_eq!(
            row.value().attr("data-site"),
            Some(&*site_key(&format!("Site{HOSTILE}")))
        );
        let text: String = doc.root_element().text().collect();
        assert!(text.contains(&format!("M1{HOSTILE}")));
        assert!(text.contains(&format!("http://proxy:8080/{HOSTILE}")));
        assert!(text.contains(&format!("EX99{HOSTILE}")));
        assert!(text.contains(&format!("Contoso{HOSTILE}")));
        // The site filter offers it, escaped.
        assert!(
            doc.select(&sel(r#"select[data-filter="site"] option"#))
                .any(|o| o.text().collect::<String>() == format!("Site{HOSTILE}"))
        );
    }

    #[test]
    fn sites_differing_only_in_case_are_one_site() {
        let mut r = fleet();
        r.servers[0].site = Some("HQ".into());
        r.servers[1].site = Some("hq".into());
        r.servers[2].site = Some("Branch".into());
        let html = render_report(&r).unwrap();
        let doc = Html::parse_document(&html);
        let options: Vec<(String, String)> = doc
            .select(&sel(r#"select[data-filter="site"] option"#))
            .skip(1)
            .map(|o| {
                (
                    o.value().attr("value").unwrap().to_string(),
                    o.text().collect(),
                )
            })
            .collect();
        let values: Vec<&str> = options.iter().map(|(v, _)| v.as_str()).collect();
        // One option per site whatever the case, ordered and matched by the same key.
        let hostile = site_key(&format!("Site{HOSTILE}"));
        assert_eq!(values, ["branch", "hq", hostile.as_str()]);
        // The first spelling in page order names the option: EX02's (a warning, so
        // before EX01).
        assert_eq!(options[1].1, "hq");
        // The filter shows both spellings' rows under the one option.
        let hq: Vec<_> = doc
            .select(&sel(r#"#matrix tbody tr[data-site="hq"]"#))
            .collect();
        assert_eq!(hq.len(), 2);
        for tr in doc.select(&sel("#matrix tbody tr")) {
            let site = tr.value().attr("data-site").unwrap();
            assert!(site.is_empty() || values.contains(&site), "{site}");
        }
    }

    #[test]
    fn without_javascript_there_are_no_controls_and_rows_sort_by_severity() {
        let html = render_report(&fleet()).unwrap();
        let doc = Html::parse_document(&html);
        // The script makes the headings buttons; a button without it would do nothing.
        assert_eq!(doc.select(&sel("button")).count(), 0);
        assert!(!html.contains('\u{2195}'));
        assert_eq!(doc.select(&sel("#matrix caption")).count(), 1);
        // Check cells rank by colour; error and skipped rows sort after every value.
        let keys: Vec<String> = doc
            .select(&sel("#matrix td[data-sort]"))
            .map(|td| td.value().attr("data-sort").unwrap().to_string())
            .collect();
        assert!(keys.iter().any(|k| k.starts_with("8")));
        assert!(keys.iter().any(|k| k.starts_with("9")));
        assert_eq!(
            check_sort("Red", "Failed to query config"),
            "0 failed to query config"
        );
        assert_eq!(check_sort("Green", "Enabled"), "3 enabled");
        assert_eq!(check_sort("", UNKNOWN), format!("4 {UNKNOWN}"));
        // The org servers missing from the inventory have a tile.
        let tile: String = doc
            .select(&sel(r#".tile[data-status="not-in-inventory"] .count"#))
            .next()
            .unwrap()
            .text()
            .collect();
        assert_eq!(tile, "1");
    }

    #[test]
    fn page_is_self_contained_and_printable() {
        let html = render_report(&fleet()).unwrap();
        assert_self_contained(&html);
        assert!(html.contains("@media print"));
        let doc = Html::parse_document(&html);
        // Controls stay hidden until the script shows them.
        let controls = doc.select(&sel("#controls")).next().unwrap();
        assert!(controls.value().attr("hidden").is_some());
    }

    #[test]
    fn csp_allows_exactly_the_included_script() {
        let html = render_report(&fleet()).unwrap();
        let doc = Html::parse_document(&html);
        let meta = doc
            .select(&sel(r#"meta[http-equiv="Content-Security-Policy"]"#))
            .next()
            .unwrap();
        let script: String = doc.select(&sel("script")).next().unwrap().text().collect();
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&script));
        let policy = meta.value().attr("content").unwrap();
        assert!(policy.contains(&format!("'sha256-{hash}'")), "{policy}");
        assert!(policy.starts_with("default-src 'none'"));
    }

    #[test]
    fn interrupted_scan_has_a_banner_and_empty_scan_renders() {
        let mut r = fleet();
        r.interrupted = true;
        r.servers.clear();
        let html = render_report(&r).unwrap();
        let doc = Html::parse_document(&html);
        assert!(doc.select(&sel("#interrupted")).next().is_some());
        assert_eq!(doc.select(&sel("#matrix tbody tr")).count(), 0);
    }

    #[test]
    fn sink_renders_what_it_was_given() {
        let r = fleet();
        let mut sink = HtmlSink::new(Vec::new());
        sink.begin(&ScanStart {
            started_at: r.started_at.clone(),
            organization: r.organization.clone(),
        })
        .unwrap();
        for row in &r.servers {
            sink.row(row).unwrap();
        }
        sink.finish(&ScanEnd {
            finished_at: r.finished_at.clone(),
            summary: r.summary.clone(),
            not_in_inventory: r.not_in_inventory.clone(),
            interrupted: false,
        })
        .unwrap();
        let html = String::from_utf8(sink.into_inner()).unwrap();
        assert_eq!(html, render_report(&r).unwrap());
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(4200), "4.2 s");
        assert_eq!(human_duration(187_000), "3 min 07 s");
        assert_eq!(human_duration(3_720_000), "1 h 02 min");
        assert_eq!(
            scan_duration("2026-11-29T10:00:00Z", "2026-11-29T10:01:05Z"),
            "1 min 05 s"
        );
        assert_eq!(scan_duration("garbage", "2026-11-29T10:01:05Z"), "unknown");
    }

    #[test]
    fn drift_page() {
        let old = fleet();
        let mut new = fleet();
        new.servers[0].service_check = Some(ServiceCheck::Investigate);
        new.servers[0].service_status = Some("Stopped".into());
        new.servers[0].status = Status::Warning;
        new.servers[3].mitigations_blocked = vec![format!("M7{HOSTILE}")];
        let drift = compare(&old, &new).unwrap();
        let html = render_drift(
            &ScanLabel {
                file: format!("old{HOSTILE}.json"),
                report: &old,
            },
            &ScanLabel {
                file: "new.json".into(),
                report: &new,
            },
            &drift,
        )
        .unwrap();
        assert_no_markup_injection(&html);
        assert_self_contained(&html);
        let doc = Html::parse_document(&html);
        let rows: Vec<_> = doc.select(&sel("#drift tbody tr")).collect();
        assert_eq!(rows.len(), drift.changes.len());
        let regressions: Vec<_> = rows
            .iter()
            .filter(|r| r.value().attr("data-verdict") == Some("regression"))
            .collect();
        assert_eq!(
            regressions.len(),
            3,
            "EX01 status + service, one newly blocked"
        );
        for r in regressions {
            assert_eq!(class_of(*r, "verdict").as_deref(), Some("Red"));
        }
        // Changes are named as the console names them; statuses keep their colours.
        let service = rows
            .iter()
            .find(|r| r.value().attr("data-field") == Some("service"))
            .unwrap();
        let field: String = service
            .select(&sel(r#"td[data-col="field"]"#))
            .next()
            .unwrap()
            .text()
            .collect();
        assert_eq!(field, Field::Service.label());
        let status = rows
            .iter()
            .find(|r| r.value().attr("data-field") == Some("status"))
            .unwrap();
        assert_eq!(class_of(*status, "old").as_deref(), Some("pre Green"));
        assert_eq!(class_of(*status, "new").as_deref(), Some("pre Yellow"));
        let tile: String = doc
            .select(&sel(r#".tile[data-verdict="regression"] .count"#))
            .next()
            .unwrap()
            .text()
            .collect();
        assert_eq!(tile, "3");
        let servers: String = doc
            .select(&sel(r#".tile[data-verdict="servers"]"#))
            .next()
            .unwrap()
            .text()
            .collect();
        assert_eq!(servers, "2of 6 servers changed");
    }

    #[test]
    fn a_removed_server_counts_among_the_changed() {
        let old = fleet();
        let mut new = fleet();
        new.servers.remove(0);
        let drift = compare(&old, &new).unwrap();
        let label = |report| ScanLabel {
            file: "x.json".into(),
            report,
        };
        let html = render_drift(&label(&old), &label(&new), &drift).unwrap();
        let doc = Html::parse_document(&html);
        let servers: String = doc
            .select(&sel(r#".tile[data-verdict="servers"]"#))
            .next()
            .unwrap()
            .text()
            .collect();
        assert_eq!(servers, "1of 6 servers changed");
    }

    #[test]
    fn drift_page_without_changes() {
        let r = fleet();
        let drift = compare(&r, &r).unwrap();
        let label = ScanLabel {
            file: "a.json".into(),
            report: &r,
        };
        let html = render_drift(&label, &label, &drift).unwrap();
        let doc = Html::parse_document(&html);
        assert!(doc.select(&sel("#no-changes")).next().is_some());
    }
}
