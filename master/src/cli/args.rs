//! The `pmesh` command line, as clap parses it: the global flags and every verb's arguments.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::output::Format;

/// pmesh: the pattern-controller mesh for VMware lab environments.
#[derive(Debug, Parser)]
#[command(name = "pmesh", version = pmesh_rt::docs::VERSION, about)]
pub struct Cli {
    /// The master's data directory (CA, database, local admin credential).
    #[arg(long, global = true, env = "PMESH_HOME", default_value = "/var/lib/pmesh")]
    pub data_dir: PathBuf,
    /// An admin credential file; overrides the one in the data directory.
    #[arg(long, global = true, env = "PMESH_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "text")]
    pub output: Format,
    /// Print tables without their header row.
    #[arg(long, global = true)]
    pub no_headers: bool,
    /// Log more (-v info, -vv debug, -vvv trace); RUST_LOG, when set, wins.
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log less (-q errors only, -qq nothing).
    #[arg(short = 'q', long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the master daemon.
    Serve(ServeArgs),
    /// Manage the mesh certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Create join tokens for agents.
    #[command(subcommand)]
    Token(TokenCommand),
    /// List, inspect and remove agents.
    #[command(subcommand, after_help = AGENTS_EXAMPLES)]
    Agents(AgentsCommand),
    /// Issue and revoke operator credentials.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Check, inspect, register and list patterns.
    #[command(subcommand, after_help = PATTERN_EXAMPLES)]
    Pattern(PatternCommand),
    /// Run a registered pattern on agents and follow it live.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// List, inspect, follow and cancel runs.
    #[command(subcommand, after_help = RUNS_EXAMPLES)]
    Runs(RunsCommand),
    /// What runs built on each agent: the last run and the pattern's outputs.
    #[command(subcommand)]
    Instances(InstancesCommand),
    /// Labs: one file composing patterns across agents (lint, plan, up, status, ls, down).
    #[command(subcommand)]
    Lab(super::lab::LabCommand),
    /// Destroy an instance on its agents, from what they recorded (no pattern directory needed).
    Destroy(super::destroy::DestroyArgs),
    /// Turn a host reachable over SSH into an enrolled pattern controller.
    #[command(after_help = BOOTSTRAP_EXAMPLES)]
    Bootstrap(BootstrapArgs),
    /// Add, list and remove binaries in the master's artifact depot.
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// This CLI's version and the master's.
    Version,
    /// Print a shell completion script: `pmesh completions bash > /etc/bash_completion.d/pmesh`.
    Completions { shell: pmesh_rt::docs::Shell },
    /// Write man pages (one per command) into DIR.
    #[command(hide = true)]
    Manpages { dir: PathBuf },
}

const RUN_EXAMPLES: &str = "Examples:
  pmesh run dns --on pc-1 -p zone=lab.local       run on one agent and follow it live
  pmesh run dns --selector site=lab -f values.yaml  on every agent labelled site=lab
  pmesh run dns --on pc-1 --plan                  what it would do; nothing changes
  pmesh run dns --all --detach                    start, then `pmesh runs watch ID`";

const RUNS_EXAMPLES: &str = "Examples:
  pmesh runs ls
  pmesh runs show r1795329926-bd09 -o json
  pmesh runs logs r1795329926-bd09 --step named   one step's output and why it failed
  pmesh runs watch r1795329926-bd09               follow from the start; exits with the run's code";

const AGENTS_EXAMPLES: &str = "Examples:
  pmesh agents ls
  pmesh agents show pc-1 -o json
  pmesh agents rm pc-1                            also revokes its certificates";

const PATTERN_EXAMPLES: &str = "Examples:
  pmesh pattern lint patterns/shared/dns          every problem as FILE:LINE:COLUMN
  pmesh pattern push patterns/shared/dns          register a version (the master signs it)
  pmesh pattern ls";

const BOOTSTRAP_EXAMPLES: &str = "Examples:
  pmesh bootstrap root@10.0.0.5 --accept-new-host-key --label site=lab
  pmesh bootstrap admin@pc-2 --identity ~/.ssh/id_ed25519 --dry-run
  pmesh bootstrap root@pc-1 --upgrade             replace the agent binary, keep the patterns running";

#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Upload a file, or have the master import a URL (resumable); verified by sha256.
    Add {
        /// A file, or an http:// or https:// URL the master fetches.
        source: String,
        /// The sha256 the content must have (64 hex digits); a mismatch keeps nothing.
        #[arg(long)]
        sha256: Option<String>,
        /// The name to add it under [default: the file name, or the URL's last segment,
        /// made a valid name].
        #[arg(long)]
        name: Option<String>,
    },
    /// List the artifacts, with the registered patterns that need each.
    Ls,
    /// Remove an artifact by name or sha256; refused while a registered pattern needs it.
    Rm {
        /// A name, a sha256, or a unique start of one (8 or more hex digits).
        artifact: String,
        /// Remove it even though registered patterns need it.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PatternCommand {
    /// List every problem as FILE:LINE:COLUMN: message; exit 2 if there is any.
    Lint {
        /// The pattern directory, or its pattern.yaml.
        path: PathBuf,
    },
    /// Print the pattern's parameters, steps, artifacts, images and outputs as tables.
    Show {
        /// The pattern directory, its pattern.yaml, or a registered NAME[@VERSION] (the newest
        /// version when none is given).
        #[arg(value_name = "PATH|NAME[@VERSION]")]
        path: PathBuf,
    },
    /// Lint, pack and register a pattern version with the master (which signs it).
    Push {
        /// The pattern directory.
        path: PathBuf,
    },
    /// List the registered patterns.
    Ls,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pattern, NAME or NAME@VERSION.
    pub pattern: String,
    /// Run on this agent; repeatable.
    #[arg(long = "on")]
    pub on: Vec<String>,
    /// Run on the agents whose labels match, as k=v[,k=v].
    #[arg(long, value_parser = parse_selector)]
    pub selector: Option<Selector>,
    /// Run on every agent.
    #[arg(long)]
    pub all: bool,
    /// A parameter value, name=value; repeatable.
    #[arg(short = 'p', long = "param")]
    pub params: Vec<String>,
    /// A YAML file of parameter values; -p wins over it.
    #[arg(short = 'f', long = "values")]
    pub values: Option<PathBuf>,
    /// The instance name [default: the pattern's name].
    #[arg(long)]
    pub instance: Option<String>,
    /// Start and return; follow later with `pmesh runs watch`.
    #[arg(long)]
    pub detach: bool,
    /// Stop the run and fail it past this time on each agent, such as 30m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// A dry run: show, per agent, what would be pulled, created, replaced or left alone,
    /// and change nothing.
    #[arg(long, conflicts_with = "detach")]
    pub plan: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    Ls(RunsFilter),
    /// Show a run and each agent's state.
    Show { run_id: String },
    /// Print a run's log lines.
    Logs {
        run_id: String,
        /// Only this step's lines.
        #[arg(long)]
        step: Option<String>,
        /// Keep printing until the run ends.
        #[arg(long)]
        follow: bool,
    },
    /// Follow a run live from its start; exits with the run's code.
    Watch { run_id: String },
    /// Cancel a run on every agent still running it.
    Cancel { run_id: String },
}

/// Which runs `pmesh runs ls` lists.
#[derive(Debug, Clone, Default, Args)]
pub struct RunsFilter {
    /// Only runs in this state (running, succeeded, failed, cancelled, unreachable).
    #[arg(long)]
    pub state: Option<String>,
    /// Only runs of this pattern (NAME or NAME@VERSION).
    #[arg(long)]
    pub pattern: Option<String>,
    /// Only runs on this agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// Only runs started within this long, such as 1h or 2d.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
}

/// Labels an agent must carry, from `--selector k=v[,k=v]`.
#[derive(Debug, Clone)]
pub struct Selector(pub Vec<(String, String)>);

pub(crate) fn parse_selector(text: &str) -> Result<Selector, String> {
    text.split(',').map(parse_label).collect::<Result<_, _>>().map(Selector)
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file [default: DATA_DIR/master.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides `listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// How often to check each agent (overrides `check_interval`), such as 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub check_interval: Option<Duration>,
    /// Agent certificate lifetime (overrides `agent_cert_lifetime`), such as 30d.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub agent_cert_lifetime: Option<Duration>,
    /// How to write log lines: text, or one JSON object a line.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: pmesh_rt::logging::LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the mesh CA, the master's identity and a local admin credential.
    Init {
        /// Address the master will listen on.
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// Address agents and operators use to reach the master [default: --listen].
        #[arg(long)]
        advertise: Option<String>,
    },
    /// Print the CA fingerprint agents pin at join.
    Fingerprint,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a one-time join token.
    Create {
        /// How long the token stays valid, such as 15m or 2h.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        /// The agent name the token is for (the agent may choose when absent).
        #[arg(long)]
        name: Option<String>,
        /// A label the agent gets, as k=v; repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Allow re-enrolling a name that is already registered.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum InstancesCommand {
    /// List instances with their pattern, agent and last run.
    Ls {
        /// Only this agent's instances.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Show an instance: pattern, agent, last run and outputs.
    Show {
        name: String,
        /// Only the instance on this agent (an instance name may be on several).
        #[arg(long)]
        agent: Option<String>,
        /// Show secret outputs' values, asked of the agent that holds them.
        #[arg(long)]
        reveal: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents with their status.
    Ls,
    /// Show one agent.
    Show { name: String },
    /// Remove an agent and revoke its certificate.
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Write a credential (certificate, key, CA, master address) for an operator.
    Issue {
        name: String,
        /// Where to write it (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke every credential of an operator.
    Revoke { name: String },
}

pub(crate) fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not k=v")),
    }
}

impl From<RunsFilter> for super::runs::RunsQuery {
    fn from(filter: RunsFilter) -> Self {
        super::runs::RunsQuery { state: filter.state, pattern: filter.pattern, agent: filter.agent, since: filter.since }
    }
}

impl From<RunArgs> for super::runs::RunOptions {
    fn from(args: RunArgs) -> Self {
        super::runs::RunOptions {
            pattern: args.pattern,
            on: args.on,
            selector: args.selector.map(|selector| selector.0).unwrap_or_default(),
            all: args.all,
            params: args.params,
            values_file: args.values,
            instance: args.instance,
            detach: args.detach,
            timeout: args.timeout,
            plan: args.plan,
        }
    }
}

/// Flags of `pmesh bootstrap`.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// The host, as [USER@]HOST; the user is root unless given (a non-root user needs
    /// password-less sudo).
    pub target: String,
    /// The SSH port.
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    /// A private key file (ed25519 or ECDSA, without a passphrase) [default: ~/.ssh/id_ed25519,
    /// else ~/.ssh/id_ecdsa].
    #[arg(long, conflicts_with = "password_stdin")]
    pub identity: Option<PathBuf>,
    /// Read the login password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Trust only a host key with this fingerprint, SHA256:BASE64 (as `ssh-keygen -lf` prints).
    #[arg(long, conflicts_with = "accept_new_host_key")]
    pub host_key: Option<String>,
    /// Trust the host key of a host not yet in DATA_DIR/known_hosts, and record it.
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// The agent's name [default: the host's short host name].
    #[arg(long)]
    pub name: Option<String>,
    /// A label the agent gets, as k=v; repeatable.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// HOST:PORT where the master reaches the agent [default: HOST:7444].
    #[arg(long)]
    pub advertise: Option<String>,
    /// Check and print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace an installed agent binary that differs, and restart the unit.
    #[arg(long)]
    pub upgrade: bool,
    /// The pmesh-agent binary to install [default: pmesh-agent next to this pmesh].
    #[arg(long)]
    pub agent_binary: Option<PathBuf>,
}
