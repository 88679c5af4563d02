//! The master's configuration: `DATA_DIR/master.toml`, then command-line flags over it.
//!
//! Every field has a default, so an empty file is a valid configuration. `pmesh ca init`
//! writes the file with the listen address it was given. Every value's range is checked at
//! load ([`MasterConfig::validate`]), so a bad one stops the master at start with the file,
//! the key and the reason, instead of panicking a background task later.

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
    #[serde(with = "pmesh_rt::config::duration")]
    pub check_interval: Duration,
    /// Lifetime of agent certificates; agents renew after two thirds of it.
    #[serde(with = "pmesh_rt::config::duration")]
    pub agent_cert_lifetime: Duration,
    /// Lifetime of admin credentials.
    #[serde(with = "pmesh_rt::config::duration")]
    pub admin_cert_lifetime: Duration,
    /// Lifetime of the master's serving certificate; it is re-issued at start when a third
    /// of it remains.
    #[serde(with = "pmesh_rt::config::duration")]
    pub master_cert_lifetime: Duration,
    /// How far back each certificate's not-before is set, for hosts whose clocks lag.
    #[serde(with = "pmesh_rt::config::duration")]
    pub clock_skew: Duration,
    /// Default lifetime of join tokens.
    #[serde(with = "pmesh_rt::config::duration")]
    pub token_ttl: Duration,
    /// How long SIGTERM waits for in-flight calls before the master exits.
    #[serde(with = "pmesh_rt::config::duration")]
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
    /// When the file is unreadable, is not valid TOML for this struct (the message gives the
    /// line and column and the field), or holds a value out of range (see [`Self::validate`]).
    pub fn load(path: &Path) -> anyhow::Result<MasterConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let config: MasterConfig = toml::from_str(&text).with_context(|| format!("{}: invalid configuration", path.display()))?;
                config.validate().with_context(|| format!("{}: invalid configuration", path.display()))?;
                Ok(config)
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(MasterConfig::default()),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Checks every value's range; `load` runs it, and whoever changes the configuration after
    /// `load` (command-line overrides) must run it again.
    ///
    /// # Errors
    /// The first value out of range, naming its key and the reason.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        within("check_interval", self.check_interval, Duration::from_millis(100), DAY)?;
        for (key, lifetime) in [
            ("agent_cert_lifetime", self.agent_cert_lifetime),
            ("admin_cert_lifetime", self.admin_cert_lifetime),
            ("master_cert_lifetime", self.master_cert_lifetime),
        ] {
            // Not past the CA's own ten years, and small enough that `now + lifetime` is a date.
            within(key, lifetime, Duration::from_secs(1), MAX_CERT_LIFETIME)?;
        }
        // The not-before is `now - clock_skew`: an hour covers any lagging clock.
        within("clock_skew", self.clock_skew, Duration::ZERO, HOUR)?;
        within("token_ttl", self.token_ttl, Duration::from_secs(1), 30 * DAY)?;
        within("shutdown_grace", self.shutdown_grace, Duration::ZERO, HOUR)?;
        if let Some(advertise) = &self.advertise {
            advertise_problem(advertise).map_or(Ok(()), |reason| Err(InvalidValue { key: "advertise".to_owned(), reason }))?;
        }
        Ok(())
    }

    /// The address others reach the master at.
    pub fn advertise(&self) -> String {
        self.advertise.clone().unwrap_or_else(|| self.listen.to_string())
    }
}

/// The CA's lifetime: a leaf certificate cannot outlive it.
const MAX_CERT_LIFETIME: Duration = Duration::from_secs(3650 * 24 * 3600);

pub use pmesh_rt::config::InvalidValue;
use pmesh_rt::config::{within, DAY, HOUR};

/// Why `HOST:PORT` is not an address others can dial, if it is not.
fn advertise_problem(advertise: &str) -> Option<String> {
    let shown: String = advertise.chars().take(80).flat_map(char::escape_debug).collect();
    let Some((host, port)) = advertise.rsplit_once(':') else {
        return Some(format!("`{shown}` is not HOST:PORT"));
    };
    let host = host.strip_prefix('[').and_then(|host| host.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() || host.chars().any(|character| character.is_whitespace() || character.is_control() || "/@?#".contains(character)) {
        return Some(format!("`{shown}` does not start with a host name or address"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => None,
        _ => Some(format!("`{shown}` does not end with a port from 1 to 65535")),
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

    /// `validate` on one key set in TOML: `Ok` or the message.
    fn check(toml_text: &str, expected: Result<(), &str>) {
        let config: MasterConfig = toml::from_str(toml_text).unwrap();
        assert_eq!(config.validate().map_err(|err| err.to_string()), expected.map_err(str::to_owned), "{toml_text}");
    }

    #[test]
    fn every_value_is_range_checked() {
        check("", Ok(()));
        check("check_interval = \"0s\"", Err("`check_interval`: must be longer than 0s (at least 100ms)"));
        check("check_interval = \"2days\"", Err("`check_interval`: 2d is out of range: at most 1d"));
        check("agent_cert_lifetime = \"0s\"", Err("`agent_cert_lifetime`: must be longer than 0s (at least 1s)"));
        check("agent_cert_lifetime = \"9s\"", Ok(()));
        check("admin_cert_lifetime = \"20000days\"", Err("`admin_cert_lifetime`: 20000d is out of range: at most 3650d"));
        check("master_cert_lifetime = \"0s\"", Err("`master_cert_lifetime`: must be longer than 0s (at least 1s)"));
        check("clock_skew = \"0s\"", Ok(()));
        check("clock_skew = \"2h\"", Err("`clock_skew`: 2h is out of range: at most 1h"));
        check("clock_skew = \"1000000years\"", Err("`clock_skew`: 365250000d is out of range: at most 1h"));
        check("token_ttl = \"0s\"", Err("`token_ttl`: must be longer than 0s (at least 1s)"));
        check("shutdown_grace = \"2h\"", Err("`shutdown_grace`: 2h is out of range: at most 1h"));
        check("advertise = \"master.lab:7443\"", Ok(()));
        check("advertise = \"[::1]:7443\"", Ok(()));
        check("advertise = \"master.lab\"", Err("`advertise`: `master.lab` is not HOST:PORT"));
        check("advertise = \"master.lab:0\"", Err("`advertise`: `master.lab:0` does not end with a port from 1 to 65535"));
        check("advertise = \"master.lab:99999\"", Err("`advertise`: `master.lab:99999` does not end with a port from 1 to 65535"));
        check("advertise = \":7443\"", Err("`advertise`: `:7443` does not start with a host name or address"));
        check("advertise = \"a\\nb:1\"", Err("`advertise`: `a\\nb:1` does not start with a host name or address"));
    }

    #[test]
    fn load_names_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.toml");
        std::fs::write(&path, "check_interval = \"0s\"\n").unwrap();
        let err = format!("{:#}", MasterConfig::load(&path).unwrap_err());
        assert_eq!(err, format!("{}: invalid configuration: `check_interval`: must be longer than 0s (at least 100ms)", path.display()));
    }
}
