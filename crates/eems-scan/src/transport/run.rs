//! Running one probe: the shell, the command, its stdin, the polls, and the clean-up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eems_core::report::Stage;
use tokio_util::sync::CancellationToken;
use winrm_rs::WinrmError;

#[cfg(feature = "kerberos")]
use super::AuthKind;
use super::classify::classify;
use super::client::{KerberosCred, PROVEN_AUTH_RETRIES_PER_HOST};
use super::{FailureKind, Feed, ProbeError, ProbeOutput, Target, TransportConfig};

/// How long clean-up (terminate signal, shell delete) may take after a deadline or an
/// interruption. Best effort: the host reaps the shell after its idle timeout anyway.
const CLEANUP_BOUND: Duration = Duration::from_secs(3);
/// Quick empty polls before backing off. A Windows host long-polls Receive, so empty
/// answers are rare; a host that answers empty at once must not make us spin.
const QUICK_EMPTY_POLLS: u32 = 3;
const POWERSHELL_EXE: &str = r"%SystemRoot%\System32\WindowsPowerShell\v1.0\powershell.exe";

/// Why the run stopped early, when it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Deadline,
    Cancelled,
}

/// Runs the script on `target` within `deadline`, ending early (with clean-up) when `cancel`
/// fires. The client is shared with up to 31 other probes ([`ClientCache`]); winrm-rs keeps
/// connections and NTLM contexts per host, so the handshake is done once per host on a
/// kept-alive connection.
///
/// [`ClientCache`]: super::ClientCache
pub async fn run_probe(
    cfg: &TransportConfig,
    target: &Target,
    script: Feed<'_>,
    deadline: Duration,
    cancel: &CancellationToken,
) -> Result<ProbeOutput, ProbeError> {
    let start = Instant::now();
    let until = tokio::time::Instant::now() + deadline;
    let fail = |stage: Stage, kind: FailureKind, message: String| ProbeError {
        stage,
        kind,
        message,
        elapsed: start.elapsed(),
    };
    let stopped = |stage: Stage, why: Stop| match why {
        Stop::Deadline => fail(
            stage,
            FailureKind::Timeout,
            format!("timeout after {} s", deadline.as_secs()),
        ),
        Stop::Cancelled => fail(stage, FailureKind::Interrupted, "interrupted".into()),
    };

    // Kerberos talks to the FQDN (the SPN and `Host` come from the URL); TCP still goes to
    // the address through `resolve`.
    let auth = cfg.mechanism_for(target).await;
    let (host, kerberos) = match auth {
        #[cfg(feature = "kerberos")]
        AuthKind::Kerberos => {
            let (fqdn, creds) = crate::kerberos::preflight(cfg, target)
                .await
                .map_err(|(kind, message)| fail(Stage::Auth, kind, message))?;
            (fqdn, Some(creds))
        }
        _ => (target.host.clone(), None::<Arc<KerberosCred>>),
    };
    // The client's credentials, not the scan's: a probe holds them as long as the client,
    // and the last one to let go destroys the client's ticket cache.
    let client_for = || {
        cfg.client_for(target.port, auth, kerberos.as_ref())
            .map_err(|e| fail(Stage::Connect, FailureKind::Other, client_setup_message(&e)))
    };
    #[cfg_attr(not(feature = "kerberos"), allow(unused_mut))]
    let (mut client, mut _client_kerberos) = client_for()?;
    #[cfg(feature = "kerberos")]
    if let Some(creds) = _client_kerberos.clone() {
        let mut got = crate::kerberos::service_ticket(&creds, &host).await;
        if got.as_ref().is_err_and(|e| e.is_clock_skew()) && creds.is_copy() {
            tracing::info!("Kerberos: a private ticket cache hit a clock skew; using the scan's");
            cfg.clients
                .shared_ticket_cache
                .store(true, std::sync::atomic::Ordering::SeqCst);
            (client, _client_kerberos) = client_for()?;
            if let Some(shared) = &_client_kerberos {
                got = crate::kerberos::service_ticket(shared, &host).await;
            }
        }
        got.map_err(|e| {
            let (kind, message) = crate::kerberos::kerberos_error(&e);
            fail(Stage::Auth, kind, message)
        })?;
    }

    // Opening the shell is the first request: TCP, TLS and authentication happen here.
    //
    // winrm-rs 2.0.1 can send the first sealed request (this Create) on a pooled
    // connection other than the one it just authenticated: a connect hyper started during
    // the handshake lands in the pool after the handshake has locked it (hyper-util races
    // a connect against the pool whenever the CHALLENGE's connection is not back in the
    // pool yet when the AUTHENTICATE goes out). The server answers 401 without running
    // anything. No setting of winrm-rs 2.0.1 closes that window, so the retries stay.
    // Measured in the lab (README, Performance): it hit the first handshake of a scan
    // (the org query) in one scan of 14, twice in a row there, and no host probe in
    // about 25,000 handshakes. Each retry is a new handshake
    // with the same odds. A Create is safe to send again (nothing ran; a Command is never
    // resent).
    let mut opened = bounded(until, cancel, client.open_shell(&host)).await;
    let mut auth_retries = 0;
    for pause_ms in [0, 10, 50, 100, 200] {
        let retry = match &opened {
            Ok(Err(e)) if is_stale_context(e) => true,
            // The same race one step earlier: the AUTHENTICATE goes out on a connection
            // other than the one that got the CHALLENGE, and the server refuses it as it
            // refuses a wrong password. The client cannot tell the two apart. Once the
            // credentials are proven the retry is harmless; before that it is one more
            // bad attempt if the password is wrong, so only one per scan.
            Ok(Err(WinrmError::AuthFailed(_))) => {
                auth_retries += 1;
                if cfg.clients.auth_proven() {
                    auth_retries <= PROVEN_AUTH_RETRIES_PER_HOST
                } else {
                    auth_retries == 1 && cfg.clients.take_auth_retry()
                }
            }
            _ => false,
        };
        if !retry {
            break;
        }
        tracing::debug!(server = %target.name, "Create refused on a fresh connection; retrying");
        // A rejected authentication waits longer: back-to-back handshakes race alike.
        let pause_ms = match &opened {
            Ok(Err(WinrmError::AuthFailed(_))) => pause_ms.max(100),
            _ => pause_ms,
        };
        if bounded(
            until,
            cancel,
            tokio::time::sleep(Duration::from_millis(pause_ms)),
        )
        .await
        .is_err()
        {
            break;
        }
        opened = bounded(until, cancel, client.open_shell(&host)).await;
    }
    let shell = match opened {
        Err(why) => return Err(stopped(Stage::Connect, why)),
        Ok(Err(e)) => {
            let (kind, msg) = classify(&e, cfg);
            let stage = match kind {
                FailureKind::ConnectionRefused | FailureKind::Dns | FailureKind::Tls => {
                    Stage::Connect
                }
                FailureKind::Auth => Stage::Auth,
                FailureKind::Timeout if !matches!(e, WinrmError::Soap(_)) => Stage::Connect,
                _ => Stage::Shell,
            };
            return Err(fail(stage, kind, msg));
        }
        Ok(Ok(shell)) => {
            cfg.clients
                .auth_proven
                .store(true, std::sync::atomic::Ordering::SeqCst);
            shell
        }
    };

    let result = drive_command(&shell, script, until, cancel, cfg).await;
    // Close on every path. After a stop the host may still be busy: bound the clean-up.
    let cleanup_until = tokio::time::Instant::now() + CLEANUP_BOUND;
    if let Err((_, _, Some(command_id))) = &result {
        let _ = tokio::time::timeout_at(
            cleanup_until,
            client.signal_terminate(&target.host, shell.shell_id(), command_id),
        )
        .await;
    }
    match tokio::time::timeout_at(cleanup_until, shell.close()).await {
        Ok(Err(e)) => tracing::debug!(server = %target.name, error = %e, "shell delete failed"),
        Err(_) => tracing::debug!(server = %target.name, "shell delete timed out"),
        Ok(Ok(())) => {}
    }

    match result {
        Ok(out) => Ok(ProbeOutput {
            stdout: String::from_utf8_lossy(&out.0).into_owned(),
            stderr: String::from_utf8_lossy(&out.1).into_owned(),
            exit_code: out.2,
            elapsed: start.elapsed(),
        }),
        Err((Failure::Stopped(why), stage, _)) => Err(stopped(stage, why)),
        Err((Failure::Error(kind, msg), stage, _)) => Err(fail(stage, kind, msg)),
    }
}

enum Failure {
    Stopped(Stop),
    Error(FailureKind, String),
}

type Collected = (Vec<u8>, Vec<u8>, Option<i32>);

/// Starts the command, feeds its stdin when the script goes that way, and polls until
/// Done. On failure also returns the command id (when there is one) so the caller can send
/// the terminate signal.
async fn drive_command(
    shell: &winrm_rs::Shell<'_>,
    script: Feed<'_>,
    until: tokio::time::Instant,
    cancel: &CancellationToken,
    cfg: &TransportConfig,
) -> Result<Collected, (Failure, Stage, Option<String>)> {
    let (command_line, stdin) = match script {
        Feed::CommandLine(s) => (s, None),
        Feed::Stdin(s) => (
            eems_core::probe::STDIN_BOOTSTRAP,
            Some(eems_core::probe::stdin_payload(s)),
        ),
    };
    let encoded = winrm_rs::encode_powershell_command(command_line);
    let args = [
        "-NoProfile",
        "-NonInteractive",
        "-EncodedCommand",
        encoded.as_str(),
    ];
    let command_id = match bounded(until, cancel, shell.start_command(POWERSHELL_EXE, &args)).await
    {
        Err(why) => return Err((Failure::Stopped(why), Stage::Command, None)),
        Ok(Err(e)) => {
            let (kind, msg) = classify(&e, cfg);
            return Err((Failure::Error(kind, msg), Stage::Command, None));
        }
        Ok(Ok(id)) => id,
    };
    if let Some(input) = stdin {
        // All of it with End: the bootstrap reads to the end of stdin before running.
        match bounded(until, cancel, shell.send_input(&command_id, &input, true)).await {
            Err(why) => return Err((Failure::Stopped(why), Stage::Command, Some(command_id))),
            Ok(Err(e)) => {
                let (kind, msg) = classify(&e, cfg);
                return Err((Failure::Error(kind, msg), Stage::Command, Some(command_id)));
            }
            Ok(Ok(())) => {}
        }
    }

    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut empty_polls = 0u32;
    loop {
        let polled = match bounded(until, cancel, shell.receive_next(&command_id)).await {
            Err(why) => return Err((Failure::Stopped(why), Stage::Command, Some(command_id))),
            Ok(Err(e)) => {
                let (kind, msg) = classify(&e, cfg);
                return Err((Failure::Error(kind, msg), Stage::Command, Some(command_id)));
            }
            Ok(Ok(o)) => o,
        };
        let got_something = !polled.stdout.is_empty() || !polled.stderr.is_empty();
        stdout.extend_from_slice(&polled.stdout);
        stderr.extend_from_slice(&polled.stderr);
        if stdout.len() + stderr.len() > cfg.max_output_bytes {
            let msg = format!(
                "the probe printed more than {} KiB; output cut off (is something on the \
                 host writing to the console without end?)",
                cfg.max_output_bytes / 1024
            );
            return Err((
                Failure::Error(FailureKind::OutputTooLarge, msg),
                Stage::Command,
                Some(command_id),
            ));
        }
        if polled.done {
            return Ok((stdout, stderr, polled.exit_code));
        }
        if got_something {
            empty_polls = 0;
        } else {
            empty_polls += 1;
            if empty_polls > QUICK_EMPTY_POLLS {
                let pause = Duration::from_millis(100 * u64::from(empty_polls.min(20)));
                if let Err(why) = bounded(until, cancel, tokio::time::sleep(pause)).await {
                    return Err((Failure::Stopped(why), Stage::Command, Some(command_id)));
                }
            }
        }
    }
}

/// A 401 to a sealed request: the connection it went out on had no NTLM context.
fn is_stale_context(e: &WinrmError) -> bool {
    matches!(e, WinrmError::Ntlm(n) if n.to_string().contains("401 to a sealed"))
}

/// Awaits `fut` unless the deadline passes or the scan is cancelled first.
async fn bounded<F: std::future::Future>(
    until: tokio::time::Instant,
    cancel: &CancellationToken,
    fut: F,
) -> Result<F::Output, Stop> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Stop::Cancelled),
        r = tokio::time::timeout_at(until, fut) => r.map_err(|_| Stop::Deadline),
    }
}

fn client_setup_message(e: &WinrmError) -> String {
    format!("cannot set up the WinRM client: {e}")
}
