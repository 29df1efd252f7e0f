//! Saved settings: an optional TOML profile holding defaults for `scan` flags.
//!
//! Profile values become clap's default values, so the precedence flag > environment >
//! profile > built-in default is clap's own, and a profile value goes through the same
//! value parser (ranges, enums) as the flag would. Keys are the flags' long names
//! (`ca-cert = "/etc/eems/ca.pem"`); a key applies to `discover` and `doctor` too where
//! they have the same flag. A profile never holds a secret.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};

use crate::cli::{self, Cli, Command};

/// The file looked for in the user's configuration folder.
pub const PROFILE_FILE: &str = "profile.toml";
/// Replaced by the day's date (UTC, `2026-12-04`) in report paths from a profile, so a
/// scheduled scan keeps one report per day.
pub const DATE_PLACEHOLDER: &str = "{date}";
/// Profile keys whose value is a report path (the date placeholder applies).
const REPORT_KEYS: [&str; 3] = ["csv", "json", "html"];

/// One setting as `scan --show-settings` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setting {
    /// `--flag`.
    pub flag: String,
    /// `None` when unset.
    pub value: Option<String>,
    /// `flag`, `environment (EEMS_X)`, `profile (FILE line N)` or `default`.
    pub source: String,
}

/// Why the command line or the profile cannot be used.
#[derive(Debug)]
pub enum ParseError {
    /// clap's own (usage, `--help`, `--version`): `exit()` prints it with its status.
    Clap(clap::Error),
    /// The profile is unreadable or holds something wrong; the message names the line.
    Profile(String),
}

impl From<clap::Error> for ParseError {
    fn from(e: clap::Error) -> Self {
        ParseError::Clap(e)
    }
}

/// A loaded profile: `(key, value as clap reads it, line)` in file order.
#[derive(Debug, Clone)]
pub struct Profile {
    pub path: PathBuf,
    entries: Vec<(String, String, usize)>,
}

/// The profile's place in the user's configuration folder (`$XDG_CONFIG_HOME/eems-scan`
/// on Linux, `~/Library/Application Support/eems-scan` on macOS, `%APPDATA%\eems-scan\config`
/// on Windows), whether or not it exists.
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "eems-scan").map(|d| d.config_dir().join(PROFILE_FILE))
}

/// Parses the command line with the profile applied. `args` includes the program name.
pub fn parse_command_line(args: Vec<OsString>) -> Result<Cli, ParseError> {
    let located = locate(&args);
    let profile = match &located {
        Some((path, from)) => load(path, *from != FROM_FOLDER)?,
        None => None,
    };
    let mut cmd = cli::command();
    if let Some(p) = &profile {
        cmd = p.apply(cmd);
    }
    let matches = cmd.try_get_matches_from_mut(args)?;
    let mut parsed = Cli::from_arg_matches(&matches)?;
    if let (Command::Scan(args), Some(("scan", m))) = (&mut parsed.command, matches.subcommand())
        && let Some(scan) = cmd.find_subcommand("scan")
    {
        args.settings = settings(scan, m, profile.as_ref());
        args.settings.insert(
            0,
            Setting {
                flag: "--profile".into(),
                value: located.as_ref().map(|(p, _)| p.display().to_string()),
                source: match (&located, &profile) {
                    (Some((_, from)), Some(_)) => from.to_string(),
                    _ => "none".to_string(),
                },
            },
        );
    }
    Ok(parsed)
}

const FROM_FOLDER: &str = "configuration folder";

/// Which profile applies, before clap runs (its defaults depend on it): `--no-profile`,
/// `--profile FILE`, their environment variables, then the configuration folder's file
/// if there is one; with where the choice came from. A file the user named must exist.
fn locate(args: &[OsString]) -> Option<(PathBuf, &'static str)> {
    let mut words = args.iter().skip(1);
    while let Some(w) = words.next() {
        let w = w.to_string_lossy();
        if w == "--" {
            break;
        }
        if w == "--no-profile" {
            return None;
        }
        if w == "--profile" {
            // Without a value clap reports the usage error.
            return words.next().map(|p| (PathBuf::from(p), "flag"));
        }
        if let Some(p) = w.strip_prefix("--profile=") {
            return Some((PathBuf::from(p), "flag"));
        }
    }
    // As clap reads the switch (BoolishValueParser); anything else it refuses later.
    let truthy = |v: OsString| {
        let v = v.to_string_lossy().to_ascii_lowercase();
        matches!(v.as_str(), "y" | "yes" | "t" | "true" | "on" | "1")
    };
    if std::env::var_os("EEMS_NO_PROFILE").is_some_and(truthy) {
        return None;
    }
    if let Some(p) = std::env::var_os("EEMS_PROFILE").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), "environment (EEMS_PROFILE)"));
    }
    default_path()
        .filter(|p| p.is_file())
        .map(|p| (p, FROM_FOLDER))
}

fn load(path: &Path, explicit: bool) -> Result<Option<Profile>, ParseError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Profile::parse(path, &text).map(Some),
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ParseError::Profile(format!(
            "{}: cannot read the profile: {e}",
            path.display()
        ))),
    }
}

/// Whether a profile key names a secret. A path to one (`password-file`) is not.
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('_', "-");
    if k == "password-file" {
        return false;
    }
    matches!(k.as_str(), "pwd" | "pass")
        || ["password", "passwd", "secret", "token", "credential"]
            .iter()
            .any(|s| k.contains(s))
}

impl Profile {
    /// Reads the TOML and checks every key against `scan`'s flags and every value with
    /// the flag's own parser, so a mistake is reported with its line before anything runs.
    pub fn parse(path: &Path, text: &str) -> Result<Profile, ParseError> {
        use toml::Spanned;
        let err = |line: usize, msg: String| {
            ParseError::Profile(format!("{} line {line}: {msg}", path.display()))
        };
        let table: std::collections::BTreeMap<Spanned<String>, Spanned<toml::Value>> =
            toml::from_str(text).map_err(|e| {
                ParseError::Profile(format!("{}: not a valid profile: {e}", path.display()))
            })?;
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let cmd = cli::command();
        let scan = cmd
            .find_subcommand("scan")
            .expect("the scan subcommand exists");
        let mut entries = Vec::new();
        for (key, value) in &table {
            let line = line_of(key.span().start);
            let name = key.get_ref().as_str();
            if is_secret(name) {
                return Err(err(
                    line,
                    format!(
                        "`{name}`: a profile never holds a password or other secret; give it \
                         with EEMS_PASSWORD, --password-file or at the prompt"
                    ),
                ));
            }
            let Some(arg) = cli::setting_args(scan).find(|a| a.get_long() == Some(name)) else {
                let known: Vec<&str> = cli::setting_args(scan)
                    .filter_map(|a| a.get_long())
                    .collect();
                return Err(err(
                    line,
                    format!(
                        "`{name}` is not a scan flag (profile keys are flag names without the \
                         dashes: {})",
                        known.join(", ")
                    ),
                ));
            };
            let is_switch = matches!(arg.get_action(), clap::ArgAction::SetTrue);
            let text_value = match value.get_ref() {
                toml::Value::Boolean(b) if is_switch => b.to_string(),
                _ if is_switch => {
                    return Err(err(
                        line,
                        format!("`{name}` is a switch: write true or false"),
                    ));
                }
                toml::Value::String(s) if REPORT_KEYS.contains(&name) => {
                    s.replace(DATE_PLACEHOLDER, &today())
                }
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                other => {
                    return Err(err(
                        line,
                        format!(
                            "`{name}`: write a string or a number, not a TOML {}",
                            other.type_str()
                        ),
                    ));
                }
            };
            if !is_switch {
                // The flag's own parser, alone: the real parse would report a bad default
                // without naming the profile.
                let mut alone = clap::Arg::new("value").long(name.to_string());
                if let Some(names) = arg.get_value_names() {
                    alone = alone.value_names(names.to_vec());
                }
                let alone = alone.value_parser(arg.get_value_parser().clone());
                clap::Command::new("profile")
                    .no_binary_name(true)
                    .arg(alone)
                    .try_get_matches_from([format!("--{name}={text_value}")])
                    .map_err(|e| err(line, format!("`{name}`: {}", clap_message(&e))))?;
            }
            entries.push((arg.get_id().to_string(), text_value, line));
        }
        Ok(Profile {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The command with the profile's values as defaults of every subcommand that has
    /// the flag. A defaulted flag is no longer required.
    pub fn apply(&self, mut cmd: clap::Command) -> clap::Command {
        for sub in cli::SETTING_SUBCOMMANDS {
            cmd = cmd.mut_subcommand(sub, |mut c| {
                // Every argument in turn: mut_arg moves an argument to the end, and
                // `--help` and `--show-settings` keep the order only if all move.
                let ids: Vec<String> = c.get_arguments().map(|a| a.get_id().to_string()).collect();
                for id in ids {
                    let value = self.entries.iter().find(|(k, _, _)| *k == id);
                    c = c.mut_arg(&id, |a| match value {
                        Some((_, v, _)) => a
                            .default_value(v.clone())
                            .required(false)
                            .required_unless_present(clap::builder::Resettable::Reset),
                        None => a,
                    });
                }
                c
            });
        }
        cmd
    }

    fn line_of(&self, id: &str) -> Option<usize> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == id)
            .map(|(_, _, l)| *l)
    }
}

/// clap's message without its `error: ` prefix and usage lines.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

fn today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Every `scan` setting with its value and where the value comes from.
fn settings(scan: &clap::Command, m: &ArgMatches, profile: Option<&Profile>) -> Vec<Setting> {
    cli::setting_args(scan)
        .map(|arg| {
            let id = arg.get_id().as_str();
            let value = m.get_raw(id).map(|vals| {
                vals.map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            });
            let source = match m.value_source(id) {
                Some(ValueSource::CommandLine) => "flag".to_string(),
                Some(ValueSource::EnvVariable) => format!("environment ({})", cli::env_var(id)),
                Some(ValueSource::DefaultValue) => {
                    match profile.and_then(|p| Some((p, p.line_of(id)?))) {
                        Some((p, line)) => format!("profile ({} line {line})", p.path.display()),
                        None => "default".to_string(),
                    }
                }
                _ => "not set".to_string(),
            };
            Setting {
                flag: format!("--{}", arg.get_long().unwrap_or(id)),
                value,
                source,
            }
        })
        .collect()
}

/// The `--show-settings` table.
pub fn render_settings(settings: &[Setting]) -> String {
    let width = settings.iter().map(|s| s.flag.len()).max().unwrap_or(0);
    let value_width = settings
        .iter()
        .map(|s| s.value.as_deref().map_or(1, str::len))
        .max()
        .unwrap_or(0)
        .min(60);
    let mut out = String::new();
    for s in settings {
        let _ = writeln!(
            out,
            "{:width$}  {:value_width$}  {}",
            s.flag,
            s.value.as_deref().unwrap_or("-"),
            s.source
        );
    }
    let _ = writeln!(
        out,
        "{:width$}  {:value_width$}  never shown or saved (EEMS_PASSWORD, --password-file or a prompt)",
        "password", "-"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profile, String> {
        Profile::parse(Path::new("p.toml"), text).map_err(|e| match e {
            ParseError::Profile(m) => m,
            ParseError::Clap(e) => e.to_string(),
        })
    }

    #[test]
    fn a_password_in_the_profile_is_refused_with_its_line() {
        let e = parse("user = 'LAB\\\\a'\n\npassword = 'x'\n").unwrap_err();
        assert!(e.contains("p.toml line 3") && e.contains("password"), "{e}");
        assert!(!e.contains("'x'"), "{e}");
        let e = parse("client-secret = 'x'\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        assert!(parse("password-file = '/etc/eems/pw'\n").is_ok());
    }

    #[test]
    fn values_are_checked_by_the_flags_parser_with_the_line() {
        let e = parse("user = 'a'\nport = 70000\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("port"), "{e}");
        let e = parse("auth = 'kerb'\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("auth"), "{e}");
        let e = parse("https = 'yes'\n").unwrap_err();
        assert!(e.contains("switch"), "{e}");
        let e = parse("colour = 'blue'\n").unwrap_err();
        assert!(e.contains("not a scan flag"), "{e}");
        let e = parse("user = 'a'\nuser = 'b'\n").unwrap_err();
        assert!(e.contains("p.toml"), "{e}");
    }

    #[test]
    fn the_date_placeholder_fills_report_paths_only() {
        let p = parse("json = 'r/eems-{date}.json'\norg-server = '{date}'\n").unwrap();
        let json = &p.entries.iter().find(|e| e.0 == "json").unwrap().1;
        assert_eq!(json, &format!("r/eems-{}.json", today()));
        assert!(p.entries.iter().any(|e| e.1 == "{date}"));
    }
}
