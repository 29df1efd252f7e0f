//! The probes' answers: the JSON a real Exchange server's cmdlets would lead to.

use super::*;
use serde::Serialize;
use serde_json::{Value, json};

/// `15.2.1544.4` → `Version 15.2 (Build 1544.4)`, as Get-ExchangeServer prints it.
pub fn admin_display_version(build: &str) -> String {
    let parts: Vec<u32> = build.split('.').filter_map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [a, b, c, d] => format!("Version {a}.{b} (Build {c}.{d})"),
        _ => build.to_string(),
    }
}

/// ExSetup.exe's FileVersion string is zero-padded: `15.02.1544.004`.
pub fn padded_version(build: &str) -> String {
    let parts: Vec<u32> = build.split('.').filter_map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [a, b, c, d] => format!("{a}.{b:02}.{c:04}.{d:03}"),
        _ => build.to_string(),
    }
}

fn service_status_number(s: &str) -> Option<u32> {
    Some(match s.to_ascii_lowercase().as_str() {
        "stopped" => 1,
        "startpending" => 2,
        "stoppending" => 3,
        "running" => 4,
        "continuepending" => 5,
        "pausepending" => 6,
        "paused" => 7,
        _ => return None,
    })
}

fn start_type_number(s: &str) -> Option<u32> {
    Some(match s.to_ascii_lowercase().as_str() {
        "boot" => 0,
        "system" => 1,
        "automatic" => 2,
        "manual" => 3,
        "disabled" => 4,
        _ => return None,
    })
}

/// Marks a date for [`finish_json`] to write as PowerShell 5.1's `"\/Date(ms)\/"`.
const DATE_SENTINEL: char = '\u{E000}';

fn date_value(rfc3339: &Option<String>, ps51: bool) -> Value {
    let Some(s) = rfc3339 else {
        return Value::Null;
    };
    let parsed = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339);
    match parsed {
        Ok(t) if ps51 => {
            let ms = t.unix_timestamp_nanos() / 1_000_000;
            Value::String(format!("{DATE_SENTINEL}{ms}{DATE_SENTINEL}"))
        }
        Ok(t) => {
            let utc = t.to_offset(time::UtcOffset::UTC);
            utc.format(&time::format_description::well_known::Rfc3339)
                .map_or_else(|_| json!(s), Value::String)
        }
        Err(_) => json!(s),
    }
}

/// The 5.1 unrolling quirk, for the string lists: one element comes out bare, none as null.
/// `servers` stays an array: the probe contract has the script force it with `@()`.
fn list_value(items: &[String], ps51: bool) -> Value {
    match (ps51, items) {
        (true, []) => Value::Null,
        (true, [one]) => json!(one),
        _ => json!(items),
    }
}

/// Compact JSON the way the probe scripts print it: non-ASCII always as `\uXXXX` (the console
/// code page may not be UTF-8); under PowerShell 5.1 also `<>'&` escaped and dates as
/// `\/Date(ms)\/`.
pub(crate) fn finish_json(v: &impl Serialize, ps51: bool) -> String {
    let raw = serde_json::to_string(v).unwrap_or_else(|_| "{}".into());
    let mut out = String::with_capacity(raw.len() + 16);
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            DATE_SENTINEL => {
                // Opening sentinel: digits follow up to the closing one.
                let mut ms = String::new();
                for d in chars.by_ref() {
                    if d == DATE_SENTINEL {
                        break;
                    }
                    ms.push(d);
                }
                let _ = write!(out, "\\/Date({ms})\\/");
            }
            '<' | '>' | '\'' | '&' if ps51 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{:04x}", u);
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[derive(Serialize)]
struct OrgResult {
    probe: &'static str,
    schema: u32,
    organization: Value,
    organization_error: Option<String>,
    servers: Value,
    servers_error: Option<String>,
}

#[derive(Serialize)]
struct ServerEntry {
    name: String,
    fqdn: String,
    site: String,
    server_role: &'static str,
    is_edge_server: bool,
    admin_display_version: String,
    mitigations_enabled: Option<bool>,
    mitigations_applied: Value,
    mitigations_blocked: Value,
    mitigations_applied_time: Value,
    data_collection_enabled: Option<bool>,
    internet_web_proxy: Option<String>,
}

/// The org probe's result JSON (Get-OrganizationConfig + Get-ExchangeServer).
pub fn org_json(fleet: &Fleet, ps51: bool) -> String {
    let org = &fleet.org;
    let (organization, organization_error) = match &org.error {
        Some(e) => (
            json!({"name": null, "mitigations_enabled": null}),
            Some(e.clone()),
        ),
        None => (
            json!({"name": org.name, "mitigations_enabled": org.mitigations_enabled}),
            None,
        ),
    };
    let (servers, servers_error) = match &org.servers_error {
        Some(e) => (json!([]), Some(e.clone())),
        None => {
            let list: Vec<ServerEntry> = fleet
                .servers
                .iter()
                .filter(|s| s.in_org)
                .map(|s| ServerEntry {
                    name: s.name.clone(),
                    fqdn: s.fqdn(),
                    site: s.site.clone(),
                    server_role: if s.is_edge() { "Edge" } else { "Mailbox" },
                    is_edge_server: s.is_edge(),
                    admin_display_version: admin_display_version(&s.build),
                    mitigations_enabled: s.mitigations_enabled,
                    mitigations_applied: list_value(&s.mitigations_applied, ps51),
                    mitigations_blocked: list_value(&s.mitigations_blocked, ps51),
                    mitigations_applied_time: date_value(&s.mitigations_applied_time, ps51),
                    data_collection_enabled: s.data_collection_enabled,
                    internet_web_proxy: s.internet_web_proxy.clone(),
                })
                .collect();
            (serde_json::to_value(list).unwrap_or(Value::Null), None)
        }
    };
    finish_json(
        &OrgResult {
            probe: "org",
            schema: 1,
            organization,
            organization_error,
            servers,
            servers_error,
        },
        ps51,
    )
}

#[derive(Serialize)]
struct HostResult {
    probe: &'static str,
    schema: u32,
    computer_name: String,
    exsetup_version: String,
    install_path: String,
    service: Value,
    ocs: OcsResult,
}

#[derive(Serialize)]
struct OcsResult {
    url: Option<String>,
    proxy: Option<String>,
    status_code: Option<u16>,
    error: Option<String>,
    elapsed_ms: u64,
}

fn header_string(h: &Header, name: &str) -> Option<String> {
    match h.get(name) {
        Some(HeaderValue::Str(s)) => Some(s.clone()),
        Some(HeaderValue::Int(n)) => Some(n.to_string()),
        Some(HeaderValue::Null) | None => None,
    }
}

/// `scheme://host[:port]/…` → host, as System.Uri would parse an absolute http(s) URI.
fn uri_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = authority.split(':').next().unwrap_or_default();
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| host.to_ascii_lowercase())
}

/// What `Invoke-WebRequest $OcsUrl -Proxy $Proxy` reports on this server.
fn ocs_outcome(
    server: &ServerSpec,
    url: &Option<String>,
    proxy: &Option<String>,
) -> (Option<u16>, Option<String>, u64) {
    const INVALID_URI: &str = "Invalid URI: The format of the URI could not be determined.";
    let Some(url) = url.as_deref().filter(|u| !u.is_empty()) else {
        return (
            None,
            Some("Cannot validate argument on parameter 'Uri'. The argument is null or empty. Provide an argument that is not null or empty, and then try the command again.".into()),
            0,
        );
    };
    let Some(host) = uri_host(url) else {
        return (None, Some(INVALID_URI.into()), 0);
    };
    if let Some(p) = proxy.as_deref() {
        match p.split_once("://") {
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") && uri_host(p).is_some() => {}
            Some((scheme, _)) if uri_host(p).is_some() => {
                return (
                    None,
                    Some(format!(
                        "The ServicePointManager does not support proxies with the {scheme} scheme."
                    )),
                    0,
                );
            }
            _ => return (None, Some(INVALID_URI.into()), 0),
        }
    }
    if server.proxy_required && proxy.as_deref() != server.internet_web_proxy.as_deref() {
        return (
            None,
            Some("Unable to connect to the remote server".into()),
            1041,
        );
    }
    if !server.ocs_reachable {
        return (
            None,
            Some(format!("The remote name could not be resolved: '{host}'")),
            27,
        );
    }
    (Some(200), None, 212)
}

/// The host probe's result JSON.
pub fn host_json(server: &ServerSpec, header: &Header, ps51: bool) -> String {
    let url = header_string(header, "OcsUrl");
    let proxy = header_string(header, "Proxy");
    let (status_code, error, elapsed_ms) = ocs_outcome(server, &url, &proxy);
    let service = if server.service_installed {
        if ps51 {
            let status = service_status_number(&server.service_status)
                .map_or_else(|| json!(server.service_status), |n| json!(n));
            let start = start_type_number(&server.service_start_type)
                .map_or_else(|| json!(server.service_start_type), |n| json!(n));
            json!({"status": status, "start_type": start})
        } else {
            json!({"status": server.service_status, "start_type": server.service_start_type})
        }
    } else {
        Value::Null
    };
    let r = HostResult {
        probe: "host",
        schema: 1,
        computer_name: server.name.to_ascii_uppercase(),
        exsetup_version: if ps51 {
            padded_version(&server.build)
        } else {
            server.build.clone()
        },
        install_path: server.install_path.clone(),
        service,
        ocs: OcsResult {
            url,
            proxy,
            status_code,
            error,
            elapsed_ms,
        },
    };
    finish_json(&r, ps51)
}

/// The file the line of `eems-scan org-command` writes in the Exchange Management Shell, for
/// this fleet, written now (for `scan --org-data` where Kerberos cannot be used): the org
/// probe's answer read back by the scanner's own parser, so both say the same.
pub fn org_data_json(fleet: &Fleet) -> anyhow::Result<String> {
    let line = format!(
        "{}{}",
        eems_core::probe::parse::RESULT_PREFIX,
        org_json(fleet, false)
    );
    let facts = eems_core::probe::parse::parse_org(&line)
        .map_err(|e| anyhow::anyhow!("the fleet's org answer does not parse: {e}"))?;
    let mut v = serde_json::to_value(facts)?;
    let written = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)?
        .format(&time::format_description::well_known::Rfc3339)?;
    if let Value::Object(o) = &mut v {
        o.insert("eems_org_data".into(), json!(1));
        o.insert("written".into(), json!(written));
    }
    Ok(serde_json::to_string_pretty(&v)?)
}
