//! Errors of the master's RPC handlers, and their one translation into `tonic::Status`.

use tonic::Status;

use crate::store::StorageError;

/// Why an RPC failed, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the message says which field and why.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// A valid request the caller is not allowed to make (token used, name pinned…).
    #[error("{0}")]
    Denied(String),
    /// A valid request that could not be carried out for a reason outside the master and the
    /// caller: a URL's server failed, stalled or its TLS did not verify, or the disk is full.
    #[error("{0}")]
    Failed(String),
    /// An agent the request needs did not answer (the master could not reach it).
    #[error("{0}")]
    Unreachable(String),
    /// A fault of the master itself; logged in full, reported to the caller in general terms.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        match err {
            ApiError::Invalid(message) => Status::invalid_argument(message),
            ApiError::NotFound(message) => Status::not_found(message),
            ApiError::AlreadyExists(message) => Status::already_exists(message),
            ApiError::Denied(message) => Status::permission_denied(message),
            ApiError::Failed(message) => Status::failed_precondition(message),
            ApiError::Unreachable(message) => Status::unavailable(message),
            // The database's disk: the one internal fault the caller is told about, since the
            // operator can act on it (the store has logged it once already).
            ApiError::Internal(err) => match err.chain().find_map(|cause| cause.downcast_ref::<StorageError>()) {
                Some(full @ StorageError::DiskFull { .. }) => Status::resource_exhausted(full.to_string()),
                Some(other) => Status::unavailable(other.to_string()),
                None => {
                    tracing::error!(error = format!("{err:#}"), "internal error");
                    Status::internal("the master hit an internal error; see its log")
                }
            },
        }
    }
}

pub use pmesh_rt::cli::now_unix;

/// Unix seconds of a `SystemTime`.
pub fn unix(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_secs() as i64).unwrap_or(0)
}
