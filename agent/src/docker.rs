//! Docker, behind a narrow interface: for now, whether the engine answers and its version.
//!
//! The client negotiates the API version, because bollard asks for a newer API than many
//! engines speak (Debian's 20.10 speaks 1.41; Photon 4 ships 24.0).

use std::time::Duration;

use bollard::Docker;

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
