//! A throwaway MIT Kerberos realm on loopback: the lab's KDC, a real `krb5kdc`, not a
//! simulation of one (issue 9).
//!
//! [`Realm::start`] makes a database with `kdb5_util`, the lab account and `HTTP/<fqdn>` for
//! every lab host with `kadmin.local`, a keytab holding all of them, and runs `krb5kdc` on a
//! free 127.0.0.1 port, everything under one temporary directory that goes away with the
//! [`Realm`]. Clients find it through [`Realm::client_env`] (`KRB5_CONFIG`); its krb5.conf turns
//! off DNS and reverse-DNS canonicalisation, so the SPN is the FQDN exactly as written.
//!
//! Passwords (the database master key and the lab account's) reach the MIT tools on stdin,
//! answering their prompts, never in an argument: `ps` shows every argument list.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::fleet::Fleet;

/// Budget of one MIT tool run (database creation takes well under a second).
const TOOL_BUDGET: Duration = Duration::from_secs(20);
/// Budget for `krb5kdc` to accept connections.
const KDC_READY_BUDGET: Duration = Duration::from_secs(10);
/// Attempts at a free port: another process may take the probed port before krb5kdc binds it.
const PORT_ATTEMPTS: usize = 3;

/// What the realm holds.
#[derive(Debug, Clone)]
pub struct RealmSpec {
    /// Upper case, e.g. `LAB.LOCAL`.
    pub realm: String,
    /// DNS domain mapped to the realm (`[domain_realm]`), e.g. `lab.local`.
    pub domain: String,
    /// The lab account (principal `user@REALM`).
    pub user: String,
    pub password: String,
    /// Host FQDNs: one `HTTP/<fqdn>` service principal each.
    pub hosts: Vec<String>,
    /// Seconds the KDC's clock is ahead of (or, negative, behind) the real one: the
    /// clock-skew case. Non-zero runs krb5kdc under libfaketime (`faketime`).
    pub kdc_clock_offset_secs: i64,
}

impl RealmSpec {
    /// The realm of a fleet: its hosts' DNS domain (`ex01.lab.local` gives `LAB.LOCAL`), its
    /// first account, an `HTTP/` principal per server.
    pub fn for_fleet(fleet: &Fleet) -> anyhow::Result<RealmSpec> {
        let hosts: Vec<String> = fleet.servers.iter().map(|s| s.fqdn()).collect();
        let domain = hosts
            .first()
            .and_then(|f| f.split_once('.'))
            .map(|(_, d)| d.to_ascii_lowercase())
            .ok_or_else(|| anyhow!("fleet: the first server has no DNS domain in its FQDN"))?;
        if let Some(other) = hosts
            .iter()
            .find(|f| !f.to_ascii_lowercase().ends_with(&format!(".{domain}")))
        {
            bail!("fleet: server FQDN {other} is outside the realm's domain {domain}");
        }
        let account = fleet
            .accounts()
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("fleet: no account"))?;
        Ok(RealmSpec {
            realm: domain.to_ascii_uppercase(),
            domain,
            user: account.user,
            password: account.password,
            hosts,
            kdc_clock_offset_secs: 0,
        })
    }
}

impl RealmSpec {
    /// Names go into kadmin.local's command stream and krb5.conf, the password answers a
    /// prompt: refuse anything that could end a line or split a principal there.
    fn validate(&self) -> anyhow::Result<()> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        };
        for (what, value) in [
            ("realm", &self.realm),
            ("domain", &self.domain),
            ("user", &self.user),
        ]
        .into_iter()
        .chain(self.hosts.iter().map(|h| ("host FQDN", h)))
        {
            if !plain(value) {
                bail!(
                    "realm: {what} {value:?} has characters other than letters, digits, '.', '-' and '_'"
                );
            }
        }
        if self.password.is_empty() || self.password.contains(['\n', '\r']) {
            bail!(
                "realm: the password of {} is empty or has a line break",
                self.user
            );
        }
        Ok(())
    }
}

/// A running realm. Dropping it stops the KDC and removes the directory.
pub struct Realm {
    spec: RealmSpec,
    dir: tempfile::TempDir,
    kdc: Child,
    addr: SocketAddr,
    tools: Tools,
    /// Hosts added after the start ([`Realm::add_hosts`]); the lock also keeps two
    /// kadmin.local runs from meeting on the database.
    added: tokio::sync::Mutex<Vec<String>>,
}

/// Absolute paths of the MIT tools.
#[derive(Debug, Clone)]
struct Tools {
    kdb5_util: PathBuf,
    krb5kdc: PathBuf,
    kadmin_local: PathBuf,
    kinit: PathBuf,
    kvno: PathBuf,
}

#[path = "kdc_tools.rs"]
mod tools;

impl Tools {
    fn find() -> Result<Tools, String> {
        let missing = tools::missing();
        if !missing.is_empty() {
            return Err(format!(
                "MIT Kerberos tools not installed: {}; on Debian/Ubuntu: {}",
                missing.join(", "),
                tools::INSTALL
            ));
        }
        let find = |t| tools::find(t).unwrap_or_default();
        Ok(Tools {
            kdb5_util: find("kdb5_util"),
            krb5kdc: find("krb5kdc"),
            kadmin_local: find("kadmin.local"),
            kinit: find("kinit"),
            kvno: find("kvno"),
        })
    }
}

/// Why a realm cannot start here (a tool is missing), in words that say what to install;
/// `None` when everything is installed.
pub fn unavailable() -> Option<String> {
    Tools::find().err()
}

impl Realm {
    /// Creates the database, principals and keytab, then starts `krb5kdc`. Every step is
    /// bounded; an error names the step and carries the tool's own message.
    pub async fn start(spec: RealmSpec) -> anyhow::Result<Realm> {
        spec.validate()?;
        let tools = Tools::find().map_err(|e| anyhow!(e))?;
        let dir = realm_dir().context("realm: cannot create its temporary directory")?;
        let paths = Paths::new(dir.path());
        // The database needs a port in kdc.conf; krb5kdc gets its own free one below.
        write_configs(&spec, &paths, 0)?;
        // The master key protects a database that lives for one test: random, never stored
        // but in the stash file kdb5_util writes beside it.
        let master = format!("{:032x}", rand::random::<u128>());
        run_tool(
            &tools.kdb5_util,
            &["create", "-s", "-r", &spec.realm],
            &format!("{master}\n{master}\n"),
            &paths,
        )
        .await
        .context("realm: kdb5_util create")?;
        run_tool(
            &tools.kadmin_local,
            &[],
            &kadmin_script(&spec, &paths),
            &paths,
        )
        .await
        .context("realm: kadmin.local (principals and keytab)")?;

        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            write_configs(&spec, &paths, port)?;
            match start_kdc(&tools.krb5kdc, &paths, port, spec.kdc_clock_offset_secs).await {
                Ok(kdc) => {
                    return Ok(Realm {
                        spec,
                        dir,
                        kdc,
                        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                        tools,
                        added: tokio::sync::Mutex::default(),
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("realm: krb5kdc did not start")))
    }

    pub fn spec(&self) -> &RealmSpec {
        &self.spec
    }

    pub fn realm(&self) -> &str {
        &self.spec.realm
    }

    /// `user@REALM` of the lab account.
    pub fn user_principal(&self) -> String {
        format!("{}@{}", self.spec.user, self.spec.realm)
    }

    /// `HTTP/<fqdn>@REALM`.
    pub fn service_principal(&self, fqdn: &str) -> String {
        format!("HTTP/{fqdn}@{}", self.spec.realm)
    }

    pub fn kdc_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The realm's krb5.conf (what `KRB5_CONFIG` points at).
    pub fn krb5_conf(&self) -> PathBuf {
        Paths::new(self.dir.path()).krb5_conf
    }

    /// Keys of every `HTTP/<fqdn>` and of the lab account.
    pub fn keytab(&self) -> PathBuf {
        Paths::new(self.dir.path()).keytab
    }

    /// The keys of `HTTP/<fqdn>` alone, what a lab host's acceptor uses: MIT accepts a ticket
    /// with a keytab credential that names no principal by trying every key of the ticket's
    /// enctype in the keytab until one decrypts it, so with the shared keytab each handshake
    /// cost the lab a key derivation per host in the realm (at 1,000 hosts, most of the lab's
    /// CPU in a Kerberos bench).
    pub fn host_keytab(&self, fqdn: &str) -> PathBuf {
        Paths::new(self.dir.path()).host_keytab(fqdn)
    }

    /// The directory the realm lives in (removed on drop); callers may put ticket caches here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Environment a Kerberos client of this realm needs: its krb5.conf, and no ticket cache or
    /// keytab inherited from the caller's environment.
    pub fn client_env(&self) -> Vec<(&'static str, OsString)> {
        let paths = Paths::new(self.dir.path());
        vec![
            ("KRB5_CONFIG", paths.krb5_conf.into_os_string()),
            (
                "KRB5CCNAME",
                format!("FILE:{}", paths.default_ccache.display()).into(),
            ),
            (
                "KRB5_KTNAME",
                format!("FILE:{}", paths.keytab.display()).into(),
            ),
        ]
    }

    /// `kinit` of `principal` into the ticket cache `ccache` (a path), the password answering
    /// kinit's prompt on stdin. `lifetime` is kinit's `-l` (e.g. `"10s"`), for expiry tests.
    pub async fn kinit(
        &self,
        principal: &str,
        password: &str,
        ccache: &Path,
        lifetime: Option<&str>,
    ) -> anyhow::Result<()> {
        let paths = Paths::new(self.dir.path());
        let mut args = vec![];
        if let Some(l) = lifetime {
            args.extend(["-l", l]);
        }
        args.extend(["-c", ccache.to_str().unwrap_or_default(), principal]);
        run_tool(&self.tools.kinit, &args, &format!("{password}\n"), &paths)
            .await
            .with_context(|| format!("kinit {principal}"))
    }

    /// `kvno <spn>` with the ticket cache `ccache`: gets (and caches) a service ticket.
    pub async fn kvno(&self, spn: &str, ccache: &Path) -> anyhow::Result<()> {
        let paths = Paths::new(self.dir.path());
        run_tool(
            &self.tools.kvno,
            &["-c", ccache.to_str().unwrap_or_default(), spn],
            "",
            &paths,
        )
        .await
        .with_context(|| format!("kvno {spn}"))
    }

    /// Runs kadmin.local commands (one a line) against the realm's database, e.g. to add a
    /// principal for one test. Secrets in them go on stdin, never in an argument list; its
    /// echo of the commands is discarded.
    pub async fn kadmin(&self, script: &str) -> anyhow::Result<()> {
        let paths = Paths::new(self.dir.path());
        run_tool(&self.tools.kadmin_local, &[], script, &paths)
            .await
            .context("kadmin.local")
    }

    /// Adds `HTTP/<fqdn>` of each of `hosts` the realm does not hold yet, its keys appended to
    /// the keytab, so that one realm serves several fleets of a test process (starting a
    /// KDC per test is slow). A host already there keeps its key: a new one would bump the
    /// key version under a lab that is using it.
    pub async fn add_hosts(&self, hosts: &[String]) -> anyhow::Result<()> {
        let mut added = self.added.lock().await;
        let mut new: Vec<&String> = Vec::new();
        for h in hosts {
            let known = self
                .spec
                .hosts
                .iter()
                .chain(added.iter())
                .chain(new.iter().copied());
            if !known.into_iter().any(|k| k.eq_ignore_ascii_case(h)) {
                new.push(h);
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        let spec = RealmSpec {
            hosts: new.iter().map(|h| h.to_string()).collect(),
            ..self.spec.clone()
        };
        spec.validate()?;
        let paths = Paths::new(self.dir.path());
        run_tool(
            &self.tools.kadmin_local,
            &[],
            &host_principals(&spec, &paths),
            &paths,
        )
        .await
        .context("realm: kadmin.local (added hosts)")?;
        added.extend(spec.hosts);
        Ok(())
    }

    /// The KDC's process id (to stop a realm that is never dropped, at process exit).
    pub fn kdc_pid(&self) -> Option<u32> {
        self.kdc.id()
    }

    /// The KDC's own log (requests, errors): for a test that wants to see what it was asked.
    pub fn kdc_log(&self) -> String {
        std::fs::read_to_string(Paths::new(self.dir.path()).kdc_log).unwrap_or_default()
    }

    /// Stops the KDC and waits for it, so that its port refuses connections from here on
    /// (the "KDC down" case); the files stay until drop.
    pub async fn stop_kdc(&mut self) {
        kill_kdc(&mut self.kdc, self.spec.kdc_clock_offset_secs != 0);
        let _ = tokio::time::timeout(TOOL_BUDGET, self.kdc.wait()).await;
    }
}

impl Drop for Realm {
    fn drop(&mut self) {
        // Our own child, by its handle; the directory goes with `dir`.
        kill_kdc(&mut self.kdc, self.spec.kdc_clock_offset_secs != 0);
        let _ = self.kdc.try_wait();
    }
}

struct Paths {
    krb5_conf: PathBuf,
    kdc_conf: PathBuf,
    keytab: PathBuf,
    database: PathBuf,
    stash: PathBuf,
    kdc_log: PathBuf,
    default_ccache: PathBuf,
    dir: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Paths {
        Paths {
            krb5_conf: dir.join("krb5.conf"),
            kdc_conf: dir.join("kdc.conf"),
            keytab: dir.join("lab.keytab"),
            database: dir.join("principal"),
            stash: dir.join("stash"),
            kdc_log: dir.join("kdc.log"),
            default_ccache: dir.join("ccache"),
            dir: dir.to_path_buf(),
        }
    }

    fn host_keytab(&self, fqdn: &str) -> PathBuf {
        self.dir
            .join(format!("{}.keytab", fqdn.to_ascii_lowercase()))
    }
}

fn write_configs(spec: &RealmSpec, paths: &Paths, port: u16) -> anyhow::Result<()> {
    let RealmSpec { realm, domain, .. } = spec;
    // No DNS anywhere: the SPN is the FQDN as written, the KDC is the one on loopback.
    let krb5_conf = format!(
        "[libdefaults]\n\
         \tdefault_realm = {realm}\n\
         \tdns_lookup_kdc = false\n\
         \tdns_lookup_realm = false\n\
         \tdns_canonicalize_hostname = false\n\
         \trdns = false\n\
         \tdefault_ccache_name = FILE:{ccache}\n\
         \tdefault_keytab_name = FILE:{keytab}\n\
         [realms]\n\
         \t{realm} = {{\n\t\tkdc = 127.0.0.1:{port}\n\t}}\n\
         [domain_realm]\n\
         \t.{domain} = {realm}\n\
         \t{domain} = {realm}\n",
        ccache = paths.default_ccache.display(),
        keytab = paths.keytab.display(),
    );
    // AES only: what RFC 4121 sealing (and Windows) uses.
    let kdc_conf = format!(
        "[kdcdefaults]\n\
         \tkdc_listen = 127.0.0.1:{port}\n\
         \tkdc_tcp_listen = 127.0.0.1:{port}\n\
         [realms]\n\
         \t{realm} = {{\n\
         \t\tdatabase_name = {db}\n\
         \t\tkey_stash_file = {stash}\n\
         \t\tsupported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n\
         \t}}\n\
         [logging]\n\
         \tkdc = FILE:{log}\n",
        db = paths.database.display(),
        stash = paths.stash.display(),
        log = paths.kdc_log.display(),
    );
    std::fs::write(&paths.krb5_conf, krb5_conf).context("realm: writing krb5.conf")?;
    std::fs::write(&paths.kdc_conf, kdc_conf).context("realm: writing kdc.conf")?;
    Ok(())
}

/// kadmin.local commands: the lab account (its password answers addprinc's two prompts), a
/// service principal per host, a keytab with all of them (`-norandkey` keeps the account's
/// password-derived keys) and one per host with that host's keys.
fn kadmin_script(spec: &RealmSpec, paths: &Paths) -> String {
    let kt = paths.keytab.display();
    // Pre-authentication required, as Active Directory does: a wrong password is then a
    // failure the KDC sees and logs (PREAUTH_FAILED), not one only the client notices.
    let mut s = format!(
        "addprinc +requires_preauth {user}\n{pw}\n{pw}\n",
        user = spec.user,
        pw = spec.password
    );
    s.push_str(&host_principals(spec, paths));
    s.push_str(&format!("ktadd -k {kt} -norandkey {}\n", spec.user));
    s
}

/// kadmin.local commands for `HTTP/<fqdn>` of every host of `spec`, keys into the realm's
/// keytab and the host's own.
fn host_principals(spec: &RealmSpec, paths: &Paths) -> String {
    let kt = paths.keytab.display();
    let mut s = String::new();
    for host in &spec.hosts {
        s.push_str(&format!("addprinc -randkey HTTP/{host}\n"));
        s.push_str(&format!("ktadd -k {kt} HTTP/{host}\n"));
        s.push_str(&format!(
            "ktadd -k {} -norandkey HTTP/{host}\n",
            paths.host_keytab(host).display()
        ));
    }
    s
}

/// The realm's throwaway directory, on tmpfs (`/dev/shm`) where there is one: kadmin.local
/// fsyncs the database five times per principal, which on a disk made a 1,000-host realm
/// take 19 s (over the tool budget on a busy machine) and on tmpfs 0.9 s.
fn realm_dir() -> std::io::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("eems-lab-realm-");
    let shm = Path::new("/dev/shm");
    match shm.is_dir().then(|| builder.tempdir_in(shm)) {
        Some(Ok(dir)) => Ok(dir),
        _ => builder.tempdir(),
    }
}

/// A port free for both TCP and UDP on 127.0.0.1 (krb5kdc binds both).
fn free_port() -> anyhow::Result<u16> {
    for _ in 0..16 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("realm: probing a port")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("realm: no port free for both TCP and UDP on 127.0.0.1 after 16 tries")
}

fn tool_command(tool: &Path, paths: &Paths) -> Command {
    let mut cmd = Command::new(tool);
    cmd.env("KRB5_CONFIG", &paths.krb5_conf)
        .env("KRB5_KDC_PROFILE", &paths.kdc_conf)
        .env_remove("KRB5CCNAME")
        .env_remove("KRB5_KTNAME")
        .env_remove("KRB5_TRACE")
        .kill_on_drop(true);
    cmd
}

/// Runs one MIT tool with `stdin`, within [`TOOL_BUDGET`]. Its stdout is discarded (kadmin.local
/// echoes the commands it reads); on failure the error carries its stderr.
async fn run_tool(tool: &Path, args: &[&str], stdin: &str, paths: &Paths) -> anyhow::Result<()> {
    let mut child = tool_command(tool, paths)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", tool.display()))?;
    let mut input = child.stdin.take().context("no stdin")?;
    let text = stdin.to_owned();
    let feed = async move {
        // A tool that exits early closes its stdin: not an error in itself.
        let _ = input.write_all(text.as_bytes()).await;
        drop(input);
    };
    let run = async {
        feed.await;
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(TOOL_BUDGET, run)
        .await
        .map_err(|_| anyhow!("{} did not finish within {TOOL_BUDGET:?}", tool.display()))?
        .with_context(|| format!("waiting for {}", tool.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // kadmin.local reports a failed command on stderr and still exits 0.
    let failed_command = stderr
        .lines()
        .any(|l| l.contains("while ") || l.starts_with("add_principal:"));
    if !out.status.success() || failed_command {
        bail!(
            "{} failed ({}): {}",
            tool.display(),
            out.status,
            stderr.trim()
        );
    }
    Ok(())
}

/// Kills the KDC child; `own_group`: it was started under faketime in a process group of its
/// own, which goes whole (faketime and the krb5kdc it forked).
fn kill_kdc(kdc: &mut Child, own_group: bool) {
    if own_group && let Some(pid) = kdc.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) on the process group our own child leads; no memory is involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = kdc.start_kill();
}

async fn start_kdc(
    krb5kdc: &Path,
    paths: &Paths,
    port: u16,
    clock_offset_secs: i64,
) -> anyhow::Result<Child> {
    let mut cmd = if clock_offset_secs == 0 {
        tool_command(krb5kdc, paths)
    } else {
        let faketime = tools::find("faketime").ok_or_else(|| {
            anyhow!("realm: a KDC clock offset needs faketime (apt-get install -y faketime)")
        })?;
        let mut cmd = tool_command(&faketime, paths);
        cmd.arg("-f")
            .arg(format!("{clock_offset_secs:+}s"))
            .arg(krb5kdc);
        // faketime forks krb5kdc and stays its parent: killing faketime alone orphaned a
        // KDC per clock-skew test. In its own process group, the KDC goes with it
        // ([`kill_kdc`]).
        cmd.process_group(0);
        cmd
    };
    let mut kdc = cmd
        .arg("-n")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", krb5kdc.display()))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + KDC_READY_BUDGET;
    loop {
        if let Some(status) = kdc.try_wait()? {
            let log = std::fs::read_to_string(&paths.kdc_log).unwrap_or_default();
            bail!(
                "realm: krb5kdc exited ({status}) on port {port}: {}",
                log.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
            );
        }
        let probe = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), probe).await {
            return Ok(kdc);
        }
        if Instant::now() >= deadline {
            kill_kdc(&mut kdc, clock_offset_secs != 0);
            bail!(
                "realm: krb5kdc did not accept connections on {addr} within {KDC_READY_BUDGET:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
