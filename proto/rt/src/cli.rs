//! What both command lines share, so `pmesh` and `pmesh-agent` cannot drift apart: their
//! `main` ([`main`], [`daemon`]), the documented exit codes, the one mapping from a failed
//! call to an exit code ([`exit_code`]), and the one-sentence error they end with.

use std::future::Future;
use std::io::Write as _;
use std::process::ExitCode;

use pmesh_proto::tls::Explanation;
use tonic::Code;

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

/// The exit code of a call that failed with `status`; `explained` is what the connection
/// knows of a TLS or socket failure behind it, which wins over the status.
///
/// | Failure | Code |
/// | --- | --- |
/// | TLS trust failure (certificate, CA, identity) | [`exit::REFUSED`] |
/// | other TLS or socket failure | [`exit::UNREACHABLE`] |
/// | `Unauthenticated`, `PermissionDenied` | [`exit::REFUSED`] |
/// | `InvalidArgument` | [`exit::USAGE`] |
/// | `Unavailable`, `DeadlineExceeded`, `Unknown` | [`exit::UNREACHABLE`] |
/// | anything else (`NotFound`, `AlreadyExists`, `Internal`…) | [`exit::FAILED`] |
pub fn exit_code(status: &tonic::Status, explained: Option<&Explanation>) -> u8 {
    if let Some(explained) = explained {
        return if explained.trust { exit::REFUSED } else { exit::UNREACHABLE };
    }
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => exit::REFUSED,
        Code::InvalidArgument => exit::USAGE,
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown => exit::UNREACHABLE,
        _ => exit::FAILED,
    }
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

/// A binary's `main`: installs the TLS provider, parses the command line into `C`, runs
/// `command` on a runtime with `worker_threads` (tokio's default when `None`), and turns its
/// error into one line on stderr, `NAME: sentence`, and the error's exit code.
///
/// `--help` and `--version` exit 0; a command line clap refuses exits [`exit::USAGE`].
pub fn main<C, F, Fut>(name: &str, worker_threads: Option<usize>, command: F) -> ExitCode
where
    C: clap::Parser,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<(), CliError>>,
{
    pmesh_proto::tls::install_default_provider();
    quiet_on_closed_pipe();
    let cli = match C::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(worker_threads) = worker_threads {
        builder.worker_threads(worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            crate::note!("{name}: cannot start the runtime: {err}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(command(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // With stderr closed too, the exit code is all that is left to say.
            crate::note!("{name}: {}", err.message);
            ExitCode::from(err.code)
        }
    }
}

/// Makes a closed stdout end the process quietly with exit 0, as `head` expects of the
/// command before it (`pmesh runs logs ID | head -1`): a reader that stopped reading is not a
/// failure.
///
/// Rust ignores SIGPIPE, so a write to a pipe whose reader has gone fails with `EPIPE`, and
/// `println!` panics on it: "failed printing to stdout: Broken pipe", exit 101. Restoring
/// SIGPIPE's default would fix printing but would also let a socket or child pipe the process
/// writes to kill it without a word, so instead every `println!`, in every command and in
/// code not written yet, is covered here, at the one place they all fail: the panic. Nothing
/// is lost by exiting: the reader wanted no more, and the CLI holds no state to save (a
/// followed run goes on, as after Ctrl-C). Stderr is written with [`note!`](crate::note),
/// which ignores a closed stderr, so the exit code of a failing command survives it. Any
/// other panic reaches the default hook unchanged.
fn quiet_on_closed_pipe() {
    let closed = std::io::Error::from_raw_os_error(rustix::io::Errno::PIPE.raw_os_error()).to_string();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if is_closed_pipe(info.payload(), &closed) {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Whether a panic's payload is std's failure to print to a closed stdout; `closed`
/// is the text of `EPIPE` as `std::io::Error` shows it.
fn is_closed_pipe(payload: &(dyn std::any::Any + Send), closed: &str) -> bool {
    let message =
        payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied()).unwrap_or_default();
    message.starts_with("failed printing to stdout") && message.ends_with(closed)
}

/// `eprintln!` that ignores a closed stderr instead of panicking: the CLIs' warnings and
/// errors, so that a command whose stderr has gone still ends with its own exit code.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::cli::note_line(format_args!($($arg)*))
    };
}

/// What [`note!`](crate::note) writes: one line on stderr, errors ignored.
pub fn note_line(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Runs a daemon: installs the log subscriber, then `daemon` (which owns signals and its
/// listener); a failure is logged, and exits [`exit::FAILED`].
///
/// # Errors
/// The daemon's error, as [`exit::FAILED`].
pub async fn daemon(
    name: &str,
    log_format: crate::logging::LogFormat,
    daemon: impl Future<Output = anyhow::Result<()>>,
) -> Result<(), CliError> {
    crate::logging::init(log_format);
    daemon.await.map_err(|err| {
        tracing::error!(error = format!("{err:#}"), "{name} failed");
        CliError::from(err)
    })
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(code: Code, expected: u8) {
        assert_eq!(exit_code(&tonic::Status::new(code, "why"), None), expected, "{code:?}");
    }

    #[test]
    fn statuses_map_to_the_documented_exit_codes() {
        check(Code::Unauthenticated, exit::REFUSED);
        check(Code::PermissionDenied, exit::REFUSED);
        check(Code::InvalidArgument, exit::USAGE);
        check(Code::Unavailable, exit::UNREACHABLE);
        check(Code::DeadlineExceeded, exit::UNREACHABLE);
        check(Code::Unknown, exit::UNREACHABLE);
        check(Code::NotFound, exit::FAILED);
        check(Code::AlreadyExists, exit::FAILED);
        check(Code::Internal, exit::FAILED);
        check(Code::FailedPrecondition, exit::FAILED);
    }

    #[test]
    fn only_a_print_to_a_closed_pipe_is_quiet() {
        let closed = std::io::Error::from_raw_os_error(rustix::io::Errno::PIPE.raw_os_error()).to_string();
        let payload = |text: &str| -> Box<dyn std::any::Any + Send> { Box::new(text.to_owned()) };
        assert!(is_closed_pipe(&*payload(&format!("failed printing to stdout: {closed}")), &closed));
        assert!(!is_closed_pipe(&*payload(&format!("failed printing to stderr: {closed}")), &closed));
        assert!(!is_closed_pipe(&*payload("failed printing to stdout: No space left on device (os error 28)"), &closed));
        assert!(!is_closed_pipe(&*payload("index out of bounds"), &closed));
    }

    #[test]
    fn what_the_connection_knows_wins_over_the_status() {
        let status = tonic::Status::invalid_argument("why");
        let explained = |trust| Explanation { message: "TLS said no".into(), trust };
        assert_eq!(exit_code(&status, Some(&explained(true))), exit::REFUSED);
        assert_eq!(exit_code(&status, Some(&explained(false))), exit::UNREACHABLE);
    }
}
