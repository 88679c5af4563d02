//! Wait steps: a probe (TCP, HTTP, DNS, or a command in a service) retried every interval
//! until it succeeds or the deadline passes.

use std::time::Duration;

use super::super::{Attempt, Failure, Runner};
use crate::executor::plan::{Plan, Probe};
use crate::executor::probe;

impl Runner {
    /// Probes until `probe_spec` succeeds, or fails once the next try would pass `deadline`.
    pub(super) async fn wait(&self, plan: &Plan, probe_spec: &Probe, deadline: Duration, interval: Duration) -> Result<Attempt, Failure> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            match self.probe_once(plan, probe_spec).await {
                Ok(()) => return Ok(Attempt::Succeeded(None)),
                Err(err) if tokio::time::Instant::now() + interval >= until => {
                    return Ok(Attempt::Failed(Failure::new(format!(
                        "the probe did not succeed within {}: {err:#}",
                        humantime::format_duration(deadline)
                    ))))
                }
                Err(_) => tokio::time::sleep(interval).await,
            }
        }
    }

    async fn probe_once(&self, plan: &Plan, probe_spec: &Probe) -> anyhow::Result<()> {
        match probe_spec {
            Probe::Tcp { host, port } => probe::tcp(host, *port).await,
            Probe::Http { url, status, trust: None, auth: None, json: None } if url.starts_with("http://") => {
                probe::http(url, *status).await
            }
            Probe::Http { url, status, trust, auth, json } => {
                let check = probe::https::HttpCheck {
                    url,
                    status: *status,
                    trust: trust.as_ref(),
                    auth: auth.as_ref().map(|(username, password)| (username.as_str(), password.expose())),
                    json: json.as_ref().map(|(path, equals)| (path.as_str(), equals.as_str())),
                };
                probe::https::http(check, probe::ATTEMPT_TIMEOUT).await
            }
            Probe::Dns { server, port, name, record_type } => probe::dns(server, *port, name, record_type).await,
            Probe::Exec { service, command } => match self.service_container(plan, service).await {
                Ok(id) => match self.driver.exec(&id, command, &[]).await {
                    Ok((0, _)) => Ok(()),
                    Ok((code, _)) => Err(anyhow::anyhow!("the probe command exited with code {code}")),
                    Err(err) => Err(err),
                },
                Err(failure) => Err(anyhow::anyhow!(failure.reason)),
            },
        }
    }
}
