//! The agent's artifacts: its cache and fetcher ([`pmesh_rt::fetch`]) behind the executor's
//! [`Artifacts`] contract, with the master's depot tried before a pattern's own URLs.
//!
//! The cache is content-addressed, so where an artifact will be is known before it is fetched
//! (`path_of(sha256)`): a run is compiled with those paths, and fetched as its first phase.
//! Each run holds a lease on its artifacts until it ends, so eviction never takes one a
//! running step uses; an artifact a service mounts stays leased after the run, until the
//! instance's next run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use pmesh_proto::identity::Identity;
use pmesh_proto::v1::ReadArtifactRequest;
use pmesh_rt::fetch::{Auth, ByteStream, Cache, FetchConfig, FetchError, Fetcher, RangeSource, Source, Want};
use pmesh_rt::v1::master_client::MasterClient;

use crate::config::ArtifactConfig;
use crate::executor::contract::{ArtifactGuard, Artifacts, Transfer};
use crate::executor::plan::PlannedArtifact;
use crate::state::{self, Paths};

/// How long one depot transfer may take in all; stalls are the fetcher's to detect.
const DEPOT_TRANSFER_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// The agent's cache and fetcher, and how to reach the master's depot.
pub struct AgentArtifacts {
    cache: Cache,
    fetch: FetchConfig,
    /// Made on the first fetch: its HTTP client loads the host's trust store, memory an agent
    /// that never fetches need not hold.
    fetcher: std::sync::OnceLock<Result<Fetcher, String>>,
    /// Leases that outlive their run: artifacts mounted by a service, by instance scope and
    /// artifact name. The next run of the instance replaces them. (They live in memory: after
    /// an agent restart, a still-running service's artifact is protected again by the
    /// instance's next run.)
    retained: std::sync::Mutex<std::collections::HashMap<(String, String), pmesh_rt::fetch::Lease>>,
    /// The agent's state, to dial the master with its current certificate; `None` for a local
    /// apply, which has no master.
    depot: Option<Paths>,
}

impl AgentArtifacts {
    /// Opens the cache in `config.cache_dir` (default `DATA_DIR/artifacts`).
    ///
    /// # Errors
    /// When the cache directory cannot be created or is held by another process (a second
    /// agent, or `pmesh-agent pattern apply` while the daemon runs), or the CA bundle is
    /// unreadable.
    pub fn open(data_dir: &Path, config: &ArtifactConfig, depot: Option<Paths>) -> anyhow::Result<AgentArtifacts> {
        let dir = config.cache_dir.clone().unwrap_or_else(|| data_dir.join("artifacts"));
        let cache = Cache::open(&dir, config.cache_max_bytes).map_err(|err| anyhow::anyhow!("opening the artifact cache: {err}"))?;
        let ca_bundle = match &config.ca_bundle {
            Some(path) => {
                Some(std::fs::read(path).map_err(|err| anyhow::anyhow!("reading the artifact CA bundle {}: {err}", path.display()))?)
            }
            None => None,
        };
        let fetch = FetchConfig {
            max_attempts: config.retries.max(1),
            stall_timeout: config.stall_timeout,
            max_concurrent: config.max_concurrent_downloads.max(1),
            ca_bundle,
            ..FetchConfig::default()
        };
        Ok(AgentArtifacts { cache, fetch, fetcher: std::sync::OnceLock::new(), retained: std::sync::Mutex::default(), depot })
    }

    /// Where an artifact with this sha256 is (or will be) in the cache.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.cache.path_of(sha256)
    }

    fn fetcher(&self) -> anyhow::Result<&Fetcher> {
        self.fetcher
            .get_or_init(|| Fetcher::new(self.cache.clone(), self.fetch.clone()).map_err(|err| err.to_string()))
            .as_ref()
            .map_err(|err| anyhow::anyhow!("the artifact fetcher cannot start: {err}"))
    }

    fn sources(&self, artifact: &PlannedArtifact) -> Vec<Source> {
        let mut sources = Vec::new();
        if let Some(paths) = &self.depot {
            sources.push(Source::Range(Arc::new(DepotSource { paths: paths.clone(), sha256: artifact.sha256.clone() })));
        }
        let auth = artifact.auth.as_ref().map(Auth::parse);
        sources.extend(artifact.urls.iter().map(|url| Source::Http { url: url.clone(), auth: auth.clone() }));
        sources
    }
}

#[async_trait::async_trait]
impl Artifacts for AgentArtifacts {
    async fn ensure(&self, artifact: &PlannedArtifact, progress: Box<dyn Fn(Transfer) + Send + Sync>) -> anyhow::Result<ArtifactGuard> {
        let want = Want { sha256: artifact.sha256.clone(), size: artifact.size, sources: self.sources(artifact) };
        let report = move |at: pmesh_rt::fetch::Progress| {
            progress(at);
        };
        let lease = self.fetcher()?.ensure(&want, report).await.map_err(|err| match err {
            // Say what the kernel said, too: the operator may be searching logs for it.
            FetchError::DiskFull { .. } => {
                anyhow::anyhow!(
                    "artifact {}: {err} (ENOSPC: no space left on device); free space in the artifact cache and run again",
                    artifact.name
                )
            }
            other => anyhow::Error::new(other),
        })?;
        anyhow::ensure!(
            lease.path() == artifact.path,
            "artifact {} landed at {}, not at {}",
            artifact.name,
            lease.path().display(),
            artifact.path.display()
        );
        if let Some(scope) = &artifact.retain_for {
            self.retained
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert((scope.clone(), artifact.name.clone()), lease.clone());
        }
        Ok(Box::new(lease))
    }

    fn cached(&self, sha256: &str) -> bool {
        // Only verified files are ever renamed into place; taking a lease to ask would touch
        // the file's last use, and a plan changes nothing.
        self.cache.path_of(sha256).is_file()
    }
}

/// The master's depot as a source: `ReadArtifact` from an offset, over the agent's mTLS
/// identity, dialled afresh for each attempt so a renewed certificate is used.
struct DepotSource {
    paths: Paths,
    sha256: String,
}

impl DepotSource {
    fn fail(&self, status: &tonic::Status) -> FetchError {
        let origin = self.describe();
        match status.code() {
            tonic::Code::NotFound => FetchError::NotFound { origin },
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => FetchError::Unauthorized { origin, status: 403 },
            tonic::Code::InvalidArgument | tonic::Code::Unimplemented => {
                FetchError::Protocol { origin, detail: status.message().to_owned() }
            }
            _ => FetchError::Network { origin, detail: status.message().to_owned() },
        }
    }
}

#[async_trait::async_trait]
impl RangeSource for DepotSource {
    fn describe(&self) -> String {
        "the master's depot".into()
    }

    async fn open(&self, offset: u64) -> Result<ByteStream, FetchError> {
        let network = |detail: String| FetchError::Network { origin: self.describe(), detail };
        let enrolment = state::load_enrolment(&self.paths).map_err(|err| network(format!("{err:#}")))?;
        let credential = state::load_credential(&self.paths).map_err(|err| network(format!("{err:#}")))?;
        let tls = Arc::new(credential.client_config().map_err(|err| network(format!("{err:#}")))?);
        let dialled = pmesh_rt::net::dial(&enrolment.master, &Identity::master(), tls, DEPOT_TRANSFER_LIMIT)
            .map_err(|err| network(format!("{err:#}")))?;
        let mut request = tonic::Request::new(ReadArtifactRequest { sha256: self.sha256.clone(), offset });
        request.set_timeout(DEPOT_TRANSFER_LIMIT);
        let stream = MasterClient::new(dialled.channel.clone())
            .max_decoding_message_size(16 * 1024 * 1024)
            .read_artifact(request)
            .await
            .map_err(|status| self.fail(&status))?
            .into_inner();
        let origin = self.describe();
        let bytes = stream.map(move |message| match message {
            Ok(chunk) => Ok(bytes::Bytes::from(chunk.data)),
            Err(status) => Err(FetchError::Network { origin: origin.clone(), detail: status.message().to_owned() }),
        });
        Ok(Box::pin(bytes))
    }
}
