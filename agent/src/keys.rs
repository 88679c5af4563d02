//! Key generation: every agent key is made here, on the agent's host, and only its CSR leaves.

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};

/// A key and a CSR for it, both PEM. The CA writes the names, so the CSR asks for none.
///
/// # Errors
/// When key generation fails.
pub fn key_and_csr() -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let csr = CertificateParams::default().serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}
