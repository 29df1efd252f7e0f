//! The console summary: a table that fits 80 columns, coloured unless NO_COLOR is set or
//! the output is not a terminal.

use std::fmt::Write as _;

use eems_core::analysis::Status;
use eems_core::report::{OrgSection, ServerRow, Summary};

/// Beyond this many servers, the table lists only the ones that need attention.
const FULL_TABLE_MAX: usize = 40;

/// The part of a row the console shows; kept per server while the scan runs.
#[derive(Debug, Clone)]
pub struct ConsoleRow {
    pub server: String,
    pub status: Status,
    pub eems_state: String,
    pub service: String,
    pub pattern: String,
    pub blocked: String,
    pub error: Option<String>,
    pub note: Option<String>,
    /// The mechanism that authenticated, when one did.
    pub auth: Option<String>,
}

impl From<&ServerRow> for ConsoleRow {
    fn from(r: &ServerRow) -> Self {
        ConsoleRow {
            server: r.server.clone(),
            status: r.status,
            eems_state: r.eems_state.map(|s| s.to_string()).unwrap_or_default(),
            service: r.service_check.map(|s| s.to_string()).unwrap_or_default(),
            pattern: r
                .pattern_service
                .map(|p| p.short().to_string())
                .unwrap_or_default(),
            blocked: r.mitigations_blocked.join(","),
            error: r.error.clone(),
            note: if r.status == Status::Skipped {
                r.findings.first().cloned()
            } else {
                None
            },
            auth: r.auth.clone(),
        }
    }
}

/// How to paint the table.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Colour only for a terminal, and never when NO_COLOR is set (no-color.org).
    pub fn detect(is_terminal: bool) -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: is_terminal && !no_color,
        }
    }

    fn paint(&self, status: Status, text: &str) -> String {
        let code = match status {
            Status::Ok => "32",
            Status::Warning => "33",
            Status::Critical => "1;31",
            Status::Error => "31",
            Status::Skipped => "2",
        };
        self.sgr(code, text)
    }

    /// `text` in the given SGR colour (e.g. "32" green), or as is without colour.
    pub fn sgr(&self, code: &str, text: &str) -> String {
        if !self.color || code.is_empty() {
            return text.to_string();
        }
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

const W_SERVER: usize = 15;
const W_STATUS: usize = 8;
const W_EEMS: usize = 24;
const W_SERVICE: usize = 11;
const W_PATTERN: usize = 11;
const W_BLOCKED: usize = 5;

/// The admin audit trail in one line of 80 columns; the JSON and HTML reports have the
/// entries and the whole error.
fn audit_line(a: &eems_core::facts::AdminAuditFacts) -> String {
    use eems_core::analysis::evidence::org::{ADMIN_AUDIT_DAYS, AUDIT_RBAC, disabled_mitigations};
    let days = a.window_days.unwrap_or(ADMIN_AUDIT_DAYS);
    if let Some(e) = &a.error {
        if e == AUDIT_RBAC {
            return "Admin audit: not searched, the account lacks the View-Only Audit Logs role"
                .to_string();
        }
        return format!("Admin audit: {e}");
    }
    let Some(newest) = a.entries.first() else {
        return format!("Admin audit: no EEMS switch changed in {days} days");
    };
    // `contoso.com/Users/bob` -> `bob`: the column is narrow; the reports have the whole name.
    let who = newest.who.as_deref().unwrap_or("?");
    let who = who.rsplit(['/', '\\']).next().unwrap_or(who);
    let off = a.entries.iter().filter(|e| disabled_mitigations(e)).count();
    format!(
        "Admin audit: {} change{} in {days} days{}, newest by {who} at {}",
        a.entries.len(),
        if a.entries.len() == 1 { "" } else { "s" },
        if off > 0 {
            format!(" ({off} disabled EEMS)")
        } else {
            String::new()
        },
        newest.when.as_deref().unwrap_or("?"),
    )
}

/// Renders the summary printed after a scan.
pub fn render(org: &OrgSection, rows: &[ConsoleRow], summary: &Summary, style: Style) -> String {
    let mut out = String::new();
    let org_name = org.name.as_deref().unwrap_or("(unknown organisation)");
    let org_state = match (org.mitigations_enabled, &org.error) {
        (Some(true), _) => "MitigationsEnabled True".to_string(),
        (Some(false), _) => "MitigationsEnabled False".to_string(),
        (None, Some(e)) => format!("org query failed: {}", clip(e, 50)),
        (None, None) => "MitigationsEnabled unknown".to_string(),
    };
    let _ = writeln!(
        out,
        "{}",
        clip(&format!("Organisation {org_name}: {org_state}"), 80)
    );
    if let Some(a) = &org.admin_audit {
        let _ = writeln!(out, "{}", clip(&audit_line(a), 80));
    }

    let mut shown: Vec<&ConsoleRow> = if rows.len() <= FULL_TABLE_MAX {
        rows.iter().collect()
    } else {
        rows.iter().filter(|r| r.status != Status::Ok).collect()
    };
    // What needs attention first; rows arrive in completion order, which means nothing.
    let rank = |s: Status| match s {
        Status::Critical => 0,
        Status::Error => 1,
        Status::Warning => 2,
        Status::Ok => 3,
        Status::Skipped => 4,
    };
    shown.sort_by(|a, b| {
        rank(a.status)
            .cmp(&rank(b.status))
            .then_with(|| a.server.cmp(&b.server))
    });
    if !shown.is_empty() {
        let _ = writeln!(
            out,
            "{:<W_SERVER$} {:<W_STATUS$} {:<W_EEMS$} {:<W_SERVICE$} {:<W_PATTERN$} BLOCK",
            "SERVER", "STATUS", "EEMS", "SERVICE", "PATTERN"
        );
    }
    for r in &shown {
        let server = pad(&clip(&r.server, W_SERVER), W_SERVER);
        let status = style.paint(r.status, &pad(r.status.as_str(), W_STATUS));
        let rest = match (&r.error, &r.note) {
            (Some(e), _) => clip(e, 80 - W_SERVER - W_STATUS - 2),
            (None, Some(n)) => clip(n, 80 - W_SERVER - W_STATUS - 2),
            (None, None) => format!(
                "{} {} {} {}",
                pad(&clip(&r.eems_state, W_EEMS), W_EEMS),
                pad(&clip(&r.service, W_SERVICE), W_SERVICE),
                pad(&clip(&r.pattern, W_PATTERN), W_PATTERN),
                clip(&r.blocked, W_BLOCKED)
            )
            .trim_end()
            .to_string(),
        };
        let _ = writeln!(out, "{server} {status} {rest}");
    }
    if shown.len() < rows.len() {
        let _ = writeln!(
            out,
            "({} ok servers not listed; see the CSV/JSON report)",
            rows.len() - shown.len()
        );
    }
    let _ = writeln!(
        out,
        "{} servers: {} ok, {} warning, {} critical, {} error, {} skipped",
        summary.total,
        summary.ok,
        summary.warning,
        summary.critical,
        summary.error,
        summary.skipped
    );
    // Which mechanism got in, server by server: one scan may mix them only by failing.
    let mut mechanisms: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in rows {
        if let Some(a) = &r.auth {
            *mechanisms.entry(a.as_str()).or_default() += 1;
        }
    }
    if !mechanisms.is_empty() {
        let list: Vec<String> = mechanisms
            .iter()
            .map(|(m, n)| format!("{m} on {n}"))
            .collect();
        let _ = writeln!(out, "authenticated with {}", list.join(", "));
    }
    out
}

/// Left-aligns `s` in `width` characters (never cuts; `clip` first).
pub fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width {
        s.to_string()
    } else {
        format!("{s}{}", " ".repeat(width - n))
    }
}

/// Cuts to `width` characters with an ellipsis, and makes control characters visible so
/// a hostile server name cannot move the cursor or recolour the terminal.
pub fn clip(s: &str, width: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= width {
        clean
    } else {
        let mut cut: String = clean.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(server: &str, status: Status, error: Option<&str>) -> ConsoleRow {
        ConsoleRow {
            server: server.into(),
            status,
            eems_state: "Disabled on server level".into(),
            service: "Investigate".into(),
            pattern: "Unreachable".into(),
            blocked: "M1,M2,M3".into(),
            error: error.map(Into::into),
            note: None,
            auth: error.is_none().then(|| "kerberos".into()),
        }
    }

    #[test]
    fn says_which_mechanism_authenticated() {
        let rows = vec![
            row("EX01", Status::Ok, None),
            row("EX02", Status::Warning, None),
            row("EX03", Status::Error, Some("connection refused")),
        ];
        let text = render(
            &OrgSection::default(),
            &rows,
            &Summary::default(),
            Style { color: false },
        );
        assert_eq!(
            text.lines().last(),
            Some("authenticated with kerberos on 2")
        );
    }

    #[test]
    fn every_line_fits_80_columns() {
        let rows = vec![
            row("A-VERY-LONG-SERVER-NAME-INDEED", Status::Warning, None),
            row(
                "EX02",
                Status::Error,
                Some(&"connection refused ".repeat(10)),
            ),
        ];
        let mut s = Summary::default();
        s.add(Status::Warning);
        s.add(Status::Error);
        let org = OrgSection {
            name: Some("x".repeat(100)),
            ..Default::default()
        };
        let text = render(&org, &rows, &s, Style { color: false });
        for line in text.lines() {
            assert!(
                line.chars().count() <= 80,
                "{} chars: {line}",
                line.chars().count()
            );
        }
    }

    #[test]
    fn the_admin_audit_is_one_line_of_80_columns() {
        use eems_core::analysis::admin_audit_report;
        use eems_core::facts::{AdminAuditEntry, AdminAuditFacts, AuditChange};
        let entry = |who: &str, when: &str, off: bool| AdminAuditEntry {
            who: Some(who.into()),
            when: Some(when.into()),
            cmdlet: Some("Set-OrganizationConfig".into()),
            object: Some("Fabrikam".into()),
            changes: vec![AuditChange {
                name: "MitigationsEnabled".into(),
                value: Some(if off { "False" } else { "True" }.into()),
            }],
        };
        let cases = [
            (
                AdminAuditFacts {
                    entries: vec![
                        entry("lab.local/Users/alice", "2026-10-01T08:00:00Z", false),
                        entry(
                            "lab.local/Users/a-very-long-account-name-indeed",
                            "2026-11-20T09:30:00Z",
                            true,
                        ),
                    ],
                    ..Default::default()
                },
                "Admin audit: 2 changes in 90 days (1 disabled EEMS), newest by a-very-long-acco…",
            ),
            (
                AdminAuditFacts::default(),
                "Admin audit: no EEMS switch changed in 90 days",
            ),
            (
                AdminAuditFacts {
                    error: Some(
                        "The term 'Search-AdminAuditLog' is not recognized as the name of a cmdlet"
                            .into(),
                    ),
                    ..Default::default()
                },
                "Admin audit: not searched, the account lacks the View-Only Audit Logs role",
            ),
        ];
        for (facts, want) in cases {
            let org = OrgSection {
                admin_audit: Some(admin_audit_report(&facts)),
                ..Default::default()
            };
            let text = render(&org, &[], &Summary::default(), Style { color: false });
            let line = text.lines().nth(1).unwrap();
            assert!(line.starts_with(want), "{line}");
            assert!(line.chars().count() <= 80, "{line}");
        }
        let text = render(
            &OrgSection::default(),
            &[],
            &Summary::default(),
            Style { color: false },
        );
        assert!(!text.contains("Admin audit"), "{text}");
    }

    #[test]
    fn control_characters_are_neutralised() {
        assert_eq!(clip("EX\x1b[31m01", 20), "EX [31m01");
    }
}
