//! A download in progress: `partial/KEY.part`, hashed as it grows, and `partial/KEY.validator`,
//! the source and HTTP validator (strong ETag or Last-Modified) its bytes came from, one per
//! line. A validator only means something to the server that issued it, so it is offered
//! (as `If-Range`) to that source alone.
//!
//! What is on disk is always a prefix of the stream: bytes are appended in order and the
//! hasher has seen exactly the bytes on disk. Reopening (a new process, or after a failure)
//! re-hashes the file, so nothing about the prefix is trusted that was not read back.
//! Received bytes are buffered up to [`WRITE_BUFFER`] and written with their hashing in a
//! blocking task, off the async workers; an interrupted attempt flushes what it received
//! before it returns, so a retry resumes from the last byte that arrived.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::FetchError;

/// Bytes received before they are written out.
const WRITE_BUFFER: usize = 1 << 20;

pub(crate) struct Partial {
    path: PathBuf,
    validator_path: PathBuf,
    /// `None` only while a write runs in a blocking task, or after that task failed.
    file: Option<std::fs::File>,
    hasher: Sha256,
    /// Bytes on disk, all hashed.
    written: u64,
    buffer: Vec<u8>,
    /// (origin, validator) of the response that started the partial.
    validator: Option<(String, String)>,
}

impl Partial {
    /// Opens (creating) `dir/KEY.part` and hashes what it already holds.
    pub(crate) async fn open(dir: &Path, key: &str) -> Result<Partial, FetchError> {
        let path = dir.join(format!("{key}.part"));
        let validator_path = dir.join(format!("{key}.validator"));
        let validator = std::fs::read_to_string(&validator_path).ok().and_then(|text| {
            let (origin, validator) = text.trim_end().split_once('\n')?;
            Some((origin.to_owned(), validator.to_owned()))
        });
        let open_path = path.clone();
        let (file, hasher, written) = blocking(&path, move || {
            let mut file = std::fs::File::options()
                .read(true)
                .append(true)
                .create(true)
                .open(&open_path)
                .map_err(|error| FetchError::local(format!("opening {}", open_path.display()), &open_path, error))?;
            let mut hasher = Sha256::new();
            let mut chunk = vec![0u8; WRITE_BUFFER];
            let mut written = 0u64;
            loop {
                let n = file
                    .read(&mut chunk)
                    .map_err(|error| FetchError::local(format!("reading {}", open_path.display()), &open_path, error))?;
                if n == 0 {
                    break;
                }
                hasher.update(&chunk[..n]);
                written += n as u64;
            }
            Ok((file, hasher, written))
        })
        .await?;
        if written > 0 {
            tracing::info!(path = %path.display(), bytes = written, "resuming a partial download");
        }
        Ok(Partial { path, validator_path, file: Some(file), hasher, written, buffer: Vec::new(), validator })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes received: on disk plus buffered. The offset to resume from.
    pub(crate) fn len(&self) -> u64 {
        self.written + self.buffer.len() as u64
    }

    /// The validator `origin` gave the bytes with, for `If-Range` when resuming from it.
    pub(crate) fn validator_for(&self, origin: &str) -> Option<&str> {
        self.validator.as_ref().filter(|(from, _)| from == origin).map(|(_, validator)| validator.as_str())
    }

    /// Records the validator of a response from `origin` that starts the partial from zero.
    pub(crate) fn set_validator(&mut self, origin: &str, validator: Option<String>) {
        let validator = validator.map(|validator| (origin.to_owned(), validator));
        let result = match &validator {
            Some((origin, text)) => std::fs::write(&self.validator_path, format!("{origin}\n{text}\n")),
            None => remove_if_present(&self.validator_path),
        };
        if let Err(error) = result {
            // Only costs a later process the resume: without a validator it starts over.
            tracing::warn!(path = %self.validator_path.display(), %error, "could not record the download's validator");
        }
        self.validator = validator;
    }

    /// Appends received bytes.
    pub(crate) async fn push(&mut self, chunk: Bytes) -> Result<(), FetchError> {
        self.buffer.extend_from_slice(&chunk);
        if self.buffer.len() >= WRITE_BUFFER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes and hashes the buffered bytes.
    pub(crate) async fn flush(&mut self) -> Result<(), FetchError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let mut file = self.file.take().ok_or_else(|| broken(&path))?;
        let mut hasher = std::mem::take(&mut self.hasher);
        let buffer = std::mem::take(&mut self.buffer);
        let (file, hasher, mut buffer) = blocking(&self.path, move || {
            file.write_all(&buffer).map_err(|error| FetchError::local(format!("writing {}", path.display()), &path, error))?;
            hasher.update(&buffer);
            Ok((file, hasher, buffer))
        })
        .await?;
        self.written += buffer.len() as u64;
        buffer.clear();
        (self.file, self.hasher, self.buffer) = (Some(file), hasher, buffer);
        Ok(())
    }

    /// Empties the partial: its bytes are not a prefix of what comes next.
    pub(crate) async fn reset(&mut self) -> Result<(), FetchError> {
        self.buffer.clear();
        let file = self.file.as_ref().ok_or_else(|| broken(&self.path))?;
        file.set_len(0).map_err(|error| FetchError::local(format!("truncating {}", self.path.display()), &self.path, error))?;
        self.hasher = Sha256::new();
        self.written = 0;
        self.set_validator("", None);
        Ok(())
    }

    /// Flushes and syncs the bytes, and returns their sha256 (hex) and size.
    pub(crate) async fn seal(&mut self) -> Result<(String, u64), FetchError> {
        self.flush().await?;
        let path = self.path.clone();
        let file = self.file.take().ok_or_else(|| broken(&path))?;
        let file = blocking(&self.path, move || {
            file.sync_all().map_err(|error| FetchError::local(format!("syncing {}", path.display()), &path, error))?;
            Ok(file)
        })
        .await?;
        self.file = Some(file);
        Ok((hex::encode(self.hasher.clone().finalize()), self.written))
    }

    /// Removes the partial and its validator (after a checksum mismatch, or once landed).
    pub(crate) fn discard(self) {
        for path in [&self.path, &self.validator_path] {
            if let Err(error) = remove_if_present(path) {
                tracing::warn!(path = %path.display(), %error, "could not remove a partial download");
            }
        }
    }

    /// Removes the validator once the partial has become a complete artifact.
    pub(crate) fn landed(self) {
        if let Err(error) = remove_if_present(&self.validator_path) {
            tracing::warn!(path = %self.validator_path.display(), %error, "could not remove a download's validator");
        }
    }
}

/// Fails with [`FetchError::DiskFull`] when `dir`'s filesystem has less than `needed` bytes
/// free for us. A filesystem that cannot say is not checked: the write will tell.
pub(crate) fn check_space(dir: &Path, needed: u64) -> Result<(), FetchError> {
    let Some(available) = crate::disk::free_bytes(dir) else {
        tracing::debug!(dir = %dir.display(), "statvfs failed; not checking free space");
        return Ok(());
    };
    if needed > available {
        return Err(FetchError::DiskFull { path: dir.to_owned(), detail: format!("{needed} bytes needed, {available} free") });
    }
    Ok(())
}

fn broken(path: &Path) -> FetchError {
    FetchError::Io {
        what: format!("writing {}", path.display()),
        error: std::io::Error::other("an earlier write failed; the download must be reopened"),
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

async fn blocking<T: Send + 'static>(path: &Path, work: impl FnOnce() -> Result<T, FetchError> + Send + 'static) -> Result<T, FetchError> {
    tokio::task::spawn_blocking(work).await.map_err(|join| FetchError::Io {
        what: format!("writing {}", path.display()),
        error: std::io::Error::other(format!("the file task failed: {join}")),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reopening_rehashes_the_prefix_and_continues_the_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content: Vec<u8> = (0..3 * WRITE_BUFFER + 17).map(|i| (i * 7 % 251) as u8).collect();
        let (head, tail) = content.split_at(WRITE_BUFFER + 5);

        let mut partial = Partial::open(dir.path(), "k").await.expect("open");
        partial.push(Bytes::copy_from_slice(head)).await.expect("push");
        partial.flush().await.expect("flush");
        partial.set_validator("https://a/x", Some("\"etag\"".into()));
        drop(partial);

        let mut partial = Partial::open(dir.path(), "k").await.expect("reopen");
        assert_eq!(
            (partial.len(), partial.validator_for("https://a/x"), partial.validator_for("https://b/x")),
            (head.len() as u64, Some("\"etag\""), None)
        );
        for piece in tail.chunks(1000) {
            partial.push(Bytes::copy_from_slice(piece)).await.expect("push");
        }
        let (digest, size) = partial.seal().await.expect("seal");
        assert_eq!((digest, size), (hex::encode(Sha256::digest(&content)), content.len() as u64));
        assert_eq!(std::fs::read(partial.path()).expect("read"), content);

        partial.reset().await.expect("reset");
        assert_eq!((partial.len(), partial.validator_for("https://a/x")), (0, None));
        partial.discard();
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn space_check_refuses_more_than_the_disk_has() {
        let dir = tempfile::tempdir().expect("tempdir");
        check_space(dir.path(), 1).expect("one byte fits");
        let error = check_space(dir.path(), u64::MAX / 2).expect_err("too big");
        assert!(error.to_string().contains(&format!("{} bytes needed", u64::MAX / 2)), "{error}");
    }
}
