//! The request log: one record per HTTP request the lab answered, as JSON lines to a file
//! and/or in memory, so tests can assert on what crossed the wire ("no plaintext SOAP over
//! HTTP", "one handshake per connection", "Delete was sent").

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Milliseconds since the Unix epoch when the response was decided.
    pub ts_ms: u64,
    pub server: String,
    /// Connection number, unique within the lab run.
    pub conn: u64,
    pub tls: bool,
    /// `none`, `ntlm`, `kerberos` or `basic`: the mechanism this request was judged under.
    pub auth: String,
    /// `challenge`, `authenticated`, `rejected` or `request`.
    pub step: String,
    /// The request body was NTLM-sealed.
    pub sealed: bool,
    /// A SOAP body arrived unencrypted on plain HTTP.
    pub plaintext_soap: bool,
    /// WS-Management operation (`Create`, `Command`, `Receive`, `Signal`, `Delete`, ...).
    pub action: Option<String>,
    pub probe: Option<String>,
    pub shell_id: Option<String>,
    pub status: u16,
    /// `DOMAIN\user` as Windows shows it, once known.
    pub user: Option<String>,
    pub note: Option<String>,
}

impl LogRecord {
    /// A request on connection `conn` to `server`, before anything is known about it; the
    /// handler fills in the rest and stamps `ts_ms` when it decides the response.
    pub fn request(server: String, conn: u64, tls: bool) -> LogRecord {
        LogRecord {
            ts_ms: 0,
            server,
            conn,
            tls,
            auth: AUTH_NONE.into(),
            step: STEP_REQUEST.into(),
            sealed: false,
            plaintext_soap: false,
            action: None,
            probe: None,
            shell_id: None,
            status: 0,
            user: None,
            note: None,
        }
    }
}

pub const AUTH_NONE: &str = "none";
pub const AUTH_NTLM: &str = "ntlm";
pub const AUTH_KERBEROS: &str = "kerberos";
pub const AUTH_BASIC: &str = "basic";
pub const STEP_CHALLENGE: &str = "challenge";
pub const STEP_AUTHENTICATED: &str = "authenticated";
pub const STEP_REJECTED: &str = "rejected";
pub const STEP_REQUEST: &str = "request";

/// Where records go. Writes are one short line each, so a blocking write under a mutex is
/// cheaper than a channel and keeps records ordered.
pub struct RequestLog {
    file: Option<Mutex<std::io::LineWriter<std::fs::File>>>,
    /// `None` when the caller asked not to keep records (large fleets).
    memory: Option<Mutex<Vec<LogRecord>>>,
}

impl RequestLog {
    pub fn new(path: Option<&Path>, keep_in_memory: bool) -> anyhow::Result<RequestLog> {
        let file = match path {
            Some(p) => {
                let f = std::fs::File::create(p).map_err(|e| {
                    anyhow::anyhow!("{}: cannot create request log: {e}", p.display())
                })?;
                Some(Mutex::new(std::io::LineWriter::new(f)))
            }
            None => None,
        };
        Ok(RequestLog {
            file,
            memory: keep_in_memory.then(|| Mutex::new(Vec::new())),
        })
    }

    pub fn record(&self, r: LogRecord) {
        if let Some(file) = &self.file
            && let Ok(line) = serde_json::to_string(&r)
            && let Ok(mut f) = file.lock()
            && let Err(e) = writeln!(f, "{line}")
        {
            tracing::warn!("request log write failed: {e}");
        }
        if let Some(mem) = &self.memory
            && let Ok(mut v) = mem.lock()
        {
            v.push(r);
        }
    }

    /// Records kept in memory so far (empty when not kept).
    pub fn records(&self) -> Vec<LogRecord> {
        self.memory
            .as_ref()
            .and_then(|m| m.lock().ok().map(|v| v.clone()))
            .unwrap_or_default()
    }

    pub fn flush(&self) {
        if let Some(file) = &self.file
            && let Ok(mut f) = file.lock()
        {
            let _ = f.flush();
        }
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Reads a request log written as JSON lines (the demo's, after the lab stopped). A line
/// that is not a record is an error naming the file and the line.
pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<LogRecord>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read the request log: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| anyhow::anyhow!("{} line {}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// What the lab saw of the org query, from its request log: issue 10's promise that the
/// scanner runs bare cmdlets on Exchange's `/PowerShell` (never script text, which the
/// NoLanguage runspace refuses) and never loads the Exchange snap-in over WinRS (the second
/// hop a real organisation denies).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OrgQueryAudit {
    /// Cmdlet invocations that reached `/PowerShell`.
    pub cmdlets: usize,
    /// Pipelines on `/PowerShell` that carried script text.
    pub script_text: usize,
    /// WinRS commands that were the snap-in org probe.
    pub snapin_loads: usize,
}

impl OrgQueryAudit {
    pub fn of(records: &[LogRecord]) -> OrgQueryAudit {
        let mut audit = OrgQueryAudit::default();
        for r in records {
            let Some(probe) = r.probe.as_deref() else {
                continue;
            };
            if r.server.ends_with("/PowerShell") {
                if probe.split('|').any(|c| c.starts_with("script:")) {
                    audit.script_text += 1;
                } else {
                    audit.cmdlets += probe.split('|').count();
                }
            } else if probe == "org" {
                audit.snapin_loads += 1;
            }
        }
        audit
    }

    pub fn is_clean(&self) -> bool {
        self.script_text == 0 && self.snapin_loads == 0
    }
}

impl std::fmt::Display for OrgQueryAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = |n: usize, none: &str, some: &str| {
            if n == 0 {
                none.to_string()
            } else {
                format!("{n} {some}")
            }
        };
        write!(
            f,
            "{} cmdlet invocation(s) on /PowerShell, {}, {}",
            self.cmdlets,
            count(
                self.script_text,
                "no script text sent there",
                "pipeline(s) with script text sent there"
            ),
            count(
                self.snapin_loads,
                "no Exchange snap-in loaded over WinRS",
                "Exchange snap-in load(s) over WinRS"
            )
        )
    }
}
