//! Turning winrm-rs (and reqwest) errors into a failure class and plain words.

use winrm_rs::WinrmError;

use super::{FailureKind, TransportConfig};

/// Turns a winrm-rs error into a class and a sentence an admin can act on.
pub fn classify(e: &WinrmError, cfg: &TransportConfig) -> (FailureKind, String) {
    match e {
        WinrmError::Http(re) => {
            let chain = error_chain(re);
            let lower = chain.to_ascii_lowercase();
            let port = cfg.port.unwrap_or(if cfg.https { 5986 } else { 5985 });
            let dropped = [
                "close_notify",
                "unexpected eof",
                "unexpected-eof",
                "connection closed",
                "connection reset",
                "reset by peer",
                "incomplete",
                "broken pipe",
            ];
            if dropped.iter().any(|d| lower.contains(d)) {
                (
                    FailureKind::ConnectionDropped,
                    format!("the server dropped the connection mid-response ({chain})"),
                )
            } else if lower.contains("certificate")
                || lower.contains("handshake")
                || lower.contains("tls")
            {
                (
                    FailureKind::Tls,
                    format!(
                        "TLS: the listener's certificate was not accepted ({chain}); pass the issuing CA with --ca-cert"
                    ),
                )
            } else if lower.contains("connection refused") {
                (
                    FailureKind::ConnectionRefused,
                    format!(
                        "connection refused: nothing listens on the WinRM port (is WinRM enabled, is {port} the right port, is a firewall in the way?)"
                    ),
                )
            } else if lower.contains("dns") || lower.contains("lookup") || lower.contains("resolve")
            {
                (
                    FailureKind::Dns,
                    format!("DNS: the server name does not resolve ({chain})"),
                )
            } else if re.is_timeout() {
                (FailureKind::Timeout, format!("no answer in time ({chain})"))
            } else if re.is_connect() {
                (
                    FailureKind::ConnectionRefused,
                    format!("cannot connect: {chain}"),
                )
            } else if let Some(status) = re.status() {
                (
                    FailureKind::Http,
                    format!("HTTP {status} from the WinRM listener ({chain})"),
                )
            } else {
                (FailureKind::Http, format!("HTTP: {chain}"))
            }
        }
        // The same for Kerberos, which winrm-rs reports as an authentication failure.
        WinrmError::AuthFailed(m) if m.contains("without sealing") && m.contains("HTTP ") => (
            FailureKind::Http,
            format!(
                "the WinRM listener answered {} instead of a sealed reply (the WinRM service \
                 failed on the server; see its event log)",
                m.find("HTTP ").map_or(m.as_str(), |at| &m[at..])
            ),
        ),
        // The KDC issued the ticket (the pre-flight got it), so the server refused a valid
        // one: a bare 401 carries no reason, these are the causes left.
        WinrmError::AuthFailed(m) if m.contains("Kerberos authentication rejected") => (
            FailureKind::Auth,
            "the server refused the Kerberos ticket the KDC issued for it: most often the \
                 server's clock differs from the KDC's by more than the allowed skew (5 minutes \
                 unless configured; synchronise it, NTP), or its keytab no longer matches \
                 HTTP/<fqdn> (reset the computer account)"
                .into(),
        ),
        WinrmError::AuthFailed(m) => (
            FailureKind::Auth,
            format!(
                "authentication failed for {}: {m} (check the user name, the password and \
                 that the account may use WinRM on this server)",
                cfg.account.display()
            ),
        ),
        WinrmError::Ntlm(n) => {
            let text = n.to_string();
            // winrm-rs reports any unsealed answer to a sealed request as an NTLM error;
            // an HTTP error status there is the server failing, not the credentials.
            match text.find("HTTP ") {
                Some(at) if text.contains("without sealing") => (
                    FailureKind::Http,
                    format!(
                        "the WinRM listener answered {} instead of a sealed reply (the \
                         WinRM service failed on the server; see its event log)",
                        &text[at..]
                    ),
                ),
                _ => (
                    FailureKind::Auth,
                    format!("authentication failed (NTLM): {text}"),
                ),
            }
        }
        WinrmError::Soap(s) => {
            let text = s.to_string();
            if text.contains("TimedOut") {
                (FailureKind::Timeout, format!("WinRM: {text}"))
            } else if text.contains("500") && text.to_ascii_lowercase().contains("empty") {
                (
                    FailureKind::Http,
                    format!("HTTP 500 with an empty body from the WinRM listener ({text})"),
                )
            } else {
                (FailureKind::WinrmFault, format!("WinRM fault: {text}"))
            }
        }
        WinrmError::Timeout(s) => (FailureKind::Timeout, format!("timeout after {s} s")),
        WinrmError::Transfer(m) => (FailureKind::OutputTooLarge, format!("output cut off: {m}")),
        WinrmError::Cancelled => (FailureKind::Interrupted, "interrupted".into()),
        other => (FailureKind::Other, other.to_string()),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
        if parts.len() > 8 {
            break;
        }
    }
    parts.join(": ")
}
