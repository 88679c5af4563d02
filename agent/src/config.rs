//! The agent's configuration: `/etc/pmesh/agent.toml` when it exists, else
//! `DATA_DIR/agent.toml`, then command-line flags over it. Every field has a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The default data directory, the one the systemd unit makes writable.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/pmesh-agent";
/// The default port agents serve on.
pub const DEFAULT_PORT: u16 = 7444;

/// The agent's settings, with the documented defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Address the gRPC server binds [default: 0.0.0.0 and the port of the enrolled
    /// advertise address].
    pub listen: Option<SocketAddr>,
    /// How often the agent checks whether its certificate is due for renewal.
    #[serde(with = "humantime_serde")]
    pub renew_check_interval: Duration,
    /// How long SIGTERM waits for in-flight calls.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Timeout for each call to Docker while gathering facts.
    #[serde(with = "humantime_serde")]
    pub docker_timeout: Duration,
    /// How many steps of one run may run at once.
    pub max_parallel_steps: usize,
    /// How many runs may run at once; later ones wait their turn.
    pub max_concurrent_runs: usize,
    /// Image mirrors and registry logins.
    pub images: ImageConfig,
    /// The artifact cache and how artifacts are fetched.
    pub artifacts: ArtifactConfig,
}

/// The artifact cache and downloads (`[artifacts]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArtifactConfig {
    /// The cache directory [default: DATA_DIR/artifacts].
    pub cache_dir: Option<PathBuf>,
    /// The most bytes the cache keeps; past it, the least recently used artifacts no run is
    /// using are evicted [default: no limit].
    pub cache_max_bytes: Option<u64>,
    /// Downloads at once; more wait their turn.
    pub max_concurrent_downloads: usize,
    /// Attempts per source that move no bytes before the next source is tried.
    pub retries: u32,
    /// A source that sends nothing for this long is given up and retried.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// Extra CA certificates (PEM) trusted for HTTPS downloads, for mirrors with a private CA.
    pub ca_bundle: Option<PathBuf>,
}

impl Default for ArtifactConfig {
    fn default() -> Self {
        ArtifactConfig {
            cache_dir: None,
            cache_max_bytes: None,
            max_concurrent_downloads: 2,
            retries: 5,
            stall_timeout: Duration::from_secs(60),
            ca_bundle: None,
        }
    }
}

/// Where images come from: a rewrite map for mirrors and air-gapped labs, and registry logins.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageConfig {
    /// Reference prefixes and their replacements; the longest matching prefix wins, such as
    /// `"docker.io/" = "registry.lab:5000/"`.
    pub rewrite: std::collections::BTreeMap<String, String>,
    /// Logins by registry host (`registry.lab:5000`, or `docker.io`).
    pub registries: std::collections::BTreeMap<String, RegistryLogin>,
}

/// A registry login; the password is read from a file so the config holds no secret.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogin {
    pub username: String,
    pub password_file: PathBuf,
    /// Filled from `password_file` at load.
    #[serde(skip)]
    pub password: String,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .finish_non_exhaustive()
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            listen: None,
            renew_check_interval: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            docker_timeout: Duration::from_secs(3),
            max_parallel_steps: 4,
            max_concurrent_runs: 4,
            images: ImageConfig::default(),
            artifacts: ArtifactConfig::default(),
        }
    }
}

impl AgentConfig {
    /// The config file for a data directory: `/etc/pmesh/agent.toml` if present.
    pub fn default_path(data_dir: &Path) -> PathBuf {
        let system = PathBuf::from("/etc/pmesh/agent.toml");
        if system.exists() {
            system
        } else {
            data_dir.join("agent.toml")
        }
    }

    /// Reads `path`; a missing file yields the defaults.
    ///
    /// # Errors
    /// When the file is unreadable or invalid; the message names line, column and field.
    pub fn load(path: &Path) -> anyhow::Result<AgentConfig> {
        let mut config: AgentConfig = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("{}: invalid configuration", path.display()))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => AgentConfig::default(),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        for (registry, login) in &mut config.images.registries {
            login.password = std::fs::read_to_string(&login.password_file)
                .with_context(|| format!("{}: images.registries.{registry}.password_file", path.display()))?
                .trim_end()
                .to_owned();
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_fields() {
        let config: AgentConfig = toml::from_str("renew_check_interval = \"5s\"").unwrap();
        assert_eq!(config.renew_check_interval, Duration::from_secs(5));
        assert!(toml::from_str::<AgentConfig>("listen = \"nope\"").is_err());
        assert!(toml::from_str::<AgentConfig>("colour = 1").unwrap_err().to_string().contains("colour"));
    }
}
