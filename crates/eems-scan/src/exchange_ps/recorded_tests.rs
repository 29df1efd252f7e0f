//! The org query's parsing against objects real Exchange servers recorded (CSS-Exchange's
//! HealthChecker test data, `tests/fixtures/css-exchange/README.md`), not only the lab's: a
//! shape the lab and the parser both got wrong would pass the lab tests.

use eems_core::facts::{ExchangeServerFacts, OrgFacts};
use psrp_rs::{PsValue, parse_clixml};

use super::{org_config, server_facts};

/// The recorded file's XML, as Export-Clixml wrote it.
pub(crate) fn recorded_xml(file: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/css-exchange/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Export-Clixml wraps the objects in one `<Objs>` document; a PSRP `PipelineOutput` message
/// carries each `<Obj>` bare, which is what `parse_clixml` reads, so the wrapper goes.
fn recorded(file: &str) -> Vec<PsValue> {
    let xml = recorded_xml(file);
    let start = xml
        .find("<Objs")
        .and_then(|i| xml[i..].find('>').map(|j| i + j + 1))
        .unwrap_or_else(|| panic!("{file}: no <Objs>"));
    let end = xml
        .rfind("</Objs>")
        .unwrap_or_else(|| panic!("{file}: no </Objs>"));
    parse_clixml(&xml[start..end]).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn servers(file: &str) -> Vec<ExchangeServerFacts> {
    recorded(file).iter().map(server_facts).collect()
}

#[test]
fn exchange_2019_server_reads_from_its_recorded_object() {
    let s = servers("E19-GetExchangeServer.xml");
    assert_eq!(s.len(), 1);
    let s = &s[0];
    assert_eq!(s.name, "SOLO-E19A");
    assert_eq!(s.fqdn.as_deref(), Some("Solo-E19A.Solo.com"));
    // An ADObjectId `<Obj>` whose ToString is `Solo.com/Configuration/Sites/Default-First-Site-Name`.
    assert_eq!(s.site.as_deref(), Some("Default-First-Site-Name"));
    // A ServerVersion `<Obj>` (Major, Minor, Build, Revision): the text its ToString shows.
    assert_eq!(
        s.admin_display_version.as_deref(),
        Some("Version 15.2 (Build 986.5)")
    );
    // The ServerRole enum `<Obj>` (ToString `Mailbox`, `<I32>2</I32>`): psrp-rs 4.0.0 drops
    // the ToString and keeps only the number, so the role's name is unknown; the Edge decision
    // rests on IsEdgeServer, a `<B>` in every shape.
    assert_eq!(s.server_role, None);
    assert_eq!(s.is_edge_server, Some(false));
    assert_eq!(s.mitigations_enabled, Some(true));
    // `<Nil N="MitigationsApplied" />`: an unset multi-valued attribute is no entries.
    assert!(s.mitigations_applied.is_empty());
    assert!(s.mitigations_blocked.is_empty());
    assert_eq!(s.mitigations_applied_time, None);
    assert_eq!(s.data_collection_enabled, Some(false));
    assert_eq!(s.internet_web_proxy, None);
    assert_eq!(s.when_changed.as_deref(), Some("2021-09-28T17:32:01Z"));
    // CU11 predates Feature Flighting: the properties do not exist.
    assert_eq!(s.ring_level, None);
    assert_eq!(s.last_flighting_run, None);
}

#[test]
fn exchange_2016_servers_with_applied_mitigations_read_from_their_recorded_objects() {
    let s = servers("E16-two-servers-GetExchangeServer.xml");
    assert_eq!(s.len(), 2);
    let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["E2k16-1", "E2k16-2"]);
    for one in &s {
        assert_eq!(one.site.as_deref(), Some("Default-First-Site-Name"));
        assert_eq!(
            one.admin_display_version.as_deref(),
            Some("Version 15.1 (Build 2507.18)")
        );
        assert_eq!(one.server_role, None);
        assert_eq!(one.is_edge_server, Some(false));
        assert_eq!(one.mitigations_enabled, Some(true));
        // A MultiValuedProperty`1[System.String] `<Obj>` holding `<LST><S>PING1</S></LST>`.
        assert_eq!(one.mitigations_applied, ["PING1"]);
        assert!(one.mitigations_blocked.is_empty());
        assert_eq!(one.internet_web_proxy, None);
    }
    assert_eq!(s[0].fqdn.as_deref(), Some("E2k16-1.Contoso.lab"));
    assert_eq!(s[1].fqdn.as_deref(), Some("E2k16-2.Contoso.lab"));
    // `<DT>` with seven fractional digits, kept to the digit, in UTC.
    assert_eq!(
        s[0].mitigations_applied_time.as_deref(),
        Some("2023-01-05T12:08:37.6177687Z")
    );
    assert_eq!(
        s[1].mitigations_applied_time.as_deref(),
        Some("2023-01-05T12:08:36.1218724Z")
    );
    assert_eq!(s[0].data_collection_enabled, Some(true));
    assert_eq!(s[1].data_collection_enabled, Some(false));
    assert_eq!(s[0].when_changed.as_deref(), Some("2023-01-05T12:08:37Z"));
    assert_eq!(s[1].when_changed.as_deref(), Some("2023-01-05T12:08:36Z"));
}

#[test]
fn organization_config_reads_from_its_recorded_object() {
    let values = recorded("E19-GetOrganizationConfig.xml");
    assert_eq!(values.len(), 1);
    let mut facts = OrgFacts::default();
    org_config(&mut facts, &values);
    assert_eq!(facts.name.as_deref(), Some("SoloORG"));
    assert_eq!(facts.mitigations_enabled, Some(true));
}
