//! The step contract: what the runner needs from a container engine, and nothing more.
//!
//! The runner drives steps through [`Driver`]; `crate::docker` implements it with bollard.
//! The runner's unit tests implement it (and [`Artifacts`]) in memory, in `executor::fake`.
//! Every container the driver creates carries [`OwnerLabels`]; every listing and removal
//! filters by them, so the executor never touches what it did not create.

use std::collections::HashMap;
use std::time::Duration;

use super::plan::{BuildSpec, ContainerSpec, ImageSource};

/// Label keys pmesh puts on everything it creates in Docker.
pub mod labels {
    pub const MANAGED: &str = "io.pmesh.managed";
    pub const INSTANCE: &str = "io.pmesh.instance";
    pub const RUN: &str = "io.pmesh.run";
    pub const STEP: &str = "io.pmesh.step";
    pub const SPEC_HASH: &str = "io.pmesh.spec-hash";
    pub const PATTERN: &str = "io.pmesh.pattern";
    pub const KIND: &str = "io.pmesh.kind";
    pub const AGENT: &str = "io.pmesh.agent";
}

/// The owner labels of one container, network or volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerLabels {
    pub instance: String,
    pub run: String,
    pub step: String,
    pub spec_hash: String,
    pub pattern: String,
    /// `run`, `service`, `teardown`, `network` or `volume`.
    pub kind: String,
    /// The dispatching agent's name; not labelled when empty (a local apply).
    pub agent: String,
}

impl OwnerLabels {
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            (labels::MANAGED.to_owned(), "true".to_owned()),
            (labels::INSTANCE.to_owned(), self.instance.clone()),
            (labels::RUN.to_owned(), self.run.clone()),
            (labels::STEP.to_owned(), self.step.clone()),
            (labels::SPEC_HASH.to_owned(), self.spec_hash.clone()),
            (labels::PATTERN.to_owned(), self.pattern.clone()),
            (labels::KIND.to_owned(), self.kind.clone()),
        ]);
        if !self.agent.is_empty() {
            map.insert(labels::AGENT.to_owned(), self.agent.clone());
        }
        map
    }
}

/// A container the driver found by its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    pub running: bool,
    /// Whether it was ever started. A container created but never started (an agent killed
    /// between the two) has no output, and Docker reports exit code 0 for it: it must not
    /// count as a step that ran.
    pub started: bool,
    /// The exit code, once it has exited.
    pub exit_code: Option<i64>,
}

impl Found {
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map(String::as_str).unwrap_or_default()
    }
}

/// Health as Docker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The container has no healthcheck.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// Output from a container or an exec, in pieces as the engine delivers them (a piece may end
/// mid-line; the runner's `LineBuffer` makes lines of them).
pub type OutputStream = std::pin::Pin<Box<dyn futures_core::Stream<Item = anyhow::Result<bytes::Bytes>> + Send>>;

/// How an image was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageAction {
    Present,
    Pulled,
    Loaded,
    Built,
}

impl ImageAction {
    /// `present`, `pulled`, `loaded` or `built`.
    pub fn name(self) -> &'static str {
        match self {
            ImageAction::Present => "present",
            ImageAction::Pulled => "pulled",
            ImageAction::Loaded => "loaded",
            ImageAction::Built => "built",
        }
    }
}

/// What the runner needs from a container engine.
#[async_trait::async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Makes the image available; returns what was done.
    async fn ensure_image(&self, source: &ImageSource) -> anyhow::Result<ImageAction>;
    /// Starts building `build`: the build's output as it comes (Docker's `Step 2/5 : …`
    /// lines and the commands' own), ending with an error that says why when the build
    /// fails. The image is tagged `build.tag` once the stream ends without one.
    async fn build_image(&self, build: &BuildSpec) -> anyhow::Result<OutputStream>;
    /// Whether an image with this reference is on the host (nothing is pulled).
    async fn has_image(&self, reference: &str) -> anyhow::Result<bool>;
    /// Creates (without starting) a container named `name` on the instance network.
    async fn create(&self, name: &str, spec: &ContainerSpec, owner: &OwnerLabels, network: &str) -> anyhow::Result<String>;
    async fn start(&self, id: &str) -> anyhow::Result<()>;
    /// The container's output from now on, straight from its stdio rather than its log file,
    /// until it exits. Called before `start`, it misses nothing: following the log file loses
    /// lines when the engine rotates it under a fast writer (json-file `max-size`).
    async fn attach(&self, id: &str) -> anyhow::Result<OutputStream>;
    /// The container's output from its start (its log file), following until it exits: how
    /// a re-adopted container is followed after an agent restart.
    fn logs(&self, id: &str) -> OutputStream;
    /// Waits for exit; returns the exit code.
    async fn wait(&self, id: &str) -> anyhow::Result<i64>;
    async fn health(&self, id: &str) -> anyhow::Result<(bool, Health)>;
    /// Stops with a grace period, then kills.
    async fn stop(&self, id: &str, grace: Duration) -> anyhow::Result<()>;
    async fn remove(&self, id: &str) -> anyhow::Result<()>;
    /// Containers (running or not) carrying all of `labels`.
    async fn find(&self, labels: &[(&str, &str)]) -> anyhow::Result<Vec<Found>>;
    /// Runs `command` in a running container; returns its exit code and output.
    async fn exec(&self, id: &str, command: &[String], env: &[String]) -> anyhow::Result<(i64, Vec<String>)>;
    /// The contents of the regular file at `path` in a container, running or exited: how
    /// `from` outputs are read after a run.
    ///
    /// # Errors
    /// No such file, not a regular file, or larger than `limit` bytes; the message says which.
    async fn read_file(&self, id: &str, path: &str, limit: u64) -> anyhow::Result<Vec<u8>>;
    /// Creates the instance network if missing.
    async fn ensure_network(&self, name: &str, owner: &OwnerLabels) -> anyhow::Result<()>;
    /// Removes networks and volumes carrying all of `labels`; returns their names.
    async fn remove_networks_and_volumes(&self, labels: &[(&str, &str)]) -> anyhow::Result<Vec<String>>;
}

/// A transfer's progress, as an artifact store reports it: the contract's one progress type.
pub use pmesh_proto::progress::Progress as Transfer;

/// Keeps a fetched artifact from eviction while held.
pub type ArtifactGuard = Box<dyn std::any::Any + Send + Sync>;

/// What the runner needs to have a run's artifacts on disk: the agent's cache and fetcher.
#[async_trait::async_trait]
pub trait Artifacts: Send + Sync + 'static {
    /// Makes the artifact present at its `path`, fetching it if needed and reporting the
    /// transfer; the guard keeps it from eviction until dropped.
    ///
    /// # Errors
    /// Why no source could provide it; the message names each source without secrets.
    async fn ensure(
        &self,
        artifact: &super::plan::PlannedArtifact,
        progress: Box<dyn Fn(Transfer) + Send + Sync>,
    ) -> anyhow::Result<ArtifactGuard>;

    /// Whether the artifact is in the cache already (a plan's question; nothing moves).
    fn cached(&self, sha256: &str) -> bool;
}
