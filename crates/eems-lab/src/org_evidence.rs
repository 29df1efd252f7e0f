//! What the org query over Remote PowerShell reads beyond the EEMS switches (issue 11):
//! per server `WhenChangedUTC`, `RingLevel` and `LastFlightingServiceRunTime`, once per
//! organisation the admin audit log that `Search-AdminAuditLog` searches. Times are hours
//! before "now", so a fleet file stays current.

use serde::{Deserialize, Serialize};

use crate::evidence::{MAX_HOURS_AGO, at};

/// Feature Flighting on `Get-ExchangeServer` (`[server.feature_flighting]`). By default a
/// build that has it (2019 CU15+, SE) is in ring 1 (Worldwide) and ran half an hour ago;
/// other builds show both properties null.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureFlightingSpec {
    pub ring_level: Option<i32>,
    /// `RingLevel` null even on a build that has Feature Flighting.
    pub ring_level_null: bool,
    /// `LastFlightingServiceRunTime`, hours before now.
    pub last_run_hours_ago: Option<f64>,
    /// `LastFlightingServiceRunTime` null: the service never ran.
    pub never_ran: bool,
}

/// One `AdminAuditLogEvent` (`[[org.admin_audit]]`), with Exchange's property names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntrySpec {
    /// `Caller`, e.g. `lab.local/Users/Administrator`.
    pub caller: String,
    /// `RunDate`, hours before now.
    pub hours_ago: f64,
    /// `CmdletName`.
    pub cmdlet_name: String,
    /// `ObjectModified`.
    pub object_modified: String,
    /// `CmdletParameters`: `Name` and `Value` (a string, as Exchange stores it).
    #[serde(default)]
    pub parameters: Vec<AuditParameterSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParameterSpec {
    pub name: String,
    pub value: String,
}

fn hours_ok(what: &str, h: f64) -> Result<(), String> {
    if h.is_finite() && (0.0..=MAX_HOURS_AGO).contains(&h) {
        Ok(())
    } else {
        Err(format!(
            "{what} = {h} is not between 0 and {MAX_HOURS_AGO} hours"
        ))
    }
}

impl FeatureFlightingSpec {
    pub fn validate(&self) -> Result<(), String> {
        match self.last_run_hours_ago {
            Some(h) => hours_ok("feature_flighting.last_run_hours_ago", h),
            None => Ok(()),
        }
    }

    /// `RingLevel` for a server of `build`.
    pub fn ring_level(&self, build: &str) -> Option<i32> {
        if self.ring_level_null {
            return None;
        }
        self.ring_level.or(has_flighting(build).then_some(1))
    }

    /// `LastFlightingServiceRunTime` for a server of `build`, as of `now`.
    pub fn last_run(&self, build: &str, now: time::OffsetDateTime) -> Option<String> {
        if self.never_ran {
            return None;
        }
        let hours = self
            .last_run_hours_ago
            .or((has_flighting(build) && !self.ring_level_null).then_some(0.5))?;
        Some(at(now, hours))
    }
}

fn has_flighting(build: &str) -> bool {
    build
        .parse()
        .is_ok_and(eems_core::analysis::build::has_feature_flighting)
}

impl AuditEntrySpec {
    pub fn validate(&self) -> Result<(), String> {
        hours_ok("admin_audit.hours_ago", self.hours_ago)
    }

    /// `RunDate` as of `now`.
    pub fn run_date(&self, now: time::OffsetDateTime) -> String {
        at(now, self.hours_ago)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flighting_defaults_follow_the_build() {
        let now = time::OffsetDateTime::parse(
            "2026-11-28T12:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let cu15 = "15.2.1748.10";
        let cu14 = "15.2.1544.4";
        let d = FeatureFlightingSpec::default();
        assert_eq!(d.ring_level(cu15), Some(1));
        assert_eq!(
            d.last_run(cu15, now).as_deref(),
            Some("2026-11-28T11:30:00Z")
        );
        assert_eq!((d.ring_level(cu14), d.last_run(cu14, now)), (None, None));
        let null = FeatureFlightingSpec {
            ring_level_null: true,
            ..Default::default()
        };
        assert_eq!(
            (null.ring_level(cu15), null.last_run(cu15, now)),
            (None, None)
        );
        let old = FeatureFlightingSpec {
            ring_level: Some(2),
            last_run_hours_ago: Some(24.0 * 40.0),
            ..Default::default()
        };
        assert_eq!(old.ring_level(cu15), Some(2));
        assert_eq!(
            old.last_run(cu15, now).as_deref(),
            Some("2026-10-19T12:00:00Z")
        );
        let never = FeatureFlightingSpec {
            never_ran: true,
            ..Default::default()
        };
        assert_eq!(
            (never.ring_level(cu15), never.last_run(cu15, now)),
            (Some(1), None)
        );
        assert!(
            FeatureFlightingSpec {
                last_run_hours_ago: Some(f64::NAN),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
