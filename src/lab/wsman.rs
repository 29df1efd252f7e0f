//! PLACEHOLDER for the network layer's branch: just enough WS-Management/WinRS for the
//! listener's end-to-end tests (Create → Command → Receive → Signal → Delete, every command
//! finishing at once with exit code 0 and no output). The real module replaces this file at
//! merge; only the interface below is shared:
//!
//! - [`HostState::new`]`(server, fleet)`, [`HostState::open_shells`],
//!   [`HostState::handle`]`(WsmanRequest) -> WsmanReply` (async; may wait for output);
//! - [`WsmanRequest`] `{ user, client_ip, body }` with `user` as `DOMAIN\user`;
//! - [`WsmanReply`] `{ status, body, action, shell_id, probe }`, `action` being the short
//!   operation name (`Create`, `Command`, `Receive`, `Signal`, `Delete`, ...).

use crate::lab::fleet::{Fleet, ServerSpec};
use quick_xml::events::Event;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

/// One authenticated SOAP request, already unsealed.
pub struct WsmanRequest<'a> {
    /// `DOMAIN\user` as Windows shows the authenticated user.
    pub user: &'a str,
    pub client_ip: IpAddr,
    pub body: &'a [u8],
}

/// The SOAP answer and what the request log wants to know about it.
#[derive(Debug, Clone)]
pub struct WsmanReply {
    /// 200, or 500 for a SOAP fault.
    pub status: u16,
    pub body: Vec<u8>,
    pub action: String,
    pub shell_id: Option<String>,
    pub probe: Option<String>,
}

struct Shell {
    owner: String,
    commands: HashSet<String>,
}

pub struct HostState {
    name: String,
    shells: Mutex<HashMap<String, Shell>>,
}

#[derive(Default)]
struct Parsed {
    action: String,
    message_id: String,
    shell_id: Option<String>,
    command_id: Option<String>,
}

fn parse(body: &[u8]) -> Option<Parsed> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut p = Parsed::default();
    let mut current: Vec<u8> = Vec::new();
    let mut selector_is_shell = false;
    let mut buf = Vec::new();
    // Envelopes are small; the bound only guards against a pathological body.
    for _ in 0..100_000 {
        match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e) | Event::Empty(e) => {
                current = e.local_name().as_ref().to_vec();
                selector_is_shell = current == b"Selector"
                    && e.try_get_attribute("Name")
                        .ok()
                        .flatten()
                        .is_some_and(|a| a.value.as_ref() == b"ShellId");
                if let Some(a) = e.try_get_attribute("CommandId").ok().flatten() {
                    p.command_id = Some(String::from_utf8_lossy(&a.value).into_owned());
                }
            }
            Event::Text(t) => {
                let text = t.decode().ok()?.trim().to_string();
                match current.as_slice() {
                    b"Action" => p.action = text,
                    b"MessageID" => p.message_id = text,
                    b"Selector" if selector_is_shell => p.shell_id = Some(text),
                    _ => {}
                }
            }
            Event::End(_) => current.clear(),
            Event::Eof => return Some(p),
            _ => {}
        }
        buf.clear();
    }
    None
}

const NS: &str = r#"xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd""#;
const SHELL_NS: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";

fn envelope(action: &str, relates_to: &str, body: &str) -> Vec<u8> {
    format!(
        r#"<s:Envelope xml:lang="en-US" {NS}><s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{}</a:MessageID><a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To><a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>"#,
        uuid::Uuid::new_v4().to_string().to_uppercase()
    )
    .into_bytes()
}

fn fault(relates_to: &str, subcode: &str, reason: &str) -> Vec<u8> {
    envelope(
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
        relates_to,
        &format!(
            r#"<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>w:{subcode}</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{reason} </s:Text></s:Reason></s:Fault>"#
        ),
    )
}

impl HostState {
    pub fn new(server: &ServerSpec, _fleet: &Fleet) -> HostState {
        HostState {
            name: server.name.clone(),
            shells: Mutex::new(HashMap::new()),
        }
    }

    pub fn open_shells(&self) -> usize {
        self.shells.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub async fn handle(&self, req: WsmanRequest<'_>) -> WsmanReply {
        let Some(p) = parse(req.body) else {
            return WsmanReply {
                status: 400,
                body: Vec::new(),
                action: "Invalid".into(),
                shell_id: None,
                probe: None,
            };
        };
        let short = p.action.rsplit('/').next().unwrap_or_default().to_string();
        let reply = |status, body| WsmanReply {
            status,
            body,
            action: short.clone(),
            shell_id: p.shell_id.clone(),
            probe: None,
        };
        let Ok(mut shells) = self.shells.lock() else {
            return reply(500, fault(&p.message_id, "InternalError", "lock poisoned"));
        };
        let bad_shell = || {
            fault(
                &p.message_id,
                "InvalidSelectors",
                "The request contained invalid selectors for the resource.",
            )
        };
        match short.as_str() {
            "Create" => {
                let id = uuid::Uuid::new_v4().to_string().to_uppercase();
                shells.insert(
                    id.clone(),
                    Shell {
                        owner: req.user.to_string(),
                        commands: HashSet::new(),
                    },
                );
                let owner = &shells[&id].owner;
                let body = format!(
                    r#"<x:ResourceCreated><a:Address>http://{name}:5985/wsman</a:Address><a:ReferenceParameters><w:ResourceURI>{SHELL_NS}/cmd</w:ResourceURI><w:SelectorSet><w:Selector Name="ShellId">{id}</w:Selector></w:SelectorSet></a:ReferenceParameters></x:ResourceCreated><rsp:Shell xmlns:rsp="{SHELL_NS}"><rsp:ShellId>{id}</rsp:ShellId><rsp:Owner>{owner}</rsp:Owner><rsp:ClientIP>{ip}</rsp:ClientIP></rsp:Shell>"#,
                    name = self.name,
                    ip = req.client_ip,
                );
                let mut r = reply(
                    200,
                    envelope(
                        "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
                        &p.message_id,
                        &body,
                    ),
                );
                r.shell_id = Some(id);
                r
            }
            "Command" | "Receive" | "Signal" | "Delete" => {
                let Some(shell) = p.shell_id.as_ref().and_then(|id| shells.get_mut(id)) else {
                    return reply(500, bad_shell());
                };
                match short.as_str() {
                    "Command" => {
                        let id = uuid::Uuid::new_v4().to_string().to_uppercase();
                        shell.commands.insert(id.clone());
                        let body = format!(
                            "<rsp:CommandResponse><rsp:CommandId>{id}</rsp:CommandId></rsp:CommandResponse>"
                        );
                        reply(
                            200,
                            envelope(&format!("{SHELL_NS}/CommandResponse"), &p.message_id, &body),
                        )
                    }
                    "Receive" | "Signal" => {
                        let Some(cmd) = p.command_id.clone().filter(|c| shell.commands.contains(c))
                        else {
                            return reply(500, bad_shell());
                        };
                        if short == "Signal" {
                            shell.commands.remove(&cmd);
                            return reply(
                                200,
                                envelope(
                                    &format!("{SHELL_NS}/SignalResponse"),
                                    &p.message_id,
                                    "<rsp:SignalResponse/>",
                                ),
                            );
                        }
                        let body = format!(
                            r#"<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="{cmd}" End="true"></rsp:Stream><rsp:Stream Name="stderr" CommandId="{cmd}" End="true"></rsp:Stream><rsp:CommandState CommandId="{cmd}" State="{SHELL_NS}/CommandState/Done"><rsp:ExitCode>0</rsp:ExitCode></rsp:CommandState></rsp:ReceiveResponse>"#
                        );
                        reply(
                            200,
                            envelope(&format!("{SHELL_NS}/ReceiveResponse"), &p.message_id, &body),
                        )
                    }
                    _ => {
                        if let Some(id) = &p.shell_id {
                            shells.remove(id);
                        }
                        reply(
                            200,
                            envelope(
                                "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
                                &p.message_id,
                                "",
                            ),
                        )
                    }
                }
            }
            _ => reply(
                500,
                fault(
                    &p.message_id,
                    "ActionNotSupported",
                    "The action is not supported by the service.",
                ),
            ),
        }
    }
}
