//! Errors of the agent's RPC handlers, and their one translation into `tonic::Status`.
//!
//! The master relays an agent's answer to the operator, so the message of each variant is
//! written for them; an internal fault is logged here in full and reported in general terms.

use tonic::Status;

use crate::runs::{DestroyError, StartError};

/// Why an Agent call failed, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The request cannot be carried out as given; the message lists every problem.
    #[error("{0}")]
    Invalid(String),
    /// The caller has no acceptable client certificate.
    #[error("{0}")]
    Unauthenticated(String),
    /// A caller, or a bundle, the agent will not accept: a caller other than the master, a
    /// bundle that does not verify against the master's key.
    #[error("{0}")]
    Denied(String),
    /// What the caller asked about does not exist here (an instance's outputs).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what is going on here (a destroy while a run is in progress).
    #[error("{0}")]
    Busy(String),
    /// A fault of the agent itself (its enrolment, journal or disk, Docker behind a plan).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AgentError {
    /// A bundle refused by its signature, digest or archive: nothing was stored or run.
    pub fn bundle_refused(digest: &str, reason: &str) -> AgentError {
        tracing::warn!(%digest, %reason, "bundle refused");
        AgentError::Denied(format!("bundle {digest} refused: {reason}"))
    }

    /// A start or plan that failed; `digest` names the bundle in a refusal.
    pub fn from_start(err: StartError, digest: &str) -> AgentError {
        match err {
            StartError::Invalid(problems) => AgentError::Invalid(problems),
            StartError::Refused(reason) => AgentError::bundle_refused(digest, &reason),
            StartError::Internal(err) => AgentError::Internal(err),
        }
    }

    /// A destroy that failed.
    pub fn from_destroy(err: DestroyError) -> AgentError {
        match err {
            DestroyError::Unknown(_) => AgentError::NotFound(err.to_string()),
            DestroyError::Busy { .. } => AgentError::Busy(err.to_string()),
            DestroyError::Internal(err) => AgentError::Internal(err),
        }
    }
}

impl From<AgentError> for Status {
    fn from(err: AgentError) -> Status {
        match err {
            AgentError::Invalid(message) => Status::invalid_argument(message),
            AgentError::Unauthenticated(message) => Status::unauthenticated(message),
            AgentError::Denied(message) => Status::permission_denied(message),
            AgentError::NotFound(message) => Status::not_found(message),
            AgentError::Busy(message) => Status::failed_precondition(message),
            AgentError::Internal(err) if disk_full(&err) => {
                tracing::error!(error = format!("{err:#}"), "the disk is full");
                Status::resource_exhausted("the agent's disk is full (no space left on device): free space in its data directory and retry")
            }
            AgentError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                Status::internal("the agent hit an internal error; see the agent's log")
            }
        }
    }
}

/// Whether a fault comes from a full disk: the one internal fault the operator can fix
/// without reading the agent's log, so the master is told what it is.
fn disk_full(err: &anyhow::Error) -> bool {
    let full = |io: &std::io::Error| io.kind() == std::io::ErrorKind::StorageFull;
    err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(full)
            || matches!(cause.downcast_ref::<sled::Error>(), Some(sled::Error::Io(io)) if full(io))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(err: AgentError, code: tonic::Code, message: &str) {
        let status = Status::from(err);
        assert_eq!((status.code(), status.message()), (code, message));
    }

    #[test]
    fn each_error_has_one_status() {
        check(AgentError::Invalid("instance: empty".into()), tonic::Code::InvalidArgument, "instance: empty");
        check(AgentError::Unauthenticated("no certificate".into()), tonic::Code::Unauthenticated, "no certificate");
        check(AgentError::Denied("not the master".into()), tonic::Code::PermissionDenied, "not the master");
        check(
            AgentError::Internal(anyhow::anyhow!("/var/lib/pmesh-agent/journal: disk on fire")),
            tonic::Code::Internal,
            "the agent hit an internal error; see the agent's log",
        );
        // Found by the chaos suite's full-disk test: the operator was sent to the agent's log.
        let full = std::io::Error::from_raw_os_error(28);
        let full_disk = "the agent's disk is full (no space left on device): free space in its data directory and retry";
        check(AgentError::Internal(anyhow::Error::new(full).context("storing a bundle")), tonic::Code::ResourceExhausted, full_disk);
        let sled_full = sled::Error::Io(std::io::Error::from_raw_os_error(28));
        check(AgentError::Internal(anyhow::Error::new(sled_full).context("journalling")), tonic::Code::ResourceExhausted, full_disk);
    }

    #[test]
    fn a_refused_bundle_is_denied_whether_pushed_or_planned() {
        let pushed = Status::from(AgentError::bundle_refused("sha256:ab", "the signature does not verify"));
        let planned = Status::from(AgentError::from_start(StartError::Refused("the signature does not verify".into()), "sha256:ab"));
        assert_eq!(pushed.code(), tonic::Code::PermissionDenied);
        assert_eq!((planned.code(), planned.message()), (pushed.code(), pushed.message()));
    }
}
