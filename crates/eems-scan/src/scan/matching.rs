//! Which Get-ExchangeServer object an inventory name means.

use eems_core::facts::ExchangeServerFacts;

/// Case-insensitive match of an inventory name against a server's name, its FQDN, or the
/// FQDN's first label; an inventory FQDN also matches by its first label. Exact name
/// matches win over FQDN-derived ones so `EX1` never picks `ex1.other.corp`'s twin.
pub fn match_org_server(name: &str, servers: &[ExchangeServerFacts]) -> Option<usize> {
    let name = name.trim();
    let first_label = |s: &str| s.split('.').next().unwrap_or(s).to_string();
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let by = |pred: &dyn Fn(&ExchangeServerFacts) -> bool| servers.iter().position(pred);
    by(&|s| eq(&s.name, name))
        .or_else(|| by(&|s| s.fqdn.as_deref().is_some_and(|f| eq(f, name))))
        .or_else(|| by(&|s| s.fqdn.as_deref().is_some_and(|f| eq(&first_label(f), name))))
        .or_else(|| by(&|s| eq(&s.name, &first_label(name))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, fqdn: &str) -> ExchangeServerFacts {
        ExchangeServerFacts {
            name: name.into(),
            fqdn: Some(fqdn.into()),
            ..Default::default()
        }
    }

    #[test]
    fn matches_by_name_fqdn_and_first_label() {
        let org = vec![
            server("EX01", "ex01.corp.contoso.com"),
            server("EX02", "mbx2.corp.contoso.com"),
        ];
        assert_eq!(match_org_server("ex01", &org), Some(0));
        assert_eq!(match_org_server("EX01.corp.contoso.com", &org), Some(0));
        assert_eq!(match_org_server("mbx2", &org), Some(1));
        assert_eq!(match_org_server("MBX2.CORP.CONTOSO.COM", &org), Some(1));
        assert_eq!(match_org_server("ex02.other.example", &org), Some(1));
        assert_eq!(match_org_server("EX03", &org), None);
    }

    #[test]
    fn exact_name_wins_over_fqdn_label() {
        let org = vec![server("MBX2", "ex01.corp"), server("EX01", "x.corp")];
        assert_eq!(match_org_server("EX01", &org), Some(1));
    }
}
