//! The fleet generator for scale tests and demos (`eems-lab gen`).
//!
//! Deterministic from the seed: a hand-written SplitMix64 keeps the output stable across
//! `rand` releases, so a seed named in a bug report reproduces the same fleet.

use crate::evidence::{EventSeries, EvidenceSpec, FlightingSpec, IisRuleSpec, ServiceChangeSpec};
use crate::fleet::{Faults, Fleet, ListenerSpec, OrgSpec, ServerSpec};
use crate::org_evidence::{AuditEntrySpec, AuditParameterSpec};
use std::net::Ipv4Addr;

pub struct GenOptions {
    pub servers: usize,
    pub seed: u64,
    pub latency_ms: u64,
    pub exec_ms: u64,
    /// Also sprinkle transport and output faults over the fleet.
    pub faults: bool,
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, good enough for test data.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const SITES: &[&str] = &[
    "Default-First-Site-Name",
    "Site-Paris",
    "Site-Dublin",
    "Site-Boston",
];
/// Builds that have EEMS and the March 2023 fixes (Exchange 2019 CU14, 2016 CU23, late SUs).
const CURRENT_BUILDS: &[&str] = &["15.2.1544.4", "15.2.1544.14", "15.1.2507.44"];
/// Exchange 2019 CU15, which brought the MSExchangeFlighting service.
const CU15_BUILD: &str = "15.2.1748.10";
/// Before EEMS existed (2019 CU10, 2016 CU21).
const PRE_EEMS_BUILDS: &[&str] = &["15.2.922.7", "15.1.2308.8"];
/// EEMS present, but older than the March 2023 security update (2019 CU12 Jan23SU, 2016 CU23 Nov22SU).
const PRE_MARCH_2023_BUILDS: &[&str] = &["15.2.1118.21", "15.1.2507.17"];
const PROXY: &str = "http://proxy.lab.local:8080";
const HOSTS_PER_ROUND: usize = 256 * 254;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finding {
    Disabled,
    ServiceStopped,
    ServiceManual,
    ServiceMissing,
    OcsUnreachable,
    ProxyRequired,
    Blocked,
    Telemetry,
    PreEems,
    PreMarch2023,
    // Evidence beyond HealthChecker (host probe v2).
    FetchFailing,
    NoFetchEvidence,
    EventLogUnreadable,
    RuleMissing,
    RuleDisabled,
    RuleOrphaned,
    StartTypeChanged,
    FlightingStopped,
    /// Last: the random pass below never picks it.
    Edge,
}

const FINDINGS: &[Finding] = &[
    Finding::Disabled,
    Finding::ServiceStopped,
    Finding::ServiceManual,
    Finding::ServiceMissing,
    Finding::OcsUnreachable,
    Finding::ProxyRequired,
    Finding::Blocked,
    Finding::Telemetry,
    Finding::PreEems,
    Finding::PreMarch2023,
    Finding::FetchFailing,
    Finding::NoFetchEvidence,
    Finding::EventLogUnreadable,
    Finding::RuleMissing,
    Finding::RuleDisabled,
    Finding::RuleOrphaned,
    Finding::StartTypeChanged,
    Finding::FlightingStopped,
    Finding::Edge,
];

#[derive(Debug, Clone, Copy)]
enum FaultKind {
    Down,
    Hang,
    WrongPassword,
    Garbage,
    Http500,
    DropMidResponse,
    TimedOutPolls,
    Noise,
    Ps51,
}

const FAULTS: &[FaultKind] = &[
    FaultKind::Down,
    FaultKind::Hang,
    FaultKind::WrongPassword,
    FaultKind::Garbage,
    FaultKind::Http500,
    FaultKind::DropMidResponse,
    FaultKind::TimedOutPolls,
    FaultKind::Noise,
    FaultKind::Ps51,
];

fn address(i: usize) -> (Ipv4Addr, Option<u16>, Option<u16>) {
    let slot = i % HOSTS_PER_ROUND;
    let round = i / HOSTS_PER_ROUND;
    let x = (slot / 254) as u8;
    let y = (slot % 254 + 1) as u8;
    // Past 65,024 hosts the addresses repeat, each round on its own pair of ports.
    let ports = if round == 0 {
        (None, None)
    } else {
        let base = 20_000u32 + 2 * round as u32;
        (u16::try_from(base).ok(), u16::try_from(base + 1).ok())
    };
    (Ipv4Addr::new(127, 1, x, y), ports.0, ports.1)
}

fn pick<'a>(rng: &mut SplitMix64, from: &[&'a str]) -> &'a str {
    from[rng.below(from.len() as u64) as usize]
}

fn healthy(name: String, i: usize, rng: &mut SplitMix64, o: &GenOptions) -> ServerSpec {
    let (address, http_port, https_port) = address(i);
    let day = 20 + rng.below(9);
    let minute = rng.below(60);
    ServerSpec {
        name,
        address,
        http_port,
        https_port,
        fqdn: None,
        site: pick(rng, SITES).to_string(),
        role: "Mailbox".into(),
        build: pick(rng, CURRENT_BUILDS).to_string(),
        mitigations_enabled: Some(true),
        mitigations_applied: vec!["PING1".into()],
        mitigations_blocked: Vec::new(),
        mitigations_applied_time: Some(format!("2024-11-{day:02}T09:{minute:02}:00Z")),
        data_collection_enabled: Some(false),
        // Some healthy servers sit behind a proxy they do not strictly need.
        internet_web_proxy: rng.chance(15).then(|| PROXY.to_string()),
        proxy_required: false,
        ocs_reachable: true,
        service_installed: true,
        service_status: "Running".into(),
        service_start_type: "Automatic".into(),
        exchange_tools: true,
        in_org: true,
        in_inventory: true,
        install_path: r"C:\Program Files\Microsoft\Exchange Server\V15\".into(),
        faults: Faults {
            latency_ms: o.latency_ms,
            exec_ms: o.exec_ms,
            ..Faults::default()
        },
        evidence: EvidenceSpec {
            // EEMS logs every hourly cycle: the newest write is under an hour old.
            log_hours_ago: Some(rng.below(60) as f64 / 60.0),
            ..EvidenceSpec::default()
        },
        // WhenChangedUTC follows MitigationsAppliedTime; Flighting follows the build.
        when_changed: None,
        feature_flighting: Default::default(),
    }
}

/// Event 1008 every hour for `hours`, the newest `newest` hours ago.
fn hourly_errors(hours: u64, newest: f64) -> Option<EventSeries> {
    Some(EventSeries {
        count: hours,
        newest_hours_ago: newest,
        every_hours: 1.0,
        message: None,
    })
}

fn m1_rule(enabled: bool) -> IisRuleSpec {
    IisRuleSpec {
        name: "EEMS M1.1 PowerShell - inbound".into(),
        section: "rules".into(),
        enabled,
        file: "Default Web Site web.config".into(),
    }
}

fn apply_finding(s: &mut ServerSpec, f: Finding, rng: &mut SplitMix64) {
    match f {
        Finding::Disabled => {
            s.mitigations_enabled = Some(false);
            s.mitigations_applied.clear();
            s.mitigations_applied_time = None;
        }
        Finding::ServiceStopped => s.service_status = "Stopped".into(),
        Finding::ServiceManual => {
            s.service_start_type = "Manual".into();
            s.service_status = "Stopped".into();
        }
        Finding::ServiceMissing => {
            s.service_installed = false;
            s.mitigations_applied.clear();
            s.mitigations_applied_time = None;
        }
        Finding::OcsUnreachable => {
            s.ocs_reachable = false;
            s.mitigations_applied.clear();
            s.mitigations_applied_time = None;
        }
        Finding::ProxyRequired => {
            s.proxy_required = true;
            s.internet_web_proxy = Some(PROXY.into());
        }
        Finding::Blocked => {
            s.mitigations_blocked = vec!["PING1".into()];
            s.mitigations_applied.clear();
        }
        Finding::Telemetry => s.data_collection_enabled = Some(true),
        Finding::PreEems => {
            s.build = pick(rng, PRE_EEMS_BUILDS).to_string();
            s.mitigations_enabled = None;
            s.data_collection_enabled = None;
            s.mitigations_applied.clear();
            s.mitigations_applied_time = None;
            s.service_installed = false;
        }
        Finding::PreMarch2023 => {
            s.build = pick(rng, PRE_MARCH_2023_BUILDS).to_string();
            // What such a server logs every hour since the certificate change.
            s.evidence.fetch_errors = hourly_errors(24 * 30, 0.3);
            s.evidence.log_problem_lines = vec![
                "FetchMitigation,S:LogLevel=Warning;S:Message=Connection attempted against untrusted endpoint".into(),
            ];
        }
        Finding::FetchFailing => {
            s.evidence.fetch_errors = hourly_errors(1 + rng.below(72), rng.below(50) as f64 / 60.0);
            s.evidence.log_problem_lines = vec![
                "FetchMitigation,S:LogLevel=Error;S:Message=Exception encountered while fetching mitigations : One or more errors occurred.".into(),
            ];
        }
        Finding::NoFetchEvidence => s.evidence.log_hours_ago = Some(24.0 * (2 + rng.below(20)) as f64),
        Finding::EventLogUnreadable => {
            s.evidence.events_error = Some("The RPC server is unavailable".into())
        }
        Finding::RuleMissing => {
            s.mitigations_applied.push("M1.1.0".into());
            s.evidence.iis_rules = Some(Vec::new());
        }
        Finding::RuleDisabled => {
            s.mitigations_applied.push("M1.1.0".into());
            s.evidence.iis_rules = Some(vec![m1_rule(false)]);
        }
        Finding::RuleOrphaned => s.evidence.iis_rules = Some(vec![m1_rule(true)]),
        Finding::StartTypeChanged => s.evidence.service_changes = vec![ServiceChangeSpec {
            hours_ago: rng.below(24 * 29) as f64,
            id: 7040,
            message: "The start type of the Microsoft Exchange Emergency Mitigation Service service was changed from disabled to auto start.".into(),
        }],
        Finding::FlightingStopped => {
            s.build = CU15_BUILD.into();
            s.evidence.flighting = Some(FlightingSpec {
                status: "Stopped".into(),
                start_type: "Disabled".into(),
            });
            // Stopped twelve days ago: Get-ExchangeServer shows its last run from then.
            s.feature_flighting.last_run_hours_ago = Some(24.0 * 12.0);
        }
        Finding::Edge => {
            s.role = "Edge".into();
            s.site = SITES[0].into();
            s.mitigations_enabled = None;
            s.data_collection_enabled = None;
            s.mitigations_applied.clear();
            s.mitigations_applied_time = None;
            s.service_installed = false;
            s.exchange_tools = false;
        }
    }
}

fn apply_fault(s: &mut ServerSpec, f: FaultKind, rng: &mut SplitMix64) {
    let x = &mut s.faults;
    match f {
        FaultKind::Down => x.down = true,
        FaultKind::Hang => x.hang = true,
        FaultKind::WrongPassword => x.wrong_password = true,
        FaultKind::Garbage => x.garbage = true,
        FaultKind::Http500 => x.http500 = true,
        FaultKind::DropMidResponse => x.drop_mid_response = true,
        FaultKind::TimedOutPolls => x.timed_out_polls = 1 + rng.below(2) as u32,
        FaultKind::Noise => x.noise = true,
        FaultKind::Ps51 => x.ps51_quirks = true,
    }
}

/// The generated organisation's admin audit log: EEMS switched off for a night and back on,
/// one server's block list set, and a change older than the 90 days searched.
fn audit_trail() -> Vec<AuditEntrySpec> {
    let entry = |who: &str, days: f64, cmdlet: &str, object: &str, name: &str, value: &str| {
        AuditEntrySpec {
            caller: format!("lab.local/Users/{who}"),
            hours_ago: days * 24.0,
            cmdlet_name: cmdlet.into(),
            object_modified: object.into(),
            parameters: vec![AuditParameterSpec {
                name: name.into(),
                value: value.into(),
            }],
        }
    };
    vec![
        entry(
            "opsadmin",
            20.0,
            "Set-OrganizationConfig",
            "LabOrg",
            "MitigationsEnabled",
            "False",
        ),
        entry(
            "opsadmin",
            19.5,
            "Set-OrganizationConfig",
            "LabOrg",
            "MitigationsEnabled",
            "True",
        ),
        entry(
            "exadmin",
            45.0,
            "Set-ExchangeServer",
            "EX0002",
            "MitigationsBlocked",
            "M2",
        ),
        entry(
            "former",
            120.0,
            "Set-OrganizationConfig",
            "LabOrg",
            "MitigationsEnabled",
            "True",
        ),
    ]
}

/// Shuffles `0..n` with Fisher–Yates.
fn permutation(n: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

pub fn generate(o: &GenOptions) -> Fleet {
    let mut rng = SplitMix64::new(o.seed);
    let n = o.servers;
    let width = n.to_string().len().max(4);
    let mut servers: Vec<ServerSpec> = (0..n)
        .map(|i| healthy(format!("EX{:0width$}", i + 1), i, &mut rng, o))
        .collect();

    // Server 1 stays healthy and fault-free: it is where an operator starts (org probe).
    // Every finding appears at least once when the fleet is big enough, at shuffled places,
    // then a further ~25% of servers get a random one; Edge servers stay one or two.
    let order: Vec<usize> = permutation(n.saturating_sub(1), &mut rng)
        .into_iter()
        .map(|i| i + 1)
        .collect();
    let mut slots = order.iter().copied();
    let edges_wanted = if n >= 50 { 2 } else { 1 };
    for f in FINDINGS
        .iter()
        .chain(std::iter::repeat_n(&Finding::Edge, edges_wanted - 1))
    {
        if let Some(i) = slots.next() {
            apply_finding(&mut servers[i], *f, &mut rng);
        }
    }
    for i in slots.by_ref().collect::<Vec<_>>() {
        if rng.chance(25) {
            let f = FINDINGS[rng.below(FINDINGS.len() as u64 - 1) as usize]; // never Edge
            apply_finding(&mut servers[i], f, &mut rng);
        }
    }

    if o.faults {
        let order = permutation(n.saturating_sub(1), &mut rng);
        let mut slots = order.into_iter().map(|i| i + 1);
        for f in FAULTS {
            if let Some(i) = slots.next() {
                apply_fault(&mut servers[i], *f, &mut rng);
            }
        }
        for i in slots.collect::<Vec<_>>() {
            if rng.chance(8) {
                let f = FAULTS[rng.below(FAULTS.len() as u64) as usize];
                apply_fault(&mut servers[i], f, &mut rng);
            }
        }
    }

    Fleet {
        org: OrgSpec {
            name: "LabOrg".into(),
            mitigations_enabled: Some(true),
            error: None,
            servers_error: None,
            // As on a real organisation: only the legacy snap-in org query would need the hop.
            second_hop_denied: true,
            admin_audit_error: None,
            admin_audit: audit_trail(),
        },
        accounts: Vec::new(),
        listener: ListenerSpec::default(),
        servers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn opts(servers: usize, seed: u64, faults: bool) -> GenOptions {
        GenOptions {
            servers,
            seed,
            latency_ms: 5,
            exec_ms: 40,
            faults,
        }
    }

    #[test]
    fn deterministic_unique_valid() {
        let a = toml::to_string(&generate(&opts(300, 7, true))).expect("serialises");
        let b = toml::to_string(&generate(&opts(300, 7, true))).expect("serialises");
        assert_eq!(a, b);
        let c = toml::to_string(&generate(&opts(300, 8, true))).expect("serialises");
        assert_ne!(a, c);

        let f = generate(&opts(300, 7, true));
        assert_eq!(f.servers.len(), 300);
        f.validate().expect("valid");
        let names: HashSet<_> = f.servers.iter().map(|s| s.name.clone()).collect();
        assert_eq!(names.len(), 300);
        let addrs: HashSet<_> = f.servers.iter().map(|s| (s.address, s.http_port)).collect();
        assert_eq!(addrs.len(), 300);
        for s in &f.servers {
            let o = s.address.octets();
            assert_eq!((o[0], o[1]), (127, 1));
            assert!(o[3] != 0 && o[3] != 255);
            assert_eq!((s.faults.latency_ms, s.faults.exec_ms), (5, 40));
        }
        assert_eq!(f.servers[0].name, "EX0001");
        assert!(
            f.servers[0].faults
                == Faults {
                    latency_ms: 5,
                    exec_ms: 40,
                    ..Faults::default()
                }
        );

        // A round trip through the file format keeps it valid.
        let back: Fleet = toml::from_str(&a).expect("parses back");
        back.validate().expect("valid");
    }

    #[test]
    fn mix_of_findings_and_faults() {
        let f = generate(&opts(200, 1, true));
        let s = &f.servers;
        let count = |p: &dyn Fn(&ServerSpec) -> bool| s.iter().filter(|x| p(x)).count();
        assert!(
            count(&|x| x.mitigations_applied == ["PING1"]) > 100,
            "mostly healthy"
        );
        assert!(count(&|x| x.mitigations_enabled == Some(false)) >= 1);
        assert!(count(&|x| x.service_status == "Stopped") >= 1);
        assert!(count(&|x| x.service_start_type == "Manual") >= 1);
        assert!(count(&|x| !x.service_installed && !x.is_edge()) >= 1);
        assert!(count(&|x| !x.ocs_reachable) >= 1);
        assert!(count(&|x| x.proxy_required && x.internet_web_proxy.is_some()) >= 1);
        assert!(count(&|x| !x.mitigations_blocked.is_empty()) >= 1);
        assert!(count(&|x| x.data_collection_enabled == Some(true)) >= 1);
        assert!(
            count(&|x| x.build.starts_with("15.2.922") || x.build.starts_with("15.1.2308")) >= 1
        );
        assert!(count(&|x| x.build == "15.2.1118.21" || x.build == "15.1.2507.17") >= 1);
        assert_eq!(count(&|x| x.is_edge()), 2);
        let e = |x: &ServerSpec| x.evidence.clone();
        assert!(
            count(&|x| e(x).fetch_errors.is_some()) >= 2,
            "failing and pre-March 2023"
        );
        assert!(count(&|x| e(x).log_hours_ago.is_some_and(|h| h > 24.0)) >= 1);
        assert!(count(&|x| e(x).events_error.is_some()) >= 1);
        assert!(count(&|x| e(x).iis_rules.as_ref().is_some_and(|r| r.is_empty())) >= 1);
        assert!(
            count(&|x| e(x)
                .iis_rules
                .as_ref()
                .is_some_and(|r| r.iter().any(|r| !r.enabled)))
                >= 1
        );
        assert!(
            count(&|x| e(x).iis_rules.is_some()
                && !x.mitigations_applied.iter().any(|m| m.starts_with("M1")))
                >= 1
        );
        assert!(count(&|x| !e(x).service_changes.is_empty()) >= 1);
        assert!(count(&|x| e(x).flighting.is_some()) >= 1);
        // A stopped MSExchangeFlighting shows on Get-ExchangeServer as an old last run.
        let now = time::OffsetDateTime::now_utc();
        assert!(
            count(&|x| e(x).flighting.is_some_and(|f| f.status == "Stopped")
                && x.feature_flighting.last_run(&x.build, now).is_some()
                && x.feature_flighting.last_run_hours_ago > Some(24.0 * 7.0))
                >= 1
        );
        assert!(f.org.admin_audit.len() >= 3);
        assert!(f.validate().is_ok());
        assert!(count(&|x| x.faults.down) >= 1);
        assert!(count(&|x| x.faults.hang) >= 1);
        assert!(count(&|x| x.faults.wrong_password) >= 1);
        assert!(count(&|x| x.faults.garbage) >= 1);
        assert!(count(&|x| x.faults.http500) >= 1);
        assert!(count(&|x| x.faults.drop_mid_response) >= 1);
        assert!(count(&|x| x.faults.timed_out_polls > 0) >= 1);
        assert!(count(&|x| x.faults.noise) >= 1);
        assert!(count(&|x| x.faults.ps51_quirks) >= 1);
        assert_eq!(f.org.mitigations_enabled, Some(true));

        let clean = generate(&opts(200, 1, false));
        assert!(clean.servers.iter().all(|x| x.faults
            == Faults {
                latency_ms: 5,
                exec_ms: 40,
                ..Faults::default()
            }));
    }

    #[test]
    fn tiny_and_huge() {
        assert!(generate(&opts(0, 1, true)).servers.is_empty());
        assert_eq!(generate(&opts(1, 1, true)).servers.len(), 1);
        let big = generate(&opts(HOSTS_PER_ROUND + 10, 3, false));
        big.validate().expect("valid");
        let last = &big.servers[HOSTS_PER_ROUND + 9];
        assert_eq!(last.address, big.servers[9].address);
        assert_ne!(last.http_port, big.servers[9].http_port);
        assert_eq!(last.name, format!("EX{:05}", HOSTS_PER_ROUND + 10));
    }
}
