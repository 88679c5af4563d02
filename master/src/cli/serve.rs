//! `pmesh serve`: the master daemon, with its configuration file and flags, signals and
//! logging.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::args::ServeArgs;
use super::client::{exit, CliError};
use crate::config::MasterConfig;

pub(super) async fn run(args: ServeArgs, data_dir: &Path) -> Result<(), CliError> {
    // A configuration that cannot be used is a usage error (2), before the daemon starts.
    let config = serve_config(data_dir, &args).map_err(|err| CliError::new(exit::USAGE, format!("{err:#}")))?;
    let path = config_path(data_dir, &args);
    pmesh_rt::cli::daemon("the master", args.log_format, serve(config, path, data_dir)).await
}

fn config_path(data_dir: &Path, args: &ServeArgs) -> PathBuf {
    args.config.clone().unwrap_or_else(|| MasterConfig::path(data_dir))
}

async fn serve(config: MasterConfig, path: PathBuf, data_dir: &Path) -> anyhow::Result<()> {
    // Which file was read, and what differs from the defaults (the file's values and flags).
    let file = if path.exists() { path.display().to_string() } else { format!("{} (absent: defaults)", path.display()) };
    let settings = pmesh_rt::config::non_defaults(&config);
    tracing::info!(config = %file, non_default = %settings.join(", "), "configuration");
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let shutdown = CancellationToken::new();
    pmesh_rt::process::cancel_on_signal(shutdown.clone());
    crate::daemon::serve(listener, data_dir, config, shutdown).await
}

/// Builds the master configuration for `serve`: file, then flags.
///
/// # Errors
/// When the configuration file is invalid, or `--config` names a file that is not there
/// (only the default file may be absent, meaning the defaults).
pub fn serve_config(data_dir: &Path, args: &ServeArgs) -> anyhow::Result<MasterConfig> {
    let path = config_path(data_dir, args);
    if args.config.is_some() && !path.exists() {
        anyhow::bail!("--config {}: no such file", path.display());
    }
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
    // A flag passes the same range checks as the file's value.
    config
        .validate()
        .map_err(|invalid| anyhow::anyhow!("invalid command line: --{}: {}", invalid.key.replace('_', "-"), invalid.reason))?;
    Ok(config)
}
