//! The agent's enrolled identity on disk.
//!
//! - `DATA_DIR/identity/agent.pem`: the certificate and its private key in one file, mode
//!   0600, replaced atomically, so a crash during renewal never pairs a key with the wrong
//!   certificate.
//! - `DATA_DIR/identity/ca.crt`: the mesh CA, pinned at join.
//! - `DATA_DIR/agent.json`: name, master address, advertise address, labels, renewal time and
//!   the bundle-signing public key, as a versioned record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use pmesh_rt::files;

/// The schema of `agent.json` this build writes.
pub const STATE_VERSION: u32 = 1;

/// What the agent learnt at enrolment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrolment {
    pub v: u32,
    pub name: String,
    /// `host:port` of the master.
    pub master: String,
    /// `host:port` the master dials.
    pub advertise: String,
    pub labels: BTreeMap<String, String>,
    /// Unix seconds after which the certificate should be renewed.
    pub renew_after: i64,
    /// Hex of the ed25519 key that signs pattern bundles.
    pub bundle_signing_key: String,
}

/// Paths inside an agent data directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_dir: PathBuf,
}

impl Paths {
    pub fn new(data_dir: &Path) -> Paths {
        Paths { data_dir: data_dir.to_path_buf() }
    }
    pub fn identity_dir(&self) -> PathBuf {
        self.data_dir.join("identity")
    }
    pub fn credential(&self) -> PathBuf {
        self.identity_dir().join("agent.pem")
    }
    pub fn ca(&self) -> PathBuf {
        self.identity_dir().join("ca.crt")
    }
    pub fn enrolment(&self) -> PathBuf {
        self.data_dir.join("agent.json")
    }
}

/// The agent's certificate, its key and the mesh CA.
pub struct Credential {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    pub ca: CertificateDer<'static>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("key", &"<redacted>").finish_non_exhaustive()
    }
}

impl Credential {
    /// Leaf then CA, as the server presents them.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone(), self.ca.clone()]
    }

    /// The client configuration for calls to the master.
    ///
    /// # Errors
    /// When the key does not fit the certificate.
    pub fn client_config(&self) -> anyhow::Result<rustls::ClientConfig> {
        Ok(pmesh_proto::tls::client_config(&self.ca, Some((vec![self.cert.clone()], self.key.clone_key())))?)
    }
}

/// Whether the data directory holds an enrolment.
pub fn is_enrolled(paths: &Paths) -> bool {
    paths.enrolment().exists() && paths.credential().exists()
}

/// Reads the enrolment record.
///
/// # Errors
/// When the agent never joined (the message says how to), or the record is damaged.
pub fn load_enrolment(paths: &Paths) -> anyhow::Result<Enrolment> {
    let text = std::fs::read_to_string(paths.enrolment()).with_context(|| {
        format!("this agent is not enrolled ({} is missing); run `pmesh-agent join` first", paths.enrolment().display())
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is damaged", paths.enrolment().display()))
}

/// Writes the enrolment record.
///
/// # Errors
/// When the disk fails.
pub fn save_enrolment(paths: &Paths, enrolment: &Enrolment) -> anyhow::Result<()> {
    files::write_public(&paths.enrolment(), serde_json::to_string_pretty(enrolment)?.as_bytes())
}

/// Reads the certificate, key and CA.
///
/// # Errors
/// When a file is missing or holds no certificate or key.
pub fn load_credential(paths: &Paths) -> anyhow::Result<Credential> {
    let pem = files::read_string(&paths.credential())?;
    let cert =
        CertificateDer::from_pem_slice(pem.as_bytes()).with_context(|| format!("{}: no certificate", paths.credential().display()))?;
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).with_context(|| format!("{}: no private key", paths.credential().display()))?;
    let ca_pem = files::read_string(&paths.ca())?;
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).with_context(|| format!("{}: no certificate", paths.ca().display()))?;
    Ok(Credential { cert, key, ca })
}

/// Writes the certificate and key together (0600), atomically.
///
/// # Errors
/// When the disk fails.
pub fn save_credential(paths: &Paths, cert_pem: &str, key_pem: &str) -> anyhow::Result<()> {
    files::write_private(&paths.credential(), format!("{}\n{}", cert_pem.trim_end(), key_pem).as_bytes())
}

/// Writes the mesh CA.
///
/// # Errors
/// When the disk fails.
pub fn save_ca(paths: &Paths, ca_pem: &str) -> anyhow::Result<()> {
    files::write_public(&paths.ca(), ca_pem.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `agent.json` written by schema v1 must keep loading.
    #[test]
    fn reads_v1_enrolment() {
        let v1 = r#"{"v":1,"name":"pc-1","master":"10.0.0.2:7443","advertise":"10.0.0.5:7444",
            "labels":{"site":"lab"},"renew_after":1700000000,"bundle_signing_key":"00ff"}"#;
        let enrolment: Enrolment = serde_json::from_str(v1).unwrap();
        assert_eq!(enrolment.name, "pc-1");
        assert_eq!(enrolment.labels["site"], "lab");
    }
}
