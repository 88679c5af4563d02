//! `pmesh-agent simulate` (hidden): many enrolled identities served from one process.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::args::SimulateArgs;
use crate::config::AgentConfig;
use crate::exit::CliError;
use crate::sim::SimOptions;

pub(super) async fn run(args: SimulateArgs) -> Result<(), CliError> {
    let SimulateArgs { count, master, token_file, ca_fingerprint, data, prefix, duration } = args;
    // The master keeps an event stream open to every agent, which a graceful stop waits on:
    // a short grace, so that stopping hundreds of identities takes seconds.
    let config = AgentConfig { shutdown_grace: Duration::from_secs(2), ..AgentConfig::default() };
    let options = SimOptions { count, master, token_file, ca_fingerprint, data_dir: data, prefix, duration, config };
    pmesh_rt::logging::init(pmesh_rt::logging::LogFormat::Text);
    let shutdown = CancellationToken::new();
    pmesh_rt::process::cancel_on_signal(shutdown.clone());
    crate::sim::simulate(options, shutdown).await
}
