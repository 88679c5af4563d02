//! The `pmesh` command line: the master daemon (`serve`), mesh creation (`ca init`) and the
//! operator's verbs. Every verb returns a [`CliError`] with a documented exit code on failure.

pub mod artifact;
pub mod bootstrap;
pub mod client;
pub mod live;
pub mod output;
pub mod pattern;
pub mod runs;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pmesh_proto::v1;

use crate::config::MasterConfig;
use client::{exit, CliError};
use output::{AgentView, Format};

/// pmesh: the pattern-controller mesh for VMware lab environments.
#[derive(Debug, Parser)]
#[command(name = "pmesh", version, about)]
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
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Issue and revoke operator credentials.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Check, inspect, register and list patterns.
    #[command(subcommand)]
    Pattern(PatternCommand),
    /// Run a registered pattern on agents and follow it live.
    Run(RunArgs),
    /// List, inspect, follow and cancel runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Turn a host reachable over SSH into an enrolled pattern controller.
    Bootstrap(bootstrap::BootstrapArgs),
    /// Add, list and remove binaries in the master's artifact depot.
    #[command(subcommand)]
    Artifact(ArtifactCommand),
}

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
    /// Print the pattern's parameters as a table, and its steps.
    Show {
        /// The pattern directory, or its pattern.yaml.
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
    /// List runs.
    Ls,
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

/// Labels an agent must carry, from `--selector k=v[,k=v]`.
#[derive(Debug, Clone)]
pub struct Selector(pub Vec<(String, String)>);

fn parse_selector(text: &str) -> Result<Selector, String> {
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

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not k=v")),
    }
}

/// Runs a non-daemon verb.
///
/// # Errors
/// A [`CliError`] carrying the sentence and exit code.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let data_dir = cli.data_dir.as_path();
    let credentials = cli.credentials.as_deref();
    match cli.command {
        Command::Serve(_) => unreachable!("serve is dispatched by main"),
        Command::Ca(CaCommand::Init { listen, advertise }) => ca_init(data_dir, listen, advertise, cli.output),
        Command::Ca(CaCommand::Fingerprint) => {
            let ca = crate::identity::Ca::load(&crate::identity::PkiPaths::new(data_dir))?;
            println!("{}", ca.fingerprint());
            Ok(())
        }
        Command::Token(TokenCommand::Create { ttl, name, labels, force }) => {
            let request = v1::CreateTokenRequest {
                ttl_seconds: ttl.map(|ttl| ttl.as_secs().max(1)).unwrap_or(0),
                name: name.unwrap_or_default(),
                labels: labels.into_iter().collect::<HashMap<_, _>>(),
                force,
            };
            let mut connection = client::connect(credentials, data_dir)?;
            let token = connection.client.create_token(request).await.map_err(|status| connection.failed(status))?.into_inner();
            print_token(&token, cli.output);
            Ok(())
        }
        Command::Agents(command) => agents(command, credentials, data_dir, cli.output).await,
        Command::Bootstrap(args) => bootstrap::run(args, credentials, data_dir).await,
        Command::Artifact(command) => artifact::run(command, credentials, data_dir, cli.output).await,
        Command::Pattern(PatternCommand::Lint { path }) => pattern::lint(&path, cli.output),
        Command::Pattern(PatternCommand::Show { path }) => pattern::show(&path, cli.output),
        Command::Pattern(PatternCommand::Push { path }) => runs::push(&client::connect(credentials, data_dir)?, &path, cli.output).await,
        Command::Pattern(PatternCommand::Ls) => runs::list_patterns(&client::connect(credentials, data_dir)?, cli.output).await,
        Command::Run(args) => {
            let connection = client::connect(credentials, data_dir)?;
            let options = runs::RunOptions {
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
            };
            match runs::run(&connection, options, cli.output).await? {
                0 => Ok(()),
                code => Err(CliError::new(code, "the run did not succeed on every agent")),
            }
        }
        Command::Runs(command) => {
            let connection = client::connect(credentials, data_dir)?;
            match command {
                RunsCommand::Ls => runs::list(&connection, cli.output).await,
                RunsCommand::Show { run_id } => runs::show(&connection, &run_id, cli.output).await,
                RunsCommand::Logs { run_id, step, follow } => runs::logs(&connection, &run_id, step.as_deref(), follow, cli.output).await,
                RunsCommand::Cancel { run_id } => runs::cancel(&connection, &run_id, cli.output).await,
                RunsCommand::Watch { run_id } => match runs::watch(&connection, &run_id, cli.output).await? {
                    0 => Ok(()),
                    code => Err(CliError::new(code, "the run did not succeed on every agent")),
                },
            }
        }
        Command::Admin(AdminCommand::Issue { name, out }) => {
            if out.exists() {
                return Err(CliError::new(exit::USAGE, format!("{} exists; refusing to overwrite a credential", out.display())));
            }
            let (key, csr_pem) = crate::identity::key_and_csr()?;
            let mut connection = client::connect(credentials, data_dir)?;
            let issued = connection
                .client
                .issue_admin(v1::IssueAdminRequest { name: name.clone(), csr_pem })
                .await
                .map_err(|status| connection.failed(status))?
                .into_inner();
            crate::credentials::Credentials {
                master: issued.master_address,
                name: name.clone(),
                ca: issued.ca_pem,
                cert: issued.cert_pem,
                key: key.serialize_pem(),
            }
            .save(&out)?;
            println!("wrote credential for admin {name} to {} (serial {})", out.display(), issued.serial);
            Ok(())
        }
        Command::Admin(AdminCommand::Revoke { name }) => {
            let mut connection = client::connect(credentials, data_dir)?;
            let revoked = connection
                .client
                .revoke_admin(v1::RevokeAdminRequest { name: name.clone() })
                .await
                .map_err(|status| connection.failed(status))?
                .into_inner();
            println!("revoked {} credential(s) of admin {name}: {}", revoked.revoked_serials.len(), revoked.revoked_serials.join(", "));
            Ok(())
        }
    }
}

fn ca_init(data_dir: &Path, listen: SocketAddr, advertise: Option<String>, format: Format) -> Result<(), CliError> {
    let config = MasterConfig { listen, advertise, ..MasterConfig::default() };
    let summary = crate::daemon::ca_init(data_dir, &config).map_err(|err| {
        let code = if err.to_string().contains("already exists") { exit::USAGE } else { exit::FAILED };
        CliError::new(code, format!("{err:#}"))
    })?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "ca_fingerprint": summary.ca_fingerprint,
                "credentials": summary.credentials,
                "config": summary.config,
            })
        ),
        Format::Text => {
            println!("created the mesh CA in {}", data_dir.display());
            println!("CA fingerprint: {}", summary.ca_fingerprint);
            println!("admin credential: {}", summary.credentials.display());
            println!("start the master with: pmesh serve --data-dir {}", data_dir.display());
        }
    }
    Ok(())
}

fn print_token(token: &v1::CreateTokenResponse, format: Format) {
    let expires = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(token.expires_at_unix.max(0) as u64));
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "token": token.token,
                "expires_at": expires.to_string(),
                "expires_at_unix": token.expires_at_unix,
                "ca_fingerprint": token.ca_fingerprint,
                "master": token.master_address,
            })
        ),
        Format::Text => {
            println!("token:          {}", token.token);
            println!("expires:        {expires}");
            println!("ca fingerprint: {}", token.ca_fingerprint);
            println!();
            println!("on the agent host:");
            println!(
                "  pmesh-agent join --master {} --token {} --ca-fingerprint {}",
                token.master_address, token.token, token.ca_fingerprint
            );
        }
    }
}

async fn agents(command: AgentsCommand, credentials: Option<&Path>, data_dir: &Path, format: Format) -> Result<(), CliError> {
    let connection = client::connect(credentials, data_dir)?;
    let mut client = connection.client.clone();
    let failed = |status| connection.failed(status);
    match command {
        AgentsCommand::Ls => {
            let listed = client.list_agents(v1::ListAgentsRequest {}).await.map_err(failed)?.into_inner();
            let mut views: Vec<AgentView> = listed.agents.into_iter().map(AgentView::from).collect();
            views.sort_by(|left, right| left.name.cmp(&right.name));
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&views).map_err(anyhow::Error::from)?),
                Format::Text if views.is_empty() => println!("no agents enrolled; create a join token with `pmesh token create`"),
                Format::Text => println!("{}", output::agents_table(&views)),
            }
        }
        AgentsCommand::Show { name } => {
            let agent = client.get_agent(v1::GetAgentRequest { name }).await.map_err(failed)?.into_inner();
            let view = AgentView::from(agent);
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&view).map_err(anyhow::Error::from)?),
                Format::Text => println!("{}", output::agent_detail(&view)),
            }
        }
        AgentsCommand::Rm { name } => {
            let removed = client.remove_agent(v1::RemoveAgentRequest { name: name.clone() }).await.map_err(failed)?.into_inner();
            match format {
                Format::Json => println!("{}", serde_json::json!({ "removed": name, "revoked_serials": removed.revoked_serials })),
                Format::Text => println!("removed agent {name}; revoked {} certificate(s)", removed.revoked_serials.len()),
            }
        }
    }
    Ok(())
}

/// Builds the master configuration for `serve`: file, then flags.
///
/// # Errors
/// When the configuration file is invalid.
pub fn serve_config(data_dir: &Path, args: &ServeArgs) -> anyhow::Result<MasterConfig> {
    let path = args.config.clone().unwrap_or_else(|| MasterConfig::path(data_dir));
    let mut config = MasterConfig::load(&path)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(interval) = args.check_interval {
        config.check_interval = interval;
    }
    if let Some(lifetime) = args.agent_cert_lifetime {
        config.agent_cert_lifetime = lifetime;
    }
    Ok(config)
}
