//! WS-Management faults, shaped as Windows sends them (reference §3.6).

use super::*;

/// Boxed: faults travel through every `Result` of the request path.
#[derive(Debug, Clone)]
pub(super) struct Fault(Box<FaultBody>);

impl std::ops::Deref for Fault {
    type Target = FaultBody;
    fn deref(&self) -> &FaultBody {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub(super) struct FaultBody {
    code: &'static str,
    pub(super) subcode: &'static str,
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
    pub(super) fn timed_out() -> Fault {
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

    pub(super) fn invalid_selectors(message: String) -> Fault {
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

    pub(super) fn unknown_command() -> Fault {
        Fault::invalid_selectors(
            "The Windows Remote Shell received a request to perform an operation on a command identifier that does not exist. Either the command has completed execution or the client specified an invalid command identifier. ".into(),
        )
    }

    pub(super) fn unknown_shell(id: &str) -> Fault {
        Fault::invalid_selectors(format!(
            "The request for the Windows Remote Shell with ShellId {id} failed because the shell was not found on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on the server. Provide the correct ShellId or create a new shell and retry the operation. "
        ))
    }

    pub(super) fn too_long() -> Fault {
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

    pub(super) fn file_not_found() -> Fault {
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

    pub(super) fn shell_quota(max: u32) -> Fault {
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

    pub(super) fn invalid_parameter(why: String) -> Fault {
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

    pub(super) fn schema(why: &str) -> Fault {
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

    pub(super) fn action_not_supported() -> Fault {
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

    pub(super) fn internal(text: &str) -> Fault {
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

impl HostState {
    pub(super) fn fault_reply(
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
}
