//! Turns a pattern, its files and the supplied values into an executor [`Plan`]: parameters
//! substituted, templates rendered, images resolved through the mirror map, and every name
//! scoped to the instance. Rendering happens here, in memory; [`Materials::write`] puts the
//! rendered files on disk where the containers mount them.
//!
//! Secrets go only where a secret may go: whole `env` values (as secret env vars) and
//! templates. A secret anywhere else (a command line, an image reference) is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pmesh_proto::pattern::spec::{
    Action as SpecAction, Container, Image, MountSource as SpecMount, PortValue, Probe as SpecProbe, Protocol as SpecProtocol, Restart,
    Step,
};
use pmesh_proto::pattern::{self, ParamValue, Params, Pattern};
use sha2::{Digest, Sha256};

use crate::config::ImageConfig;
use crate::executor::plan::{
    scope, Action, ContainerSpec, EnvValue, EnvVar, HealthSpec, ImageSource, MountSource, MountSpec, Plan, PlannedArtifact, PlannedStep,
    PortSpec, Probe, Protocol, RegistryAuth, RestartPolicy, RetryPolicy,
};

/// Why a pattern could not be turned into a plan; the message names the step and field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct CompileError(String);

/// Files to write before the plan runs: rendered templates and copied pattern files, by
/// absolute path.
#[derive(Debug, Default)]
pub struct Materials {
    pub files: BTreeMap<PathBuf, Vec<u8>>,
}

impl Materials {
    /// Writes every file (mode 0644: containers read them as other users), atomically.
    ///
    /// # Errors
    /// When the disk fails.
    pub fn write(&self) -> anyhow::Result<()> {
        for (path, contents) in &self.files {
            pmesh_rt::files::write_atomic(path, contents, 0o644)?;
        }
        Ok(())
    }
}

/// What [`compile`] needs besides the pattern.
pub struct Inputs<'a> {
    pub files: &'a BTreeMap<String, Vec<u8>>,
    pub params: &'a Params,
    pub instance: &'a str,
    /// The dispatching agent's name, "" for a local apply (see `Plan::agent`).
    pub agent: &'a str,
    pub run_id: &'a str,
    /// `DATA_DIR/instances/INSTANCE`: rendered files go under `files/`, build contexts under
    /// `pattern/`.
    pub work_dir: &'a Path,
    pub images: &'a ImageConfig,
    /// Artifacts already in the cache, by name.
    pub artifacts: &'a BTreeMap<String, PathBuf>,
    pub max_parallel: usize,
}

/// A compiled plan, its files, and the secret values to redact from its output.
pub struct Compiled {
    pub plan: Plan,
    pub materials: Materials,
    pub secrets: Vec<String>,
}

fn secret_names(params: &Params) -> BTreeSet<String> {
    params.iter().filter(|(_, value)| matches!(value, ParamValue::Secret(_))).map(|(name, _)| name.clone()).collect()
}

/// Substitutes `${param}` in text where no secret may go.
fn text(value: &str, params: &Params, secrets: &BTreeSet<String>, place: &str) -> Result<String, CompileError> {
    if let Some(secret) = secrets.iter().find(|name| value.contains(&format!("${{{name}}}"))) {
        return Err(CompileError(format!("{place}: secret param {secret} may only be used in env values and templates")));
    }
    pattern::substitute(value, params).map_err(|err| CompileError(format!("{place}: {err}")))
}

fn texts(values: &[String], params: &Params, secrets: &BTreeSet<String>, place: &str) -> Result<Vec<String>, CompileError> {
    values.iter().map(|value| text(value, params, secrets, place)).collect()
}

fn port(value: &PortValue, params: &Params, place: &str) -> Result<u16, CompileError> {
    match value {
        PortValue::Number(number) => Ok(*number),
        // The model keeps the param's name (`"${listen_port}"` in YAML).
        PortValue::Param(name) => {
            let resolved = params
                .get(name)
                .and_then(ParamValue::as_text)
                .ok_or_else(|| CompileError(format!("{place}: param {name} has no value")))?;
            resolved.parse().map_err(|_| CompileError(format!("{place}: param {name} = {resolved:?} is not a port")))
        }
    }
}

/// Rewrites an image reference through the mirror map: the longest matching prefix wins.
pub fn rewrite_image(reference: &str, rewrites: &BTreeMap<String, String>) -> String {
    rewrites
        .iter()
        .filter(|(from, _)| reference.starts_with(from.as_str()))
        .max_by_key(|(from, _)| from.len())
        .map(|(from, to)| format!("{to}{}", &reference[from.len()..]))
        .unwrap_or_else(|| reference.to_owned())
}

/// The registry host of a reference (`registry.lab:5000/x/y:1` → `registry.lab:5000`).
fn registry_of(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// Compiles `pattern` for `inputs`.
///
/// # Errors
/// [`CompileError`] naming the step and field whose value cannot be resolved.
pub fn compile(pattern: &Pattern, inputs: &Inputs<'_>) -> Result<Compiled, CompileError> {
    let params = inputs.params;
    let secrets = secret_names(params);
    let mut materials = Materials::default();
    let files_dir = inputs.work_dir.join("files");

    // Files: rendered or copied, by destination name.
    let mut file_digests = BTreeMap::new();
    for file in &pattern.files {
        let source = inputs.files.get(&file.path).ok_or_else(|| CompileError(format!("files: {} is not in the pattern", file.path)))?;
        let contents = if file.template {
            let template = std::str::from_utf8(source).map_err(|_| CompileError(format!("files: {} is not UTF-8", file.path)))?;
            pattern::render(template, params).map_err(|err| CompileError(format!("files: {}: {err}", file.path)))?.into_bytes()
        } else {
            source.clone()
        };
        file_digests.insert(file.dest().to_owned(), hex::encode(Sha256::digest(&contents)));
        materials.files.insert(files_dir.join(file.dest()), contents);
    }

    // Images, by the name steps use.
    let mut images = Vec::new();
    let mut image_refs = BTreeMap::new();
    for (name, image) in &pattern.images {
        let place = format!("images.{name}");
        let source = match image {
            Image::Ref(reference) => {
                let reference = rewrite_image(&text(reference, params, &secrets, &place)?, &inputs.images.rewrite);
                let auth = inputs
                    .images
                    .registries
                    .get(registry_of(&reference))
                    .map(|login| RegistryAuth { username: login.username.clone(), password: login.password.clone() });
                ImageSource::Pull { reference, auth }
            }
            Image::Load(artifact) => {
                let tarball = inputs
                    .artifacts
                    .get(artifact)
                    .ok_or_else(|| CompileError(format!("{place}: artifact {artifact} is not in the cache")))?;
                ImageSource::Load {
                    tarball: tarball.clone(),
                    tag: format!("pmesh/{}-{name}:{}", pattern.metadata.name, pattern.metadata.version),
                }
            }
            Image::Build(build) => {
                let context = inputs.work_dir.join("pattern").join(&build.context);
                let prefix = format!("{}/", build.context.trim_end_matches('/'));
                for (path, contents) in inputs.files.iter().filter(|(path, _)| path.starts_with(&prefix)) {
                    materials.files.insert(inputs.work_dir.join("pattern").join(path), contents.clone());
                }
                let digest = hex::encode(
                    &Sha256::digest(
                        inputs
                            .files
                            .iter()
                            .filter(|(path, _)| path.starts_with(&prefix))
                            .flat_map(|(path, contents)| [path.as_bytes(), contents.as_slice()].concat())
                            .collect::<Vec<u8>>(),
                    )[..6],
                );
                ImageSource::Build {
                    context,
                    dockerfile: build.dockerfile.clone(),
                    tag: format!("pmesh/{}-{name}:{digest}", pattern.metadata.name),
                }
            }
        };
        let reference = match &source {
            ImageSource::Pull { reference, .. } => reference.clone(),
            ImageSource::Load { tag, .. } | ImageSource::Build { tag, .. } => tag.clone(),
        };
        image_refs.insert(name.clone(), reference);
        images.push(source);
    }

    let mut networks = BTreeSet::new();
    let mut steps = Vec::new();
    let mut teardown = Vec::new();
    for (name, step) in &pattern.steps {
        let place = format!("steps.{name}");
        let action = match &step.action {
            SpecAction::Run(container) | SpecAction::Teardown(container) => {
                Action::Run(container_spec(container, &place, inputs, &image_refs, &file_digests, &secrets, &mut networks)?)
            }
            SpecAction::Service(service) => {
                let mut spec = container_spec(&service.container, &place, inputs, &image_refs, &file_digests, &secrets, &mut networks)?;
                spec.restart = match service.restart {
                    Restart::No => RestartPolicy::No,
                    Restart::OnFailure => RestartPolicy::OnFailure,
                    Restart::Always => RestartPolicy::Always,
                    Restart::UnlessStopped => RestartPolicy::UnlessStopped,
                };
                for mapping in &service.ports {
                    let container_port = mapping.container;
                    let host_port = match &mapping.host {
                        Some(value) => port(value, params, &format!("{place}.ports"))?,
                        None => container_port,
                    };
                    let protocol = match mapping.protocol {
                        SpecProtocol::Tcp => Protocol::Tcp,
                        SpecProtocol::Udp => Protocol::Udp,
                    };
                    spec.ports.push(PortSpec { container_port, host_port, host_ip: None, protocol });
                }
                spec.healthcheck = match &service.healthcheck {
                    Some(check) => Some(HealthSpec {
                        command: texts(&check.command, params, &secrets, &format!("{place}.healthcheck"))?,
                        interval: check.interval,
                        timeout: check.timeout,
                        retries: check.retries,
                    }),
                    None => None,
                };
                Action::Service(spec)
            }
            SpecAction::Exec(exec) => Action::Exec {
                service: exec.service.clone(),
                command: texts(&exec.command, params, &secrets, &format!("{place}.command"))?,
                env: env(&exec.env, params, &format!("{place}.env"))?,
            },
            SpecAction::Wait(wait) => {
                Action::Wait { probe: probe(&wait.probe, params, &secrets, &place)?, deadline: wait.deadline, interval: wait.interval }
            }
        };
        let planned = PlannedStep {
            name: name.clone(),
            needs: step.needs.clone(),
            timeout: step.timeout,
            retries: step
                .retries
                .as_ref()
                .map(|retries| RetryPolicy { attempts: retries.attempts.max(1), backoff: retries.backoff })
                .unwrap_or_default(),
            progress: progress_patterns(step, &place)?,
            action,
        };
        if matches!(step.action, SpecAction::Teardown(_)) {
            teardown.push(planned);
        } else {
            steps.push(planned);
        }
    }

    let mut artifacts = Vec::new();
    for (name, artifact) in &pattern.artifacts {
        let place = format!("artifacts.{name}");
        let path = inputs.artifacts.get(name).ok_or_else(|| CompileError(format!("{place}: no cache path for it")))?;
        // A URL may hold a download token: placeholders here may be secrets, and the runner
        // redacts every secret value from what it reports.
        let urls = artifact
            .urls
            .iter()
            .map(|url| pattern::substitute(url, params).map_err(|err| CompileError(format!("{place}.url: {err}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let auth = match &artifact.auth {
            None => None,
            // An optional token left out means an anonymous download.
            Some(param) => match params.get(param) {
                Some(ParamValue::Secret(secret)) => Some(secret.clone()),
                None => None,
                Some(_) => return Err(CompileError(format!("{place}.auth: param {param} is not a secret"))),
            },
        };
        artifacts.push(PlannedArtifact {
            name: name.clone(),
            sha256: artifact.sha256.clone(),
            size: artifact.size,
            path: path.clone(),
            urls,
            auth,
            retain_for: None,
        });
    }
    // An artifact a service mounts is in use for as long as the service runs, past the run.
    let scope = scope(inputs.agent, inputs.instance);
    for artifact in &mut artifacts {
        let mounted_by_service = steps.iter().any(|step| match &step.action {
            Action::Service(spec) => spec.mounts.iter().any(|mount| mount.source == MountSource::Host(artifact.path.clone())),
            _ => false,
        });
        if mounted_by_service {
            artifact.retain_for = Some(scope.clone());
        }
    }

    let plan = Plan {
        instance: inputs.instance.to_owned(),
        artifacts,
        agent: inputs.agent.to_owned(),
        pattern: format!("{}@{}", pattern.metadata.name, pattern.metadata.version),
        run_id: inputs.run_id.to_owned(),
        images,
        networks: networks.into_iter().collect(),
        steps,
        teardown,
        max_parallel: inputs.max_parallel,
        resume: BTreeMap::new(),
        timeout: None,
    };
    let secret_values = params
        .iter()
        .filter_map(|(_, value)| match value {
            ParamValue::Secret(secret) => Some(secret.expose().to_owned()),
            _ => None,
        })
        .collect();
    Ok(Compiled { plan, materials, secrets: secret_values })
}

fn progress_patterns(step: &Step, place: &str) -> Result<Vec<regex::Regex>, CompileError> {
    let patterns: &[String] = match &step.action {
        SpecAction::Run(container) | SpecAction::Teardown(container) => &container.progress,
        SpecAction::Service(service) => &service.container.progress,
        SpecAction::Exec(exec) => &exec.progress,
        SpecAction::Wait(_) => &[],
    };
    patterns.iter().map(|pattern| regex::Regex::new(pattern).map_err(|err| CompileError(format!("{place}.progress: {err}")))).collect()
}

fn env(values: &BTreeMap<String, String>, params: &Params, place: &str) -> Result<Vec<EnvVar>, CompileError> {
    values
        .iter()
        .map(|(name, raw)| {
            let whole_secret = params.iter().find_map(|(param, value)| match value {
                ParamValue::Secret(secret) if raw == &format!("${{{param}}}") => Some(secret.clone()),
                _ => None,
            });
            let value = match whole_secret {
                Some(secret) => EnvValue::Secret(secret),
                None => {
                    let substituted = pattern::substitute(raw, params).map_err(|err| CompileError(format!("{place}.{name}: {err}")))?;
                    // A secret mixed into other text is still a secret.
                    if params.iter().any(|(param, value)| matches!(value, ParamValue::Secret(_)) && raw.contains(&format!("${{{param}}}")))
                    {
                        EnvValue::Secret(pattern::Secret::new(substituted))
                    } else {
                        EnvValue::Plain(substituted)
                    }
                }
            };
            Ok(EnvVar { name: name.clone(), value })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn container_spec(
    container: &Container,
    place: &str,
    inputs: &Inputs<'_>,
    image_refs: &BTreeMap<String, String>,
    file_digests: &BTreeMap<String, String>,
    secrets: &BTreeSet<String>,
    networks: &mut BTreeSet<String>,
) -> Result<ContainerSpec, CompileError> {
    let params = inputs.params;
    let image =
        image_refs.get(&container.image).ok_or_else(|| CompileError(format!("{place}.image: no image named {}", container.image)))?;
    let mut mounts = Vec::new();
    let mut used_inputs = BTreeMap::new();
    for mount in &container.mounts {
        let target = text(&mount.target, params, secrets, &format!("{place}.mounts"))?;
        let (source, read_only) = match &mount.source {
            SpecMount::File(name) => {
                let digest = file_digests.get(name).ok_or_else(|| CompileError(format!("{place}.mounts: no file with dest {name}")))?;
                used_inputs.insert(format!("file:{name}"), digest.clone());
                (MountSource::Host(inputs.work_dir.join("files").join(name)), mount.readonly)
            }
            SpecMount::Artifact(name) => {
                let path = inputs
                    .artifacts
                    .get(name)
                    .ok_or_else(|| CompileError(format!("{place}.mounts: artifact {name} is not in the cache")))?;
                (MountSource::Host(path.clone()), true)
            }
            SpecMount::Volume(name) => {
                (MountSource::Volume(format!("pmesh-{}-{name}", scope(inputs.agent, inputs.instance))), mount.readonly)
            }
        };
        mounts.push(MountSpec { source, target, read_only });
    }
    let scoped_networks: Vec<String> =
        container.networks.iter().map(|name| format!("pmesh-{}-{name}", scope(inputs.agent, inputs.instance))).collect();
    networks.extend(scoped_networks.iter().cloned());
    Ok(ContainerSpec {
        image: image.clone(),
        entrypoint: (!container.command.is_empty())
            .then(|| texts(&container.command, params, secrets, &format!("{place}.command")))
            .transpose()?,
        command: texts(&container.args, params, secrets, &format!("{place}.args"))?,
        env: env(&container.env, params, &format!("{place}.env"))?,
        mounts,
        ports: Vec::new(),
        networks: scoped_networks,
        restart: RestartPolicy::No,
        healthcheck: None,
        memory_bytes: container.resources.memory,
        nano_cpus: container.resources.cpus.map(|cpus| (cpus * 1e9) as u64),
        workdir: None,
        user: None,
        inputs: used_inputs,
    })
}

fn probe(spec: &SpecProbe, params: &Params, secrets: &BTreeSet<String>, place: &str) -> Result<Probe, CompileError> {
    let place = format!("{place}.probe");
    Ok(match spec {
        SpecProbe::Tcp { host, port: value } => {
            Probe::Tcp { host: text(host, params, secrets, &place)?, port: port(value, params, &place)? }
        }
        SpecProbe::Http { url, status } => Probe::Http { url: text(url, params, secrets, &place)?, status: *status },
        SpecProbe::Dns { server, port: value, name, record_type } => Probe::Dns {
            server: text(server, params, secrets, &place)?,
            port: port(value, params, &place)?,
            name: text(name, params, secrets, &place)?,
            record_type: record_type.clone(),
        },
        SpecProbe::Exec { service, command } => Probe::Exec { service: service.clone(), command: texts(command, params, secrets, &place)? },
    })
}

/// The default parallelism when the config does not set one.
pub const DEFAULT_MAX_PARALLEL: usize = 4;

/// A run id: time-ordered and unique enough for one agent.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO);
    format!("r{}{:04x}", now.as_secs(), rand::random::<u16>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_rewrites_take_the_longest_prefix() {
        let rewrites = BTreeMap::from([
            ("docker.io/".to_string(), "mirror.lab/".to_string()),
            ("internetsystemsconsortium/bind9:9.18".to_string(), "pmesh-test/tools:bookworm-1".to_string()),
        ]);
        assert_eq!(rewrite_image("internetsystemsconsortium/bind9:9.18", &rewrites), "pmesh-test/tools:bookworm-1");
        assert_eq!(rewrite_image("docker.io/library/alpine:3", &rewrites), "mirror.lab/library/alpine:3");
        assert_eq!(rewrite_image("quay.io/x:1", &rewrites), "quay.io/x:1");
    }

    /// Artifacts: URL placeholders (a secret among them) substituted, the auth secret taken,
    /// mounts read-only from the cache path, and kept past the run only when a service
    /// mounts them.
    #[test]
    fn artifacts_are_planned_with_their_sources_and_kept_for_services() {
        let yaml = r#"
apiVersion: pmesh/v1
kind: Pattern
metadata: {name: two, version: 1.0.0, description: d, category: basic-tool}
params:
  token: {type: secret, required: true, description: t}
artifacts:
  iso:
    url: "https://depot.lab/iso?token=${token}"
    sha256: 1111111111111111111111111111111111111111111111111111111111111111
    size: 10
    auth: token
  tools:
    urls: ["https://a.lab/t.tar", "https://b.lab/t.tar"]
    sha256: 2222222222222222222222222222222222222222222222222222222222222222
    size: 20
images:
  base: {ref: "debian:12"}
steps:
  serve:
    kind: service
    image: base
    command: [sleep, infinity]
    mounts: [{artifact: iso, target: /iso}]
  once:
    kind: run
    image: base
    command: ["true"]
    mounts: [{artifact: tools, target: /tools}]
"#;
        let files = BTreeMap::from([("pattern.yaml".to_owned(), yaml.as_bytes().to_vec())]);
        let pattern = pattern::parse(&files).expect("the pattern parses");
        let supplied = pattern::values_from_yaml("values", "token: s3cr3t-token").expect("values");
        let params = pattern::validate_values(&pattern, &supplied).expect("valid values");
        let cache = |sha: &str| PathBuf::from(format!("/cache/sha256/{sha}"));
        let artifact_paths = BTreeMap::from([("iso".to_owned(), cache("1111")), ("tools".to_owned(), cache("2222"))]);
        let images = ImageConfig::default();
        let inputs = Inputs {
            files: &files,
            params: &params,
            instance: "lab",
            agent: "pc-1",
            run_id: "r1",
            work_dir: Path::new("/data/instances/lab"),
            images: &images,
            artifacts: &artifact_paths,
            max_parallel: 4,
        };
        let compiled = compile(&pattern, &inputs).expect("it compiles");
        let planned: BTreeMap<&str, &PlannedArtifact> =
            compiled.plan.artifacts.iter().map(|artifact| (artifact.name.as_str(), artifact)).collect();
        assert_eq!(planned["iso"].urls, ["https://depot.lab/iso?token=s3cr3t-token"]);
        assert_eq!(planned["iso"].auth.as_ref().map(|secret| secret.expose().to_owned()).as_deref(), Some("s3cr3t-token"));
        assert_eq!(planned["iso"].retain_for.as_deref(), Some("pc-1-lab"), "a service mounts it");
        assert_eq!(planned["tools"].urls, ["https://a.lab/t.tar", "https://b.lab/t.tar"]);
        assert_eq!((planned["tools"].auth.is_none(), planned["tools"].retain_for.is_none()), (true, true));
        assert!(compiled.secrets.contains(&"s3cr3t-token".to_owned()), "the URL's token is redacted from events");
        let serve = compiled.plan.steps.iter().find(|step| step.name == "serve").expect("serve");
        let Action::Service(spec) = &serve.action else { panic!("serve is a service") };
        assert!(
            spec.mounts.iter().any(|mount| mount.source == MountSource::Host(cache("1111")) && mount.read_only && mount.target == "/iso"),
            "{:?}",
            spec.mounts
        );
    }

    #[test]
    fn registries() {
        assert_eq!(registry_of("registry.lab:5000/x/y:1"), "registry.lab:5000");
        assert_eq!(registry_of("localhost/x"), "localhost");
        assert_eq!(registry_of("library/alpine"), "docker.io");
        assert_eq!(registry_of("alpine"), "docker.io");
    }
}
