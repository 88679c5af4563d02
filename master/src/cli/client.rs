//! The CLI's connection to the master, and the translation of failures into a sentence and a
//! documented exit code.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pmesh_proto::identity::Identity;
use pmesh_proto::v1::master_client::MasterClient;
use tonic::transport::Channel;
use tonic::Code;

use crate::credentials::{self, Credentials};
use crate::error::now_unix;

/// Exit codes, as the README documents them.
pub mod exit {
    /// The command failed (not found, already exists, internal error).
    pub const FAILED: u8 = 1;
    /// Usage or validation error: nothing was changed.
    pub const USAGE: u8 = 2;
    /// The master or an agent could not be reached.
    pub const UNREACHABLE: u8 = 4;
    /// The credential was refused: missing, expired, revoked, from another CA, or not allowed.
    pub const REFUSED: u8 = 5;
}

/// A failure the CLI reports: one sentence and an exit code.
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
        CliError::new(exit::FAILED, format!("{err:#}"))
    }
}

const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A client of the master, authenticated by the credential found by the documented rules.
pub struct Connection {
    pub client: MasterClient<Channel>,
    pub master: String,
}

/// Opens a connection using the credential at `explicit` or in `data_dir`.
///
/// # Errors
/// [`exit::USAGE`] when no credential is found; [`exit::REFUSED`] when it has expired.
pub fn connect(explicit: Option<&Path>, data_dir: &Path) -> Result<Connection, CliError> {
    let path = credentials::locate(explicit, data_dir);
    let credentials = Credentials::load(&path).map_err(|err| CliError::new(exit::USAGE, format!("{err:#}")))?;
    let not_after = credentials.not_after()?;
    if not_after <= now_unix() {
        return Err(CliError::new(
            exit::REFUSED,
            format!(
                "the credential {} expired at {}; ask an admin for a new one (`pmesh admin issue`)",
                path.display(),
                humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(not_after as u64))
            ),
        ));
    }
    let tls = Arc::new(credentials.client_config()?);
    let channel = crate::net::channel(&credentials.master, &Identity::master(), tls, CALL_TIMEOUT)?;
    Ok(Connection { client: MasterClient::new(channel), master: credentials.master })
}

/// One sentence for a failed call to `peer`, with its exit code.
pub fn failure(peer: &str, status: tonic::Status) -> CliError {
    if let Some(explained) = pmesh_proto::tls::explain(&status) {
        let refused = explained.contains("refused our certificate")
            || explained.contains("requires a client certificate");
        let code = if refused { exit::REFUSED } else { exit::UNREACHABLE };
        return CliError::new(code, format!("{peer}: {explained}"));
    }
    let message = status.message();
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => {
            CliError::new(exit::REFUSED, format!("{peer} refused the call: {message}"))
        }
        Code::InvalidArgument => CliError::new(exit::USAGE, message.to_owned()),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown => CliError::new(
            exit::UNREACHABLE,
            format!("cannot reach {peer}: {}", if message.is_empty() { "no answer" } else { message }),
        ),
        _ => CliError::new(exit::FAILED, message.to_owned()),
    }
}
