//! `pmesh-agent run`: the daemon, with its configuration file and flags, signals and logging.

use std::path::Path;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::args::RunArgs;
use crate::config::AgentConfig;
use crate::exit::{self, CliError};

pub(super) async fn run(args: RunArgs, data_dir: &Path) -> Result<(), CliError> {
    let explicit = args.config.is_some();
    let path = args.config.unwrap_or_else(|| AgentConfig::default_path(data_dir));
    if explicit && !path.exists() {
        return Err(CliError::new(exit::USAGE, format!("--config {}: no such file", path.display())));
    }
    let mut config = AgentConfig::load(&path).map_err(|err| CliError::new(exit::USAGE, format!("{err:#}")))?;
    config.listen = args.listen.or(config.listen);
    config.renew_check_interval = args.renew_check_interval.unwrap_or(config.renew_check_interval);
    // A flag passes the same range checks as the file's value.
    config.validate().map_err(|invalid| {
        CliError::new(exit::USAGE, format!("invalid command line: --{}: {}", invalid.key.replace('_', "-"), invalid.reason))
    })?;
    pmesh_rt::cli::daemon("the agent", args.log_format, serve(data_dir, config, path)).await
}

async fn serve(data_dir: &Path, config: AgentConfig, path: std::path::PathBuf) -> anyhow::Result<()> {
    // Which file was read, and what differs from the defaults (the file's values and flags).
    let file = if path.exists() { path.display().to_string() } else { format!("{} (absent: defaults)", path.display()) };
    let settings = pmesh_rt::config::non_defaults(&config);
    tracing::info!(config = %file, non_default = %settings.join(", "), "configuration");
    let address = crate::daemon::listen_address(data_dir, &config)?;
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?;
    let shutdown = CancellationToken::new();
    pmesh_rt::process::cancel_on_signal(shutdown.clone());
    crate::daemon::run(listener, data_dir, config, shutdown).await
}
