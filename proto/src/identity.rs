//! Mesh identities: the role and name a certificate speaks for.
//!
//! Every certificate the mesh CA issues carries exactly one URI SAN of the form
//! `pmesh://ROLE/NAME` and one DNS SAN `NAME.ROLE.pmesh`. The URI is what authorisation reads;
//! the DNS name is what TLS clients verify, so a client that dials an agent named `pc-1`
//! accepts only a certificate the CA issued to agent `pc-1`.

use std::fmt;

use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The trust domain: the scheme of identity URIs and the suffix of identity DNS names.
pub const TRUST_DOMAIN: &str = "pmesh";

/// The name of the master's identity; there is one master per mesh.
pub const MASTER_NAME: &str = "master";

/// What a certificate is allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The master daemon: the only caller agents accept.
    Master,
    /// A pattern controller: may call the master only for itself.
    Agent,
    /// An operator's CLI: may call the master's operator RPCs.
    Admin,
}

impl Role {
    /// The role's spelling in identity URIs and DNS names.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        match text {
            "master" => Some(Role::Master),
            "agent" => Some(Role::Agent),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a name, URI, fingerprint or certificate was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("invalid name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("not a pmesh identity URI: {0:?}")]
    InvalidUri(String),
    #[error("invalid CA fingerprint {0:?}: expected sha256: followed by 64 hex digits")]
    InvalidFingerprint(String),
    #[error("certificate cannot be parsed: {0}")]
    Unparsable(String),
    #[error("certificate carries no pmesh identity (no pmesh:// URI SAN)")]
    NoIdentity,
}

/// A role and a name, such as `pmesh://agent/pc-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub role: Role,
    pub name: String,
}

impl Identity {
    /// An identity after checking the name.
    ///
    /// # Errors
    /// [`IdentityError::InvalidName`] when the name is not a DNS label (see [`validate_name`]).
    pub fn new(role: Role, name: &str) -> Result<Identity, IdentityError> {
        validate_name(name)?;
        Ok(Identity { role, name: name.to_owned() })
    }

    /// The master's identity.
    pub fn master() -> Identity {
        Identity { role: Role::Master, name: MASTER_NAME.to_owned() }
    }

    /// `pmesh://ROLE/NAME`, the URI SAN authorisation reads.
    pub fn uri(&self) -> String {
        format!("{TRUST_DOMAIN}://{}/{}", self.role, self.name)
    }

    /// `NAME.ROLE.pmesh`, the DNS SAN a TLS client verifies.
    pub fn dns_name(&self) -> String {
        format!("{}.{}.{TRUST_DOMAIN}", self.name, self.role)
    }

    /// Parses `pmesh://ROLE/NAME`.
    ///
    /// # Errors
    /// [`IdentityError::InvalidUri`] for another scheme, role or shape; an invalid name too.
    pub fn from_uri(uri: &str) -> Result<Identity, IdentityError> {
        let rest = uri
            .strip_prefix(TRUST_DOMAIN)
            .and_then(|rest| rest.strip_prefix("://"))
            .ok_or_else(|| IdentityError::InvalidUri(uri.to_owned()))?;
        let (role, name) = rest.split_once('/').ok_or_else(|| IdentityError::InvalidUri(uri.to_owned()))?;
        let role = Role::parse(role).ok_or_else(|| IdentityError::InvalidUri(uri.to_owned()))?;
        Identity::new(role, name)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.name)
    }
}

/// Checks that a name can be an identity: a lowercase DNS label.
///
/// # Errors
/// [`IdentityError::InvalidName`] saying which rule the name breaks.
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    let invalid = |why| Err(IdentityError::InvalidName { name: name.to_owned(), why });
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > 63 {
        return invalid("it is longer than 63 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return invalid("only lowercase letters, digits and '-' are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return invalid("it must not start or end with '-'");
    }
    Ok(())
}

/// What authorisation and rotation need to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub identity: Identity,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

/// Reads the identity, serial and validity of a DER certificate.
///
/// # Errors
/// [`IdentityError::Unparsable`] for bad DER; [`IdentityError::NoIdentity`] when no SAN is a
/// `pmesh://` URI; an invalid URI or name too.
pub fn inspect(der: &[u8]) -> Result<CertFacts, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|err| IdentityError::Unparsable(err.to_string()))?;
    let san =
        cert.subject_alternative_name().map_err(|err| IdentityError::Unparsable(err.to_string()))?.ok_or(IdentityError::NoIdentity)?;
    let prefix = format!("{TRUST_DOMAIN}://");
    let uri = san
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with(&prefix) => Some(*uri),
            _ => None,
        })
        .ok_or(IdentityError::NoIdentity)?;
    Ok(CertFacts {
        identity: Identity::from_uri(uri)?,
        serial: hex::encode(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// `sha256:HEX` of a DER certificate: what operators pin at join.
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Parses `sha256:HEX` (the prefix may be `SHA256:`; hex may contain `:` separators).
///
/// # Errors
/// [`IdentityError::InvalidFingerprint`] for anything else.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], IdentityError> {
    let invalid = || IdentityError::InvalidFingerprint(text.to_owned());
    let hex_part = text.strip_prefix("sha256:").or_else(|| text.strip_prefix("SHA256:")).ok_or_else(invalid)?.replace(':', "");
    let bytes = hex::decode(hex_part).map_err(|_| invalid())?;
    bytes.try_into().map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_uri(uri: &str, expected: Result<(Role, &str), ()>) {
        let got = Identity::from_uri(uri).map(|id| (id.role, id.name)).map_err(|_| ());
        assert_eq!(got, expected.map(|(role, name)| (role, name.to_owned())), "{uri}");
    }

    #[test]
    fn identity_uris() {
        check_uri("pmesh://agent/pc-1", Ok((Role::Agent, "pc-1")));
        check_uri("pmesh://admin/alice", Ok((Role::Admin, "alice")));
        check_uri("pmesh://master/master", Ok((Role::Master, "master")));
        check_uri("pmesh://root/pc-1", Err(()));
        check_uri("spiffe://agent/pc-1", Err(()));
        check_uri("pmesh://agent/PC_1", Err(()));
        check_uri("pmesh://agent/", Err(()));
        check_uri("pmesh://agent", Err(()));
    }

    #[test]
    fn names() {
        for good in ["a", "pc-1", "esx01", &"a".repeat(63)] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a b", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uri_and_dns_round_trip() {
        let id = Identity::new(Role::Agent, "pc-1").unwrap();
        assert_eq!(id.uri(), "pmesh://agent/pc-1");
        assert_eq!(id.dns_name(), "pc-1.agent.pmesh");
        assert_eq!(Identity::from_uri(&id.uri()).unwrap(), id);
    }

    #[test]
    fn fingerprints() {
        let fp = fingerprint(b"der");
        assert_eq!(parse_fingerprint(&fp).unwrap().len(), 32);
        assert!(parse_fingerprint("sha256:abcd").is_err());
        assert!(parse_fingerprint("md5:00").is_err());
        let colons = fp
            .trim_start_matches("sha256:")
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_fingerprint(&format!("SHA256:{colons}")).unwrap(), parse_fingerprint(&fp).unwrap());
    }
}
