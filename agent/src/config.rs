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
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            listen: None,
            renew_check_interval: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            docker_timeout: Duration::from_secs(3),
        }
    }
}

impl AgentConfig {
    /// The config file for a data directory: `/etc/pmesh/agent.toml` if present.
    pub fn default_path(data_dir: &Path) -> PathBuf {
        let system = PathBuf::from("/etc/pmesh/agent.toml");
        if system.exists() { system } else { data_dir.join("agent.toml") }
    }

    /// Reads `path`; a missing file yields the defaults.
    ///
    /// # Errors
    /// When the file is unreadable or invalid; the message names line, column and field.
    pub fn load(path: &Path) -> anyhow::Result<AgentConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("{}: invalid configuration", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(AgentConfig::default()),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
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
