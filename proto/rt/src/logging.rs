//! Log setup: the daemons' subscriber (plain lines under journald, which adds its own
//! timestamps and wants no colour; timestamps elsewhere; one JSON object a line with
//! `--log-format json`) and the CLI's (warnings by default, `-v`/`-q` to change). `RUST_LOG`
//! filters both, and wins over the default level. Colour only when stderr is a terminal, so
//! a log file or a pipe never gets escape codes.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How a daemon writes its log lines (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line (timestamp, level, target, fields), for log shippers.
    Json,
}

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// Installs a daemon's global subscriber, `info` unless `RUST_LOG` says otherwise. Call once,
/// from `main`.
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt().with_env_filter(filter("info")).with_writer(std::io::stderr);
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text if under_journald => builder.without_time().with_ansi(false).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// The level the CLI logs at for `verbose` `-v`s and `quiet` `-q`s: `warn` by default, `info`,
/// `debug`, `trace` with one, two, three `-v`; `error` with `-q`, `off` with `-qq`.
pub fn cli_level(verbose: u8, quiet: u8) -> &'static str {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let index = (2 + i16::from(verbose) - i16::from(quiet)).clamp(0, 5);
    LEVELS[index as usize]
}

/// Installs the CLI's subscriber: to stderr, without timestamps, at [`cli_level`] unless
/// `RUST_LOG` is set.
pub fn init_cli(verbose: u8, quiet: u8) {
    tracing_subscriber::fmt()
        .with_env_filter(filter(cli_level(verbose, quiet)))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(verbose > 1)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_moves_the_level_and_stops_at_the_ends() {
        assert_eq!(cli_level(0, 0), "warn");
        assert_eq!(cli_level(1, 0), "info");
        assert_eq!(cli_level(3, 0), "trace");
        assert_eq!(cli_level(9, 0), "trace");
        assert_eq!(cli_level(0, 1), "error");
        assert_eq!(cli_level(0, 5), "off");
        assert_eq!(cli_level(1, 1), "warn");
    }
}
