//! Which Kerberos credentials a scan uses for which server (feature `kerberos`), each got
//! once per scan: the account's with `--auth kerberos`; without `--auth`, where credentials
//! can be had for the server's realm (a ticket cache, or the password when krb5.conf knows the
//! realm: [`crate::krb5_conf`]). Getting them is [`crate::kerberos::Credentials::acquire`].

use std::sync::Arc;

use winrm_rs::ExposeSecret;

use crate::kerberos::{Credentials, KerberosError};

/// What a scan got from Kerberos so far: credentials per principal asked for (one with
/// `--auth kerberos`; without `--auth` one per realm the servers map to, at most), each got
/// once on a blocking thread, so a failure is one attempt at the KDC and the same answer for
/// every server; and the krb5.conf facts the default mechanism decides on, read once.
#[derive(Default)]
pub struct ScanKerberos {
    conf: std::sync::OnceLock<crate::krb5_conf::Krb5Conf>,
    by_principal: std::sync::Mutex<std::collections::HashMap<(String, bool), Arc<CredCell>>>,
}

type CredCell = tokio::sync::OnceCell<Result<Arc<Credentials>, Arc<KerberosError>>>;

/// Credentials for `user` (as `--user` spells it, or `user@REALM`), from the ticket cache or,
/// when `with_password`, else the password; got once per scan.
async fn credentials_as(
    cfg: &crate::transport::TransportConfig,
    user: String,
    with_password: bool,
) -> Result<Arc<Credentials>, Arc<KerberosError>> {
    let with_password = with_password && !cfg.password.expose_secret().is_empty();
    let cell = cfg
        .clients
        .kerberos
        .by_principal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry((user.clone(), with_password))
        .or_default()
        .clone();
    cell.get_or_init(|| async {
        let password = with_password.then(|| cfg.password.clone());
        tokio::task::spawn_blocking(move || Credentials::acquire(&user, password.as_ref()))
            .await
            .map_err(|e| KerberosError::Other {
                what: "getting credentials",
                detail: e.to_string(),
            })
            .and_then(|r| r)
            .map(Arc::new)
            .map_err(Arc::new)
    })
    .await
    .clone()
}

/// The credentials a probe of the server `fqdn` uses Kerberos with, or `None` for the other
/// mechanism.
///
/// With `--auth kerberos`: the account's, from the ticket cache or else the password.
/// Without `--auth`, Kerberos when credentials can be had for the server's realm:
/// - a ticket cache holding a valid TGT of the account (after `kinit`);
/// - or the password, when the configuration knows the account's realm
///   ([`crate::krb5_conf::Krb5Conf::auto_principal`]: `user@REALM` with REALM configured, or
///   `DOMAIN\user` with the server's FQDN mapped to a realm named after DOMAIN). Otherwise the
///   password goes to no KDC: a stock krb5.conf names some realm (Debian's ATHENA.MIT.EDU).
///
/// A KDC that refuses the password keeps Kerberos, so the row says so and the lockout guard
/// counts it; NTLM with the same password would only add failed logons. Any other failure to
/// get credentials (no KDC reachable, unknown account, clock) falls back to NTLM.
pub(crate) async fn credentials_for(
    cfg: &crate::transport::TransportConfig,
    fqdn: &str,
) -> Option<Result<Arc<Credentials>, Arc<KerberosError>>> {
    let account = &cfg.account;
    if !cfg.auth_auto {
        return Some(credentials_as(cfg, account.display(), true).await);
    }
    let conf = cfg
        .clients
        .kerberos
        .conf
        .get_or_init(crate::krb5_conf::Krb5Conf::from_environment);
    match conf.auto_principal(&account.user, &account.domain, fqdn) {
        Some(principal) => match credentials_as(cfg, principal, true).await {
            Ok(c) => Some(Ok(c)),
            Err(e) if e.is_rejected_password() => Some(Err(e)),
            Err(e) => {
                tracing::info!(error = %e, "no Kerberos credentials: NTLM instead");
                None
            }
        },
        None => credentials_as(cfg, account.display(), false)
            .await
            .ok()
            .map(Ok),
    }
}

/// The credentials for Exchange Remote PowerShell on `fqdn`, which takes Kerberos alone: the
/// host probes' when they use Kerberos there, else the ticket cache, else the password
/// (whatever the host probes use: NTLM host probes and a Kerberos org query are a normal
/// mix). A `DOMAIN\user` whose default realm is another domain's is refused before any KDC
/// sees the password ([`KerberosError::RealmNotDomain`]).
pub(crate) async fn org_credentials(
    cfg: &crate::transport::TransportConfig,
    fqdn: &str,
) -> Result<Arc<Credentials>, Arc<KerberosError>> {
    match credentials_for(cfg, fqdn).await {
        Some(r) => r,
        None => credentials_as(cfg, cfg.account.display(), true).await,
    }
}
