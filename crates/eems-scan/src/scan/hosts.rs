//! The host phase's per-server work: one host probe, its evidence part, and the row they
//! make. Everything here runs inside one task per server, under that server's deadline.

use std::sync::Arc;
use std::time::Instant;

use super::rows::{fill_assessment, fill_server_facts, identity_row};
use super::{Job, Shared, lockout_tripped, note_auth_failure, script_failure};
use crate::transport::{self, Target};
use eems_core::analysis::Status;
use eems_core::facts::{EvidenceFacts, ExchangeServerFacts};
use eems_core::probe::{self, HostProbeParams, parse};
use eems_core::report::{ServerRow, Stage};
use eems_core::text::excerpt;

pub(super) async fn host_task(shared: Arc<Shared>, job: Job) -> ServerRow {
    let started = Instant::now();
    let mut row = identity_row(&job.entry);
    if let Some(f) = &job.facts {
        fill_server_facts(&mut row, f, shared.org.mitigations_enabled);
    }
    if lockout_tripped(&shared) {
        let guard = format!(
            "authentication failed on {} servers (lockout guard); check the user name and \
             password before scanning again, the account may be close to lockout",
            shared.opts.max_auth_failures
        );
        row.status = Status::Error;
        // A server the org phase already tried was contacted: its row says how that went.
        let tried = shared
            .org_failures
            .iter()
            .find(|f| f.server.eq_ignore_ascii_case(&job.entry.name));
        row.error = Some(match tried {
            Some(f) => {
                row.error_stage = Some(f.stage);
                let what = if f.rejected {
                    "rejected during the org query"
                } else {
                    "the org query failed here"
                };
                format!("{what}: {}; host probe not attempted: {guard}", f.error)
            }
            None => format!("not attempted: {guard}"),
        });
        return row;
    }
    let proxy = job
        .facts
        .as_ref()
        .and_then(|f| f.internet_web_proxy.as_deref());
    let script = match probe::host_script(&HostProbeParams {
        ocs_url: &shared.opts.ocs_url,
        proxy,
        ocs_timeout_secs: shared.opts.ocs_timeout_secs,
    }) {
        Ok(s) => s,
        Err(e) => {
            row.status = Status::Error;
            row.error = Some(format!("not attempted: {e}"));
            return row;
        }
    };
    let target = Target::of(&job.entry);
    tracing::debug!(server = %target.name, host = %target.host, "host probe");
    let outcome = transport::run_probe(
        &shared.opts.transport,
        &target,
        &script,
        shared.opts.timeout,
        &shared.cancel,
    )
    .await;
    row.duration_ms = started.elapsed().as_millis() as u64;
    let authenticated = match &outcome {
        Ok(_) => true,
        Err(e) => !matches!(e.stage, Stage::Connect | Stage::Auth),
    };
    if authenticated {
        // The same answer run_probe got: the scan's credentials are got once.
        let auth = shared.opts.transport.mechanism_for(&target).await;
        row.auth = Some(auth.name().to_string());
    }
    let out = match outcome {
        Err(e) => {
            note_auth_failure(&shared, &e);
            tracing::info!(server = %target.name, error = %e, "host probe failed");
            row.status = Status::Error;
            row.error_stage = Some(e.stage);
            row.error = Some(e.to_string());
            return row;
        }
        Ok(out) => out,
    };
    let mut host = match parse::parse_host(&out.stdout) {
        Ok(h) => h,
        Err(pe) => {
            row.status = Status::Error;
            row.error_stage = Some(Stage::Parse);
            row.error = Some(format!(
                "{} (stage parse, after {:.1} s)",
                script_failure(&pe.to_string(), &out),
                out.elapsed.as_secs_f64()
            ));
            return row;
        }
    };
    let server = job.facts.clone().unwrap_or_else(|| ExchangeServerFacts {
        name: job.entry.name.clone(),
        ..Default::default()
    });
    let evidence_failed = if shared.opts.evidence_days > 0 {
        match evidence_part(&shared, &target, started).await {
            Ok(e) => {
                host.evidence = Some(e);
                None
            }
            Err(e) => {
                tracing::info!(server = %target.name, error = %e, "evidence probe failed");
                Some(e)
            }
        }
    } else {
        None
    };
    row.duration_ms = started.elapsed().as_millis() as u64;
    fill_assessment(
        &mut row,
        &shared.org,
        &server,
        &host,
        time::OffsetDateTime::now_utc(),
    );
    if let Some(e) = evidence_failed {
        row.findings
            .push(format!("evidence not collected: {}", excerpt(&e, 300)));
    }
    if job.facts.is_none()
        && let Some(e) = &shared.org.servers_error
    {
        // The organisation answered but Get-ExchangeServer did not: the server-level
        // switch is unknown, and reading it as absent would say "Disabled". The host
        // facts stay in the row; the verdict is that the server could not be assessed.
        row.status = Status::Error;
        row.error = Some(format!(
            "server settings unknown: Get-ExchangeServer failed on {}: {}",
            shared.org_server.as_deref().unwrap_or("the org server"),
            excerpt(e, 200)
        ));
    }
    row
}

/// Host probe v2's evidence part. It travels as a second command because v1 and evidence
/// together do not fit one command line (probe/mod.rs); it gets what is left of `--timeout`,
/// and its failure costs only the evidence, never the v1 verdict.
async fn evidence_part(
    shared: &Shared,
    target: &Target,
    started: Instant,
) -> Result<EvidenceFacts, String> {
    let script = probe::evidence_script(shared.opts.evidence_days).map_err(|e| e.to_string())?;
    let left = shared.opts.timeout.saturating_sub(started.elapsed());
    if left.is_zero() {
        return Err("no time left within --timeout after the host probe".into());
    }
    let out = transport::run_probe(
        &shared.opts.transport,
        target,
        &script,
        left,
        &shared.cancel,
    )
    .await
    .map_err(|e| e.to_string())?;
    let facts =
        parse::parse_host(&out.stdout).map_err(|pe| script_failure(&pe.to_string(), &out))?;
    facts
        .evidence
        .ok_or_else(|| "the evidence probe answered without an evidence object".into())
}
