use super::*;
use crate::analysis::{EemsState, PatternService};
use crate::report::{OrgSection, Summary, ToolInfo, UninventoriedServer};
use Status::*;
use Verdict::*;

fn report(rows: Vec<ServerRow>) -> ScanReport {
    let mut summary = Summary::default();
    for r in &rows {
        summary.add(r.status);
    }
    ScanReport {
        tool: ToolInfo::default(),
        started_at: "2026-11-29T10:00:00Z".into(),
        finished_at: "2026-11-29T10:00:05Z".into(),
        organization: OrgSection {
            name: Some("Contoso".into()),
            mitigations_enabled: Some(true),
            queried_on: None,
            error: None,
            admin_audit: None,
        },
        summary,
        servers: rows,
        not_in_inventory: vec![],
        interrupted: false,
    }
}

/// A healthy, fully scanned server.
fn healthy(name: &str) -> ServerRow {
    let mut r = ServerRow::new(name);
    r.status = Ok;
    r.fqdn = Some(format!("{}.contoso.com", name.to_lowercase()));
    r.build = Some("15.2.1544.4".into());
    r.eems_state = Some(EemsState::Enabled);
    r.service_check = Some(ServiceCheck::Running);
    r.service_status = Some("Running".into());
    r.service_start_type = Some("Automatic".into());
    r.pattern_service = Some(PatternService::Reachable);
    r.mitigations_applied = vec!["PING1".into()];
    r.telemetry_enabled = Some(false);
    r
}

fn drift(old: Vec<ServerRow>, new: Vec<ServerRow>) -> Drift {
    compare(&report(old), &report(new)).unwrap()
}

fn triples(d: &Drift) -> Vec<(String, Field, Verdict)> {
    d.changes
        .iter()
        .map(|c| (c.server.clone().unwrap_or_default(), c.field, c.verdict))
        .collect()
}

#[test]
fn status_transitions() {
    let table = [
        (Ok, Ok, Neutral),
        (Ok, Warning, Regression),
        (Ok, Critical, Regression),
        (Warning, Critical, Regression),
        (Critical, Warning, Improvement),
        (Warning, Ok, Improvement),
        (Critical, Ok, Improvement),
        (Ok, Error, Regression),
        (Critical, Error, Regression),
        (Skipped, Error, Regression),
        (Error, Ok, Improvement),
        (Error, Warning, Regression),
        (Error, Critical, Regression),
        (Error, Skipped, Neutral),
        (Ok, Skipped, Neutral),
        (Critical, Skipped, Neutral),
        (Skipped, Ok, Neutral),
        (Skipped, Warning, Regression),
    ];
    for (old, new, want) in table {
        assert_eq!(status_verdict(old, new), want, "{old:?} -> {new:?}");
    }
}

#[test]
fn field_transitions() {
    type Edit = fn(&mut ServerRow);
    let table: [(&str, Edit, Edit, Field, Verdict); 11] = [
        (
            "EEMS left Enabled",
            |_| {},
            |r| r.eems_state = Some(EemsState::DisabledOnServer),
            Field::EemsState,
            Regression,
        ),
        (
            "EEMS back to Enabled",
            |r| r.eems_state = Some(EemsState::Disabled),
            |_| {},
            Field::EemsState,
            Improvement,
        ),
        (
            "one disabled flavour for another",
            |r| r.eems_state = Some(EemsState::DisabledOnOrg),
            |r| r.eems_state = Some(EemsState::Disabled),
            Field::EemsState,
            Neutral,
        ),
        (
            "config no longer readable",
            |r| r.eems_state = Some(EemsState::Disabled),
            |r| r.eems_state = Some(EemsState::FailedToQuery),
            Field::EemsState,
            Regression,
        ),
        (
            "service stopped",
            |_| {},
            |r| {
                r.service_check = Some(ServiceCheck::Investigate);
                r.service_status = Some("Stopped".into());
            },
            Field::Service,
            Regression,
        ),
        (
            "service started again",
            |r| {
                r.service_check = Some(ServiceCheck::Investigate);
                r.service_status = Some("Stopped".into());
            },
            |_| {},
            Field::Service,
            Improvement,
        ),
        (
            "stopped service, other start type",
            |r| {
                r.service_check = Some(ServiceCheck::Investigate);
                r.service_status = Some("Stopped".into());
            },
            |r| {
                r.service_check = Some(ServiceCheck::Investigate);
                r.service_status = Some("Stopped".into());
                r.service_start_type = Some("Disabled".into());
            },
            Field::Service,
            Neutral,
        ),
        (
            "pattern service unreachable",
            |_| {},
            |r| r.pattern_service = Some(PatternService::Unreachable),
            Field::PatternService,
            Regression,
        ),
        (
            "pattern service reachable again",
            |r| r.pattern_service = Some(PatternService::Unreachable),
            |_| {},
            Field::PatternService,
            Improvement,
        ),
        (
            "build upgraded",
            |_| {},
            |r| r.build = Some("15.2.1748.10".into()),
            Field::Build,
            Neutral,
        ),
        (
            "telemetry switched on",
            |_| {},
            |r| r.telemetry_enabled = Some(true),
            Field::TelemetryEnabled,
            Neutral,
        ),
    ];
    for (what, edit_old, edit_new, field, verdict) in table {
        let (mut o, mut n) = (healthy("EX01"), healthy("EX01"));
        edit_old(&mut o);
        edit_new(&mut n);
        let d = drift(vec![o], vec![n]);
        assert_eq!(
            triples(&d),
            vec![("EX01".to_string(), field, verdict)],
            "{what}"
        );
    }
}

#[test]
fn evidence_transitions() {
    use crate::analysis::{CertFloor, FetchState as F, IisIssue as I, IisState};
    type Edit = fn(&mut ServerRow);
    fn missing() -> IisState {
        IisState::Issues(vec![I::AppliedButMissing("M1.1.0".into())])
    }
    fn orphan() -> IisState {
        IisState::Issues(vec![I::OrphanedRule(
            "EEMS M1.1 PowerShell - inbound".into(),
        )])
    }
    fn blocked() -> IisState {
        IisState::Issues(vec![I::BlockedButPresent("M2".into())])
    }
    // (case, old edit, new edit, expected changes); both rows start Fetching and Consistent.
    type Row = (&'static str, Edit, Edit, Vec<(Field, Verdict)>);
    let table: Vec<Row> = vec![
        (
            "fetching to failing",
            |_| {},
            |r| r.fetch_state = Some(F::Failing),
            vec![(Field::FetchState, Regression)],
        ),
        (
            "failing to fetching",
            |r| r.fetch_state = Some(F::Failing),
            |_| {},
            vec![(Field::FetchState, Improvement)],
        ),
        (
            "failing to unknown",
            |r| r.fetch_state = Some(F::Failing),
            |r| r.fetch_state = Some(F::Unknown),
            vec![(Field::FetchState, Improvement)],
        ),
        (
            "fetching to no evidence",
            |_| {},
            |r| r.fetch_state = Some(F::NoEvidence),
            vec![(Field::FetchState, Neutral)],
        ),
        (
            "new missing rule",
            |_| {},
            |r| r.iis_state = Some(missing()),
            vec![(Field::IisState, Regression)],
        ),
        (
            "missing rule restored",
            |r| r.iis_state = Some(missing()),
            |_| {},
            vec![(Field::IisState, Improvement)],
        ),
        (
            "new orphaned rule",
            |_| {},
            |r| r.iis_state = Some(orphan()),
            vec![(Field::IisState, Regression)],
        ),
        (
            "orphan replaced by missing",
            |r| r.iis_state = Some(orphan()),
            |r| r.iis_state = Some(missing()),
            vec![
                (Field::IisState, Improvement),
                (Field::IisState, Regression),
            ],
        ),
        (
            "blocked but present is neutral",
            |_| {},
            |r| r.iis_state = Some(blocked()),
            vec![(Field::IisState, Neutral)],
        ),
        (
            "IIS unreadable: not compared",
            |_| {},
            |r| r.iis_state = Some(IisState::Unknown),
            vec![],
        ),
        (
            "new 7040 change",
            |_| {},
            |r| {
                r.service_changed_time = Some("2026-11-20T08:00:00Z".into());
                r.service_changed = Some("auto start to disabled".into())
            },
            vec![(Field::ServiceChanged, Regression)],
        ),
        (
            "7040 change aged out",
            |r| r.service_changed_time = Some("2026-10-20T08:00:00Z".into()),
            |_| {},
            vec![(Field::ServiceChanged, Improvement)],
        ),
        (
            "another 7040 change",
            |r| r.service_changed_time = Some("2026-10-20T08:00:00Z".into()),
            |r| r.service_changed_time = Some("2026-11-20T08:00:00Z".into()),
            vec![(Field::ServiceChanged, Regression)],
        ),
        (
            "v1 scan before: no evidence compared",
            |r| {
                r.fetch_state = None;
                r.iis_state = None
            },
            |r| {
                r.fetch_state = Some(F::Failing);
                r.service_changed_time = Some("2026-11-20T08:00:00Z".into())
            },
            vec![],
        ),
        (
            "cert floor lost",
            |_| {},
            |r| r.cert_floor = Some(CertFloor::CannotFetch),
            vec![(Field::CertFloor, Regression)],
        ),
        (
            "cert floor regained",
            |r| r.cert_floor = Some(CertFloor::CannotFetch),
            |_| {},
            vec![(Field::CertFloor, Improvement)],
        ),
    ];
    for (what, edit_old, edit_new, want) in table {
        let mut base = healthy("EX01");
        base.fetch_state = Some(F::Fetching);
        base.iis_state = Some(IisState::Consistent);
        base.cert_floor = Some(CertFloor::Above);
        let (mut o, mut n) = (base.clone(), base);
        edit_old(&mut o);
        edit_new(&mut n);
        let d = drift(vec![o], vec![n]);
        let want: Vec<(String, Field, Verdict)> = want
            .into_iter()
            .map(|(f, v)| ("EX01".to_string(), f, v))
            .collect();
        assert_eq!(triples(&d), want, "{what}");
    }
}

#[test]
fn mitigation_lists() {
    let mut o = healthy("EX01");
    o.mitigations_blocked = vec!["M1".into()];
    let mut n = healthy("EX01");
    n.mitigations_blocked = vec!["M2".into()];
    n.mitigations_applied = vec!["PING1".into(), "M3".into()];
    let d = drift(vec![o], vec![n]);
    let got: Vec<_> = d
        .changes
        .iter()
        .map(|c| (c.field, c.old.as_deref(), c.new.as_deref(), c.verdict))
        .collect();
    assert_eq!(
        got,
        vec![
            (Field::MitigationsBlocked, Some("M1"), None, Improvement),
            (Field::MitigationsBlocked, None, Some("M2"), Regression),
            (Field::MitigationsApplied, None, Some("M3"), Neutral),
        ]
    );
}

#[test]
fn unknown_fields_are_not_changes() {
    // EX01 could not be probed and the organisation did not describe it: only the
    // status moves, not every field to "unknown".
    let o = healthy("EX01");
    let mut n = ServerRow::new("EX01");
    n.error = Some("connection refused".into());
    let d = drift(vec![o.clone()], vec![n.clone()]);
    assert_eq!(
        triples(&d),
        vec![("EX01".into(), Field::Status, Regression)]
    );
    // And back: recovering lists no "newly applied PING1".
    let d = drift(vec![n], vec![o]);
    assert_eq!(
        triples(&d),
        vec![("EX01".into(), Field::Status, Improvement)]
    );
}

#[test]
fn error_row_with_org_facts_still_compares_mitigations() {
    let o = healthy("EX01");
    let mut n = ServerRow::new("EX01");
    n.fqdn = o.fqdn.clone();
    n.mitigations_applied = o.mitigations_applied.clone();
    n.mitigations_blocked = vec!["M9".into()];
    let d = drift(vec![o], vec![n]);
    assert_eq!(
        triples(&d),
        vec![
            ("EX01".into(), Field::Status, Regression),
            ("EX01".into(), Field::MitigationsBlocked, Regression),
        ]
    );
}

#[test]
fn servers_added_and_removed() {
    let mut bad = healthy("EX03");
    bad.status = Warning;
    let d = drift(
        vec![healthy("EX01"), healthy("EX02")],
        vec![healthy("EX01"), bad, healthy("EX04")],
    );
    assert_eq!(
        triples(&d),
        vec![
            ("EX02".into(), Field::Server, Neutral),
            ("EX03".into(), Field::Server, Regression),
            ("EX04".into(), Field::Server, Neutral),
        ]
    );
    assert_eq!(d.summary.servers_added, 2);
    assert_eq!(d.summary.servers_removed, 1);
    assert_eq!(d.summary.servers_compared, 1);
    assert_eq!(d.summary.servers_changed, 0);
    assert_eq!(d.summary.regressions, 1);
    assert_eq!(d.changes[0].old.as_deref(), Some("ok"));
    assert_eq!(d.changes[0].new, None);
}

#[test]
fn removed_but_still_in_the_organisation_is_lost_coverage() {
    let old = report(vec![healthy("EX01"), healthy("EX02")]);
    let mut new = report(vec![healthy("EX01")]);
    new.not_in_inventory.push(UninventoriedServer {
        name: "ex02".into(),
        fqdn: None,
        site: None,
        role: None,
        is_edge_server: Some(false),
    });
    let d = compare(&old, &new).unwrap();
    assert_eq!(
        triples(&d),
        vec![("EX02".into(), Field::Server, Regression)]
    );
}

#[test]
fn names_match_case_insensitively() {
    let d = drift(vec![healthy("ex01")], vec![healthy("EX01")]);
    assert!(d.changes.is_empty(), "{:?}", d.changes);
    assert_eq!(d.summary.servers_compared, 1);
}

#[test]
fn org_switch() {
    let old = report(vec![]);
    let mut new = report(vec![]);
    new.organization.mitigations_enabled = Some(false);
    let d = compare(&old, &new).unwrap();
    assert_eq!(
        triples(&d),
        vec![(String::new(), Field::OrgMitigationsEnabled, Regression)]
    );
    let d = compare(&new, &old).unwrap();
    assert_eq!(d.changes[0].verdict, Improvement);
    new.organization.mitigations_enabled = None;
    assert!(compare(&old, &new).unwrap().changes.is_empty());
}

#[test]
fn incompatible_inputs() {
    let old = report(vec![healthy("EX01")]);
    let mut new = report(vec![healthy("EX01"), healthy("ex01")]);
    let e = compare(&old, &new).unwrap_err();
    assert_eq!(e.which, Which::New);
    assert!(e.reason.contains("more than once"), "{}", e.reason);
    new.servers.pop();
    new.organization.name = Some("Fabrikam".into());
    let e = compare(&old, &new).unwrap_err();
    assert!(e.reason.contains("Fabrikam"), "{}", e.reason);
}

#[test]
fn identical_reports_have_no_changes() {
    let rows = vec![healthy("EX01"), ServerRow::new("EX02")];
    let d = drift(rows.clone(), rows);
    assert_eq!(d.changes, vec![]);
    assert!(!d.has_regression());
}
