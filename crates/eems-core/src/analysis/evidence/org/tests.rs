//! Table-driven tests of the org-level evidence (flighting, AD change, admin audit).

use time::format_description::well_known::Rfc3339;

use super::*;
use crate::facts::AuditChange;

fn now() -> OffsetDateTime {
    OffsetDateTime::parse("2026-11-28T12:00:00Z", &Rfc3339).unwrap()
}

fn ago_days(days: i64) -> String {
    (now() - time::Duration::days(days))
        .format(&Rfc3339)
        .unwrap()
}

const CU15: &str = "15.2.1748.10";
const CU14: &str = "15.2.1544.4";
const SE: &str = "15.2.2562.17";
const E16: &str = "15.1.2507.6";

fn server(
    when_changed: bool,
    ring: Option<i32>,
    last_run_days: Option<i64>,
    edge: bool,
) -> ExchangeServerFacts {
    ExchangeServerFacts {
        name: "EX01".into(),
        is_edge_server: Some(edge),
        when_changed: when_changed.then(|| ago_days(1)),
        ring_level: ring,
        last_flighting_run: last_run_days.map(ago_days),
        ..Default::default()
    }
}

#[test]
fn org_server_findings_table() {
    // (case, build, server, expected finding fragments; empty = no finding)
    let cases: Vec<(&str, &str, ExchangeServerFacts, &[&str])> = vec![
        (
            "fresh run",
            CU15,
            server(true, Some(1), Some(0), false),
            &[],
        ),
        (
            "run 6 days ago",
            SE,
            server(true, Some(1), Some(6), false),
            &[],
        ),
        (
            "run 30 days ago",
            SE,
            server(true, Some(1), Some(30), false),
            &[
                "Feature Flighting last ran at",
                "30 days ago",
                "checks hourly",
            ],
        ),
        (
            "ring but never ran",
            CU15,
            server(true, Some(2), None, false),
            &["no last run time"],
        ),
        (
            "CU15 without RingLevel: HealthChecker's Unknown",
            CU15,
            server(true, None, None, false),
            &["Feature Flighting ring level: Unknown - No data on Get-ExchangeServer"],
        ),
        (
            "CU14 has no flighting",
            CU14,
            server(true, None, None, false),
            &[],
        ),
        (
            "2016 has no flighting",
            E16,
            server(true, None, None, false),
            &[],
        ),
        (
            "Edge has no flighting",
            SE,
            server(true, None, None, true),
            &[],
        ),
        (
            "source did not read the fields (no WhenChangedUTC)",
            CU15,
            server(false, None, None, false),
            &[],
        ),
    ];
    for (case, b, s, want) in cases {
        let build: ExchangeBuild = b.parse().unwrap();
        let got = org_server_findings(&s, Some(build), now());
        assert_eq!(got.len(), usize::from(!want.is_empty()), "{case}: {got:?}");
        for w in want {
            assert!(got[0].contains(w), "{case}: {got:?} lacks {w}");
        }
    }
    let mut bad = server(true, Some(1), None, false);
    bad.last_flighting_run = Some("yesterday".into());
    let got = org_server_findings(&bad, Some(CU15.parse().unwrap()), now());
    assert!(got[0].contains("not a time: yesterday"), "{got:?}");
}

#[test]
fn ring_labels() {
    for (ring, want) in [
        (0, "0 (Early Adopter)"),
        (1, "1 (Worldwide)"),
        (2, "2 (Admin Action)"),
        (7, "7"),
    ] {
        assert_eq!(ring_label(ring), want);
    }
}

#[test]
fn last_change_was_eems_to_the_second() {
    let cases = [
        (
            Some("2023-01-05T12:08:37Z"),
            Some("2023-01-05T12:08:37.6177687Z"),
            true,
        ),
        (
            Some("2023-01-05T12:08:37Z"),
            Some("2023-01-05T13:08:37+01:00"),
            true,
        ),
        (
            Some("2023-01-05T12:09:37Z"),
            Some("2023-01-05T12:08:37Z"),
            false,
        ),
        (None, Some("2023-01-05T12:08:37Z"), false),
        (Some("2023-01-05T12:08:37Z"), None, false),
        (None, None, false),
    ];
    for (changed, applied, want) in cases {
        assert_eq!(
            last_change_was_eems(changed, applied),
            want,
            "{changed:?} {applied:?}"
        );
    }
}

fn entry(
    who: &str,
    when: &str,
    cmdlet: &str,
    object: &str,
    changes: &[(&str, &str)],
) -> AdminAuditEntry {
    AdminAuditEntry {
        who: Some(who.into()),
        when: Some(when.into()),
        cmdlet: Some(cmdlet.into()),
        object: Some(object.into()),
        changes: changes
            .iter()
            .map(|(n, v)| AuditChange {
                name: n.to_string(),
                value: Some(v.to_string()),
            })
            .collect(),
    }
}

#[test]
fn admin_audit_report_and_console_line_table() {
    let older = entry(
        "lab.local/Users/alice",
        "2026-10-01T08:00:00Z",
        "Set-ExchangeServer",
        "EX02",
        &[("MitigationsBlocked", "M2")],
    );
    let newest = entry(
        "lab.local/Users/bob",
        "2026-11-20T09:30:00Z",
        "Set-OrganizationConfig",
        "Fabrikam",
        &[("MitigationsEnabled", "False")],
    );
    let undated = AdminAuditEntry {
        when: None,
        ..older.clone()
    };
    let rbac = "The term 'Search-AdminAuditLog' is not recognized as the name of a cmdlet, function, script file, or operable program.";
    // (case, facts, expected line fragments, expected entry order by who)
    let cases: Vec<(&str, AdminAuditFacts, &[&str], &[&str])> = vec![
        (
            "two entries, sorted newest first, one switched EEMS off",
            AdminAuditFacts {
                window_days: Some(90),
                entries: vec![undated.clone(), older.clone(), newest.clone()],
                error: None,
            },
            &[
                "3 changes of MitigationsEnabled/MitigationsBlocked in 90 days",
                "1 set MitigationsEnabled to False",
                "newest by lab.local/Users/bob at 2026-11-20T09:30:00Z: Set-OrganizationConfig Fabrikam MitigationsEnabled=False",
            ],
            &[
                "lab.local/Users/bob",
                "lab.local/Users/alice",
                "lab.local/Users/alice",
            ],
        ),
        (
            "one entry",
            AdminAuditFacts {
                window_days: None,
                entries: vec![older.clone()],
                error: None,
            },
            &["1 change of", "in 90 days; newest by lab.local/Users/alice"],
            &["lab.local/Users/alice"],
        ),
        (
            "none",
            AdminAuditFacts::default(),
            &["no change of MitigationsEnabled/MitigationsBlocked in 90 days"],
            &[],
        ),
        (
            "RBAC: the cmdlet does not exist for the account",
            AdminAuditFacts {
                error: Some(rbac.into()),
                ..Default::default()
            },
            &[
                "may not run Search-AdminAuditLog",
                "View-Only Audit Logs or Audit Logs role",
                "View-Only Organization Management does not include it",
            ],
            &[],
        ),
        (
            "another failure is quoted",
            AdminAuditFacts {
                error: Some("Active Directory operation failed on dc01.\r\nretry".into()),
                ..Default::default()
            },
            &["Search-AdminAuditLog failed: Active Directory operation failed on dc01.\\r\\nretry"],
            &[],
        ),
    ];
    for (case, facts, want, order) in cases {
        let report = admin_audit_report(&facts);
        assert_eq!(report.window_days, Some(90), "{case}");
        let who: Vec<_> = report
            .entries
            .iter()
            .filter_map(|e| e.who.as_deref())
            .collect();
        assert_eq!(who, order, "{case}");
        let line = admin_audit_line(&report);
        for w in want {
            assert!(line.contains(w), "{case}: {line:?} lacks {w:?}");
        }
    }
}

#[test]
fn disabled_mitigations_reads_the_value_as_powershell_writes_it() {
    for (value, want) in [
        ("False", true),
        ("$false", true),
        ("false", true),
        ("True", false),
        ("", false),
    ] {
        let e = entry(
            "x",
            "2026-11-20T09:30:00Z",
            "Set-OrganizationConfig",
            "O",
            &[("MitigationsEnabled", value)],
        );
        assert_eq!(disabled_mitigations(&e), want, "{value}");
    }
    let blocked = entry(
        "x",
        "2026-11-20T09:30:00Z",
        "Set-ExchangeServer",
        "EX01",
        &[("MitigationsBlocked", "False")],
    );
    assert!(!disabled_mitigations(&blocked));
}
