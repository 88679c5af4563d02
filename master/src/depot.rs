//! The artifact depot: the master's store of binaries by sha256, which operators fill
//! (`pmesh artifact add`) and agents read from any offset (`ReadArtifact`).
//!
//! - Content lives in a [`pmesh_rt::fetch::Cache`] without a cap at `DATA_DIR/depot`:
//!   `sha256/<hex>`, read-only, arriving only by an atomic rename of verified bytes. Uploads
//!   go through [`Cache::receive`] (hashed as they stream, nothing kept on failure), URL
//!   imports through [`Fetcher::import`] (resumable; a partial survives a failure).
//! - Facts live in the store's artifact index ([`Store::artifact`] and its siblings): sha256 →
//!   [`ArtifactRecord`] (`"v": 1`). Names are labels on the content: each name belongs to one
//!   sha256 and resolves to it.
//! - "Needed by" is computed, never stored: the registered patterns whose bundles declare the
//!   sha256 among their `artifacts`. Bundles are immutable, so each one's parse is cached by
//!   its digest.
//!
//! Record changes and file removals happen under one lock ([`Depot::changes`]), so a name is
//! never given twice and a removal cannot interleave with the record of the same content.
//! Bad input (a malformed header, name or digest, a size mismatch) is refused before anything
//! changes; content whose name turns out to be taken is removed again when this request was
//! the one that brought it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context;
use futures_util::{Stream, StreamExt};
use pmesh_proto::pattern::formats::{is_dns_label, is_sha256};
use pmesh_proto::v1;
use pmesh_rt::fetch::{Cache, FetchConfig, FetchError, Fetcher, Import, Lease, Progress, Source, Upload};
use prost::bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, Semaphore};
use tonic::Status;
use tracing::Instrument;

use crate::error::{now_unix, ApiError};
pub use crate::store::ArtifactRecord;
use crate::store::Store;

/// The version of [`ArtifactRecord`] this build writes.
pub const RECORD_VERSION: u32 = 1;
/// Bytes per `ArtifactData` message.
pub const READ_CHUNK: usize = 1 << 20;
/// Chunks read ahead of a slow reader, per stream.
const READ_QUEUE: usize = 2;
/// Reads streaming at once; more wait their turn (bounds the memory the queues hold).
const MAX_CONCURRENT_READS: usize = 32;
/// Uploads landing at once; more wait their turn.
const MAX_CONCURRENT_UPLOADS: usize = 4;
/// Progress messages queued for an import's client; a slow client misses some, not the end.
const IMPORT_QUEUE: usize = 16;
/// The shortest sha256 prefix `rm` resolves.
const MIN_PREFIX: usize = 8;

/// The depot's directory inside the master's data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("depot")
}

/// The depot. Shared by the service's handlers; the streaming ones hold it in an `Arc`.
pub struct Depot {
    cache: Cache,
    fetcher: Fetcher,
    /// The artifact index, and the registered patterns whose needs are computed.
    store: Store,
    /// Bundle digest → the sha256s its pattern declares.
    declared: Mutex<HashMap<String, Arc<BTreeSet<String>>>>,
    /// Held while records change or files are removed; never across an await.
    changes: Mutex<()>,
    reads: Arc<Semaphore>,
    uploads: Semaphore,
}

/// An upload's or import's checked request.
struct Wanted {
    name: String,
    sha256: Option<String>,
    size: Option<u64>,
}

impl Depot {
    /// Opens the depot at `root` over the master's store, fetching URL imports with
    /// `config`. Reconciles the files with the records: a file without a record (a crash
    /// between landing and recording) is adopted without a name, a record without a file is
    /// dropped, and partials of uploads a killed master left are removed.
    ///
    /// # Errors
    /// When the directory cannot be created or is locked by another process, or the store fails.
    pub fn open(root: &Path, store: Store, config: FetchConfig) -> anyhow::Result<Depot> {
        let cache = Cache::open(root, None).with_context(|| format!("opening the artifact depot at {}", root.display()))?;
        let fetcher = Fetcher::new(cache.clone(), config).context("setting up the depot's fetcher")?;
        let depot = Depot {
            cache,
            fetcher,
            store,
            declared: Mutex::new(HashMap::new()),
            changes: Mutex::new(()),
            reads: Arc::new(Semaphore::new(MAX_CONCURRENT_READS)),
            uploads: Semaphore::new(MAX_CONCURRENT_UPLOADS),
        };
        depot.reconcile()?;
        Ok(depot)
    }

    fn reconcile(&self) -> anyhow::Result<()> {
        let abandoned = self.cache.remove_abandoned_uploads()?;
        if abandoned > 0 {
            tracing::info!(abandoned, "removed partial uploads a stopped master left");
        }
        let files = self.cache.entries()?;
        for entry in &files {
            if self.store.artifact(&entry.sha256)?.is_none() {
                tracing::warn!(sha256 = %entry.sha256, "the depot holds a file without a record; adopting it without a name");
                let added_at = entry.last_used.duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_secs() as i64).unwrap_or(0);
                self.store.put_artifact(&ArtifactRecord {
                    v: RECORD_VERSION,
                    sha256: entry.sha256.clone(),
                    size: entry.size,
                    names: BTreeSet::new(),
                    added_at,
                })?;
            }
        }
        let present: BTreeSet<&str> = files.iter().map(|entry| entry.sha256.as_str()).collect();
        for record in self.store.artifacts()? {
            if !present.contains(record.sha256.as_str()) {
                tracing::warn!(sha256 = %record.sha256, names = ?record.names, "the depot's file of a record is gone; dropping the record");
                self.store.remove_artifact(&record.sha256)?;
            }
        }
        self.store.flush()?;
        Ok(())
    }

    /// Receives an upload: a first message with only the header, then only data. The bytes
    /// are hashed as they arrive and kept only when the size (and the sha256, if the header
    /// gives one) match. When the header's sha256 is in the depot already, the data is not
    /// read: the name is added to it and the upload ends at once.
    ///
    /// # Errors
    /// [`ApiError::Invalid`] for a missing, repeated or malformed header, data before the
    /// header, a size or sha256 mismatch, or a broken-off upload, with nothing kept;
    /// [`ApiError::AlreadyExists`] when the name belongs to other content.
    pub async fn add<S>(&self, mut chunks: S) -> Result<v1::ArtifactSummary, ApiError>
    where
        S: Stream<Item = Result<v1::AddArtifactChunk, Status>> + Send + Unpin + 'static,
    {
        let header = match chunks.next().await {
            None => {
                return Err(ApiError::Invalid("the upload is empty: its first message must carry the header (name, sha256, size)".into()))
            }
            Some(Err(status)) => return Err(ApiError::Invalid(format!("the upload broke off before its header: {}", status.message()))),
            Some(Ok(first)) => match first.header {
                None => {
                    return Err(ApiError::Invalid(
                        "data before the header: the first message of an upload must carry only the header".into(),
                    ))
                }
                Some(_) if !first.data.is_empty() => {
                    return Err(ApiError::Invalid(
                        "the first message of an upload carries data beside the header; send the header alone, then the data".into(),
                    ))
                }
                Some(header) => header,
            },
        };
        if header.size == 0 {
            return Err(ApiError::Invalid(
                "the header's size is 0: give the content's size in bytes (an empty file is not an artifact)".into(),
            ));
        }
        let wanted = Wanted::check(&header.name, &header.sha256, Some(header.size))?;
        if let Some(sha256) = &wanted.sha256 {
            if let Some(summary) = self.name_existing(sha256, wanted.size, &wanted.name)? {
                tracing::info!(%sha256, name = %wanted.name, "upload of an artifact the depot holds; no bytes read");
                return Ok(summary);
            }
            self.check_name_free(&wanted.name, sha256)?;
        }
        let _permit = self.uploads.acquire().await.map_err(|_| ApiError::Internal(anyhow::anyhow!("the upload limit was closed")))?;
        let body = chunks
            .map(|item| match item {
                Ok(chunk) if chunk.header.is_some() => {
                    Err(FetchError::Invalid("a second header in the upload: only its first message may carry one".into()))
                }
                Ok(chunk) => Ok(Bytes::from(chunk.data)),
                Err(status) => Err(FetchError::Network { origin: "the client".into(), detail: status.message().to_owned() }),
            })
            .boxed();
        let upload = Upload { sha256: wanted.sha256.clone(), size: header.size };
        let lease = self.cache.receive(&upload, body).await.map_err(upload_error)?;
        self.commit(lease, &wanted.name)
    }

    /// Starts importing `request.url` on the master and returns the progress stream, whose
    /// last message carries the result (or whose last item is the error). The import runs
    /// while the stream's reader listens; when it goes away the import stops and its partial
    /// stays, so the same import later resumes (from a validator or the given sha256).
    ///
    /// # Errors
    /// [`ApiError::Invalid`] for a URL that is not `http://` or `https://`, a malformed name
    /// or sha256; [`ApiError::AlreadyExists`] when a given sha256 meets a name that belongs
    /// to other content. Failures of the import itself arrive on the stream.
    pub fn import(
        self: &Arc<Self>,
        request: v1::ImportArtifactRequest,
    ) -> Result<mpsc::Receiver<Result<v1::ImportArtifactProgress, Status>>, ApiError> {
        let url = request.url.trim().to_owned();
        let has_host = url
            .split_once("://")
            .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.starts_with('/'));
        if !has_host {
            return Err(ApiError::Invalid(format!("{:?} is not an http:// or https:// URL", Source::http(url).describe())));
        }
        let wanted = Wanted::check(&request.name, &request.sha256, (request.size > 0).then_some(request.size))?;
        if let Some(sha256) = &wanted.sha256 {
            self.check_name_free(&wanted.name, sha256)?;
        }
        let import = Import { source: Source::http(url), sha256: wanted.sha256, size: wanted.size };
        let (tx, rx) = mpsc::channel(IMPORT_QUEUE);
        let depot = self.clone();
        // The fetcher's own span names the origin; this keeps the handler's.
        tokio::spawn(async move { depot.run_import(import, wanted.name, tx).await }.in_current_span());
        Ok(rx)
    }

    async fn run_import(&self, import: Import, name: String, tx: mpsc::Sender<Result<v1::ImportArtifactProgress, Status>>) {
        let progress_tx = tx.clone();
        let progress = move |progress: Progress| {
            // A client that lags misses reports; the last message is sent with a wait.
            let _ = progress_tx.try_send(Ok(v1::ImportArtifactProgress {
                done_bytes: progress.done,
                total_bytes: progress.total.unwrap_or(0),
                rate_bytes_per_second: progress.rate,
                result: None,
            }));
        };
        let fetched = tokio::select! {
            fetched = self.fetcher.import(&import, progress) => fetched,
            () = tx.closed() => {
                tracing::info!("the client went away; the import stopped, and a repeated one resumes it");
                return;
            }
        };
        let message = match fetched.map_err(import_error).and_then(|lease| self.commit(lease, &name)) {
            Ok(summary) => Ok(v1::ImportArtifactProgress {
                done_bytes: summary.size,
                total_bytes: summary.size,
                rate_bytes_per_second: 0.0,
                result: Some(summary),
            }),
            Err(error) => Err(Status::from(error)),
        };
        let _ = tx.send(message).await;
    }

    /// Every artifact, oldest first, with the patterns that need it.
    ///
    /// # Errors
    /// When sled fails or a registered bundle no longer parses.
    pub fn list(&self) -> Result<Vec<v1::ArtifactSummary>, ApiError> {
        let mut records = self.store.artifacts()?;
        records.sort_by(|left, right| (left.added_at, &left.sha256).cmp(&(right.added_at, &right.sha256)));
        let mut needs = self.needs()?;
        Ok(records
            .into_iter()
            .map(|record| {
                let needed_by = needs.remove(&record.sha256).unwrap_or_default();
                summary(record, needed_by)
            })
            .collect())
    }

    /// Removes the artifact `artifact` names (a name, a sha256 or a unique prefix of at least
    /// 8 hex digits), file and record. Refused while a registered pattern declares it, unless
    /// `force`.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] when nothing matches; [`ApiError::Invalid`] when a prefix is
    /// ambiguous, when patterns need it (they are named), or when an upload of the same
    /// content is landing right now.
    pub fn remove(&self, artifact: &str, force: bool) -> Result<v1::RemoveArtifactResponse, ApiError> {
        let _changes = self.changes();
        let record = self.resolve(artifact)?;
        let needed_by = self.needs()?.remove(&record.sha256).unwrap_or_default();
        if !needed_by.is_empty() && !force {
            return Err(ApiError::Invalid(format!(
                "artifact {} is needed by the registered pattern(s) {}; nothing was removed (use --force to remove it anyway)",
                describe(&record),
                needed_by.join(", ")
            )));
        }
        let removed = match self.cache.remove(&record.sha256) {
            Ok(removed) => removed,
            Err(FetchError::InUse { .. }) => {
                return Err(ApiError::Invalid(format!(
                    "artifact {} is being added right now; try again when that finished",
                    describe(&record)
                )))
            }
            Err(error) => return Err(ApiError::Internal(anyhow::Error::new(error).context("removing a depot file"))),
        };
        self.store.remove_artifact(&record.sha256)?;
        self.store.flush()?;
        tracing::info!(sha256 = %record.sha256, names = ?record.names, force, needed_by = ?needed_by, "artifact removed from the depot");
        Ok(v1::RemoveArtifactResponse { sha256: record.sha256, removed })
    }

    /// Streams the artifact `sha256` from `offset` to its end in [`READ_CHUNK`] messages,
    /// each carrying its offset and the artifact's size; an `offset` equal to the size gives
    /// one message without data. The stream waits its turn among concurrent reads.
    ///
    /// # Errors
    /// [`ApiError::Invalid`] for a malformed sha256 or an offset past the end;
    /// [`ApiError::NotFound`] when the depot does not hold it.
    pub async fn read(&self, sha256: &str, offset: u64) -> Result<mpsc::Receiver<Result<v1::ArtifactData, Status>>, ApiError> {
        let sha256 = normalise_sha256(sha256)?;
        let path = self.cache.path_of(&sha256);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(ApiError::NotFound(format!("the depot has no artifact {sha256}")))
            }
            Err(error) => return Err(ApiError::Internal(anyhow::Error::new(error).context(format!("opening {}", path.display())))),
        };
        let size = file.metadata().await.with_context(|| format!("reading {}", path.display()))?.len();
        if offset > size {
            return Err(ApiError::Invalid(format!("offset {offset} is past the end of artifact {sha256} ({size} bytes)")));
        }
        file.seek(SeekFrom::Start(offset)).await.with_context(|| format!("seeking in {}", path.display()))?;
        let (tx, rx) = mpsc::channel(READ_QUEUE);
        let reads = self.reads.clone();
        let span = tracing::debug_span!("read_artifact", %sha256, offset);
        tokio::spawn(
            async move {
                let Ok(_permit) = reads.acquire_owned().await else { return };
                stream_file(file, path, offset, size, tx).await;
            }
            .instrument(span),
        );
        Ok(rx)
    }

    /// Records `lease`'s content under `name` (if any) and returns its summary. When the name
    /// belongs to other content, nothing is recorded and content this request brought is
    /// removed again.
    fn commit(&self, lease: Lease, name: &str) -> Result<v1::ArtifactSummary, ApiError> {
        let sha256 = lease.sha256().to_owned();
        let record = {
            let _changes = self.changes();
            let existing = self.store.artifact(&sha256)?;
            if let Some(owner) = self.owner_of(name)?.filter(|owner| owner.sha256 != sha256) {
                if existing.is_none() {
                    drop(lease);
                    // Another request landing the same content holds a lease; it records it.
                    match self.cache.remove(&sha256) {
                        Ok(_) | Err(FetchError::InUse { .. }) => {}
                        Err(error) => tracing::warn!(%sha256, %error, "could not remove content refused for its name"),
                    }
                }
                return Err(name_taken(name, &owner));
            }
            let created = existing.is_none();
            let mut record = existing.unwrap_or_else(|| ArtifactRecord {
                v: RECORD_VERSION,
                sha256: sha256.clone(),
                size: lease.size(),
                names: BTreeSet::new(),
                added_at: now_unix(),
            });
            if !name.is_empty() {
                record.names.insert(name.to_owned());
            }
            self.store.put_artifact(&record)?;
            self.store.flush()?;
            tracing::info!(%sha256, size = record.size, %name, created, "artifact in the depot");
            record
        };
        drop(lease);
        let needed_by = self.needs()?.remove(&record.sha256).unwrap_or_default();
        Ok(summary(record, needed_by))
    }

    /// Adds `name` to content the depot holds, if it does: `Ok(None)` when it does not.
    fn name_existing(&self, sha256: &str, size: Option<u64>, name: &str) -> Result<Option<v1::ArtifactSummary>, ApiError> {
        let Some(lease) = self.cache.lease(sha256).map_err(|error| ApiError::Internal(error.into()))? else { return Ok(None) };
        if let Some(size) = size.filter(|size| *size != lease.size()) {
            return Err(ApiError::Invalid(format!(
                "the depot holds {sha256} with {} bytes, not {size}: the size or the sha256 is wrong",
                lease.size()
            )));
        }
        self.commit(lease, name).map(Some)
    }

    fn check_name_free(&self, name: &str, sha256: &str) -> Result<(), ApiError> {
        match self.owner_of(name)? {
            Some(owner) if owner.sha256 != sha256 => Err(name_taken(name, &owner)),
            _ => Ok(()),
        }
    }

    fn owner_of(&self, name: &str) -> Result<Option<ArtifactRecord>, ApiError> {
        if name.is_empty() {
            return Ok(None);
        }
        Ok(self.store.artifacts()?.into_iter().find(|record| record.names.contains(name)))
    }

    fn resolve(&self, artifact: &str) -> Result<ArtifactRecord, ApiError> {
        if let Some(record) = self.owner_of(artifact)? {
            return Ok(record);
        }
        let prefix = artifact.to_ascii_lowercase();
        let is_hex = prefix.len() >= MIN_PREFIX && prefix.bytes().all(|byte| byte.is_ascii_hexdigit());
        let matches: Vec<ArtifactRecord> = if is_hex {
            self.store.artifacts()?.into_iter().filter(|record| record.sha256.starts_with(&prefix)).collect()
        } else {
            Vec::new()
        };
        match matches.len() {
            1 => Ok(matches.into_iter().next().expect("one match")),
            0 => Err(ApiError::NotFound(format!(
                "the depot has no artifact named {artifact:?} or with that sha256; `pmesh artifact ls` lists them"
            ))),
            n_matches => Err(ApiError::Invalid(format!("{artifact:?} is the start of {n_matches} artifacts' sha256; give more of it"))),
        }
    }

    /// sha256 → the registered patterns (`NAME@VERSION`, sorted) that declare it.
    fn needs(&self) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
        let mut needs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pattern in self.store.patterns()? {
            let declared = self.declared_by(&pattern.digest)?;
            for sha256 in declared.iter() {
                needs.entry(sha256.clone()).or_default().push(format!("{}@{}", pattern.name, pattern.version));
            }
        }
        for patterns in needs.values_mut() {
            patterns.sort();
        }
        Ok(needs)
    }

    /// The sha256s a registered bundle's pattern declares, parsed once per digest.
    fn declared_by(&self, digest: &str) -> Result<Arc<BTreeSet<String>>, ApiError> {
        if let Some(declared) = self.declared().get(digest) {
            return Ok(declared.clone());
        }
        let (archive, _signature) =
            self.store.bundle(digest)?.ok_or_else(|| anyhow::anyhow!("the bundle {digest} of a registered pattern is missing"))?;
        let files = pmesh_proto::bundle::open(&archive).with_context(|| format!("opening the registered bundle {digest}"))?;
        let contents: BTreeMap<String, Vec<u8>> = files.into_iter().map(|(path, file)| (path, file.contents)).collect();
        let pattern = pmesh_proto::pattern::parse(&contents).map_err(|diagnostics| {
            let problems: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("the registered bundle {digest} no longer parses: {}", problems.join("; "))
        })?;
        let declared: Arc<BTreeSet<String>> =
            Arc::new(pattern.artifacts.values().map(|artifact| artifact.sha256.to_ascii_lowercase()).collect());
        self.declared().insert(digest.to_owned(), declared.clone());
        Ok(declared)
    }

    fn changes(&self) -> MutexGuard<'_, ()> {
        // Guards no data of its own: a panic elsewhere leaves nothing inconsistent behind it.
        self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn declared(&self) -> MutexGuard<'_, HashMap<String, Arc<BTreeSet<String>>>> {
        // Entries are inserted whole: a panic cannot leave a half-made one.
        self.declared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Wanted {
    /// Checks a request's name, sha256 (empty: none) and size before anything happens.
    fn check(name: &str, sha256: &str, size: Option<u64>) -> Result<Wanted, ApiError> {
        if !name.is_empty() && !is_dns_label(name) {
            return Err(ApiError::Invalid(format!(
                "artifact name {name:?}: use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'"
            )));
        }
        let sha256 = match sha256.trim() {
            "" => None,
            sha256 => Some(normalise_sha256(sha256)?),
        };
        Ok(Wanted { name: name.to_owned(), sha256, size })
    }
}

/// Sends the open `file` from `offset` to `size` in chunks until done or the reader leaves.
async fn stream_file(mut file: tokio::fs::File, path: PathBuf, offset: u64, size: u64, tx: mpsc::Sender<Result<v1::ArtifactData, Status>>) {
    let mut position = offset;
    loop {
        let mut data = Vec::with_capacity(READ_CHUNK);
        let filled = async {
            while data.len() < READ_CHUNK {
                if file.read_buf(&mut data).await? == 0 {
                    break;
                }
            }
            Ok::<_, std::io::Error>(())
        }
        .await;
        let n_read = data.len() as u64;
        let failure = match filled {
            Err(error) => Some(format!("reading {}: {error}", path.display())),
            Ok(()) if n_read == 0 && position < size => Some(format!("{} ended at byte {position} of {size}", path.display())),
            Ok(()) => None,
        };
        if let Some(failure) = failure {
            let _ = tx.send(Err(ApiError::Internal(anyhow::anyhow!(failure)).into())).await;
            return;
        }
        let last = position + n_read >= size;
        if tx.send(Ok(v1::ArtifactData { offset: position, data, size })).await.is_err() {
            return; // The reader went away; it resumes from what it holds.
        }
        position += n_read;
        if last {
            return;
        }
    }
}

fn summary(record: ArtifactRecord, needed_by: Vec<String>) -> v1::ArtifactSummary {
    v1::ArtifactSummary {
        sha256: record.sha256,
        size: record.size,
        names: record.names.into_iter().collect(),
        added_at_unix: record.added_at,
        needed_by,
    }
}

/// `NAME (sha256 abcdef012345…)` or the sha256 alone.
fn describe(record: &ArtifactRecord) -> String {
    match record.names.iter().next() {
        Some(name) => format!("{name} (sha256 {})", record.sha256),
        None => record.sha256.clone(),
    }
}

fn name_taken(name: &str, owner: &ArtifactRecord) -> ApiError {
    ApiError::AlreadyExists(format!(
        "the name {name:?} already belongs to artifact {}; choose another name, or remove that one first",
        owner.sha256
    ))
}

fn normalise_sha256(sha256: &str) -> Result<String, ApiError> {
    let lower = sha256.trim().to_ascii_lowercase();
    if is_sha256(&lower) {
        Ok(lower)
    } else {
        Err(ApiError::Invalid(format!("{sha256:?} is not a sha256: 64 hex digits expected")))
    }
}

/// An upload's failure: the client's doing unless the master's disk failed.
fn upload_error(error: FetchError) -> ApiError {
    match error {
        FetchError::Checksum { expected, got, .. } => ApiError::Invalid(format!(
            "the uploaded content is not what its header announced: expected {expected}, got {got}; nothing was kept"
        )),
        FetchError::Network { detail, .. } => ApiError::Invalid(format!("the upload broke off: {detail}; nothing was kept")),
        FetchError::Invalid(message) => ApiError::Invalid(format!("{message}; nothing was kept")),
        // The master's disk, said plainly: the operator can act on it, and nothing was kept.
        error @ FetchError::DiskFull { .. } => ApiError::Failed(format!("the depot has no room for it: {error}")),
        error => ApiError::Internal(anyhow::Error::new(error).context("receiving an upload")),
    }
}

/// An import's failure, named by what went wrong with the URL: a malformed request is the
/// caller's (exit 2); a server that failed, stalled or did not verify is neither the caller's
/// nor the master's (exit 1). Nothing entered the depot either way.
fn import_error(error: FetchError) -> ApiError {
    match error {
        FetchError::AllSourcesFailed(mut failures) if failures.len() == 1 => {
            let (_origin, error) = failures.pop().expect("one failure");
            import_error(error)
        }
        error @ FetchError::NotFound { .. } => ApiError::NotFound(error.to_string()),
        error @ (FetchError::Io { .. } | FetchError::Locked { .. }) => {
            ApiError::Internal(anyhow::Error::new(error).context("importing into the depot"))
        }
        error @ FetchError::Invalid(_) => ApiError::Invalid(error.to_string()),
        error => ApiError::Failed(error.to_string()),
    }
}

#[cfg(test)]
mod tests;
