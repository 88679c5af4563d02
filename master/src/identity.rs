//! The mesh CA and the certificates it issues.
//!
//! The CA is ECDSA P-256, self-signed, and lives in `DATA_DIR/pki/`. It signs:
//! - the master's own serving certificate (at `ca init`, and again at start when it nears
//!   expiry);
//! - agents' CSRs at join and renewal;
//! - admins' CSRs (`pmesh admin issue`) and the local admin credential made at `ca init`.
//!
//! The CA never sees an agent's or a remote admin's private key: it signs the public key from a
//! CSR and writes its own identity into the certificate, ignoring whatever names the CSR asks
//! for. Every leaf gets the URI and DNS SANs of [`pmesh_proto::identity`], a random 128-bit
//! serial, and a not-before moved back by the clock-skew allowance.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use pmesh_proto::identity::{fingerprint, Identity};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use pmesh_rt::files;

/// Where the PKI files sit inside a data directory.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub dir: PathBuf,
}

impl PkiPaths {
    /// The PKI folder of a master data directory.
    pub fn new(data_dir: &Path) -> PkiPaths {
        PkiPaths { dir: data_dir.join("pki") }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn master_cert(&self) -> PathBuf {
        self.dir.join("master.crt")
    }
    pub fn master_key(&self) -> PathBuf {
        self.dir.join("master.key")
    }
    /// The ed25519 key (PKCS#8) that signs pattern bundles.
    pub fn bundle_key(&self) -> PathBuf {
        self.dir.join("bundle-signing.key")
    }
}

/// A certificate the CA issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub pem: String,
    pub der: CertificateDer<'static>,
    pub serial: String,
    pub not_after: SystemTime,
}

/// The mesh certificate authority, loaded in memory.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("fingerprint", &self.fingerprint()).finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a new CA. Only `ca init` calls this.
    ///
    /// # Errors
    /// When key generation or self-signing fails.
    pub fn generate() -> anyhow::Result<(Ca, KeyPair)> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        // A random mesh id in the name keeps two meshes' CAs apart, so a certificate from the
        // other one fails as "unknown issuer" rather than as a bad signature.
        let mesh_id = hex::encode(rand::random::<[u8; 4]>());
        name.push(DnType::CommonName, format!("pmesh mesh CA {mesh_id}"));
        name.push(DnType::OrganizationName, "pmesh");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial());
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(3650);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        let cert_der = cert.der().clone();
        let issuer_key = KeyPair::from_pem(&key.serialize_pem())?;
        let ca = Ca { issuer: Issuer::new(params, issuer_key), cert_pem, cert_der };
        Ok((ca, key))
    }

    /// Loads the CA from `pki/ca.crt` and `pki/ca.key`.
    ///
    /// # Errors
    /// When either file is missing (run `pmesh ca init`) or unparsable.
    pub fn load(paths: &PkiPaths) -> anyhow::Result<Ca> {
        let cert_pem = files::read_string(&paths.ca_cert()).context("the mesh CA is missing; create it with `pmesh ca init`")?;
        let key_pem = files::read_string(&paths.ca_key())?;
        let key = KeyPair::from_pem(&key_pem).context("parsing the CA key")?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).context("parsing the CA certificate")?;
        let cert_der = pem_to_der(&cert_pem)?;
        Ok(Ca { issuer, cert_pem, cert_der })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// `sha256:HEX` of the CA certificate, which joining agents pin.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.cert_der.as_ref())
    }

    /// Signs the public key in `csr_pem` for `identity`. The CSR's own names are ignored.
    ///
    /// # Errors
    /// When the CSR is not a valid, self-signed PKCS#10 request.
    pub fn sign_csr(&self, csr_pem: &str, identity: &Identity, lifetime: Duration, skew: Duration) -> anyhow::Result<Issued> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|err| anyhow::anyhow!("the CSR is not a valid PKCS#10 request: {err}"))?;
        self.sign(&csr.public_key, identity, lifetime, skew)
    }

    /// Generates a key here and signs it: for the master's own certificate and the local admin.
    ///
    /// # Errors
    /// When key generation or signing fails.
    pub fn issue_local(&self, identity: &Identity, lifetime: Duration, skew: Duration) -> anyhow::Result<(Issued, KeyPair)> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let issued = self.sign(&key, identity, lifetime, skew)?;
        Ok((issued, key))
    }

    fn sign(
        &self,
        public_key: &impl rcgen::PublicKeyData,
        identity: &Identity,
        lifetime: Duration,
        skew: Duration,
    ) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, identity.uri());
        params.distinguished_name = name;
        params.subject_alt_names = vec![SanType::URI(identity.uri().try_into()?), SanType::DnsName(identity.dns_name().try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial();
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        let now = SystemTime::now();
        let not_after = now + lifetime;
        params.not_before = (now - skew).into();
        params.not_after = not_after.into();
        let cert = params.signed_by(public_key, &self.issuer)?;
        Ok(Issued { pem: cert.pem(), der: cert.der().clone(), serial: serial_hex, not_after })
    }
}

/// A positive 128-bit serial (the top bit cleared so DER keeps it positive without padding).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// The first certificate of a PEM text, as DER.
///
/// # Errors
/// When the text holds no certificate.
pub fn pem_to_der(pem: &str) -> anyhow::Result<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).context("no certificate in PEM text")
}

/// A private key from PEM.
///
/// # Errors
/// When the text holds no private key.
pub fn pem_to_key(pem: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).context("no private key in PEM text")
}

/// A fresh key and a CSR for it, for a client that wants a certificate (the CLI's
/// `admin issue`). The CA overwrites the names, so the CSR carries none.
///
/// # Errors
/// When key generation fails.
pub fn key_and_csr() -> anyhow::Result<(KeyPair, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let csr = CertificateParams::default().serialize_request(&key)?;
    Ok((key, csr.pem()?))
}

/// Loads or creates the ed25519 bundle-signing key and returns its public key.
///
/// # Errors
/// When the key file cannot be read or written, or is not an ed25519 PKCS#8 document.
pub fn bundle_public_key(paths: &PkiPaths) -> anyhow::Result<Vec<u8>> {
    use ring::signature::KeyPair as _;
    let path = paths.bundle_key();
    let pkcs8 = std::fs::read(&path).with_context(|| format!("reading {}; create it with `pmesh ca init`", path.display()))?;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(&pkcs8)
        .map_err(|err| anyhow::anyhow!("{} is not an ed25519 key: {err}", path.display()))?;
    Ok(pair.public_key().as_ref().to_vec())
}

/// Writes a new ed25519 bundle-signing key, mode 0600.
///
/// # Errors
/// When the random source or the disk fails.
pub fn generate_bundle_key(paths: &PkiPaths) -> anyhow::Result<()> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow::anyhow!("generating the bundle-signing key failed"))?;
    files::write_private(&paths.bundle_key(), pkcs8.as_ref())
}

/// Refuses to overwrite an existing CA.
///
/// # Errors
/// When `pki/ca.crt` exists.
pub fn ensure_absent(paths: &PkiPaths) -> anyhow::Result<()> {
    if paths.ca_cert().exists() {
        bail!("a mesh CA already exists in {}; refusing to overwrite it (every agent trusts it)", paths.dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmesh_proto::identity::{inspect, Role};

    #[test]
    fn signs_csr_with_own_identity_and_skewed_not_before() {
        let (ca, _) = Ca::generate().unwrap();
        let (_key, csr) = key_and_csr().unwrap();
        let identity = Identity::new(Role::Agent, "pc-1").unwrap();
        let issued = ca.sign_csr(&csr, &identity, Duration::from_secs(3600), Duration::from_secs(300)).unwrap();
        let facts = inspect(issued.der.as_ref()).unwrap();
        assert_eq!(facts.identity, identity);
        assert_eq!(facts.serial, issued.serial);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((now - 300 - facts.not_before).abs() <= 2, "not_before carries the skew");
        assert!((now + 3600 - facts.not_after).abs() <= 2);
    }

    #[test]
    fn rejects_garbage_csr() {
        let (ca, _) = Ca::generate().unwrap();
        let identity = Identity::new(Role::Admin, "bob").unwrap();
        let err = ca.sign_csr("not a csr", &identity, Duration::from_secs(60), Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("PKCS#10"), "{err}");
    }
}
