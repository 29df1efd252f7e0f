//! The fleet page's org-level evidence (README "Evidence"): the Feature Flighting cell and
//! detail lines of each server, and the admin audit log section.

use eems_core::analysis::evidence::org::{
    RING_LEVEL_UNKNOWN, changes_text, disabled_mitigations, last_change_was_eems, ring_label,
};
use eems_core::facts::AdminAuditFacts;
use eems_core::report::ServerRow;

/// The server's org-level evidence lines in its details: (name, text, class). Not a matrix
/// column: a fourteenth column makes the matrix wider than Letter paper (778 px of 739 in
/// the browser check); a stale run or an unknown ring is Yellow here and a finding.
pub(super) fn detail_lines(r: &ServerRow) -> Vec<(&'static str, String, &'static str)> {
    let mut out = Vec::new();
    if let Some(t) = &r.when_changed {
        let eems = last_change_was_eems(Some(t), r.mitigations_applied_time.as_deref());
        out.push((
            "Last AD change (WhenChangedUTC)",
            if eems {
                format!("{t} (last AD change was EEMS's: equals MitigationsAppliedTime)")
            } else {
                t.clone()
            },
            "",
        ));
    }
    if let Some(n) = r.ring_level {
        out.push(("Feature Flighting ring", ring_label(n), ""));
    } else if r.findings.iter().any(|f| f.ends_with(RING_LEVEL_UNKNOWN)) {
        out.push((
            "Feature Flighting ring",
            RING_LEVEL_UNKNOWN.to_string(),
            "Yellow",
        ));
    }
    if let Some(t) = &r.last_flighting_run {
        let stale = r
            .findings
            .iter()
            .any(|f| f.starts_with("Feature Flighting last ran"));
        out.push((
            "Feature Flighting last run",
            t.clone(),
            if stale { "Yellow" } else { "" },
        ));
    }
    out
}

pub(super) struct AuditRowView {
    pub when: String,
    pub who: String,
    pub cmdlet: String,
    pub object: String,
    pub changes: String,
    /// The entry switched EEMS off.
    pub class: &'static str,
}

pub(super) struct AuditView {
    pub line: String,
    pub error: bool,
    pub rows: Vec<AuditRowView>,
}

pub(super) fn audit_view(a: &AdminAuditFacts) -> AuditView {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    AuditView {
        line: eems_core::analysis::admin_audit_line(a),
        error: a.error.is_some(),
        rows: a
            .entries
            .iter()
            .map(|e| AuditRowView {
                when: text(&e.when),
                who: text(&e.who),
                cmdlet: text(&e.cmdlet),
                object: text(&e.object),
                changes: changes_text(e),
                class: if disabled_mitigations(e) {
                    "Yellow"
                } else {
                    ""
                },
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use eems_core::analysis::Status;
    use eems_core::analysis::evidence::org::{AUDIT_RBAC, RING_LEVEL_UNKNOWN};
    use eems_core::facts::{AdminAuditEntry, AdminAuditFacts, AuditChange};
    use eems_core::report::{OrgSection, ScanReport, ServerRow, Summary, ToolInfo};
    use scraper::{Html, Selector};

    use super::super::fleet::render_report;

    fn row(name: &str) -> ServerRow {
        let mut r = ServerRow::new(name);
        r.status = Status::Ok;
        r
    }

    fn page(org: OrgSection, servers: Vec<ServerRow>) -> Html {
        let report = ScanReport {
            tool: ToolInfo::default(),
            started_at: "2026-11-29T10:00:00Z".into(),
            finished_at: "2026-11-29T10:01:00Z".into(),
            organization: org,
            summary: Summary::default(),
            servers,
            not_in_inventory: vec![],
            interrupted: false,
        };
        Html::parse_document(&render_report(&report).unwrap())
    }

    fn text(doc: &Html, css: &str) -> Vec<String> {
        doc.select(&Selector::parse(css).unwrap())
            .map(|e| e.text().collect())
            .collect()
    }

    #[test]
    fn flighting_details_and_the_audit_section() {
        let mut fresh = row("EX01");
        fresh.ring_level = Some(1);
        fresh.last_flighting_run = Some("2026-11-29T09:00:00Z".into());
        fresh.when_changed = Some("2026-11-29T08:00:00Z".into());
        fresh.mitigations_applied_time = Some("2026-11-29T08:00:00.42Z".into());
        let mut stale = row("EX02");
        stale.ring_level = Some(2);
        stale.last_flighting_run = Some("2026-10-01T09:00:00Z".into());
        stale.findings =
            vec!["Feature Flighting last ran at 2026-10-01T09:00:00Z, 59 days ago".into()];
        let mut unknown = row("EX03");
        unknown.findings = vec![format!(
            "Feature Flighting ring level: {RING_LEVEL_UNKNOWN}"
        )];
        let old = row("EX04");
        let audit = AdminAuditFacts {
            window_days: Some(90),
            entries: vec![AdminAuditEntry {
                who: Some("lab.local/Users/bob".into()),
                when: Some("2026-11-20T09:30:00Z".into()),
                cmdlet: Some("Set-OrganizationConfig".into()),
                object: Some("Fabrikam".into()),
                changes: vec![AuditChange {
                    name: "MitigationsEnabled".into(),
                    value: Some("False".into()),
                }],
            }],
            error: None,
        };
        let doc = page(
            OrgSection {
                admin_audit: Some(audit),
                ..Default::default()
            },
            vec![fresh, stale, unknown, old],
        );
        // Detail lines, not a matrix column (paper width).
        assert!(text(&doc, r#"[data-col="flighting"]"#).is_empty());
        let yellow = text(&doc, "dl.evidence dd.Yellow");
        assert_eq!(
            yellow,
            ["2026-10-01T09:00:00Z", RING_LEVEL_UNKNOWN],
            "{yellow:?}"
        );
        let details = text(&doc, "dl.evidence dd").join("\n");
        assert!(
            details.contains(
                "2026-11-29T08:00:00Z (last AD change was EEMS's: equals MitigationsAppliedTime)"
            ),
            "{details}"
        );
        assert!(
            details.contains("1 (Worldwide)\n2026-11-29T09:00:00Z"),
            "{details}"
        );
        let line = text(&doc, "#admin-audit-line").join("");
        assert!(
            line.contains("1 change of MitigationsEnabled/MitigationsBlocked in 90 days"),
            "{line}"
        );
        let rows = text(&doc, "table.audit tbody tr.Yellow td");
        assert_eq!(
            rows,
            [
                "2026-11-20T09:30:00Z",
                "lab.local/Users/bob",
                "Set-OrganizationConfig",
                "Fabrikam",
                "MitigationsEnabled=False"
            ]
        );
    }

    #[test]
    fn an_audit_error_is_a_yellow_line_and_no_audit_no_section() {
        let doc = page(
            OrgSection {
                admin_audit: Some(AdminAuditFacts {
                    error: Some(AUDIT_RBAC.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            vec![],
        );
        let line = text(&doc, "p.Yellow#admin-audit-line").join("");
        assert!(line.contains("View-Only Audit Logs"), "{line}");
        assert!(text(&doc, "table.audit").is_empty());
        let doc = page(OrgSection::default(), vec![row("EX01")]);
        assert!(text(&doc, "#admin-audit").is_empty());
    }
}
