//! The master's configuration: `DATA_DIR/master.toml`, then command-line flags over it.
//!
//! Every field has a default, so an empty file is a valid configuration. `pmesh ca init`
//! writes the file with the listen address it was given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The master's settings, with the documented defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MasterConfig {
    /// Address the gRPC server binds.
    pub listen: SocketAddr,
    /// `host:port` by which agents and operators reach the master. Defaults to `listen`.
    pub advertise: Option<String>,
    /// How often the master dials each agent to record up or down.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// Lifetime of agent certificates; agents renew after two thirds of it.
    #[serde(with = "humantime_serde")]
    pub agent_cert_lifetime: Duration,
    /// Lifetime of admin credentials.
    #[serde(with = "humantime_serde")]
    pub admin_cert_lifetime: Duration,
    /// Lifetime of the master's serving certificate; it is re-issued at start when a third
    /// of it remains.
    #[serde(with = "humantime_serde")]
    pub master_cert_lifetime: Duration,
    /// How far back each certificate's not-before is set, for hosts whose clocks lag.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Default lifetime of join tokens.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// How long SIGTERM waits for in-flight calls before the master exits.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            advertise: None,
            check_interval: Duration::from_secs(10),
            agent_cert_lifetime: Duration::from_secs(30 * 24 * 3600),
            admin_cert_lifetime: Duration::from_secs(365 * 24 * 3600),
            master_cert_lifetime: Duration::from_secs(365 * 24 * 3600),
            clock_skew: Duration::from_secs(300),
            token_ttl: Duration::from_secs(15 * 60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl MasterConfig {
    /// The config file of a data directory.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("master.toml")
    }

    /// Reads `path`; a missing file yields the defaults.
    ///
    /// # Errors
    /// When the file is unreadable, or is not valid TOML for this struct (the message gives
    /// the line and column and the field).
    pub fn load(path: &Path) -> anyhow::Result<MasterConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("{}: invalid configuration", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(MasterConfig::default()),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The address others reach the master at.
    pub fn advertise(&self) -> String {
        self.advertise.clone().unwrap_or_else(|| self.listen.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_defaults_and_fields_parse() {
        let config: MasterConfig = toml::from_str("").unwrap();
        assert_eq!(config.check_interval, Duration::from_secs(10));
        let config: MasterConfig = toml::from_str("check_interval = \"2s\"\nagent_cert_lifetime = \"1h\"").unwrap();
        assert_eq!(config.check_interval, Duration::from_secs(2));
        assert_eq!(config.agent_cert_lifetime, Duration::from_secs(3600));
    }

    #[test]
    fn unknown_field_is_named() {
        let err = toml::from_str::<MasterConfig>("check_intervall = \"2s\"").unwrap_err();
        assert!(err.to_string().contains("check_intervall"), "{err}");
    }
}
