//! Exit codes of `pmesh-agent`, the same as `pmesh`'s, and call failures as sentences.

use tonic::Code;

/// The command failed.
pub const FAILED: u8 = 1;
/// Usage or validation error: nothing was changed.
pub const USAGE: u8 = 2;
/// The master could not be reached.
pub const UNREACHABLE: u8 = 4;
/// The master refused: bad or used token, fingerprint mismatch, revoked certificate.
pub const REFUSED: u8 = 5;

/// One sentence and an exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError { code, message: message.into() }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(err: anyhow::Error) -> Self {
        CliError::new(FAILED, format!("{err:#}"))
    }
}

/// One sentence for a failed call to `peer`; `explained` is what the connection knows of a
/// TLS or socket failure behind the status.
pub fn failure(peer: &str, status: tonic::Status, explained: Option<pmesh_proto::tls::Explanation>) -> CliError {
    if let Some(explained) = explained {
        let code = if explained.trust { REFUSED } else { UNREACHABLE };
        return CliError::new(code, format!("{peer}: {explained}"));
    }
    let message = status.message();
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied | Code::AlreadyExists => {
            CliError::new(REFUSED, format!("{peer} refused: {message}"))
        }
        Code::InvalidArgument => CliError::new(USAGE, format!("{peer} refused the request: {message}")),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown => {
            CliError::new(UNREACHABLE, format!("cannot reach {peer}: {message}"))
        }
        _ => CliError::new(FAILED, format!("{peer}: {message}")),
    }
}
