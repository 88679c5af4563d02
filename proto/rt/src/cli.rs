//! What both command lines share: the documented exit codes and the one-sentence error they
//! end with, so `pmesh` and `pmesh-agent` cannot drift apart.

/// Exit codes, as the README documents them.
pub mod exit {
    /// The command failed (not found, already exists, internal error), or a run failed.
    pub const FAILED: u8 = 1;
    /// Usage or validation error: nothing was changed.
    pub const USAGE: u8 = 2;
    /// A run was cancelled.
    pub const CANCELLED: u8 = 3;
    /// The master, an agent or Docker could not be reached.
    pub const UNREACHABLE: u8 = 4;
    /// Refused: a credential, token, fingerprint, host key or login.
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

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_secs() as i64).unwrap_or(0)
}
