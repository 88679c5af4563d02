//! Who may call what on the master: the trust invariant, as a table.
//!
//! | method | caller |
//! |---|---|
//! | `Master/Join` | anyone (the token authenticates) |
//! | `Master/Renew` | an agent, for itself, while registered |
//! | other `Master/*` | an admin |
//! | health, reflection | any mesh certificate |
//!
//! Every certificate is also checked against the revocation records on every call.

use pmesh_proto::authz::{is_introspection, Policy};
use pmesh_proto::identity::{CertFacts, Role};
use tonic::Status;

use crate::store::Store;

pub const JOIN: &str = "/pmesh.v1.Master/Join";
pub const RENEW: &str = "/pmesh.v1.Master/Renew";
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
        let facts = caller.ok_or_else(|| {
            Status::unauthenticated(
                "this call needs a client certificate from the mesh CA, and none was presented",
            )
        })?;
        let revoked = self.store.is_revoked(&facts.serial).map_err(|err| {
            tracing::error!(error = %err, "revocation check failed");
            Status::unavailable("the master cannot check revocation right now")
        })?;
        if revoked {
            return Err(Status::unauthenticated(format!(
                "the certificate of {} (serial {}) has been revoked",
                facts.identity, facts.serial
            )));
        }
        if is_introspection(path) {
            return Ok(());
        }
        let required = match path {
            RENEW => Role::Agent,
            _ if path.starts_with(MASTER_PREFIX) => Role::Admin,
            _ => return Err(Status::unimplemented(format!("unknown method {path}"))),
        };
        if facts.identity.role != required {
            return Err(Status::permission_denied(format!(
                "{} may not call {path}: it needs an {required} certificate",
                facts.identity
            )));
        }
        Ok(())
    }
}
