//! Certificate renewal: once the time the master set at issue (two thirds of the lifetime)
//! has passed, the agent makes a new key, sends its CSR over its current mTLS identity, and
//! swaps the new certificate into the running server and onto disk. Failures are retried at
//! the next check; the old certificate keeps working until it expires.

use std::sync::Arc;
use std::time::Duration;

use pmesh_proto::identity::Identity;
use pmesh_proto::tls::ReloadableCert;
use pmesh_proto::v1::RenewRequest;
use pmesh_rt::v1::master_client::MasterClient;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use crate::state::{self, Paths};
use pmesh_rt::cli::now_unix;

/// Checks every `interval` and renews when due, until `shutdown`.
pub async fn keep_renewed(paths: Paths, server_certs: Arc<ReloadableCert>, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match renew_if_due(&paths, &server_certs).await {
            Ok(true) => tracing::info!("certificate renewed"),
            Ok(false) => {}
            Err(err) => tracing::warn!(error = format!("{err:#}"), "renewal failed; will retry"),
        }
    }
}

/// Renews when due; `Ok(true)` when it did.
///
/// # Errors
/// When the master cannot be reached or refuses, or the disk fails. Nothing is replaced then.
pub async fn renew_if_due(paths: &Paths, server_certs: &ReloadableCert) -> anyhow::Result<bool> {
    let mut enrolment = state::load_enrolment(paths)?;
    if now_unix() < enrolment.renew_after {
        return Ok(false);
    }
    let credential = state::load_credential(paths)?;
    let (key_pem, csr_pem) = crate::keys::key_and_csr()?;
    let tls = Arc::new(credential.client_config()?);
    let mut dialled = pmesh_rt::net::dial(&enrolment.master, &Identity::master(), tls, Duration::from_secs(15))?;
    if let Ok(facts) = pmesh_proto::identity::inspect(credential.cert.as_ref()) {
        dialled = dialled.presenting(facts.not_before, facts.not_after);
    }
    let response = MasterClient::new(dialled.channel.clone())
        .renew(RenewRequest { csr_pem })
        .await
        .map_err(|status| {
            let explained = dialled.explain(&status);
            anyhow::anyhow!(explained.map(|explained| explained.message).unwrap_or_else(|| status.message().to_owned()))
        })?
        .into_inner();
    let cert = CertificateDer::from_pem_slice(response.cert_pem.as_bytes())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    server_certs.replace(vec![cert, credential.ca.clone()], key)?;
    state::save_credential(paths, &response.cert_pem, &key_pem)?;
    enrolment.renew_after = response.renew_after_unix;
    state::save_enrolment(paths, &enrolment)?;
    Ok(true)
}
