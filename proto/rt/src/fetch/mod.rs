//! Artifacts by checksum: a resumable, verifying download engine over a content-addressed
//! cache. The agent fetches a pattern's artifacts with it (the master's depot first, then the
//! URLs); the master imports URLs into its depot with it.
//!
//! # On disk
//!
//! ```text
//! ROOT/.lock                    flock: one process owns a cache
//! ROOT/sha256/<hex>             complete artifacts, read-only, named by their sha256
//! ROOT/partial/<key>.part       downloads in progress (key: the sha256, import-<hash>, upload-<pid>-<n>)
//! ROOT/partial/<key>.validator  the source and ETag / Last-Modified the bytes came with
//! ```
//!
//! A file appears under `sha256/` only by an atomic rename of a synced partial whose size and
//! sha256 matched; a failed fetch never leaves one there.
//!
//! # Resume
//!
//! A partial is hashed as it grows and re-hashed when a process finds one, then continued
//! from its length: over HTTP with `Range: bytes=N-` (and `If-Range` when that server gave
//! the bytes a validator), over a [`RangeSource`] with `open(N)`. A `200` to a ranged request
//! restarts from zero; a `416` or a partial longer than the artifact is discarded. A
//! transient failure keeps the partial (a later attempt, fetch or process resumes it); a
//! checksum mismatch removes it, so bad bytes are never resumed. Imports without a digest
//! resume only under a validator, since nothing else proves that the rest of the body
//! belongs to the same content.
//!
//! # Single flight
//!
//! Concurrent fetches of one artifact share it: the first downloads, the others wait for it
//! and then lease the cached file. If the first fails, the next waiter tries again with its
//! own sources (which may differ, with other credentials) and resumes what the first left.
//! Downloads are also bounded per fetcher by a semaphore.
//!
//! # Leases and eviction
//!
//! [`Fetcher::ensure`] returns a [`Lease`]; while any lease on a digest lives the file stays.
//! With a cap, each landing evicts least recently used, unleased artifacts until the cache
//! is under it; [`Cache::remove`] refuses a leased one. Leases live in memory, hence the
//! lock that keeps a second process off the directory. Last use is the file's mtime, set when
//! a lease is taken and when the last one is dropped: the content never changes after it
//! lands, so the mtime means nothing else, and it survives restarts without an index file to
//! keep consistent (atime would not: `noatime` and `relatime` mounts).
//!
//! # Uploads
//!
//! [`Cache::receive`] lands bytes a caller pushes (the depot's gRPC uploads) through the same
//! hashing partial and atomic rename; an upload cannot be resumed, so a failed one leaves
//! nothing, not even its partial.

mod cache;
mod error;
mod http;
mod partial;
mod progress;
mod source;
mod transfer;
mod upload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{OwnedMutexGuard, Semaphore};
use tracing::Instrument;

pub use cache::{Cache, Entry, Lease};
pub use error::FetchError;
pub use progress::{human_bytes, Progress};
pub use source::{Auth, ByteStream, RangeSource, Secret, Source};
pub use upload::Upload;

use partial::Partial;
use progress::Meter;
use transfer::{Expected, Settings};

/// An artifact to have in the cache: its digest, its size and where to get it, in order.
#[derive(Debug, Clone)]
pub struct Want {
    /// sha256, 64 hex digits.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Tried in order until one serves it.
    pub sources: Vec<Source>,
}

/// Something to put into a depot, perhaps without knowing its digest yet.
#[derive(Debug, Clone)]
pub struct Import {
    pub source: Source,
    /// When given, the content must match it.
    pub sha256: Option<String>,
    /// When given, the content must match it; otherwise the source's Content-Length is
    /// checked if it sends one.
    pub size: Option<u64>,
}

/// How a [`Fetcher`] behaves.
#[derive(Clone)]
pub struct FetchConfig {
    /// Attempts per source that move no bytes before the source is given up (first
    /// included). Attempts that do move bytes are not counted.
    pub max_attempts: u32,
    /// The first pause before retrying; it doubles up to `backoff_max`, plus jitter.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// No bytes (or no response) for this long fails the attempt as stalled.
    pub stall_timeout: Duration,
    /// Bounds each TCP and TLS connect.
    pub connect_timeout: Duration,
    /// Downloads running at once; more wait their turn.
    pub max_concurrent: usize,
    /// Extra CA certificates (PEM) trusted for HTTPS besides the host's.
    pub ca_bundle: Option<Vec<u8>>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            max_attempts: 5,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            max_concurrent: 2,
            ca_bundle: None,
        }
    }
}

impl std::fmt::Debug for FetchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchConfig")
            .field("max_attempts", &self.max_attempts)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("stall_timeout", &self.stall_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_concurrent", &self.max_concurrent)
            .field("ca_bundle", &self.ca_bundle.as_ref().map(|pem| format!("{} bytes of PEM", pem.len())))
            .finish()
    }
}

/// Fetches artifacts into a [`Cache`]. Cheap to clone; clones share the cache, the client,
/// the download limit and the single-flight table.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Cache,
    settings: Settings,
    downloads: Semaphore,
    /// One lock per partial key being fetched; see [`Flight`].
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Fetcher {
    /// A fetcher over `cache`.
    ///
    /// # Errors
    /// [`FetchError::Invalid`] when the CA bundle holds no usable certificate.
    pub fn new(cache: Cache, config: FetchConfig) -> Result<Fetcher, FetchError> {
        let client = http::client(config.ca_bundle.as_deref(), config.connect_timeout)?;
        let downloads = Semaphore::new(config.max_concurrent.max(1));
        let settings = Settings { client, config };
        Ok(Fetcher { inner: Arc::new(Inner { cache, settings, downloads, flights: Mutex::new(HashMap::new()) }) })
    }

    /// The cache this fetcher fills.
    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    /// Makes `want` present in the cache and leases it: at once when it is cached, otherwise
    /// from its sources in order, resuming any partial download, reporting `progress` at most
    /// every 250 ms and once at the end.
    ///
    /// # Errors
    /// [`FetchError::Invalid`] for a malformed sha256; [`FetchError::DiskFull`] when the
    /// download cannot fit (checked before it starts, and while writing);
    /// [`FetchError::Io`] for other local failures; [`FetchError::AllSourcesFailed`] with
    /// each source's reason ([`FetchError::Unauthorized`], [`FetchError::NotFound`],
    /// [`FetchError::Tls`], [`FetchError::Checksum`], or the last transient error once the
    /// retries ran out). No file is left under `sha256/` on any error.
    pub async fn ensure(&self, want: &Want, progress: impl Fn(Progress) + Send + Sync) -> Result<Lease, FetchError> {
        let sha256 = normalise_sha256(&want.sha256)?;
        let span = tracing::info_span!("fetch", sha256 = %sha256, size = want.size);
        async {
            if let Some(lease) = self.hit(&sha256, want.size)? {
                return Ok(lease);
            }
            if want.sources.is_empty() {
                return Err(FetchError::AllSourcesFailed(Vec::new()));
            }
            let _flight = Flight::join(&self.inner, &sha256).await;
            // The flight before this one may have landed it.
            if let Some(lease) = self.hit(&sha256, want.size)? {
                return Ok(lease);
            }
            let expected = Expected { sha256: Some(sha256.clone()), size: Some(want.size) };
            self.download(&sha256, &want.sources, &expected, &progress).await
        }
        .instrument(span)
        .await
    }

    /// Puts `import`'s content into the cache and leases it, under its sha256: the one given,
    /// or the one computed while streaming. Resumable like [`Fetcher::ensure`].
    ///
    /// # Errors
    /// As [`Fetcher::ensure`].
    pub async fn import(&self, import: &Import, progress: impl Fn(Progress) + Send + Sync) -> Result<Lease, FetchError> {
        let sources = std::slice::from_ref(&import.source);
        if let (Some(sha256), Some(size)) = (&import.sha256, import.size) {
            let want = Want { sha256: sha256.clone(), size, sources: sources.to_vec() };
            return self.ensure(&want, progress).await;
        }
        let sha256 = import.sha256.as_deref().map(normalise_sha256).transpose()?;
        let key = match &sha256 {
            Some(sha256) => sha256.clone(),
            None => format!("import-{}", hex::encode(Sha256::digest(identity(&import.source)))),
        };
        let span = tracing::info_span!("import", origin = %import.source.describe());
        async {
            let _flight = Flight::join(&self.inner, &key).await;
            if let Some(sha256) = &sha256 {
                if let Some(lease) = self.inner.cache.lease(sha256)? {
                    return Ok(lease);
                }
            }
            let expected = Expected { sha256, size: import.size };
            self.download(&key, sources, &expected, &progress).await
        }
        .instrument(span)
        .await
    }

    /// A lease on a cached `sha256` of the right size. A cached file of another size is not
    /// the artifact (something changed it behind the cache's back): it is removed.
    fn hit(&self, sha256: &str, size: u64) -> Result<Option<Lease>, FetchError> {
        let Some(lease) = self.inner.cache.lease(sha256)? else {
            return Ok(None);
        };
        if lease.size() == size {
            return Ok(Some(lease));
        }
        tracing::warn!(path = %lease.path().display(), found = lease.size(), "a cached artifact has the wrong size; fetching it again");
        drop(lease);
        self.inner.cache.remove(sha256)?;
        Ok(None)
    }

    /// Downloads into `partial/KEY.part`, lands the verified result and evicts under the cap.
    /// The caller holds the key's flight.
    async fn download(
        &self,
        key: &str,
        sources: &[Source],
        expected: &Expected,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Lease, FetchError> {
        let _permit = self.inner.downloads.acquire().await.expect("the download semaphore is never closed");
        let mut partial = Partial::open(&self.inner.cache.partial_dir(), key).await?;
        let mut meter = Meter::new(progress, expected.size);
        let verified = match transfer::download(&self.inner.settings, sources, &mut partial, expected, &mut meter).await {
            Ok(verified) => verified,
            Err(error) => {
                // Bytes are kept for a resume; an empty partial is only clutter.
                if partial.len() == 0 {
                    partial.discard();
                }
                return Err(error);
            }
        };
        meter.finish(verified.size);
        let cache = self.inner.cache.clone();
        let lease = tokio::task::spawn_blocking(move || {
            let lease = cache.land(partial.path(), &verified.sha256)?;
            partial.landed();
            if let Err(error) = cache.evict() {
                tracing::warn!(%error, "evicting from the artifact cache failed");
            }
            Ok::<_, FetchError>(lease)
        })
        .await
        .map_err(|join| FetchError::Io { what: "landing a download".into(), error: std::io::Error::other(join.to_string()) })??;
        tracing::info!(sha256 = %lease.sha256(), size = lease.size(), "artifact cached");
        Ok(lease)
    }
}

/// Membership of a key's single flight: holding it means being the one fetching the key.
/// Dropping it (on success, failure or cancellation) lets the next waiter in and removes the
/// key's lock from the table once nobody else holds or awaits it.
struct Flight<'a> {
    inner: &'a Inner,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<'a> Flight<'a> {
    async fn join(inner: &'a Inner, key: &str) -> Flight<'a> {
        let lock = inner.flights().entry(key.to_owned()).or_default().clone();
        let guard = lock.clone().lock_owned().await;
        Flight { inner, key: key.to_owned(), lock, guard: Some(guard) }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut flights = self.inner.flights();
        // The table's and ours: nobody else holds or waits for it. Counted under the table's
        // lock, which every waiter takes to clone it, so no one can appear meanwhile.
        if Arc::strong_count(&self.lock) == 2 {
            flights.remove(&self.key);
        }
    }
}

impl Inner {
    fn flights(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What names an import's content before its digest is known: the full URL (a hash of it
/// names the partial, so a token in it is not written out), or the source's description.
fn identity(source: &Source) -> String {
    match source {
        Source::Http { url, .. } => format!("url:{url}"),
        Source::Range(range) => format!("range:{}", range.describe()),
    }
}

fn normalise_sha256(sha256: &str) -> Result<String, FetchError> {
    let lower = sha256.to_ascii_lowercase();
    if cache::is_sha256(&lower) {
        Ok(lower)
    } else {
        Err(FetchError::Invalid(format!("{sha256:?} is not a sha256: 64 hex digits expected")))
    }
}
