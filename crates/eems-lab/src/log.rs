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
