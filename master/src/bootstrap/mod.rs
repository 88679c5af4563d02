//! `pmesh bootstrap`: turns a host reachable over SSH into an enrolled pattern controller.
//!
//! The order holds these promises: the host key is checked before the login; preflight reads
//! everything and reports every problem before the first change; each install step is
//! idempotent and reported as it happens; the join token is made only when the host needs
//! one and travels to the host inside a script on stdin; the agent's key is made on the host
//! by `pmesh-agent join`; the run ends when the master reports the agent up.
//!
//! - [`ssh`]: the SSH client (the only module that speaks russh);
//! - [`known_hosts`]: pmesh's known-hosts file and the host-key rule;
//! - [`remote`]: scripts as root on the host (`sudo -n` when needed);
//! - [`shell`]: shell text (quoting a word, writing a file), a leaf the transport and the
//!   scripts share;
//! - `local`: what is checked on this machine before the host is contacted (flags, the
//!   key, the agent binary);
//! - [`preflight`]: the probe and the problems; [`install`]: the plan and the steps.
//!
//! The master is reached through the [`Master`] trait, so this module knows nothing of the
//! CLI's credentials or gRPC errors.

pub mod install;
pub mod known_hosts;
mod local;
pub mod preflight;
pub mod remote;
pub mod shell;
pub mod ssh;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pmesh_proto::pattern::Secret;

use install::{Planned, Step};
use known_hosts::{HostKeyPolicy, KnownHosts, Verdict};
use local::Local;
pub use local::LocalBinary;
use preflight::{Facts, Registered};
use remote::Host;
use shell::quote;
use ssh::{Credential, Session, SshError};

/// The port agents serve on unless `--advertise` says otherwise.
pub const DEFAULT_AGENT_PORT: u16 = 7444;
/// How long the master may take to report the agent up once its unit runs.
const UP_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the agent lives on the host.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub binary: &'static str,
    pub unit: &'static str,
    pub sysusers: &'static str,
    pub config: &'static str,
    pub data_dir: &'static str,
}

/// The paths the unit and the README document.
pub const LAYOUT: Layout = Layout {
    binary: "/usr/local/bin/pmesh-agent",
    unit: "/etc/systemd/system/pmesh-agent.service",
    sysusers: "/usr/lib/sysusers.d/pmesh.conf",
    config: "/etc/pmesh/agent.toml",
    data_dir: "/var/lib/pmesh-agent",
};

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub credential: Credential,
    pub host_key: HostKeyPolicy,
    /// pmesh's known-hosts file.
    pub known_hosts: PathBuf,
    /// The agent's name [default: the host's short host name].
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `HOST:PORT` the master dials [default: the SSH host and 7444].
    pub advertise: Option<String>,
    pub dry_run: bool,
    pub upgrade: bool,
    pub agent_binary: PathBuf,
}

/// Everything the preflight rules and the steps need, settled once the host is known.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub advertise: String,
    pub agent_port: u16,
    /// The master's `HOST:PORT`, as agents reach it.
    pub master: String,
    pub upgrade: bool,
    pub binary_path: String,
    pub binary_sha256: String,
    pub binary_size: u64,
    pub binary_arch: Option<&'static str>,
    /// Why commands cannot run as root, when they cannot.
    pub root_problem: Option<String>,
    pub layout: Layout,
}

#[cfg(test)]
impl Request {
    /// A request as the rules' tests use it: agent pc-1 on 10.0.0.5:7444, an x86_64 binary.
    pub(crate) fn example() -> Request {
        Request {
            name: "pc-1".into(),
            advertise: "10.0.0.5:7444".into(),
            agent_port: 7444,
            master: "10.0.0.2:7443".into(),
            upgrade: false,
            binary_path: "/opt/pmesh-agent".into(),
            binary_sha256: "ab".repeat(32),
            binary_size: 20 << 20,
            binary_arch: Some("x86_64"),
            root_problem: None,
            layout: LAYOUT,
        }
    }
}

/// How bootstrap failed; the variants are the exit codes a caller chooses between.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or files; nothing was changed.
    #[error("{0}")]
    Usage(String),
    /// Preflight problems, every one of them; nothing was changed.
    #[error("preflight found {} problem(s); nothing was changed:\n  - {}", .0.len(), .0.join("\n  - "))]
    Preflight(Vec<String>),
    /// The host or the master could not be reached, or the agent never came up.
    #[error("{0}")]
    Unreachable(String),
    /// The host key or the login was refused, or the master refused the credential.
    #[error("{0}")]
    Refused(String),
    /// A step failed on the host.
    #[error("{0}")]
    Failed(String),
}

/// An agent as the master sees it.
#[derive(Debug, Clone)]
pub struct AgentSeen {
    pub address: String,
    pub up: bool,
    pub last_error: String,
}

/// A one-time join token and what the agent pins.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub token: Secret,
    pub ca_fingerprint: String,
    pub master: String,
}

/// The master, as bootstrap uses it.
#[allow(async_fn_in_trait)] // Called on the CLI's own runtime; no Send bound is needed.
pub trait Master {
    /// The master's `HOST:PORT` as agents reach it.
    fn address(&self) -> &str;
    /// The agent `name`, if registered.
    async fn agent(&mut self, name: &str) -> Result<Option<AgentSeen>, Error>;
    /// A one-time token for `name` with `labels`.
    async fn create_token(&mut self, name: &str, labels: &BTreeMap<String, String>) -> Result<Ticket, Error>;
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    /// Steps that changed something (planned changes, in a dry run).
    pub changed: usize,
}

/// Bootstraps the host; progress goes to `out` line by line.
///
/// # Errors
/// An [`Error`] whose variant is the exit code: usage, preflight problems, unreachable,
/// refused, or a failed step.
pub async fn run(options: Options, master: &mut impl Master, out: &mut dyn Write) -> Result<Outcome, Error> {
    let local = Local::check(&options, master.address())?;
    let (session, host_key, verdict) = connect(&options).await?;
    let host_label = format!("{}@{}", options.user, options.host);
    say(out, &format!("{host_label}: host key {} ({})", host_key.fingerprint, describe(&verdict, &options)));

    let root_problem = root_problem(&session, &options).await?;
    let host = Host { session: &session, sudo: options.user != "root" };
    let master_host_port = (local.master_host.as_str(), local.master_port);
    let facts =
        preflight::probe(&host, root_problem.is_none(), &LAYOUT, local.agent_port, master_host_port).await.map_err(|err| match err {
            SshError::PasswordExpired => password_expired(&options),
            other => session_failed(other),
        })?;
    say(
        out,
        &format!(
            "{host_label}: {}, {}, {}",
            facts.os_name(),
            facts.get("arch").unwrap_or("unknown architecture"),
            facts.get("systemd").unwrap_or("no systemd")
        ),
    );

    let (request, registered) = settle(&options, &local, &facts, root_problem, master).await?;
    let findings = preflight::evaluate(&facts, &request, registered.as_ref());
    for note in &findings.notes {
        say(out, &format!("note: {note}"));
    }
    if !findings.problems.is_empty() {
        session.close().await;
        return Err(Error::Preflight(findings.problems));
    }
    say(out, "preflight: no problems");

    let steps = install::plan(&facts, &request);
    let n_changes = steps.iter().filter(|step| step.change.is_some()).count();
    if options.dry_run {
        report_dry_run(&steps, n_changes, out);
    } else {
        install_and_wait(&steps, n_changes, &host, &request, &options, &local.binary, master, out).await?;
    }
    session.close().await;
    Ok(Outcome { name: request.name, changed: n_changes })
}

/// Why commands cannot run as root: the login is not root and `sudo -n` fails.
async fn root_problem(session: &Session, options: &Options) -> Result<Option<String>, Error> {
    if options.user == "root" {
        return Ok(None);
    }
    let check = session.exec("sudo -n true", b"", Duration::from_secs(30)).await.map_err(session_failed)?;
    if preflight::password_change_required(&check.stderr) {
        return Err(password_expired(options));
    }
    if check.success() {
        return Ok(None);
    }
    Ok(Some(format!(
        "{} is not root and `sudo -n` failed ({}); log in as root, or let {} run sudo without a password (NOPASSWD)",
        options.user,
        check.stderr.trim(),
        options.user
    )))
}

/// The request once the host is known: the agent's name (the host's, unless `--name` gives
/// one) and what the master already knows of it.
async fn settle(
    options: &Options,
    local: &Local,
    facts: &Facts,
    root_problem: Option<String>,
    master: &mut impl Master,
) -> Result<(Request, Option<Registered>), Error> {
    let name = match &options.name {
        Some(name) => name.clone(),
        None => default_name(facts),
    };
    pmesh_proto::identity::validate_name(&name)
        .map_err(|err| Error::Usage(format!("the host name {name:?} is not a valid agent name ({err}); pass --name")))?;
    let registered = master.agent(&name).await?.map(|seen| Registered { address: seen.address });
    let request = Request {
        name,
        advertise: format!("{}:{}", bracket(&local.advertise_host), local.agent_port),
        agent_port: local.agent_port,
        master: local.master.clone(),
        upgrade: options.upgrade,
        binary_path: options.agent_binary.display().to_string(),
        binary_sha256: local.binary.sha256.clone(),
        binary_size: local.binary.size,
        binary_arch: local.binary.arch,
        root_problem,
        layout: LAYOUT,
    };
    Ok((request, registered))
}

/// A dry run's report: what each step would do, and how many would change the host.
fn report_dry_run(steps: &[Planned], n_changes: usize, out: &mut dyn Write) {
    for step in steps {
        let line = if step.change.is_some() { format!("[{}] would {}", step.title, step.detail) } else { kept_line(step) };
        say(out, &line);
    }
    say(out, &format!("dry run: {n_changes} step(s) would change the host; nothing was changed"));
}

/// Runs the steps in order, then waits for the master to report the agent up.
#[allow(clippy::too_many_arguments)]
async fn install_and_wait(
    steps: &[Planned],
    n_changes: usize,
    host: &Host<'_>,
    request: &Request,
    options: &Options,
    binary: &LocalBinary,
    master: &mut impl Master,
    out: &mut dyn Write,
) -> Result<(), Error> {
    for step in steps {
        execute(step, host, request, options, binary, master, out).await?;
    }
    let name = &request.name;
    let seen = wait_until_up(master, name).await?;
    say(out, &format!("agent {name} is up: the master reaches it at {}", seen.address));
    if n_changes == 0 {
        say(out, &format!("nothing changed: {} is already a pattern controller (agent {name})", options.host));
    } else {
        say(out, &format!("done: {n_changes} step(s) changed {}", options.host));
    }
    Ok(())
}

async fn connect(options: &Options) -> Result<(Session, ssh::HostKey, Verdict), Error> {
    let mut known = KnownHosts::load(&options.known_hosts).map_err(|err| Error::Usage(format!("{err:#}")))?;
    let (host, port, policy) = (options.host.clone(), options.port, options.host_key.clone());
    let checker = known.clone();
    let connected = Session::connect(&options.host, options.port, move |key| checker.check(&host, port, key, &policy).trusted()).await;
    let (mut session, host_key) = match connected {
        Ok(connected) => connected,
        Err(SshError::HostKeyRefused(key)) => {
            let verdict = known.check(&options.host, options.port, &key, &options.host_key);
            return Err(Error::Refused(refusal(options, &key, &verdict, known.path())));
        }
        Err(err @ SshError::Unreachable { .. }) => return Err(Error::Unreachable(err.to_string())),
        Err(other) => return Err(session_failed(other)),
    };
    let verdict = known.check(&options.host, options.port, &host_key, &options.host_key);
    session.authenticate(&options.user, &options.credential).await.map_err(|err| match err {
        SshError::AuthRefused(message) => Error::Refused(message),
        SshError::KeyFile(message) => Error::Usage(message),
        SshError::PasswordExpired => password_expired(options),
        other => session_failed(other),
    })?;
    // A dry run changes nothing, not even the local known-hosts file.
    if verdict == Verdict::Accepted && !options.dry_run {
        known.record(&options.host, options.port, &host_key).map_err(|err| Error::Failed(format!("{err:#}")))?;
    }
    Ok((session, host_key, verdict))
}

fn refusal(options: &Options, key: &ssh::HostKey, verdict: &Verdict, file: &Path) -> String {
    let host = format!("{}:{}", options.host, options.port);
    let kind = key.openssh.split_whitespace().next().unwrap_or("key");
    match verdict {
        Verdict::Changed { line } => format!(
            "the host key of {host} has CHANGED: it is now {kind} {}, not the key recorded in {} line {line}. \
             Someone may be intercepting the connection; if the host was reinstalled, check the new key on its console, \
             remove that line and run again",
            key.fingerprint,
            file.display()
        ),
        Verdict::PinMismatch { pinned } => {
            format!("the host key of {host} is {kind} {}, not the pinned {pinned}; refusing to log in", key.fingerprint)
        }
        _ => format!(
            "the host key of {host} is unknown: {kind} {}. Check it on the host's console (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), \
             then pass --host-key {} (or --accept-new-host-key to trust it on first use)",
            key.fingerprint, key.fingerprint
        ),
    }
}

/// The line for a step that changes nothing: `ok`, unless it was skipped.
fn kept_line(step: &Planned) -> String {
    if step.detail.starts_with("skipped") {
        format!("[{}] {}", step.title, step.detail)
    } else {
        format!("[{}] ok: {}", step.title, step.detail)
    }
}

fn describe(verdict: &Verdict, options: &Options) -> String {
    let file = options.known_hosts.display();
    match verdict {
        Verdict::Known => format!("known, in {file}"),
        _ if options.dry_run => format!("new; a real run records it in {file}"),
        _ => format!("new, recorded in {file}"),
    }
}

fn password_expired(options: &Options) -> Error {
    Error::Preflight(vec![format!(
        "the password of {} on {} has expired and must be changed before anything can run: log in once with \
         `ssh {}@{}` and set a new one (Photon OVAs ship with root's password expired)",
        options.user, options.host, options.user, options.host
    )])
}

fn session_failed(err: SshError) -> Error {
    match err {
        SshError::Unreachable { .. } => Error::Unreachable(err.to_string()),
        other => Error::Failed(other.to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    step: &Planned,
    host: &Host<'_>,
    request: &Request,
    options: &Options,
    binary: &LocalBinary,
    master: &mut impl Master,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let Some(change) = &step.change else {
        say(out, &kept_line(step));
        return Ok(());
    };
    let _ = write!(out, "[{}] {} ... ", step.title, step.detail);
    let _ = out.flush();
    let result = match change {
        Step::Binary { .. } => upload_binary(host, request, options, binary).await,
        Step::Enrol => match master.create_token(&request.name, &options.labels).await {
            Ok(ticket) => {
                let script = install::enrol_script(request, ticket.token.expose(), &ticket.ca_fingerprint, &ticket.master);
                install::run_step(host, "enrol", &script, install::timeout(change)).await.map(|_| "done".to_owned())
            }
            Err(err) => Err(err),
        },
        Step::Service => match install::run_step(host, "service", &install::script(change, request), install::timeout(change)).await {
            Ok(_) => Ok("done".to_owned()),
            Err(err) => Err(with_journal(host, err).await),
        },
        other => {
            install::run_step(host, step.title, &install::script(other, request), install::timeout(other)).await.map(|_| "done".to_owned())
        }
    };
    match result {
        Ok(detail) => {
            say(out, &detail);
            Ok(())
        }
        Err(err) => {
            say(out, "failed");
            Err(err)
        }
    }
}

async fn upload_binary(host: &Host<'_>, request: &Request, options: &Options, binary: &LocalBinary) -> Result<String, Error> {
    let failed = |err: SshError| Error::Failed(format!("binary: {err}"));
    let made = host.run_unprivileged("mktemp -d /var/tmp/pmesh-bootstrap.XXXXXXXX", remote::STEP_TIMEOUT).await.map_err(failed)?;
    let dir = made.stdout.trim().to_owned();
    if !made.success() || dir.is_empty() {
        return Err(Error::Failed(format!("binary: cannot make an upload directory in /var/tmp: {}", made.stderr.trim())));
    }
    let timeout = Duration::from_secs(60 + binary.size / (1 << 20));
    let method = match host.session.upload(&options.agent_binary, &format!("{dir}/pmesh-agent"), timeout).await {
        Ok(method) => method,
        Err(err) => {
            let _ = host.run_unprivileged(&format!("rm -rf {}", quote(&dir)), remote::STEP_TIMEOUT).await;
            return Err(failed(err));
        }
    };
    let script = install::install_binary_script(&dir, &request.layout, &binary.sha256);
    install::run_step(host, "binary", &script, remote::STEP_TIMEOUT).await?;
    let how = match method {
        ssh::UploadMethod::Sftp => "by SFTP",
        ssh::UploadMethod::Exec => "over a command's stdin (no SFTP on this host)",
    };
    Ok(format!("done: uploaded {how}, sha256 verified on the host"))
}

async fn with_journal(host: &Host<'_>, err: Error) -> Error {
    let journal = host
        .run("journalctl -u pmesh-agent.service -n 15 --no-pager -o cat || true", remote::STEP_TIMEOUT)
        .await
        .map(|output| output.stdout)
        .unwrap_or_default();
    match err {
        Error::Failed(message) if !journal.trim().is_empty() => {
            Error::Failed(format!("{message}\nthe unit's last log lines:\n{}", journal.trim_end()))
        }
        other => other,
    }
}

async fn wait_until_up(master: &mut impl Master, name: &str) -> Result<AgentSeen, Error> {
    let deadline = Instant::now() + UP_TIMEOUT;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    loop {
        interval.tick().await;
        let seen = master.agent(name).await?;
        match seen {
            Some(seen) if seen.up => return Ok(seen),
            seen if Instant::now() >= deadline => {
                let why = seen.map(|seen| seen.last_error).filter(|error| !error.is_empty()).unwrap_or_else(|| "no check succeeded".into());
                return Err(Error::Unreachable(format!(
                    "the agent runs, but the master has not reached agent {name} within {UP_TIMEOUT:?}: {why}"
                )));
            }
            _ => {}
        }
    }
}

/// The agent name the host would choose: its host name, lowercased, up to the first dot.
fn default_name(facts: &Facts) -> String {
    facts.get("hostname").unwrap_or_default().split('.').next().unwrap_or_default().to_ascii_lowercase()
}

/// Splits `HOST:PORT` (`[V6]:PORT` too); the host comes back without brackets.
pub fn split_host_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port = port.parse().ok().filter(|port| *port != 0)?;
    (!host.is_empty()).then_some((host, port))
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn say(out: &mut dyn Write, line: &str) {
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
