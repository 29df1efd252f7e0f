//! `Search-AdminAuditLog` over the fleet's `[[org.admin_audit]]`: the parameters a caller
//! may give filter as Exchange documents them (`-Cmdlets`, `-Parameters`, `-StartDate`,
//! `-EndDate`, `-ResultSize`), newest first; an unknown parameter gets PowerShell's binding
//! error, so a client that sends the wrong name finds out here.

use psrp_rs::{PsObject, PsValue};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::cmdlets::items;
use crate::fleet::OrgSpec;
use crate::org_evidence::AuditEntrySpec;

pub(super) const CMDLET: &str = "Search-AdminAuditLog";
/// Without `-ResultSize` Exchange returns at most this many entries.
const DEFAULT_RESULT_SIZE: usize = 1000;
/// Parameters of Search-AdminAuditLog (Exchange Server) that this lab accepts.
const KNOWN: &[&str] = &[
    "Cmdlets",
    "Parameters",
    "StartDate",
    "EndDate",
    "ResultSize",
    "ObjectIds",
    "UserIds",
    "IsSuccess",
    "StartIndex",
    "DomainController",
    "ExternalAccess",
];

type Failure = (String, &'static str, &'static str);

fn binding(message: String) -> Failure {
    (
        message,
        "NamedParameterNotFound,Microsoft.Exchange.Management.SystemConfigurationTasks.SearchAdminAuditLog",
        "System.Management.Automation.ParameterBindingException",
    )
}

fn strings(v: &PsValue) -> Vec<String> {
    items(v)
        .into_iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn date(name: &str, v: &PsValue) -> Result<OffsetDateTime, Failure> {
    v.as_str()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .ok_or_else(|| {
            binding(format!(
                "Cannot process argument transformation on parameter '{name}'. Cannot convert value to type \"Microsoft.Exchange.ExchangeSystem.ExDateTime\"."
            ))
        })
}

pub(super) fn search(org: &OrgSpec, params: &[(String, PsValue)]) -> Result<Vec<PsValue>, Failure> {
    let now = OffsetDateTime::now_utc();
    let mut cmdlets: Option<Vec<String>> = None;
    let mut parameters: Option<Vec<String>> = None;
    let (mut start, mut end) = (None, None);
    let mut size = DEFAULT_RESULT_SIZE;
    for (name, value) in params {
        let Some(known) = KNOWN.iter().find(|k| k.eq_ignore_ascii_case(name)) else {
            return Err(binding(format!(
                "A parameter cannot be found that matches parameter name '{name}'."
            )));
        };
        match *known {
            "Cmdlets" => cmdlets = Some(strings(value)),
            "Parameters" => parameters = Some(strings(value)),
            "StartDate" => start = Some(date(known, value)?),
            "EndDate" => end = Some(date(known, value)?),
            "ResultSize" => {
                size = value
                    .as_i32()
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(DEFAULT_RESULT_SIZE);
            }
            _ => {}
        }
    }
    if let Some(e) = &org.admin_audit_error {
        return Err((
            e.clone(),
            "SearchAdminAuditLogFailed",
            "Microsoft.Exchange.Data.Directory.ADTransientException",
        ));
    }
    let any = |wanted: &Option<Vec<String>>, have: Vec<&str>| match wanted {
        Some(w) => have
            .iter()
            .any(|h| w.iter().any(|w| w.eq_ignore_ascii_case(h))),
        None => true,
    };
    let mut hits: Vec<(&AuditEntrySpec, OffsetDateTime)> = org
        .admin_audit
        .iter()
        .map(|e| (e, now - time::Duration::seconds_f64(e.hours_ago * 3600.0)))
        .filter(|(e, at)| {
            any(&cmdlets, vec![e.cmdlet_name.as_str()])
                && any(
                    &parameters,
                    e.parameters.iter().map(|p| p.name.as_str()).collect(),
                )
                && start.is_none_or(|s| *at >= s)
                && end.is_none_or(|x| *at <= x)
        })
        .collect();
    hits.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
    Ok(hits
        .into_iter()
        .take(size)
        .map(|(e, _)| event(e, now))
        .collect())
}

/// A deserialized `AdminAuditLogEvent`.
fn event(e: &AuditEntrySpec, now: OffsetDateTime) -> PsValue {
    let parameters = e
        .parameters
        .iter()
        .map(|p| {
            PsValue::Object(
                PsObject::new()
                    .with("Name", PsValue::String(p.name.clone()))
                    .with("Value", PsValue::String(p.value.clone()))
                    .with_type_names([
                        "Deserialized.Microsoft.Exchange.Management.SystemConfigurationTasks.AdminAuditLogCmdletParameter",
                        "Deserialized.System.Object",
                    ]),
            )
        })
        .collect();
    let run_date = e.run_date(now);
    let mut o = PsObject::new()
        .with("ObjectModified", PsValue::String(e.object_modified.clone()))
        .with("CmdletName", PsValue::String(e.cmdlet_name.clone()))
        .with(
            "CmdletParameters",
            // A MultiValuedProperty: its type names, then the list (`<Obj><TN/><LST/>`).
            PsValue::Object(
                PsObject::new()
                    .with("_value", PsValue::List(parameters))
                    .with_type_names([
                        "Deserialized.Microsoft.Exchange.Data.MultiValuedProperty`1[[Microsoft.Exchange.Management.SystemConfigurationTasks.AdminAuditLogCmdletParameter]]",
                        "Deserialized.Microsoft.Exchange.Data.MultiValuedPropertyBase",
                        "Deserialized.System.Object",
                    ]),
            ),
        )
        .with("ModifiedProperties", PsValue::Null)
        .with("Caller", PsValue::String(e.caller.clone()))
        .with("ExternalAccess", PsValue::Bool(false))
        .with("Succeeded", PsValue::Bool(true))
        .with("Error", PsValue::Null)
        .with("RunDate", PsValue::DateTime(run_date.clone()))
        .with("IsValid", PsValue::Bool(true))
        .with_type_names([
            "Deserialized.Microsoft.Exchange.Management.SystemConfigurationTasks.AdminAuditLogEvent",
            "Deserialized.Microsoft.Exchange.Data.ConfigurableObject",
            "Deserialized.System.Object",
        ]);
    o.to_string = Some(format!("{} {run_date}", e.cmdlet_name));
    PsValue::Object(o)
}
