//! What can go wrong fetching an artifact, and what the fetcher does about each: retry the
//! same source, move on to the next one, or stop.
//!
//! Every message names where (a source's redacted description or a local path) and why, and
//! is complete on its own: no variant carries an error `source()`, so a message printed with
//! anyhow's `{:#}` says everything once. No variant ever holds a secret: sources describe
//! themselves without credentials or query strings.

use std::path::PathBuf;
use std::time::Duration;

/// Why fetching or caching an artifact failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The content is not the artifact asked for: its size or sha256 differs. Permanent for
    /// that source; the partial download is removed so the bad bytes are not resumed.
    #[error("{origin} served other content than expected: expected {expected}, got {got}")]
    Checksum { origin: String, expected: String, got: String },

    /// The source refused the credentials (HTTP 401 or 403), or asked for some and none were
    /// given. Permanent for that source.
    #[error("{origin} refused the credentials (HTTP {status}): check the token or user:password given for it")]
    Unauthorized { origin: String, status: u16 },

    /// The source does not have it (HTTP 404 or 410). Permanent for that source.
    #[error("{origin} does not have it (not found)")]
    NotFound { origin: String },

    /// The server's certificate did not verify. Permanent for that source.
    #[error(
        "TLS verification of {origin} failed: {detail}; if the server's certificate comes from \
         a private CA, give that CA's certificate (PEM) as the fetcher's CA bundle"
    )]
    Tls { origin: String, detail: String },

    /// Not enough free space for the download, or the disk filled up while writing.
    #[error("not enough disk space in {}: {detail}", path.display())]
    DiskFull { path: PathBuf, detail: String },

    /// No bytes arrived for the stall timeout. Retried.
    #[error("{origin} stalled: no bytes for {}s", after.as_secs_f64())]
    Stalled { origin: String, after: Duration },

    /// An HTTP status the fetcher has no better name for. 5xx, 408 and 429 are retried; the
    /// others are permanent for that source.
    #[error("{origin} answered HTTP {status}")]
    Status { origin: String, status: u16 },

    /// The transfer broke (connection refused or reset, the body cut short). Retried.
    #[error("{origin}: {detail}")]
    Network { origin: String, detail: String },

    /// The source answered something the fetcher cannot use (a range it did not ask for).
    /// Permanent for that source.
    #[error("{origin} answered unusably: {detail}")]
    Protocol { origin: String, detail: String },

    /// A local file operation failed. Stops the fetch: another source would not help.
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },

    /// The artifact is leased by a running step, so it cannot be removed.
    #[error("artifact {sha256} is in use by a running step")]
    InUse { sha256: String },

    /// Another process holds the cache directory.
    #[error("the cache directory {} is in use by another process", path.display())]
    Locked { path: PathBuf },

    /// The request itself is wrong: a malformed sha256 or URL, an unreadable CA bundle.
    #[error("{0}")]
    Invalid(String),

    /// Every source failed; one entry per source tried, in order: its description and why.
    #[error("{}", describe_all(.0))]
    AllSourcesFailed(Vec<(String, FetchError)>),
}

/// What the fetcher does after an attempt failed with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Transient: try the same source again, after a backoff, resuming.
    Retry,
    /// Permanent for this source: try the next one.
    NextSource,
    /// Local or caller problem: no source would help.
    Stop,
}

impl FetchError {
    /// True when trying the same source again later may succeed (a broken connection, a
    /// stall, a 5xx); false for refusals, wrong content and local problems.
    pub fn is_transient(&self) -> bool {
        self.disposition() == Disposition::Retry
    }

    pub(crate) fn disposition(&self) -> Disposition {
        match self {
            FetchError::Network { .. } | FetchError::Stalled { .. } => Disposition::Retry,
            FetchError::Status { status, .. } if *status >= 500 || *status == 408 || *status == 429 => Disposition::Retry,
            FetchError::Checksum { .. }
            | FetchError::Unauthorized { .. }
            | FetchError::NotFound { .. }
            | FetchError::Tls { .. }
            | FetchError::Status { .. }
            | FetchError::Protocol { .. }
            | FetchError::AllSourcesFailed(_) => Disposition::NextSource,
            FetchError::DiskFull { .. }
            | FetchError::Io { .. }
            | FetchError::InUse { .. }
            | FetchError::Locked { .. }
            | FetchError::Invalid(_) => Disposition::Stop,
        }
    }

    /// A local I/O error, as [`FetchError::DiskFull`] when the disk (or a quota) is full.
    pub(crate) fn local(what: impl Into<String>, path: &std::path::Path, error: std::io::Error) -> FetchError {
        if is_disk_full(&error) {
            return FetchError::DiskFull { path: path.to_owned(), detail: "the disk filled up while writing".into() };
        }
        FetchError::Io { what: what.into(), error }
    }
}

pub(crate) fn is_disk_full(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

fn describe_all(failures: &[(String, FetchError)]) -> String {
    if failures.is_empty() {
        return "the artifact is not cached and no source was given".into();
    }
    let each: Vec<String> = failures.iter().map(|(_, error)| error.to_string()).collect();
    match each.as_slice() {
        [only] => only.clone(),
        _ => format!("every source failed: {}", each.join("; then ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_is_recognised_from_enospc_and_edquot() {
        for errno in [28 /* ENOSPC */, 122 /* EDQUOT */] {
            let error = FetchError::local("writing x", std::path::Path::new("/cache"), std::io::Error::from_raw_os_error(errno));
            assert!(matches!(error, FetchError::DiskFull { .. }), "errno {errno}: {error:?}");
        }
        let error = FetchError::local("writing x", std::path::Path::new("/cache"), std::io::Error::from_raw_os_error(5));
        assert!(matches!(error, FetchError::Io { .. }));
    }

    #[test]
    fn dispositions() {
        let status = |status| FetchError::Status { origin: "o".into(), status };
        assert_eq!(status(503).disposition(), Disposition::Retry);
        assert_eq!(status(429).disposition(), Disposition::Retry);
        assert_eq!(status(400).disposition(), Disposition::NextSource);
        assert!(FetchError::Stalled { origin: "o".into(), after: Duration::from_secs(1) }.is_transient());
        assert_eq!(FetchError::Invalid("x".into()).disposition(), Disposition::Stop);
    }

    #[test]
    fn all_sources_failed_lists_each() {
        let error = FetchError::AllSourcesFailed(vec![
            ("a".into(), FetchError::NotFound { origin: "https://a/x".into() }),
            ("b".into(), FetchError::Status { origin: "https://b/x".into(), status: 502 }),
        ]);
        assert_eq!(error.to_string(), "every source failed: https://a/x does not have it (not found); then https://b/x answered HTTP 502");
        assert_eq!(FetchError::AllSourcesFailed(vec![]).to_string(), "the artifact is not cached and no source was given");
    }
}
