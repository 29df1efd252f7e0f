//! `Search-AdminAuditLog` for changes of the EEMS switches (issue 11, eems-evidence.md E8),
//! once per organisation, in the same runspace as the org query. A bare command with
//! parameters, as the NoLanguage runspace allows:
//!
//! `Search-AdminAuditLog -Cmdlets Set-OrganizationConfig,Set-ExchangeServer
//!  -Parameters MitigationsEnabled,MitigationsBlocked -StartDate <now - 90 days, UTC>`
//!
//! Its failure (RBAC, a cmdlet error, the transport, time) is kept in the facts and never
//! fails the org query.

use eems_core::analysis::evidence::org::{
    ADMIN_AUDIT_DAYS, AUDIT_CMDLET, AUDIT_CMDLETS, AUDIT_PARAMETERS,
};
use eems_core::facts::{AdminAuditEntry, AdminAuditFacts, AuditChange};
use psrp_rs::{Command, PsValue, RunspacePool};

use super::{ExchangeTransport, items, prop, run_command, string, utc};

/// Left for closing the runspace pool after the search, within the org query's timeout.
pub(super) const CLOSE_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);
/// Search-AdminAuditLog returns at most 1,000 entries without `-ResultSize`; kept as a
/// bound on what the report carries whatever the server sends.
const MAX_ENTRIES: usize = 1000;

/// The command as it is sent, for `now` (UTC).
pub(super) fn command(now: time::OffsetDateTime) -> Command {
    let start = (now - time::Duration::days(i64::from(ADMIN_AUDIT_DAYS)))
        .replace_nanosecond(0)
        .unwrap_or(now);
    let start = start
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let list =
        |l: &[&str]| PsValue::List(l.iter().map(|s| PsValue::String(s.to_string())).collect());
    Command::new(AUDIT_CMDLET)
        .with_parameter("Cmdlets", list(AUDIT_CMDLETS))
        .with_parameter("Parameters", list(AUDIT_PARAMETERS))
        .with_parameter("StartDate", PsValue::DateTime(start))
}

/// Runs the search, bounded by `deadline` less [`CLOSE_MARGIN`].
pub(super) async fn search(
    pool: &mut RunspacePool<ExchangeTransport>,
    deadline: tokio::time::Instant,
) -> AdminAuditFacts {
    let mut facts = AdminAuditFacts {
        window_days: Some(ADMIN_AUDIT_DAYS),
        ..Default::default()
    };
    let until = deadline
        .checked_sub(CLOSE_MARGIN)
        .unwrap_or(deadline)
        .max(tokio::time::Instant::now());
    let run = run_command(pool, command(time::OffsetDateTime::now_utc()));
    match tokio::time::timeout_at(until, run).await {
        Ok(Ok(Ok(values))) => {
            facts.entries = values.iter().take(MAX_ENTRIES).map(entry).collect();
        }
        // The cmdlet's own error, RBAC's "not recognized" included: the report words it.
        Ok(Ok(Err(msg))) => facts.error = Some(msg),
        Ok(Err(e)) => facts.error = Some(format!("{AUDIT_CMDLET}: {e}")),
        Err(_) => {
            facts.error = Some(format!(
                "{AUDIT_CMDLET} did not answer within the org query's timeout"
            ));
        }
    }
    facts
}

/// One deserialized `AdminAuditLogEvent`.
fn entry(v: &PsValue) -> AdminAuditEntry {
    AdminAuditEntry {
        who: string(v, "Caller"),
        when: string(v, "RunDate").map(|t| utc(&t)),
        cmdlet: string(v, "CmdletName"),
        object: string(v, "ObjectModified"),
        changes: items(v, "CmdletParameters")
            .into_iter()
            .filter_map(change)
            .collect(),
    }
}

/// An `AdminAuditLogCmdletParameter` (`Name`, `Value`); a value that arrives as its string
/// form only keeps that as the name.
fn change(p: &PsValue) -> Option<AuditChange> {
    if let Some(name) = p.as_str() {
        return Some(AuditChange {
            name: name.to_string(),
            value: None,
        });
    }
    let name = string(p, "Name")?;
    let value = match prop(p, "Value") {
        Some(PsValue::Null) | None => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_string(),
            None => match v.as_bool() {
                Some(b) => if b { "True" } else { "False" }.to_string(),
                None => items(p, "Value")
                    .into_iter()
                    .filter_map(PsValue::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            },
        }),
    };
    Some(AuditChange { name, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use psrp_rs::PsObject;

    #[test]
    fn an_audit_event_becomes_an_entry_whatever_shape_its_parameters_take() {
        let param = |n: &str, v: PsValue| {
            PsValue::Object(
                PsObject::new()
                    .with("Name", PsValue::String(n.into()))
                    .with("Value", v),
            )
        };
        let event = PsValue::Object(
            PsObject::new()
                .with("Caller", PsValue::String("lab.local/Users/bob".into()))
                .with(
                    "RunDate",
                    PsValue::DateTime("2026-11-20T10:30:00+01:00".into()),
                )
                .with("CmdletName", PsValue::String("Set-ExchangeServer".into()))
                .with("ObjectModified", PsValue::String("EX02".into()))
                .with(
                    "CmdletParameters",
                    PsValue::List(vec![
                        param("Identity", PsValue::String("EX02".into())),
                        param("MitigationsEnabled", PsValue::Bool(false)),
                        param(
                            "MitigationsBlocked",
                            PsValue::List(vec![
                                PsValue::String("M1".into()),
                                PsValue::String("M2".into()),
                            ]),
                        ),
                        param("Confirm", PsValue::Null),
                        PsValue::String("Verbose".into()),
                    ]),
                ),
        );
        let e = entry(&event);
        assert_eq!(e.who.as_deref(), Some("lab.local/Users/bob"));
        assert_eq!(e.when.as_deref(), Some("2026-11-20T09:30:00Z"));
        assert_eq!(e.cmdlet.as_deref(), Some("Set-ExchangeServer"));
        assert_eq!(e.object.as_deref(), Some("EX02"));
        let got: Vec<_> = e
            .changes
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("Identity", Some("EX02")),
                ("MitigationsEnabled", Some("False")),
                ("MitigationsBlocked", Some("M1,M2")),
                ("Confirm", None),
                ("Verbose", None),
            ]
        );
        // Null parameters (an event without any) are no changes.
        let bare = PsValue::Object(PsObject::new().with("CmdletParameters", PsValue::Null));
        assert!(entry(&bare).changes.is_empty());
    }

    #[test]
    fn the_command_is_bare_with_the_documented_parameters() {
        let now = time::OffsetDateTime::parse(
            "2026-12-04T20:30:40.5Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let c = command(now);
        assert_eq!(c.name, "Search-AdminAuditLog");
        assert!(!c.is_script);
        let text = format!("{:?}", c.arguments);
        for want in [
            "Cmdlets",
            "Set-OrganizationConfig",
            "Set-ExchangeServer",
            "Parameters",
            "MitigationsEnabled",
            "MitigationsBlocked",
            "StartDate",
            "DateTime(\"2026-09-05T20:30:40Z\")",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
    }
}
