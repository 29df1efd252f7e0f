use super::checks::blank;
use super::*;

#[test]
fn kerberos_steps_are_skipped_only_in_a_build_without_kerberos() {
    let t = Target::named("ex01");
    let c = blank(&t, 5985, false);
    assert_eq!(c.steps.len(), STEPS.len());
    for name in ["kerberos", "powershell"] {
        let s = c.steps.iter().find(|s| s.step == name).unwrap();
        if cfg!(feature = "kerberos") {
            assert_eq!(s.result, Outcome::NotRun, "{s:?}");
        } else {
            assert_eq!(s.result, Outcome::Skipped, "{s:?}");
            assert!(s.detail.contains("built without Kerberos"), "{s:?}");
        }
    }
    let tls = c.steps.iter().find(|s| s.step == "tls").unwrap();
    assert_eq!(tls.result, Outcome::Skipped);
}
