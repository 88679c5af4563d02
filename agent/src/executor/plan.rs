//! The executor's input: a pattern instance resolved into concrete steps.
//!
//! A plan is what is left of a pattern once parameters are substituted and templates rendered:
//! image references, commands, environment, mounts and probes, with nothing left to evaluate.
//! The runner knows nothing of YAML, parameters or templates; `compile` builds plans from
//! patterns.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pmesh_proto::pattern::Secret;
use regex::Regex;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// One application of a pattern to an instance.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The instance name: every container carries it as a label.
    pub instance: String,
    /// The agent running the plan, when the master dispatched it ("" for a local apply). Two
    /// agents can share one Docker engine (a lab host, the tests); the agent's name in labels
    /// and names keeps their instances apart.
    pub agent: String,
    /// `name@version` of the pattern.
    pub pattern: String,
    pub run_id: String,
    /// Binaries fetched into the cache before anything else (image tarballs among them).
    pub artifacts: Vec<PlannedArtifact>,
    pub images: Vec<ImageSource>,
    /// Extra networks of the instance (beyond its default one), created with its labels.
    pub networks: Vec<String>,
    pub steps: Vec<PlannedStep>,
    /// Steps run at destroy, before the instance's containers are removed.
    pub teardown: Vec<PlannedStep>,
    /// The most steps running at once.
    pub max_parallel: usize,
    /// The run's time limit: past it, every container is stopped and the run fails.
    pub timeout: Option<Duration>,
    /// Steps that were running when the agent stopped, with the output lines already
    /// reported: their containers are re-adopted, not restarted.
    pub resume: BTreeMap<String, u64>,
    /// What the run reports once every step succeeded.
    pub outputs: Vec<PlannedOutput>,
}

/// One of the pattern's outputs, as far as it is known before the run.
#[derive(Clone, PartialEq)]
pub struct PlannedOutput {
    pub name: String,
    pub kind: pmesh_proto::pattern::OutputType,
    /// Never in an event or a log; only in the agent's run record.
    pub secret: bool,
    pub source: OutputSource,
}

/// Where an output's value comes from.
#[derive(Clone, PartialEq)]
pub enum OutputSource {
    /// Rendered when the plan was compiled (`value:`).
    Value(serde_json::Value),
    /// A file read from the step's container after the run (`from:`).
    File { step: String, path: String },
}

impl std::fmt::Debug for PlannedOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match (&self.source, self.secret) {
            (OutputSource::Value(_), true) => "value <secret>".to_owned(),
            (OutputSource::Value(value), false) => format!("value {value}"),
            (OutputSource::File { step, path }, _) => format!("from {step}:{path}"),
        };
        f.debug_struct("PlannedOutput").field("name", &self.name).field("kind", &self.kind).field("source", &source).finish()
    }
}

/// A binary the run needs: where it lands (its cache path, by sha256) and where it comes from.
#[derive(Debug, Clone)]
pub struct PlannedArtifact {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// Where steps mount it from.
    pub path: PathBuf,
    /// URLs in order of preference, placeholders substituted; they may hold a secret (a
    /// download token), so they appear only redacted.
    pub urls: Vec<String>,
    /// A bearer token or `user:password`.
    pub auth: Option<Secret>,
    /// Set (to the instance's scope) when a service step mounts it: the service keeps
    /// running after the run ends, so the artifact must stay in the cache after it too.
    pub retain_for: Option<String>,
}

/// How an image gets onto the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ImageSource {
    /// Pulled unless present; `reference` is already rewritten through the mirror map.
    Pull { reference: String, auth: Option<RegistryAuth> },
    /// `docker load` from a tarball; `tag` is the reference it provides.
    Load { tarball: PathBuf, tag: String },
    /// Built from a context folder, tagged by what it is built from.
    Build(BuildSpec),
}

impl ImageSource {
    /// The reference steps run: the pulled reference, or the tag loaded or built.
    pub fn reference(&self) -> &str {
        match self {
            ImageSource::Pull { reference, .. } => reference,
            ImageSource::Load { tag, .. } => tag,
            ImageSource::Build(build) => &build.tag,
        }
    }
}

/// An image built on the agent: the context's files, the artifacts placed beside them, and
/// the build args. The tag is a digest of all of them (see `compile::image_build`), so a
/// present tag means an image built from exactly these inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildSpec {
    /// The image's name in the pattern; its build is reported as the step `image:NAME`.
    pub name: String,
    /// The context's files, exactly: (path in the context, path on disk). Packed from this
    /// list, not from a directory, so a file left over from an older version of the pattern
    /// never reaches a build its tag does not describe.
    pub files: Vec<(String, PathBuf)>,
    /// Relative to the context.
    pub dockerfile: String,
    /// Files placed at the context's root for the build: (name, path in the artifact cache).
    pub artifacts: Vec<(String, PathBuf)>,
    pub args: BTreeMap<String, String>,
    pub tag: String,
}

/// Registry credentials for a pull. The password is a secret.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct RegistryAuth {
    pub username: String,
    #[serde(skip)]
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// A step, ready to run.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub name: String,
    pub needs: Vec<String>,
    pub timeout: Option<Duration>,
    pub retries: RetryPolicy,
    /// Regexes whose first capture group is a percentage (`Progress: (\d+)%`).
    pub progress: Vec<Regex>,
    /// Set on each repetition of a repeated step: at most `parallel` of them run at once.
    pub group: Option<Group>,
    pub action: Action,
}

/// The repetitions of one repeated step (`deploy[esxi-01]`, `deploy[esxi-02]`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The repeated step's name in the pattern (`deploy`).
    pub step: String,
    /// At most this many of its repetitions run at once.
    pub parallel: usize,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// A one-shot container run to completion.
    Run(ContainerSpec),
    /// A long-running container; done once it is running (and healthy, if it has a check).
    Service(ContainerSpec),
    /// A command inside a service of the same instance.
    Exec { service: String, command: Vec<String>, env: Vec<EnvVar> },
    /// A probe retried until it succeeds or `deadline` passes.
    Wait { probe: Probe, deadline: Duration, interval: Duration },
}

/// How a container is made.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerSpec {
    pub image: String,
    /// Replaces the image's entrypoint when set.
    pub entrypoint: Option<Vec<String>>,
    pub command: Vec<String>,
    pub env: Vec<EnvVar>,
    pub mounts: Vec<MountSpec>,
    pub ports: Vec<PortSpec>,
    /// Extra networks; every container also joins the instance's network.
    pub networks: Vec<String>,
    pub restart: RestartPolicy,
    pub healthcheck: Option<HealthSpec>,
    pub memory_bytes: Option<u64>,
    pub nano_cpus: Option<u64>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// Digests of what the container reads by path (rendered files), so that a changed file
    /// changes the spec hash.
    pub inputs: BTreeMap<String, String>,
    /// How a running service takes new files without being replaced; absent from the hash
    /// when unset, so specs without it hash as they always did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload: Option<Reload>,
    /// Linux capabilities added to Docker's default set (`SYS_ADMIN`). Left out of the hash
    /// when empty, so a container made before capabilities existed keeps its hash.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

/// A service's reload: the command run in its container when only the files of its `dir`
/// mounts changed. Those files' digests are not in the spec hash; a record file says which
/// container last loaded which of them.
#[derive(Debug, Clone, Serialize)]
pub struct Reload {
    /// Run in the running container; in the spec hash, so a changed command replaces it.
    pub command: Vec<String>,
    /// The digests of the files of the `dir` mounts, by name.
    #[serde(skip)]
    pub inputs: BTreeMap<String, String>,
    /// Where the runner records `CONTAINER_ID DIGEST` once a container has them loaded.
    #[serde(skip)]
    pub record: PathBuf,
}

impl Reload {
    /// One digest of every reloadable input.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(&self.inputs).expect("plain data serialises");
        hex::encode(&Sha256::digest(json)[..12])
    }

    /// Whether container `id` has loaded the current inputs (as its record says).
    pub fn loaded_by(&self, id: &str) -> bool {
        std::fs::read_to_string(&self.record).is_ok_and(|text| text.trim() == format!("{id} {}", self.digest()))
    }

    /// Records that container `id` has the current inputs loaded.
    ///
    /// # Errors
    /// When the record cannot be written.
    pub fn record_loaded(&self, id: &str) -> anyhow::Result<()> {
        pmesh_rt::files::write_atomic(&self.record, format!("{id} {}\n", self.digest()).as_bytes(), 0o644)
    }
}

/// An environment variable; secret values are kept out of logs and events.
#[derive(Debug, Clone, Serialize)]
pub struct EnvVar {
    pub name: String,
    pub value: EnvValue,
}

/// A plain or secret value.
#[derive(Debug, Clone)]
pub enum EnvValue {
    Plain(String),
    Secret(Secret),
}

impl EnvValue {
    /// The value to hand to Docker.
    pub fn expose(&self) -> &str {
        match self {
            EnvValue::Plain(value) => value,
            EnvValue::Secret(secret) => secret.expose(),
        }
    }
}

impl Serialize for EnvValue {
    /// Serialised only into the spec hash, where a secret counts by its own hash.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            EnvValue::Plain(value) => serializer.serialize_str(value),
            EnvValue::Secret(secret) => serializer.serialize_str(&format!("secret:{}", hex::encode(Sha256::digest(secret.expose())))),
        }
    }
}

/// A bind mount of a host path, or a named volume owned by the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountSpec {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum MountSource {
    /// A host path: rendered files, artifacts.
    Host(PathBuf),
    /// A named volume, created with the instance's labels and removed at destroy.
    Volume(String),
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    pub container_port: u16,
    pub host_port: u16,
    pub host_ip: Option<String>,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RestartPolicy {
    No,
    OnFailure,
    UnlessStopped,
    Always,
}

/// A container healthcheck (`CMD` form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthSpec {
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
}

/// A wait step's probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Tcp {
        host: String,
        port: u16,
    },
    /// A GET of `url` answering `status`; over HTTPS pinned by `trust`, with basic auth and
    /// a condition on the JSON body when set.
    Http {
        url: String,
        status: u16,
        trust: Option<Trust>,
        auth: Option<(String, Secret)>,
        /// The path of a field in the JSON body, and the value it must have.
        json: Option<(String, String)>,
    },
    /// A DNS query to `server:port` for `name` of `record_type` (A, AAAA, SOA, …) that must
    /// answer NOERROR with at least one answer.
    Dns {
        server: String,
        port: u16,
        name: String,
        record_type: String,
    },
    /// A command in a service of the instance that must exit 0.
    Exec {
        service: String,
        command: Vec<String>,
    },
}

/// How an HTTPS probe trusts the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// PEM text of CA certificates.
    Ca(String),
    /// A PEM file of CA certificates on the agent host, read at each attempt.
    CaFile(PathBuf),
    /// The SHA-256 of the server's certificate.
    Thumbprint([u8; 32]),
}

/// Attempts and the backoff between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, at least 1.
    pub attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 1, backoff: Duration::from_secs(1) }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt` (2, 3, …), doubling, capped at five minutes.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(16);
        (self.backoff * 2u32.pow(doublings)).min(Duration::from_secs(300))
    }
}

impl Plan {
    /// The prefix of the instance's Docker names: `INSTANCE`, or `AGENT-INSTANCE`.
    pub fn scope(&self) -> String {
        scope(&self.agent, &self.instance)
    }
}

/// The prefix of an instance's Docker names on `agent` ("" for a local apply).
pub fn scope(agent: &str, instance: &str) -> String {
    if agent.is_empty() {
        instance.to_owned()
    } else {
        format!("{agent}-{instance}")
    }
}

impl ContainerSpec {
    /// The hash that decides convergence: equal specs leave a container alone, different
    /// ones replace it.
    pub fn spec_hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("plain data serialises");
        hex::encode(&Sha256::digest(json)[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(env: &str) -> ContainerSpec {
        ContainerSpec {
            image: "img".into(),
            entrypoint: None,
            command: vec!["run".into()],
            env: vec![EnvVar { name: "A".into(), value: EnvValue::Plain(env.into()) }],
            mounts: vec![],
            ports: vec![],
            networks: vec![],
            restart: RestartPolicy::No,
            healthcheck: None,
            memory_bytes: None,
            nano_cpus: None,
            workdir: None,
            user: None,
            inputs: BTreeMap::new(),
            reload: None,
            capabilities: vec![],
        }
    }

    /// The hash of a spec without capabilities is the one agents before them computed (frozen
    /// here), so upgrading the agent replaces no container; asking for one changes it.
    #[test]
    fn capabilities_change_the_hash_only_when_asked_for() {
        assert_eq!(spec("1").spec_hash(), "aedee421aa75857ad03dee9e");
        let mut with_capability = spec("1");
        with_capability.capabilities = vec!["SYS_ADMIN".into()];
        assert_ne!(with_capability.spec_hash(), spec("1").spec_hash());
        let mut with_another = spec("1");
        with_another.capabilities = vec!["NET_ADMIN".into()];
        assert_ne!(with_capability.spec_hash(), with_another.spec_hash());
    }

    #[test]
    fn hash_changes_with_inputs_only() {
        assert_eq!(spec("1").spec_hash(), spec("1").spec_hash());
        assert_ne!(spec("1").spec_hash(), spec("2").spec_hash());
        let mut with_file = spec("1");
        with_file.inputs.insert("zone".into(), "abc".into());
        assert_ne!(spec("1").spec_hash(), with_file.spec_hash());
    }

    #[test]
    fn reloadable_inputs_stay_out_of_the_hash_and_are_recorded_per_container() {
        let dir = tempfile::tempdir().unwrap();
        let reload = |digest: &str| Reload {
            command: vec!["rndc".into(), "reload".into()],
            inputs: BTreeMap::from([("dir:conf/zones".to_owned(), digest.to_owned())]),
            record: dir.path().join("reloaded/named"),
        };
        let with = |digest: &str| ContainerSpec { reload: Some(reload(digest)), ..spec("1") };
        assert_eq!(with("a").spec_hash(), with("b").spec_hash(), "a reloadable file does not replace");
        assert_ne!(with("a").spec_hash(), spec("1").spec_hash(), "adding a reload does");
        let mut other_command = with("a");
        other_command.reload.as_mut().unwrap().command = vec!["kill".into()];
        assert_ne!(other_command.spec_hash(), with("a").spec_hash());

        assert!(!reload("a").loaded_by("c1"), "nothing recorded yet");
        reload("a").record_loaded("c1").unwrap();
        assert!(reload("a").loaded_by("c1"));
        assert!(!reload("b").loaded_by("c1"), "other files");
        assert!(!reload("a").loaded_by("c2"), "another container");
    }

    #[test]
    fn secrets_hash_without_showing() {
        let mut with_secret = spec("1");
        with_secret.env[0].value = EnvValue::Secret(Secret::new("hunter2"));
        let json = serde_json::to_string(&with_secret).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(!format!("{with_secret:?}").contains("hunter2"));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy { attempts: 5, backoff: Duration::from_secs(2) };
        assert_eq!(policy.delay_before(2), Duration::from_secs(2));
        assert_eq!(policy.delay_before(3), Duration::from_secs(4));
        assert_eq!(policy.delay_before(30), Duration::from_secs(300));
    }
}
