//! The deserialized objects the cmdlets return, with Exchange's property names and shapes.

use psrp_rs::{PsObject, PsValue};

use crate::fleet::{OrgSpec, ServerSpec};

/// A `MultiValuedProperty<string>`, as real servers serialize one (recorded in
/// `eems-scan/tests/fixtures/css-exchange`): its type names, then the list
/// (`<Obj><TN/><LST><S/></LST></Obj>`).
fn strings(list: &[String]) -> PsValue {
    PsValue::Object(
        PsObject::new()
            .with(
                "_value",
                PsValue::List(list.iter().map(|s| PsValue::String(s.clone())).collect()),
            )
            .with_type_names([
                "Deserialized.Microsoft.Exchange.Data.MultiValuedProperty`1[[System.String, mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089]]",
                "Deserialized.Microsoft.Exchange.Data.MultiValuedPropertyBase",
                "Deserialized.System.Object",
            ]),
    )
}

fn opt_bool(v: Option<bool>) -> Option<PsValue> {
    v.map(PsValue::Bool)
}

/// A deserialized `OrganizationConfig` as Exchange's remote session returns it (a property
/// bag; `MitigationsEnabled` absent on builds before the November 2021 SU).
pub(super) fn organization_config(org: &OrgSpec) -> PsValue {
    let mut o = PsObject::new()
        .with("Name", PsValue::String(org.name.clone()))
        .with("Identity", PsValue::String(org.name.clone()))
        .with("IsDehydrated", PsValue::Bool(false))
        .with_type_names([
            "Deserialized.Microsoft.Exchange.Data.Directory.Management.OrganizationConfig",
            "Deserialized.Microsoft.Exchange.Data.Directory.ADPresentationObject",
            "Deserialized.System.Object",
        ]);
    if let Some(v) = opt_bool(org.mitigations_enabled) {
        o = o.with("MitigationsEnabled", v);
    }
    o.to_string = Some(org.name.clone());
    PsValue::Object(o)
}

/// `Version 15.2 (Build 1544.4)` from `15.2.1544.4`.
fn admin_display_version(build: &str) -> String {
    let p: Vec<&str> = build.split('.').collect();
    match p.as_slice() {
        [a, b, c, d] => format!("Version {a}.{b} (Build {c}.{d})"),
        _ => build.to_string(),
    }
}

/// A deserialized `ExchangeServer`: Site as the ADObjectId's string form, the mitigation
/// lists null when empty (as AD returns an unset multi-valued attribute), the applied time a
/// DateTime.
pub(super) fn exchange_server(org: &OrgSpec, s: &ServerSpec) -> PsValue {
    let domain = s
        .fqdn()
        .split_once('.')
        .map(|(_, d)| d.to_string())
        .unwrap_or_default();
    let list_or_null = |l: &[String]| {
        if l.is_empty() {
            PsValue::Null
        } else {
            strings(l)
        }
    };
    let mut o = PsObject::new()
        .with("Name", PsValue::String(s.name.clone()))
        .with("Fqdn", PsValue::String(s.fqdn()))
        .with(
            "Site",
            PsValue::String(format!("{domain}/Configuration/Sites/{}", s.site)),
        )
        .with(
            "ServerRole",
            PsValue::String(if s.is_edge() {
                "Edge".into()
            } else {
                "Mailbox".into()
            }),
        )
        .with("IsEdgeServer", PsValue::Bool(s.is_edge()))
        .with(
            "AdminDisplayVersion",
            PsValue::String(admin_display_version(&s.build)),
        )
        .with("MitigationsApplied", list_or_null(&s.mitigations_applied))
        .with("MitigationsBlocked", list_or_null(&s.mitigations_blocked))
        .with(
            "MitigationsAppliedTime",
            s.mitigations_applied_time
                .clone()
                .map_or(PsValue::Null, PsValue::DateTime),
        )
        .with(
            "InternetWebProxy",
            s.internet_web_proxy
                .clone()
                .map_or(PsValue::Null, PsValue::Uri),
        )
        .with("OrganizationName", PsValue::String(org.name.clone()))
        .with_type_names([
            "Deserialized.Microsoft.Exchange.Data.Directory.Management.ExchangeServer",
            "Deserialized.Microsoft.Exchange.Data.Directory.ADPresentationObject",
            "Deserialized.System.Object",
        ]);
    if let Some(v) = opt_bool(s.mitigations_enabled) {
        o = o.with("MitigationsEnabled", v);
    }
    if let Some(v) = opt_bool(s.data_collection_enabled) {
        o = o.with("DataCollectionEnabled", v);
    }
    // Feature Flighting (2019 CU15+, SE): Int32 and DateTime, null on builds without it.
    let now = time::OffsetDateTime::now_utc();
    o = o
        .with("WhenChangedUTC", PsValue::DateTime(s.when_changed()))
        .with(
            "RingLevel",
            s.feature_flighting
                .ring_level(&s.build)
                .map_or(PsValue::Null, PsValue::I32),
        )
        .with(
            "LastFlightingServiceRunTime",
            s.feature_flighting
                .last_run(&s.build, now)
                .map_or(PsValue::Null, PsValue::DateTime),
        );
    o.to_string = Some(s.name.clone());
    PsValue::Object(o)
}

#[cfg(test)]
mod shape_tests;
