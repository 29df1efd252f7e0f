//! Where the org facts come from besides the WinRS org probe (issue 10):
//! - [`OrgVia::RemotePowerShell`]: Exchange Remote PowerShell on `http://<fqdn>/PowerShell/`
//!   (feature `kerberos`, [`crate::exchange_ps`]), the way Microsoft supports;
//! - `--org-data FILE`: the JSON that [`ORG_COMMAND`] writes in the Exchange Management Shell,
//!   for workstations that cannot use Kerberos.

use std::path::Path;
use std::time::{Duration, SystemTime};

use eems_core::facts::OrgFacts;
use eems_core::inventory::InventoryEntry;

use super::org::OrgResult;

/// How the org query reaches the organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgVia {
    /// The Exchange snap-in in a WinRS PowerShell on the server (`--org-via winrs-snapin`,
    /// legacy). Unsupported by Microsoft, and on a real organisation it needs delegation for
    /// the second hop.
    WinRs,
    /// Exchange Remote PowerShell (PSRP, Kerberos) on this port of every org server: the
    /// default.
    RemotePowerShell { port: u16 },
}

/// What `--org-via winrs-snapin` prints on stderr, once.
pub const WINRS_SNAPIN_WARNING: &str = "warning: --org-via winrs-snapin loads the Exchange snap-in over WinRS, which Microsoft does not support (KB 2827611) and which fails without delegation (the second hop to Active Directory); the default, --org-via remote-powershell, is supported and needs no delegation";

/// What a user without Kerberos does instead of the org query.
const ORG_DATA_FIX: &str = "without Kerberos, run the line `eems-scan org-command` prints in the Exchange Management Shell and scan with --org-data FILE";

/// The org error of a build without Kerberos, which cannot reach Exchange Remote PowerShell.
#[cfg(not(feature = "kerberos"))]
pub(super) fn no_kerberos_in_this_build() -> String {
    format!(
        "the org query over Exchange Remote PowerShell needs Kerberos, and this eems-scan is built without it (--no-default-features): {ORG_DATA_FIX}, or build with the default features"
    )
}

/// An org data file older than this is refused: the mitigation state changes hourly.
pub const MAX_ORG_DATA_AGE: Duration = Duration::from_secs(24 * 3600);

/// One line for the Exchange Management Shell that writes what the org query reads, as JSON
/// with the field names of [`OrgFacts`] (`eems-scan org-command`). The admin audit search
/// is in a `try`: an account without the audit role still writes the org facts, with the
/// error. Files written before the Flighting and audit fields load as before.
pub const ORG_COMMAND: &str = r#"$o = Get-OrganizationConfig; $s = @(Get-ExchangeServer | ForEach-Object { [ordered]@{ name = $_.Name; fqdn = $_.Fqdn; site = $(if ($_.Site) { $_.Site.Name }); server_role = "$($_.ServerRole)"; is_edge_server = $_.IsEdgeServer; admin_display_version = "$($_.AdminDisplayVersion)"; mitigations_enabled = $_.MitigationsEnabled; mitigations_applied = @($_.MitigationsApplied | ForEach-Object { "$_" }); mitigations_blocked = @($_.MitigationsBlocked | ForEach-Object { "$_" }); mitigations_applied_time = $(if ($_.MitigationsAppliedTime) { $_.MitigationsAppliedTime.ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ') }); data_collection_enabled = $_.DataCollectionEnabled; internet_web_proxy = $(if ($_.InternetWebProxy) { "$($_.InternetWebProxy)" }); when_changed = $(if ($_.WhenChangedUTC) { $_.WhenChangedUTC.ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ') }); ring_level = $_.RingLevel; last_flighting_run = $(if ($_.LastFlightingServiceRunTime) { $_.LastFlightingServiceRunTime.ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ') }) } }); $a = [ordered]@{ window_days = 90; entries = @(); error = $null }; try { $a.entries = @(Search-AdminAuditLog -Cmdlets Set-OrganizationConfig,Set-ExchangeServer -Parameters MitigationsEnabled,MitigationsBlocked -StartDate (Get-Date).ToUniversalTime().AddDays(-90) -ErrorAction Stop | ForEach-Object { [ordered]@{ who = "$($_.Caller)"; when = $_.RunDate.ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ'); cmdlet = "$($_.CmdletName)"; object = "$($_.ObjectModified)"; changes = @($_.CmdletParameters | ForEach-Object { [ordered]@{ name = "$($_.Name)"; value = "$($_.Value)" } }) } }) } catch { $a.error = "$_" }; [ordered]@{ eems_org_data = 1; written = (Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ'); name = $o.Name; mitigations_enabled = $o.MitigationsEnabled; servers = $s; admin_audit = $a } | ConvertTo-Json -Depth 6 | Set-Content -Encoding UTF8 eems-org.json"#;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgData {
    eems_org_data: u32,
    written: String,
    #[serde(flatten)]
    facts: OrgFacts,
}

/// Reads `--org-data`: the org facts and a note for the report naming the file and when it
/// was written. Errors name the file and what is wrong with it.
pub fn load_org_data(path: &Path) -> Result<(OrgFacts, String), String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("--org-data {shown}: {e}"))?;
    // Set-Content -Encoding UTF8 writes a BOM on Windows PowerShell 5.1.
    let text = String::from_utf8_lossy(bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes));
    let data: OrgData = serde_json::from_str(&text).map_err(|e| {
        format!(
            "--org-data {shown}: not the JSON `eems-scan org-command` writes (line {}, column {}: {e})",
            e.line(),
            e.column()
        )
    })?;
    if data.eems_org_data != 1 {
        return Err(format!(
            "--org-data {shown}: format version {} is not 1; write it again with this eems-scan's org-command",
            data.eems_org_data
        ));
    }
    let written = time::OffsetDateTime::parse(
        &data.written,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|e| {
        format!(
            "--org-data {shown}: `written` {:?} is not a UTC time: {e}",
            data.written
        )
    })?;
    let age = SystemTime::now()
        .duration_since(SystemTime::from(written))
        .unwrap_or_default();
    if age > MAX_ORG_DATA_AGE {
        return Err(format!(
            "--org-data {shown}: written {} ({} h ago), older than {} h; run the org-command again",
            data.written,
            age.as_secs() / 3600,
            MAX_ORG_DATA_AGE.as_secs() / 3600
        ));
    }
    if data.facts.servers.is_empty() && data.facts.servers_error.is_none() {
        return Err(format!("--org-data {shown}: lists no Exchange server"));
    }
    Ok((
        data.facts,
        format!("org data file {shown} (written {})", data.written),
    ))
}

/// `--org-data` as the org phase's answer. A file none of whose servers is in the inventory
/// is from another organisation (or another inventory) and refused.
pub(super) fn org_from_file(path: &Path, inventory: &[InventoryEntry]) -> OrgResult {
    let loaded = load_org_data(path).and_then(|(facts, note)| {
        let known = inventory
            .iter()
            .any(|e| super::match_org_server(&e.name, &facts.servers).is_some());
        if !inventory.is_empty() && !facts.servers.is_empty() && !known {
            return Err(format!(
                "--org-data {}: none of its {} servers (organisation {}) is in the inventory: a file from another organisation?",
                path.display(),
                facts.servers.len(),
                facts.name.as_deref().unwrap_or("unnamed")
            ));
        }
        Ok((facts, note))
    });
    match loaded {
        Ok((facts, note)) => OrgResult {
            facts: Some(facts),
            queried_on: Some(note),
            error: None,
            failures: Vec::new(),
        },
        Err(e) => OrgResult {
            facts: None,
            queried_on: None,
            error: Some(e),
            failures: Vec::new(),
        },
    }
}

/// The org query over Exchange Remote PowerShell, tried on `targets` in order. The SPN needs
/// the server's FQDN: a target name without a dot gets the Kerberos realm's DNS domain.
#[cfg(feature = "kerberos")]
pub(super) async fn org_over_remote_powershell(
    shared: &super::Shared,
    targets: &[crate::transport::Target],
    port: u16,
    progress: &dyn super::Progress,
) -> OrgResult {
    use crate::exchange_ps::{Endpoint, query_org};

    let fail = |error: String| OrgResult {
        facts: None,
        queried_on: None,
        error: Some(error),
        failures: Vec::new(),
    };
    let t = &shared.opts.transport;
    // The realm of the first org server with an FQDN decides, as for its host probe.
    let fqdn = targets
        .iter()
        .find_map(|t| t.fqdn.clone())
        .unwrap_or_default();
    let creds = crate::kerberos_scan::org_credentials(t, &fqdn).await;
    let creds = match creds {
        Ok(c) => c,
        Err(e) => {
            // Each refused password is a failed logon on the account: the lockout guard
            // counts it as it counts a WinRM rejection.
            if e.is_rejected_password() && !t.clients.auth_proven() {
                shared
                    .auth_failures
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            return fail(format!(
                "org query over Remote PowerShell: Kerberos: {e}; {ORG_DATA_FIX}"
            ));
        }
    };
    let tls = if t.https {
        if t.insecure {
            return fail(
                "org query over Remote PowerShell: --insecure is not supported; give the CA with --ca-cert".into(),
            );
        }
        match crate::exchange_ps::tls_config(t.ca_cert.as_deref()) {
            Ok(c) => Some(c),
            Err(e) => return fail(format!("org query over Remote PowerShell: {e}")),
        }
    } else {
        None
    };
    let domain = creds.realm().to_ascii_lowercase();
    let mut errors = Vec::new();
    for target in targets {
        if shared.cancel.is_cancelled() {
            errors.push("interrupted".to_string());
            break;
        }
        progress.org_phase(&target.name);
        let fqdn = if target.name.contains('.') {
            target.name.to_ascii_lowercase()
        } else {
            format!("{}.{domain}", target.name.to_ascii_lowercase())
        };
        let connect = match tokio::net::lookup_host((target.host.as_str(), port)).await {
            Ok(mut addrs) => addrs.next(),
            Err(e) => {
                errors.push(format!(
                    "{}: cannot resolve {}: {e}",
                    target.name, target.host
                ));
                continue;
            }
        };
        let Some(connect) = connect else {
            errors.push(format!("{}: {} has no address", target.name, target.host));
            continue;
        };
        tracing::info!(server = %target.name, %fqdn, "org query over Remote PowerShell");
        match query_org(
            creds.clone(),
            &Endpoint {
                fqdn,
                connect,
                tls: tls.clone(),
            },
            shared.opts.timeout,
        )
        .await
        {
            Ok(facts) => {
                return OrgResult {
                    facts: Some(facts),
                    queried_on: Some(target.name.clone()),
                    error: None,
                    failures: Vec::new(),
                };
            }
            Err(e) => {
                tracing::warn!(server = %target.name, error = %e, "org query failed");
                errors.push(format!("{}: {e}", target.name));
            }
        }
    }
    fail(if targets.is_empty() {
        "no in-scope server to run the org query on".to_string()
    } else {
        format!(
            "org query over Remote PowerShell failed on every server tried: {}",
            errors.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn now() -> String {
        time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    }

    #[test]
    fn org_data_good_malformed_stale_and_foreign() {
        let dir = tempfile::tempdir().unwrap();
        let good = format!(
            "\u{feff}{{\"eems_org_data\":1,\"written\":\"{}\",\"name\":\"Contoso\",\"mitigations_enabled\":true,\
             \"servers\":[{{\"name\":\"EX01\",\"fqdn\":\"ex01.contoso.com\",\"site\":\"HQ\",\"mitigations_applied\":[\"PING1\"],\"mitigations_blocked\":[]}}]}}",
            now()
        );
        let (facts, note) = load_org_data(&write(dir.path(), "good.json", &good)).unwrap();
        assert_eq!(facts.name.as_deref(), Some("Contoso"));
        assert_eq!(facts.servers[0].mitigations_applied, ["PING1"]);
        // Written before the Flighting and audit fields: accepted, the fields unknown.
        assert_eq!(facts.admin_audit, None);
        assert_eq!(facts.servers[0].ring_level, None);

        let newer = good.replace(
            "\"mitigations_blocked\":[]}]}",
            "\"mitigations_blocked\":[],\"when_changed\":\"2026-11-03T04:05:06Z\",\"ring_level\":1,\
             \"last_flighting_run\":null}],\"admin_audit\":{\"window_days\":90,\"entries\":[{\"who\":\"contoso.com/Users/bob\",\
             \"when\":\"2026-11-20T09:30:00Z\",\"cmdlet\":\"Set-OrganizationConfig\",\"object\":\"Contoso\",\
             \"changes\":[{\"name\":\"MitigationsEnabled\",\"value\":\"False\"}]}],\"error\":null}}",
        );
        assert_ne!(newer, good);
        let (facts, _) = load_org_data(&write(dir.path(), "newer.json", &newer)).unwrap();
        let s = &facts.servers[0];
        assert_eq!(s.when_changed.as_deref(), Some("2026-11-03T04:05:06Z"));
        assert_eq!(
            (s.ring_level, s.last_flighting_run.as_deref()),
            (Some(1), None)
        );
        let audit = facts.admin_audit.unwrap();
        assert_eq!(
            audit.entries[0].who.as_deref(),
            Some("contoso.com/Users/bob")
        );
        assert_eq!(audit.entries[0].changes[0].value.as_deref(), Some("False"));
        // An account without the audit role: the file still carries the org facts.
        let refused = good.replace(
            "}]}",
            "}],\"admin_audit\":{\"window_days\":90,\"entries\":[],\"error\":\"The term 'Search-AdminAuditLog' is not recognized\"}}",
        );
        let (facts, _) = load_org_data(&write(dir.path(), "refused.json", &refused)).unwrap();
        assert_eq!(facts.servers.len(), 1);
        assert!(
            facts
                .admin_audit
                .unwrap()
                .error
                .unwrap()
                .contains("not recognized")
        );
        assert!(
            note.contains("good.json") && note.contains("written 20"),
            "{note}"
        );

        let e = load_org_data(&write(dir.path(), "bad.json", "{\"eems_org_data\":1,")).unwrap_err();
        assert!(e.contains("bad.json") && e.contains("line 1"), "{e}");

        let stale = good.replace(&now()[..4], "2001");
        let e = load_org_data(&write(dir.path(), "stale.json", &stale)).unwrap_err();
        assert!(e.contains("older than 24 h"), "{e}");

        // A scan report or another tool's JSON is not org data.
        let e = load_org_data(&write(dir.path(), "other.json", "{\"rows\":[]}")).unwrap_err();
        assert!(e.contains("other.json") && e.contains("org-command"), "{e}");

        let e = load_org_data(&dir.path().join("missing.json")).unwrap_err();
        assert!(e.contains("missing.json"), "{e}");
    }
}
