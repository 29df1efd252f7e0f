//! The WinRS operations of one host: Create, Command, Receive, Signal, Send and Delete.

use super::*;

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
    pub(super) fn machine(endpoint: &str) -> String {
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
        let seed = (self.index as u64) << 32 ^ seq ^ 0x5eed;
        let queue = plan_output(&exec, server.faults.noise, &mut SplitMix64::new(seed));
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
                stdin: exec.reads_stdin.then(Vec::new),
                seed,
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
                } else if st.stdin.is_some() {
                    // Still reading stdin: nothing to say until it ends (or the deadline).
                    if now >= deadline {
                        return Err(Fault::timed_out());
                    }
                    Wait::Until(deadline)
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
                let running = st.endless
                    || st.silent_polls > 0
                    || st.stdin.is_some()
                    || Instant::now() < st.ready_at;
                if running && !st.done_sent {
                    st.endless = false;
                    st.stdin = None;
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

    /// stdin goes to a command that reads it ([`powershell::STDIN_READER`]), which runs
    /// when a Stream with `End="true"` arrives (recorded: test_winrs_send.yml); other
    /// commands ignore it, as does a command whose stdin has ended.
    fn send(&self, req: &WsmanRequest<'_>, p: &Request) -> Result<WsmanReply, Fault> {
        let stream = p
            .body_child("Send")
            .and_then(|s| s.child("Stream"))
            .ok_or_else(|| Fault::invalid_parameter("no Send/Stream".into()))?;
        let cmd_id = stream.attr("CommandId").unwrap_or_default().to_string();
        let end = stream
            .attr("End")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let data = powershell::decode_base64(stream.text_trimmed())
            .ok_or_else(|| Fault::invalid_parameter("the stdin Stream is not base64".into()))?;
        let (cmd, console_utf8) = self.with_shell(req, p, |sh| {
            Self::find_command(sh, &cmd_id)
                .map(|c| (c, sh.console_utf8))
                .ok_or_else(Fault::unknown_command)
        })?;
        let stdin = {
            let mut st = lock(&cmd.state);
            match st.stdin.as_mut() {
                Some(buf) => {
                    buf.extend_from_slice(&data);
                    if end { st.stdin.take() } else { None }
                }
                None => None,
            }
        };
        let mut probe = None;
        if let Some(stdin) = stdin {
            let server = self
                .server()
                .ok_or_else(|| Fault::internal("The lab host has no server definition. "))?;
            let exec = powershell::run_stdin(
                &stdin,
                &ExecContext {
                    fleet: &self.fleet,
                    server,
                    user: req.user,
                    console_utf8,
                },
            );
            probe = exec.probe;
            let mut st = lock(&cmd.state);
            st.queue = plan_output(&exec, server.faults.noise, &mut SplitMix64::new(st.seed));
            st.ready_at = Instant::now() + Duration::from_millis(server.faults.exec_ms);
            st.endless = exec.endless;
            st.exit_code = exec.exit_code;
            drop(st);
            cmd.notify.notify_waiters();
        }
        let body = envelope(
            NS_SAXWRSPP,
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SendResponse",
            p.message_id.as_deref(),
            "<s:Body><rsp:SendResponse/></s:Body>",
        );
        let mut r = ok_reply("Send", body, p.shell_id.clone());
        r.probe = probe;
        Ok(r)
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
