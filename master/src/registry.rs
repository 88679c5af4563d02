//! The agent registry's heartbeat, and the connections to agents.
//!
//! - [`monitor`]: the master dials every agent on an interval, asks for its facts, and records
//!   it up (with the facts and last-seen time) or down (with the reason). Checks run
//!   concurrently, bounded by a semaphore, each within a timeout shorter than the interval, so
//!   one dead agent never delays the others' status.
//! - [`Connections`]: one lazily dialled channel per agent, shared by the heartbeat and
//!   dispatch, re-dialled when the agent's address changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pmesh_proto::identity::{Identity, Role};
use pmesh_proto::v1::{AgentInfo, InfoRequest};
use pmesh_rt::net::{dial, Dialled};
use pmesh_rt::v1::agent_client::AgentClient;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::error::now_unix;
use crate::store::{AgentRecord, FactsRecord, Health, Store};

const MAX_CONCURRENT_CHECKS: usize = 64;

/// The master's channels to its agents, by name: the heartbeat and dispatch share one
/// connection per agent rather than each dialling its own.
pub struct Connections {
    tls: Arc<rustls::ClientConfig>,
    /// The connect timeout and the longest any call may take; callers may bound theirs lower.
    call_timeout: Duration,
    /// Agent name → the address dialled and its channel.
    channels: Mutex<HashMap<String, (String, Dialled)>>,
    /// When the master's certificate is valid (unix seconds), so that an agent refusing it
    /// as "expired" is explained by the clocks when it is not expired.
    presented: Option<(i64, i64)>,
}

impl Connections {
    /// Connections that dial with `tls`, each call bounded by `call_timeout`.
    pub fn new(tls: Arc<rustls::ClientConfig>, call_timeout: Duration) -> Connections {
        Connections { tls, call_timeout, channels: Mutex::new(HashMap::new()), presented: None }
    }

    /// Notes the validity of the certificate the master presents to agents: an agent whose
    /// clock is behind refuses it with the alert an expired one gets, and the agent's
    /// `last_error` should then say that a clock is wrong, not that the master's certificate
    /// expired.
    pub fn presenting(mut self, not_before: i64, not_after: i64) -> Connections {
        self.presented = Some((not_before, not_after));
        self
    }

    /// The channel to `agent`, dialled (lazily: nothing connects until a call) if there is
    /// none yet for its current address.
    ///
    /// # Errors
    /// When the agent's name or address cannot be dialled at all.
    pub fn get(&self, agent: &AgentRecord) -> anyhow::Result<Dialled> {
        let mut channels = self.channels();
        if let Some((address, dialled)) = channels.get(&agent.name) {
            if *address == agent.address {
                return Ok(dialled.clone());
            }
        }
        let mut dialled = dial(&agent.address, &Identity::new(Role::Agent, &agent.name)?, self.tls.clone(), self.call_timeout)?;
        if let Some((not_before, not_after)) = self.presented {
            dialled = dialled.presenting(not_before, not_after);
        }
        channels.insert(agent.name.clone(), (agent.address.clone(), dialled.clone()));
        Ok(dialled)
    }

    /// Drops the channels of agents for which `registered` is false (removed agents).
    pub fn retain(&self, registered: impl Fn(&str) -> bool) {
        self.channels().retain(|name, _| registered(name));
    }

    fn channels(&self) -> MutexGuard<'_, HashMap<String, (String, Dialled)>> {
        // Entries are inserted whole: a panic cannot leave a half-made one.
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs checks every `interval` until `shutdown`.
pub async fn monitor(store: Store, connections: Arc<Connections>, interval: Duration, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(MAX_CONCURRENT_CHECKS));
    let timeout = interval.clamp(Duration::from_millis(500), Duration::from_secs(5));
    let failing = Arc::new(AtomicBool::new(false));
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
        connections.retain(|name| agents.iter().any(|agent| agent.name == name));
        let mut checks = tokio::task::JoinSet::new();
        for agent in agents {
            let channel = match connections.get(&agent) {
                Ok(dialled) => dialled,
                Err(err) => {
                    record(&store, &failing, &agent.name, Err(format!("{err:#}")));
                    continue;
                }
            };
            let store = store.clone();
            let limit = limit.clone();
            let failing = failing.clone();
            checks.spawn(async move {
                let Ok(_permit) = limit.acquire().await else { return };
                let outcome = check(&channel, timeout).await;
                record(&store, &failing, &agent.name, outcome);
            });
        }
        while checks.join_next().await.is_some() {}
    }
}

/// Asks an agent for its facts, within `timeout` (the shared channel's own bound is longer).
async fn check(channel: &Dialled, timeout: Duration) -> Result<AgentInfo, String> {
    let mut request = tonic::Request::new(InfoRequest {});
    request.set_timeout(timeout);
    let mut client = AgentClient::new(channel.channel.clone());
    match tokio::time::timeout(timeout, client.info(request)).await {
        Ok(answer) => answer.map(|response| response.into_inner()).map_err(|status| describe(channel, &status)),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

fn describe(dialled: &Dialled, status: &tonic::Status) -> String {
    dialled.explain(status).map(|explained| explained.message).unwrap_or_else(|| status.message().to_owned())
}

/// Records a check's outcome. `failing` is set while recording fails (a full disk): the first
/// failure is logged, and the recovery, not one line per agent per interval in between.
fn record(store: &Store, failing: &AtomicBool, name: &str, outcome: Result<AgentInfo, String>) {
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
    match result {
        Err(err) if !failing.swap(true, Ordering::Relaxed) => {
            tracing::error!(agent = %name, error = %err, "recording a check failed; further failures are not logged until recording works again");
        }
        Err(_) => {}
        Ok(()) if failing.swap(false, Ordering::Relaxed) => tracing::info!("recording the agents' checks works again"),
        Ok(()) => {}
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
        problems: info.problems.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn agent(name: &str, address: &str) -> AgentRecord {
        AgentRecord {
            v: 1,
            name: name.into(),
            address: address.into(),
            labels: BTreeMap::new(),
            enrolled_at: 0,
            cert_serial: String::new(),
            cert_not_after: 0,
            health: Health::Unknown,
            last_seen: None,
            last_error: None,
            facts: None,
        }
    }

    fn dialled_address(connections: &Connections, name: &str) -> Option<String> {
        connections.channels().get(name).map(|(address, _)| address.clone())
    }

    /// One entry per agent, whoever asks; a changed address is dialled anew; removed agents go.
    #[tokio::test]
    async fn one_channel_per_agent_and_address() {
        let (ca, _key) = crate::identity::Ca::generate().expect("a CA");
        let tls = pmesh_proto::tls::client_config(ca.cert_der(), None).expect("a client config");
        let connections = Connections::new(Arc::new(tls), Duration::from_secs(1));
        connections.get(&agent("pc-1", "127.0.0.1:1")).expect("dialled");
        connections.get(&agent("pc-1", "127.0.0.1:1")).expect("cached");
        connections.get(&agent("pc-2", "127.0.0.1:2")).expect("dialled");
        assert_eq!(connections.channels().len(), 2);
        connections.get(&agent("pc-1", "127.0.0.1:3")).expect("dialled again");
        assert_eq!(dialled_address(&connections, "pc-1").as_deref(), Some("127.0.0.1:3"));
        connections.retain(|name| name == "pc-2");
        assert_eq!((dialled_address(&connections, "pc-1"), connections.channels().len()), (None, 1));
    }
}
