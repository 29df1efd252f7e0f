//! Exchange build numbers: parsing, product mapping, the HealthChecker EEMS gate and the
//! March 2023 certificate floor.
//!
//! Sources (see `shared/reference/healthchecker-eems.md` §1.5, §9 and `eems-facts.md` §5, §10):
//! - product mapping and gate builds: CSS-Exchange `Shared/Get-ExchangeBuildVersionInformation.ps1`
//!   and `Shared/CompareExchangeBuildLevel.ps1` at commit f88378b1e7a2;
//! - March 2023 SU builds: the same file's SU list;
//! - the floor itself: Exchange Team blog, 2025-01-24, "Exchange Emergency Mitigation Service
//!   might not work for servers significantly out of date".

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A four-part Exchange build number, e.g. `15.2.1544.4`.
///
/// Field order matters: the derived `Ord` compares major, minor, build, revision in that order,
/// exactly like `System.Version`, which is what HealthChecker compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExchangeBuild {
    pub major: u32,
    pub minor: u32,
    pub build: u32,
    pub revision: u32,
}

impl ExchangeBuild {
    pub const fn new(major: u32, minor: u32, build: u32, revision: u32) -> Self {
        Self {
            major,
            minor,
            build,
            revision,
        }
    }
}

impl fmt::Display for ExchangeBuild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.major, self.minor, self.build, self.revision
        )
    }
}

/// Serialized as its display form (`"15.2.1544.4"`), which is what a report reader expects.
impl Serialize for ExchangeBuild {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a build string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not an Exchange build number: {input:?} (expected 15.2.1544.4, 15.02.1544.004 or \
     'Version 15.2 (Build 1544.4)')"
)]
pub struct BuildParseError {
    pub input: String,
}

impl FromStr for ExchangeBuild {
    type Err = BuildParseError;

    /// Accepts the three forms the probes deliver:
    /// - dotted `15.2.1544.4`;
    /// - ExSetup.exe's zero-padded FileVersion `15.02.1544.004`;
    /// - `Get-ExchangeServer`'s AdminDisplayVersion `Version 15.2 (Build 1544.4)`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || BuildParseError {
            input: crate::text::excerpt(s, 80),
        };
        let t = s.trim();
        let parts: Vec<&str> = if let Some(rest) = strip_prefix_ci(t, "Version ") {
            // `15.2 (Build 1544.4)`
            let (mm, tail) = rest.split_once('(').ok_or_else(err)?;
            let tail = tail.trim();
            let tail = tail.strip_suffix(')').ok_or_else(err)?;
            let br = strip_prefix_ci(tail.trim(), "Build ").ok_or_else(err)?;
            let mut v: Vec<&str> = mm.trim().split('.').collect();
            v.extend(br.trim().split('.'));
            v
        } else {
            t.split('.').collect()
        };
        if parts.len() != 4 {
            return Err(err());
        }
        let mut n = [0u32; 4];
        for (slot, p) in n.iter_mut().zip(&parts) {
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            *slot = p.parse().map_err(|_| err())?;
        }
        Ok(Self::new(n[0], n[1], n[2], n[3]))
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// The Exchange product line, named as HealthChecker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Product {
    Exchange2013,
    Exchange2016,
    Exchange2019,
    ExchangeSE,
    Unknown,
}

impl Product {
    pub fn label(self) -> &'static str {
        match self {
            Product::Exchange2013 => "Exchange 2013",
            Product::Exchange2016 => "Exchange 2016",
            Product::Exchange2019 => "Exchange 2019",
            Product::ExchangeSE => "Exchange SE",
            Product::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl Serialize for Product {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

/// First SE build number: 15.2 builds from here on are Exchange SE (HealthChecker's rule; this
/// includes SE pre-RTM builds 15.2.2562.0–.16).
const SE_FIRST_BUILD: u32 = 2562;

/// 2019 CU15 (15.2.1748.x), the first build with Feature Flighting (SE has it too).
const FLIGHTING_FIRST_BUILD: u32 = 1748;

/// Whether the build has Feature Flighting (`RingLevel`, MSExchangeFlighting): 2019 CU15+
/// and SE, the builds HealthChecker shows its Feature Flighting block for.
pub fn has_feature_flighting(b: ExchangeBuild) -> bool {
    (b.major, b.minor) == (15, 2) && b.build >= FLIGHTING_FIRST_BUILD
}

/// HealthChecker's `Get-ExchangeBuildVersionInformation` mapping.
pub fn product(b: ExchangeBuild) -> Product {
    match (b.major, b.minor) {
        (15, 2) if b.build >= SE_FIRST_BUILD => Product::ExchangeSE,
        (15, 2) => Product::Exchange2019,
        (15, 1) => Product::Exchange2016,
        (15, 0) => Product::Exchange2013,
        _ => Product::Unknown,
    }
}

/// The first build of each product that ships EEMS, with the release name used in messages.
pub const EEMS_MIN_2016: ExchangeBuild = ExchangeBuild::new(15, 1, 2375, 7);
pub const EEMS_MIN_2019: ExchangeBuild = ExchangeBuild::new(15, 2, 986, 5);
pub const EEMS_MIN_SE: ExchangeBuild = ExchangeBuild::new(15, 2, 2562, 17);

/// The EEMS build of the product `b` belongs to, with its release name (`CU22`, `CU11`, `RTM`).
/// `None` for Exchange 2013 and unknown products, which never have EEMS.
pub fn eems_min_build(b: ExchangeBuild) -> Option<(ExchangeBuild, &'static str)> {
    match product(b) {
        Product::Exchange2016 => Some((EEMS_MIN_2016, "CU22")),
        Product::Exchange2019 => Some((EEMS_MIN_2019, "CU11")),
        Product::ExchangeSE => Some((EEMS_MIN_SE, "RTM")),
        Product::Exchange2013 | Product::Unknown => None,
    }
}

/// HealthChecker's build gate (§2.0): the product must match and the build be at least the
/// product's first EEMS build. Because the product is decided first, an SE pre-RTM build
/// (15.2.2562.0–.16) fails although it is numerically above the 2019 gate.
pub fn eems_gate(b: ExchangeBuild) -> bool {
    eems_min_build(b).is_some_and(|(min, _)| b >= min)
}

/// Can this build still fetch mitigations after the January 2025 OCS certificate change?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchTier {
    /// No EEMS on this build (below the gate, Exchange 2013, unknown product).
    NotApplicable,
    /// EEMS present, but the build predates its CU's March 2023 SU: cannot fetch since
    /// January 2025.
    CannotFetch,
    /// Exactly the March 2023 SU. Microsoft says "newer than March 2023", which is ambiguous at
    /// the boundary (eems-facts §5), so this is a warning tier, not a pass.
    AtFloor,
    /// Newer than the March 2023 SU of its CU, or a CU released after March 2023.
    Ok,
}

/// Where the March 2023 floor lies within one CU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CuFloor {
    /// The CU got no March 2023 SU: every build of it is below the floor.
    WholeCuBelow,
    /// The revision of the CU's March 2023 SU.
    Mar23Su(u32),
    /// The CU was released after March 2023: every build of it is above the floor.
    WholeCuAbove,
}

/// One CU of the floor table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CuFloorEntry {
    pub product: Product,
    pub cu: &'static str,
    /// `major.minor.build` of the CU (the revision varies with its SUs).
    pub major: u32,
    pub minor: u32,
    pub build: u32,
    pub floor: CuFloor,
}

/// The March 2023 floor, per CU that has EEMS, in ascending build order per product.
///
/// Sources: CSS-Exchange `Shared/Get-ExchangeBuildVersionInformation.ps1` at f88378b1e7a2
/// (SU lists), summarised in `eems-facts.md` §10:
/// - 2016 CU22 (15.1.2375.x): SUs Oct21 .12 … Nov22 .37; no March 2023 SU exists for CU22.
/// - 2016 CU23 (15.1.2507.x): Mar23 SU 15.1.2507.23.
/// - 2019 CU11 (15.2.986.x): Mar23 SU 15.2.986.42.
/// - 2019 CU12 (15.2.1118.x): Mar23 SU 15.2.1118.26.
/// - 2019 CU13 (15.2.1258.12, released May 2023) and later, SE RTM (15.2.2562.17, 2025): after
///   March 2023.
pub const MARCH_2023_FLOOR: &[CuFloorEntry] = &[
    CuFloorEntry {
        product: Product::Exchange2016,
        cu: "CU22",
        major: 15,
        minor: 1,
        build: 2375,
        floor: CuFloor::WholeCuBelow,
    },
    CuFloorEntry {
        product: Product::Exchange2016,
        cu: "CU23",
        major: 15,
        minor: 1,
        build: 2507,
        floor: CuFloor::Mar23Su(23),
    },
    CuFloorEntry {
        product: Product::Exchange2019,
        cu: "CU11",
        major: 15,
        minor: 2,
        build: 986,
        floor: CuFloor::Mar23Su(42),
    },
    CuFloorEntry {
        product: Product::Exchange2019,
        cu: "CU12",
        major: 15,
        minor: 2,
        build: 1118,
        floor: CuFloor::Mar23Su(26),
    },
    CuFloorEntry {
        product: Product::Exchange2019,
        cu: "CU13",
        major: 15,
        minor: 2,
        build: 1258,
        floor: CuFloor::WholeCuAbove,
    },
    CuFloorEntry {
        product: Product::ExchangeSE,
        cu: "RTM",
        major: 15,
        minor: 2,
        build: 2562,
        floor: CuFloor::WholeCuAbove,
    },
];

/// The floor-table entry `b` falls under: the last CU of the same product whose build number
/// is ≤ `b.build`, plus whether a later CU of that product is listed.
fn floor_entry(b: ExchangeBuild) -> Option<(&'static CuFloorEntry, bool)> {
    let p = product(b);
    let same: Vec<&CuFloorEntry> = MARCH_2023_FLOOR
        .iter()
        .filter(|e| e.product == p && e.major == b.major && e.minor == b.minor)
        .collect();
    let idx = same.iter().rposition(|e| e.build <= b.build)?;
    Some((same[idx], idx + 1 < same.len()))
}

/// The March 2023 SU build of the CU `b` belongs to, when that CU has one.
pub fn march_2023_su(b: ExchangeBuild) -> Option<ExchangeBuild> {
    match floor_entry(b)? {
        (e, _) if e.build == b.build => match e.floor {
            CuFloor::Mar23Su(rev) => Some(ExchangeBuild::new(e.major, e.minor, e.build, rev)),
            _ => None,
        },
        _ => None,
    }
}

/// Classifies `b` against the March 2023 floor (eems-facts §5, §10).
///
/// Build numbers not in the table (private or pre-release builds between two listed CUs) are
/// treated like the older CU's pre-March-2023 builds unless that CU is wholly after March 2023;
/// a build newer than the last listed CU of its product is `Ok`.
pub fn fetch_tier(b: ExchangeBuild) -> FetchTier {
    if !eems_gate(b) {
        return FetchTier::NotApplicable;
    }
    let Some((entry, later_listed)) = floor_entry(b) else {
        return FetchTier::NotApplicable;
    };
    if entry.build != b.build {
        return match entry.floor {
            CuFloor::WholeCuAbove => FetchTier::Ok,
            _ if !later_listed => FetchTier::Ok,
            _ => FetchTier::CannotFetch,
        };
    }
    match entry.floor {
        CuFloor::WholeCuBelow => FetchTier::CannotFetch,
        CuFloor::WholeCuAbove => FetchTier::Ok,
        CuFloor::Mar23Su(rev) => match b.revision.cmp(&rev) {
            std::cmp::Ordering::Less => FetchTier::CannotFetch,
            std::cmp::Ordering::Equal => FetchTier::AtFloor,
            std::cmp::Ordering::Greater => FetchTier::Ok,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> ExchangeBuild {
        s.parse().unwrap()
    }

    #[test]
    fn parses_all_three_forms() {
        let want = ExchangeBuild::new(15, 2, 1544, 4);
        for s in [
            "15.2.1544.4",
            "15.02.1544.004",
            "Version 15.2 (Build 1544.4)",
            "  version 15.2 (build 1544.4)  ",
            "Version 15.02 ( Build 1544.004 )",
        ] {
            assert_eq!(s.parse::<ExchangeBuild>(), Ok(want), "{s}");
        }
        assert_eq!(b("15.02.0986.005"), ExchangeBuild::new(15, 2, 986, 5));
        assert_eq!(b("15.01.2375.007"), ExchangeBuild::new(15, 1, 2375, 7));
        assert_eq!(b("Version 15.1 (Build 2375.7)"), EEMS_MIN_2016);
    }

    #[test]
    fn rejects_garbage_with_clear_error() {
        for s in [
            "",
            "15.2.1544",
            "15.2.1544.4.1",
            "15.2.x.4",
            "15..1544.4",
            "Version 15.2",
            "Version 15.2 (Build 1544)",
            "+15.2.1544.4",
            "15.2.1544.99999999999",
            "١٥.2.1544.4",
        ] {
            let e = s.parse::<ExchangeBuild>().unwrap_err();
            assert!(
                e.to_string().contains("not an Exchange build number"),
                "{e}"
            );
        }
    }

    #[test]
    fn display_and_order() {
        assert_eq!(b("15.02.1544.004").to_string(), "15.2.1544.4");
        assert!(b("15.2.986.10") > b("15.2.986.9"));
        assert!(b("15.2.1118.7") > b("15.2.986.42"));
        assert_eq!(
            serde_json::to_string(&b("15.2.1544.4")).unwrap(),
            "\"15.2.1544.4\""
        );
    }

    #[test]
    fn product_mapping() {
        let cases = [
            ("15.0.1497.2", Product::Exchange2013, "Exchange 2013"),
            ("15.1.2507.6", Product::Exchange2016, "Exchange 2016"),
            ("15.2.1748.10", Product::Exchange2019, "Exchange 2019"),
            ("15.2.2561.99", Product::Exchange2019, "Exchange 2019"),
            ("15.2.2562.0", Product::ExchangeSE, "Exchange SE"),
            ("15.2.2562.17", Product::ExchangeSE, "Exchange SE"),
            ("14.3.513.0", Product::Unknown, "Unknown"),
            ("15.3.1.1", Product::Unknown, "Unknown"),
        ];
        for (s, p, label) in cases {
            assert_eq!(product(b(s)), p, "{s}");
            assert_eq!(p.label(), label);
        }
    }

    #[test]
    fn gate_table() {
        let cases = [
            ("15.0.1497.48", false), // Exchange 2013
            ("15.1.2308.8", false),  // 2016 CU21
            ("15.1.2375.6", false),  // just below CU22
            ("15.1.2375.7", true),   // 2016 CU22
            ("15.1.2507.6", true),   // 2016 CU23
            ("15.2.922.7", false),   // 2019 CU10
            ("15.2.986.4", false),   // just below CU11
            ("15.2.986.5", true),    // 2019 CU11
            ("15.2.1748.10", true),  // 2019 CU15
            ("15.2.2562.0", false),  // SE pre-RTM
            ("15.2.2562.16", false), // SE pre-RTM, last
            ("15.2.2562.17", true),  // SE RTM
            ("15.2.2562.37", true),  // SE Feb26 SU
            ("15.2.2600.1", true),   // a later SE CU
            ("16.0.1.1", false),     // unknown product
            ("14.3.513.0", false),   // Exchange 2010
        ];
        for (s, want) in cases {
            assert_eq!(eems_gate(b(s)), want, "{s}");
        }
    }

    #[test]
    fn fetch_tier_table() {
        use FetchTier::*;
        let cases = [
            ("15.1.2308.8", NotApplicable),
            ("15.0.1497.48", NotApplicable),
            ("15.2.2562.16", NotApplicable),
            ("15.1.2375.7", CannotFetch),  // 2016 CU22 RTM
            ("15.1.2375.37", CannotFetch), // 2016 CU22 Nov22 SU, the last one
            ("15.1.2507.6", CannotFetch),  // 2016 CU23 RTM
            ("15.1.2507.22", CannotFetch),
            ("15.1.2507.23", AtFloor), // 2016 CU23 Mar23 SU
            ("15.1.2507.24", Ok),
            ("15.1.2507.66", Ok),        // Feb26 SU
            ("15.2.986.5", CannotFetch), // 2019 CU11 RTM
            ("15.2.986.41", CannotFetch),
            ("15.2.986.42", AtFloor), // 2019 CU11 Mar23 SU
            ("15.2.986.43", Ok),
            ("15.2.1118.7", CannotFetch), // 2019 CU12 RTM
            ("15.2.1118.26", AtFloor),    // 2019 CU12 Mar23 SU
            ("15.2.1118.40", Ok),         // Nov23 SU
            ("15.2.1258.12", Ok),         // 2019 CU13
            ("15.2.1544.4", Ok),          // CU14
            ("15.2.1748.10", Ok),         // CU15
            ("15.2.2562.17", Ok),         // SE RTM
            // unlisted builds between listed CUs: the older CU's pre-floor rule
            ("15.1.2400.1", CannotFetch),
            ("15.2.1000.1", CannotFetch),
            ("15.2.1200.1", CannotFetch),
            // newer than the last listed CU of the product
            ("15.1.2600.1", Ok),
        ];
        for (s, want) in cases {
            assert_eq!(fetch_tier(b(s)), want, "{s}");
        }
    }

    #[test]
    fn march_2023_su_lookup() {
        assert_eq!(march_2023_su(b("15.2.986.30")), Some(b("15.2.986.42")));
        assert_eq!(march_2023_su(b("15.1.2507.6")), Some(b("15.1.2507.23")));
        assert_eq!(march_2023_su(b("15.2.1118.7")), Some(b("15.2.1118.26")));
        assert_eq!(march_2023_su(b("15.1.2375.7")), None);
        assert_eq!(march_2023_su(b("15.2.1544.4")), None);
    }

    #[test]
    fn floor_table_is_sorted_per_product() {
        for w in MARCH_2023_FLOOR.windows(2) {
            if w[0].product == w[1].product {
                assert!(w[0].build < w[1].build, "{:?}", w);
            }
        }
        for e in MARCH_2023_FLOOR {
            assert_eq!(
                product(ExchangeBuild::new(e.major, e.minor, e.build, 0)),
                e.product
            );
        }
    }
}
