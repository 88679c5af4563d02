//! HTTP probes beyond a plain status check: HTTPS pinned to a CA or to the SHA-256 thumbprint
//! of the server's certificate, basic auth, and a condition on a field of the JSON body.
//!
//! A thumbprint pin accepts exactly one certificate whatever its issuer, names or dates (the
//! self-signed certificate of a freshly deployed appliance), and still checks the handshake's
//! signature against that certificate's key, so a server that merely presents a copy of the
//! certificate without its key is refused.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use crate::executor::plan::Trust;

/// What one HTTP probe asks.
#[derive(Debug, Clone, Copy)]
pub struct HttpCheck<'a> {
    pub url: &'a str,
    pub status: u16,
    pub trust: Option<&'a Trust>,
    /// User name and password.
    pub auth: Option<(&'a str, &'a str)>,
    /// A dotted path in the JSON body and the value it must have.
    pub json: Option<(&'a str, &'a str)>,
}

/// Colon-separated upper-case hex, the way vSphere shows thumbprints.
pub fn colon_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(":")
}

/// Accepts the one certificate whose SHA-256 is pinned.
#[derive(Debug)]
struct Thumbprint {
    pinned: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Thumbprint {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Sha256::digest(end_entity.as_ref());
        if presented.as_slice() == self.pinned {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::General(format!(
            "the server's certificate has thumbprint {}, not the pinned {}",
            colon_hex(&presented),
            colon_hex(&self.pinned)
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, signature, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, signature, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS configuration for `trust`: the CA certificates as the only roots, or the pin.
async fn tls_config(trust: &Trust) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().context("configuring TLS")?;
    let pem = match trust {
        Trust::Thumbprint(pinned) => {
            let verifier = Thumbprint { pinned: *pinned, provider };
            // "dangerous" is rustls' name for a verifier of one's own; this one pins.
            return Ok(builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth());
        }
        Trust::Ca(pem) => pem.clone().into_bytes(),
        Trust::CaFile(path) => tokio::fs::read(path).await.with_context(|| format!("reading the CA file {}", path.display()))?,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.context("reading the CA's PEM")?).context("adding the CA certificate")?;
    }
    if roots.is_empty() {
        bail!("the CA holds no PEM certificate");
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// One attempt of `check`, bounded by `timeout`.
///
/// # Errors
/// When the server cannot be reached, its certificate is not the pinned one or not signed by
/// the CA, it answers another status, or the JSON field is missing or has another value.
pub async fn http(check: HttpCheck<'_>, timeout: Duration) -> anyhow::Result<()> {
    let url = check.url;
    let mut builder = reqwest::Client::builder().timeout(timeout).user_agent(concat!("pmesh-agent/", env!("CARGO_PKG_VERSION")));
    if let Some(trust) = check.trust {
        builder = builder.tls_backend_preconfigured(tls_config(trust).await?);
    }
    let client = builder.build().context("building the HTTP client")?;
    let mut request = client.get(url);
    if let Some((username, password)) = check.auth {
        request = request.basic_auth(username, Some(password));
    }
    let response = request.send().await.map_err(|error| anyhow::Error::new(error).context(format!("GET {url}")))?;
    let got = response.status().as_u16();
    if got != check.status {
        bail!("{url} answered {got}, expected {}", check.status);
    }
    let Some((path, expected)) = check.json else { return Ok(()) };
    let body = response.bytes().await.with_context(|| format!("reading the body of {url}"))?;
    let document: serde_json::Value = serde_json::from_slice(&body).with_context(|| format!("{url}: the body is not JSON"))?;
    match field(&document, path) {
        None => bail!("{url}: the JSON body has no `{path}`"),
        Some(value) if matches(value, expected) => Ok(()),
        Some(value) => bail!("{url}: `{path}` is {value}, expected {expected}"),
    }
}

/// The value at a dotted `path`: keys of objects, indexes of arrays.
fn field<'v>(document: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    path.split('.').try_fold(document, |value, key| match value {
        serde_json::Value::Object(map) => map.get(key),
        serde_json::Value::Array(items) => key.parse::<usize>().ok().and_then(|index| items.get(index)),
        _ => None,
    })
}

/// A string equals the text; a number, boolean or null equals its JSON spelling.
fn matches(value: &serde_json::Value, expected: &str) -> bool {
    match value {
        serde_json::Value::String(text) => text == expected,
        serde_json::Value::Object(_) | serde_json::Value::Array(_) => false,
        other => serde_json::to_string(other).is_ok_and(|text| text == expected),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{colon_hex, field, matches};

    fn check(document: serde_json::Value, path: &str, expected: &str, want: bool) {
        let got = field(&document, path).is_some_and(|value| matches(value, expected));
        assert_eq!(got, want, "{path} = {expected} in {document}");
    }

    #[test]
    fn json_conditions() {
        let nsx = json!({"mgmt_cluster_status": {"status": "STABLE"}, "nodes": [{"up": true}, {"count": 3}]});
        check(nsx.clone(), "mgmt_cluster_status.status", "STABLE", true);
        check(nsx.clone(), "mgmt_cluster_status.status", "DEGRADED", false);
        check(nsx.clone(), "mgmt_cluster_status", "STABLE", false);
        check(nsx.clone(), "mgmt_cluster_status.status.deeper", "STABLE", false);
        check(nsx.clone(), "nodes.0.up", "true", true);
        check(nsx.clone(), "nodes.1.count", "3", true);
        check(nsx.clone(), "nodes.2.count", "3", false);
        check(nsx, "missing", "null", false);
        check(json!({"value": null}), "value", "null", true);
    }

    #[test]
    fn thumbprints_show_as_vsphere_does() {
        assert_eq!(colon_hex(&[0x0a, 0xff, 0x10]), "0A:FF:10");
    }
}
