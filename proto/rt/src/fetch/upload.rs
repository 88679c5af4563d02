//! Bytes pushed into a cache by a caller instead of fetched from a source: the depot's uploads.
//!
//! An upload cannot be resumed (its sender starts again from byte 0), so unlike a download it
//! keeps nothing when it fails: each upload writes its own `partial/upload-<pid>-<n>.part`,
//! hashed as it grows, and that file is removed on every failure, including the upload's
//! future being dropped (the client went away). It lands under `sha256/` only by the same
//! atomic rename as a download, after its size and sha256 matched. A process killed
//! mid-upload leaves its partial behind; [`Cache::remove_abandoned_uploads`] clears those.

use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;

use super::partial::{check_space, Partial};
use super::{normalise_sha256, ByteStream, Cache, FetchError, Lease};

/// The prefix of upload partials' keys.
const UPLOAD_PREFIX: &str = "upload-";

/// Names each upload's partial apart from the others of this process; the cache's `flock`
/// keeps other processes out.
static NEXT_UPLOAD: AtomicU64 = AtomicU64::new(0);

/// How errors name an upload (there is no URL to name).
const ORIGIN: &str = "the upload";

/// What an upload must turn out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// When given, the content's sha256 (64 hex digits) must be this.
    pub sha256: Option<String>,
    /// The content's exact size in bytes.
    pub size: u64,
}

impl Cache {
    /// Lands the bytes of `body` under their sha256 and leases the result. The body is hashed
    /// as it arrives; more bytes than `upload.size` stop it at once.
    ///
    /// Uploading content the cache already holds lands it again (the same bytes, renamed over
    /// the same name); callers that know the digest should look it up first.
    ///
    /// # Errors
    /// [`FetchError::Invalid`] for a malformed sha256; [`FetchError::DiskFull`] when the size
    /// does not fit (checked before the first byte is written, and while writing);
    /// [`FetchError::Checksum`] when the body is longer or shorter than `upload.size`, or
    /// its sha256 differs; the body's own error when it fails; [`FetchError::Io`] for local
    /// failures. Whatever the error, and when the future is dropped, no file is left behind.
    pub async fn receive(&self, upload: &Upload, mut body: ByteStream) -> Result<Lease, FetchError> {
        let expected_sha256 = upload.sha256.as_deref().map(normalise_sha256).transpose()?;
        let dir = self.partial_dir();
        check_space(&dir, upload.size)?;
        let key = format!("{UPLOAD_PREFIX}{}-{}", std::process::id(), NEXT_UPLOAD.fetch_add(1, Ordering::Relaxed));
        let mut guard = Discard(Some(Partial::open(&dir, &key).await?));
        let partial = guard.0.as_mut().expect("the guard holds the partial until it lands");

        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if partial.len() + chunk.len() as u64 > upload.size {
                return Err(mismatch(upload, format!("more than {} bytes", upload.size)));
            }
            partial.push(chunk).await?;
        }
        let (sha256, size) = partial.seal().await?;
        if size != upload.size || expected_sha256.as_ref().is_some_and(|expected| *expected != sha256) {
            return Err(mismatch(upload, format!("sha256 {sha256}, {size} bytes")));
        }

        let partial = guard.0.take().expect("the guard holds the partial until it lands");
        let cache = self.clone();
        let lease = tokio::task::spawn_blocking(move || match cache.land(partial.path(), &sha256) {
            Ok(lease) => {
                partial.landed();
                if let Err(error) = cache.evict() {
                    tracing::warn!(%error, "evicting from the artifact cache failed");
                }
                Ok(lease)
            }
            Err(error) => {
                partial.discard();
                Err(error)
            }
        })
        .await
        .map_err(|join| FetchError::Io { what: "landing an upload".into(), error: std::io::Error::other(join.to_string()) })??;
        tracing::info!(sha256 = %lease.sha256(), size = lease.size(), "upload landed");
        Ok(lease)
    }

    /// Removes the partials of uploads a killed process left behind, and returns how many.
    /// Only call it while no upload of this process runs (the depot does at start): an
    /// upload's partial is never resumed, so any found is abandoned.
    ///
    /// # Errors
    /// [`FetchError::Io`] when the partial directory cannot be listed or a file removed.
    pub fn remove_abandoned_uploads(&self) -> Result<usize, FetchError> {
        let dir = self.partial_dir();
        let local = |what: String, error| FetchError::local(what, &dir, error);
        let mut n_removed = 0;
        let listing = std::fs::read_dir(&dir).map_err(|error| local(format!("listing {}", dir.display()), error))?;
        for dir_entry in listing {
            let dir_entry = dir_entry.map_err(|error| local(format!("listing {}", dir.display()), error))?;
            if !dir_entry.file_name().to_string_lossy().starts_with(UPLOAD_PREFIX) {
                continue;
            }
            let path = dir_entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => n_removed += 1,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(local(format!("removing {}", path.display()), error)),
            }
        }
        Ok(n_removed)
    }
}

fn mismatch(upload: &Upload, got: String) -> FetchError {
    let expected = match &upload.sha256 {
        Some(sha256) => format!("sha256 {sha256}, {} bytes", upload.size),
        None => format!("{} bytes", upload.size),
    };
    FetchError::Checksum { origin: ORIGIN.into(), expected, got }
}

/// Removes the upload's partial unless it was taken out to land: on an error return, and when
/// the upload's future is dropped mid-way.
struct Discard(Option<Partial>);

impl Drop for Discard {
    fn drop(&mut self) {
        if let Some(partial) = self.0.take() {
            partial.discard();
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sha2::{Digest, Sha256};

    use super::*;

    type Chunks = Vec<Result<Bytes, FetchError>>;

    fn body(chunks: Chunks) -> ByteStream {
        futures_util::stream::iter(chunks).boxed()
    }

    fn chunks(content: &[u8]) -> Chunks {
        content.chunks(1000).map(|piece| Ok(Bytes::copy_from_slice(piece))).collect()
    }

    fn files_under(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).expect("list").map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn an_upload_lands_when_it_matches_and_leaves_nothing_when_it_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path(), None).expect("open");
        let content: Vec<u8> = (0..2_500_000u32).map(|i| (i % 253) as u8).collect();
        let sha256 = hex::encode(Sha256::digest(&content));
        let size = content.len() as u64;

        let failures: Vec<(Upload, Chunks, &str)> = vec![
            (Upload { sha256: Some("0".repeat(64)), size }, chunks(&content), "served other content"),
            (Upload { sha256: None, size: size - 1 }, chunks(&content), "more than"),
            (Upload { sha256: None, size: size + 1 }, chunks(&content), "expected"),
            (Upload { sha256: Some("xyz".into()), size }, chunks(&content), "not a sha256"),
            (
                Upload { sha256: None, size },
                vec![Ok(Bytes::from_static(b"abc")), Err(FetchError::Network { origin: "the client".into(), detail: "went away".into() })],
                "went away",
            ),
        ];
        for (upload, chunks, expected) in failures {
            let error = cache.receive(&upload, body(chunks)).await.expect_err("refused");
            assert!(error.to_string().contains(expected), "{upload:?}: {error}");
            assert_eq!(files_under(&dir.path().join("sha256")), Vec::<String>::new());
            assert_eq!(files_under(&dir.path().join("partial")), Vec::<String>::new());
        }

        for expected_sha256 in [None, Some(sha256.to_uppercase())] {
            let upload = Upload { sha256: expected_sha256, size };
            let lease = cache.receive(&upload, body(chunks(&content))).await.expect("landed");
            assert_eq!((lease.sha256(), lease.size()), (sha256.as_str(), size));
            assert_eq!(std::fs::read(lease.path()).expect("read"), content);
        }
        assert_eq!(files_under(&dir.path().join("partial")), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_dropped_upload_leaves_nothing_and_abandoned_partials_are_cleared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path(), None).expect("open");
        let (reached_tx, reached_rx) = tokio::sync::oneshot::channel();
        // One chunk, then a sender that never sends again nor ends: the upload is dropped
        // while waiting for it, after its first bytes were taken in.
        let stalled = futures_util::stream::once(async { Ok(Bytes::from_static(b"some bytes")) })
            .chain(futures_util::stream::once(async move {
                let _ = reached_tx.send(());
                std::future::pending::<Result<Bytes, FetchError>>().await
            }))
            .boxed();
        let upload = Upload { sha256: None, size: 100 };
        let mut receiving = Box::pin(cache.receive(&upload, stalled));
        tokio::select! {
            result = &mut receiving => panic!("the upload cannot finish: {result:?}"),
            _ = reached_rx => {}
        }
        assert_eq!(files_under(&dir.path().join("partial")).len(), 1, "the partial exists mid-upload");
        drop(receiving);
        assert_eq!(files_under(&dir.path().join("partial")), Vec::<String>::new());

        std::fs::write(dir.path().join("partial/upload-1-0.part"), b"left by a crash").expect("write");
        std::fs::write(dir.path().join("partial/import-abc.part"), b"a resumable import").expect("write");
        assert_eq!(cache.remove_abandoned_uploads().expect("clear"), 1);
        assert_eq!(files_under(&dir.path().join("partial")), vec!["import-abc.part".to_owned()]);
    }
}
