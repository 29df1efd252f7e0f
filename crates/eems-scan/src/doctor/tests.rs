use super::checks::blank;
use super::*;

#[test]
fn not_built_steps_are_skipped_and_never_passed() {
    let t = Target::named("ex01");
    let c = blank(&t, 5985, false);
    let kerberos = c.steps.iter().find(|s| s.step == "kerberos").unwrap();
    assert_eq!(kerberos.result, Outcome::Skipped);
    assert!(kerberos.detail.contains("issue 16"));
    let ps = c.steps.iter().find(|s| s.step == "powershell").unwrap();
    assert_eq!(ps.result, Outcome::Skipped);
    assert!(ps.detail.contains("issue 16"));
    assert_eq!(c.steps.len(), STEPS.len());
}
