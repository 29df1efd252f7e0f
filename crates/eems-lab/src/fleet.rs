//! The fleet file: a simulated Exchange organisation, written by hand (crates/eems-lab/fleets/*.toml)
//! or by `eems-lab gen`.
//!
//! Every field has a default so a hand-written fleet stays short; see README "Fleet file".

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::Path;

pub const DEFAULT_DOMAIN: &str = "LAB";
pub const DEFAULT_USER: &str = "administrator";
/// A test fixture, not a secret: the lab's account when the fleet names none.
pub const DEFAULT_PASSWORD: &str = "Lab-Passw0rd!";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    pub org: OrgSpec,
    #[serde(default, rename = "account", skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountSpec>,
    #[serde(default)]
    pub listener: ListenerSpec,
    #[serde(rename = "server")]
    pub servers: Vec<ServerSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSpec {
    pub name: String,
    /// `None` = the property is absent (old EMS build).
    #[serde(default = "some_true", with = "absent_or_bool")]
    pub mitigations_enabled: Option<bool>,
    /// Get-OrganizationConfig throws with this message.
    #[serde(default)]
    pub error: Option<String>,
    /// Get-ExchangeServer throws with this message.
    #[serde(default)]
    pub servers_error: Option<String>,
    /// WinRS sessions are network logons that cannot reach Active Directory (no CredSSP, no
    /// unconstrained delegation), as on a real organisation: the snap-in org probe gets an
    /// Active Directory error and no result. Exchange Remote PowerShell is unaffected (its
    /// cmdlets run as the Exchange Trusted Subsystem). On by default, as on a real
    /// organisation; `false` models one that delegates, for the legacy `winrs-snapin` tests.
    #[serde(default = "yes")]
    pub second_hop_denied: bool,
    /// Search-AdminAuditLog throws with this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_audit_error: Option<String>,
    /// The admin audit log `Search-AdminAuditLog` searches (`[[org.admin_audit]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_audit: Vec<crate::org_evidence::AuditEntrySpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    pub domain: String,
    pub user: String,
    pub password: String,
}

/// WinRM service settings shared by every simulated host (Windows defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerSpec {
    pub http_port: u16,
    pub https_port: u16,
    /// `Service/Auth/Basic`; Basic is accepted over HTTPS only unless `allow_unencrypted`.
    pub basic: bool,
    /// `Service/AllowUnencrypted`.
    pub allow_unencrypted: bool,
    /// `Service/Auth/CbtHardeningLevel`: `None`, `Relaxed` or `Strict`.
    pub cbt_hardening: String,
    /// `Winrs/MaxShellsPerUser`.
    pub max_shells_per_user: u32,
    /// `Winrs/IdleTimeout` in seconds.
    pub idle_timeout_secs: u64,
    /// HTTP status for a plaintext SOAP body on an NTLM-authenticated HTTP connection
    /// (401 as seen for NTLM; 500 as seen for Kerberos).
    pub plaintext_refusal_status: u16,
    /// NTLM accepted at all (`false`: the domain's "Restrict NTLM" policy; NTLMSSP tokens get
    /// 401 on every host, Kerberos still works).
    pub ntlm: bool,
    /// The hosts accept Kerberos: `serve` starts a throwaway MIT realm with the lab
    /// (needs the `kerberos` feature and krb5kdc).
    pub kerberos: bool,
}

impl Default for ListenerSpec {
    fn default() -> Self {
        ListenerSpec {
            http_port: 5985,
            https_port: 5986,
            basic: true,
            allow_unencrypted: false,
            cbt_hardening: "Relaxed".into(),
            max_shells_per_user: 30,
            idle_timeout_secs: 7200,
            plaintext_refusal_status: 401,
            ntlm: true,
            kerberos: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub name: String,
    /// Loopback address the host listens on (127.0.0.0/8 only).
    pub address: Ipv4Addr,
    #[serde(default)]
    pub http_port: Option<u16>,
    #[serde(default)]
    pub https_port: Option<u16>,
    /// Defaults to `<name lower-case>.lab.local`.
    #[serde(default)]
    pub fqdn: Option<String>,
    #[serde(default = "default_site")]
    pub site: String,
    /// `Mailbox` or `Edge` (Edge servers have no EEMS).
    #[serde(default = "default_role")]
    pub role: String,
    /// ExSetup.exe file version, four parts (`15.2.1544.4`).
    #[serde(default = "default_build")]
    pub build: String,
    #[serde(default = "some_true", with = "absent_or_bool")]
    pub mitigations_enabled: Option<bool>,
    #[serde(default)]
    pub mitigations_applied: Vec<String>,
    #[serde(default)]
    pub mitigations_blocked: Vec<String>,
    /// RFC 3339.
    #[serde(default)]
    pub mitigations_applied_time: Option<String>,
    #[serde(default = "some_false", with = "absent_or_bool")]
    pub data_collection_enabled: Option<bool>,
    #[serde(default)]
    pub internet_web_proxy: Option<String>,
    /// The OCS answers only when the host-probe script carries this server's proxy.
    #[serde(default)]
    pub proxy_required: bool,
    /// Whether the OCS endpoint is reachable from this server at all.
    #[serde(default = "yes")]
    pub ocs_reachable: bool,
    /// MSExchangeMitigation is installed.
    #[serde(default = "yes")]
    pub service_installed: bool,
    /// ServiceController Status name (`Running`, `Stopped`, ...).
    #[serde(default = "default_service_status")]
    pub service_status: String,
    /// ServiceController StartType name (`Automatic`, `Manual`, `Disabled`, ...).
    #[serde(default = "default_start_type")]
    pub service_start_type: String,
    /// The Exchange management snap-in is installed (org probe works here).
    #[serde(default = "yes")]
    pub exchange_tools: bool,
    /// Listed by Get-ExchangeServer.
    #[serde(default = "yes")]
    pub in_org: bool,
    /// Written to the inventory CSV by `eems-lab serve --inventory-out`.
    #[serde(default = "yes")]
    pub in_inventory: bool,
    #[serde(default = "default_install_path")]
    pub install_path: String,
    /// `WhenChangedUTC` (RFC 3339); by default `mitigations_applied_time` (EEMS's write was
    /// the last change, as on Microsoft's test data), else [`DEFAULT_WHEN_CHANGED`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_changed: Option<String>,
    #[serde(default)]
    pub faults: Faults,
    /// What host probe v2's evidence part finds (README "Fleet file").
    #[serde(default)]
    pub evidence: crate::evidence::EvidenceSpec,
    /// `RingLevel` and `LastFlightingServiceRunTime` on Get-ExchangeServer.
    #[serde(default, skip_serializing_if = "is_default")]
    pub feature_flighting: crate::org_evidence::FeatureFlightingSpec,
}

/// `WhenChangedUTC` of a server that names neither it nor `mitigations_applied_time`.
pub const DEFAULT_WHEN_CHANGED: &str = "2024-06-03T10:00:00Z";

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Ways a simulated host misbehaves. All off by default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Nothing listens.
    pub down: bool,
    /// Accepts TCP connections and never answers.
    pub hang: bool,
    /// Rejects every credential (401), as for a wrong password.
    pub wrong_password: bool,
    /// The probe prints no result line.
    pub garbage: bool,
    /// The Exchange snap-in is missing: the org probe fails as on a non-Exchange host.
    pub no_snapin: bool,
    /// The command stays silent until this many Receive polls have timed out (w:TimedOut).
    pub timed_out_polls: u32,
    /// Remote execution time before the probe's output, in ms.
    pub exec_ms: u64,
    /// Windows PowerShell 5.1 ConvertTo-Json quirks in the result line.
    pub ps51_quirks: bool,
    /// Banners on stdout and a large CLIXML progress stream on stderr.
    pub noise: bool,
    /// Every authenticated request answers HTTP 500 with an empty body.
    pub http500: bool,
    /// The connection is dropped half-way through the response to the first Command.
    pub drop_mid_response: bool,
    /// Added to every HTTP response, in ms.
    pub latency_ms: u64,
    /// The probe prints output without end.
    pub endless_output: bool,
    /// Exchange's `/PowerShell` endpoint (feature `kerberos`, `exchange_ps`) does not listen.
    pub ps_down: bool,
    /// This host refuses NTLM (Windows' "NTLM blocked"): NTLMSSP tokens get 401.
    pub ntlm_disabled: bool,
}

impl Fleet {
    pub fn load(path: &Path) -> anyhow::Result<Fleet> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read fleet file: {e}", path.display()))?;
        let fleet: Fleet = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: bad fleet file: {e}", path.display()))?;
        fleet
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(fleet)
    }

    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for s in &self.servers {
            if !s.address.is_loopback() {
                return Err(format!(
                    "server {}: address {} is not loopback (127.0.0.0/8)",
                    s.name, s.address
                ));
            }
            if !seen.insert(s.name.to_ascii_lowercase()) {
                return Err(format!("server {} is listed twice", s.name));
            }
            s.evidence
                .validate()
                .map_err(|e| format!("server {}: {e}", s.name))?;
            s.feature_flighting
                .validate()
                .map_err(|e| format!("server {}: {e}", s.name))?;
        }
        for a in &self.org.admin_audit {
            a.validate().map_err(|e| format!("org: {e}"))?;
        }
        Ok(())
    }

    /// The accounts the hosts accept (the default lab account when none is named).
    pub fn accounts(&self) -> Vec<AccountSpec> {
        if self.accounts.is_empty() {
            vec![AccountSpec {
                domain: DEFAULT_DOMAIN.into(),
                user: DEFAULT_USER.into(),
                password: DEFAULT_PASSWORD.into(),
            }]
        } else {
            self.accounts.clone()
        }
    }
}

impl Fleet {
    /// The scanner's inventory of this fleet: `name,address,port,role,site,fqdn` for every
    /// server `keep` accepts, with the HTTP or the HTTPS port.
    pub fn inventory_csv(&self, https: bool, keep: impl Fn(&ServerSpec) -> bool) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record(["name", "address", "port", "role", "site", "fqdn"]);
        for s in self.servers.iter().filter(|s| keep(s)) {
            let port = if https {
                s.https_port(&self.listener)
            } else {
                s.http_port(&self.listener)
            };
            let _ = w.write_record([
                s.name.clone(),
                s.address.to_string(),
                port.to_string(),
                s.role.clone(),
                s.site.clone(),
                // A fleet may give an address as the FQDN Exchange reports (discovery then
                // reaches the lab); an address is no Kerberos name, so the column stays empty.
                eems_core::inventory::as_fqdn(&s.fqdn())
                    .unwrap_or_default()
                    .to_string(),
            ]);
        }
        w.into_inner()
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl ServerSpec {
    pub fn fqdn(&self) -> String {
        self.fqdn
            .clone()
            .unwrap_or_else(|| format!("{}.lab.local", self.name.to_ascii_lowercase()))
    }
    pub fn when_changed(&self) -> String {
        self.when_changed
            .clone()
            .or_else(|| self.mitigations_applied_time.clone())
            .unwrap_or_else(|| DEFAULT_WHEN_CHANGED.into())
    }
    pub fn is_edge(&self) -> bool {
        self.role.to_ascii_lowercase().contains("edge")
    }
    pub fn http_port(&self, l: &ListenerSpec) -> u16 {
        self.http_port.unwrap_or(l.http_port)
    }
    pub fn https_port(&self, l: &ListenerSpec) -> u16 {
        self.https_port.unwrap_or(l.https_port)
    }
}

fn some_true() -> Option<bool> {
    Some(true)
}
fn some_false() -> Option<bool> {
    Some(false)
}
fn yes() -> bool {
    true
}
fn default_site() -> String {
    "Default-First-Site-Name".into()
}
fn default_role() -> String {
    "Mailbox".into()
}
fn default_build() -> String {
    "15.2.1544.4".into()
}
fn default_install_path() -> String {
    r"C:\Program Files\Microsoft\Exchange Server\V15\".into()
}
fn default_service_status() -> String {
    "Running".into()
}
fn default_start_type() -> String {
    "Automatic".into()
}

/// A bool that may also be absent (`"absent"` in the file): the property does not exist
/// on the Exchange build that answers, so the probe reports null.
mod absent_or_bool {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<bool>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_bool(*b),
            None => s.serialize_str("absent"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::B(b) => Ok(Some(b)),
            Raw::S(s) if s == "absent" => Ok(None),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "expected true, false or \"absent\", found \"{s}\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_fleet_loads_and_covers_every_fault() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleets/demo.toml");
        let fleet = Fleet::load(&path).unwrap();
        assert!(fleet.servers.len() >= 20);
        let f = |p: &dyn Fn(&Faults) -> bool| fleet.servers.iter().any(|s| p(&s.faults));
        assert!(f(&|x| x.down) && f(&|x| x.hang) && f(&|x| x.wrong_password));
        assert!(f(&|x| x.garbage) && f(&|x| x.http500) && f(&|x| x.drop_mid_response));
        assert!(f(&|x| x.timed_out_polls > 0) && f(&|x| x.noise) && f(&|x| x.ps51_quirks));
        // The org query's fallback: one /PowerShell down (the snap-in path is legacy).
        assert!(f(&|x| x.ps_down));
        assert!(
            fleet.org.second_hop_denied,
            "the default, as on a real organisation"
        );
        assert!(
            fleet
                .servers
                .iter()
                .any(|s| s.mitigations_enabled.is_none())
        );
        // Every evidence part holds something and fails somewhere.
        let e = |p: &dyn Fn(&crate::evidence::EvidenceSpec) -> bool| {
            fleet.servers.iter().any(|s| p(&s.evidence))
        };
        assert!(e(&|x| x.fetch_errors.is_some()) && e(&|x| x.applied.is_some()));
        assert!(e(&|x| x.events_error.is_some()) && e(&|x| x.service_changes_error.is_some()));
        assert!(e(&|x| x.log_error.is_some()) && e(&|x| x.iis_error.is_some()));
        assert!(e(&|x| !x.service_changes.is_empty()) && e(&|x| x.flighting.is_some()));
        assert!(e(&|x| x
            .iis_rules
            .as_ref()
            .is_some_and(|r| r.iter().any(|r| !r.enabled))));
        // Org-level evidence: a stale Flighting run, a null RingLevel, an audit trail with
        // an entry that switched EEMS off and one outside the 90 days searched.
        let ff = |p: &dyn Fn(&crate::org_evidence::FeatureFlightingSpec) -> bool| {
            fleet.servers.iter().any(|s| p(&s.feature_flighting))
        };
        assert!(ff(&|x| x
            .last_run_hours_ago
            .is_some_and(|h| h > 24.0 * 7.0)));
        assert!(ff(&|x| x.ring_level_null));
        let audit = &fleet.org.admin_audit;
        assert!((3..=5).contains(&audit.len()));
        assert!(audit.iter().any(|a| {
            a.parameters
                .iter()
                .any(|p| p.name == "MitigationsEnabled" && p.value == "False")
        }));
        assert!(audit.iter().any(|a| a.hours_ago > 24.0 * 90.0));
    }

    #[test]
    fn evidence_times_out_of_range_are_refused() {
        for bad in [
            "log_hours_ago = -1.0",
            "log_hours_ago = nan",
            "log_hours_ago = 1e12",
            "fetch_errors = { count = 3, every_hours = 0.0 }",
            "service_changes = [{ hours_ago = inf, id = 7040, message = \"x\" }]",
        ] {
            let text = format!(
                "[org]\nname = \"x\"\n[[server]]\nname = \"A\"\naddress = \"127.0.0.1\"\n[server.evidence]\n{bad}\n"
            );
            let fleet: Fleet = toml::from_str(&text).unwrap();
            let e = fleet.validate().unwrap_err();
            assert!(e.starts_with("server A: evidence "), "{bad}: {e}");
        }
    }

    #[test]
    fn non_loopback_address_is_refused() {
        let text = "[org]\nname = \"x\"\n[[server]]\nname = \"A\"\naddress = \"10.0.0.1\"\n";
        let fleet: Fleet = toml::from_str(text).unwrap();
        assert!(fleet.validate().unwrap_err().contains("not loopback"));
    }
}
