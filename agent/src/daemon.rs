//! `pmesh-agent run`: the agent's mTLS server and its renewal loop.
//!
//! [`run`] takes a bound listener and a shutdown token, so tests bind port 0.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use pmesh_proto::tls::{ClientAuth, ReloadableCert};
use pmesh_rt::v1::agent_server::AgentServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;

use crate::service::{AgentPolicy, AgentService};
use crate::state::{self, Paths};

/// The largest message the agent accepts: a pattern bundle (artifacts travel separately).
const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;

/// The address to bind: the configured one, else all interfaces on the advertised port.
///
/// # Errors
/// When the enrolment is missing or its advertise address has no port.
pub fn listen_address(data_dir: &Path, config: &AgentConfig) -> anyhow::Result<std::net::SocketAddr> {
    if let Some(listen) = config.listen {
        return Ok(listen);
    }
    let enrolment = state::load_enrolment(&Paths::new(data_dir))?;
    let port: u16 = enrolment
        .advertise
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .with_context(|| format!("advertise address {:?} has no port", enrolment.advertise))?;
    Ok(std::net::SocketAddr::from(([0, 0, 0, 0], port)))
}

/// Serves the agent on `listener` until `shutdown`.
///
/// # Errors
/// When the agent is not enrolled, its identity files are damaged, or the server fails.
pub async fn run(listener: TcpListener, data_dir: &Path, config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let paths = Paths::new(data_dir);
    let enrolment = state::load_enrolment(&paths)?;
    let credential = state::load_credential(&paths)?;
    let server_certs = Arc::new(ReloadableCert::new(credential.chain(), credential.key.clone_key())?);
    let server_tls = pmesh_proto::tls::server_config(&credential.ca, server_certs.clone(), ClientAuth::Required)?;

    let renewal = tokio::spawn(crate::renew::keep_renewed(paths.clone(), server_certs, config.renew_check_interval, shutdown.clone()));
    let journal = Arc::new(crate::journal::Journal::open(&data_dir.join("journal"))?);
    let artifacts = Arc::new(crate::artifacts::AgentArtifacts::open(data_dir, &config.artifacts, Some(paths.clone()))?);
    let runs = Arc::new(crate::runs::Runs::new(journal, paths.clone(), config.clone(), artifacts));
    let resumed = runs.resume_interrupted()?;
    if resumed > 0 {
        tracing::info!(runs = resumed, "resumed runs interrupted by the last stop");
    }
    let service =
        AgentServer::new(AgentService { paths, docker_timeout: config.docker_timeout, runs }).max_decoding_message_size(MAX_BUNDLE_BYTES);
    tracing::info!(agent = %enrolment.name, listen = %listener.local_addr()?, master = %enrolment.master, "agent serving");
    let result = pmesh_rt::serve(listener, Arc::new(server_tls), Arc::new(AgentPolicy), service, shutdown, config.shutdown_grace).await;
    renewal.abort();
    tracing::info!("agent stopped");
    result
}
