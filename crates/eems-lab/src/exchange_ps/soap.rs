//! The WS-Man shell operations of `/PowerShell` (Create, Command, Send, Receive, Signal,
//! Delete) and the PSRP messages they carry.

use std::collections::HashMap;
use std::fmt::Write as _;

use base64::Engine;
use psrp_rs::fragment::{Reassembler, encode_message};
use psrp_rs::message::{Destination, MessageType, PsrpMessage};
use psrp_rs::{PsObject, PsValue, to_clixml};
use uuid::Uuid;

use super::cmdlets::commands_of;
use super::{ACTION_BASE, Host, NS_A, NS_RSP, NS_S, NS_W, RESOURCE_URI, Shell, lock};
use crate::log::LogRecord;
use crate::wsman::{Node, xml_escape};

pub(super) fn envelope(action: &str, relates_to: &str, body: &str) -> Vec<u8> {
    let mut o = String::with_capacity(body.len() + 600);
    let _ = write!(
        o,
        "<s:Envelope xml:lang=\"en-US\" xmlns:s=\"{NS_S}\" xmlns:a=\"{NS_A}\" xmlns:w=\"{NS_W}\" xmlns:rsp=\"{NS_RSP}\">\
         <s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{}</a:MessageID>\
         <a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>\
         <a:RelatesTo>{}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>",
        Uuid::new_v4().to_string().to_ascii_uppercase(),
        xml_escape(relates_to)
    );
    o.into_bytes()
}

pub(super) fn fault(code: &str, subcode: &str, reason: &str) -> Vec<u8> {
    envelope(
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
        "",
        &format!(
            "<s:Fault><s:Code><s:Value>{code}</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code>\
             <s:Reason><s:Text xml:lang=\"en-US\">{}</s:Text></s:Reason></s:Fault>",
            xml_escape(reason)
        ),
    )
}

fn header<'a>(doc: &'a Node, name: &str) -> Option<&'a Node> {
    doc.child("Header")?.child(name)
}

fn selector_shell_id(doc: &Node) -> Option<String> {
    header(doc, "SelectorSet")?
        .children_named("Selector")
        .find(|s| s.attr("Name") == Some("ShellId"))
        .map(|s| s.text_trimmed().to_string())
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

impl Host {
    /// Answers one unsealed SOAP request: (HTTP status, SOAP envelope).
    pub(super) fn soap(&self, doc: &Node, who: &str, rec: &mut LogRecord) -> (u16, Vec<u8>) {
        let action = header(doc, "Action")
            .map(|n| n.text_trimmed().to_string())
            .unwrap_or_default();
        let msg_id = header(doc, "MessageID")
            .map(|n| n.text_trimmed().to_string())
            .unwrap_or_default();
        let resource = header(doc, "ResourceURI")
            .map(|n| n.text_trimmed().to_string())
            .unwrap_or_default();
        let op = action.rsplit('/').next().unwrap_or_default().to_string();
        rec.action = Some(op.clone());
        if resource != RESOURCE_URI {
            return (
                500,
                fault(
                    "s:Sender",
                    "w:DestinationUnreachable",
                    &format!(
                        "The WS-Management service cannot process the request. The resource URI ({resource}) was not found in the WS-Management catalog."
                    ),
                ),
            );
        }
        let body = doc.child("Body");
        let shell_id = selector_shell_id(doc);
        rec.shell_id = shell_id.clone();
        match op.as_str() {
            "Create" => self.create(body, who, &msg_id, rec),
            "Command" | "Send" | "Receive" | "Signal" | "Delete" => {
                let Some(shell_id) = shell_id else {
                    return (500, fault("s:Sender", "w:InvalidSelectors", "no ShellId"));
                };
                let mut shells = lock(&self.shells);
                let Some(shell) = shells.get_mut(&shell_id) else {
                    return (
                        500,
                        fault(
                            "s:Sender",
                            "w:InvalidSelectors",
                            "The request for the Windows Remote Shell with ShellId failed because the shell was not found on the server.",
                        ),
                    );
                };
                if !shell.owner.eq_ignore_ascii_case(who) {
                    return (
                        500,
                        fault("s:Sender", "w:AccessDenied", "Access is denied."),
                    );
                }
                match op.as_str() {
                    "Delete" => {
                        shells.remove(&shell_id);
                        (
                            200,
                            envelope(
                                &format!(
                                    "{}/DeleteResponse",
                                    "http://schemas.xmlsoap.org/ws/2004/09/transfer"
                                ),
                                &msg_id,
                                "",
                            ),
                        )
                    }
                    "Command" => {
                        let line = body.and_then(|b| b.child("CommandLine"));
                        let cmd_id = line
                            .and_then(|l| l.attr("CommandId"))
                            .map(str::to_ascii_uppercase)
                            .unwrap_or_else(|| Uuid::new_v4().to_string().to_ascii_uppercase());
                        let args = line
                            .and_then(|l| l.child("Arguments"))
                            .map(|a| a.text_trimmed().to_string())
                            .unwrap_or_default();
                        if let Some(bytes) = b64(&args) {
                            self.feed(shell, &bytes, Some(&cmd_id), who, rec);
                        }
                        shell.output.entry(Some(cmd_id.clone())).or_default();
                        (
                            200,
                            envelope(
                                &format!("{ACTION_BASE}/CommandResponse"),
                                &msg_id,
                                &format!(
                                    "<rsp:CommandResponse><rsp:CommandId>{cmd_id}</rsp:CommandId></rsp:CommandResponse>"
                                ),
                            ),
                        )
                    }
                    "Send" => {
                        let stream = body
                            .and_then(|b| b.child("Send"))
                            .and_then(|s| s.child("Stream"));
                        let cmd = stream
                            .and_then(|s| s.attr("CommandId"))
                            .map(str::to_ascii_uppercase);
                        if let Some(bytes) = stream.and_then(|s| b64(s.text_trimmed())) {
                            self.feed(shell, &bytes, cmd.as_deref(), who, rec);
                        }
                        (
                            200,
                            envelope(
                                &format!("{ACTION_BASE}/SendResponse"),
                                &msg_id,
                                "<rsp:SendResponse/>",
                            ),
                        )
                    }
                    "Signal" => {
                        let cmd = body
                            .and_then(|b| b.child("Signal"))
                            .and_then(|s| s.attr("CommandId"))
                            .map(str::to_ascii_uppercase);
                        if let Some(c) = &cmd {
                            shell.output.remove(&Some(c.clone()));
                            shell.done.retain(|d| d != c);
                        }
                        (
                            200,
                            envelope(
                                &format!("{ACTION_BASE}/SignalResponse"),
                                &msg_id,
                                "<rsp:SignalResponse/>",
                            ),
                        )
                    }
                    _ => {
                        let cmd = body
                            .and_then(|b| b.child("Receive"))
                            .and_then(|r| r.child("DesiredStream"))
                            .and_then(|d| d.attr("CommandId"))
                            .map(str::to_ascii_uppercase);
                        let data = shell
                            .output
                            .get_mut(&cmd)
                            .map(std::mem::take)
                            .unwrap_or_default();
                        let mut b = String::from("<rsp:ReceiveResponse>");
                        let attr = cmd
                            .as_ref()
                            .map(|c| format!(" CommandId=\"{c}\""))
                            .unwrap_or_default();
                        if !data.is_empty() {
                            let _ = write!(
                                b,
                                "<rsp:Stream Name=\"stdout\"{attr}>{}</rsp:Stream>",
                                base64::engine::general_purpose::STANDARD.encode(&data)
                            );
                        }
                        if let Some(c) = &cmd
                            && shell.done.contains(c)
                        {
                            let _ = write!(
                                b,
                                "<rsp:CommandState CommandId=\"{c}\" State=\"{ACTION_BASE}/CommandState/Done\"/>"
                            );
                        } else if cmd.is_some() || !data.is_empty() {
                            let _ = write!(
                                b,
                                "<rsp:CommandState{attr} State=\"{ACTION_BASE}/CommandState/Running\"/>"
                            );
                        } else {
                            // Nothing for the pool: the long poll runs out.
                            return (
                                500,
                                fault(
                                    "s:Receiver",
                                    "w:TimedOut",
                                    "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.",
                                ),
                            );
                        }
                        b.push_str("</rsp:ReceiveResponse>");
                        (
                            200,
                            envelope(&format!("{ACTION_BASE}/ReceiveResponse"), &msg_id, &b),
                        )
                    }
                }
            }
            other => (
                500,
                fault(
                    "s:Sender",
                    "w:ActionNotSupported",
                    &format!("action {other} is not supported"),
                ),
            ),
        }
    }

    pub(super) fn create(
        &self,
        body: Option<&Node>,
        who: &str,
        msg_id: &str,
        rec: &mut LogRecord,
    ) -> (u16, Vec<u8>) {
        let creation = body
            .and_then(|b| b.child("Shell"))
            .and_then(|s| s.child("creationXml"))
            .map(|c| c.text_trimmed().to_string())
            .unwrap_or_default();
        let Some(bytes) = b64(&creation) else {
            return (
                500,
                fault(
                    "s:Sender",
                    "w:InvalidParameter",
                    "creationXml is not base64",
                ),
            );
        };
        let shell_id = Uuid::new_v4().to_string().to_ascii_uppercase();
        let mut shell = Shell {
            rpid: Uuid::nil(),
            reassembler: Reassembler::new(),
            next_oid: 1,
            output: HashMap::new(),
            done: Vec::new(),
            owner: who.to_string(),
        };
        self.feed(&mut shell, &bytes, None, who, rec);
        if shell.rpid.is_nil() {
            return (
                500,
                fault(
                    "s:Sender",
                    "w:InvalidParameter",
                    "creationXml holds no InitRunspacePool",
                ),
            );
        }
        lock(&self.shells).insert(shell_id.clone(), shell);
        rec.shell_id = Some(shell_id.clone());
        let b = format!(
            "<x:ResourceCreated xmlns:x=\"http://schemas.xmlsoap.org/ws/2004/09/transfer\"><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address>\
             <a:ReferenceParameters><w:ResourceURI>{RESOURCE_URI}</w:ResourceURI><w:SelectorSet><w:Selector Name=\"ShellId\">{shell_id}</w:Selector></w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>\
             <rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId><rsp:ResourceUri>{RESOURCE_URI}</rsp:ResourceUri><rsp:State>Connected</rsp:State></rsp:Shell>"
        );
        (
            200,
            envelope(
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
                msg_id,
                &b,
            ),
        )
    }

    /// Feeds client fragments to the pool and answers every complete message.
    fn feed(
        &self,
        shell: &mut Shell,
        bytes: &[u8],
        cmd: Option<&str>,
        who: &str,
        rec: &mut LogRecord,
    ) {
        let messages = match shell.reassembler.feed(bytes) {
            Ok(m) => m,
            Err(e) => {
                rec.note = Some(format!("bad PSRP fragment: {e}"));
                return;
            }
        };
        for m in messages {
            let Ok(msg) = PsrpMessage::decode(&m) else {
                rec.note = Some("bad PSRP message".into());
                continue;
            };
            match msg.message_type {
                MessageType::SessionCapability => {
                    let caps = PsObject::new()
                        .with("protocolversion", PsValue::Version("2.3".into()))
                        .with("PSVersion", PsValue::Version("2.0".into()))
                        .with("SerializationVersion", PsValue::Version("1.1.0.1".into()));
                    self.push(
                        shell,
                        None,
                        MessageType::SessionCapability,
                        Uuid::nil(),
                        PsValue::Object(caps),
                    );
                }
                MessageType::InitRunspacePool => {
                    shell.rpid = msg.rpid;
                    let data = PsObject::new().with("ApplicationPrivateData", PsValue::Null);
                    self.push(
                        shell,
                        None,
                        MessageType::ApplicationPrivateData,
                        Uuid::nil(),
                        PsValue::Object(data),
                    );
                    let state = PsObject::new().with("RunspaceState", PsValue::I32(2));
                    self.push(
                        shell,
                        None,
                        MessageType::RunspacePoolState,
                        Uuid::nil(),
                        PsValue::Object(state),
                    );
                }
                MessageType::CreatePipeline => {
                    let key = cmd.map(str::to_string);
                    self.pipeline(shell, &msg, key, who, rec);
                }
                MessageType::CloseRunspacePool => {
                    let state = PsObject::new().with("RunspaceState", PsValue::I32(3));
                    self.push(
                        shell,
                        None,
                        MessageType::RunspacePoolState,
                        Uuid::nil(),
                        PsValue::Object(state),
                    );
                }
                // Availability, host responses, keys: nothing this endpoint needs.
                _ => {}
            }
        }
    }

    fn push(
        &self,
        shell: &mut Shell,
        cmd: Option<String>,
        ty: MessageType,
        pid: Uuid,
        value: PsValue,
    ) {
        let msg = PsrpMessage {
            destination: Destination::Client,
            message_type: ty,
            rpid: shell.rpid,
            pid,
            data: to_clixml(&value),
        };
        let oid = shell.next_oid;
        shell.next_oid += 1;
        shell
            .output
            .entry(cmd)
            .or_default()
            .extend_from_slice(&encode_message(oid, &msg.encode()));
    }

    fn pipeline(
        &self,
        shell: &mut Shell,
        msg: &PsrpMessage,
        cmd: Option<String>,
        who: &str,
        rec: &mut LogRecord,
    ) {
        let commands = commands_of(&msg.data);
        rec.probe = Some(
            commands
                .iter()
                .map(|c| {
                    if c.is_script {
                        format!("script:{}", c.name)
                    } else {
                        c.name.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join("|"),
        );
        let pid = msg.pid;
        let result = self.run(&commands, who);
        match result {
            Ok(objects) => {
                for o in objects {
                    self.push(shell, cmd.clone(), MessageType::PipelineOutput, pid, o);
                }
                let state = PsObject::new().with("PipelineState", PsValue::I32(4));
                self.push(
                    shell,
                    cmd.clone(),
                    MessageType::PipelineState,
                    pid,
                    PsValue::Object(state),
                );
            }
            Err((message, error_id, exception_type)) => {
                let exception = PsObject::new()
                    .with("Message", PsValue::String(message.clone()))
                    .with_type_names([exception_type, "System.Exception", "System.Object"]);
                // The members PowerShell's ErrorRecord serialization always writes (pypsrp
                // requires SerializeExtendedInfo and the category).
                let (category, category_name) = match error_id {
                    "ScriptsNotAllowed" => (17, "ParserError"),
                    "CommandNotFoundException" => (13, "ObjectNotFound"),
                    _ => (0, "NotSpecified"),
                };
                let reason = exception_type.rsplit('.').next().unwrap_or(exception_type);
                let record = PsObject::new()
                    .with("Exception", PsValue::Object(exception))
                    .with("TargetObject", PsValue::Null)
                    .with("FullyQualifiedErrorId", PsValue::String(error_id.into()))
                    .with("SerializeExtendedInfo", PsValue::Bool(false))
                    .with("ErrorCategory_Category", PsValue::I32(category))
                    .with("ErrorCategory_Activity", PsValue::String(String::new()))
                    .with("ErrorCategory_Reason", PsValue::String(reason.into()))
                    .with("ErrorCategory_TargetName", PsValue::String(String::new()))
                    .with("ErrorCategory_TargetType", PsValue::String(String::new()))
                    .with(
                        "ErrorCategory_Message",
                        PsValue::String(format!("{category_name}: (:) [], {reason}")),
                    )
                    .with_type_names(["System.Management.Automation.ErrorRecord", "System.Object"]);
                let state = PsObject::new()
                    .with("PipelineState", PsValue::I32(5))
                    .with("ExceptionAsErrorRecord", PsValue::Object(record));
                self.push(
                    shell,
                    cmd.clone(),
                    MessageType::PipelineState,
                    pid,
                    PsValue::Object(state),
                );
            }
        }
        if let Some(c) = cmd {
            shell.done.push(c);
        }
    }
}
