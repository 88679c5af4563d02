//! The depot's artifact index: sha256 → [`ArtifactRecord`]. The depot's files and the rules of
//! names stay in `depot`; this is only where its records are kept.

use super::records::ArtifactRecord;
use super::Store;

impl Store {
    /// The record of `sha256`.
    ///
    /// # Errors
    /// When the database fails or the record does not decode.
    pub fn artifact(&self, sha256: &str) -> anyhow::Result<Option<ArtifactRecord>> {
        self.get(sha256)
    }

    /// Every artifact record, by sha256.
    ///
    /// # Errors
    /// When the database fails or a record does not decode.
    pub fn artifacts(&self) -> anyhow::Result<Vec<ArtifactRecord>> {
        Ok(self.all()?.into_iter().map(|(_, record)| record).collect())
    }

    /// Records (or replaces) an artifact under its sha256.
    ///
    /// # Errors
    /// When the database fails.
    pub fn put_artifact(&self, record: &ArtifactRecord) -> anyhow::Result<()> {
        self.put(&record.sha256, record)
    }

    /// Drops the record of `sha256`.
    ///
    /// # Errors
    /// When the database fails or the record does not decode.
    pub fn remove_artifact(&self, sha256: &str) -> anyhow::Result<Option<ArtifactRecord>> {
        self.remove(sha256)
    }
}
