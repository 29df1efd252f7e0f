//! The typed verdicts. Each enum's `label` (and its serde form) is exactly the text
//! HealthChecker prints (healthchecker-eems.md §2), so reports read as an Exchange admin
//! expects; every renderer, colour and drift rule matches on the variants, never on text.

use serde::{Deserialize, Serialize};

/// HealthChecker's `WriteType` colours, ordered as drift judges a move between them
/// (Grey and Green are both fine; towards Red is worse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WriteType {
    Grey,
    Green,
    Yellow,
    Red,
}

impl WriteType {
    /// The `class` of HealthChecker's HTML detail cells (empty for Grey).
    pub fn css_class(self) -> &'static str {
        match self {
            WriteType::Grey => "",
            WriteType::Green => "Green",
            WriteType::Yellow => "Yellow",
            WriteType::Red => "Red",
        }
    }
}

/// The verdict for one server.
///
/// [`Ord`] is by severity, the one ordering every part of the tool uses (sorting, the
/// worst-first table, drift): skipped < ok < warning < error < critical. A definite Red
/// finding (critical) outranks "could not check" (error), as in Nagios-style aggregation
/// where CRITICAL beats UNKNOWN; a skipped server never makes a fleet look worse than ok.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Out of scope (Edge, no EEMS on this build).
    Skipped,
    Ok,
    Warning,
    /// The server could not be assessed (transport or probe failure); set by the coordinator.
    Error,
    Critical,
}

impl Status {
    /// Listing order for summaries and tiles (not the severity order).
    pub const LISTING: [Status; 5] = [
        Status::Ok,
        Status::Warning,
        Status::Critical,
        Status::Error,
        Status::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Critical => "critical",
            Status::Error => "error",
            Status::Skipped => "skipped",
        }
    }

    /// The worst status of a set; `None` when empty.
    pub fn worst(it: impl IntoIterator<Item = Status>) -> Option<Status> {
        it.into_iter().max()
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Declares a verdict enum whose label, serde form and Display are HealthChecker's text,
/// with the colour HealthChecker paints it in (which is also how drift ranks it).
macro_rules! verdict {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $label:literal, $colour:ident;)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $label)] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The verdict a label names (a saved report's text read back).
            pub fn from_label(label: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.label() == label)
            }

            /// HealthChecker's text.
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label,)+ }
            }

            /// The colour HealthChecker paints this verdict in.
            pub fn write_type(self) -> WriteType {
                match self { $($name::$variant => WriteType::$colour,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.label())
            }
        }
    };
}

verdict! {
    /// HealthChecker's overall EEMS line (§2.1).
    EemsState {
        Enabled = "Enabled", Green;
        DisabledOnOrg = "Disabled on org level", Yellow;
        DisabledOnServer = "Disabled on server level", Yellow;
        /// Both disabled, or (HealthChecker's quirk) org on and the server value missing.
        Disabled = "Disabled", Yellow;
        /// The org value is missing: HealthChecker's single Red line.
        FailedToQuery = "Failed to query config", Red;
    }
}

verdict! {
    /// The Windows service check (§2.3).
    ServiceCheck {
        /// Running and Automatic.
        Running = "Running", Grey;
        Investigate = "Investigate", Yellow;
        /// The service was not found.
        Unknown = "Unknown", Yellow;
    }
}

verdict! {
    /// The pattern service: whether the server reached the mitigation endpoint (§2.4).
    PatternService {
        Reachable = "200 - Reachable", Grey;
        Unreachable = "Unreachable", Yellow;
    }
}

verdict! {
    /// Whether EEMS fetched from the OCS lately, from its own events and log (issue 11).
    /// Not a HealthChecker verdict: HealthChecker has no such line.
    FetchState {
        /// An applied event (1005/1006) in the window or a log write in the last 24 h, and
        /// no event 1008 in the last 24 h.
        Fetching = "Fetching", Green;
        /// Event 1008 in the last 24 h (it repeats hourly while fetching fails).
        Failing = "Failing", Yellow;
        /// The Application log was read and holds nothing from EEMS in the window.
        NoEvidence = "No evidence", Grey;
        /// The Application log could not be read.
        Unknown = "Unknown", Grey;
    }
}

verdict! {
    /// The build against the March 2023 SU floor of the January 2025 OCS certificate change
    /// (eems-evidence.md §3.3). Not a HealthChecker verdict.
    CertFloor {
        CannotFetch = "cannot fetch since the January 2025 certificate change", Yellow;
        /// Exactly the March 2023 SU: Microsoft's "newer than March 2023" is ambiguous here.
        AtFloor = "at the March 2023 SU (likely fetches)", Grey;
        Above = "above the March 2023 SU", Grey;
    }
}

impl EemsState {
    /// Whether EEMS is off in some way (HealthChecker's Yellow states).
    pub fn is_disabled(self) -> bool {
        self.write_type() == WriteType::Yellow
    }
}

impl PatternService {
    /// The console's short form.
    pub fn short(self) -> &'static str {
        match self {
            PatternService::Reachable => "Reachable",
            PatternService::Unreachable => "Unreachable",
        }
    }
}

impl CertFloor {
    /// The fleet table's short form; the label is the finding's wording.
    pub fn short(self) -> &'static str {
        match self {
            CertFloor::CannotFetch => "Cannot fetch",
            CertFloor::AtFloor => "At floor",
            CertFloor::Above => "Above floor",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_through_serde() {
        for s in EemsState::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.label()));
            assert_eq!(EemsState::from_label(s.label()), Some(*s));
            assert_eq!(serde_json::from_str::<EemsState>(&json).unwrap(), *s);
        }
        for s in ServiceCheck::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(serde_json::from_str::<ServiceCheck>(&json).unwrap(), *s);
        }
        for s in PatternService::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(serde_json::from_str::<PatternService>(&json).unwrap(), *s);
        }
    }

    #[test]
    fn status_orders_by_severity() {
        use Status::*;
        let mut all = Status::LISTING;
        all.sort();
        assert_eq!(all, [Skipped, Ok, Warning, Error, Critical]);
        assert_eq!(Status::worst([Ok, Error, Warning]), Some(Error));
        assert_eq!(Status::worst([Error, Critical]), Some(Critical));
        assert_eq!(Status::worst([]), None);
    }
}
