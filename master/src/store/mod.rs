//! The master's persisted state, all of it: agents, join tokens, issued certificates,
//! patterns and their bundles, runs, their events and the agents' cursors, and the depot's
//! artifact index.
//!
//! - [`backend`] is the seam: a [`Backend`] stores bytes by namespaced key and applies
//!   compares-and-writes atomically ([`SledBackend`] today; an etcd store for several masters
//!   would be a second one).
//! - [`Store`], above it, is written once for every backend: typed records ([`Record`]) with
//!   one encode and decode path, the schema version check at open, the migration of older
//!   layouts, and the invariants expressed as transactions (`agents.rs`, `runs.rs`,
//!   `artifacts.rs`).
//!
//! Records are JSON tagged `"v": 1`; the `meta` namespace holds `schema_version`, checked at
//! open, so a newer database is refused rather than misread. Nothing outside this module
//! knows what database lies underneath.

mod agents;
mod artifacts;
pub mod backend;
mod cursors;
mod instances;
mod labs;
#[cfg(test)]
mod memory;
#[cfg(test)]
mod props;
mod records;
mod runs;
mod sled_backend;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::{de::DeserializeOwned, Serialize};

pub use agents::{CertStatus, TokenError};
pub use backend::{Backend, Namespace, Txn};
pub use labs::{ComponentRecord, ComponentState, LabRecord, LabState, ReplicaRecord};
pub use records::{
    AgentRecord, AgentState, ArtifactRecord, FactsRecord, Health, InstanceRecord, IssuedRecord, PatternRecord, Record, RunRecord, RunState,
    Segment, StoredEvent, TokenRecord, UnknownRunState,
};
pub use sled_backend::{SledBackend, StorageError};

/// The schema this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

const SCHEMA_KEY: &[u8] = b"schema_version";

/// The master's database, shared by every part of the master (cheap to clone).
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// Group commit for the event consumers' acknowledgements.
    flusher: pmesh_rt::durable::GroupFlush,
}

impl Store {
    /// Opens (or creates) the sled database in `dir`.
    ///
    /// # Errors
    /// When sled cannot open it (another `pmesh serve` holds it), or its schema is newer than
    /// this build.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        Store::with_backend(Arc::new(SledBackend::open(dir)?))
    }

    /// The store over `backend`: checks the schema version (recording it in a new database)
    /// and moves older layouts into the current one.
    ///
    /// # Errors
    /// When the schema is newer than this build, or the backend fails.
    pub fn with_backend(backend: Arc<dyn Backend>) -> anyhow::Result<Store> {
        check_schema(backend.as_ref())?;
        let flusher = {
            let backend = backend.clone();
            pmesh_rt::durable::GroupFlush::new(move || backend.flush().map_err(std::io::Error::other))
        };
        let store = Store { backend, flusher };
        store.migrate_per_event_records()?;
        Ok(store)
    }

    /// Flushes to disk; called after every state change an operator waits on.
    ///
    /// # Errors
    /// When the disk fails.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.backend.flush()
    }

    /// Makes persisted events durable; concurrent callers share one flush.
    ///
    /// # Errors
    /// When the disk fails.
    pub async fn flush_events(&self) -> anyhow::Result<()> {
        self.flusher.flush().await
    }

    fn get<T: Record>(&self, key: &str) -> anyhow::Result<Option<T>> {
        self.backend.get(T::NAMESPACE, key.as_bytes())?.map(|value| decode(&value)).transpose()
    }

    fn put<T: Record>(&self, key: &str, record: &T) -> anyhow::Result<()> {
        self.backend.put(T::NAMESPACE, key.as_bytes(), &encode(record)?)
    }

    fn remove<T: Record>(&self, key: &str) -> anyhow::Result<Option<T>> {
        self.backend.remove(T::NAMESPACE, key.as_bytes())?.map(|value| decode(&value)).transpose()
    }

    /// Every record of a namespace with its key, in key order.
    fn all<T: Record>(&self) -> anyhow::Result<Vec<(String, T)>> {
        self.backend
            .scan(T::NAMESPACE, b"", b"")?
            .into_iter()
            .map(|(key, value)| Ok((String::from_utf8_lossy(&key).into_owned(), decode(&value)?)))
            .collect()
    }

    /// Applies `change` to the record at `key` atomically (compare-and-swap, retried when
    /// another writer got there first), if it exists; returns the record as changed. `change`
    /// may run more than once.
    fn update<T: Record>(&self, key: &str, change: impl Fn(&mut T)) -> anyhow::Result<Option<T>> {
        loop {
            let Some(current) = self.backend.get(T::NAMESPACE, key.as_bytes())? else { return Ok(None) };
            let mut record: T = decode(&current)?;
            change(&mut record);
            let new = encode(&record)?;
            if self.backend.compare_and_swap(T::NAMESPACE, key.as_bytes(), Some(&current), Some(&new))? {
                return Ok(Some(record));
            }
        }
    }
}

/// Records the schema version in a new database; refuses one newer than this build.
fn check_schema(backend: &dyn Backend) -> anyhow::Result<()> {
    let current = SCHEMA_VERSION.to_string();
    // Put-if-absent: of several masters creating one database, one writes the version.
    if backend.compare_and_swap(Namespace::Meta, SCHEMA_KEY, None, Some(current.as_bytes()))? {
        return Ok(());
    }
    let found = backend.get(Namespace::Meta, SCHEMA_KEY)?.context("the database's schema version vanished while it was read")?;
    let found: u32 = std::str::from_utf8(&found)?.parse().context("the database's schema version is not a number")?;
    if found > SCHEMA_VERSION {
        bail!("database schema {found} is newer than this pmesh ({SCHEMA_VERSION}); upgrade pmesh");
    }
    Ok(())
}

/// The one encoding of records.
fn encode<T: Serialize>(record: &T) -> anyhow::Result<Vec<u8>> {
    serde_json::to_vec(record).context("encoding a database record")
}

/// The one decoding of records.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).context("a database record does not decode; the database may be damaged")
}
