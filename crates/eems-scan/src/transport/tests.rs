use super::client::PROBES_PER_CLIENT;
use super::*;

#[test]
fn splits_user_names_as_ntlm_needs_them() {
    let a = Account::parse(r"LAB\administrator").unwrap();
    assert_eq!(
        (a.user.as_str(), a.domain.as_str()),
        ("administrator", "LAB")
    );
    let a = Account::parse("admin@lab.local").unwrap();
    assert_eq!(
        (a.user.as_str(), a.domain.as_str()),
        ("admin@lab.local", "")
    );
    let a = Account::parse("admin").unwrap();
    assert_eq!((a.user.as_str(), a.domain.as_str()), ("admin", ""));
    assert!(Account::parse(r"\admin").is_err());
    assert!(Account::parse(r"LAB\").is_err());
    assert!(Account::parse(r"A\B\C").is_err());
    assert!(Account::parse("  ").is_err());
}

fn cfg(auth: AuthKind, https: bool) -> TransportConfig {
    TransportConfig {
        https,
        port: None,
        auth,
        account: Account::parse(r"LAB\a").unwrap(),
        password: SecretString::from("sentinel-pw".to_string()),
        ca_cert: None,
        insecure: false,
        client_cert: None,
        client_key: None,
        connect_timeout: Duration::from_secs(5),
        operation_timeout_secs: 20,
        max_output_bytes: 1 << 22,
        auth_auto: false,
        resolve: Arc::default(),
        clients: ClientCache::default(),
    }
}

#[test]
fn kerberos_without_the_feature_is_a_usage_error_naming_it() {
    let e = cfg(AuthKind::Kerberos, false).validate();
    if cfg!(feature = "kerberos") {
        assert!(e.is_ok(), "{e:?}");
    } else {
        let e = e.unwrap_err();
        assert!(
            e.contains("`kerberos` feature") && e.contains("--auth kerberos"),
            "{e}"
        );
    }
}

#[test]
fn basic_over_http_is_refused_with_a_reason() {
    let e = cfg(AuthKind::Basic, false).validate().unwrap_err();
    assert!(e.contains("--https"), "{e}");
    assert!(cfg(AuthKind::Basic, true).validate().is_ok());
    assert!(cfg(AuthKind::Ntlm, false).validate().is_ok());
}

#[test]
fn debug_output_never_shows_the_password() {
    let text = format!("{:?}", cfg(AuthKind::Ntlm, false));
    assert!(!text.contains("sentinel-pw"), "{text}");
}

#[test]
fn a_client_serves_at_most_probes_per_client_probes() {
    let c = cfg(AuthKind::Ntlm, false);
    let first = c.client_for(None, AuthKind::Ntlm, None).unwrap().0;
    for _ in 1..PROBES_PER_CLIENT {
        assert!(Arc::ptr_eq(
            &first,
            &c.client_for(None, AuthKind::Ntlm, None).unwrap().0
        ));
    }
    let next = c.client_for(None, AuthKind::Ntlm, None).unwrap().0;
    assert!(
        !Arc::ptr_eq(&first, &next),
        "probe {} got the client that already served {PROBES_PER_CLIENT}",
        PROBES_PER_CLIENT + 1
    );
    // Another port has its own client; the first port's count is not reset by it.
    assert!(!Arc::ptr_eq(
        &next,
        &c.client_for(Some(15985), AuthKind::Ntlm, None).unwrap().0
    ));
    assert!(Arc::ptr_eq(
        &next,
        &c.client_for(None, AuthKind::Ntlm, None).unwrap().0
    ));
}
