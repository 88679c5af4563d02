//! The `pmesh.v1.Master` service: enrolment, renewal and the operator's calls.
//!
//! Handlers find their caller in the request's [`Caller`] extension, put there by the
//! authorisation layer; by the time a handler runs, the role has been checked. Handlers
//! validate everything before they change anything, so a refused request leaves no trace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pmesh_proto::identity::{validate_name, Identity, Role};
use pmesh_proto::v1;
use pmesh_rt::authz::Caller;
use pmesh_rt::v1::master_server::Master;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::config::MasterConfig;
use crate::error::{now_unix, unix, ApiError};
use crate::identity::Ca;
use crate::store::{AgentRecord, Health, PatternRecord, Store, TokenError, TokenRecord, SCHEMA_VERSION};

/// What the handlers share.
pub struct MasterState {
    pub store: Store,
    pub ca: Ca,
    pub config: MasterConfig,
    pub bundle_public_key: Vec<u8>,
    pub dispatcher: Arc<crate::dispatch::Dispatcher>,
    pub depot: Arc<crate::depot::Depot>,
    pub labs: Arc<crate::labs::Labs>,
}

/// The gRPC service.
#[derive(Clone)]
pub struct MasterService {
    state: Arc<MasterState>,
}

impl MasterService {
    pub fn new(state: Arc<MasterState>) -> Self {
        MasterService { state }
    }
}

type RpcResult<T> = Result<Response<T>, Status>;

/// The sha256 under which a token is stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// When a certificate issued now with `lifetime` should be renewed: after two thirds of it.
pub fn renew_after(lifetime: Duration) -> i64 {
    now_unix() + (lifetime.as_secs() * 2 / 3) as i64
}

/// Checks `host:port`.
fn validate_address(address: &str, field: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| Err(ApiError::Invalid(format!("{field} {address:?}: {why}")));
    let Some((host, port)) = address.rsplit_once(':') else {
        return invalid("expected HOST:PORT");
    };
    if host.is_empty() {
        return invalid("the host is empty");
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => invalid("the port must be a number from 1 to 65535"),
        Ok(_) => Ok(()),
    }
}

fn validate_labels(labels: &std::collections::HashMap<String, String>) -> Result<(), ApiError> {
    for key in labels.keys() {
        let valid = !key.is_empty() && key.len() <= 63 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if !valid {
            return Err(ApiError::Invalid(format!("label key {key:?}: use 1 to 63 letters, digits, '-', '_', '.' or '/'")));
        }
    }
    Ok(())
}

fn caller<T>(request: &Request<T>) -> Result<Identity, Status> {
    request
        .extensions()
        .get::<Caller>()
        .and_then(|caller| caller.0.as_ref())
        .map(|facts| facts.identity.clone())
        .ok_or_else(|| Status::unauthenticated("no client certificate"))
}

impl MasterState {
    fn join(&self, request: v1::JoinRequest) -> Result<v1::JoinResponse, ApiError> {
        let hash = token_hash(&request.token);
        let token = self.store.token(&hash)?.ok_or_else(|| ApiError::Denied(TokenError::Unknown.to_string()))?;
        // A used token says so first: "already enrolled, use a --force token" would advise
        // revoking the certificate of the agent that used it.
        if let Some(by) = &token.used_by {
            return Err(ApiError::Denied(TokenError::Used { by: by.clone() }.to_string()));
        }
        let name = match (&token.name, request.name.as_str()) {
            (Some(pinned), "") => pinned.clone(),
            (Some(pinned), asked) if pinned != asked => {
                return Err(ApiError::Denied(format!("the join token is for agent {pinned:?}, not {asked:?}")))
            }
            (None, "") => request.default_name.clone(),
            (_, asked) => asked.to_owned(),
        };
        validate_name(&name).map_err(|err| ApiError::Invalid(format!("agent name: {err}; choose one with `join --name`")))?;
        validate_address(&request.advertise, "advertise address")?;
        if self.store.agent(&name)?.is_some() && !token.force {
            return Err(ApiError::AlreadyExists(format!(
                "agent {name:?} is already enrolled; to re-enrol it, create a token with --force"
            )));
        }
        let identity = Identity::new(Role::Agent, &name).map_err(|err| ApiError::Invalid(err.to_string()))?;
        let lifetime = self.config.agent_cert_lifetime;
        let issued = self
            .ca
            .sign_csr(&request.csr_pem, &identity, lifetime, self.config.clock_skew)
            .map_err(|err| ApiError::Invalid(format!("{err:#}")))?;

        // Everything is valid: from here on, state changes.
        let now = now_unix();
        let token = self.store.consume_token(&hash, &name, now).map_err(|err| match err.downcast::<TokenError>() {
            Ok(token_err) => ApiError::Denied(token_err.to_string()),
            Err(other) => ApiError::Internal(other),
        })?;
        let replaced = self.store.revoke_identity(&identity.uri(), now)?;
        self.store.record_issued(&issued.serial, &identity.uri(), unix(issued.not_after))?;
        let record = AgentRecord {
            v: SCHEMA_VERSION,
            name: name.clone(),
            address: request.advertise.clone(),
            labels: token.labels.clone(),
            enrolled_at: now,
            cert_serial: issued.serial.clone(),
            cert_not_after: unix(issued.not_after),
            health: Health::Unknown,
            last_seen: None,
            last_error: None,
            facts: None,
        };
        self.store.put_agent(&record)?;
        self.store.flush()?;
        tracing::info!(agent = %name, address = %request.advertise, serial = %issued.serial,
            replaced = replaced.len(), "agent enrolled");
        Ok(v1::JoinResponse {
            name,
            cert_pem: issued.pem,
            ca_pem: self.ca.cert_pem().to_owned(),
            labels: token.labels.into_iter().collect(),
            renew_after_unix: renew_after(lifetime),
            bundle_signing_key: self.bundle_public_key.clone(),
        })
    }

    fn renew(&self, identity: &Identity, csr_pem: &str) -> Result<v1::RenewResponse, ApiError> {
        if self.store.agent(&identity.name)?.is_none() {
            return Err(ApiError::Denied(format!("agent {:?} is no longer enrolled", identity.name)));
        }
        let lifetime = self.config.agent_cert_lifetime;
        let issued =
            self.ca.sign_csr(csr_pem, identity, lifetime, self.config.clock_skew).map_err(|err| ApiError::Invalid(format!("{err:#}")))?;
        self.store.record_issued(&issued.serial, &identity.uri(), unix(issued.not_after))?;
        self.store.update_agent(&identity.name, |record| {
            record.cert_serial = issued.serial.clone();
            record.cert_not_after = unix(issued.not_after);
        })?;
        self.store.flush()?;
        tracing::info!(agent = %identity.name, serial = %issued.serial, "agent certificate renewed");
        Ok(v1::RenewResponse { cert_pem: issued.pem, renew_after_unix: renew_after(lifetime) })
    }

    fn create_token(&self, request: v1::CreateTokenRequest) -> Result<v1::CreateTokenResponse, ApiError> {
        let ttl = match request.ttl_seconds {
            0 => self.config.token_ttl,
            seconds => Duration::from_secs(seconds),
        };
        let name = match request.name.as_str() {
            "" => None,
            name => {
                validate_name(name).map_err(|err| ApiError::Invalid(err.to_string()))?;
                Some(name.to_owned())
            }
        };
        validate_labels(&request.labels)?;
        let token = format!("pmt_{}", hex::encode(rand::random::<[u8; 20]>()));
        let now = now_unix();
        let expires_at = now + ttl.as_secs() as i64;
        let record = TokenRecord {
            v: SCHEMA_VERSION,
            created_at: now,
            expires_at,
            name,
            labels: request.labels.into_iter().collect::<BTreeMap<_, _>>(),
            force: request.force,
            used_at: None,
            used_by: None,
        };
        self.store.put_token(&token_hash(&token), &record)?;
        self.store.flush()?;
        tracing::info!(name = ?record.name, expires_at, force = record.force, "join token created");
        Ok(v1::CreateTokenResponse {
            token,
            expires_at_unix: expires_at,
            ca_fingerprint: self.ca.fingerprint(),
            master_address: self.config.advertise(),
        })
    }

    fn remove_agent(&self, name: &str) -> Result<v1::RemoveAgentResponse, ApiError> {
        let identity = Identity::new(Role::Agent, name).map_err(|err| ApiError::Invalid(err.to_string()))?;
        if self.store.remove_agent(name)?.is_none() {
            return Err(ApiError::NotFound(unknown_agent(&self.store, name)));
        }
        let revoked_serials = self.store.revoke_identity(&identity.uri(), now_unix())?;
        self.store.flush()?;
        tracing::info!(agent = %name, revoked = revoked_serials.len(), "agent removed");
        Ok(v1::RemoveAgentResponse { revoked_serials })
    }

    fn issue_admin(&self, request: v1::IssueAdminRequest) -> Result<v1::IssueAdminResponse, ApiError> {
        let identity = Identity::new(Role::Admin, &request.name).map_err(|err| ApiError::Invalid(err.to_string()))?;
        let issued = self
            .ca
            .sign_csr(&request.csr_pem, &identity, self.config.admin_cert_lifetime, self.config.clock_skew)
            .map_err(|err| ApiError::Invalid(format!("{err:#}")))?;
        self.store.record_issued(&issued.serial, &identity.uri(), unix(issued.not_after))?;
        self.store.flush()?;
        tracing::info!(admin = %request.name, serial = %issued.serial, "admin credential issued");
        Ok(v1::IssueAdminResponse {
            cert_pem: issued.pem,
            ca_pem: self.ca.cert_pem().to_owned(),
            serial: issued.serial,
            not_after_unix: unix(issued.not_after),
            master_address: self.config.advertise(),
        })
    }

    fn revoke_admin(&self, name: &str) -> Result<v1::RevokeAdminResponse, ApiError> {
        let identity = Identity::new(Role::Admin, name).map_err(|err| ApiError::Invalid(err.to_string()))?;
        let revoked_serials = self.store.revoke_identity(&identity.uri(), now_unix())?;
        if revoked_serials.is_empty() {
            return Err(ApiError::NotFound(format!("no unexpired, unrevoked credential for admin {name:?}")));
        }
        self.store.flush()?;
        tracing::info!(admin = %name, revoked = revoked_serials.len(), "admin credential revoked");
        Ok(v1::RevokeAdminResponse { revoked_serials })
    }
}

/// The wire form of an agent record.
pub fn agent_status(record: AgentRecord) -> v1::AgentStatus {
    let state = match record.health {
        Health::Unknown => v1::AgentState::Unspecified,
        Health::Up => v1::AgentState::Up,
        Health::Down => v1::AgentState::Down,
    };
    let info = record.facts.map(|facts| v1::AgentInfo {
        name: record.name.clone(),
        hostname: facts.hostname,
        os_id: facts.os_id,
        os_version: facts.os_version,
        kernel: facts.kernel,
        cpus: facts.cpus,
        memory_bytes: facts.memory_bytes,
        disk_free_bytes: facts.disk_free_bytes,
        data_dir: facts.data_dir,
        docker: Some(v1::DockerInfo {
            reachable: facts.docker_reachable,
            version: facts.docker_version,
            api_version: String::new(),
            error: facts.docker_error,
        }),
        agent_version: facts.agent_version,
        labels: record.labels.clone().into_iter().collect(),
        cert_not_after_unix: record.cert_not_after,
        arch: facts.arch,
        problems: facts.problems,
    });
    v1::AgentStatus {
        name: record.name,
        address: record.address,
        state: state as i32,
        labels: record.labels.into_iter().collect(),
        info,
        last_seen_unix: record.last_seen.unwrap_or(0),
        last_error: record.last_error.unwrap_or_default(),
        enrolled_at_unix: record.enrolled_at,
        cert_serial: record.cert_serial,
        cert_not_after_unix: record.cert_not_after,
    }
}

#[tonic::async_trait]
impl Master for MasterService {
    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn join(&self, request: Request<v1::JoinRequest>) -> RpcResult<v1::JoinResponse> {
        Ok(Response::new(self.state.join(request.into_inner())?))
    }

    #[tracing::instrument(skip_all)]
    async fn renew(&self, request: Request<v1::RenewRequest>) -> RpcResult<v1::RenewResponse> {
        let identity = caller(&request)?;
        Ok(Response::new(self.state.renew(&identity, &request.get_ref().csr_pem)?))
    }

    #[tracing::instrument(skip_all)]
    async fn create_token(&self, request: Request<v1::CreateTokenRequest>) -> RpcResult<v1::CreateTokenResponse> {
        Ok(Response::new(self.state.create_token(request.into_inner())?))
    }

    async fn list_agents(&self, _request: Request<v1::ListAgentsRequest>) -> RpcResult<v1::ListAgentsResponse> {
        let records = self.state.store.agents().map_err(ApiError::Internal)?;
        Ok(Response::new(v1::ListAgentsResponse { agents: records.into_iter().map(agent_status).collect() }))
    }

    async fn get_agent(&self, request: Request<v1::GetAgentRequest>) -> RpcResult<v1::AgentStatus> {
        let name = &request.get_ref().name;
        let record = self
            .state
            .store
            .agent(name)
            .map_err(ApiError::Internal)?
            .ok_or_else(|| ApiError::NotFound(unknown_agent(&self.state.store, name)))?;
        Ok(Response::new(agent_status(record)))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn remove_agent(&self, request: Request<v1::RemoveAgentRequest>) -> RpcResult<v1::RemoveAgentResponse> {
        Ok(Response::new(self.state.remove_agent(&request.get_ref().name)?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn issue_admin(&self, request: Request<v1::IssueAdminRequest>) -> RpcResult<v1::IssueAdminResponse> {
        Ok(Response::new(self.state.issue_admin(request.into_inner())?))
    }

    #[tracing::instrument(skip_all)]
    async fn push_pattern(&self, request: Request<v1::PushPatternRequest>) -> RpcResult<v1::PushPatternResponse> {
        Ok(Response::new(self.state.dispatcher.push_pattern(request.into_inner().bundle)?))
    }

    async fn list_patterns(&self, _request: Request<v1::ListPatternsRequest>) -> RpcResult<v1::ListPatternsResponse> {
        let patterns = self.state.store.patterns().map_err(ApiError::Internal)?;
        Ok(Response::new(v1::ListPatternsResponse { patterns: patterns.into_iter().map(summary).collect() }))
    }

    #[tracing::instrument(skip_all, fields(pattern = %request.get_ref().pattern))]
    async fn get_pattern(&self, request: Request<v1::GetPatternRequest>) -> RpcResult<v1::GetPatternResponse> {
        let reference = request.into_inner().pattern;
        let store = &self.state.store;
        let Some(pattern) = store.find_pattern(&reference).map_err(ApiError::Internal)? else {
            let name = reference.split('@').next().unwrap_or_default();
            let mut versions: Vec<String> =
                store.patterns().map_err(ApiError::Internal)?.into_iter().filter(|p| p.name == name).map(|p| p.version).collect();
            versions.sort_by_key(|version| semver::Version::parse(version).ok());
            let hint = if versions.is_empty() {
                "push it with `pmesh pattern push`".to_owned()
            } else {
                format!("registered versions of {name}: {}", versions.join(", "))
            };
            return Err(ApiError::NotFound(format!("no pattern {reference:?} is registered; {hint}")).into());
        };
        let (bundle, _signature) = store
            .bundle(&pattern.digest)
            .map_err(ApiError::Internal)?
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the bundle of {} is missing", pattern.digest)))?;
        Ok(Response::new(v1::GetPatternResponse { summary: Some(summary(pattern)), bundle }))
    }

    #[tracing::instrument(skip_all, fields(pattern = %request.get_ref().pattern))]
    async fn start_run(&self, request: Request<v1::MasterStartRunRequest>) -> RpcResult<v1::MasterStartRunResponse> {
        Ok(Response::new(self.state.dispatcher.start(request.into_inner()).await?))
    }

    async fn version(&self, _request: Request<v1::VersionRequest>) -> RpcResult<v1::VersionResponse> {
        Ok(Response::new(v1::VersionResponse { version: pmesh_rt::docs::VERSION.to_owned() }))
    }

    async fn list_runs(&self, _request: Request<v1::ListRunsRequest>) -> RpcResult<v1::ListRunsResponse> {
        let mut runs = self.state.store.runs().map_err(ApiError::Internal)?;
        runs.sort_by_key(|run| run.created_at);
        Ok(Response::new(v1::ListRunsResponse { runs: runs.iter().map(crate::dispatch::summary).collect() }))
    }

    async fn get_run(&self, request: Request<v1::GetRunRequest>) -> RpcResult<v1::RunSummary> {
        let run_id = &request.get_ref().run_id;
        let run =
            self.state.store.run(run_id).map_err(ApiError::Internal)?.ok_or_else(|| ApiError::NotFound(format!("no run {run_id:?}")))?;
        Ok(Response::new(crate::dispatch::summary(&run)))
    }

    async fn list_instances(&self, request: Request<v1::ListInstancesRequest>) -> RpcResult<v1::ListInstancesResponse> {
        Ok(Response::new(v1::ListInstancesResponse { instances: self.state.dispatcher.instances(&request.get_ref().agent)? }))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name, reveal = request.get_ref().reveal))]
    async fn get_instance(&self, request: Request<v1::GetInstanceRequest>) -> RpcResult<v1::ListInstancesResponse> {
        let v1::GetInstanceRequest { name, agent, reveal } = request.into_inner();
        Ok(Response::new(v1::ListInstancesResponse { instances: self.state.dispatcher.instance(&name, &agent, reveal).await? }))
    }

    async fn lint_lab(&self, request: Request<v1::LabFileRequest>) -> RpcResult<v1::LintLabResponse> {
        Ok(Response::new(self.state.labs.lint(request.get_ref())?))
    }

    async fn plan_lab(&self, request: Request<v1::LabFileRequest>) -> RpcResult<v1::PlanLabResponse> {
        Ok(Response::new(self.state.labs.plan(request.get_ref()).await?))
    }

    #[tracing::instrument(skip_all, fields(file = %request.get_ref().file))]
    async fn lab_up(&self, request: Request<v1::LabFileRequest>) -> RpcResult<v1::LabStatus> {
        Ok(Response::new(self.state.labs.up(request.get_ref())?))
    }

    async fn get_lab(&self, request: Request<v1::GetLabRequest>) -> RpcResult<v1::LabStatus> {
        Ok(Response::new(self.state.labs.status(&request.get_ref().name)?))
    }

    async fn list_labs(&self, _request: Request<v1::ListLabsRequest>) -> RpcResult<v1::ListLabsResponse> {
        Ok(Response::new(self.state.labs.list()?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn lab_down(&self, request: Request<v1::GetLabRequest>) -> RpcResult<v1::LabDownResponse> {
        Ok(Response::new(self.state.labs.down(&request.get_ref().name).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn destroy_instance(&self, request: Request<v1::MasterDestroyInstanceRequest>) -> RpcResult<v1::MasterDestroyInstanceResponse> {
        let v1::MasterDestroyInstanceRequest { name, agent } = request.into_inner();
        Ok(Response::new(v1::MasterDestroyInstanceResponse { instances: self.state.dispatcher.destroy_instance(&name, &agent).await? }))
    }

    async fn cancel_run(&self, request: Request<v1::MasterCancelRunRequest>) -> RpcResult<v1::MasterCancelRunResponse> {
        let cancelled_on = self.state.dispatcher.cancel(&request.get_ref().run_id).await?;
        Ok(Response::new(v1::MasterCancelRunResponse { cancelled_on }))
    }

    #[tracing::instrument(skip_all)]
    async fn add_artifact(&self, request: Request<tonic::Streaming<v1::AddArtifactChunk>>) -> RpcResult<v1::ArtifactSummary> {
        Ok(Response::new(self.state.depot.add(request.into_inner()).await?))
    }

    type ImportArtifactStream = tokio_stream::wrappers::ReceiverStream<Result<v1::ImportArtifactProgress, Status>>;

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn import_artifact(&self, request: Request<v1::ImportArtifactRequest>) -> RpcResult<Self::ImportArtifactStream> {
        let rx = self.state.depot.import(request.into_inner())?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn list_artifacts(&self, _request: Request<v1::ListArtifactsRequest>) -> RpcResult<v1::ListArtifactsResponse> {
        Ok(Response::new(v1::ListArtifactsResponse { artifacts: self.state.depot.list()? }))
    }

    #[tracing::instrument(skip_all, fields(artifact = %request.get_ref().artifact, force = request.get_ref().force))]
    async fn remove_artifact(&self, request: Request<v1::RemoveArtifactRequest>) -> RpcResult<v1::RemoveArtifactResponse> {
        let request = request.get_ref();
        Ok(Response::new(self.state.depot.remove(&request.artifact, request.force)?))
    }

    type ReadArtifactStream = tokio_stream::wrappers::ReceiverStream<Result<v1::ArtifactData, Status>>;

    #[tracing::instrument(skip_all, fields(sha256 = %request.get_ref().sha256, offset = request.get_ref().offset))]
    async fn read_artifact(&self, request: Request<v1::ReadArtifactRequest>) -> RpcResult<Self::ReadArtifactStream> {
        let rx = self.state.depot.read(&request.get_ref().sha256, request.get_ref().offset).await?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    type WatchRunStream = tokio_stream::wrappers::ReceiverStream<Result<v1::AgentRunEvent, Status>>;

    async fn watch_run(&self, request: Request<v1::WatchRunRequest>) -> RpcResult<Self::WatchRunStream> {
        let watch = request.into_inner();
        if self.state.store.run(&watch.run_id).map_err(ApiError::Internal)?.is_none() {
            return Err(ApiError::NotFound(format!("no run {:?}", watch.run_id)).into());
        }
        let rx = self.state.dispatcher.watch(watch.run_id, watch.from_index, !watch.no_follow);
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn revoke_admin(&self, request: Request<v1::RevokeAdminRequest>) -> RpcResult<v1::RevokeAdminResponse> {
        Ok(Response::new(self.state.revoke_admin(&request.get_ref().name)?))
    }
}

fn summary(pattern: PatternRecord) -> v1::PatternSummary {
    v1::PatternSummary {
        name: pattern.name,
        version: pattern.version,
        digest: pattern.digest,
        description: pattern.description,
        category: pattern.category,
        pushed_at_unix: pattern.pushed_at,
    }
}

/// "no agent named X", with the closest registered name.
fn unknown_agent(store: &Store, name: &str) -> String {
    let agents = store.agents().unwrap_or_default();
    format!("no agent named {name:?}{}", crate::suggest::did_you_mean(name, agents.iter().map(|agent| agent.name.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for good in ["127.0.0.1:7444", "pc-1.lab:1", "[::1]:7444"] {
            assert!(validate_address(good, "a").is_ok(), "{good}");
        }
        for bad in ["127.0.0.1", ":7444", "h:0", "h:70000", "h:x"] {
            assert!(validate_address(bad, "a").is_err(), "{bad}");
        }
    }
}
