//! The org phase: one org query (`Get-OrganizationConfig` and `Get-ExchangeServer`), tried
//! on up to [`ORG_ATTEMPTS`](super::ORG_ATTEMPTS) servers until one answers.
//!
//! Everything the scan learns from the organisation goes through [`org_phase`]; a further
//! org-level query belongs there too, so the host phase keeps seeing one [`OrgResult`].

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{
    ORG_ATTEMPTS, OrgVia, Progress, ScanOptions, Shared, Silent, lockout_tripped,
    note_auth_failure, script_failure,
};
use crate::transport::{self, FailureKind, Target, TransportConfig};
use eems_core::facts::OrgFacts;
use eems_core::inventory::InventoryEntry;
use eems_core::probe::{self, parse};
use eems_core::report::{OrgSection, Stage};

/// Org probe result with where it came from.
pub(super) struct OrgResult {
    pub facts: Option<OrgFacts>,
    pub queried_on: Option<String>,
    pub error: Option<String>,
    /// The servers the org probe failed on, in the order tried.
    pub failures: Vec<OrgFailure>,
}

/// What happened to one server during the org phase, for its row if the lockout guard
/// later keeps its host probe from running.
#[derive(Debug, Clone)]
pub(super) struct OrgFailure {
    pub server: String,
    pub stage: Stage,
    /// The server refused the credentials.
    pub rejected: bool,
    pub error: String,
}

impl OrgResult {
    /// The report's organisation section.
    pub(super) fn section(&self) -> OrgSection {
        let facts = self.facts.as_ref();
        OrgSection {
            name: facts.and_then(|f| f.name.clone()),
            mitigations_enabled: facts.and_then(|f| f.mitigations_enabled),
            queried_on: self.queried_on.clone(),
            error: self
                .error
                .clone()
                .or_else(|| facts.and_then(|f| f.error.clone())),
            admin_audit: facts
                .and_then(|f| f.admin_audit.as_ref())
                .map(eems_core::analysis::admin_audit_report),
        }
    }

    /// What every host task needs: the answer without its server list (or, when the org
    /// phase failed, why).
    pub(super) fn shared_facts(&self) -> OrgFacts {
        match &self.facts {
            Some(f) => OrgFacts {
                servers: Vec::new(),
                ..f.clone()
            },
            None => OrgFacts {
                error: self.error.clone(),
                ..OrgFacts::default()
            },
        }
    }
}

/// Where to try the org probe: `--org-server` first, then the inventory's in-scope
/// servers in order, at most [`ORG_ATTEMPTS`] in all.
pub(super) fn org_targets(
    opts: &ScanOptions,
    candidates: &[InventoryEntry],
    discover_from: Option<&str>,
) -> Vec<Target> {
    let target_of = Target::of;
    if let Some(from) = discover_from {
        return vec![Target::named(from)];
    }
    let mut out = Vec::new();
    if let Some(first) = &opts.org_server {
        match candidates
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(first))
        {
            Some(e) => out.push(target_of(e)),
            None => out.push(Target::named(first)),
        }
    }
    for e in candidates {
        if out.len() >= ORG_ATTEMPTS {
            break;
        }
        if !out.iter().any(|t| t.name.eq_ignore_ascii_case(&e.name)) {
            out.push(target_of(e));
        }
    }
    out
}

pub(super) async fn org_phase(
    shared: &Shared,
    targets: &[Target],
    progress: &dyn Progress,
) -> OrgResult {
    #[cfg(feature = "kerberos")]
    if let OrgVia::RemotePowerShell { port } = shared.opts.org_via {
        return super::org_source::org_over_remote_powershell(shared, targets, port, progress)
            .await;
    }
    #[cfg(not(feature = "kerberos"))]
    if let OrgVia::RemotePowerShell { .. } = shared.opts.org_via {
        return OrgResult {
            facts: None,
            queried_on: None,
            error: Some(super::org_source::no_kerberos_in_this_build()),
            failures: Vec::new(),
        };
    }
    let mut errors = Vec::new();
    let mut failures = Vec::new();
    let script = probe::org_script();
    for t in targets {
        if shared.cancel.is_cancelled() {
            errors.push("interrupted".to_string());
            break;
        }
        if lockout_tripped(shared) {
            errors.push(format!("{}: not attempted (lockout guard)", t.name));
            break;
        }
        progress.org_phase(&t.name);
        tracing::info!(server = %t.name, "org probe");
        let outcome = transport::run_probe(
            &shared.opts.transport,
            t,
            transport::Feed::CommandLine(&script),
            shared.opts.timeout,
            &shared.cancel,
        )
        .await;
        match outcome {
            Err(e) => {
                note_auth_failure(shared, &e);
                tracing::warn!(server = %t.name, error = %e, "org probe failed");
                errors.push(format!("{}: {e}", t.name));
                failures.push(OrgFailure {
                    server: t.name.clone(),
                    stage: e.stage,
                    rejected: e.kind == FailureKind::Auth,
                    error: e.to_string(),
                });
            }
            Ok(out) => match parse::parse_org(&out.stdout) {
                Ok(facts) => {
                    return OrgResult {
                        facts: Some(facts),
                        queried_on: Some(t.name.clone()),
                        error: None,
                        failures,
                    };
                }
                Err(pe) => {
                    let why = script_failure(&pe.to_string(), &out);
                    tracing::warn!(server = %t.name, error = %why, "org probe output unusable");
                    errors.push(format!("{}: {why}", t.name));
                    failures.push(OrgFailure {
                        server: t.name.clone(),
                        stage: Stage::Parse,
                        rejected: false,
                        error: why,
                    });
                }
            },
        }
    }
    let error = if targets.is_empty() {
        "no in-scope server to run the org probe on".to_string()
    } else {
        format!(
            "org probe failed on every server tried: {}",
            errors.join("; ")
        )
    };
    OrgResult {
        facts: None,
        queried_on: None,
        error: Some(error),
        failures,
    }
}

/// Runs only the org probe on `from` and returns what the organisation says about its
/// servers (for `discover`).
pub async fn discover(
    transport: &TransportConfig,
    org_via: OrgVia,
    from: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<OrgFacts, String> {
    let shared = Shared {
        opts: ScanOptions {
            transport: transport.clone(),
            concurrency: 1,
            timeout,
            org_server: None,
            ocs_url: String::new(),
            ocs_timeout_secs: 0,
            evidence_days: 0,
            max_auth_failures: 0,
            org_via,
            org_data: None,
        },
        org: OrgFacts::default(),
        org_server: None,
        org_failures: Vec::new(),
        auth_failures: AtomicUsize::new(0),
        cancel: cancel.clone(),
    };
    let target = Target::named(from);
    let r = org_phase(&shared, &[target], &Silent).await;
    match r.facts {
        Some(f) => match &f.servers_error {
            Some(e) => Err(format!("Get-ExchangeServer failed on {from}: {e}")),
            None => Ok(f),
        },
        None => Err(r.error.unwrap_or_else(|| "org probe failed".into())),
    }
}
