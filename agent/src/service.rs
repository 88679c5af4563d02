//! The `pmesh.v1.Agent` service and who may call it.
//!
//! Only the master may call the Agent service. Health and reflection answer any certificate
//! from the mesh CA, so an operator can probe an agent with grpcurl and an admin credential;
//! a client without a certificate never gets past the handshake.

use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use pmesh_proto::identity::{CertFacts, Identity};
use pmesh_proto::v1;
use pmesh_rt::authz::{is_introspection, Policy};
use pmesh_rt::v1::agent_server::Agent;
use tonic::{Request, Response, Status};

use crate::bundles::{BundleStore, StoreError};
use crate::error::AgentError;
use crate::facts;
use crate::runs::Runs;
use crate::state::{self, Paths};

/// The agent's authorisation policy.
pub struct AgentPolicy;

impl Policy for AgentPolicy {
    fn authorize(&self, path: &str, caller: Option<&CertFacts>) -> Result<(), Status> {
        let facts = caller.ok_or_else(|| AgentError::Unauthenticated("a client certificate is required".into()))?;
        // Exactly the master's identity: a certificate with the master role and another name
        // (`pmesh://master/evil`) is not the master.
        if is_introspection(path) || facts.identity == Identity::master() {
            return Ok(());
        }
        Err(AgentError::Denied(format!("{} may not call {path}: agents answer only the master", facts.identity)).into())
    }
}

/// The gRPC service.
pub struct AgentService {
    pub paths: Paths,
    pub docker_timeout: Duration,
    pub runs: Arc<Runs>,
}

impl AgentService {
    async fn info(&self) -> Result<v1::AgentInfo, AgentError> {
        let enrolment = state::load_enrolment(&self.paths)?;
        let cert_not_after_unix = state::load_credential(&self.paths)
            .ok()
            .and_then(|credential| pmesh_proto::identity::inspect(credential.cert.as_ref()).ok())
            .map(|facts| facts.not_after)
            .unwrap_or(0);
        let release = facts::os_release();
        let docker = crate::docker::status(self.docker_timeout).await;
        let data_dir: PathBuf = self.paths.data_dir.clone();
        Ok(v1::AgentInfo {
            name: enrolment.name,
            hostname: facts::hostname(),
            os_id: release.id,
            os_version: release.version_id,
            kernel: facts::kernel(),
            arch: std::env::consts::ARCH.to_owned(),
            cpus: facts::cpus(),
            memory_bytes: facts::memory_bytes(),
            disk_free_bytes: facts::disk_free(&data_dir),
            data_dir: data_dir.display().to_string(),
            docker: Some(v1::DockerInfo {
                reachable: docker.reachable,
                version: docker.version,
                api_version: docker.api_version,
                error: docker.error,
            }),
            agent_version: pmesh_proto::VERSION.to_owned(),
            labels: enrolment.labels.into_iter().collect(),
            cert_not_after_unix,
            problems: facts::problems(self.runs.journal()),
        })
    }

    fn bundles(&self) -> Result<BundleStore, AgentError> {
        let enrolment = state::load_enrolment(&self.paths)?;
        let key =
            hex::decode(&enrolment.bundle_signing_key).context("the enrolment's bundle-signing key is damaged; re-enrol the agent")?;
        Ok(BundleStore::new(&self.paths.data_dir, key))
    }
}

#[tonic::async_trait]
impl Agent for AgentService {
    async fn info(&self, _request: Request<v1::InfoRequest>) -> Result<Response<v1::AgentInfo>, Status> {
        Ok(Response::new(AgentService::info(self).await?))
    }

    async fn has_bundle(&self, request: Request<v1::HasBundleRequest>) -> Result<Response<v1::HasBundleResponse>, Status> {
        let present = self.bundles()?.has(&request.get_ref().digest);
        Ok(Response::new(v1::HasBundleResponse { present }))
    }

    #[tracing::instrument(skip_all, fields(digest = %request.get_ref().digest))]
    async fn push_bundle(&self, request: Request<v1::PushBundleRequest>) -> Result<Response<v1::PushBundleResponse>, Status> {
        let push = request.into_inner();
        let store = self.bundles()?;
        match store.put(&push.digest, &push.bundle, &push.signature) {
            Ok(stored) => {
                tracing::info!(stored, bytes = push.bundle.len(), "bundle received");
                Ok(Response::new(v1::PushBundleResponse { digest: push.digest, stored }))
            }
            Err(StoreError::Refused(reason)) => Err(AgentError::bundle_refused(&push.digest, &reason).into()),
            Err(err) => Err(AgentError::Internal(anyhow::Error::from(err).context("storing a bundle")).into()),
        }
    }

    #[tracing::instrument(skip_all, fields(run = %request.get_ref().run_id))]
    async fn start_run(&self, request: Request<v1::StartRunRequest>) -> Result<Response<v1::StartRunResponse>, Status> {
        let start = request.into_inner();
        let timeout = (start.timeout_seconds > 0).then(|| Duration::from_secs(start.timeout_seconds));
        match self.runs.start(&start.run_id, &start.bundle_digest, &start.instance, &start.values_json, timeout).await {
            Ok(started) => Ok(Response::new(v1::StartRunResponse { started })),
            Err(err) => Err(AgentError::from_start(err, &start.bundle_digest).into()),
        }
    }

    #[tracing::instrument(skip_all, fields(digest = %request.get_ref().digest))]
    async fn plan_run(&self, request: Request<v1::PlanRunRequest>) -> Result<Response<v1::PlanRunResponse>, Status> {
        let plan = request.into_inner();
        match self.runs.plan(&plan.digest, &plan.bundle, &plan.signature, &plan.instance, &plan.values_json).await {
            Ok(planned) => Ok(Response::new(v1::PlanRunResponse {
                actions: planned
                    .into_iter()
                    .map(|item| v1::PlanAction {
                        kind: item.kind.to_owned(),
                        name: item.name,
                        action: item.action.to_owned(),
                        detail: item.detail,
                    })
                    .collect(),
            })),
            Err(err) => Err(AgentError::from_start(err, &plan.digest).into()),
        }
    }

    async fn cancel_run(&self, request: Request<v1::CancelRunRequest>) -> Result<Response<v1::CancelRunResponse>, Status> {
        Ok(Response::new(v1::CancelRunResponse { cancelled: self.runs.cancel(&request.get_ref().run_id) }))
    }

    type WatchEventsStream = tokio_stream::wrappers::ReceiverStream<Result<v1::RunEvent, Status>>;

    async fn watch_events(&self, request: Request<v1::WatchEventsRequest>) -> Result<Response<Self::WatchEventsStream>, Status> {
        let journal = self.runs.journal().clone();
        let journal_id = journal.id().parse().map_err(|_| AgentError::Internal(anyhow::anyhow!("the journal's id is not ASCII")))?;
        let mut next = request.get_ref().from_seq.max(1);
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let mut announced = journal.subscribe();
            loop {
                let batch = match journal.read_from(next, 512) {
                    Ok(batch) => batch,
                    Err(err) => {
                        let _ = tx.send(Err(AgentError::Internal(err.context("reading the journal")).into())).await;
                        return;
                    }
                };
                if batch.is_empty() {
                    tokio::select! {
                        changed = announced.changed() => if changed.is_err() { return },
                        _ = tx.closed() => return,
                    }
                    continue;
                }
                for record in batch {
                    next = record.seq + 1;
                    if tx.send(Ok(v1::RunEvent::from(record))).await.is_err() {
                        return;
                    }
                }
            }
        });
        let mut response = Response::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        response.metadata_mut().insert(pmesh_proto::event::JOURNAL_ID_METADATA, journal_id);
        Ok(response)
    }

    async fn ack_events(&self, request: Request<v1::AckEventsRequest>) -> Result<Response<v1::AckEventsResponse>, Status> {
        let oldest_seq = self.runs.journal().trim(request.get_ref().up_to_seq).map_err(AgentError::from)?;
        Ok(Response::new(v1::AckEventsResponse { oldest_seq }))
    }

    async fn instance_outputs(
        &self,
        request: Request<v1::InstanceOutputsRequest>,
    ) -> Result<Response<v1::InstanceOutputsResponse>, Status> {
        let v1::InstanceOutputsRequest { instance, run_id } = request.into_inner();
        let run = self.runs.instance_outputs(&instance, &run_id).map_err(AgentError::from)?.ok_or_else(|| {
            let run = if run_id.is_empty() { "no succeeded run".to_owned() } else { format!("no succeeded run {run_id:?}") };
            AgentError::NotFound(format!("{run} of instance {instance:?} on this agent"))
        })?;
        // Values included, secret ones too: only the master may call this (`AgentPolicy`).
        let outputs = run.outputs.into_iter().map(v1::RunOutput::from).collect();
        Ok(Response::new(v1::InstanceOutputsResponse { run_id: run.run_id, outputs }))
    }

    #[tracing::instrument(skip_all, fields(instance = %request.get_ref().instance))]
    async fn destroy_instance(
        &self,
        request: Request<v1::DestroyInstanceRequest>,
    ) -> Result<Response<v1::DestroyInstanceResponse>, Status> {
        let destroyed = self.runs.destroy(&request.get_ref().instance).await.map_err(AgentError::from_destroy)?;
        Ok(Response::new(v1::DestroyInstanceResponse {
            removed: destroyed.removed,
            already_destroyed: destroyed.already_destroyed,
            run_id: destroyed.run_id,
        }))
    }
}

#[cfg(test)]
mod tests {
    use pmesh_proto::identity::Role;

    use super::*;

    fn caller(role: Role, name: &str) -> CertFacts {
        CertFacts { identity: Identity::new(role, name).unwrap(), serial: "01".into(), not_before: 0, not_after: i64::MAX }
    }

    /// Only the master's exact identity may call the agent; health and reflection answer any
    /// mesh certificate.
    #[test]
    fn only_the_master_itself_may_call() {
        let check = |facts: Option<&CertFacts>, path: &str| AgentPolicy.authorize(path, facts).map_err(|status| status.code());
        let start = "/pmesh.v1.Agent/StartRun";
        assert_eq!(check(Some(&caller(Role::Master, "master")), start), Ok(()));
        assert_eq!(check(Some(&caller(Role::Master, "evil")), start), Err(tonic::Code::PermissionDenied));
        assert_eq!(check(Some(&caller(Role::Admin, "master")), start), Err(tonic::Code::PermissionDenied));
        assert_eq!(check(Some(&caller(Role::Agent, "pc-2")), start), Err(tonic::Code::PermissionDenied));
        assert_eq!(check(None, start), Err(tonic::Code::Unauthenticated));
        assert_eq!(check(Some(&caller(Role::Admin, "ann")), "/grpc.health.v1.Health/Check"), Ok(()));
    }
}
