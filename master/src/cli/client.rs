//! The CLI's connection to the master, and the translation of failures into a sentence and a
//! documented exit code.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pmesh_proto::identity::Identity;
use pmesh_proto::tls::Explanation;
use pmesh_rt::v1::master_client::MasterClient;

use crate::credentials::{self, Credentials};
use crate::error::now_unix;

pub use pmesh_rt::cli::{exit, CliError};

const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A client of the master, authenticated by the credential found by the documented rules.
pub struct Connection {
    pub client: MasterClient<tonic::transport::Channel>,
    pub master: String,
    dialled: pmesh_rt::net::Dialled,
}

impl Connection {
    /// One sentence and exit code for a failed call on this connection.
    pub fn failed(&self, status: tonic::Status) -> CliError {
        let explained = self.dialled.explain(&status);
        failure(&format!("master {}", self.master), status, explained)
    }
}

/// Opens a connection using the credential at `explicit` or in `data_dir`.
///
/// # Errors
/// [`exit::REFUSED`] when no credential is found, or it cannot be read, or it is not valid
/// now (as the README documents: a missing credential is a refusal, not a usage error).
pub fn connect(explicit: Option<&Path>, data_dir: &Path) -> Result<Connection, CliError> {
    let path = credentials::locate(explicit, data_dir);
    let credentials = Credentials::load(&path).map_err(|err| CliError::new(exit::REFUSED, format!("{err:#}")))?;
    tracing::info!(credential = %path.display(), master = %credentials.master, admin = %credentials.name, "connecting");
    let (not_before, not_after) = credentials.validity()?;
    let at = |unix: i64| humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64));
    if not_before > now_unix() {
        return Err(CliError::new(
            exit::REFUSED,
            format!(
                "the credential {} is not valid until {} (this host's clock says {}): check this host's clock",
                path.display(),
                at(not_before),
                at(now_unix())
            ),
        ));
    }
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
    let dialled = pmesh_rt::net::dial(&credentials.master, &Identity::master(), tls, CALL_TIMEOUT)?.presenting(not_before, not_after);
    Ok(Connection { client: MasterClient::new(dialled.channel.clone()), master: credentials.master, dialled })
}

/// One sentence for a failed call to `peer`, with the exit code `pmesh_rt::cli::exit_code`
/// gives it; `explained` is what the connection knows of a TLS or socket failure behind the
/// status.
pub fn failure(peer: &str, status: tonic::Status, explained: Option<Explanation>) -> CliError {
    let code = pmesh_rt::cli::exit_code(&status, explained.as_ref());
    if let Some(explained) = explained {
        let message =
            if explained.trust { format!("TLS with {peer} failed: {explained}") } else { format!("cannot reach {peer}: {explained}") };
        return CliError::new(code, message);
    }
    let message = status.message();
    let sentence = match code {
        exit::REFUSED => format!("{peer} refused the call: {message}"),
        exit::UNREACHABLE => format!("cannot reach {peer}: {}", if message.is_empty() { "no answer" } else { message }),
        _ => message.to_owned(),
    };
    CliError::new(code, sentence)
}
