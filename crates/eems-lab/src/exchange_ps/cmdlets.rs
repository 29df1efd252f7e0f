//! The cmdlets of `/PowerShell`: the allow-list, RBAC, and what each one answers.

use psrp_rs::{PsValue, parse_clixml};

use super::objects::{exchange_server, organization_config};
use super::{ALLOWED_CMDLETS, Host, NO_LANGUAGE};

/// One command of a pipeline as the client sent it.
pub(super) struct Invocation {
    pub name: String,
    pub is_script: bool,
    /// Named parameters (`-Name value`), in the order sent.
    pub params: Vec<(String, PsValue)>,
}

impl Host {
    /// Runs a pipeline of command invocations: Ok(output objects) or Err((message,
    /// FullyQualifiedErrorId, exception type)).
    #[allow(clippy::type_complexity)]
    pub(super) fn run(
        &self,
        commands: &[Invocation],
        who: &str,
    ) -> Result<Vec<PsValue>, (String, &'static str, &'static str)> {
        if commands.is_empty() {
            return Err((
                "No commands are specified.".into(),
                "NoCommands",
                "System.Management.Automation.RuntimeException",
            ));
        }
        if commands.iter().any(|c| c.is_script) {
            return Err((
                NO_LANGUAGE.into(),
                "ScriptsNotAllowed",
                "System.Management.Automation.ParseException",
            ));
        }
        let who = who.to_ascii_lowercase();
        let has_role = !self.no_role.contains(&who);
        // View-Only Organization Management without the View-Only Audit Logs role.
        let has_audit_role = has_role && !self.no_audit_role.contains(&who);
        let mut out = Vec::new();
        for Invocation { name, params, .. } in commands {
            let allowed = ALLOWED_CMDLETS
                .iter()
                .find(|c| c.eq_ignore_ascii_case(name));
            let visible = |c: &&&str| {
                has_role && (has_audit_role || !c.eq_ignore_ascii_case(super::audit::CMDLET))
            };
            let Some(cmdlet) = allowed.filter(visible) else {
                return Err((
                    format!(
                        "The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again."
                    ),
                    "CommandNotFoundException",
                    "System.Management.Automation.CommandNotFoundException",
                ));
            };
            match *cmdlet {
                "Get-OrganizationConfig" => {
                    if let Some(e) = &self.org.error {
                        return Err((
                            e.clone(),
                            "GetOrganizationConfigFailed",
                            "Microsoft.Exchange.Data.Directory.ADTransientException",
                        ));
                    }
                    out.push(organization_config(&self.org));
                }
                super::audit::CMDLET => out.extend(super::audit::search(&self.org, params)?),
                _ => {
                    if let Some(e) = &self.org.servers_error {
                        return Err((
                            e.clone(),
                            "GetExchangeServerFailed",
                            "Microsoft.Exchange.Data.Directory.ADTransientException",
                        ));
                    }
                    let identity = params
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("Identity"))
                        .and_then(|(_, v)| v.as_str());
                    let wanted = |s: &crate::fleet::ServerSpec| {
                        identity.is_none_or(|id| {
                            s.name.eq_ignore_ascii_case(id) || s.fqdn().eq_ignore_ascii_case(id)
                        })
                    };
                    let found: Vec<PsValue> = self
                        .servers
                        .iter()
                        .filter(|s| s.in_org && wanted(s))
                        .map(|s| exchange_server(&self.org, s))
                        .collect();
                    if let (Some(id), true) = (identity, found.is_empty()) {
                        return Err((
                            format!(
                                "The operation couldn't be performed because object '{id}' couldn't be found on 'dc01.{}'.",
                                self.org.name.to_ascii_lowercase()
                            ),
                            "ManagementObjectNotFoundException",
                            "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
                        ));
                    }
                    out.extend(found);
                }
            }
        }
        Ok(out)
    }
}

/// Each command of a CreatePipeline message: every object with a `Cmd` under `PowerShell`
/// (the `Cmds` list and, for a nested pipeline, `ExtraCmds`), found by walking the tree
/// rather than by one path, so that a client's extra wrapping cannot hide a script from the
/// allow-list.
pub(super) fn commands_of(data: &str) -> Vec<Invocation> {
    fn walk(v: &PsValue, out: &mut Vec<Invocation>) {
        match v {
            PsValue::Object(o) => {
                if let Some(cmd) = o.get("Cmd").and_then(PsValue::as_str) {
                    let is_script = o
                        .get("IsScript")
                        .and_then(PsValue::as_bool)
                        .unwrap_or(false);
                    // Args: a list of {N: name or null (positional), V: value}.
                    let params = o
                        .get("Args")
                        .map(items)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|a| {
                            let a = a.properties()?;
                            let name = a.get("N")?.as_str()?.to_string();
                            Some((name, a.get("V").cloned().unwrap_or(PsValue::Null)))
                        })
                        .collect();
                    out.push(Invocation {
                        name: cmd.to_string(),
                        is_script,
                        params,
                    });
                }
                o.properties.values().for_each(|p| walk(p, out));
            }
            PsValue::List(l) => l.iter().for_each(|p| walk(p, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(values) = parse_clixml(data) {
        values.iter().for_each(|v| walk(v, &mut out));
    }
    out
}

/// The elements of a list value: psrp-rs decodes `<Obj><LST>` as an object holding the list
/// under `_value`; a single value is one element, null none.
pub(super) fn items(v: &PsValue) -> Vec<&PsValue> {
    let v = match v {
        PsValue::Object(o) => match o.get("_value") {
            Some(inner) => inner,
            None => v,
        },
        other => other,
    };
    match v {
        PsValue::List(l) => l.iter().collect(),
        PsValue::Null => Vec::new(),
        one => vec![one],
    }
}
