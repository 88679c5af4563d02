//! Exit codes of `pmesh-agent` (the same as `pmesh`'s, from `pmesh_rt::cli`), and failed calls
//! to the master as sentences.

use tonic::Code;

pub use pmesh_rt::cli::exit::{CANCELLED, FAILED, REFUSED, UNREACHABLE, USAGE};
pub use pmesh_rt::cli::CliError;

/// One sentence for a failed call to `peer`, with the exit code `pmesh_rt::cli::exit_code`
/// gives it; `explained` is what the connection knows of a TLS or socket failure behind the
/// status.
///
/// The agent only calls the master to join, where `AlreadyExists` means the name is taken by
/// an enrolled agent: the token does not allow this join, a refusal like an unknown token.
pub fn failure(peer: &str, status: tonic::Status, explained: Option<pmesh_proto::tls::Explanation>) -> CliError {
    if let Some(explained) = explained {
        let code = pmesh_rt::cli::exit_code(&status, Some(&explained));
        return CliError::new(code, format!("{peer}: {explained}"));
    }
    let message = status.message();
    let code = if status.code() == Code::AlreadyExists { REFUSED } else { pmesh_rt::cli::exit_code(&status, None) };
    let sentence = match code {
        REFUSED => format!("{peer} refused: {message}"),
        USAGE => format!("{peer} refused the request: {message}"),
        UNREACHABLE => format!("cannot reach {peer}: {message}"),
        _ => format!("{peer}: {message}"),
    };
    CliError::new(code, sentence)
}
