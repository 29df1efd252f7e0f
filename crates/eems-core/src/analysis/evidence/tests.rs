//! Table-driven tests of the evidence verdicts, in the style of `analysis/tests.rs`.

use super::*;
use crate::facts::{EventFacts, EventSummary, IisRulesFacts, LogFacts, ServiceFacts};

/// A fixed "now" so every relative time in the tables is exact.
fn now() -> OffsetDateTime {
    OffsetDateTime::parse("2026-11-28T12:00:00Z", &Rfc3339).unwrap()
}

/// RFC 3339 time `hours` before [`now`].
fn ago(hours: i64) -> String {
    (now() - time::Duration::hours(hours))
        .format(&Rfc3339)
        .unwrap()
}

fn events(fetch_errors: Option<(u64, Option<i64>)>, applied: Option<u64>) -> EventFacts {
    EventFacts {
        error: None,
        fetch_errors: fetch_errors.map(|(count, h)| EventSummary {
            count,
            last_time: h.map(ago),
            last_message: Some("An unexpected exception occurred.".into()),
        }),
        applied: applied.map(|count| EventSummary {
            count,
            last_time: Some(ago(100)),
            last_message: Some("Mitigation M1.1.0 applied".into()),
        }),
    }
}

fn ev(events: EventFacts, log_hours: Option<i64>) -> EvidenceFacts {
    EvidenceFacts {
        window_days: Some(7),
        events,
        log: LogFacts {
            folder_exists: Some(true),
            newest_write_time: log_hours.map(ago),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn server(applied: &[&str], blocked: &[&str]) -> ExchangeServerFacts {
    ExchangeServerFacts {
        name: "EX01".into(),
        mitigations_applied: applied.iter().map(|s| s.to_string()).collect(),
        mitigations_blocked: blocked.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn rule(name: &str, enabled: bool) -> IisRule {
    IisRule {
        name: name.into(),
        section: Some("rules".into()),
        enabled,
        file: Some("Default Web Site web.config".into()),
    }
}

const M1: &str = "EEMS M1.1 PowerShell - inbound";
const M2: &str = "EEMS M2.1 OWA CSP - outbound";
const M2_PRE: &str = "EEMS M2.1 OWA SPA HTML shell - precondition";

#[test]
fn fetch_state_table() {
    use FetchState::*;
    let unreadable = EventFacts {
        error: Some("The RPC server is unavailable".into()),
        ..Default::default()
    };
    // (case, events, log written hours ago, expected)
    let rows: Vec<(&str, EventFacts, Option<i64>, FetchState)> = vec![
        (
            "1008 an hour ago",
            events(Some((30, Some(1))), Some(1)),
            Some(0),
            Failing,
        ),
        (
            "1008 23 h ago",
            events(Some((3, Some(23))), None),
            None,
            Failing,
        ),
        (
            "1008 25 h ago, applied since",
            events(Some((3, Some(25))), Some(1)),
            None,
            Fetching,
        ),
        (
            "1008 25 h ago, fresh log",
            events(Some((3, Some(25))), None),
            Some(2),
            Fetching,
        ),
        (
            "1008 25 h ago, nothing else",
            events(Some((3, Some(25))), None),
            None,
            NoEvidence,
        ),
        ("applied only", events(None, Some(2)), None, Fetching),
        ("fresh log only", events(None, None), Some(1), Fetching),
        ("stale log only", events(None, None), Some(48), NoEvidence),
        ("nothing", events(None, None), None, NoEvidence),
        (
            "zero counts",
            events(Some((0, None)), Some(0)),
            None,
            NoEvidence,
        ),
        (
            "1008 without a time",
            events(Some((2, None)), Some(1)),
            Some(1),
            Unknown,
        ),
        (
            "log unreadable, events fine",
            events(None, Some(1)),
            None,
            Fetching,
        ),
        ("events unreadable", unreadable, Some(1), Unknown),
    ];
    for (case, e, log, want) in rows {
        assert_eq!(fetch_state(&ev(e, log), now()), want, "{case}");
    }
}

#[test]
fn fetch_state_drives_status_and_findings() {
    // (case, evidence, warning, a finding containing)
    let rows: Vec<(&str, EvidenceFacts, bool, Option<&str>)> = vec![
        (
            "failing",
            ev(events(Some((24, Some(1))), None), Some(0)),
            true,
            Some("event 1008 at"),
        ),
        ("fetching", ev(events(None, Some(1)), Some(0)), false, None),
        (
            "no evidence",
            ev(events(None, None), None),
            false,
            Some("no evidence that EEMS fetched"),
        ),
        (
            "unknown",
            ev(
                EventFacts {
                    error: Some("Access is denied".into()),
                    ..Default::default()
                },
                Some(0),
            ),
            false,
            Some("EEMS events not readable: Access is denied"),
        ),
    ];
    for (case, e, warning, finding) in rows {
        let v = assess_evidence(Some(&e), &server(&[], &[]), None, now());
        assert_eq!(v.warning, warning, "{case}: {:?}", v.findings);
        match finding {
            Some(f) => assert!(
                v.findings.iter().any(|x| x.contains(f)),
                "{case}: {:?}",
                v.findings
            ),
            None => assert!(v.findings.is_empty(), "{case}: {:?}", v.findings),
        }
    }
}

#[test]
fn cert_floor_table() {
    use CertFloor::*;
    let b = |s: &str| s.parse::<ExchangeBuild>().ok();
    // (build, verdict, warning)
    let rows: &[(&str, Option<CertFloor>, bool)] = &[
        ("15.2.1544.4", Some(Above), false),
        ("15.2.986.41", Some(CannotFetch), true),
        ("15.2.986.42", Some(AtFloor), false),
        ("15.1.2375.37", Some(CannotFetch), true),
        ("15.1.2507.23", Some(AtFloor), false),
        ("15.2.2562.17", Some(Above), false),
        ("15.0.1497.48", None, false),
        ("", None, false),
    ];
    for (build, want, warning) in rows {
        let v = assess_evidence(None, &server(&[], &[]), b(build), now());
        assert_eq!(v.cert_floor, *want, "{build}");
        assert_eq!(v.warning, *warning, "{build}");
        assert_eq!(v.fetch_state, None, "{build}: no evidence collected");
    }
    assert_eq!(
        CannotFetch.label(),
        "cannot fetch since the January 2025 certificate change"
    );
}

#[test]
fn iis_state_table() {
    use IisIssue::*;
    // (case, rules, applied, blocked, issues)
    type Row<'a> = (
        &'a str,
        Vec<IisRule>,
        &'a [&'a str],
        &'a [&'a str],
        Vec<IisIssue>,
    );
    let rows: Vec<Row> = vec![
        ("nothing applied, nothing present", vec![], &[], &[], vec![]),
        ("heartbeat only", vec![], &["PING1"], &[], vec![]),
        (
            "M1 applied and present",
            vec![rule(M1, true)],
            &["M1.1.0"],
            &[],
            vec![],
        ),
        (
            "M2 rule and precondition",
            vec![rule(M2, true), rule(M2_PRE, true)],
            &["PING1", "M2.1.0"],
            &[],
            vec![],
        ),
        (
            "M1 applied, missing",
            vec![],
            &["M1.1.0"],
            &[],
            vec![AppliedButMissing("M1.1.0".into())],
        ),
        (
            "M1 applied, disabled",
            vec![rule(M1, false)],
            &["M1.1.0"],
            &[],
            vec![AppliedButDisabled("M1.1.0".into())],
        ),
        (
            "one of two enabled is enough",
            vec![rule(M2, false), rule(M2_PRE, true)],
            &["M2.1.0"],
            &[],
            vec![],
        ),
        (
            "orphaned after the fix",
            vec![rule(M1, true)],
            &["PING1"],
            &[],
            vec![OrphanedRule(M1.into())],
        ),
        (
            "blocked family still present",
            vec![rule(M2, true)],
            &[],
            &["M2"],
            vec![OrphanedRule(M2.into()), BlockedButPresent("M2".into())],
        ),
        (
            "blocked and rule disabled",
            vec![rule(M2, false)],
            &[],
            &["M2"],
            vec![OrphanedRule(M2.into())],
        ),
        (
            "unknown family applied: no expectation",
            vec![],
            &["M9.1.0"],
            &[],
            vec![],
        ),
        (
            "not an EEMS rule",
            vec![rule("EEMSX other", true)],
            &[],
            &[],
            vec![],
        ),
    ];
    for (case, rules, applied, blocked, want) in rows {
        let s = server(applied, blocked);
        let got = iis_issues(&rules, &s.mitigations_applied, &s.mitigations_blocked);
        assert_eq!(got, want, "{case}");
    }
}

#[test]
fn iis_state_status_and_text() {
    let evid = |rules: Vec<IisRule>, error: Option<&str>| EvidenceFacts {
        iis_rules: IisRulesFacts {
            error: error.map(str::to_string),
            rules,
        },
        ..ev(events(None, Some(1)), Some(0))
    };
    // (case, evidence, applied, state text, warning)
    let rows: Vec<(&str, EvidenceFacts, &[&str], &str, bool)> = vec![
        (
            "consistent",
            evid(vec![rule(M1, true)], None),
            &["M1.1.0"],
            "Consistent",
            false,
        ),
        (
            "missing",
            evid(vec![], None),
            &["M1.1.0"],
            "applied but missing: M1.1.0",
            true,
        ),
        (
            "disabled",
            evid(vec![rule(M1, false)], None),
            &["M1.1.0"],
            "applied but disabled: M1.1.0",
            true,
        ),
        (
            "orphaned is informational",
            evid(vec![rule(M1, true)], None),
            &[],
            "orphaned rule: EEMS M1.1 PowerShell - inbound",
            false,
        ),
        (
            "unreadable",
            evid(vec![], Some("Access denied")),
            &["M1.1.0"],
            "Unknown",
            false,
        ),
    ];
    for (case, e, applied, text, warning) in rows {
        let v = assess_evidence(Some(&e), &server(applied, &[]), None, now());
        assert_eq!(v.iis_state.as_ref().unwrap().to_string(), text, "{case}");
        assert_eq!(v.warning, warning, "{case}");
    }
}

#[test]
fn service_changed_table() {
    let change = |hours: i64, id: u32, msg: &str| ServiceChange {
        time: Some(ago(hours)),
        id,
        message: Some(msg.into()),
    };
    // (case, changes, expected message)
    let rows: Vec<(&str, Vec<ServiceChange>, Option<&str>)> = vec![
        ("none", vec![], None),
        (
            "state changes only",
            vec![change(2, 7036, "stopped"), change(3, 7031, "crashed")],
            None,
        ),
        (
            "newest 7040 wins",
            vec![
                change(50, 7040, "auto to disabled"),
                change(5, 7040, "disabled to auto"),
            ],
            Some("disabled to auto"),
        ),
        (
            "older than 30 days",
            vec![change(31 * 24, 7040, "old")],
            None,
        ),
    ];
    for (case, changes, want) in rows {
        let e = EvidenceFacts {
            service_changes: changes,
            ..ev(events(None, Some(1)), Some(0))
        };
        let v = assess_evidence(Some(&e), &server(&[], &[]), None, now());
        assert_eq!(v.service_changed.as_deref(), want, "{case}");
        assert!(!v.warning, "{case}: informational only");
        assert_eq!(
            v.findings.iter().any(|f| f.contains("start type changed")),
            want.is_some(),
            "{case}"
        );
    }
}

#[test]
fn flighting_table() {
    let f = |status: &str, start: &str| {
        Some(ServiceFacts {
            status: status.into(),
            start_type: start.into(),
        })
    };
    // (case, flighting, field, finding)
    let rows: Vec<(&str, Option<ServiceFacts>, Option<&str>, bool)> = vec![
        ("absent (before 2019 CU15)", None, None, false),
        (
            "running",
            f("Running", "Automatic"),
            Some("Running/Automatic"),
            false,
        ),
        (
            "stopped",
            f("Stopped", "Disabled"),
            Some("Stopped/Disabled"),
            true,
        ),
    ];
    for (case, fl, field, finding) in rows {
        let e = EvidenceFacts {
            flighting: fl,
            ..ev(events(None, Some(1)), Some(0))
        };
        let v = assess_evidence(Some(&e), &server(&[], &[]), None, now());
        assert_eq!(v.flighting_service.as_deref(), field, "{case}");
        assert_eq!(!v.findings.is_empty(), finding, "{case}: {:?}", v.findings);
        assert!(!v.warning, "{case}");
    }
}

#[test]
fn each_part_failing_alone_keeps_the_rest() {
    let e = EvidenceFacts {
        log: LogFacts {
            error: Some("Access to the path is denied".into()),
            ..Default::default()
        },
        iis_rules: IisRulesFacts {
            error: None,
            rules: vec![rule(M1, true)],
        },
        service_changes_error: Some("The RPC server is unavailable".into()),
        ..ev(events(Some((5, Some(2))), None), None)
    };
    let v = assess_evidence(Some(&e), &server(&["M1.1.0"], &[]), None, now());
    assert_eq!(v.fetch_state, Some(FetchState::Failing));
    assert_eq!(v.iis_state, Some(IisState::Consistent));
    assert!(
        v.findings
            .iter()
            .any(|f| f.contains("log folder not readable"))
    );
    assert!(
        v.findings
            .iter()
            .any(|f| f.contains("System log not readable"))
    );
}

#[test]
fn add_evidence_raises_ok_only_and_skipped_stays() {
    let warn = EvidenceVerdicts {
        warning: true,
        findings: vec!["x".into()],
        ..Default::default()
    };
    // (status before, status after)
    for (before, after) in [
        (Status::Ok, Status::Warning),
        (Status::Warning, Status::Warning),
        (Status::Critical, Status::Critical),
        (Status::Skipped, Status::Skipped),
    ] {
        let mut a = crate::analysis::assess(Some(true), &server(&[], &[]), &Default::default());
        a.status = before;
        a.findings.clear();
        a.add_evidence(&warn);
        assert_eq!(a.status, after, "{before:?}");
        assert_eq!(a.findings.is_empty(), before == Status::Skipped);
    }
}

#[test]
fn verdict_labels_round_trip_through_serde() {
    for s in FetchState::ALL {
        let json = serde_json::to_string(s).unwrap();
        assert_eq!(json, format!("\"{}\"", s.label()));
        assert_eq!(serde_json::from_str::<FetchState>(&json).unwrap(), *s);
    }
    for s in CertFloor::ALL {
        let json = serde_json::to_string(s).unwrap();
        assert_eq!(serde_json::from_str::<CertFloor>(&json).unwrap(), *s);
    }
    let st = IisState::Issues(vec![IisIssue::OrphanedRule(M1.into())]);
    let json = serde_json::to_string(&st).unwrap();
    assert_eq!(serde_json::from_str::<IisState>(&json).unwrap(), st);
}
