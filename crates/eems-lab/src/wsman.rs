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
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the whole lab host down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------------------------

/// A namespace-aware element tree, small enough for SOAP envelopes. Names are local names;
/// the namespace URI is kept so lookups do not depend on the client's prefixes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Node {
    pub ns: String,
    pub name: String,
    /// (local name, value), namespace declarations excluded.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    pub text: String,
}

impl Node {
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
    pub fn children_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Node> + 's {
        self.children.iter().filter(move |c| c.name == name)
    }
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text_trimmed(&self) -> &str {
        self.text.trim()
    }
}

const MAX_DEPTH: usize = 64;

pub(crate) fn parse_xml(body: &[u8]) -> Result<Node, String> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    use quick_xml::reader::NsReader;

    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;

    let make =
        |reader: &NsReader<&[u8]>, e: &quick_xml::events::BytesStart<'_>| -> Result<Node, String> {
            let (res, local) = reader.resolve_element(e.name());
            let ns = match res {
                ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
                ResolveResult::Unbound => String::new(),
                ResolveResult::Unknown(p) => {
                    return Err(format!("undeclared prefix {}", String::from_utf8_lossy(&p)));
                }
            };
            let mut node = Node {
                ns,
                name: String::from_utf8_lossy(local.as_ref()).into_owned(),
                ..Node::default()
            };
            for a in e.attributes() {
                let a = a.map_err(|e| format!("bad attribute: {e}"))?;
                if a.key.as_namespace_binding().is_some() {
                    continue;
                }
                let v = a
                    .unescape_value()
                    .map_err(|e| format!("bad attribute value: {e}"))?;
                node.attrs.push((
                    String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                    v.into_owned(),
                ));
            }
            Ok(node)
        };

    loop {
        let (_, ev) = reader
            .read_resolved_event()
            .map_err(|e| format!("XML error: {e}"))?;
        match ev {
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err("XML nested too deeply".into());
                }
                let node = make(&reader, &e)?;
                stack.push(node);
            }
            Event::Empty(e) => {
                let node = make(&reader, &e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err("more than one root element".into()),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("unbalanced end tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err("more than one root element".into()),
                }
            }
            Event::Text(t) => {
                if let Some(cur) = stack.last_mut() {
                    cur.text
                        .push_str(&t.decode().map_err(|e| format!("bad text: {e}"))?);
                }
            }
            Event::CData(t) => {
                if let Some(cur) = stack.last_mut() {
                    cur.text
                        .push_str(&t.decode().map_err(|e| format!("bad CDATA: {e}"))?);
                }
            }
            Event::GeneralRef(r) => {
                let ch = match r
                    .resolve_char_ref()
                    .map_err(|e| format!("bad character reference: {e}"))?
                {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| format!("bad entity: {e}"))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_string()
                    }
                };
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&ch);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("unexpected end of document".into());
    }
    root.ok_or_else(|| "no root element".into())
}

/// Parses an ISO-8601 / xs:duration (`PT20S`, `PT60.000S`, `P0DT0H1M0S`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut secs = 0f64;
    let mut any = false;
    let mut take = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        let mut unit_idx = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            // Units must come in order, each at most once.
            let pos = units[unit_idx..].iter().position(|(u, _)| *u == c)? + unit_idx;
            if num.is_empty() || num.matches('.').count() > 1 {
                return None;
            }
            let v: f64 = num.parse().ok()?;
            secs += v * units[pos].1;
            any = true;
            num.clear();
            unit_idx = pos + 1;
        }
        num.is_empty().then_some(())
    };
    take(
        date,
        &[
            ('Y', 365.0 * 86400.0),
            ('M', 30.0 * 86400.0),
            ('W', 7.0 * 86400.0),
            ('D', 86400.0),
        ],
    )?;
    if let Some(t) = time {
        if t.is_empty() {
            return None;
        }
        take(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    if !any || !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(secs.min(1e9)))
}

struct Request {
    action: String,
    message_id: Option<String>,
    operation_timeout: Duration,
    max_envelope: usize,
    shell_id: Option<String>,
    body: Option<Node>,
    /// The OptionSet, wherever the client put it (winrm-rs puts Create's between the header
    /// and the body).
    options: Vec<(String, String)>,
    /// Only the options inside the header: the ones Windows is known to honour.
    header_options: Vec<(String, String)>,
}

impl Request {
    /// On failure, the fault and the request's MessageID when it could be read.
    fn parse(xml: &[u8]) -> Result<Request, (Fault, Option<String>)> {
        let env = parse_xml(xml).map_err(|e| (Fault::schema(&e), None))?;
        if env.name != "Envelope" || env.ns != NS_S {
            return Err((
                Fault::schema("the root element is not a SOAP Envelope"),
                None,
            ));
        }
        let header = env
            .child("Header")
            .ok_or_else(|| (Fault::schema("no SOAP Header"), None))?;
        let action = header
            .child("Action")
            .map(|a| a.text_trimmed().to_string())
            .unwrap_or_default();
        let message_id = header
            .child("MessageID")
            .map(|m| m.text_trimmed().to_string());
        let operation_timeout = match header.child("OperationTimeout") {
            None => DEFAULT_OPERATION_TIMEOUT,
            Some(t) => parse_duration(t.text_trimmed()).ok_or_else(|| {
                let why = format!(
                    "OperationTimeout {:?} is not a valid duration",
                    t.text_trimmed()
                );
                (Fault::invalid_parameter(why), message_id.clone())
            })?,
        };
        let max_envelope = header
            .child("MaxEnvelopeSize")
            .and_then(|m| m.text_trimmed().parse::<usize>().ok())
            .unwrap_or(DEFAULT_ENVELOPE)
            .clamp(8192, MAX_ENVELOPE_CAP);
        let shell_id = header
            .child("SelectorSet")
            .into_iter()
            .flat_map(|s| s.children_named("Selector"))
            .find(|s| {
                s.attr("Name")
                    .is_some_and(|n| n.eq_ignore_ascii_case("ShellId"))
            })
            .map(|s| s.text_trimmed().to_string());
        let read = |sets: &mut dyn Iterator<Item = &Node>| -> Vec<(String, String)> {
            sets.flat_map(|o| o.children_named("Option"))
                .map(|o| {
                    (
                        o.attr("Name").unwrap_or_default().to_string(),
                        o.text_trimmed().to_string(),
                    )
                })
                .collect()
        };
        let header_options = read(&mut header.children_named("OptionSet"));
        let options = read(
            &mut header
                .children_named("OptionSet")
                .chain(env.children_named("OptionSet")),
        );
        let body = env.child("Body").cloned();
        Ok(Request {
            action,
            message_id,
            operation_timeout,
            max_envelope,
            shell_id,
            body,
            options,
            header_options,
        })
    }

    fn header_option(&self, name: &str) -> Option<&str> {
        self.header_options
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn body_child(&self, name: &str) -> Option<&Node> {
        self.body.as_ref().and_then(|b| b.child(name))
    }
}

// ---------------------------------------------------------------------------------------------
// Faults (reference §3.6)
// ---------------------------------------------------------------------------------------------

/// Boxed: faults travel through every `Result` of the request path.
#[derive(Debug, Clone)]
struct Fault(Box<FaultBody>);

impl std::ops::Deref for Fault {
    type Target = FaultBody;
    fn deref(&self) -> &FaultBody {
        &self.0
    }
}

#[derive(Debug, Clone)]
struct FaultBody {
    code: &'static str,
    subcode: &'static str,
    reason: String,
    detail: Option<&'static str>,
    wsman_code: u64,
    message: String,
    /// The message is a winrscmd.dll provider fault (as Windows wraps shell plugin errors).
    provider: bool,
    /// Why the lab refused, for the request log (Windows says less).
    note: Option<String>,
}

impl Fault {
    fn timed_out() -> Fault {
        let text = "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.  ";
        Fault(Box::new(FaultBody {
            code: "s:Receiver",
            subcode: "TimedOut",
            reason: text.into(),
            detail: None,
            wsman_code: 2_150_858_793,
            message: text.into(),
            provider: false,
            note: None,
        }))
    }

    fn invalid_selectors(message: String) -> Fault {
        Fault(Box::new(FaultBody {
            code: "s:Sender",
            subcode: "InvalidSelectors",
            reason: "The WS-Management service cannot process the request because the request contained invalid selectors for the resource. ".into(),
            detail: Some("http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors"),
            wsman_code: 2_150_858_843,
            message,
            provider: false,
            note: None,
        }))
    }

    fn unknown_command() -> Fault {
        Fault::invalid_selectors(
            "The Windows Remote Shell received a request to perform an operation on a command identifier that does not exist. Either the command has completed execution or the client specified an invalid command identifier. ".into(),
        )
    }

    fn unknown_shell(id: &str) -> Fault {
        Fault::invalid_selectors(format!(
            "The request for the Windows Remote Shell with ShellId {id} failed because the shell was not found on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on the server. Provide the correct ShellId or create a new shell and retry the operation. "
        ))
    }

    fn too_long() -> Fault {
        let text = "The filename or extension is too long. ";
        Fault(Box::new(FaultBody {
            code: "s:Receiver",
            subcode: "InternalError",
            reason: text.into(),
            detail: None,
            wsman_code: 2_147_942_606,
            message: text.into(),
            provider: true,
            note: None,
        }))
    }

    fn file_not_found() -> Fault {
        let text = "The system cannot find the file specified. ";
        Fault(Box::new(FaultBody {
            code: "s:Receiver",
            subcode: "InternalError",
            reason: text.into(),
            detail: None,
            wsman_code: 2_147_942_402,
            message: text.into(),
            provider: true,
            note: None,
        }))
    }

    fn shell_quota(max: u32) -> Fault {
        let text = format!(
            "The WS-Management service cannot process the request. This user is allowed a maximum number of {max} concurrent shells, which has been exceeded. Close existing shells or raise the quota for this user. "
        );
        Fault(Box::new(FaultBody {
            code: "s:Receiver",
            subcode: "InternalError",
            reason: text.clone(),
            detail: None,
            wsman_code: 2_150_859_173,
            message: text,
            provider: false,
            note: None,
        }))
    }

    fn invalid_parameter(why: String) -> Fault {
        let text = "The parameter is incorrect. ";
        Fault(Box::new(FaultBody {
            code: "s:Sender",
            subcode: "InvalidParameter",
            reason: text.into(),
            detail: Some("http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/InvalidValue"),
            wsman_code: 87,
            message: text.into(),
            provider: true,
            note: Some(why),
        }))
    }

    fn schema(why: &str) -> Fault {
        let text = "The SOAP XML in the message does not match the corresponding XML schema definition. Change the XML and retry. ";
        Fault(Box::new(FaultBody {
            code: "s:Sender",
            subcode: "SchemaValidationError",
            reason: text.into(),
            detail: None,
            wsman_code: 2_150_858_817,
            message: text.into(),
            provider: false,
            note: Some(why.to_string()),
        }))
    }

    fn action_not_supported() -> Fault {
        let text = "The WS-Management service cannot process the request because the specified action is not supported. ";
        Fault(Box::new(FaultBody {
            code: "s:Sender",
            subcode: "ActionNotSupported",
            reason: text.into(),
            detail: None,
            wsman_code: 2_150_858_754,
            message: text.into(),
            provider: false,
            note: None,
        }))
    }

    fn internal(text: &str) -> Fault {
        Fault(Box::new(FaultBody {
            code: "s:Receiver",
            subcode: "InternalError",
            reason: text.into(),
            detail: None,
            wsman_code: 2_147_500_037,
            message: text.into(),
            provider: false,
            note: None,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Response building
// ---------------------------------------------------------------------------------------------

pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string().to_ascii_uppercase()
}

/// `s:Envelope` with the namespace set Windows declares for this kind of response.
fn envelope(
    namespaces: &[(&str, &str)],
    action: &str,
    relates_to: Option<&str>,
    body: &str,
) -> Vec<u8> {
    let mut out = String::with_capacity(body.len() + 1024);
    out.push_str("<s:Envelope xml:lang=\"en-US\"");
    for (p, ns) in namespaces {
        let _ = write!(out, " xmlns:{p}=\"{ns}\"");
    }
    out.push_str("><s:Header>");
    let _ = write!(
        out,
        "<a:Action>{action}</a:Action><a:MessageID>uuid:{}</a:MessageID>",
        new_id()
    );
    let _ = write!(out, "<a:To>{ANONYMOUS}</a:To>");
    if let Some(r) = relates_to {
        let _ = write!(out, "<a:RelatesTo>{}</a:RelatesTo>", xml_escape(r));
    }
    out.push_str("</s:Header>");
    out.push_str(body);
    out.push_str("</s:Envelope>");
    out.into_bytes()
}

const NS_SAXWRSPP: &[(&str, &str)] = &[
    ("s", NS_S),
    ("a", NS_A),
    ("x", NS_X),
    ("w", NS_W),
    ("rsp", NS_RSP),
    ("p", NS_P),
];
const NS_SAWRSPP: &[(&str, &str)] = &[
    ("s", NS_S),
    ("a", NS_A),
    ("w", NS_W),
    ("rsp", NS_RSP),
    ("p", NS_P),
];
const NS_SAWP: &[(&str, &str)] = &[("s", NS_S), ("a", NS_A), ("w", NS_W), ("p", NS_P)];
const NS_FAULT: &[(&str, &str)] = &[
    ("s", NS_S),
    ("a", NS_A),
    ("x", NS_X),
    ("e", NS_E),
    ("n", NS_N),
    ("w", NS_W),
    ("p", NS_P),
];

fn ok_reply(action: &str, body: Vec<u8>, shell_id: Option<String>) -> WsmanReply {
    WsmanReply {
        status: 200,
        body,
        action: action.into(),
        probe: None,
        shell_id,
        note: None,
    }
}

fn iso_seconds(d: Duration) -> String {
    format!("PT{}.{:03}S", d.as_secs(), d.subsec_millis())
}

// ---------------------------------------------------------------------------------------------
// The host
// ---------------------------------------------------------------------------------------------

impl HostState {
    /// `index` = the server's index in `fleet.servers`.
    pub fn new(fleet: Arc<Fleet>, index: usize) -> Arc<HostState> {
        Arc::new(HostState {
            fleet,
            index,
            shells: Mutex::new(HashMap::new()),
            commands_started: AtomicU64::new(0),
        })
    }

    /// Shells currently open on this host (tests assert shells are always deleted).
    pub fn open_shells(&self) -> usize {
        let mut shells = lock(&self.shells);
        Self::reap(&mut shells, Instant::now());
        shells.len()
    }

    fn server(&self) -> Option<&ServerSpec> {
        self.fleet.servers.get(self.index)
    }

    /// The listener host name as Windows puts it into `WSManFault/@Machine`.
    fn machine(endpoint: &str) -> String {
        let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or(rest);
        match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6).to_string(),
            None => authority
                .rsplit_once(':')
                .map_or(authority, |(h, _)| h)
                .to_string(),
        }
    }

    /// Drops shells idle for longer than their IdleTimeOut, as WinRM's idle timer does.
    fn reap(shells: &mut HashMap<String, Shell>, now: Instant) {
        shells.retain(|_, sh| {
            let keep = now.saturating_duration_since(sh.last_activity) <= sh.idle_timeout;
            if !keep {
                for cmd in sh.commands.values() {
                    lock(&cmd.state).gone = true;
                    cmd.notify.notify_waiters();
                }
            }
            keep
        });
    }

    /// Handles one decrypted SOAP request from an authenticated user. Long-polls Receive.
    pub async fn handle(&self, req: WsmanRequest<'_>) -> WsmanReply {
        let parsed = match Request::parse(req.body) {
            Ok(p) => p,
            Err((f, relates)) => return self.fault_reply(&req, relates.as_deref(), f, None),
        };
        let relates = parsed.message_id.clone();
        let result = match parsed.action.as_str() {
            ACTION_CREATE => self.create(&req, &parsed),
            ACTION_DELETE => self.delete(&req, &parsed),
            a => match a.strip_prefix(SHELL_ACTIONS) {
                Some("Command") => self.command(&req, &parsed),
                Some("Receive") => self.receive(&req, &parsed).await,
                Some("Signal") => self.signal(&req, &parsed),
                Some("Send") => self.send(&req, &parsed),
                _ => Err(Fault::action_not_supported()),
            },
        };
        match result {
            Ok(r) => r,
            Err(f) => {
                let unknown = f.subcode == "ActionNotSupported";
                let mut r = self.fault_reply(&req, relates.as_deref(), f, parsed.shell_id.clone());
                if unknown {
                    r.action = "Unknown".into();
                    r.note = Some(format!("unsupported action {:?}", parsed.action));
                }
                r
            }
        }
    }

    fn fault_reply(
        &self,
        req: &WsmanRequest<'_>,
        relates: Option<&str>,
        f: Fault,
        shell_id: Option<String>,
    ) -> WsmanReply {
        let machine = xml_escape(&Self::machine(req.endpoint));
        let mut body = String::new();
        let _ = write!(
            body,
            "<s:Body><s:Fault><s:Code><s:Value>{}</s:Value><s:Subcode><s:Value>w:{}</s:Value></s:Subcode></s:Code>\
             <s:Reason><s:Text xml:lang=\"en-US\">{}</s:Text></s:Reason><s:Detail>",
            f.code,
            f.subcode,
            xml_escape(&f.reason)
        );
        if let Some(d) = f.detail {
            let _ = write!(body, "<w:FaultDetail>{d}</w:FaultDetail>");
        }
        let _ = write!(
            body,
            "<f:WSManFault xmlns:f=\"{NS_F}\" Code=\"{}\" Machine=\"{machine}\"><f:Message>",
            f.wsman_code
        );
        if f.provider {
            let _ = write!(
                body,
                "<f:ProviderFault provider=\"Shell cmd plugin\" path=\"%systemroot%\\system32\\winrscmd.dll\">{}</f:ProviderFault>",
                xml_escape(&f.message)
            );
        } else {
            body.push_str(&xml_escape(&f.message));
        }
        body.push_str("</f:Message></f:WSManFault></s:Detail></s:Fault></s:Body>");
        WsmanReply {
            status: 500,
            body: envelope(NS_FAULT, ACTION_FAULT, relates, &body),
            action: format!("Fault:{}", f.subcode),
            probe: None,
            shell_id,
            note: f.0.note,
        }
    }

    // --- Create ---------------------------------------------------------------------------

    fn create(&self, req: &WsmanRequest<'_>, p: &Request) -> Result<WsmanReply, Fault> {
        let listener = &self.fleet.listener;
        let shell_el = p.body_child("Shell");
        let idle_timeout = shell_el
            .and_then(|s| s.child("IdleTimeOut"))
            .and_then(|t| parse_duration(t.text_trimmed()))
            .unwrap_or(Duration::from_secs(listener.idle_timeout_secs));
        let id = new_id();
        {
            let now = Instant::now();
            let mut shells = lock(&self.shells);
            Self::reap(&mut shells, now);
            let mine = shells
                .values()
                .filter(|s| s.owner.eq_ignore_ascii_case(req.user))
                .count();
            if mine >= listener.max_shells_per_user as usize {
                return Err(Fault::shell_quota(listener.max_shells_per_user));
            }
            shells.insert(
                id.clone(),
                Shell {
                    owner: req.user.to_string(),
                    last_activity: now,
                    idle_timeout,
                    console_utf8: p.header_option("WINRS_CODEPAGE") == Some("65001"),
                    commands: HashMap::new(),
                },
            );
        }

        let mut body = String::new();
        let _ = write!(
            body,
            "<s:Body><x:ResourceCreated><a:Address>{}</a:Address><a:ReferenceParameters>\
             <w:ResourceURI>{RESOURCE_CMD}</w:ResourceURI><w:SelectorSet><w:Selector Name=\"ShellId\">{id}</w:Selector>\
             </w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>\
             <rsp:Shell xmlns:rsp=\"{NS_RSP}\"><rsp:ShellId>{id}</rsp:ShellId><rsp:ResourceUri>{RESOURCE_CMD}</rsp:ResourceUri>\
             <rsp:Owner>{}</rsp:Owner><rsp:ClientIP>{}</rsp:ClientIP>",
            xml_escape(req.endpoint),
            xml_escape(req.user),
            req.client_ip
        );
        // Windows echoes the optional shell settings it accepted, in this order.
        if let Some(env) = shell_el.and_then(|s| s.child("Environment")) {
            body.push_str("<rsp:Environment>");
            for v in env.children_named("Variable") {
                let _ = write!(
                    body,
                    "<rsp:Variable Name=\"{}\">{}</rsp:Variable>",
                    xml_escape(v.attr("Name").unwrap_or_default()),
                    xml_escape(&v.text)
                );
            }
            body.push_str("</rsp:Environment>");
        }
        if let Some(wd) = shell_el.and_then(|s| s.child("WorkingDirectory")) {
            let _ = write!(
                body,
                "<rsp:WorkingDirectory>{}</rsp:WorkingDirectory>",
                xml_escape(wd.text_trimmed())
            );
        }
        let _ = write!(
            body,
            "<rsp:IdleTimeOut>{}</rsp:IdleTimeOut><rsp:InputStreams>stdin</rsp:InputStreams>\
             <rsp:OutputStreams>stdout stderr</rsp:OutputStreams><rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime>\
             <rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity></rsp:Shell></s:Body>",
            iso_seconds(idle_timeout)
        );
        let body = envelope(
            NS_SAXWRSPP,
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
            p.message_id.as_deref(),
            &body,
        );
        let mut r = ok_reply("Create", body, Some(id));
        let codepage = p
            .options
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("WINRS_CODEPAGE"));
        if let Some((_, cp)) = codepage {
            r.note = Some(format!("WINRS_CODEPAGE={cp}"));
        }
        Ok(r)
    }

    /// Finds the caller's shell and marks it active. Shells of other users do not exist for
    /// this caller.
    fn with_shell<T>(
        &self,
        req: &WsmanRequest<'_>,
        p: &Request,
        f: impl FnOnce(&mut Shell) -> Result<T, Fault>,
    ) -> Result<T, Fault> {
        let id = p.shell_id.as_deref().unwrap_or_default();
        let now = Instant::now();
        let mut shells = lock(&self.shells);
        Self::reap(&mut shells, now);
        let key = shells.keys().find(|k| k.eq_ignore_ascii_case(id)).cloned();
        let shell = key
            .and_then(|k| shells.get_mut(&k))
            .filter(|s| s.owner.eq_ignore_ascii_case(req.user))
            .ok_or_else(|| Fault::unknown_shell(id))?;
        shell.last_activity = now;
        f(shell)
    }

    fn find_command(shell: &Shell, id: &str) -> Option<Arc<Command>> {
        shell
            .commands
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(id))
            .map(|(_, c)| Arc::clone(c))
    }

    // --- Command --------------------------------------------------------------------------

    fn command(&self, req: &WsmanRequest<'_>, p: &Request) -> Result<WsmanReply, Fault> {
        // Resolve the shell first: an unknown shell wins over a bad command line.
        let console_utf8 = self.with_shell(req, p, |sh| Ok(sh.console_utf8))?;
        let line_el = p
            .body_child("CommandLine")
            .ok_or_else(|| Fault::invalid_parameter("no CommandLine".into()))?;
        let mut line = line_el
            .child("Command")
            .map(|c| c.text.trim().to_string())
            .unwrap_or_default();
        for a in line_el.children_named("Arguments") {
            line.push(' ');
            line.push_str(&a.text);
        }
        if line.encode_utf16().count() > MAX_COMMAND_LINE {
            return Err(Fault::too_long());
        }
        let skip_cmd = p
            .header_option("WINRS_SKIP_CMD_SHELL")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if skip_cmd && !is_absolute_path(line.trim_start()) {
            // Without cmd.exe nothing searches the path or expands %SystemRoot%
            // (recorded: test_winrs_no_cmd_shell.yml).
            return Err(Fault::file_not_found());
        }
        let server = self
            .server()
            .ok_or_else(|| Fault::internal("The lab host has no server definition. "))?;
        let exec = powershell::execute(
            &line,
            &ExecContext {
                fleet: &self.fleet,
                server,
                user: req.user,
                console_utf8,
            },
        );

        let seq = self.commands_started.fetch_add(1, Ordering::Relaxed);
        let mut rng = SplitMix64::new((self.index as u64) << 32 ^ seq ^ 0x5eed);
        let queue = plan_output(&exec, server.faults.noise, &mut rng);
        let id = line_el
            .attr("CommandId")
            .filter(|c| uuid::Uuid::parse_str(c).is_ok())
            .map(|c| c.to_ascii_uppercase())
            .unwrap_or_else(new_id);
        let cmd = Arc::new(Command {
            state: Mutex::new(CmdState {
                ready_at: Instant::now() + Duration::from_millis(server.faults.exec_ms),
                silent_polls: server.faults.timed_out_polls,
                queue,
                endless: exec.endless,
                endless_lines: 0,
                exit_code: exec.exit_code,
                done_sent: false,
                gone: false,
            }),
            notify: Notify::new(),
        });
        self.with_shell(req, p, |sh| {
            sh.commands.insert(id.clone(), cmd);
            Ok(())
        })?;
        let body = format!(
            "<s:Body><rsp:CommandResponse><rsp:CommandId>{id}</rsp:CommandId></rsp:CommandResponse></s:Body>"
        );
        let body = envelope(
            NS_SAXWRSPP,
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandResponse",
            p.message_id.as_deref(),
            &body,
        );
        let mut r = ok_reply("Command", body, p.shell_id.clone());
        r.probe = exec.probe;
        r.note = exec.note;
        Ok(r)
    }

    // --- Receive --------------------------------------------------------------------------

    async fn receive(&self, req: &WsmanRequest<'_>, p: &Request) -> Result<WsmanReply, Fault> {
        let desired = p
            .body_child("Receive")
            .and_then(|r| r.child("DesiredStream"));
        let cmd_id = desired
            .and_then(|d| d.attr("CommandId"))
            .map(str::to_string);
        let cmd = self.with_shell(req, p, |sh| match &cmd_id {
            Some(id) => Self::find_command(sh, id).ok_or_else(Fault::unknown_command),
            // A shell-wide Receive is meaningless for cmd shells; Windows answers this.
            None => Err(Fault::invalid_parameter(
                "DesiredStream without CommandId".into(),
            )),
        })?;
        let cmd_id = cmd_id.unwrap_or_default().to_ascii_uppercase();
        let deadline = Instant::now() + p.operation_timeout;

        // Each turn either answers or waits for a state change or a deadline; a few hundred
        // turns cover any legitimate sequence of wake-ups.
        for _ in 0..1000 {
            let notified = cmd.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            enum Wait {
                Silent,
                Until(Instant),
            }
            let wait = {
                let mut st = lock(&cmd.state);
                if st.gone || st.done_sent {
                    return Err(Fault::unknown_command());
                }
                let now = Instant::now();
                if st.silent_polls > 0 {
                    Wait::Silent
                } else if now >= st.ready_at {
                    let body = build_receive(&mut st, &cmd_id, p.max_envelope);
                    let body = envelope(
                        NS_SAWRSPP,
                        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ReceiveResponse",
                        p.message_id.as_deref(),
                        &body,
                    );
                    return Ok(ok_reply("Receive", body, p.shell_id.clone()));
                } else if now >= deadline {
                    return Err(Fault::timed_out());
                } else {
                    Wait::Until(st.ready_at.min(deadline))
                }
            };
            match wait {
                Wait::Silent => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => {
                            let mut st = lock(&cmd.state);
                            if st.gone {
                                return Err(Fault::unknown_command());
                            }
                            st.silent_polls = st.silent_polls.saturating_sub(1);
                            return Err(Fault::timed_out());
                        }
                        _ = &mut notified => {}
                    }
                }
                Wait::Until(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t) => {}
                        _ = &mut notified => {}
                    }
                }
            }
        }
        Err(Fault::timed_out())
    }

    // --- Signal / Send / Delete -----------------------------------------------------------

    fn signal(&self, req: &WsmanRequest<'_>, p: &Request) -> Result<WsmanReply, Fault> {
        let sig = p
            .body_child("Signal")
            .ok_or_else(|| Fault::invalid_parameter("no Signal".into()))?;
        let cmd_id = sig.attr("CommandId").unwrap_or_default().to_string();
        let code = sig
            .child("Code")
            .map(|c| c.text_trimmed().to_string())
            .unwrap_or_default();
        self.with_shell(req, p, |sh| {
            let cmd = Self::find_command(sh, &cmd_id).ok_or_else(Fault::unknown_command)?;
            if code == SIGNAL_TERMINATE {
                // The process is killed and the command id ceases to exist.
                sh.commands.retain(|k, _| !k.eq_ignore_ascii_case(&cmd_id));
                lock(&cmd.state).gone = true;
            } else if code == SIGNAL_CTRL_C || code == SIGNAL_PSRP_CTRL_C {
                let mut st = lock(&cmd.state);
                // A process that already exited has nothing to interrupt; its output stays.
                let running = st.endless || st.silent_polls > 0 || Instant::now() < st.ready_at;
                if running && !st.done_sent {
                    st.endless = false;
                    st.queue.clear();
                    st.exit_code = CTRL_C_EXIT;
                    st.silent_polls = 0;
                    st.ready_at = Instant::now();
                }
            } else {
                return Err(Fault::invalid_parameter(format!("unknown signal {code}")));
            }
            cmd.notify.notify_waiters();
            Ok(())
        })?;
        let body = envelope(
            NS_SAXWRSPP,
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SignalResponse",
            p.message_id.as_deref(),
            "<s:Body><rsp:SignalResponse/></s:Body>",
        );
        let mut r = ok_reply("Signal", body, p.shell_id.clone());
        r.note = Some(code.rsplit('/').next().unwrap_or_default().to_string());
        Ok(r)
    }

    /// stdin is accepted and ignored: no lab command reads it.
    fn send(&self, req: &WsmanRequest<'_>, p: &Request) -> Result<WsmanReply, Fault> {
        let cmd_id = p
            .body_child("Send")
            .and_then(|s| s.child("Stream"))
            .and_then(|s| s.attr("CommandId"))
            .unwrap_or_default()
            .to_string();
        self.with_shell(req, p, |sh| {
            Self::find_command(sh, &cmd_id)
                .map(|_| ())
                .ok_or_else(Fault::unknown_command)
        })?;
        let body = envelope(
            NS_SAXWRSPP,
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SendResponse",
            p.message_id.as_deref(),
            "<s:Body><rsp:SendResponse/></s:Body>",
        );
        Ok(ok_reply("Send", body, p.shell_id.clone()))
    }

    fn delete(&self, req: &WsmanRequest<'_>, p: &Request) -> Result<WsmanReply, Fault> {
        let id = p.shell_id.clone().unwrap_or_default();
        self.with_shell(req, p, |sh| {
            for cmd in sh.commands.values() {
                lock(&cmd.state).gone = true;
                cmd.notify.notify_waiters();
            }
            Ok(())
        })?;
        lock(&self.shells).retain(|k, _| !k.eq_ignore_ascii_case(&id));
        let body = envelope(
            NS_SAWP,
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
            p.message_id.as_deref(),
            "<s:Body></s:Body>",
        );
        Ok(ok_reply("Delete", body, Some(id)))
    }
}

// ---------------------------------------------------------------------------------------------
// Output delivery
// ---------------------------------------------------------------------------------------------

/// Decides which bytes go into which Receive response.
///
/// Without faults everything, End streams and Done go out in one response (stdout in two
/// Stream elements split at an arbitrary byte, so clients must concatenate). A CLIXML stderr
/// starts with the `#< CLIXML` marker alone in its own response, as Windows sends it.
/// `noise` spreads stdout and the CLIXML document over several responses, cut anywhere.
fn plan_output(exec: &Execution, noise: bool, rng: &mut SplitMix64) -> VecDeque<Piece> {
    let mut q = VecDeque::new();
    let marker = powershell::CLIXML_MARKER.as_bytes();
    let (marker_first, stderr_rest) = match exec.stderr.strip_prefix(marker) {
        Some(rest) => (true, rest),
        None => (false, &exec.stderr[..]),
    };
    if marker_first {
        q.push_back(Piece::Data(StreamName::Stderr, marker.to_vec()));
        q.push_back(Piece::Break);
    }
    if !noise {
        if !exec.stdout.is_empty() {
            let cut = 1 + rng.below(exec.stdout.len() as u64) as usize;
            q.push_back(Piece::Data(StreamName::Stdout, exec.stdout[..cut].to_vec()));
            if cut < exec.stdout.len() {
                q.push_back(Piece::Data(StreamName::Stdout, exec.stdout[cut..].to_vec()));
            }
        }
        if !stderr_rest.is_empty() {
            q.push_back(Piece::Data(StreamName::Stderr, stderr_rest.to_vec()));
        }
        return q;
    }

    // stdout in three parts, one cut placed inside a multi-byte UTF-8 sequence when there is one.
    let out = &exec.stdout;
    let mut cuts: Vec<usize> = Vec::new();
    if let Some(i) = out.iter().position(|b| *b >= 0xC0) {
        cuts.push(i + 1);
    }
    while cuts.len() < 2 && out.len() > 2 {
        cuts.push(1 + rng.below(out.len() as u64 - 1) as usize);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut stdout_parts = Vec::new();
    let mut prev = 0;
    for c in cuts.into_iter().chain(std::iter::once(out.len())) {
        if c > prev {
            stdout_parts.push(out[prev..c].to_vec());
            prev = c;
        }
    }
    // stderr in blocks of about 6 KiB, each cut at an arbitrary byte (mid-tag, mid-escape).
    let mut stderr_parts = Vec::new();
    let mut pos = 0;
    while pos < stderr_rest.len() {
        let len = (STDERR_BLOCK / 2 + rng.below(STDERR_BLOCK as u64) as usize)
            .min(stderr_rest.len() - pos);
        stderr_parts.push(stderr_rest[pos..pos + len].to_vec());
        pos += len;
    }
    let turns = stdout_parts.len().max(stderr_parts.len());
    let mut so = stdout_parts.into_iter();
    let mut se = stderr_parts.into_iter();
    for i in 0..turns {
        if i > 0 {
            q.push_back(Piece::Break);
        }
        if let Some(p) = so.next() {
            q.push_back(Piece::Data(StreamName::Stdout, p));
        }
        if let Some(p) = se.next() {
            q.push_back(Piece::Data(StreamName::Stderr, p));
        }
    }
    q
}

fn is_absolute_path(line: &str) -> bool {
    let b = line.as_bytes();
    line.starts_with(r"\\")
        || (b.len() > 2 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\')
}

fn b64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

fn push_stream(body: &mut String, name: StreamName, cmd_id: &str, data: &[u8]) {
    let _ = write!(
        body,
        "<rsp:Stream Name=\"{}\" CommandId=\"{cmd_id}\">{}</rsp:Stream>",
        name.as_str(),
        B64.encode(data)
    );
}

/// One ReceiveResponse body from what is ready, within the client's MaxEnvelopeSize.
fn build_receive(st: &mut CmdState, cmd_id: &str, max_envelope: usize) -> String {
    let mut budget = max_envelope.saturating_sub(RECEIVE_OVERHEAD).max(2048);
    let mut body = String::from("<s:Body><rsp:ReceiveResponse>");
    let mut sent_any = false;
    while let Some(piece) = st.queue.pop_front() {
        match piece {
            Piece::Break => {
                if sent_any {
                    break;
                }
            }
            Piece::Data(name, data) => {
                let room = budget.saturating_sub(STREAM_OVERHEAD) / 4 * 3;
                if room == 0 {
                    st.queue.push_front(Piece::Data(name, data));
                    break;
                }
                if data.len() > room {
                    let (now, later) = data.split_at(room);
                    push_stream(&mut body, name, cmd_id, now);
                    st.queue.push_front(Piece::Data(name, later.to_vec()));
                    break;
                }
                budget = budget.saturating_sub(STREAM_OVERHEAD + b64_len(data.len()));
                push_stream(&mut body, name, cmd_id, &data);
                sent_any = true;
            }
        }
    }
    if st.queue.is_empty() && st.endless {
        // A full chunk per Receive, for ever.
        let room = budget.saturating_sub(STREAM_OVERHEAD) / 4 * 3;
        let mut chunk = Vec::with_capacity(room);
        while chunk.len() + 64 < room {
            st.endless_lines += 1;
            let _ = write!(
                ByteWriter(&mut chunk),
                "Processing mailbox database item {:>10} of unknown ...\r\n",
                st.endless_lines
            );
        }
        push_stream(&mut body, StreamName::Stdout, cmd_id, &chunk);
    }
    if st.queue.is_empty() && !st.endless {
        let _ = write!(
            body,
            "<rsp:Stream Name=\"stdout\" CommandId=\"{cmd_id}\" End=\"true\"></rsp:Stream>\
             <rsp:Stream Name=\"stderr\" CommandId=\"{cmd_id}\" End=\"true\"></rsp:Stream>\
             <rsp:CommandState CommandId=\"{cmd_id}\" State=\"{STATE_DONE}\"><rsp:ExitCode>{}</rsp:ExitCode></rsp:CommandState>",
            st.exit_code
        );
        st.done_sent = true;
    } else {
        let _ = write!(
            body,
            "<rsp:CommandState CommandId=\"{cmd_id}\" State=\"{STATE_RUNNING}\"></rsp:CommandState>"
        );
    }
    body.push_str("</rsp:ReceiveResponse></s:Body>");
    body
}

struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT20S"), Some(Duration::from_secs(20)));
        assert_eq!(parse_duration("PT60.000S"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("PT0.2S"), Some(Duration::from_millis(200)));
        assert_eq!(parse_duration("P0DT0H1M5S"), Some(Duration::from_secs(65)));
        assert_eq!(parse_duration("PT1H"), Some(Duration::from_secs(3600)));
        for bad in [
            "", "P", "PT", "20S", "PTS", "PT1.2.3S", "PT5X", "PT5S5M", "-PT5S",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn xml_entities_and_prefixes() {
        let n = parse_xml(
            br#"<?xml version="1.0"?><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><x:A xmlns:x="urn:x" k="&quot;&apos;">a&amp;b&lt;&#x41;&#66;<![CDATA[<c>]]></x:A></e:Body></e:Envelope>"#,
        )
        .expect("parses");
        assert_eq!(n.name, "Envelope");
        assert_eq!(n.ns, NS_S);
        let a = n.child("Body").and_then(|b| b.child("A")).expect("A");
        assert_eq!(a.ns, "urn:x");
        assert_eq!(a.text, "a&b<AB<c>");
        assert_eq!(a.attr("k"), Some("\"'"));
        assert!(parse_xml(b"<a><b></a>").is_err());
        assert!(parse_xml(b"<a>&nope;</a>").is_err());
        assert!(parse_xml(b"<p:a/>").is_err());
    }

    #[test]
    fn machine_from_endpoint() {
        assert_eq!(
            HostState::machine("http://127.0.0.11:5985/wsman"),
            "127.0.0.11"
        );
        assert_eq!(
            HostState::machine("https://ex01.lab.local/wsman"),
            "ex01.lab.local"
        );
        assert_eq!(HostState::machine("http://[::1]:5985/wsman"), "::1");
    }
}
