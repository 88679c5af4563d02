//! An operator's credential file: the master's address, the mesh CA, an admin certificate and
//! its key, in one TOML file written 0600.
//!
//! The CLI finds it, in order, at `--credentials FILE`, `$PMESH_CREDENTIALS`, or
//! `DATA_DIR/admin.credentials` where DATA_DIR is `--data-dir`, `$PMESH_HOME` or
//! `/var/lib/pmesh`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use pmesh_proto::identity::inspect;
use serde::{Deserialize, Serialize};

use crate::identity::{pem_to_der, pem_to_key};
use pmesh_rt::files;

/// The file name of the local admin credential inside a data directory.
pub const FILE_NAME: &str = "admin.credentials";

/// An admin credential.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// `host:port` of the master.
    pub master: String,
    /// The admin name the certificate speaks for.
    pub name: String,
    /// The mesh CA certificate, PEM.
    pub ca: String,
    /// The admin certificate, PEM.
    pub cert: String,
    /// The private key, PEM. Never logged.
    pub key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("master", &self.master)
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Where the credential file is, by the documented order.
pub fn locate(explicit: Option<&Path>, data_dir: &Path) -> PathBuf {
    explicit.map(Path::to_path_buf).unwrap_or_else(|| data_dir.join(FILE_NAME))
}

impl Credentials {
    /// Reads a credential file.
    ///
    /// # Errors
    /// When the file is missing, unreadable or malformed; the message names the path and says
    /// how to get a credential.
    pub fn load(path: &Path) -> anyhow::Result<Credentials> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "no admin credential at {}; pass --credentials FILE, or --data-dir / PMESH_HOME \
                 pointing at the master's data directory",
                path.display()
            )
        })?;
        toml::from_str(&text).with_context(|| format!("{}: not a pmesh credential file", path.display()))
    }

    /// Writes the credential, mode 0600.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let header = format!("# pmesh admin credential for {:?}. It holds a private key: keep it secret.\n", self.name);
        let body = toml::to_string(self).context("encoding the credential")?;
        files::write_private(path, format!("{header}{body}").as_bytes())
    }

    /// The TLS client configuration this credential authenticates with.
    ///
    /// # Errors
    /// When the PEM blocks do not parse or the key does not match.
    pub fn client_config(&self) -> anyhow::Result<rustls::ClientConfig> {
        let ca = pem_to_der(&self.ca).context("credential CA")?;
        let cert = pem_to_der(&self.cert).context("credential certificate")?;
        let key = pem_to_key(&self.key).context("credential key")?;
        Ok(pmesh_proto::tls::client_config(&ca, Some((vec![cert], key)))?)
    }

    /// Unix seconds at which the certificate expires.
    ///
    /// # Errors
    /// When the certificate does not parse.
    pub fn not_after(&self) -> anyhow::Result<i64> {
        Ok(self.validity()?.1)
    }

    /// When the certificate is valid: (not before, not after), unix seconds.
    ///
    /// # Errors
    /// When the certificate does not parse.
    pub fn validity(&self) -> anyhow::Result<(i64, i64)> {
        let der = pem_to_der(&self.cert)?;
        let facts = inspect(der.as_ref())?;
        Ok((facts.not_before, facts.not_after))
    }
}
