//! Who may call what on the master: the trust invariant, as a table.
//!
//! | method | caller |
//! |---|---|
//! | `Master/Join` | anyone (the token authenticates) |
//! | `Master/Renew` | an agent, for itself, while registered |
//! | `Master/ReadArtifact` | an agent or an admin |
//! | other `Master/*` (the rest of the depot included) | an admin |
//! | health, reflection | any mesh certificate |
//!
//! Every certificate is also checked against the revocation records on every call.

use pmesh_proto::identity::{CertFacts, Role};
use pmesh_rt::authz::{is_introspection, Policy};
use tonic::Status;

use crate::store::{CertStatus, Store};

pub const JOIN: &str = "/pmesh.v1.Master/Join";
pub const RENEW: &str = "/pmesh.v1.Master/Renew";
/// Agents fetch pattern artifacts from the depot with it.
pub const READ_ARTIFACT: &str = "/pmesh.v1.Master/ReadArtifact";
const MASTER_PREFIX: &str = "/pmesh.v1.Master/";

/// The master's authorisation policy.
pub struct MasterPolicy {
    pub store: Store,
}

impl Policy for MasterPolicy {
    fn authorize(&self, path: &str, caller: Option<&CertFacts>) -> Result<(), Status> {
        if path == JOIN {
            return Ok(());
        }
        let facts = caller
            .ok_or_else(|| Status::unauthenticated("this call needs a client certificate from the mesh CA, and none was presented"))?;
        let status = self.store.certificate(&facts.serial).map_err(|err| {
            tracing::error!(error = %err, "revocation check failed");
            Status::unavailable("the master cannot check revocation right now")
        })?;
        match status {
            CertStatus::Valid => {}
            CertStatus::Revoked { at } => {
                return Err(Status::unauthenticated(format!(
                    "the certificate of {} (serial {}) has been revoked (at {})",
                    facts.identity,
                    facts.serial,
                    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at.max(0) as u64))
                )))
            }
            CertStatus::Unknown => {
                return Err(Status::unauthenticated(format!(
                    "the certificate of {} (serial {}) is unknown to this master: it has no record of issuing it \
                     (was it issued by another master, or before its database was restored?); issue a new credential",
                    facts.identity, facts.serial
                )))
            }
        }
        if is_introspection(path) {
            return Ok(());
        }
        let allowed: &[Role] = match path {
            RENEW => &[Role::Agent],
            READ_ARTIFACT => &[Role::Agent, Role::Admin],
            _ if path.starts_with(MASTER_PREFIX) => &[Role::Admin],
            _ => return Err(Status::unimplemented(format!("unknown method {path}"))),
        };
        if !allowed.contains(&facts.identity.role) {
            let needed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
            return Err(Status::permission_denied(format!(
                "{} may not call {path}: it needs an {} certificate",
                facts.identity,
                needed.join(" or ")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use pmesh_proto::identity::Identity;

    use super::*;

    /// The table, call by call: `Some(role)` certificates, `None` no certificate.
    #[test]
    fn who_may_call_what() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let facts = |role: Role, name: &str, serial: &str| {
            let identity = Identity::new(role, name).unwrap();
            store.record_issued(serial, &identity.uri(), i64::MAX).unwrap();
            CertFacts { identity, serial: serial.into(), not_before: 0, not_after: i64::MAX }
        };
        let (agent, admin, master) =
            (facts(Role::Agent, "pc-1", "01"), facts(Role::Admin, "ann", "02"), facts(Role::Master, "master", "03"));
        let revoked = facts(Role::Admin, "bob", "04");
        store.revoke_serial("04", 1).unwrap();
        let policy = MasterPolicy { store };
        let check = |path: &str, caller: Option<&CertFacts>| policy.authorize(path, caller).map_err(|status| status.code());
        let denied = Err(tonic::Code::PermissionDenied);
        let method = |name: &str| format!("{MASTER_PREFIX}{name}");

        assert_eq!(check(JOIN, None), Ok(()));
        assert_eq!(check(RENEW, Some(&agent)), Ok(()));
        assert_eq!(check(RENEW, Some(&admin)), denied);
        assert_eq!(check(READ_ARTIFACT, Some(&agent)), Ok(()));
        assert_eq!(check(READ_ARTIFACT, Some(&admin)), Ok(()));
        assert_eq!(check(READ_ARTIFACT, Some(&master)), denied);
        assert_eq!(check(READ_ARTIFACT, None), Err(tonic::Code::Unauthenticated));
        assert_eq!(check(READ_ARTIFACT, Some(&revoked)), Err(tonic::Code::Unauthenticated));
        for admin_only in ["AddArtifact", "ImportArtifact", "ListArtifacts", "RemoveArtifact", "ListAgents", "PushPattern", "StartRun"] {
            assert_eq!(check(&method(admin_only), Some(&admin)), Ok(()), "{admin_only}");
            assert_eq!(check(&method(admin_only), Some(&agent)), denied, "{admin_only}");
        }
        assert_eq!(check("/grpc.health.v1.Health/Check", Some(&agent)), Ok(()));
        assert_eq!(check("/pmesh.v1.Agent/Info", Some(&admin)), Err(tonic::Code::Unimplemented));
    }

    /// A revoked certificate and one this master never issued are both refused, each named
    /// for what it is.
    #[test]
    fn revoked_and_unknown_certificates_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let identity = Identity::new(Role::Admin, "ann").unwrap();
        store.record_issued("0a", &identity.uri(), i64::MAX).unwrap();
        store.revoke_serial("0a", 1_796_169_600).unwrap();
        let policy = MasterPolicy { store };
        let message = |serial: &str| {
            let facts = CertFacts { identity: identity.clone(), serial: serial.into(), not_before: 0, not_after: i64::MAX };
            policy.authorize("/pmesh.v1.Master/ListAgents", Some(&facts)).unwrap_err().message().to_owned()
        };
        let revoked = message("0a");
        assert!(revoked.contains("has been revoked (at 2026-12-02T00:00:00Z)"), "{revoked}");
        let unknown = message("0b");
        assert!(unknown.contains("is unknown to this master") && !unknown.contains("revoked"), "{unknown}");
    }
}
