//! An in-memory container engine and artifact store for the runner's unit tests, the way
//! Nomad's `drivers/mock` stands in for Docker: [`FakeDriver`] implements [`Driver`] and
//! [`FakeArtifacts`] implements [`Artifacts`], both recording every call.
//!
//! Behaviour is scripted, per step: each container created for a step takes the next
//! [`Behaviour`] (its output lines, when it exits and with which code, or never; its health
//! answers), and each exec into a step's container the next scripted result. Containers that
//! already exist (from an earlier run, or this run before an agent restart) are registered
//! with their labels and state. Time is tokio's, so a test on a paused clock runs a
//! ten-second container in no time and can assert exactly when each call happened.
//!
//! The fake keeps Docker's rules the runner relies on: a name is unique, a listing filters by
//! every label given, a stopped container exits with 137, an exec needs a running container.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::bail;
use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::contract::{labels, ArtifactGuard, Artifacts, Driver, Found, Health, OutputStream, OwnerLabels, Transfer};
use super::events::ImageAction;
use super::plan::{BuildSpec, ContainerSpec, ImageSource, PlannedArtifact};

/// The exit code of a stopped (killed) container.
pub const STOPPED: i64 = 137;

/// What a fake container does once started.
#[derive(Debug, Clone)]
pub struct Behaviour {
    lines: Vec<String>,
    /// The exit code and how long after its start; `None` runs until stopped.
    exit: Option<(i64, Duration)>,
    /// Successive answers to `health` while it runs; the last one repeats.
    health: VecDeque<Health>,
}

impl Behaviour {
    /// Exits with `code` as soon as it starts.
    pub fn exits(code: i64) -> Behaviour {
        Behaviour::exits_after(code, Duration::ZERO)
    }

    /// Runs for `after`, then exits with `code`.
    pub fn exits_after(code: i64, after: Duration) -> Behaviour {
        Behaviour { lines: Vec::new(), exit: Some((code, after)), health: VecDeque::new() }
    }

    /// Runs until stopped: a hung tool, or a service.
    pub fn never_exits() -> Behaviour {
        Behaviour { lines: Vec::new(), exit: None, health: VecDeque::new() }
    }

    /// Writes these lines as soon as it starts.
    pub fn lines(mut self, lines: &[&str]) -> Behaviour {
        self.lines = lines.iter().map(|line| (*line).to_owned()).collect();
        self
    }

    /// Answers `health` with these, in turn, the last one repeating.
    pub fn health(mut self, answers: &[Health]) -> Behaviour {
        self.health = answers.iter().copied().collect();
        self
    }
}

/// One call the runner made on the fake driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    EnsureImage(String),
    BuildImage(String),
    EnsureNetwork(String),
    Create { id: String, name: String, step: String, spec_hash: String, kind: String },
    Start(String),
    Attach(String),
    Logs(String),
    Wait(String),
    Health(String),
    Stop(String),
    Remove(String),
    Find(Vec<(String, String)>),
    Exec { id: String, command: Vec<String>, env: Vec<String> },
    ReadFile { id: String, path: String },
    RemoveNetworksAndVolumes,
}

struct Container {
    id: String,
    name: String,
    labels: HashMap<String, String>,
    running: bool,
    exit_code: Option<i64>,
    behaviour: Behaviour,
    /// Cancelled when the container exits, by itself or stopped.
    exited: CancellationToken,
}

impl Container {
    fn found(&self) -> Found {
        Found {
            id: self.id.clone(),
            name: self.name.clone(),
            labels: self.labels.clone(),
            running: self.running,
            started: self.running || self.exit_code.is_some(),
            exit_code: self.exit_code,
        }
    }

    fn step(&self) -> &str {
        self.labels.get(labels::STEP).map(String::as_str).unwrap_or_default()
    }
}

#[derive(Default)]
struct State {
    calls: Vec<(Duration, Call)>,
    containers: Vec<Container>,
    /// Per step, the behaviours of the next containers created for it.
    scripts: HashMap<String, VecDeque<Behaviour>>,
    /// Per step, the results of the next execs into its container.
    exec_results: HashMap<String, VecDeque<(i64, Vec<String>)>>,
    images: HashMap<String, ImageAction>,
    /// Per tag, the output of its next build and the error it ends with, if any.
    builds: HashMap<String, (Vec<String>, Option<String>)>,
    /// Per step and path, the files its containers hold.
    files: HashMap<(String, String), Vec<u8>>,
    networks: Vec<String>,
    n_created: usize,
    peak_running: usize,
}

impl State {
    fn container(&mut self, id: &str) -> anyhow::Result<&mut Container> {
        match self.containers.iter_mut().find(|container| container.id == id) {
            Some(container) => Ok(container),
            None => bail!("no such container: {id}"),
        }
    }

    fn n_running(&self) -> usize {
        self.containers.iter().filter(|container| container.running).count()
    }
}

/// An in-memory [`Driver`].
pub struct FakeDriver {
    state: Arc<Mutex<State>>,
    /// When the fake was made: calls are recorded as offsets from it.
    epoch: Instant,
}

impl FakeDriver {
    /// A driver with no container, image or network, whose clock starts now.
    pub fn new() -> Arc<FakeDriver> {
        Arc::new(FakeDriver { state: Arc::default(), epoch: Instant::now() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("no test panics while holding the fake's lock")
    }

    fn record(&self, call: Call) {
        let at = self.epoch.elapsed();
        self.lock().calls.push((at, call));
    }

    /// The containers created for `step` behave like these, in turn; past the last one (or
    /// without a script) a container exits 0 at once.
    pub fn script(&self, step: &str, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.lock().scripts.entry(step.to_owned()).or_default().extend(behaviours);
    }

    /// Execs into the container of `step` return these (exit code, lines), in turn; past the
    /// last one, `(0, [])`.
    pub fn script_exec(&self, step: &str, results: impl IntoIterator<Item = (i64, &'static [&'static str])>) {
        let results = results.into_iter().map(|(code, lines)| (code, lines.iter().map(|line| (*line).to_owned()).collect()));
        self.lock().exec_results.entry(step.to_owned()).or_default().extend(results);
    }

    /// The containers of `step` hold a file at `path`.
    pub fn file(&self, step: &str, path: &str, contents: &[u8]) {
        self.lock().files.insert((step.to_owned(), path.to_owned()), contents.to_vec());
    }

    /// `ensure_image` of `reference` answers `action` (otherwise `Present`).
    pub fn image(&self, reference: &str, action: ImageAction) {
        self.lock().images.insert(reference.to_owned(), action);
    }

    /// Building `tag` prints `lines`, then fails with `error` when one is given (and tags the
    /// image otherwise); without this, a build prints nothing and succeeds.
    pub fn build(&self, tag: &str, lines: &[&str], error: Option<&str>) {
        let lines = lines.iter().map(|line| (*line).to_owned()).collect();
        self.lock().builds.insert(tag.to_owned(), (lines, error.map(str::to_owned)));
    }

    /// A container created before the run but never started (an agent killed between create
    /// and start): it has no output, and Docker would answer a wait on it with 0 at once.
    pub fn created(&self, name: &str, owner: &OwnerLabels) -> String {
        let mut state = self.lock();
        state.n_created += 1;
        let id = format!("p{}", state.n_created);
        let container = Container {
            id: id.clone(),
            name: name.to_owned(),
            labels: owner.to_map(),
            running: false,
            exit_code: None,
            behaviour: Behaviour::exits(0),
            exited: CancellationToken::new(),
        };
        state.containers.push(container);
        id
    }

    /// A container that exists before the run: `exit_code` `None` means it is running (and
    /// behaves like `behaviour` from now on), `Some` that it has exited with it.
    pub fn existing(&self, name: &str, owner: &OwnerLabels, exit_code: Option<i64>, behaviour: Behaviour) -> String {
        let mut state = self.lock();
        state.n_created += 1;
        let id = format!("p{}", state.n_created);
        let exited = CancellationToken::new();
        if exit_code.is_some() {
            exited.cancel();
        }
        let container = Container {
            id: id.clone(),
            name: name.to_owned(),
            labels: owner.to_map(),
            running: exit_code.is_none(),
            exit_code,
            behaviour,
            exited,
        };
        let running = container.running;
        state.containers.push(container);
        drop(state);
        if running {
            self.run(&id);
        }
        id
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.iter().map(|(_, call)| call.clone()).collect()
    }

    /// Every call so far, with when it happened (since the fake was made).
    pub fn calls_at(&self) -> Vec<(Duration, Call)> {
        self.lock().calls.clone()
    }

    /// The most containers that were running at once.
    pub fn peak_running(&self) -> usize {
        self.lock().peak_running
    }

    /// Lets the container run per its behaviour: exits it when its time comes.
    fn run(&self, id: &str) {
        let mut state = self.lock();
        let n_running = state.n_running();
        state.peak_running = state.peak_running.max(n_running);
        let Ok(container) = state.container(id) else { return };
        let Some((code, after)) = container.behaviour.exit else { return };
        // Exiting at once is settled here, so the runner's next question sees it exited.
        if after.is_zero() {
            container.running = false;
            container.exit_code = Some(code);
            container.exited.cancel();
            return;
        }
        let exited = container.exited.clone();
        let (shared, id) = (self.state.clone(), id.to_owned());
        tokio::spawn(async move {
            tokio::select! {
                // Stopped or removed first: the stop decided the exit.
                _ = exited.cancelled() => {}
                _ = tokio::time::sleep(after) => {
                    let mut state = shared.lock().expect("no test panics while holding the fake's lock");
                    if let Ok(container) = state.container(&id) {
                        container.running = false;
                        container.exit_code = Some(code);
                        container.exited.cancel();
                    }
                }
            }
        });
    }

    /// The container's lines, then the end of the stream when it exits.
    fn output(&self, id: &str) -> anyhow::Result<OutputStream> {
        let mut state = self.lock();
        let container = state.container(id)?;
        let lines: Vec<anyhow::Result<bytes::Bytes>> =
            container.behaviour.lines.iter().map(|line| Ok(bytes::Bytes::from(format!("{line}\n")))).collect();
        let exited = container.exited.clone();
        let end = futures_util::stream::once(async move { exited.cancelled_owned().await }).filter_map(|()| async { None });
        Ok(Box::pin(futures_util::stream::iter(lines).chain(end)))
    }
}

#[async_trait::async_trait]
impl Driver for FakeDriver {
    async fn ensure_image(&self, source: &ImageSource) -> anyhow::Result<ImageAction> {
        let reference = source.reference();
        self.record(Call::EnsureImage(reference.to_owned()));
        Ok(self.lock().images.get(reference).copied().unwrap_or(ImageAction::Present))
    }

    async fn build_image(&self, build: &BuildSpec) -> anyhow::Result<OutputStream> {
        self.record(Call::BuildImage(build.tag.clone()));
        let mut state = self.lock();
        let (lines, error) = state.builds.get(&build.tag).cloned().unwrap_or_default();
        if error.is_none() {
            state.images.insert(build.tag.clone(), ImageAction::Built);
        }
        let mut output: Vec<anyhow::Result<bytes::Bytes>> = lines.iter().map(|line| Ok(bytes::Bytes::from(format!("{line}\n")))).collect();
        output.extend(error.map(|error| Err(anyhow::anyhow!(error))));
        Ok(Box::pin(futures_util::stream::iter(output)))
    }

    async fn has_image(&self, reference: &str) -> anyhow::Result<bool> {
        Ok(self.lock().images.contains_key(reference))
    }

    async fn create(&self, name: &str, _spec: &ContainerSpec, owner: &OwnerLabels, _network: &str) -> anyhow::Result<String> {
        let mut state = self.lock();
        if state.containers.iter().any(|container| container.name == name) {
            bail!("the container name {name} is already in use");
        }
        state.n_created += 1;
        let id = format!("c{}", state.n_created);
        let behaviour = state.scripts.get_mut(&owner.step).and_then(VecDeque::pop_front).unwrap_or_else(|| Behaviour::exits(0));
        let labels = owner.to_map();
        let container = Container {
            id: id.clone(),
            name: name.to_owned(),
            labels,
            running: false,
            exit_code: None,
            behaviour,
            exited: CancellationToken::new(),
        };
        state.containers.push(container);
        drop(state);
        let (step, spec_hash, kind) = (owner.step.clone(), owner.spec_hash.clone(), owner.kind.clone());
        self.record(Call::Create { id: id.clone(), name: name.to_owned(), step, spec_hash, kind });
        Ok(id)
    }

    async fn start(&self, id: &str) -> anyhow::Result<()> {
        self.record(Call::Start(id.to_owned()));
        self.lock().container(id)?.running = true;
        self.run(id);
        Ok(())
    }

    async fn attach(&self, id: &str) -> anyhow::Result<OutputStream> {
        self.record(Call::Attach(id.to_owned()));
        self.output(id)
    }

    fn logs(&self, id: &str) -> OutputStream {
        self.record(Call::Logs(id.to_owned()));
        self.output(id).unwrap_or_else(|err| Box::pin(futures_util::stream::once(async move { Err(err) })))
    }

    async fn wait(&self, id: &str) -> anyhow::Result<i64> {
        self.record(Call::Wait(id.to_owned()));
        let exited = self.lock().container(id)?.exited.clone();
        exited.cancelled().await;
        let exit_code = self.lock().container(id)?.exit_code;
        exit_code.ok_or_else(|| anyhow::anyhow!("container {id} exited without a code"))
    }

    async fn health(&self, id: &str) -> anyhow::Result<(bool, Health)> {
        self.record(Call::Health(id.to_owned()));
        let mut state = self.lock();
        let container = state.container(id)?;
        if !container.running {
            return Ok((false, Health::None));
        }
        let answers = &mut container.behaviour.health;
        let health = if answers.len() > 1 { answers.pop_front() } else { answers.front().copied() };
        Ok((true, health.unwrap_or(Health::None)))
    }

    async fn stop(&self, id: &str, _grace: Duration) -> anyhow::Result<()> {
        self.record(Call::Stop(id.to_owned()));
        let mut state = self.lock();
        let container = state.container(id)?;
        if container.running {
            container.running = false;
            container.exit_code = Some(STOPPED);
            container.exited.cancel();
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> anyhow::Result<()> {
        self.record(Call::Remove(id.to_owned()));
        let mut state = self.lock();
        // Docker's forced removal kills a running container; an unknown one is already gone.
        if let Some(index) = state.containers.iter().position(|container| container.id == id) {
            let container = state.containers.remove(index);
            container.exited.cancel();
        }
        Ok(())
    }

    async fn find(&self, wanted: &[(&str, &str)]) -> anyhow::Result<Vec<Found>> {
        self.record(Call::Find(wanted.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()));
        let state = self.lock();
        let matches =
            |container: &&Container| wanted.iter().all(|(key, value)| container.labels.get(*key).map(String::as_str) == Some(*value));
        Ok(state.containers.iter().filter(matches).map(Container::found).collect())
    }

    async fn exec(&self, id: &str, command: &[String], env: &[String]) -> anyhow::Result<(i64, Vec<String>)> {
        self.record(Call::Exec { id: id.to_owned(), command: command.to_vec(), env: env.to_vec() });
        let mut state = self.lock();
        let container = state.container(id)?;
        if !container.running {
            bail!("container {id} is not running");
        }
        let step = container.step().to_owned();
        Ok(state.exec_results.get_mut(&step).and_then(VecDeque::pop_front).unwrap_or((0, Vec::new())))
    }

    async fn read_file(&self, id: &str, path: &str, limit: u64) -> anyhow::Result<Vec<u8>> {
        self.record(Call::ReadFile { id: id.to_owned(), path: path.to_owned() });
        let mut state = self.lock();
        let step = state.container(id)?.step().to_owned();
        match state.files.get(&(step, path.to_owned())) {
            Some(contents) if contents.len() as u64 > limit => bail!("{path} is larger than {limit} bytes"),
            Some(contents) => Ok(contents.clone()),
            None => bail!("no file {path} in the container"),
        }
    }

    async fn ensure_network(&self, name: &str, _owner: &OwnerLabels) -> anyhow::Result<()> {
        self.record(Call::EnsureNetwork(name.to_owned()));
        let mut state = self.lock();
        if !state.networks.iter().any(|network| network == name) {
            state.networks.push(name.to_owned());
        }
        Ok(())
    }

    async fn remove_networks_and_volumes(&self, _labels: &[(&str, &str)]) -> anyhow::Result<Vec<String>> {
        self.record(Call::RemoveNetworksAndVolumes);
        Ok(std::mem::take(&mut self.lock().networks))
    }
}

/// A transfer report, built in one place so a change of [`Transfer`]'s fields is one edit.
pub fn transfer(done: u64, total: u64) -> Transfer {
    Transfer { done, total: Some(total), rate: 0.0, eta: None }
}

#[derive(Default)]
struct ArtifactState {
    /// Per artifact name, why fetching it fails.
    failures: HashMap<String, String>,
    /// Per artifact name, the (done, total) reports of its transfer.
    transfers: HashMap<String, Vec<(u64, u64)>>,
    cached: Vec<String>,
    fetched: Vec<String>,
}

/// An in-memory [`Artifacts`]: every fetch succeeds unless scripted to fail.
#[derive(Default)]
pub struct FakeArtifacts {
    state: Mutex<ArtifactState>,
}

impl FakeArtifacts {
    /// A store with nothing cached, where every fetch succeeds.
    pub fn new() -> Arc<FakeArtifacts> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, ArtifactState> {
        self.state.lock().expect("no test panics while holding the fake's lock")
    }

    /// Fetching the artifact `name` fails with `reason`.
    pub fn fail(&self, name: &str, reason: &str) {
        self.lock().failures.insert(name.to_owned(), reason.to_owned());
    }

    /// Fetching the artifact `name` reports these (done, total) transfers.
    pub fn transfers(&self, name: &str, reports: &[(u64, u64)]) {
        self.lock().transfers.insert(name.to_owned(), reports.to_vec());
    }

    /// The artifact with this sha256 is in the cache.
    pub fn cache(&self, sha256: &str) {
        self.lock().cached.push(sha256.to_owned());
    }

    /// The names of the artifacts `ensure` was called for, in order.
    pub fn fetched(&self) -> Vec<String> {
        self.lock().fetched.clone()
    }
}

#[async_trait::async_trait]
impl Artifacts for FakeArtifacts {
    async fn ensure(&self, artifact: &PlannedArtifact, progress: Box<dyn Fn(Transfer) + Send + Sync>) -> anyhow::Result<ArtifactGuard> {
        let (reports, failure) = {
            let mut state = self.lock();
            state.fetched.push(artifact.name.clone());
            (state.transfers.get(&artifact.name).cloned().unwrap_or_default(), state.failures.get(&artifact.name).cloned())
        };
        for (done, total) in reports {
            progress(transfer(done, total));
        }
        match failure {
            Some(reason) => bail!("{reason}"),
            None => Ok(Box::new(())),
        }
    }

    fn cached(&self, sha256: &str) -> bool {
        self.lock().cached.iter().any(|cached| cached == sha256)
    }
}
