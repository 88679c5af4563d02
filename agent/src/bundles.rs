//! The agent's bundle store: signed pattern bundles kept by digest under
//! `DATA_DIR/bundles/`, each verified against the master's bundle-signing key (received at
//! enrolment) before it is written. An agent runs nothing it cannot verify: a bundle is read
//! back only through [`BundleStore::open`], which verifies again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pmesh_proto::bundle::{self, BundleError, BundleFile};

/// Why a bundle was refused or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The signature, the digest or the archive is wrong; the bundle was not stored.
    #[error("bundle refused: {0}")]
    Refused(String),
    #[error("no bundle {0} on this agent")]
    Missing(String),
    #[error(transparent)]
    Io(#[from] anyhow::Error),
}

/// Bundles on disk, by digest.
#[derive(Debug, Clone)]
pub struct BundleStore {
    dir: PathBuf,
    public_key: Vec<u8>,
}

fn file_stem(digest: &str) -> Result<String, StoreError> {
    let hex_part = digest.strip_prefix("sha256:").unwrap_or_default();
    if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::Refused(format!("{digest:?} is not a sha256:HEX digest")));
    }
    Ok(hex_part.to_ascii_lowercase())
}

impl BundleStore {
    /// The store of `data_dir`, verifying with `public_key` (32 bytes, ed25519).
    pub fn new(data_dir: &Path, public_key: Vec<u8>) -> BundleStore {
        BundleStore { dir: data_dir.join("bundles"), public_key }
    }

    fn paths(&self, digest: &str) -> Result<(PathBuf, PathBuf), StoreError> {
        let stem = file_stem(digest)?;
        Ok((self.dir.join(format!("{stem}.tar")), self.dir.join(format!("{stem}.sig"))))
    }

    /// Whether the bundle is held.
    pub fn has(&self, digest: &str) -> bool {
        self.paths(digest).map(|(archive, signature)| archive.exists() && signature.exists()).unwrap_or(false)
    }

    /// Verifies and stores a bundle; `Ok(false)` when it was held already.
    ///
    /// # Errors
    /// [`StoreError::Refused`] when it is unsigned, tampered with, signed by another key,
    /// malformed, or not the digest announced; nothing is written then.
    pub fn put(&self, digest: &str, archive: &[u8], signature: &[u8]) -> Result<bool, StoreError> {
        let (archive_path, signature_path) = self.paths(digest)?;
        self.verify(digest, archive, signature)?;
        if self.has(digest) {
            return Ok(false);
        }
        // The signature is written last: a bundle counts as held only once both are there.
        // Several runs of one pattern may push it at once; each write goes through its own
        // temporary file, so they all succeed with the same bytes.
        pmesh_rt::files::write_atomic(&archive_path, archive, 0o644)?;
        pmesh_rt::files::write_atomic(&signature_path, signature, 0o644)?;
        Ok(true)
    }

    /// The files of a bundle that travelled in a request (a plan), verified as [`Self::put`]
    /// verifies, and not stored.
    ///
    /// # Errors
    /// [`StoreError::Refused`] as for [`Self::put`].
    pub fn verify(&self, digest: &str, archive: &[u8], signature: &[u8]) -> Result<BTreeMap<String, BundleFile>, StoreError> {
        let actual = bundle::verify(archive, signature, &self.public_key).map_err(|err| StoreError::Refused(err.to_string()))?;
        if actual != digest {
            return Err(StoreError::Refused(format!("its digest is {actual}, not the {digest} announced")));
        }
        bundle::open(archive).map_err(|err| StoreError::Refused(err.to_string()))
    }

    /// The files of a held bundle, verified again on the way out.
    ///
    /// # Errors
    /// [`StoreError::Missing`] when it is not held; [`StoreError::Refused`] when what is on
    /// disk no longer verifies.
    pub fn open(&self, digest: &str) -> Result<BTreeMap<String, BundleFile>, StoreError> {
        let (archive_path, signature_path) = self.paths(digest)?;
        let (Ok(archive), Ok(signature)) = (std::fs::read(&archive_path), std::fs::read(&signature_path)) else {
            return Err(StoreError::Missing(digest.to_owned()));
        };
        let actual =
            bundle::verify(&archive, &signature, &self.public_key).map_err(|err: BundleError| StoreError::Refused(err.to_string()))?;
        if actual != digest {
            return Err(StoreError::Refused(format!("the stored bundle {digest} now has digest {actual}")));
        }
        bundle::open(&archive).map_err(|err| StoreError::Refused(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Vec<u8> {
        let rng = ring::rand::SystemRandom::new();
        ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref().to_vec()
    }

    fn sample() -> Vec<u8> {
        let files = BTreeMap::from([("pattern.yaml".to_string(), BundleFile { contents: b"x: 1\n".to_vec(), executable: false })]);
        bundle::pack(&files).unwrap()
    }

    #[test]
    fn stores_verified_bundles_once_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let master_key = key();
        let store = BundleStore::new(dir.path(), bundle::public_key(&master_key).unwrap());
        let archive = sample();
        let digest = bundle::digest(&archive);
        let signature = bundle::sign(&archive, &master_key).unwrap();

        assert!(!store.has(&digest));
        assert!(store.put(&digest, &archive, &signature).unwrap());
        assert!(store.has(&digest));
        assert!(!store.put(&digest, &archive, &signature).unwrap(), "held already");
        assert!(store.open(&digest).unwrap().contains_key("pattern.yaml"));

        let check_refused = |archive: &[u8], signature: &[u8], digest: &str, expected: &str| {
            let err = store.put(digest, archive, signature).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        };
        let mut tampered = archive.clone();
        let last = tampered.len() - 600;
        tampered[last] ^= 1;
        check_refused(&tampered, &signature, &bundle::digest(&tampered), "does not verify");
        let other_key = key();
        check_refused(&archive, &bundle::sign(&archive, &other_key).unwrap(), &digest, "does not verify");
        check_refused(&archive, &[], &digest, "not signed");
        check_refused(&archive, &signature, "sha256:00", "not a sha256:HEX digest");
        let wrong = format!("sha256:{}", "0".repeat(64));
        check_refused(&archive, &signature, &wrong, "not the");

        // What is on disk is verified again when read.
        let (archive_path, _) = store.paths(&digest).unwrap();
        std::fs::write(&archive_path, &tampered).unwrap();
        assert!(matches!(store.open(&digest), Err(StoreError::Refused(_))));
    }

    /// Several runs of one pattern started at once each push the bundle: every put succeeds
    /// and the bundle is held, whole, afterwards.
    #[test]
    fn concurrent_puts_of_one_bundle_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let master_key = key();
        let store = BundleStore::new(dir.path(), bundle::public_key(&master_key).unwrap());
        let archive = sample();
        let digest = bundle::digest(&archive);
        let signature = bundle::sign(&archive, &master_key).unwrap();
        let barrier = std::sync::Barrier::new(16);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        store.put(&digest, &archive, &signature)
                    })
                })
                .collect();
            for handle in handles {
                handle.join().unwrap().unwrap();
            }
        });
        assert!(store.open(&digest).unwrap().contains_key("pattern.yaml"));
        let names: Vec<String> =
            std::fs::read_dir(dir.path().join("bundles")).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names.len(), 2, "only the archive and its signature: {names:?}");
    }
}
