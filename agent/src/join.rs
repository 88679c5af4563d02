//! `pmesh-agent join`: enrolment by one-time token.
//!
//! The agent makes its key here, sends only a CSR, and talks to the master over TLS that
//! trusts nothing but a CA whose sha256 the operator pinned. The answer is checked again
//! (CA fingerprint, identity, key match) before anything is written.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pmesh_proto::identity::{fingerprint, inspect, parse_fingerprint, validate_name, Identity, Role};
use pmesh_proto::tls::ReloadableCert;
use pmesh_proto::v1::JoinRequest;
use pmesh_rt::v1::master_client::MasterClient;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::exit::{self, CliError};
use crate::state::{self, Enrolment, Paths, STATE_VERSION};

/// What the operator gave `join`.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    pub master: String,
    pub token: String,
    pub ca_fingerprint: String,
    pub name: Option<String>,
    pub advertise: Option<String>,
    pub force: bool,
}

/// The default agent name: the host name, lowercased, cut at the first dot.
pub fn default_name() -> String {
    crate::facts::hostname().split('.').next().unwrap_or_default().to_ascii_lowercase()
}

/// Enrols this agent into the mesh and writes its identity into `data_dir`.
///
/// # Errors
/// A [`CliError`]: usage (bad fingerprint, name, existing enrolment), unreachable master, or
/// a refusal (token, fingerprint mismatch), each as one sentence.
pub async fn join(options: JoinOptions, data_dir: &Path) -> Result<Enrolment, CliError> {
    let usage = |message: String| CliError::new(exit::USAGE, message);
    let pin = parse_fingerprint(&options.ca_fingerprint).map_err(|err| usage(err.to_string()))?;
    let name = options.name.clone().unwrap_or_default();
    if !name.is_empty() {
        validate_name(&name).map_err(|err| usage(err.to_string()))?;
    }
    let advertise = options.advertise.clone().unwrap_or_else(|| format!("{}:{}", crate::facts::hostname(), crate::config::DEFAULT_PORT));
    let paths = Paths::new(data_dir);
    if state::is_enrolled(&paths) && !options.force {
        return Err(usage(format!("{} already holds an enrolment; pass --force to replace it", data_dir.display())));
    }

    let (key_pem, csr_pem) = crate::keys::key_and_csr()?;
    let tls = Arc::new(pmesh_proto::tls::pinned_client_config(pin).map_err(anyhow::Error::from)?);
    let dialled = pmesh_rt::net::dial(&options.master, &Identity::master(), tls, Duration::from_secs(15))?;
    let request = JoinRequest { token: options.token.clone(), name, csr_pem, advertise: advertise.clone(), default_name: default_name() };
    let response = MasterClient::new(dialled.channel.clone())
        .join(request)
        .await
        .map_err(|status| {
            let explained = dialled.explain(&status);
            exit::failure(&format!("master {}", options.master), status, explained)
        })?
        .into_inner();

    let refused = |message: String| CliError::new(exit::REFUSED, message);
    let ca = CertificateDer::from_pem_slice(response.ca_pem.as_bytes()).map_err(|_| refused("the master sent no CA certificate".into()))?;
    if parse_fingerprint(&fingerprint(ca.as_ref())).ok() != Some(pin) {
        return Err(refused("the master sent a CA that does not match the pinned fingerprint".into()));
    }
    let cert =
        CertificateDer::from_pem_slice(response.cert_pem.as_bytes()).map_err(|_| refused("the master sent no certificate".into()))?;
    let facts = inspect(cert.as_ref()).map_err(|err| refused(format!("the master's certificate is unusable: {err}")))?;
    let expected = Identity::new(Role::Agent, &response.name).map_err(|err| refused(err.to_string()))?;
    if facts.identity != expected {
        return Err(refused(format!("the master issued a certificate for {}, not {expected}", facts.identity)));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(anyhow::Error::from)?;
    ReloadableCert::new(vec![cert], key).map_err(|err| refused(format!("the issued certificate does not match our key: {err}")))?;

    std::fs::create_dir_all(paths.identity_dir()).map_err(anyhow::Error::from)?;
    state::save_ca(&paths, &response.ca_pem)?;
    state::save_credential(&paths, &response.cert_pem, &key_pem)?;
    let enrolment = Enrolment {
        v: STATE_VERSION,
        name: response.name,
        master: options.master,
        advertise,
        labels: response.labels.into_iter().collect(),
        renew_after: response.renew_after_unix,
        bundle_signing_key: hex::encode(response.bundle_signing_key),
    };
    state::save_enrolment(&paths, &enrolment)?;
    Ok(enrolment)
}
