//! What the local Kerberos configuration says about realms, for the default mechanism (no
//! `--auth`): Kerberos only where this machine is set up for the account's realm, so that a
//! password never goes to whatever realm a stock krb5.conf names (Debian's names
//! ATHENA.MIT.EDU).
//!
//! libkrb5 reads the same files for the real work; this reader only answers "is this realm
//! configured here" and "which realm does this host map to", which GSSAPI cannot answer without
//! contacting a KDC. It follows MIT's profile format and lookup rules: the files of
//! `KRB5_CONFIG` (colon-separated) or `/etc/krb5.conf`, earlier files first; `include` and
//! `includedir`; `[libdefaults] default_realm`; the `[realms]` subsections; `[domain_realm]`
//! searched from the full host name up through its parent domains (`host`, `.domain`,
//! `domain`, ...). DNS realm discovery (`dns_lookup_realm`) is deliberately not followed: a
//! realm only counts when it is written down.

use std::path::{Path, PathBuf};

/// Nesting of `include`/`includedir` followed, and files read in all: a configuration loop
/// or a huge directory cannot make the scan hang.
const MAX_INCLUDE_DEPTH: usize = 8;
const MAX_FILES: usize = 64;

/// The realm facts of the Kerberos configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Krb5Conf {
    pub default_realm: Option<String>,
    /// Names of the `[realms]` subsections.
    pub realms: Vec<String>,
    /// `[domain_realm]`, in file order (the first entry for a key wins, as in MIT).
    pub domain_realm: Vec<(String, String)>,
}

impl Krb5Conf {
    /// The configuration libkrb5 would read in this process (missing files are skipped, as
    /// libkrb5 does).
    pub fn from_environment() -> Krb5Conf {
        let paths = std::env::var("KRB5_CONFIG").unwrap_or_else(|_| "/etc/krb5.conf".into());
        let mut conf = Krb5Conf::default();
        let mut budget = MAX_FILES;
        for p in paths.split(':').filter(|p| !p.is_empty()) {
            conf.read_file(Path::new(p), 0, &mut budget);
        }
        conf
    }

    /// Adds one file's facts (text form; `include`s are resolved against the file system).
    pub fn add_text(&mut self, text: &str) {
        let mut budget = MAX_FILES;
        self.add_text_at(text, 0, &mut budget);
    }

    fn read_file(&mut self, path: &Path, depth: usize, budget: &mut usize) {
        if *budget == 0 || depth > MAX_INCLUDE_DEPTH {
            return;
        }
        *budget -= 1;
        if let Ok(text) = std::fs::read_to_string(path) {
            self.add_text_at(&text, depth, budget);
        }
    }

    fn add_text_at(&mut self, text: &str, depth: usize, budget: &mut usize) {
        let mut section = String::new();
        // Depth of `{ ... }` inside the current section.
        let mut nesting = 0usize;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(path) = line.strip_prefix("includedir ") {
                for file in included_dir(Path::new(path.trim())) {
                    self.read_file(&file, depth + 1, budget);
                }
                continue;
            }
            if let Some(path) = line.strip_prefix("include ") {
                self.read_file(Path::new(path.trim()), depth + 1, budget);
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                section = name
                    .trim_end_matches('*')
                    .trim_end_matches(']')
                    .trim()
                    .to_ascii_lowercase();
                nesting = 0;
                continue;
            }
            if line.starts_with('}') {
                nesting = nesting.saturating_sub(1);
                continue;
            }
            let Some((tag, value)) = line.split_once('=') else {
                continue;
            };
            let tag = tag.trim().trim_end_matches('*').trim();
            let value = value.trim();
            if value.starts_with('{') {
                if nesting == 0 && section == "realms" && !self.knows_realm(tag) {
                    self.realms.push(tag.to_string());
                }
                nesting += 1;
                continue;
            }
            if nesting > 0 {
                continue;
            }
            let value = value.trim_matches('"').to_string();
            match section.as_str() {
                "libdefaults" if tag == "default_realm" && self.default_realm.is_none() => {
                    self.default_realm = Some(value);
                }
                "domain_realm" => self.domain_realm.push((tag.to_ascii_lowercase(), value)),
                _ => {}
            }
        }
    }

    /// Whether `realm` is configured here: a `[realms]` entry or the default realm
    /// (case-insensitively: Windows spells realms in any case, libkrb5 upper-cases ours).
    pub fn knows_realm(&self, realm: &str) -> bool {
        self.realms.iter().any(|r| r.eq_ignore_ascii_case(realm))
            || self
                .default_realm
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(realm))
    }

    /// The realm `[domain_realm]` gives `host` (MIT's order: the host, then each parent
    /// domain as `.domain` and `domain`); `None` when no entry matches.
    pub fn host_realm(&self, host: &str) -> Option<&str> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let lookup = |key: &str| {
            self.domain_realm
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, r)| r.as_str())
        };
        let mut rest = host.as_str();
        loop {
            if let Some(r) = lookup(rest) {
                return Some(r);
            }
            let (_, parent) = rest.split_once('.')?;
            if let Some(r) = lookup(&format!(".{parent}")) {
                return Some(r);
            }
            rest = parent;
        }
    }

    /// Without `--auth`: the principal to use Kerberos as, with the password, for a server
    /// known by `fqdn`, or `None` (NTLM, unless the ticket cache already holds a ticket).
    ///
    /// - `user@REALM`: when REALM is configured here ([`Self::knows_realm`]).
    /// - `DOMAIN\user`: a NetBIOS domain is not a realm and rarely equals one (CONTOSO vs
    ///   CORP.CONTOSO.COM), so only when `[domain_realm]` maps the server's FQDN to a realm
    ///   whose first label is DOMAIN (CONTOSO\user and ex01.contoso.com mapped to
    ///   CONTOSO.COM); the principal is then user@that realm. The default realm alone is not
    ///   enough: it is a property of this machine, not of the server.
    /// - a bare `user`: never (nothing names a realm).
    pub fn auto_principal(&self, user: &str, domain: &str, fqdn: &str) -> Option<String> {
        if domain.is_empty() {
            let (name, realm) = user.rsplit_once('@')?;
            if name.is_empty() || !self.knows_realm(realm) {
                return None;
            }
            return Some(format!("{name}@{}", realm.to_ascii_uppercase()));
        }
        let realm = self.host_realm(fqdn)?;
        let first_label = realm.split('.').next().unwrap_or_default();
        first_label
            .eq_ignore_ascii_case(domain)
            .then(|| format!("{user}@{}", realm.to_ascii_uppercase()))
    }
}

/// The files of an `includedir` MIT reads: names of letters, digits, `-` and `_` only, or
/// ending in `.conf`; in name order.
fn included_dir(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                !n.starts_with('.')
                    && (n.ends_with(".conf")
                        || n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            })
        })
        .take(MAX_FILES)
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's stock krb5.conf, abridged: a default realm and realms nobody scanning
    /// Exchange belongs to.
    const DEBIAN: &str = "[libdefaults]\n\tdefault_realm = ATHENA.MIT.EDU\n\n[realms]\n\
        \tATHENA.MIT.EDU = {\n\t\tkdc = kerberos.mit.edu\n\t\tadmin_server = kerberos.mit.edu\n\t}\n\
        \tZONE.MIT.EDU = {\n\t\tkdc = casio.mit.edu\n\t}\n\n[domain_realm]\n\
        \t.mit.edu = ATHENA.MIT.EDU\n\tmit.edu = ATHENA.MIT.EDU\n";

    const CONTOSO: &str = "# a domain member\n[libdefaults]\n  default_realm = CONTOSO.COM\n\
        [realms]\n  CONTOSO.COM = {\n    kdc = dc01.contoso.com\n    auth_to_local = {\n      x = y\n    }\n  }\n\
        [domain_realm]\n  .contoso.com = CONTOSO.COM\n  ex9.fabrikam.net = CONTOSO.COM\n";

    fn conf(texts: &[&str]) -> Krb5Conf {
        let mut c = Krb5Conf::default();
        for t in texts {
            c.add_text(t);
        }
        c
    }

    #[test]
    fn realms_default_realm_and_mappings_are_read_like_mit() {
        let c = conf(&[CONTOSO, DEBIAN]);
        // The first file's default realm wins; realms of both are known; a nested
        // subsection is not a realm.
        assert_eq!(c.default_realm.as_deref(), Some("CONTOSO.COM"));
        assert!(c.knows_realm("contoso.com") && c.knows_realm("ZONE.MIT.EDU"));
        assert!(!c.knows_realm("auth_to_local") && !c.knows_realm("FABRIKAM.NET"));
        assert_eq!(c.host_realm("EX01.Contoso.com."), Some("CONTOSO.COM"));
        assert_eq!(c.host_realm("a.b.contoso.com"), Some("CONTOSO.COM"));
        assert_eq!(c.host_realm("ex9.fabrikam.net"), Some("CONTOSO.COM"));
        assert_eq!(c.host_realm("ex8.fabrikam.net"), None);
        assert_eq!(c.host_realm("www.mit.edu"), Some("ATHENA.MIT.EDU"));
    }

    #[test]
    fn the_default_mechanism_uses_kerberos_only_for_a_configured_realm() {
        let debian = conf(&[DEBIAN]);
        let member = conf(&[CONTOSO]);
        let fqdn = "ex01.contoso.com";
        // user@REALM: the realm must be configured.
        assert_eq!(
            member
                .auto_principal("admin@contoso.com", "", fqdn)
                .as_deref(),
            Some("admin@CONTOSO.COM")
        );
        assert_eq!(debian.auto_principal("admin@contoso.com", "", fqdn), None);
        // DOMAIN\user: only through the server's domain_realm mapping, never through the
        // machine's default realm alone.
        assert_eq!(
            member.auto_principal("admin", "CONTOSO", fqdn).as_deref(),
            Some("admin@CONTOSO.COM")
        );
        assert_eq!(member.auto_principal("admin", "FABRIKAM", fqdn), None);
        assert_eq!(
            member.auto_principal("admin", "CONTOSO", "ex1.other.org"),
            None
        );
        assert_eq!(debian.auto_principal("admin", "ATHENA", fqdn), None);
        // A bare user names no realm.
        assert_eq!(member.auto_principal("admin", "", fqdn), None);
        assert_eq!(member.auto_principal("@contoso.com", "", fqdn), None);
    }

    #[test]
    fn includes_are_followed_and_loops_end() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("krb5.conf.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("contoso.conf"), CONTOSO).unwrap();
        std::fs::write(d.join(".hidden"), "[realms]\nHIDDEN = {\n}\n").unwrap();
        let main = dir.path().join("krb5.conf");
        // The file includes itself: read a bounded number of times, no hang.
        std::fs::write(
            &main,
            format!("include {}\nincludedir {}\n", main.display(), d.display()),
        )
        .unwrap();
        let mut c = Krb5Conf::default();
        let mut budget = MAX_FILES;
        c.read_file(&main, 0, &mut budget);
        assert!(c.knows_realm("CONTOSO.COM"));
        assert!(!c.knows_realm("HIDDEN"));
    }
}
