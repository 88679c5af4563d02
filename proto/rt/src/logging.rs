//! Log setup for the daemons: plain lines under journald (it adds its own timestamps and does
//! not want colours), timestamps elsewhere; `RUST_LOG` filters, `info` by default.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, from `main`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if under_journald {
        builder.without_time().with_ansi(false).init();
    } else {
        builder.init();
    }
}
