//! HealthChecker's decision table, row by row (healthchecker-eems.md §2).

// Table-driven tests spell their row types out; naming each tuple would only hide the table.
#![allow(clippy::type_complexity)]
use super::*;
use crate::facts::{OcsFacts, ServiceFacts};
use WriteType::*;

const INSTALL: &str = r"C:\Program Files\Microsoft\Exchange Server\V15\";

fn server() -> ExchangeServerFacts {
    ExchangeServerFacts {
        name: "EX01".into(),
        server_role: Some("Mailbox".into()),
        is_edge_server: Some(false),
        admin_display_version: Some("Version 15.2 (Build 1544.4)".into()),
        mitigations_enabled: Some(true),
        data_collection_enabled: Some(false),
        ..Default::default()
    }
}

fn svc(status: &str, start_type: &str) -> Option<ServiceFacts> {
    Some(ServiceFacts {
        status: status.into(),
        start_type: start_type.into(),
    })
}

fn host() -> HostFacts {
    HostFacts {
        computer_name: Some("EX01".into()),
        exsetup_version: Some("15.02.1544.004".into()),
        install_path: Some(INSTALL.into()),
        service: svc("Running", "Automatic"),
        ocs: OcsFacts {
            status_code: Some(200),
            ..Default::default()
        },
        evidence: None,
    }
}

fn l(name: Option<&str>, details: &str, wt: WriteType, tab: u8) -> Line {
    Line {
        name: name.map(str::to_string),
        details: details.into(),
        write_type: wt,
        tab,
        html: true,
    }
}

fn link() -> Line {
    Line {
        html: false,
        ..l(None, MORE_INFO_EEMS, Yellow, 2)
    }
}

fn line_named<'a>(a: &'a Assessment, name: &str) -> Option<&'a Line> {
    a.lines.iter().find(|x| x.name.as_deref() == Some(name))
}

// ---- §2.1 overall line: every row of the table, named after the row

#[test]
fn decision_table_overall_line() {
    // (test name, org, server, details, colour, further lines follow)
    let rows: &[(&str, Option<bool>, Option<bool>, &str, WriteType, bool)] = &[
        (
            "org_null_server_true",
            None,
            Some(true),
            EemsState::FailedToQuery.label(),
            Red,
            false,
        ),
        (
            "org_null_server_false",
            None,
            Some(false),
            EemsState::FailedToQuery.label(),
            Red,
            false,
        ),
        (
            "quirk_org_null_server_null",
            None,
            None,
            EemsState::FailedToQuery.label(),
            Red,
            false,
        ),
        (
            "org_true_server_true",
            Some(true),
            Some(true),
            "Enabled",
            Green,
            true,
        ),
        (
            "org_false_server_true",
            Some(false),
            Some(true),
            "Disabled on org level",
            Yellow,
            true,
        ),
        (
            "org_true_server_false",
            Some(true),
            Some(false),
            "Disabled on server level",
            Yellow,
            true,
        ),
        (
            "org_false_server_false",
            Some(false),
            Some(false),
            "Disabled",
            Yellow,
            true,
        ),
        (
            "quirk_org_true_server_null_reads_disabled",
            Some(true),
            None,
            "Disabled",
            Yellow,
            true,
        ),
        (
            "org_false_server_null",
            Some(false),
            None,
            "Disabled",
            Yellow,
            true,
        ),
    ];
    for &(case, org, srv, details, wt, follow) in rows {
        let s = ExchangeServerFacts {
            mitigations_enabled: srv,
            ..server()
        };
        let a = assess(org, &s, &host());
        assert_eq!(a.lines[0], l(Some(NAME_OVERALL), details, wt, 1), "{case}");
        assert_eq!(a.eems_state.map(EemsState::label), Some(details), "{case}");
        if !follow {
            assert_eq!(a.lines.len(), 1, "{case}: Red is the only line");
            continue;
        }
        let mut i = 1;
        if wt == Yellow {
            assert_eq!(a.lines[1], link(), "{case}: link line follows Yellow");
            i = 2;
        }
        assert_eq!(a.lines[i].name.as_deref(), Some(NAME_SERVICE), "{case}");
        assert_eq!(a.lines[i + 1].name.as_deref(), Some(NAME_PATTERN), "{case}");
    }
}

#[test]
fn quirk_org_true_server_null_reads_disabled() {
    let s = ExchangeServerFacts {
        mitigations_enabled: None,
        ..server()
    };
    let a = assess(Some(true), &s, &host());
    assert_eq!(a.eems_state.map(EemsState::label), Some("Disabled"));
    assert_eq!(a.status, Status::Warning);
    assert_eq!(a.lines[1], link());
}

#[test]
fn quirk_org_null_gives_only_red_line_but_report_fields_filled() {
    let h = HostFacts {
        service: svc("Stopped", "Disabled"),
        ocs: OcsFacts::default(),
        ..host()
    };
    let s = ExchangeServerFacts {
        mitigations_applied: vec!["PING1".into()],
        mitigations_blocked: vec!["M2".into()],
        data_collection_enabled: Some(true),
        ..server()
    };
    let a = assess(None, &s, &h);
    assert_eq!(
        a.lines,
        vec![l(
            Some(NAME_OVERALL),
            EemsState::FailedToQuery.label(),
            Red,
            1
        )]
    );
    assert_eq!(a.status, Status::Critical);
    // deliberate divergence: the collected data still reaches the report fields
    assert_eq!(
        a.service_check.map(ServiceCheck::label),
        Some("Investigate")
    );
    assert_eq!(
        a.pattern_service.map(PatternService::label),
        Some("Unreachable")
    );
    assert_eq!(a.telemetry, Some(true));
    assert!(a.findings[0].starts_with("Get-OrganizationConfig returned no MitigationsEnabled"));
    assert!(a.findings.iter().any(|f| f == "mitigation blocked: M2"));
}

#[test]
fn assess_in_org_names_the_remote_error() {
    let org = OrgFacts {
        error: Some("Access denied.\r\n".into()),
        ..Default::default()
    };
    let a = assess_in_org(&org, &server(), &host());
    assert_eq!(
        a.findings[0],
        "Get-OrganizationConfig returned no MitigationsEnabled: Access denied."
    );
    let org = OrgFacts::default();
    let a = assess_in_org(&org, &server(), &host());
    assert!(
        a.findings[0].contains("property is missing"),
        "{}",
        a.findings[0]
    );
}

// ---- §2.2 link line

#[test]
fn link_line_only_for_yellow_and_console_only() {
    let a = assess(Some(true), &server(), &host());
    assert!(
        !a.lines.iter().any(|x| x.details == MORE_INFO_EEMS),
        "not for Green"
    );
    let a = assess(Some(false), &server(), &host());
    let lk = &a.lines[1];
    assert_eq!(lk.details, "More Information: https://aka.ms/HC-EEMS");
    assert!(!lk.html && lk.name.is_none() && lk.tab == 2 && lk.write_type == Yellow);
}

// ---- §2.3 Windows service

#[test]
fn decision_table_windows_service() {
    let rows: &[(&str, Option<ServiceFacts>, &str, WriteType)] = &[
        ("service_not_found_is_unknown", None, "Unknown", Yellow),
        (
            "running_automatic",
            svc("Running", "Automatic"),
            "Running",
            Grey,
        ),
        (
            "case_insensitive",
            svc("running", "AUTOMATIC"),
            "Running",
            Grey,
        ),
        (
            "quirk_delayed_start_passes",
            svc("Running", "AutomaticDelayedStart"),
            "Running",
            Grey,
        ),
        (
            "stopped_disabled",
            svc("Stopped", "Disabled"),
            "Investigate",
            Yellow,
        ),
        (
            "stopped_automatic",
            svc("Stopped", "Automatic"),
            "Investigate",
            Yellow,
        ),
        (
            "running_manual",
            svc("Running", "Manual"),
            "Investigate",
            Yellow,
        ),
        (
            "start_type_unknown",
            svc("Running", "Unknown"),
            "Investigate",
            Yellow,
        ),
        (
            "start_pending",
            svc("StartPending", "Automatic"),
            "Investigate",
            Yellow,
        ),
    ];
    for (case, service, details, wt) in rows {
        let h = HostFacts {
            service: service.clone(),
            ..host()
        };
        let a = assess(Some(true), &server(), &h);
        assert_eq!(
            line_named(&a, NAME_SERVICE),
            Some(&l(Some(NAME_SERVICE), details, *wt, 2)),
            "{case}"
        );
        assert_eq!(
            a.service_check.map(ServiceCheck::label),
            Some(*details),
            "{case}"
        );
    }
}

#[test]
fn quirk_service_line_independent_of_disabled_state() {
    let s = ExchangeServerFacts {
        mitigations_enabled: Some(false),
        ..server()
    };
    let h = HostFacts {
        service: svc("Stopped", "Disabled"),
        ..host()
    };
    let a = assess(Some(false), &s, &h);
    assert_eq!(line_named(&a, NAME_SERVICE).unwrap().details, "Investigate");
    assert_eq!(line_named(&a, NAME_SERVICE).unwrap().write_type, Yellow);
}

// ---- §2.4 Pattern service

#[test]
fn decision_table_pattern_service() {
    let rows: &[(&str, Option<u16>, &str, &str, WriteType)] = &[
        (
            "status_200",
            Some(200),
            PatternService::Reachable.label(),
            "200 - Reachable",
            Grey,
        ),
        (
            "status_null",
            None,
            PATTERN_UNREACHABLE_LINE,
            "Unreachable",
            Yellow,
        ),
        (
            "status_407",
            Some(407),
            PATTERN_UNREACHABLE_LINE,
            "Unreachable",
            Yellow,
        ),
        (
            "other_2xx_is_unreachable",
            Some(204),
            PATTERN_UNREACHABLE_LINE,
            "Unreachable",
            Yellow,
        ),
    ];
    for (case, code, line, field, wt) in rows {
        let h = HostFacts {
            ocs: OcsFacts {
                status_code: *code,
                ..Default::default()
            },
            ..host()
        };
        let a = assess(Some(true), &server(), &h);
        assert_eq!(
            line_named(&a, NAME_PATTERN),
            Some(&l(Some(NAME_PATTERN), line, *wt, 2)),
            "{case}"
        );
        assert_eq!(
            a.pattern_service.map(PatternService::label),
            Some(*field),
            "{case}"
        );
    }
    assert_eq!(
        PATTERN_UNREACHABLE_LINE,
        "Unreachable\r\n\t\tMore information: https://aka.ms/HelpConnectivityEEMS"
    );
}

// ---- §2.5 – §2.7 presence rules

#[test]
fn applied_mitigations_keep_order_and_end_with_get_mitigations_hint() {
    let s = ExchangeServerFacts {
        mitigations_applied: vec!["PING01".into(), "M01".into(), "M03".into()],
        mitigations_blocked: vec!["M02".into()],
        ..server()
    };
    let a = assess(Some(false), &s, &host());
    let tail: Vec<Line> = a.lines[4..].to_vec();
    assert_eq!(
        tail,
        vec![
            l(Some(NAME_APPLIED), "PING01", Grey, 2),
            l(Some(NAME_APPLIED), "M01", Grey, 2),
            l(Some(NAME_APPLIED), "M03", Grey, 2),
            l(
                None,
                r"Run: 'Get-Mitigations.ps1' from: 'C:\Program Files\Microsoft\Exchange Server\V15\Scripts\' to learn more.",
                Grey,
                2
            ),
            l(Some(NAME_BLOCKED), "M02", Yellow, 2),
            l(Some(NAME_TELEMETRY), "False", Grey, 2),
        ]
    );
}

#[test]
fn get_mitigations_hint_path_forms() {
    let rows: &[(Option<&str>, &str)] = &[
        (None, "''"),
        (Some(""), "''"),
        (Some(r"D:\Exchange\V15"), r"'D:\Exchange\V15\Scripts\'"),
        (Some(r"D:\Exchange\V15\"), r"'D:\Exchange\V15\Scripts\'"),
    ];
    for (path, quoted) in rows {
        let s = ExchangeServerFacts {
            mitigations_applied: vec!["PING1".into()],
            ..server()
        };
        let h = HostFacts {
            install_path: path.map(str::to_string),
            ..host()
        };
        let a = assess(Some(true), &s, &h);
        let hint = a
            .lines
            .iter()
            .find(|x| x.details.starts_with("Run:"))
            .unwrap();
        assert_eq!(
            hint.details,
            format!("Run: 'Get-Mitigations.ps1' from: {quoted} to learn more.")
        );
        assert!(hint.html && hint.name.is_none());
    }
}

#[test]
fn emptiness_rule_for_lists() {
    let rows: &[(&str, Vec<String>, usize)] = &[
        ("empty", vec![], 0),
        ("single_empty_string_is_empty", vec!["".into()], 0),
        ("only_empty_strings_is_empty", vec!["".into(), "".into()], 0),
        ("one_element", vec!["PING1".into()], 1),
        ("empty_elements_dropped", vec!["".into(), "PING1".into()], 1),
    ];
    for (case, list, n) in rows {
        let s = ExchangeServerFacts {
            mitigations_applied: list.clone(),
            mitigations_blocked: list.clone(),
            ..server()
        };
        let a = assess(Some(true), &s, &host());
        let applied = a
            .lines
            .iter()
            .filter(|x| x.name.as_deref() == Some(NAME_APPLIED))
            .count();
        let blocked = a
            .lines
            .iter()
            .filter(|x| x.name.as_deref() == Some(NAME_BLOCKED))
            .count();
        let hint = a
            .lines
            .iter()
            .filter(|x| x.details.starts_with("Run:"))
            .count();
        assert_eq!(
            (applied, blocked, hint),
            (*n, *n, n.min(&1).to_owned()),
            "{case}"
        );
    }
}

#[test]
fn blocked_lines_are_yellow_without_trailing_line() {
    let s = ExchangeServerFacts {
        mitigations_blocked: vec!["M1".into(), "M2".into()],
        data_collection_enabled: None,
        ..server()
    };
    let a = assess(Some(true), &s, &host());
    assert_eq!(
        a.lines[3..].to_vec(),
        vec![
            l(Some(NAME_BLOCKED), "M1", Yellow, 2),
            l(Some(NAME_BLOCKED), "M2", Yellow, 2)
        ]
    );
    assert_eq!(a.status, Status::Warning);
    assert_eq!(
        a.findings,
        vec!["mitigation blocked: M1", "mitigation blocked: M2"]
    );
}

#[test]
fn telemetry_line_only_when_present() {
    for (v, want) in [
        (Some(true), Some("True")),
        (Some(false), Some("False")),
        (None, None),
    ] {
        let s = ExchangeServerFacts {
            data_collection_enabled: v,
            ..server()
        };
        let a = assess(Some(true), &s, &host());
        assert_eq!(
            line_named(&a, NAME_TELEMETRY).map(|x| x.details.as_str()),
            want
        );
        if let Some(x) = line_named(&a, NAME_TELEMETRY) {
            assert_eq!(x.write_type, Grey, "telemetry carries no severity");
        }
        assert_eq!(a.telemetry, v);
        assert_eq!(a.status, Status::Ok, "telemetry never changes status");
    }
}

// ---- §2.0 gate

#[test]
fn gate_via_assess() {
    // (case, is_edge, role, ADV, ExSetup, in scope)
    let rows: &[(
        &str,
        Option<bool>,
        Option<&str>,
        Option<&str>,
        Option<&str>,
        bool,
    )] = &[
        (
            "edge_server",
            Some(true),
            Some("Edge"),
            Some("Version 15.2 (Build 1544.4)"),
            None,
            false,
        ),
        ("edge_by_role", Some(false), Some("Edge"), None, None, false),
        (
            "divergence_is_edge_null_mailbox_role_in_scope",
            None,
            Some("Mailbox"),
            None,
            None,
            true,
        ),
        (
            "divergence_is_edge_null_no_role_in_scope",
            None,
            None,
            None,
            None,
            true,
        ),
        (
            "is_edge_null_edge_role_skipped",
            None,
            Some("Edge"),
            None,
            None,
            false,
        ),
        (
            "e2013",
            Some(false),
            None,
            Some("Version 15.0 (Build 1497.2)"),
            None,
            false,
        ),
        (
            "e2016_cu21",
            Some(false),
            None,
            None,
            Some("15.01.2308.008"),
            false,
        ),
        (
            "e2016_cu22",
            Some(false),
            None,
            None,
            Some("15.01.2375.007"),
            true,
        ),
        (
            "e2019_cu10",
            Some(false),
            None,
            None,
            Some("15.02.0922.007"),
            false,
        ),
        (
            "e2019_cu11",
            Some(false),
            None,
            None,
            Some("15.02.0986.005"),
            true,
        ),
        (
            "se_pre_rtm_first",
            Some(false),
            None,
            None,
            Some("15.02.2562.000"),
            false,
        ),
        (
            "se_pre_rtm_last",
            Some(false),
            None,
            None,
            Some("15.02.2562.016"),
            false,
        ),
        (
            "se_rtm",
            Some(false),
            None,
            None,
            Some("15.02.2562.017"),
            true,
        ),
        (
            "exsetup_wins_over_adv",
            Some(false),
            None,
            Some("Version 15.1 (Build 2308.8)"),
            Some("15.01.2375.007"),
            true,
        ),
        (
            "adv_fallback",
            Some(false),
            None,
            Some("Version 15.1 (Build 2308.8)"),
            None,
            false,
        ),
        (
            "bad_exsetup_falls_back_to_adv",
            Some(false),
            None,
            Some("Version 15.1 (Build 2375.7)"),
            Some("garbage"),
            true,
        ),
        (
            "no_build_at_all_in_scope",
            Some(false),
            None,
            None,
            None,
            true,
        ),
    ];
    for (case, edge, role, adv, exsetup, in_scope) in rows {
        let s = ExchangeServerFacts {
            is_edge_server: *edge,
            server_role: role.map(str::to_string),
            admin_display_version: adv.map(str::to_string),
            ..server()
        };
        let h = HostFacts {
            exsetup_version: exsetup.map(str::to_string),
            ..host()
        };
        let a = assess(Some(true), &s, &h);
        if *in_scope {
            assert_ne!(a.status, Status::Skipped, "{case}");
            assert!(!a.lines.is_empty(), "{case}");
        } else {
            assert_eq!(a.status, Status::Skipped, "{case}");
            assert!(
                a.lines.is_empty(),
                "{case}: nothing displayed when the gate is false"
            );
            assert_eq!(a.eems_state, None, "{case}");
            assert_eq!(a.findings.len(), 1, "{case}");
        }
    }
}

#[test]
fn scope_reasons() {
    let rows: &[(Option<bool>, Option<&str>, Option<&str>, Scope)] = &[
        (
            Some(true),
            None,
            None,
            Scope::Skip("Edge Transport server: EEMS is not installed on Edge".into()),
        ),
        (
            Some(false),
            Some("EdgeTransport"),
            None,
            Scope::Skip("Edge Transport server: EEMS is not installed on Edge".into()),
        ),
        (
            None,
            Some("Mailbox"),
            Some("Version 15.2 (Build 1544.4)"),
            Scope::InScope,
        ),
        (None, None, None, Scope::InScope),
        (
            Some(false),
            None,
            Some("Version 15.1 (Build 2308.8)"),
            Scope::Skip(
                "build 15.1.2308.8 (Exchange 2016) is below EEMS (needs 15.1.2375.7, CU22)".into(),
            ),
        ),
        (
            Some(false),
            None,
            Some("Version 15.2 (Build 922.7)"),
            Scope::Skip(
                "build 15.2.922.7 (Exchange 2019) is below EEMS (needs 15.2.986.5, CU11)".into(),
            ),
        ),
        (
            Some(false),
            None,
            Some("Version 15.2 (Build 2562.5)"),
            Scope::Skip(
                "build 15.2.2562.5 (Exchange SE) is below EEMS (needs 15.2.2562.17, RTM)".into(),
            ),
        ),
        (
            Some(false),
            None,
            Some("Version 15.0 (Build 1497.2)"),
            Scope::Skip(
                "build 15.0.1497.2 (Exchange 2013): EEMS does not exist on Exchange 2013".into(),
            ),
        ),
        (
            Some(false),
            None,
            Some("Version 14.3 (Build 513.0)"),
            Scope::Skip("build 14.3.513.0 is not an Exchange 2016, 2019 or SE build".into()),
        ),
        (
            Some(false),
            None,
            Some("Version 15.2 (Build 2562.17)"),
            Scope::InScope,
        ),
        (Some(false), None, Some("nonsense"), Scope::InScope),
    ];
    for (edge, role, adv, want) in rows {
        let s = ExchangeServerFacts {
            is_edge_server: *edge,
            server_role: role.map(str::to_string),
            admin_display_version: adv.map(str::to_string),
            ..server()
        };
        assert_eq!(&scope(&s), want, "{edge:?} {role:?} {adv:?}");
    }
}

// ---- HealthChecker fixtures (§4.1)

fn fixture_server(name: &str, adv: &str) -> ExchangeServerFacts {
    // eems-values-extracted.json: identical EEMS values for SOLO-E16A and SOLO-E19A
    ExchangeServerFacts {
        name: name.into(),
        is_edge_server: Some(false),
        admin_display_version: Some(adv.into()),
        mitigations_enabled: Some(true),
        mitigations_applied: vec![],
        mitigations_blocked: vec![],
        data_collection_enabled: Some(false),
        internet_web_proxy: None,
        ..Default::default()
    }
}

#[test]
fn fixture_e19_main_cu11_enabled_reachable() {
    let s = fixture_server("SOLO-E19A", "Version 15.2 (Build 986.5)");
    let h = HostFacts {
        exsetup_version: Some("15.02.0986.005".into()),
        ..host()
    };
    let a = assess(Some(true), &s, &h);
    assert_eq!(
        a.lines,
        vec![
            l(
                Some("Exchange Emergency Mitigation Service"),
                "Enabled",
                Green,
                1
            ),
            l(Some("Windows service"), "Running", Grey, 2),
            l(Some("Pattern service"), "200 - Reachable", Grey, 2),
            l(Some("Telemetry enabled"), "False", Grey, 2),
        ]
    );
    assert_eq!(
        a.build.map(|b| b.to_string()).as_deref(),
        Some("15.2.986.5")
    );
    assert_eq!(a.product, Some(Product::Exchange2019));
    // HealthChecker is green; eems-scan adds only the informational floor note
    assert_eq!(a.status, Status::Ok);
    assert_eq!(a.findings.len(), 1);
    assert!(a.findings[0].contains("older than the March 2023 SU"));
}

#[test]
fn fixture_e16_main_cu22_ocs_unreachable() {
    let s = fixture_server("SOLO-E16A", "Version 15.1 (Build 2375.7)");
    let h = HostFacts {
        exsetup_version: Some("15.01.2375.007".into()),
        ocs: OcsFacts::default(), // Get-InvokeWebRequestResult mocked to $null
        ..host()
    };
    let a = assess(Some(true), &s, &h);
    assert_eq!(a.lines[0], l(Some(NAME_OVERALL), "Enabled", Green, 1));
    assert_eq!(a.lines[1], l(Some(NAME_SERVICE), "Running", Grey, 2));
    assert_eq!(
        a.lines[2],
        l(
            Some(NAME_PATTERN),
            "Unreachable\r\n\t\tMore information: https://aka.ms/HelpConnectivityEEMS",
            Yellow,
            2
        )
    );
    assert_eq!(a.lines[3], l(Some(NAME_TELEMETRY), "False", Grey, 2));
    assert_eq!(a.status, Status::Warning);
    assert_eq!(a.product, Some(Product::Exchange2016));
    assert!(
        a.findings.contains(
            &"OCS endpoint unreachable from the server: no response recorded".to_string()
        )
    );
}

#[test]
fn historical_disabled_state_fixture() {
    // Get-ExchangeEmergencyMitigationServiceState.Tests.ps1 "Disabled State"
    let s = ExchangeServerFacts {
        mitigations_enabled: Some(false),
        mitigations_applied: vec!["PING01".into()],
        ..server()
    };
    let h = HostFacts {
        service: svc("Stopped", "Disabled"),
        ..host()
    };
    let a = assess(Some(false), &s, &h);
    assert_eq!(a.eems_state.map(EemsState::label), Some("Disabled"));
    assert_eq!(
        a.service_check.map(ServiceCheck::label),
        Some("Investigate")
    );
    assert_eq!(
        a.pattern_service.map(PatternService::label),
        Some("200 - Reachable")
    );
    assert!(
        a.findings
            .contains(&"EEMS disabled on org level and on server level".to_string())
    );
    assert!(a.findings.contains(
        &"MSExchangeMitigation is Stopped/Disabled (expected Running/Automatic)".to_string()
    ));
}

#[test]
fn healthy_console_text_matches_reference_example() {
    let s = ExchangeServerFacts {
        mitigations_applied: vec!["PING1".into()],
        ..server()
    };
    let text: Vec<String> = assess(Some(true), &s, &host())
        .lines
        .iter()
        .map(Line::to_text)
        .collect();
    assert_eq!(
        text,
        vec![
            "\tExchange Emergency Mitigation Service: Enabled",
            "\t\tWindows service: Running",
            "\t\tPattern service: 200 - Reachable",
            "\t\tMitigation applied: PING1",
            "\t\tRun: 'Get-Mitigations.ps1' from: 'C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Scripts\\' to learn more.",
            "\t\tTelemetry enabled: False",
        ]
    );
}

// ---- status and findings

#[test]
fn status_rules() {
    let rows: &[(
        &str,
        Option<bool>,
        Option<bool>,
        Option<ServiceFacts>,
        Option<u16>,
        &[&str],
        Status,
    )] = &[
        (
            "all_good",
            Some(true),
            Some(true),
            svc("Running", "Automatic"),
            Some(200),
            &[],
            Status::Ok,
        ),
        (
            "org_null_is_critical",
            None,
            Some(true),
            svc("Running", "Automatic"),
            Some(200),
            &[],
            Status::Critical,
        ),
        (
            "disabled_org",
            Some(false),
            Some(true),
            svc("Running", "Automatic"),
            Some(200),
            &[],
            Status::Warning,
        ),
        (
            "disabled_server",
            Some(true),
            Some(false),
            svc("Running", "Automatic"),
            Some(200),
            &[],
            Status::Warning,
        ),
        (
            "investigate",
            Some(true),
            Some(true),
            svc("Stopped", "Automatic"),
            Some(200),
            &[],
            Status::Warning,
        ),
        (
            "unknown_service",
            Some(true),
            Some(true),
            None,
            Some(200),
            &[],
            Status::Warning,
        ),
        (
            "unreachable",
            Some(true),
            Some(true),
            svc("Running", "Automatic"),
            None,
            &[],
            Status::Warning,
        ),
        (
            "blocked",
            Some(true),
            Some(true),
            svc("Running", "Automatic"),
            Some(200),
            &["M2"],
            Status::Warning,
        ),
        (
            "blocked_empty_string_ignored",
            Some(true),
            Some(true),
            svc("Running", "Automatic"),
            Some(200),
            &[""],
            Status::Ok,
        ),
    ];
    for (case, org, srv, service, code, blocked, want) in rows {
        let s = ExchangeServerFacts {
            mitigations_enabled: *srv,
            mitigations_blocked: blocked.iter().map(|x| x.to_string()).collect(),
            ..server()
        };
        let h = HostFacts {
            service: service.clone(),
            ocs: OcsFacts {
                status_code: *code,
                ..Default::default()
            },
            ..host()
        };
        assert_eq!(assess(*org, &s, &h).status, *want, "{case}");
    }
}

#[test]
fn findings_text() {
    let h = HostFacts {
        service: None,
        ocs: OcsFacts {
            error: Some("Unable to connect to the remote server".into()),
            ..Default::default()
        },
        ..host()
    };
    let s = ExchangeServerFacts {
        mitigations_enabled: Some(true),
        ..server()
    };
    let a = assess(Some(false), &s, &h);
    assert_eq!(
        a.findings,
        vec![
            "EEMS disabled on org level",
            "MSExchangeMitigation service not found",
            "OCS endpoint unreachable from the server: Unable to connect to the remote server",
        ]
    );
    let h = HostFacts {
        ocs: OcsFacts {
            status_code: Some(407),
            ..Default::default()
        },
        ..host()
    };
    let a = assess(Some(true), &server(), &h);
    assert_eq!(
        a.findings,
        vec!["OCS endpoint unreachable from the server: HTTP 407"]
    );
}

#[test]
fn fetch_floor_findings_are_informational() {
    let rows: &[(&str, Option<&str>)] = &[
        ("15.02.1544.004", None),
        ("15.02.0986.041", Some("older than the March 2023 SU")),
        ("15.02.0986.042", Some("exactly the March 2023 SU")),
        ("15.01.2375.037", Some("older than the March 2023 SU")),
        ("15.01.2507.023", Some("exactly the March 2023 SU")),
    ];
    for (exsetup, want) in rows {
        let h = HostFacts {
            exsetup_version: Some(exsetup.to_string()),
            ..host()
        };
        let a = assess(Some(true), &server(), &h);
        assert_eq!(a.status, Status::Ok, "{exsetup}: informational only");
        match want {
            None => assert!(a.findings.is_empty(), "{exsetup}: {:?}", a.findings),
            Some(w) => assert!(
                a.findings.iter().any(|f| f.contains(w)),
                "{exsetup}: {:?}",
                a.findings
            ),
        }
    }
}

#[test]
fn status_order_and_serde() {
    use Status::*;
    assert!(Skipped < Ok && Ok < Warning && Warning < Error && Error < Critical);
    assert_eq!(Status::worst([Ok, Skipped, Warning]), Some(Warning));
    assert_eq!(Status::worst([Error, Critical]), Some(Critical));
    assert_eq!(Status::worst([]), None);
    for s in [Ok, Warning, Critical, Error, Skipped] {
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.as_str())
        );
    }
    assert_eq!(Green.css_class(), "Green");
    assert_eq!(Grey.css_class(), "");
    assert_eq!(Yellow.css_class(), "Yellow");
    assert_eq!(Red.css_class(), "Red");
}
