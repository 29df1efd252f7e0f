use super::fleet::{human_duration, scan_duration, site_key};
use super::*;
use crate::render::{RowSink, ScanEnd, ScanStart};
use eems_core::analysis::{
    CertFloor, EemsState, FetchState, IisIssue, IisState, PatternService, ServiceCheck,
};
use eems_core::drift::Field;
use eems_core::drift::compare;
use eems_core::report::Stage;
use eems_core::report::{HcLine, OrgSection, UninventoriedServer};
use eems_core::report::{ScanReport, ServerRow, Summary, ToolInfo};
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
    r.cert_floor = Some(CertFloor::Above);
    r
}

/// A fleet with one server in every state the matrix colours, and hostile values
/// wherever the outside world writes into the report.
fn fleet() -> ScanReport {
    let mut ok = scanned("EX01", Status::Ok);
    ok.fetch_state = Some(FetchState::Fetching);
    ok.iis_state = Some(IisState::Consistent);
    ok.log_last_write = Some("2026-11-29T09:30:00Z".into());
    let mut off = scanned("EX02", Status::Warning);
    off.eems_state = Some(EemsState::DisabledOnServer);
    off.service_check = Some(ServiceCheck::Investigate);
    off.service_status = Some("Stopped".into());
    off.pattern_service = Some(PatternService::Unreachable);
    off.mitigations_blocked = vec![format!("M1{HOSTILE}")];
    off.ocs_proxy = Some(format!("http://proxy:8080/{HOSTILE}"));
    off.findings = vec!["EEMS is disabled on this server".into()];
    off.fetch_state = Some(FetchState::Failing);
    off.fetch_errors_window = Some(72);
    off.last_fetch_error_time = Some("2026-11-29T09:36:00Z".into());
    off.last_fetch_error = Some(format!("Unable to connect {HOSTILE}"));
    off.iis_state = Some(IisState::Issues(vec![IisIssue::AppliedButMissing(
        "M1.1.0".into(),
    )]));
    off.service_changed_time = Some("2026-11-27T08:00:00Z".into());
    off.service_changed = Some("auto start to demand start".into());
    off.healthchecker = vec![HcLine {
        name: Some("Exchange Emergency Mitigation Service".into()),
        details: "Disabled on server level".into(),
        write_type: WriteType::Yellow,
        html: true,
    }];
    let mut crit = scanned("EX03", Status::Critical);
    crit.eems_state = Some(EemsState::FailedToQuery);
    crit.service_check = Some(ServiceCheck::Unknown);
    crit.cert_floor = Some(CertFloor::CannotFetch);
    crit.iis_state = Some(IisState::Unknown);
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
            admin_audit: Some(eems_core::facts::AdminAuditFacts {
                window_days: Some(90),
                entries: vec![eems_core::facts::AdminAuditEntry {
                    who: Some(format!("contoso.com/Users/eve{HOSTILE}")),
                    when: Some("2026-11-20T09:30:00Z".into()),
                    cmdlet: Some("Set-OrganizationConfig".into()),
                    object: Some(format!("Contoso{HOSTILE}")),
                    changes: vec![eems_core::facts::AuditChange {
                        name: "MitigationsEnabled".into(),
                        value: Some("False".into()),
                    }],
                }],
                error: None,
            }),
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
                    !v.starts_with("http://") && !v.starts_with("https://") && !v.starts_with("//"),
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

    // The evidence verdicts carry their own colours; not collected is plain.
    assert_eq!(class_of(ok, "fetch").as_deref(), Some("Green"));
    assert_eq!(class_of(ok, "cert"), None);
    assert_eq!(class_of(ok, "iis").as_deref(), Some("Green"));
    assert_eq!(class_of(off, "fetch").as_deref(), Some("Yellow"));
    assert_eq!(class_of(off, "iis").as_deref(), Some("Yellow"));
    assert_eq!(class_of(crit, "cert").as_deref(), Some("Yellow"));
    assert_eq!(class_of(crit, "iis"), None);
    assert_eq!(class_of(crit, "fetch"), None);

    // The error spans the nine check columns, in red.
    let down = row_of(&doc, "EX05");
    let span = down.select(&sel("td[data-span]")).next().unwrap();
    assert_eq!(span.value().attr("colspan"), Some("9"));
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

#[test]
fn evidence_cells_sort_by_severity_and_details_list_the_evidence() {
    let html = render_report(&fleet()).unwrap();
    let doc = Html::parse_document(&html);
    let cell = |server: &str, col: &str| -> (String, String) {
        let td = row_of(&doc, server)
            .select(&sel(&format!(r#"td[data-col="{col}"]"#)))
            .next()
            .unwrap_or_else(|| panic!("{server}: no {col} cell"));
        (
            td.text().collect(),
            td.value().attr("data-sort").unwrap().to_string(),
        )
    };
    // Failing (Yellow) before Fetching (Green) before not collected.
    let (failing, fetching, none) = (
        cell("EX02", "fetch"),
        cell("EX01", "fetch"),
        cell("EX03", "fetch"),
    );
    assert_eq!(
        (&failing.0[..], &fetching.0[..], &none.0[..]),
        ("Failing", "Fetching", UNKNOWN)
    );
    assert!(failing.1 < fetching.1 && fetching.1 < none.1);
    let (below, above) = (cell("EX03", "cert"), cell("EX01", "cert"));
    assert_eq!(
        (&below.0[..], &above.0[..]),
        ("Cannot fetch", "Above floor")
    );
    assert!(below.1 < above.1);
    let (issue, unknown, consistent) = (
        cell("EX02", "iis"),
        cell("EX03", "iis"),
        cell("EX01", "iis"),
    );
    assert_eq!(issue.0, "applied but missing: M1.1.0");
    assert!(issue.1 < unknown.1 && unknown.1 < consistent.1);

    // The details: every collected field, coloured as its cell; hostile text stays text.
    let details = doc
        .select(&sel("details"))
        .find(|d| d.text().collect::<String>().contains("EX02:"))
        .unwrap();
    let lines: Vec<(String, String, Option<String>)> = details
        .select(&sel("dl.evidence dt"))
        .zip(details.select(&sel("dl.evidence dd")))
        .map(|(dt, dd)| {
            (
                dt.text().collect(),
                dd.text().collect(),
                dd.value().attr("class").map(String::from),
            )
        })
        .collect();
    let names: Vec<&str> = lines.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "Fetch state",
            "Fetch errors (event 1008)",
            "Certificate floor",
            "IIS rewrite rules",
            "Start type changed (event 7040)"
        ]
    );
    assert_eq!(lines[0].2.as_deref(), Some("Yellow"));
    assert_eq!(
        lines[1].1,
        format!("72 in the window; newest at 2026-11-29T09:36:00Z: Unable to connect {HOSTILE}")
    );
    assert_eq!(lines[2].1, "above the March 2023 SU");
    assert_eq!(lines[3].2.as_deref(), Some("Yellow"));
    assert_no_markup_injection(&html);

    // A server without any evidence field has no evidence block.
    let edge = doc
        .select(&sel("details"))
        .find(|d| d.text().collect::<String>().contains("EDGE01:"))
        .unwrap();
    assert_eq!(edge.select(&sel("dl.evidence")).count(), 0);
}
