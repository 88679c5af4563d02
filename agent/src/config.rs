//! The agent's configuration: `/etc/pmesh/agent.toml` when it exists, else
//! `DATA_DIR/agent.toml`, then command-line flags over it. Every field has a default, and every
//! value's range is checked at load ([`AgentConfig::validate`]): a zero interval would panic a
//! background task while the daemon kept serving, so the agent refuses to start instead.

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
    #[serde(with = "pmesh_rt::config::duration")]
    pub renew_check_interval: Duration,
    /// How long SIGTERM waits for in-flight calls.
    #[serde(with = "pmesh_rt::config::duration")]
    pub shutdown_grace: Duration,
    /// Timeout for each call to Docker while gathering facts.
    #[serde(with = "pmesh_rt::config::duration")]
    pub docker_timeout: Duration,
    /// How many steps of one run may run at once.
    #[serde(deserialize_with = "unsigned::usize")]
    pub max_parallel_steps: usize,
    /// How many runs may run at once; later ones wait their turn.
    #[serde(deserialize_with = "unsigned::usize")]
    pub max_concurrent_runs: usize,
    /// Image mirrors and registry logins.
    pub images: ImageConfig,
    /// The artifact cache and how artifacts are fetched.
    pub artifacts: ArtifactConfig,
    /// What patterns may ask of this host beyond an ordinary container (`[security]`).
    pub security: crate::security::SecurityConfig,
}

/// The artifact cache and downloads (`[artifacts]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArtifactConfig {
    /// The cache directory [default: DATA_DIR/artifacts].
    pub cache_dir: Option<PathBuf>,
    /// The most bytes the cache keeps; past it, the least recently used artifacts no run is
    /// using are evicted [default: no limit].
    #[serde(deserialize_with = "unsigned::optional_u64")]
    pub cache_max_bytes: Option<u64>,
    /// Downloads at once; more wait their turn.
    #[serde(deserialize_with = "unsigned::usize")]
    pub max_concurrent_downloads: usize,
    /// Attempts per source that move no bytes before the next source is tried.
    #[serde(deserialize_with = "unsigned::u32")]
    pub retries: u32,
    /// A source that sends nothing for this long is given up and retried.
    #[serde(with = "pmesh_rt::config::duration")]
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
            security: crate::security::SecurityConfig::default(),
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
    /// When the file is unreadable or invalid, or holds a value out of range; the message names
    /// the file, and the line, column and field or the key and the reason.
    pub fn load(path: &Path) -> anyhow::Result<AgentConfig> {
        let mut config: AgentConfig = match std::fs::read_to_string(path) {
            Ok(text) => {
                let config: AgentConfig = toml::from_str(&text).with_context(|| format!("{}: invalid configuration", path.display()))?;
                config.validate().with_context(|| format!("{}: invalid configuration", path.display()))?;
                config
            }
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

    /// Checks every value's range; `load` runs it, and whoever changes the configuration after
    /// `load` (command-line overrides such as `--renew-check-interval`) must run it again.
    ///
    /// # Errors
    /// The first value out of range, naming its key and the reason.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let second = Duration::from_secs(1);
        within("renew_check_interval", self.renew_check_interval, Duration::from_millis(100), DAY)?;
        within("shutdown_grace", self.shutdown_grace, Duration::ZERO, HOUR)?;
        within("docker_timeout", self.docker_timeout, Duration::from_millis(100), 10 * MINUTE)?;
        count("max_parallel_steps", self.max_parallel_steps as u64, 1, MAX_PARALLEL)?;
        count("max_concurrent_runs", self.max_concurrent_runs as u64, 1, MAX_PARALLEL)?;
        count("artifacts.max_concurrent_downloads", self.artifacts.max_concurrent_downloads as u64, 1, MAX_PARALLEL)?;
        count("artifacts.retries", u64::from(self.artifacts.retries), 0, 100)?;
        within("artifacts.stall_timeout", self.artifacts.stall_timeout, second, DAY)?;
        if let Some(max_bytes) = self.artifacts.cache_max_bytes {
            count("artifacts.cache_max_bytes", max_bytes, 1, u64::MAX)?;
        }
        for (prefix, replacement) in &self.images.rewrite {
            if prefix.chars().chain(replacement.chars()).any(|character| character.is_whitespace() || character.is_control()) {
                let reason = format!(
                    "`{}` = `{}`: image references hold no spaces or control characters",
                    shown_text(prefix),
                    shown_text(replacement)
                );
                return Err(InvalidValue { key: "images.rewrite".to_owned(), reason });
            }
        }
        self.security.validate()?;
        for (registry, login) in &self.images.registries {
            if login.username.trim().is_empty() {
                return Err(InvalidValue {
                    key: format!("images.registries.{}.username", shown_text(registry)),
                    reason: "must not be empty".to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// More steps, runs or downloads at once than this is a typo, not a plan.
const MAX_PARALLEL: u64 = 256;

pub use pmesh_rt::config::InvalidValue;
use pmesh_rt::config::{count, within, DAY, HOUR, MINUTE};

/// Text from the file as a message quotes it: control characters escaped, at most 80.
fn shown_text(text: &str) -> String {
    text.chars().take(80).flat_map(char::escape_debug).collect()
}

/// Unsigned settings read through i128, so a number too large (or negative) for its type is
/// reported as out of range with the range, rather than as "invalid type".
mod unsigned {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    fn read<'de, D: Deserializer<'de>>(deserializer: D, max: u128) -> Result<u128, D::Error> {
        let value = i128::deserialize(deserializer)?;
        match u128::try_from(value) {
            Ok(value) if value <= max => Ok(value),
            _ => Err(D::Error::custom(format!("{value} is out of range: expected from 0 to {max}"))),
        }
    }

    pub fn usize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
        read(deserializer, usize::MAX as u128).map(|value| usize::try_from(value).expect("checked against usize::MAX"))
    }

    pub fn u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
        read(deserializer, u128::from(u32::MAX)).map(|value| u32::try_from(value).expect("checked against u32::MAX"))
    }

    pub fn optional_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        read(deserializer, u128::from(u64::MAX)).map(|value| Some(u64::try_from(value).expect("checked against u64::MAX")))
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

    /// `validate` on one key set in TOML: `Ok` or the message.
    fn check(toml_text: &str, expected: Result<(), &str>) {
        let config: AgentConfig = toml::from_str(toml_text).unwrap();
        assert_eq!(config.validate().map_err(|err| err.to_string()), expected.map_err(str::to_owned), "{toml_text}");
    }

    #[test]
    fn every_value_is_range_checked() {
        check("", Ok(()));
        check("renew_check_interval = \"0s\"", Err("`renew_check_interval`: must be longer than 0s (at least 100ms)"));
        check("renew_check_interval = \"2d\"", Err("`renew_check_interval`: 2d is out of range: at most 1d"));
        check("shutdown_grace = \"0s\"", Ok(()));
        check("shutdown_grace = \"3h\"", Err("`shutdown_grace`: 3h is out of range: at most 1h"));
        check("docker_timeout = \"0s\"", Err("`docker_timeout`: must be longer than 0s (at least 100ms)"));
        check("docker_timeout = \"11m\"", Err("`docker_timeout`: 11m is out of range: at most 10m"));
        check("max_parallel_steps = 0", Err("`max_parallel_steps`: 0 is out of range: expected from 1 to 256"));
        check("max_parallel_steps = 257", Err("`max_parallel_steps`: 257 is out of range: expected from 1 to 256"));
        check("max_parallel_steps = 1", Ok(()));
        check("max_concurrent_runs = 0", Err("`max_concurrent_runs`: 0 is out of range: expected from 1 to 256"));
        check(
            "[artifacts]\nmax_concurrent_downloads = 0",
            Err("`artifacts.max_concurrent_downloads`: 0 is out of range: expected from 1 to 256"),
        );
        check("[artifacts]\nretries = 0", Ok(()));
        check("[artifacts]\nretries = 1000", Err("`artifacts.retries`: 1000 is out of range: expected from 0 to 100"));
        check("[artifacts]\nstall_timeout = \"0s\"", Err("`artifacts.stall_timeout`: must be longer than 0s (at least 1s)"));
        check("[artifacts]\ncache_max_bytes = 0", Err("`artifacts.cache_max_bytes`: 0 is out of range: expected at least 1"));
        check(
            "[images.rewrite]\n\"docker.io/\" = \"r.lab/\\n\"",
            Err("`images.rewrite`: `docker.io/` = `r.lab/\\n`: image references hold no spaces or control characters"),
        );
        check("[security]\nallow_capabilities = [\"SYS_ADMIN\"]", Ok(()));
        check(
            "[security]\nallow_capabilities = [\"SYS_ADMIN\", \"cap_net_admin\"]",
            Err("`security.allow_capabilities`: write the capability as `NET_ADMIN`: upper case, without the `CAP_` prefix"),
        );
        check(
            "[images.registries.\"r.lab\"]\nusername = \" \"\npassword_file = \"/p\"",
            Err("`images.registries.r.lab.username`: must not be empty"),
        );
    }

    #[test]
    fn numbers_too_large_for_their_type_are_out_of_range() {
        let cases = [
            ("max_parallel_steps = 99999999999999999999", "99999999999999999999 is out of range: expected from 0 to 18446744073709551615"),
            ("max_parallel_steps = -1", "-1 is out of range"),
            ("[artifacts]\nretries = 99999999999", "99999999999 is out of range"),
            ("[artifacts]\ncache_max_bytes = -5", "-5 is out of range"),
        ];
        for (text, expected) in cases {
            let err = toml::from_str::<AgentConfig>(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let config: AgentConfig = toml::from_str("max_parallel_steps = 18446744073709551615").unwrap();
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "`max_parallel_steps`: 18446744073709551615 is out of range: expected from 1 to 256"
        );
        let config: AgentConfig = toml::from_str("[artifacts]\ncache_max_bytes = 1024").unwrap();
        assert_eq!(config.artifacts.cache_max_bytes, Some(1024));
    }

    #[test]
    fn load_names_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "max_parallel_steps = 0\n").unwrap();
        let err = format!("{:#}", AgentConfig::load(&path).unwrap_err());
        assert_eq!(
            err,
            format!("{}: invalid configuration: `max_parallel_steps`: 0 is out of range: expected from 1 to 256", path.display())
        );
        std::fs::write(&path, "[security]\nallow_capabilities = [\"SYS_ADMIN\", \"ALL\"]\n").unwrap();
        let err = format!("{:#}", AgentConfig::load(&path).unwrap_err());
        assert_eq!(
            err,
            format!(
                "{}: invalid configuration: `security.allow_capabilities`: `ALL` is not allowed: list each capability by name",
                path.display()
            )
        );
        assert!(AgentConfig::default().security.allow_capabilities.is_empty());
    }
}
