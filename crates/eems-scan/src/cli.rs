//! The `eems-scan` command line. Read top to bottom, this is the manual.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use eems_core::probe::DEFAULT_OCS_URL;

use crate::transport::AuthKind;

/// Check the Exchange Emergency Mitigation service (EEMS) on every Mailbox server of an
/// Exchange organisation over WinRM, and write CSV/JSON/HTML reports for an audit.
///
/// One org-level query (Get-OrganizationConfig, Get-ExchangeServer) runs on one server;
/// then a light, read-only probe runs on every Mailbox server concurrently: the
/// MSExchangeMitigation service, the Exchange build, and whether the server reaches the
/// mitigation endpoint through its own proxy. Verdicts use HealthChecker's labels.
/// Saved scans can be re-rendered (`report`) and compared (`compare`) offline.
///
/// Exit status of `scan`: 0 all in-scope servers scanned and fine; 1 a warning or
/// critical finding; 2 usage or input error; 3 a server could not be scanned; 4 a
/// report could not be written; 130 interrupted. `discover`, `report`, `compare` and
/// `doctor`: see their help.
///
/// Settings: every `scan` flag can also come from an environment variable EEMS_<FLAG> (as
/// EEMS_USER, EEMS_CA_CERT) or from the profile (`--profile`); a flag wins over the
/// environment, which wins over the profile. `scan --show-settings` shows what applies.
#[derive(Debug, Parser)]
#[command(name = "eems-scan", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Saved settings (TOML, `flag = value` per line) instead of profile.toml in the
    /// user's configuration folder (README "Profile"). Read before anything else.
    #[arg(long, value_name = "FILE", global = true, env = "EEMS_PROFILE")]
    pub profile: Option<PathBuf>,

    /// Use no profile, not even the one in the configuration folder.
    #[arg(
        long,
        global = true,
        env = "EEMS_NO_PROFILE",
        conflicts_with = "profile",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub no_profile: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scan the servers of an inventory (or of the whole organisation) and report.
    Scan(ScanArgs),
    /// Write an inventory of every Exchange server the organisation knows (Edge included).
    ///
    /// Exit status: 0 written; 2 usage or input error; 3 the org query failed; 4 the
    /// inventory cannot be written.
    Discover(DiscoverArgs),
    /// Re-render a saved scan (its JSON report) as HTML and/or CSV, without contacting
    /// any server: for audit re-exports.
    ///
    /// Exit status: 0 written; 2 the JSON cannot be read or a report cannot be written.
    Report(ReportArgs),
    /// Show what changed between two saved scans, per server, and whether each change is a
    /// regression, an improvement or neutral (README "compare" lists the rules).
    ///
    /// Prints a table unless a report goes to stdout. Exit status: 0 no regression; 1 at
    /// least one regression; 2 an input cannot be read or compared, or a report cannot be
    /// written.
    Compare(CompareArgs),
    /// Check, server by server, every step a scan needs and stop at the first that fails,
    /// with the fix in plain words. Read-only: it runs the scan's own host probe.
    ///
    /// Steps: name resolution, TCP to the WinRM port, TLS and the certificate chain
    /// (--https), Kerberos (ticket or password, KDC, clocks, service ticket for
    /// HTTP/<fqdn>; when WinRM or the org query uses it), WinRM authentication, the probe
    /// command, /PowerShell (--org-via remote-powershell: TCP to --org-port, Kerberos, and
    /// whether the account may run Get-ExchangeServer), and whether the server reaches the
    /// mitigation endpoint (through its InternetWebProxy, which one org query on the first
    /// answering server provides). A step that does not apply shows as skipped, with why.
    ///
    /// Exit status: 0 no step failed on any server; 1 a step failed; 2 usage or input error.
    Doctor(DoctorArgs),
    /// Print a shell completion script on stdout (README "Install" shows where it goes).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout, or write one page per subcommand.
    Man {
        /// Write eems-scan.1 and one page per subcommand into this folder instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print one PowerShell line for the Exchange Management Shell that writes the org facts
    /// to `eems-org.json`, for `scan --org-data` where Kerberos cannot be used.
    OrgCommand,
}

/// How the org query (Get-OrganizationConfig, Get-ExchangeServer) reaches the organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OrgViaArg {
    /// Exchange Remote PowerShell, `http://<fqdn>/PowerShell/` with Kerberos (a ticket from
    /// kinit, else the password); needs an Exchange view-only role, no local admin rights.
    /// The way Microsoft supports; without Kerberos use --org-data.
    RemotePowershell,
    /// Legacy: the Exchange snap-in in a WinRS PowerShell on the org server. Unsupported by
    /// Microsoft (KB 2827611), and on a real organisation it fails without delegation (the
    /// second hop to Active Directory).
    #[value(alias = "winrs")]
    WinrsSnapin,
}

/// Where the org query goes.
#[derive(Debug, Clone, Args)]
pub struct OrgArgs {
    #[arg(long, value_enum, default_value = "remote-powershell")]
    pub org_via: OrgViaArg,

    /// Port of the Exchange Remote PowerShell endpoint (default 80).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub org_port: Option<u16>,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Server list: .csv (header; name required; address, port, role, site optional),
    /// .txt (one name per line) or .json (array of objects with those fields).
    #[arg(
        short,
        long,
        value_name = "FILE",
        required_unless_present = "discover_from"
    )]
    pub inventory: Option<PathBuf>,

    /// No inventory: ask this server for every Exchange server and scan them all.
    #[arg(long, value_name = "SERVER", conflicts_with = "inventory")]
    pub discover_from: Option<String>,

    #[command(flatten)]
    pub fleet: FleetArgs,

    /// Days of EEMS events the host probe's evidence part reads (README "Evidence"). It
    /// runs by default, in the same command as the rest of the host probe (sent on stdin).
    #[arg(long, value_name = "DAYS", num_args = 0..=1, default_value_t = eems_core::probe::DEFAULT_EVIDENCE_DAYS, default_missing_value = "7", value_parser = clap::value_parser!(u32).range(1..=365))]
    pub evidence_days: u32,

    /// Host probe v1 alone: no evidence part, the script on the command line (one request
    /// per server fewer).
    #[arg(long, conflicts_with = "evidence_days")]
    pub no_evidence: bool,

    #[command(flatten)]
    pub org: OrgArgs,

    /// Use the org facts in this file (written by the line `eems-scan org-command` prints)
    /// instead of an org query; refused when older than 24 hours or malformed.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["org_server", "discover_from"])]
    pub org_data: Option<PathBuf>,

    /// Stop connecting once authentication failed on this many servers, so a wrong
    /// password cannot lock the account out across the fleet (0 = no guard).
    #[arg(long, value_name = "K", default_value_t = 3)]
    pub max_auth_failures: usize,

    /// Write the CSV report here (`-` for stdout).
    #[arg(long, value_name = "PATH")]
    pub csv: Option<String>,

    /// Write the JSON report here (`-` for stdout).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,

    /// Write the HTML fleet report here (`-` for stdout): one self-contained page with
    /// the server matrix, per-server details and coverage, written when the scan ends.
    #[arg(long, value_name = "PATH")]
    pub html: Option<String>,

    /// No progress bar (there is none anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,

    /// Print nothing but errors (reports are still written).
    #[arg(short, long)]
    pub quiet: bool,

    /// Print the settings this scan would use and where each comes from (flag,
    /// environment, profile, default), then exit without connecting.
    #[arg(long)]
    pub show_settings: bool,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Filled by `profile::parse_command_line`: what `--show-settings` prints.
    #[arg(skip)]
    pub settings: Vec<crate::profile::Setting>,
}

/// What the org query and the host probe need, shared by `scan` and `doctor`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Run the org-level query here first (default: the first in-scope server). When it
    /// fails, the next in-scope servers are tried, three in all.
    #[arg(long, value_name = "NAME")]
    pub org_server: Option<String>,

    /// Servers probed at once.
    #[arg(short = 'j', long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,

    /// URL the servers fetch to test the pattern service (from each server, through its
    /// own InternetWebProxy).
    #[arg(long, value_name = "URL", default_value = DEFAULT_OCS_URL)]
    pub ocs_url: String,

    /// Seconds the server waits for the pattern service.
    #[arg(long, value_name = "SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub ocs_timeout: u64,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Servers to check (names or addresses). With an inventory, a name listed there is
    /// reached at its address and port.
    #[arg(value_name = "SERVER")]
    pub servers: Vec<String>,

    /// Check every server of this inventory (the format `scan` reads) when no SERVER is
    /// named; Edge servers are left out as in a scan.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,

    /// Print the results as JSON on stdout instead of the table.
    #[arg(long = "json")]
    pub json_output: bool,

    #[command(flatten)]
    pub fleet: FleetArgs,

    /// The org query as a scan runs it; with remote-powershell the `powershell` step checks
    /// /PowerShell on --org-port of every server.
    #[command(flatten)]
    pub org: OrgArgs,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Any Exchange server with the management tools.
    #[arg(long, value_name = "SERVER")]
    pub from: String,

    /// Write the inventory CSV here (`-` for stdout).
    #[arg(long, value_name = "PATH", default_value = "-")]
    pub out: String,

    #[command(flatten)]
    pub org: OrgArgs,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("outputs").required(true).multiple(true).args(["html", "csv"])))]
pub struct ReportArgs {
    /// A JSON report written by `eems-scan scan --json`.
    #[arg(value_name = "SCAN.json")]
    pub scan: PathBuf,

    /// Write the HTML fleet report here (`-` for stdout).
    #[arg(long, value_name = "PATH")]
    pub html: Option<String>,

    /// Write the CSV report here (`-` for stdout), the same columns `scan --csv` writes.
    #[arg(long, value_name = "PATH")]
    pub csv: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The earlier scan's JSON report.
    #[arg(value_name = "OLD.json")]
    pub old: PathBuf,

    /// The later scan's JSON report.
    #[arg(value_name = "NEW.json")]
    pub new: PathBuf,

    /// Write the changes as CSV here (`-` for stdout): server, change, old, new, verdict.
    #[arg(long, value_name = "PATH")]
    pub csv: Option<String>,

    /// Write the changes as JSON here (`-` for stdout), with both scans' times and the
    /// counts.
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,

    /// Write the drift page here (`-` for stdout): the changes as a sortable table in the
    /// style of the fleet report.
    #[arg(long, value_name = "PATH")]
    pub html: Option<String>,

    /// Print nothing but errors (reports are still written; the exit status still tells).
    #[arg(short, long)]
    pub quiet: bool,
}

/// How to reach and authenticate to the servers. The password is never an argument: it
/// comes from EEMS_PASSWORD, --password-file, or a prompt.
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// Account: DOMAIN\user, user@dns.domain, or a local user.
    #[arg(short, long, value_name = "USER")]
    pub user: String,

    /// Read the password from this file (first line); it must not be readable by group or
    /// others.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Authentication: ntlm (sealed over HTTP, what a stock server accepts), basic
    /// (HTTPS only), kerberos (needs the `kerberos` feature), certificate (HTTPS only).
    /// Unset (`kerberos` builds): kerberos for a server with an FQDN when the ticket cache
    /// holds a valid ticket of the user (after kinit), or krb5.conf knows the user's realm
    /// (user@REALM configured, or DOMAIN\user with the server mapped to a realm named after
    /// DOMAIN) and the password gets the ticket; else ntlm.
    #[arg(long, value_enum)]
    pub auth: Option<AuthKind>,

    /// Use HTTPS (port 5986) instead of HTTP (5985).
    #[arg(long)]
    pub https: bool,

    /// WinRM port for every server (an inventory `port` column wins).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Trust this CA (PEM) for the listeners' certificates.
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,

    /// Do not verify HTTPS certificates. For test labs only: anyone on the path can
    /// impersonate the servers.
    #[arg(long)]
    pub insecure: bool,

    /// Client certificate (PEM) for --auth certificate.
    #[arg(long, value_name = "PEM")]
    pub client_cert: Option<PathBuf>,

    /// Client key (PEM) for --auth certificate.
    #[arg(long, value_name = "PEM")]
    pub client_key: Option<PathBuf>,

    /// Seconds one server may take in all: connect, authenticate, run, poll, clean up.
    #[arg(short, long, value_name = "SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub timeout: u64,

    /// Seconds to wait for a TCP connection.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub connect_timeout: u64,

    /// WS-Management OperationTimeout: how long one Receive poll may wait on the server.
    #[arg(long, value_name = "SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub operation_timeout: u64,
}

impl ConnectionArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

/// Subcommands that take `scan`'s settings (from the environment and the profile) where
/// they have the same flag.
pub const SETTING_SUBCOMMANDS: [&str; 3] = ["scan", "discover", "doctor"];

/// The command line as clap sees it: the derived one, with the environment variable of
/// every setting attached. The binary, the man page and the completions all use this.
pub fn command() -> clap::Command {
    let base = Cli::command();
    let ids: Vec<String> = base
        .find_subcommand("scan")
        .map(|s| setting_args(s).map(|a| a.get_id().to_string()).collect())
        .unwrap_or_default();
    let mut cmd = base;
    for sub in SETTING_SUBCOMMANDS {
        cmd = cmd.mut_subcommand(sub, |mut c| {
            for id in &ids {
                if c.get_arguments().any(|a| a.get_id() == id.as_str()) {
                    c = c.mut_arg(id, |a| {
                        // A switch's variable reads as people write it: 1, yes, on, true.
                        let switch = matches!(a.get_action(), clap::ArgAction::SetTrue);
                        let a = a.env(env_var(id));
                        if switch {
                            a.value_parser(clap::builder::BoolishValueParser::new())
                        } else {
                            a
                        }
                    });
                }
            }
            c
        });
    }
    cmd
}

/// The flags of `scan` that are settings: every named flag but `--show-settings` (and
/// clap's own).
pub fn setting_args(scan: &clap::Command) -> impl Iterator<Item = &clap::Arg> {
    scan.get_arguments().filter(|a| {
        !a.is_positional()
            && a.get_long().is_some()
            && !matches!(a.get_id().as_str(), "help" | "version" | "show_settings")
            && !a.is_global_set()
    })
}

/// A setting's environment variable: EEMS_ and the flag's name (`--ca-cert`: EEMS_CA_CERT).
pub fn env_var(id: &str) -> String {
    format!("EEMS_{}", id.to_ascii_uppercase())
}

/// Whether the progress bar and colours make sense.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
