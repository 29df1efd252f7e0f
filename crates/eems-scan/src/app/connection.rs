//! Credentials and the transport config, from the connection flags.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use winrm_rs::SecretString;

use crate::cli::ConnectionArgs;
use crate::transport::{Account, TransportConfig};

use super::{Failure, MAX_OUTPUT_BYTES, PasswordSource, usage};

pub(super) fn read_password(
    source: PasswordSource,
    conn: &ConnectionArgs,
) -> Result<SecretString, Failure> {
    if let PasswordSource::Given(p) = source {
        return Ok(p);
    }
    if let Some(file) = &conn.password_file {
        return read_password_file(file);
    }
    if let Ok(p) = std::env::var("EEMS_PASSWORD")
        && !p.is_empty()
    {
        return Ok(SecretString::from(p));
    }
    if std::io::stdin().is_terminal() {
        let prompt = format!("Password for {}: ", conn.user);
        return rpassword::prompt_password(prompt)
            .map(SecretString::from)
            .map_err(|e| usage(format!("cannot read the password from the terminal: {e}")));
    }
    if conn.auth == Some(crate::transport::AuthKind::Kerberos) {
        // The ticket cache (after kinit) may be all Kerberos needs; without a ticket
        // either, every server's row says so.
        return Ok(SecretString::from(String::new()));
    }
    Err(usage(
        "no password: set EEMS_PASSWORD, use --password-file, or run in a terminal to be \
         prompted (the password is never taken as an argument)",
    ))
}

fn read_password_file(path: &Path) -> Result<SecretString, Failure> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| {
            usage(format!(
                "{}: cannot read the password file: {e}",
                path.display()
            ))
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(usage(format!(
                "{}: the password file is readable by group or others; chmod 600 it",
                path.display()
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        usage(format!(
            "{}: cannot read the password file: {e}",
            path.display()
        ))
    })?;
    let first = text.lines().next().unwrap_or("").to_string();
    if first.is_empty() {
        return Err(usage(format!(
            "{}: the password file is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(first))
}

pub(super) fn transport_config(
    conn: &ConnectionArgs,
    password: SecretString,
) -> Result<TransportConfig, Failure> {
    let account = Account::parse(&conn.user).map_err(|e| usage(format!("--user: {e}")))?;
    let cfg = TransportConfig {
        https: conn.https,
        port: conn.port,
        auth: conn.auth.unwrap_or(crate::transport::AuthKind::Ntlm),
        auth_auto: conn.auth.is_none(),
        account,
        password,
        ca_cert: conn.ca_cert.clone(),
        insecure: conn.insecure,
        client_cert: conn.client_cert.clone(),
        client_key: conn.client_key.clone(),
        connect_timeout: Duration::from_secs(conn.connect_timeout),
        operation_timeout_secs: conn.operation_timeout,
        max_output_bytes: MAX_OUTPUT_BYTES,
        resolve: Default::default(),
        clients: Default::default(),
    };
    cfg.validate().map_err(usage)?;
    for (flag, path) in [
        ("--ca-cert", &cfg.ca_cert),
        ("--client-cert", &cfg.client_cert),
        ("--client-key", &cfg.client_key),
    ] {
        if let Some(p) = path
            && let Err(e) = std::fs::metadata(p)
        {
            return Err(usage(format!("{flag} {}: {e}", p.display())));
        }
    }
    if cfg.insecure {
        eprintln!(
            "warning: --insecure: HTTPS certificates are NOT verified; anyone on the path can \
             impersonate the servers and receive the authentication. Use --ca-cert outside a lab."
        );
    }
    Ok(cfg)
}
