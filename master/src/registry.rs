//! The agent registry's heartbeat: the master dials every agent on an interval, asks for its
//! facts, and records it up (with the facts and last-seen time) or down (with the reason).
//!
//! Checks run concurrently, bounded by a semaphore, each within a timeout shorter than the
//! interval, so one dead agent never delays the others' status.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pmesh_proto::identity::{Identity, Role};
use pmesh_proto::v1::{agent_client::AgentClient, AgentInfo, InfoRequest};
use pmesh_rt::net::{dial, Dialled};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::error::now_unix;
use crate::store::{FactsRecord, Health, Store};

const MAX_CONCURRENT_CHECKS: usize = 64;

/// Runs checks every `interval` until `shutdown`.
pub async fn monitor(store: Store, tls: Arc<rustls::ClientConfig>, interval: Duration, shutdown: CancellationToken) {
    let mut channels: HashMap<String, (String, Dialled)> = HashMap::new();
    let limit = Arc::new(Semaphore::new(MAX_CONCURRENT_CHECKS));
    let timeout = interval.clamp(Duration::from_millis(500), Duration::from_secs(5));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let agents = match store.agents() {
            Ok(agents) => agents,
            Err(err) => {
                tracing::error!(error = %err, "reading the registry failed");
                continue;
            }
        };
        channels.retain(|name, _| agents.iter().any(|agent| &agent.name == name));
        let mut checks = tokio::task::JoinSet::new();
        for agent in agents {
            let channel = match channels.get(&agent.name) {
                Some((address, channel)) if *address == agent.address => channel.clone(),
                _ => {
                    let Ok(identity) = Identity::new(Role::Agent, &agent.name) else { continue };
                    match dial(&agent.address, &identity, tls.clone(), timeout) {
                        Ok(dialled) => {
                            channels.insert(agent.name.clone(), (agent.address.clone(), dialled.clone()));
                            dialled
                        }
                        Err(err) => {
                            record(&store, &agent.name, Err(format!("{err:#}")));
                            continue;
                        }
                    }
                }
            };
            let store = store.clone();
            let limit = limit.clone();
            checks.spawn(async move {
                let Ok(_permit) = limit.acquire().await else { return };
                let outcome = AgentClient::new(channel.channel.clone())
                    .info(InfoRequest {})
                    .await
                    .map(|response| response.into_inner())
                    .map_err(|status| describe(&channel, &status));
                record(&store, &agent.name, outcome);
            });
        }
        while checks.join_next().await.is_some() {}
    }
}

fn describe(dialled: &Dialled, status: &tonic::Status) -> String {
    dialled.explain(status).map(|explained| explained.message).unwrap_or_else(|| status.message().to_owned())
}

fn record(store: &Store, name: &str, outcome: Result<AgentInfo, String>) {
    let now = now_unix();
    let result = store.update_agent(name, |record| match &outcome {
        Ok(info) => {
            if record.health != Health::Up {
                tracing::info!(agent = %name, "agent is up");
            }
            record.health = Health::Up;
            record.last_seen = Some(now);
            record.last_error = None;
            record.facts = Some(facts(info));
        }
        Err(reason) => {
            if record.health != Health::Down {
                tracing::warn!(agent = %name, reason = %reason, "agent is down");
            }
            record.health = Health::Down;
            record.last_error = Some(reason.clone());
        }
    });
    if let Err(err) = result {
        tracing::error!(agent = %name, error = %err, "recording a check failed");
    }
}

fn facts(info: &AgentInfo) -> FactsRecord {
    let docker = info.docker.clone().unwrap_or_default();
    FactsRecord {
        hostname: info.hostname.clone(),
        os_id: info.os_id.clone(),
        os_version: info.os_version.clone(),
        kernel: info.kernel.clone(),
        arch: info.arch.clone(),
        cpus: info.cpus,
        memory_bytes: info.memory_bytes,
        disk_free_bytes: info.disk_free_bytes,
        data_dir: info.data_dir.clone(),
        docker_reachable: docker.reachable,
        docker_version: docker.version,
        docker_error: docker.error,
        agent_version: info.agent_version.clone(),
    }
}
