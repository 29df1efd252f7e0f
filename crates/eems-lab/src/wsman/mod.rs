//! WS-Management / WinRS operations of one simulated host and its shell table.
//!
//! The network layer hands every decrypted SOAP request of an authenticated user to
//! [`HostState::handle`]; the answer has the shapes Windows uses (recorded exchanges:
//! `shared/fixtures/pypsrp-winrs/*.yml`, reference §3). Shells belong to the user, not to a
//! TCP connection, because clients spread one shell's requests over pooled connections.
//!
//! Concurrency: the shell table and each command's state sit behind short `std` mutexes that
//! are never held across an await; a Receive long-polls on the command's `Notify` with the
//! request's `OperationTimeout` as deadline.

use crate::fleet::{Fleet, ServerSpec};
use crate::generate::SplitMix64;
use crate::powershell::{self, ExecContext, Execution};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

mod fault;
mod ops;
mod output;
#[cfg(test)]
mod tests;
mod xml;

use fault::Fault;
use output::{build_receive, is_absolute_path, plan_output};
pub use xml::parse_duration;
use xml::{
    NS_FAULT, NS_SAWP, NS_SAWRSPP, NS_SAXWRSPP, Request, envelope, iso_seconds, new_id, ok_reply,
};
// The lab's /PowerShell endpoint (exchange_ps, feature kerberos) speaks the same WS-Man.
pub(crate) use xml::xml_escape;
#[cfg(feature = "kerberos")]
pub(crate) use xml::{Node, parse_xml};

// ---------------------------------------------------------------------------------------------
// Interface used by the network layer
// ---------------------------------------------------------------------------------------------

/// One decrypted SOAP request from an authenticated user.
pub struct WsmanRequest<'a> {
    /// As the authentication layer names the user, e.g. `LAB\administrator`.
    pub user: &'a str,
    pub client_ip: IpAddr,
    /// The listener URL the request came to, e.g. `http://127.0.0.11:5985/wsman`.
    pub endpoint: &'a str,
    pub body: &'a [u8],
}

/// The SOAP answer plus what the request log and the tests want to know about it.
#[derive(Debug, Clone)]
pub struct WsmanReply {
    /// 200, or 500 for a WS-Management fault.
    pub status: u16,
    pub body: Vec<u8>,
    /// `Create`, `Command`, `Receive`, `Signal`, `Delete`, `Send`, `Fault:<subcode>` or `Unknown`.
    pub action: String,
    /// On Command: `org` / `host` when the script carries that probe marker.
    pub probe: Option<&'static str>,
    pub shell_id: Option<String>,
    pub note: Option<String>,
}

/// Per-host WinRS state: configuration comes from the fleet, shells from the clients.
pub struct HostState {
    fleet: Arc<Fleet>,
    index: usize,
    shells: Mutex<HashMap<String, Shell>>,
    /// Seeds the arbitrary split points, so a run is reproducible per host and command.
    commands_started: AtomicU64,
}

// ---------------------------------------------------------------------------------------------
// Protocol constants
// ---------------------------------------------------------------------------------------------

const NS_S: &str = "http://www.w3.org/2003/05/soap-envelope";
const NS_A: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
const NS_X: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer";
const NS_E: &str = "http://schemas.xmlsoap.org/ws/2004/08/eventing";
const NS_N: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration";
const NS_W: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
const NS_RSP: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
const NS_P: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd";
const NS_F: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault";
const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";
const RESOURCE_CMD: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd";

const ACTION_CREATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create";
const ACTION_DELETE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete";
const SHELL_ACTIONS: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/";
const ACTION_FAULT: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault";
const STATE_DONE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done";
const STATE_RUNNING: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running";
const SIGNAL_TERMINATE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate";
const SIGNAL_CTRL_C: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c";
/// MS-PSRP spells it this way (sic).
const SIGNAL_PSRP_CTRL_C: &str = "http://schemas.microsoft.com/powershell/signal/crtl_c";

/// cmd.exe's command-line limit (Win32 error 206 beyond it).
pub const MAX_COMMAND_LINE: usize = 8191;
/// `MaxTimeoutms` default: used when a request names no OperationTimeout.
const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// `MaxEnvelopeSizekb` default (500 KiB): a client cannot ask for more.
const MAX_ENVELOPE_CAP: usize = 500 * 1024;
const DEFAULT_ENVELOPE: usize = 153_600;
/// Bytes of a ReceiveResponse that are not stream payload (envelope, header, CommandState).
const RECEIVE_OVERHEAD: usize = 1400;
/// Bytes around one `rsp:Stream` element's base64 text.
const STREAM_OVERHEAD: usize = 120;
/// STATUS_CONTROL_C_EXIT: what a console process killed by ctrl_c exits with.
const CTRL_C_EXIT: i32 = -1_073_741_510;
/// Windows PowerShell buffers stderr in blocks of about this size (reference §7.3).
const STDERR_BLOCK: usize = 6 * 1024;

// ---------------------------------------------------------------------------------------------
// Shell table
// ---------------------------------------------------------------------------------------------

struct Shell {
    owner: String,
    last_activity: Instant,
    idle_timeout: Duration,
    /// `WINRS_CODEPAGE=65001` came inside the Create header: console output is UTF-8.
    console_utf8: bool,
    commands: HashMap<String, Arc<Command>>,
}

struct Command {
    state: Mutex<CmdState>,
    /// Wakes a long-polling Receive when the command is signalled or its shell deleted.
    notify: Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamName {
    Stdout,
    Stderr,
}

impl StreamName {
    fn as_str(self) -> &'static str {
        match self {
            StreamName::Stdout => "stdout",
            StreamName::Stderr => "stderr",
        }
    }
}

#[derive(Debug)]
enum Piece {
    Data(StreamName, Vec<u8>),
    /// Ends the current Receive response: what follows goes to a later Receive.
    Break,
}

struct CmdState {
    /// Output exists only from this instant on (`exec_ms`).
    ready_at: Instant,
    /// Receives still to answer with `w:TimedOut` after waiting their full OperationTimeout.
    silent_polls: u32,
    queue: VecDeque<Piece>,
    /// Produces stdout for ever (until ctrl_c, terminate or Delete).
    endless: bool,
    endless_lines: u64,
    exit_code: i32,
    done_sent: bool,
    /// Terminated or its shell deleted: the command id no longer exists.
    gone: bool,
    /// stdin received so far, while the command still reads it (it runs once stdin ends).
    stdin: Option<Vec<u8>>,
    /// Seeds the output plan (noise chunking) of a command that runs only once stdin ends.
    seed: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the whole lab host down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
