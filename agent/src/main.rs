//! `pmesh-agent`: parses the command line and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pmesh_agent::config::{AgentConfig, DEFAULT_DATA_DIR};
use pmesh_agent::exit::{self, CliError};
use pmesh_agent::join::JoinOptions;
use tokio_util::sync::CancellationToken;

/// pmesh-agent: the pattern controller of a pmesh mesh.
#[derive(Debug, Parser)]
#[command(name = "pmesh-agent", version, about)]
struct Cli {
    /// The agent's data directory (identity, state).
    #[arg(long, global = true, env = "PMESH_AGENT_HOME", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrol this host with a master, using a one-time token.
    Join {
        /// The master's HOST:PORT.
        #[arg(long)]
        master: String,
        /// The one-time join token from `pmesh token create`.
        #[arg(long, env = "PMESH_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// The mesh CA fingerprint, sha256:HEX, from `pmesh token create`.
        #[arg(long)]
        ca_fingerprint: String,
        /// The agent's name [default: the host name].
        #[arg(long)]
        name: Option<String>,
        /// HOST:PORT where the master reaches this agent [default: HOSTNAME:7444].
        #[arg(long)]
        advertise: Option<String>,
        /// Replace an existing enrolment in the data directory.
        #[arg(long)]
        force: bool,
    },
    /// Apply or destroy a pattern on this host directly, without a master.
    #[command(subcommand)]
    Pattern(PatternCommand),
    /// Run the agent daemon.
    Run {
        /// Configuration file [default: /etc/pmesh/agent.toml, else DATA_DIR/agent.toml].
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides `listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// How often to check for renewal (overrides `renew_check_interval`), such as 60s.
        #[arg(long, value_parser = humantime::parse_duration)]
        renew_check_interval: Option<std::time::Duration>,
    },
}

#[derive(Debug, Subcommand)]
enum PatternCommand {
    /// Apply a pattern to an instance: converge its containers, printing progress.
    Apply(LocalArgs),
    /// Destroy an instance: teardown hooks, then everything carrying its labels.
    Destroy(LocalArgs),
}

#[derive(Debug, clap::Args)]
struct LocalArgs {
    /// The pattern directory.
    pattern: PathBuf,
    /// The instance name (a DNS label); containers and networks carry it as a label.
    #[arg(long)]
    instance: String,
    /// A parameter value, name=value; repeatable.
    #[arg(short = 'p', long = "param")]
    params: Vec<String>,
    /// A YAML file of parameter values; -p wins over it.
    #[arg(short = 'f', long = "values")]
    values: Option<PathBuf>,
    /// Configuration file [default: /etc/pmesh/agent.toml, else DATA_DIR/agent.toml].
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    pmesh_proto::tls::install_default_provider();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("pmesh-agent: cannot start the runtime: {err}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Join { master, token, ca_fingerprint, name, advertise, force } => {
                let options = JoinOptions { master, token, ca_fingerprint, name, advertise, force };
                let enrolment = pmesh_agent::join::join(options, &cli.data_dir).await?;
                println!(
                    "enrolled as agent {} with master {}; start it with: pmesh-agent run --data-dir {}",
                    enrolment.name,
                    enrolment.master,
                    cli.data_dir.display()
                );
                Ok(())
            }
            Command::Pattern(command) => {
                let (args, destroy) = match command {
                    PatternCommand::Apply(args) => (args, false),
                    PatternCommand::Destroy(args) => (args, true),
                };
                let path = args.config.clone().unwrap_or_else(|| AgentConfig::default_path(&cli.data_dir));
                let config = AgentConfig::load(&path).map_err(|err| CliError::new(exit::USAGE, format!("{err:#}")))?;
                let options = pmesh_agent::local::LocalOptions {
                    pattern: args.pattern,
                    instance: args.instance,
                    assignments: args.params,
                    values_file: args.values,
                    data_dir: cli.data_dir.clone(),
                };
                if destroy {
                    let removed = pmesh_agent::local::destroy(options, config).await?;
                    println!("removed {} object(s): {}", removed.len(), removed.join(", "));
                    Ok(())
                } else {
                    match pmesh_agent::local::apply(options, config).await? {
                        0 => Ok(()),
                        code => Err(CliError::new(code, "the run did not succeed")),
                    }
                }
            }
            Command::Run { config, listen, renew_check_interval } => {
                pmesh_rt::logging::init();
                let path = config.unwrap_or_else(|| AgentConfig::default_path(&cli.data_dir));
                let mut config = AgentConfig::load(&path).map_err(|err| CliError::new(exit::USAGE, format!("{err:#}")))?;
                config.listen = listen.or(config.listen);
                config.renew_check_interval = renew_check_interval.unwrap_or(config.renew_check_interval);
                run(&cli.data_dir, config).await.map_err(|err| {
                    tracing::error!(error = format!("{err:#}"), "agent failed");
                    CliError::from(err)
                })
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pmesh-agent: {}", err.message);
            ExitCode::from(err.code)
        }
    }
}

async fn run(data_dir: &std::path::Path, config: AgentConfig) -> anyhow::Result<()> {
    use anyhow::Context;
    let address = pmesh_agent::daemon::listen_address(data_dir, &config)?;
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?;
    let shutdown = CancellationToken::new();
    pmesh_rt::process::cancel_on_signal(shutdown.clone());
    pmesh_agent::daemon::run(listener, data_dir, config, shutdown).await
}
