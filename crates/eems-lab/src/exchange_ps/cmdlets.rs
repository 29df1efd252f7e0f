//! The cmdlets of `/PowerShell`: the allow-list, RBAC, and what each one answers.

use psrp_rs::{PsValue, parse_clixml};

use super::objects::{exchange_server, organization_config};
use super::{ALLOWED_CMDLETS, Host, NO_LANGUAGE};

impl Host {
    /// Runs a pipeline of command invocations: Ok(output objects) or Err((message,
    /// FullyQualifiedErrorId, exception type)).
    #[allow(clippy::type_complexity)]
    pub(super) fn run(
        &self,
        commands: &[(String, bool)],
        who: &str,
    ) -> Result<Vec<PsValue>, (String, &'static str, &'static str)> {
        if commands.is_empty() {
            return Err((
                "No commands are specified.".into(),
                "NoCommands",
                "System.Management.Automation.RuntimeException",
            ));
        }
        if commands.iter().any(|(_, is_script)| *is_script) {
            return Err((
                NO_LANGUAGE.into(),
                "ScriptsNotAllowed",
                "System.Management.Automation.ParseException",
            ));
        }
        let has_role = !self.no_role.contains(&who.to_ascii_lowercase());
        let mut out = Vec::new();
        for (name, _) in commands {
            let allowed = ALLOWED_CMDLETS
                .iter()
                .find(|c| c.eq_ignore_ascii_case(name));
            let Some(cmdlet) = allowed.filter(|_| has_role) else {
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
                _ => {
                    if let Some(e) = &self.org.servers_error {
                        return Err((
                            e.clone(),
                            "GetExchangeServerFailed",
                            "Microsoft.Exchange.Data.Directory.ADTransientException",
                        ));
                    }
                    out.extend(
                        self.servers
                            .iter()
                            .filter(|s| s.in_org)
                            .map(|s| exchange_server(&self.org, s)),
                    );
                }
            }
        }
        Ok(out)
    }
}

/// `(command text, IsScript)` of each command of a CreatePipeline message: every object with a
/// `Cmd` under `PowerShell` (the `Cmds` list and, for a nested pipeline, `ExtraCmds`), found by
/// walking the tree rather than by one path, so that a client's extra wrapping cannot hide a
/// script from the allow-list.
pub(super) fn commands_of(data: &str) -> Vec<(String, bool)> {
    fn walk(v: &PsValue, out: &mut Vec<(String, bool)>) {
        match v {
            PsValue::Object(o) => {
                if let Some(cmd) = o.get("Cmd").and_then(PsValue::as_str) {
                    let is_script = o
                        .get("IsScript")
                        .and_then(PsValue::as_bool)
                        .unwrap_or(false);
                    out.push((cmd.to_string(), is_script));
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
