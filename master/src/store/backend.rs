//! The storage seam: what the master's store needs from a key-value database.
//!
//! A [`Backend`] holds bytes under keys in fixed [`Namespace`]s. It knows nothing of records,
//! JSON or schema versions (the typed layer in `store` does); it only promises that single
//! writes are atomic, that [`Backend::compare_and_swap`] and [`Backend::commit`] apply all or
//! nothing, and that [`Backend::flush`] makes every write before it durable.
//!
//! Every invariant the master keeps is a compare plus writes in one [`Txn`]: a token is used
//! once (compare its record, swap in the used one), a pattern version is immutable (compare
//! the key absent, write bundle and record), and events move with the agent's cursor
//! (compare the cursor and the runs' counters as read, write segments, counters and cursor).
//! That is exactly what etcd's `Txn` (compares, then a list of puts and deletes) and sled's
//! multi-tree transactions both offer, so a second backend implements this trait and no
//! caller changes.
//!
//! The trait is synchronous: sled is, and the callers that must answer without awaiting (the
//! authorisation policy, checked inside a tower layer) need it to be. An etcd backend would run
//! its async client on a runtime of its own and answer these calls over a channel, blocking
//! the caller for the round trip the way sled blocks it for the disk today.

use std::fmt;

/// A key space. Each is a sled tree today (its [`name`](Namespace::name) is the tree's), and
/// would be a key prefix (`/pmesh/NAME/`) in etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Namespace {
    /// `schema_version`.
    Meta,
    /// Agent name → [`AgentRecord`](super::AgentRecord).
    Agents,
    /// sha256 of the token's text → [`TokenRecord`](super::TokenRecord).
    Tokens,
    /// Certificate serial → [`IssuedRecord`](super::IssuedRecord).
    Certs,
    /// `NAME@VERSION` → [`PatternRecord`](super::PatternRecord).
    Patterns,
    /// Bundle digest → the archive's bytes.
    BundleArchives,
    /// Bundle digest → the signature's bytes.
    BundleSignatures,
    /// Run id → [`RunRecord`](super::RunRecord).
    Runs,
    /// Run id, NUL, the big-endian index of the segment's last event → [`Segment`](super::Segment).
    RunEventSegments,
    /// Run id → the run's next event index (8 bytes, big-endian).
    RunCounters,
    /// Agent name → the last journal sequence number persisted (8 bytes, big-endian).
    Cursors,
    /// sha256 → [`ArtifactRecord`](super::ArtifactRecord), the depot's index.
    Artifacts,
    /// Agent name, `/`, instance name → [`InstanceRecord`](super::InstanceRecord).
    Instances,
    /// Stores from before segments: one event per key, moved into segments at open.
    LegacyRunEvents,
    /// Lab name → [`LabRecord`](super::LabRecord): a lab file and where each component stands.
    Labs,
}

impl Namespace {
    /// Every namespace, for backends that open them up front.
    pub const ALL: [Namespace; 15] = [
        Namespace::Meta,
        Namespace::Agents,
        Namespace::Tokens,
        Namespace::Certs,
        Namespace::Patterns,
        Namespace::BundleArchives,
        Namespace::BundleSignatures,
        Namespace::Runs,
        Namespace::RunEventSegments,
        Namespace::RunCounters,
        Namespace::Cursors,
        Namespace::Artifacts,
        Namespace::Instances,
        Namespace::LegacyRunEvents,
        Namespace::Labs,
    ];

    /// The stored name: the sled tree of existing databases, so their layout stays.
    pub fn name(self) -> &'static str {
        match self {
            Namespace::Meta => "meta",
            Namespace::Agents => "agents",
            Namespace::Tokens => "tokens",
            Namespace::Certs => "certs",
            Namespace::Patterns => "patterns",
            Namespace::BundleArchives => "bundle_archives",
            Namespace::BundleSignatures => "bundle_signatures",
            Namespace::Runs => "runs",
            Namespace::RunEventSegments => "run_event_segments",
            Namespace::RunCounters => "run_counters",
            Namespace::Cursors => "cursors",
            Namespace::Artifacts => "artifacts",
            Namespace::Instances => "instances",
            Namespace::LegacyRunEvents => "run_events",
            Namespace::Labs => "labs",
        }
    }

    /// The position in [`Namespace::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A condition of a [`Txn`]: the key holds exactly `expected` (`None`: the key is absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub namespace: Namespace,
    pub key: Vec<u8>,
    pub expected: Option<Vec<u8>>,
}

/// A write of a [`Txn`]: put `value` (`None`: remove the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub namespace: Namespace,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Compares and writes applied together: every write if every compare holds, else none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub writes: Vec<Write>,
}

impl Txn {
    /// Adds the condition that `key` holds `expected` (`None`: is absent).
    pub fn compare(&mut self, namespace: Namespace, key: impl Into<Vec<u8>>, expected: Option<Vec<u8>>) -> &mut Txn {
        self.compares.push(Compare { namespace, key: key.into(), expected });
        self
    }

    /// Adds a put.
    pub fn put(&mut self, namespace: Namespace, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Txn {
        self.writes.push(Write { namespace, key: key.into(), value: Some(value.into()) });
        self
    }
}

/// A key-value database the store can live in. See the module's documentation for what each
/// method must guarantee.
pub trait Backend: Send + Sync {
    /// The value of `key`.
    ///
    /// # Errors
    /// When the database fails.
    fn get(&self, namespace: Namespace, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>>;

    /// Every entry whose key starts with `prefix` and is not before `start`, in key order.
    /// (`start` is at or after `prefix`; an empty prefix scans the namespace.)
    ///
    /// # Errors
    /// When the database fails.
    fn scan(&self, namespace: Namespace, prefix: &[u8], start: &[u8]) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// When the database fails.
    fn put(&self, namespace: Namespace, key: &[u8], value: &[u8]) -> anyhow::Result<()>;

    /// Removes `key`; returns what it held.
    ///
    /// # Errors
    /// When the database fails.
    fn remove(&self, namespace: Namespace, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>>;

    /// Sets `key` to `new` (`None`: removes it) only if it holds `expected` (`None`: absent);
    /// `Ok(false)` when it did not, and nothing changed.
    ///
    /// # Errors
    /// When the database fails.
    fn compare_and_swap(&self, namespace: Namespace, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> anyhow::Result<bool>;

    /// Applies `txn` atomically: `Ok(true)` when every compare held and every write is done,
    /// `Ok(false)` when a compare failed and nothing was written.
    ///
    /// # Errors
    /// When the database fails; nothing was written then either.
    fn commit(&self, txn: &Txn) -> anyhow::Result<bool>;

    /// Makes every write before the call durable.
    ///
    /// # Errors
    /// When the disk fails.
    fn flush(&self) -> anyhow::Result<()>;

    /// Removes `key` when the database is next opened again after a failed write, before it
    /// takes another: a write whose caller was told it failed must not come back with what the
    /// reopen recovers. A backend that never loses or recovers writes after an error does
    /// nothing.
    fn forget_on_reopen(&self, namespace: Namespace, key: &[u8]) {
        let _ = (namespace, key);
    }
}
