//! `pmesh serve`: the master daemon, with its configuration file and flags, signals and
//! logging.

use std::path::Path;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::args::ServeArgs;
use super::client::CliError;
use crate::config::MasterConfig;

pub(super) async fn run(args: ServeArgs, data_dir: &Path) -> Result<(), CliError> {
    pmesh_rt::cli::daemon("the master", serve(args, data_dir)).await
}

async fn serve(args: ServeArgs, data_dir: &Path) -> anyhow::Result<()> {
    let config = serve_config(data_dir, &args)?;
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let shutdown = CancellationToken::new();
    pmesh_rt::process::cancel_on_signal(shutdown.clone());
    crate::daemon::serve(listener, data_dir, config, shutdown).await
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
    // A flag passes the same range checks as the file's value.
    config
        .validate()
        .map_err(|invalid| anyhow::anyhow!("invalid command line: --{}: {}", invalid.key.replace('_', "-"), invalid.reason))?;
    Ok(config)
}
