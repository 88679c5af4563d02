//! The `pmesh-agent` command line, as clap parses it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_DATA_DIR;

/// pmesh-agent: the pattern controller of a pmesh mesh.
#[derive(Debug, Parser)]
#[command(name = "pmesh-agent", version = pmesh_rt::docs::VERSION, about)]
pub struct Cli {
    /// The agent's data directory (identity, state).
    #[arg(long, global = true, env = "PMESH_AGENT_HOME", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enrol this host with a master, using a one-time token.
    Join(JoinArgs),
    /// Apply or destroy a pattern on this host directly, without a master.
    #[command(subcommand)]
    Pattern(PatternCommand),
    /// Run the agent daemon.
    Run(RunArgs),
    /// Serve many enrolled agent identities from one process (soak and scale tests).
    #[command(hide = true)]
    Simulate(SimulateArgs),
    /// Print a shell completion script: `pmesh-agent completions bash > /etc/bash_completion.d/pmesh-agent`.
    Completions { shell: pmesh_rt::docs::Shell },
    /// Write man pages (one per command) into DIR.
    #[command(hide = true)]
    Manpages { dir: PathBuf },
}

#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    /// The master's HOST:PORT.
    #[arg(long)]
    pub master: String,
    /// The one-time join token from `pmesh token create`.
    #[arg(long, env = "PMESH_JOIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The mesh CA fingerprint, sha256:HEX, from `pmesh token create`.
    #[arg(long)]
    pub ca_fingerprint: String,
    /// The agent's name [default: the host name].
    #[arg(long)]
    pub name: Option<String>,
    /// HOST:PORT where the master reaches this agent [default: HOSTNAME:7444].
    #[arg(long)]
    pub advertise: Option<String>,
    /// Replace an existing enrolment in the data directory.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum PatternCommand {
    /// Apply a pattern to an instance: converge its containers, printing progress.
    Apply(LocalArgs),
    /// Destroy an instance: teardown hooks, then everything carrying its labels.
    Destroy(LocalArgs),
}

#[derive(Debug, clap::Args)]
pub struct LocalArgs {
    /// The pattern directory.
    pub pattern: PathBuf,
    /// The instance name (a DNS label); containers and networks carry it as a label.
    #[arg(long)]
    pub instance: String,
    /// A parameter value, name=value; repeatable.
    #[arg(short = 'p', long = "param")]
    pub params: Vec<String>,
    /// A YAML file of parameter values; -p wins over it.
    #[arg(short = 'f', long = "values")]
    pub values: Option<PathBuf>,
    /// Configuration file [default: /etc/pmesh/agent.toml, else DATA_DIR/agent.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file [default: /etc/pmesh/agent.toml, else DATA_DIR/agent.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides `listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// How often to check for renewal (overrides `renew_check_interval`), such as 60s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub renew_check_interval: Option<std::time::Duration>,
    /// How to write log lines: text, or one JSON object a line.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: pmesh_rt::logging::LogFormat,
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// How many identities to serve, named PREFIX-00001 and on.
    #[arg(long)]
    pub count: usize,
    /// The master's HOST:PORT.
    #[arg(long)]
    pub master: String,
    /// Join tokens for the identities not enrolled yet, one a line: bare, or as
    /// `pmesh token create -o json` prints them.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The mesh CA fingerprint, sha256:HEX, for bare tokens.
    #[arg(long)]
    pub ca_fingerprint: Option<String>,
    /// The directory holding one data directory per identity.
    #[arg(long)]
    pub data: PathBuf,
    /// The identities' name prefix.
    #[arg(long, default_value = "sim")]
    pub prefix: String,
    /// Stop after this long, such as 10m [default: only on SIGTERM].
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
}
