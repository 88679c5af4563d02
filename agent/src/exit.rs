//! Exit codes of `pmesh-agent` (the same as `pmesh`'s, from `pmesh_rt::cli`), and failed calls
//! to the master as sentences. Unlike `pmesh`, a join that finds its name taken is a refusal.

use tonic::Code;

pub use pmesh_rt::cli::exit::{CANCELLED, FAILED, REFUSED, UNREACHABLE, USAGE};
pub use pmesh_rt::cli::CliError;

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
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown => CliError::new(UNREACHABLE, format!("cannot reach {peer}: {message}")),
        _ => CliError::new(FAILED, format!("{peer}: {message}")),
    }
}
