//! The host phase's per-server work: one host probe (v2 with its evidence part unless
//! `--no-evidence`) and the row it makes. Everything here runs inside one task per server,
//! under that server's deadline.

use std::sync::Arc;
use std::time::Instant;

use super::rows::{fill_assessment, fill_server_facts, identity_row};
use super::{Job, Shared, lockout_tripped, note_auth_failure, script_failure};
use crate::transport::{self, Target};
use eems_core::analysis::Status;
use eems_core::facts::ExchangeServerFacts;
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
    let params = HostProbeParams {
        ocs_url: &shared.opts.ocs_url,
        proxy,
        ocs_timeout_secs: shared.opts.ocs_timeout_secs,
    };
    let evidence_days = shared.opts.evidence_days;
    let script = match evidence_days {
        0 => probe::host_script(&params),
        days => probe::host_v2_script(&params, days),
    };
    let script = match script {
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
        match evidence_days {
            0 => transport::Feed::CommandLine(&script),
            _ => transport::Feed::Stdin(&script),
        },
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
    let host = match parse::parse_host(&out.stdout) {
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
    // Each evidence query has its own try; an answer without the object means the
    // evidence part never ran (a host that read only v1, say): the v1 verdict stands.
    let evidence_missing = evidence_days > 0 && host.evidence.is_none();
    if evidence_missing {
        tracing::info!(server = %target.name, "host probe answered without evidence");
    }
    row.duration_ms = started.elapsed().as_millis() as u64;
    fill_assessment(
        &mut row,
        &shared.org,
        &server,
        &host,
        time::OffsetDateTime::now_utc(),
    );
    if evidence_missing {
        row.findings.push(
            "evidence not collected: the host probe answered without an evidence object".into(),
        );
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
