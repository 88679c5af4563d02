//! The mesh's TLS policy as rustls configurations, and TLS failures as sentences.
//!
//! Policy, in one place:
//! - TLS 1.3 only, with the ring provider;
//! - servers present the mesh CA's leaf and the CA itself, so a joining agent can pin the CA by
//!   fingerprint before it has the CA file;
//! - clients trust only the mesh CA and verify the server's identity DNS name
//!   (see [`crate::identity`]);
//! - agents require a client certificate; the master asks for one but lets the handshake
//!   finish without it, because `Join` is the one call that needs none. The master's
//!   authorisation layer refuses every other call that arrives without a certificate.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// The crypto provider of the mesh: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide rustls provider. Call first thing in each `main`.
pub fn install_default_provider() {
    // A second install (in tests that share a process) is harmless: the provider is the same.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Whether a server demands a client certificate during the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// The handshake fails without a mesh certificate (agents).
    Required,
    /// The handshake succeeds without one; authorisation decides per call (master).
    Optional,
}

const ALPN_H2: &[u8] = b"h2";

fn roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone())?;
    Ok(Arc::new(roots))
}

/// A server configuration presenting whatever `certs` currently holds.
///
/// # Errors
/// [`TlsError`] when the CA certificate is unusable as a trust anchor.
pub fn server_config(
    ca: &CertificateDer<'static>,
    certs: Arc<ReloadableCert>,
    client_auth: ClientAuth,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider.clone());
    let verifier = match client_auth {
        ClientAuth::Required => verifier.build()?,
        ClientAuth::Optional => verifier.allow_unauthenticated().build()?,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// A client configuration trusting only the mesh CA, presenting `client` when given.
///
/// # Errors
/// [`TlsError`] when the CA is unusable or the key does not fit the certificate.
pub fn client_config(
    ca: &CertificateDer<'static>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?);
    let mut config = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// A client configuration for `join`: no client certificate, and the server is trusted only if
/// its chain contains a CA whose sha256 is `ca_fingerprint` and its leaf verifies against it.
///
/// # Errors
/// [`TlsError`] only if rustls refuses TLS 1.3, which the ring provider supports.
pub fn pinned_client_config(ca_fingerprint: [u8; 32]) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = PinnedCaVerifier { fingerprint: ca_fingerprint, provider: provider.clone() };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// The message of the error a pinned join raises when no presented CA matches the pin.
pub const PIN_MISMATCH: &str = "pmesh: server's CA does not match the pinned fingerprint";

#[derive(Debug)]
struct PinnedCaVerifier {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|cert| Sha256::digest(cert.as_ref()).as_slice() == self.fingerprint)
            .ok_or_else(|| rustls::Error::General(PIN_MISMATCH.to_owned()))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|err| rustls::Error::General(err.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A server certificate that can be replaced while the server runs (agent renewal).
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Holds `chain` (leaf first, then the CA) and its key.
    ///
    /// # Errors
    /// [`TlsError`] when the key cannot be loaded or does not match the leaf.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<ReloadableCert, TlsError> {
        let certified = CertifiedKey::from_der(chain, key, &provider())?;
        Ok(ReloadableCert { current: RwLock::new(Arc::new(certified)) })
    }

    /// Replaces the certificate for every handshake from now on.
    ///
    /// # Errors
    /// [`TlsError`] when the key cannot be loaded or does not match; the old one stays.
    pub fn replace(&self, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<(), TlsError> {
        let certified = CertifiedKey::from_der(chain, key, &provider())?;
        *self.current.write().expect("cert lock poisoned only if a writer panicked") = Arc::new(certified);
        Ok(())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("cert lock poisoned only if a writer panicked").clone())
    }
}

/// A failure explained: one sentence, and whether trust (TLS) or the network failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub message: String,
    /// `true` when TLS refused (a certificate, a CA, a TLS version); `false` when the peer
    /// could not be reached at all.
    pub trust: bool,
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Turns a connection or call failure into one sentence an operator can act on, by looking
/// for a TLS or socket error anywhere in its source chain. `None` when nothing is recognised.
pub fn explain(err: &(dyn std::error::Error + 'static)) -> Option<Explanation> {
    let trust = |tls: &rustls::Error| Explanation { message: explain_rustls(tls), trust: true };
    let network = |message: &str| Explanation { message: message.to_owned(), trust: false };
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(trust(tls));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                return Some(trust(tls));
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Some(network("connection refused: nothing is listening at that address")),
                std::io::ErrorKind::TimedOut => return Some(network("the connection timed out")),
                std::io::ErrorKind::ConnectionReset => return Some(network("the connection was reset by the peer")),
                _ => {}
            }
        }
        current = err.source();
    }
    None
}

/// One sentence for a TLS error recorded on a connection (see `pmesh_rt::net::TlsFailure`):
/// under TLS 1.3 a peer refuses a client certificate after the handshake, so the refusal
/// reaches the connection, not the call that fails with "connection closed".
pub fn explain_tls(err: &rustls::Error) -> Explanation {
    Explanation { message: explain_rustls(err), trust: true }
}

/// When the certificate this side presented is valid, by this host's clock (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnValidity {
    pub not_before: i64,
    pub not_after: i64,
    pub now: i64,
}

/// [`explain_with`], knowing the certificate this side presented. A peer refuses a certificate
/// that is not valid yet with the same alert as an expired one (`certificate_expired`); this
/// side's own validity window tells which it is, or that the clocks disagree.
pub fn explain_with_own(
    err: &(dyn std::error::Error + 'static),
    recorded: Option<&rustls::Error>,
    own: Option<OwnValidity>,
) -> Option<Explanation> {
    let explained = explain_with(err, recorded)?;
    let expired_alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateExpired);
    let refused_as_expired = tls_error_in(err).as_ref().or(recorded) == Some(&expired_alert);
    match own {
        Some(own) if refused_as_expired => Some(Explanation { message: explain_expired_alert(own), trust: true }),
        _ => Some(explained),
    }
}

fn explain_expired_alert(own: OwnValidity) -> String {
    let window = format!("valid from {} until {}", rfc3339(own.not_before.max(0) as u64), rfc3339(own.not_after.max(0) as u64));
    if own.now < own.not_before {
        format!(
            "the peer refused our certificate: it is not valid until {} (this host's clock says {}): check the clocks of both hosts",
            rfc3339(own.not_before.max(0) as u64),
            rfc3339(own.now.max(0) as u64)
        )
    } else if own.now >= own.not_after {
        format!("the peer refused our certificate: it expired at {}; issue a new credential", rfc3339(own.not_after.max(0) as u64))
    } else {
        format!(
            "the peer refused our certificate as expired or not yet valid, but by this host's clock it is {window}: the peer's clock is wrong"
        )
    }
}

fn rfc3339(unix_seconds: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds)).to_string()
}

/// The TLS error anywhere in a failure's source chain, directly or inside an I/O error.
fn tls_error_in(err: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        if let Some(tls) =
            err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.clone());
        }
        current = err.source();
    }
    None
}

/// [`explain`], falling back to the TLS error recorded on the connection.
pub fn explain_with(err: &(dyn std::error::Error + 'static), recorded: Option<&rustls::Error>) -> Option<Explanation> {
    explain(err).or_else(|| recorded.map(explain_tls))
}

fn explain_rustls(err: &rustls::Error) -> String {
    use rustls::{AlertDescription as Alert, CertificateError as Cert};
    match err {
        rustls::Error::AlertReceived(Alert::CertificateRequired) => "the peer requires a client certificate and none was presented".into(),
        rustls::Error::AlertReceived(Alert::CertificateExpired) => {
            "the peer refused our certificate: it has expired; issue a new credential".into()
        }
        // A CA with the same name but another key makes the signature check fail: DecryptError.
        rustls::Error::AlertReceived(Alert::UnknownCA | Alert::BadCertificate | Alert::DecryptError) => {
            "the peer refused our certificate: it was not issued by this mesh's CA".into()
        }
        rustls::Error::AlertReceived(Alert::CertificateRevoked) => "the peer refused our certificate: it has been revoked".into(),
        rustls::Error::AlertReceived(Alert::ProtocolVersion) => "the peer refused the TLS version: pmesh speaks TLS 1.3 only".into(),
        rustls::Error::AlertReceived(alert) => format!("the peer refused the TLS handshake ({alert:?})"),
        rustls::Error::InvalidCertificate(Cert::ExpiredContext { time, not_after }) => format!(
            "the peer's certificate expired at {} (this host's clock says {}): renew it, or check the clocks",
            rfc3339(not_after.as_secs()),
            rfc3339(time.as_secs())
        ),
        rustls::Error::InvalidCertificate(Cert::Expired) => "the peer's certificate has expired".into(),
        rustls::Error::InvalidCertificate(Cert::NotValidYetContext { time, not_before }) => format!(
            "the peer's certificate is not valid until {} (this host's clock says {}): check both hosts' clocks",
            rfc3339(not_before.as_secs()),
            rfc3339(time.as_secs())
        ),
        rustls::Error::InvalidCertificate(Cert::NotValidYet) => "the peer's certificate is not valid yet: check both hosts' clocks".into(),
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature) => {
            "the peer's certificate was not issued by this mesh's CA".into()
        }
        rustls::Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            "the peer's certificate belongs to another identity than the one dialled".into()
        }
        rustls::Error::General(message) if message == PIN_MISMATCH => {
            "the master's CA does not match the --ca-fingerprint given: check the fingerprint \
             printed by `pmesh token create`"
                .into()
        }
        rustls::Error::PeerIncompatible(_) => "the peer's TLS is incompatible: pmesh speaks TLS 1.3 only".into(),
        other => format!("TLS failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::UnixTime;
    use rustls::{AlertDescription, CertificateError};

    use super::*;

    /// 2026-12-02T00:00:00Z.
    const NOW: i64 = 1_796_169_600;

    fn alert_expired() -> std::io::Error {
        std::io::Error::other(rustls::Error::AlertReceived(AlertDescription::CertificateExpired))
    }

    fn refused(not_before: i64, not_after: i64) -> String {
        explain_with_own(&alert_expired(), None, Some(OwnValidity { not_before, not_after, now: NOW })).unwrap().message
    }

    #[test]
    fn a_certificate_refused_as_expired_is_told_apart_by_its_own_window() {
        let early = refused(NOW + 3600, NOW + 7200);
        assert!(early.contains("not valid until 2026-12-02T01:00:00Z") && early.contains("check the clocks"), "{early}");
        let late = refused(NOW - 7200, NOW - 3600);
        assert!(late.contains("expired at 2026-12-01T23:00:00Z") && late.contains("issue a new credential"), "{late}");
        let valid = refused(NOW - 3600, NOW + 3600);
        assert!(valid.contains("the peer's clock is wrong"), "{valid}");
        // Without its own window the old sentence stands.
        let unknown = explain_with_own(&alert_expired(), None, None).unwrap().message;
        assert!(unknown.contains("it has expired"), "{unknown}");
    }

    #[test]
    fn a_peer_certificate_out_of_its_window_says_when() {
        let at = |unix: i64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(unix as u64));
        let early = rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { time: at(NOW), not_before: at(NOW + 60) });
        assert_eq!(
            explain_tls(&early).message,
            "the peer's certificate is not valid until 2026-12-02T00:01:00Z (this host's clock says 2026-12-02T00:00:00Z): check both hosts' clocks"
        );
        let late = rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { time: at(NOW), not_after: at(NOW - 60) });
        assert!(explain_tls(&late).message.starts_with("the peer's certificate expired at 2026-12-01T23:59:00Z"));
    }
}
