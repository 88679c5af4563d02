//! Docker, behind the executor's [`Driver`] contract: the only module that speaks bollard.
//!
//! The client negotiates the API version, because bollard asks for a newer API than many
//! engines speak (Debian's 20.10 speaks 1.41; Photon 4 ships 24.0). Everything created here
//! carries the owner labels it is given; listings filter by them.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkCreateRequest, NetworkingConfig, PortBinding,
    RestartPolicy as DockerRestart, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ImportImageOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use crate::executor::contract::ImageAction;
use crate::executor::contract::{Driver, Found, Health, OutputStream, OwnerLabels};
use crate::executor::plan::{BuildSpec, ContainerSpec, ImageSource, MountSource, RestartPolicy};

mod build;

/// What the agent reports about Docker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerStatus {
    pub reachable: bool,
    pub version: String,
    pub api_version: String,
    pub error: String,
}

/// Asks the local engine (`DOCKER_HOST` or `/var/run/docker.sock`) for its version.
pub async fn status(timeout: Duration) -> DockerStatus {
    let probe = async {
        let docker = Docker::connect_with_local_defaults()?.negotiate_version().await?;
        docker.version().await
    };
    match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(version)) => DockerStatus {
            reachable: true,
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            error: String::new(),
        },
        Ok(Err(err)) => DockerStatus { error: err.to_string(), ..DockerStatus::default() },
        Err(_) => DockerStatus { error: format!("no answer within {timeout:?}"), ..DockerStatus::default() },
    }
}

/// The bollard implementation of the executor's driver.
#[derive(Clone)]
pub struct DockerDriver {
    docker: Docker,
}

impl DockerDriver {
    /// Connects to the local engine and negotiates the API version.
    ///
    /// # Errors
    /// When the engine does not answer.
    pub async fn connect() -> anyhow::Result<DockerDriver> {
        let docker = Docker::connect_with_local_defaults()
            .context("connecting to Docker")?
            .negotiate_version()
            .await
            .context("Docker does not answer (is dockerd running, and may this user use its socket?)")?;
        Ok(DockerDriver { docker })
    }

    async fn image_present(&self, reference: &str) -> bool {
        self.docker.inspect_image(reference).await.is_ok()
    }
}

fn label_filter(labels: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), labels.iter().map(|(key, value)| format!("{key}={value}")).collect())])
}

fn restart(policy: RestartPolicy) -> DockerRestart {
    let name = match policy {
        RestartPolicy::No => RestartPolicyNameEnum::NO,
        RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
        RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
        RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
    };
    DockerRestart { name: Some(name), maximum_retry_count: None }
}

#[async_trait::async_trait]
impl Driver for DockerDriver {
    async fn has_image(&self, reference: &str) -> anyhow::Result<bool> {
        match self.docker.inspect_image(reference).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(err) => Err(err).with_context(|| format!("asking Docker for image {reference}")),
        }
    }

    async fn ensure_image(&self, source: &ImageSource) -> anyhow::Result<ImageAction> {
        match source {
            ImageSource::Pull { reference, auth } => {
                if self.image_present(reference).await {
                    return Ok(ImageAction::Present);
                }
                let (image, tag) = match reference.rsplit_once(':') {
                    Some((image, tag)) if !tag.contains('/') => (image, tag),
                    _ => (reference.as_str(), "latest"),
                };
                let options = CreateImageOptionsBuilder::default().from_image(image).tag(tag).build();
                let credentials = auth.as_ref().map(|auth| bollard::auth::DockerCredentials {
                    username: Some(auth.username.clone()),
                    password: Some(auth.password.clone()),
                    ..Default::default()
                });
                let mut pull = self.docker.create_image(Some(options), None, credentials);
                while let Some(progress) = pull.next().await {
                    progress.with_context(|| format!("pulling {reference}"))?;
                }
                Ok(ImageAction::Pulled)
            }
            ImageSource::Load { tarball, tag } => {
                if self.image_present(tag).await {
                    return Ok(ImageAction::Present);
                }
                let file = tokio::fs::File::open(tarball).await.with_context(|| format!("opening {}", tarball.display()))?;
                let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
                let mut load = self.docker.import_image(ImportImageOptionsBuilder::default().build(), body, None);
                while let Some(progress) = load.next().await {
                    progress.with_context(|| format!("loading {}", tarball.display()))?;
                }
                if !self.image_present(tag).await {
                    bail!("{} loaded, but it does not provide {tag}", tarball.display());
                }
                Ok(ImageAction::Loaded)
            }
            ImageSource::Build(spec) => {
                if self.image_present(&spec.tag).await {
                    return Ok(ImageAction::Present);
                }
                let mut output = build::start(&self.docker, spec);
                while let Some(chunk) = output.next().await {
                    chunk?;
                }
                Ok(ImageAction::Built)
            }
        }
    }

    async fn build_image(&self, spec: &BuildSpec) -> anyhow::Result<OutputStream> {
        Ok(build::start(&self.docker, spec))
    }

    async fn create(&self, name: &str, spec: &ContainerSpec, owner: &OwnerLabels, network: &str) -> anyhow::Result<String> {
        let mut binds = Vec::new();
        for mount in &spec.mounts {
            let mode = if mount.read_only { ":ro" } else { "" };
            match &mount.source {
                MountSource::Host(path) => binds.push(format!("{}:{}{mode}", path.display(), mount.target)),
                MountSource::Volume(volume) => {
                    let labels = OwnerLabels { kind: "volume".into(), ..owner.clone() }.to_map();
                    self.docker
                        .create_volume(VolumeCreateRequest { name: Some(volume.clone()), labels: Some(labels), ..Default::default() })
                        .await
                        .with_context(|| format!("creating volume {volume}"))?;
                    binds.push(format!("{volume}:{}{mode}", mount.target));
                }
            }
        }
        let mut port_bindings = HashMap::new();
        for port in &spec.ports {
            port_bindings.insert(
                format!("{}/{}", port.container_port, port.protocol.as_str()),
                Some(vec![PortBinding { host_ip: port.host_ip.clone(), host_port: Some(port.host_port.to_string()) }]),
            );
        }
        let exposed: Vec<String> = port_bindings.keys().cloned().collect();
        let nanos = |duration: Duration| duration.as_nanos().min(i64::MAX as u128) as i64;
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: spec.entrypoint.clone(),
            cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
            env: Some(spec.env.iter().map(|var| format!("{}={}", var.name, var.value.expose())).collect()),
            labels: Some(owner.to_map()),
            working_dir: spec.workdir.clone(),
            user: spec.user.clone(),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            healthcheck: spec.healthcheck.as_ref().map(|health| HealthConfig {
                test: Some([vec!["CMD".to_owned()], health.command.clone()].concat()),
                interval: Some(nanos(health.interval)),
                timeout: Some(nanos(health.timeout)),
                retries: Some(i64::from(health.retries)),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                binds: Some(binds),
                port_bindings: Some(port_bindings),
                restart_policy: Some(restart(spec.restart)),
                memory: spec.memory_bytes.map(|bytes| bytes as i64),
                nano_cpus: spec.nano_cpus.map(|cpus| cpus as i64),
                network_mode: Some(network.to_owned()),
                // Capabilities the agent allowed (`[security]`); `privileged` is never set.
                cap_add: (!spec.capabilities.is_empty()).then(|| spec.capabilities.clone()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.to_owned(),
                    EndpointSettings { aliases: Some(vec![owner.step.clone()]), ..Default::default() },
                )])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        let created = self.docker.create_container(Some(options), body).await.with_context(|| format!("creating container {name}"))?;
        for extra in &spec.networks {
            self.docker
                .connect_network(extra, bollard::models::NetworkConnectRequest { container: created.id.clone(), ..Default::default() })
                .await
                .with_context(|| format!("connecting {name} to network {extra}"))?;
        }
        Ok(created.id)
    }

    async fn start(&self, id: &str) -> anyhow::Result<()> {
        self.docker.start_container(id, None).await.with_context(|| format!("starting container {id}"))
    }

    async fn attach(&self, id: &str) -> anyhow::Result<OutputStream> {
        let options = AttachContainerOptionsBuilder::default().stdout(true).stderr(true).stream(true).logs(false).build();
        let attached = self.docker.attach_container(id, Some(options)).await.with_context(|| format!("attaching to container {id}"))?;
        let stream = attached.output.map(|chunk| chunk.map(|output| output.into_bytes()).map_err(anyhow::Error::from));
        Ok(Box::pin(stream))
    }

    fn logs(&self, id: &str) -> OutputStream {
        let options = LogsOptionsBuilder::default().follow(true).stdout(true).stderr(true).build();
        let stream = self.docker.logs(id, Some(options)).map(|chunk| chunk.map(|output| output.into_bytes()).map_err(anyhow::Error::from));
        Box::pin(stream)
    }

    async fn wait(&self, id: &str) -> anyhow::Result<i64> {
        let mut wait = self.docker.wait_container(id, None);
        match wait.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(err)) => Err(err).with_context(|| format!("waiting for container {id}")),
            None => bail!("Docker ended the wait for container {id} without an exit code"),
        }
    }

    async fn health(&self, id: &str) -> anyhow::Result<(bool, Health)> {
        let inspect = self.docker.inspect_container(id, None).await.with_context(|| format!("inspecting container {id}"))?;
        let state = inspect.state.unwrap_or_default();
        let running = state.running.unwrap_or(false);
        let health = match state.health.and_then(|health| health.status) {
            Some(bollard::models::HealthStatusEnum::HEALTHY) => Health::Healthy,
            Some(bollard::models::HealthStatusEnum::UNHEALTHY) => Health::Unhealthy,
            Some(bollard::models::HealthStatusEnum::STARTING) => Health::Starting,
            _ => Health::None,
        };
        Ok((running, health))
    }

    async fn stop(&self, id: &str, grace: Duration) -> anyhow::Result<()> {
        let options = StopContainerOptionsBuilder::default().t(grace.as_secs().min(i32::MAX as u64) as i32).build();
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(err) => Err(err).with_context(|| format!("stopping container {id}")),
        }
    }

    async fn remove(&self, id: &str) -> anyhow::Result<()> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(false).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(err) => Err(err).with_context(|| format!("removing container {id}")),
        }
    }

    async fn find(&self, labels: &[(&str, &str)]) -> anyhow::Result<Vec<Found>> {
        let options = ListContainersOptionsBuilder::default().all(true).filters(&label_filter(labels)).build();
        let containers = self.docker.list_containers(Some(options)).await.context("listing containers")?;
        let mut found = Vec::new();
        for summary in containers {
            let id = summary.id.unwrap_or_default();
            let running = summary.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
            let started = summary.state != Some(bollard::models::ContainerSummaryStateEnum::CREATED);
            let exit_code = if running {
                None
            } else {
                self.docker.inspect_container(&id, None).await.ok().and_then(|inspect| inspect.state?.exit_code)
            };
            found.push(Found {
                name: summary.names.unwrap_or_default().first().map(|name| name.trim_start_matches('/').to_owned()).unwrap_or_default(),
                labels: summary.labels.unwrap_or_default(),
                running,
                started,
                exit_code,
                id,
            });
        }
        Ok(found)
    }

    async fn exec(&self, id: &str, command: &[String], env: &[String]) -> anyhow::Result<(i64, Vec<String>)> {
        let config = bollard::models::ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(command.to_vec()),
            env: Some(env.to_vec()),
            ..Default::default()
        };
        let exec = self.docker.create_exec(id, config).await.with_context(|| format!("creating an exec in {id}"))?;
        let mut lines = Vec::new();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } =
            self.docker.start_exec(&exec.id, None).await.context("starting the exec")?
        {
            let mut buffer = crate::executor::events::LineBuffer::default();
            while let Some(chunk) = output.next().await {
                lines.extend(buffer.push(&chunk.context("reading exec output")?.into_bytes()));
            }
            lines.extend(buffer.finish());
        }
        let inspect = self.docker.inspect_exec(&exec.id).await.context("inspecting the exec")?;
        Ok((inspect.exit_code.unwrap_or(-1), lines))
    }

    async fn read_file(&self, id: &str, path: &str, limit: u64) -> anyhow::Result<Vec<u8>> {
        let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default().path(path).build();
        let mut archive = self.docker.download_from_container(id, Some(options));
        // The tar around the file: a header per entry and padding, well under this.
        let bound = limit.saturating_add(64 * 1024);
        let mut bytes = Vec::new();
        while let Some(chunk) = archive.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => bail!("no file {path} in the container"),
                Err(err) => return Err(anyhow::Error::new(err).context(format!("reading {path} from the container"))),
            };
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > bound {
                bail!("{path} is larger than {limit} bytes");
            }
        }
        file_from_tar(&bytes, path, limit)
    }

    async fn ensure_network(&self, name: &str, owner: &OwnerLabels) -> anyhow::Result<()> {
        let filters = HashMap::from([("name".to_owned(), vec![name.to_owned()])]);
        let existing = self.docker.list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filters).build())).await?;
        if existing.iter().any(|network| network.name.as_deref() == Some(name)) {
            return Ok(());
        }
        let labels = OwnerLabels { kind: "network".into(), step: String::new(), spec_hash: String::new(), ..owner.clone() };
        self.docker
            .create_network(NetworkCreateRequest { name: name.to_owned(), labels: Some(labels.to_map()), ..Default::default() })
            .await
            .with_context(|| format!("creating network {name}"))?;
        Ok(())
    }

    async fn remove_networks_and_volumes(&self, labels: &[(&str, &str)]) -> anyhow::Result<Vec<String>> {
        let filters = label_filter(labels);
        let mut removed = Vec::new();
        for network in self.docker.list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filters).build())).await? {
            let name = network.name.unwrap_or_default();
            self.docker.remove_network(&name).await.with_context(|| format!("removing network {name}"))?;
            removed.push(name);
        }
        let volumes = self.docker.list_volumes(Some(ListVolumesOptionsBuilder::default().filters(&filters).build())).await?;
        for volume in volumes.volumes.unwrap_or_default() {
            self.docker
                .remove_volume(&volume.name, None::<bollard::query_parameters::RemoveVolumeOptions>)
                .await
                .with_context(|| format!("removing volume {}", volume.name))?;
            removed.push(volume.name);
        }
        Ok(removed)
    }
}

/// The one regular file of the archive Docker answers a copy with, at most `limit` bytes.
fn file_from_tar(bytes: &[u8], path: &str, limit: u64) -> anyhow::Result<Vec<u8>> {
    let mut archive = tar::Archive::new(bytes);
    let mut entries = archive.entries().with_context(|| format!("reading {path} from the container"))?;
    let mut entry = match entries.next() {
        Some(entry) => entry.with_context(|| format!("reading {path} from the container"))?,
        None => bail!("no file {path} in the container"),
    };
    if !entry.header().entry_type().is_file() {
        bail!("{path} in the container is not a regular file");
    }
    if entry.size() > limit {
        bail!("{path} is larger than {limit} bytes");
    }
    let mut contents = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut contents).with_context(|| format!("reading {path} from the container"))?;
    Ok(contents)
}

#[cfg(test)]
mod read_file_tests {
    use super::*;

    fn archive(entry_type: tar::EntryType, contents: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(entry_type);
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, "ca.crt", contents).unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_copy_answer_gives_its_file_within_the_bound() {
        assert_eq!(file_from_tar(&archive(tar::EntryType::Regular, b"pem\n"), "/ca.crt", 10).unwrap(), b"pem\n");
        let large = file_from_tar(&archive(tar::EntryType::Regular, &[b'x'; 11]), "/ca.crt", 10).unwrap_err();
        assert_eq!(large.to_string(), "/ca.crt is larger than 10 bytes");
        let dir = file_from_tar(&archive(tar::EntryType::Directory, b""), "/certs", 10).unwrap_err();
        assert_eq!(dir.to_string(), "/certs in the container is not a regular file");
        assert_eq!(file_from_tar(&[0u8; 1024], "/x", 10).unwrap_err().to_string(), "no file /x in the container");
    }
}
