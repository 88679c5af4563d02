//! The fetch engine against real HTTP(S) servers on loopback and an in-memory range source:
//! verification, resume (same process, new process, dropped future), refusals, stalls, disk
//! space, single flight, eviction under leases, and secrets kept out of errors.

mod memory;
mod refusals;
mod resume;
mod server;

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pmesh_rt::fetch::{Cache, FetchConfig, FetchError, Fetcher, Import, Progress, Source, Want};
use sha2::{Digest, Sha256};

use memory::MemorySource;
use server::{Fault, Request, Server, ETAG};

const LEN: usize = 4 << 20;

/// Every test is bounded: a hang fails it instead of the run.
async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), test).await.expect("the test took over 60 s")
}

fn config() -> FetchConfig {
    FetchConfig {
        max_attempts: 3,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        stall_timeout: Duration::from_secs(10),
        ..FetchConfig::default()
    }
}

fn fetcher(root: &Path) -> Fetcher {
    Fetcher::new(Cache::open(root, None).expect("cache"), config()).expect("fetcher")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn want(body: &[u8], sources: Vec<Source>) -> Want {
    Want { sha256: sha256_hex(body), size: body.len() as u64, sources }
}

fn ignore(_: Progress) {}

/// Names of the files in `root/dir`.
fn files(root: &Path, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
        .expect("list")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn ranged(request: &Request) -> Option<u64> {
    request.range.as_deref()?.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok()
}

/// The one error of a single-source fetch.
fn only_failure(error: FetchError) -> FetchError {
    match error {
        FetchError::AllSourcesFailed(mut failures) if failures.len() == 1 => failures.remove(0).1,
        other => panic!("expected one source's failure, got {other:?}"),
    }
}

/// Waits for `condition`, polling, failing after a deadline.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_verified_download_lands_and_a_second_ensure_moves_nothing() {
    bounded(async {
        let body = server::generate(LEN, 1);
        let server = Server::start(body.clone(), None).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let fetcher = fetcher(dir.path());
        let want = want(&body, vec![Source::http(server.url("/a.ova"))]);
        let reports = Mutex::new(Vec::new());

        let lease = fetcher.ensure(&want, |p| reports.lock().expect("reports").push(p)).await.expect("fetched");
        assert_eq!(lease.path(), dir.path().join("sha256").join(&want.sha256));
        assert_eq!(std::fs::read(lease.path()).expect("read"), body);
        assert_eq!(files(dir.path(), "partial"), Vec::<String>::new());
        let last = *reports.lock().expect("reports").last().expect("a final report");
        assert_eq!((last.done, last.total), (LEN as u64, Some(LEN as u64)));

        let again = fetcher.ensure(&want, ignore).await.expect("cached");
        assert_eq!(again.path(), lease.path());
        assert_eq!(server.requests().len(), 1, "a cache hit asks no server");
        assert_eq!(server.served(), LEN as u64);
    })
    .await;
}

#[tokio::test]
async fn concurrent_ensures_of_one_artifact_download_it_once() {
    bounded(async {
        let body = server::generate(LEN, 15);
        let server = Server::start(body.clone(), None).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let fetcher = fetcher(dir.path());
        let want = want(&body, vec![Source::http(server.url("/a.iso"))]);
        let other = fetcher.clone();
        let (first, second) = tokio::join!(fetcher.ensure(&want, ignore), other.ensure(&want, ignore));
        let (first, second) = (first.expect("first"), second.expect("second"));
        assert_eq!(first.path(), second.path());
        assert_eq!(server.requests().len(), 1);
        assert_eq!(server.served(), LEN as u64);
    })
    .await;
}

#[tokio::test]
async fn eviction_keeps_the_cache_under_its_cap_and_spares_leased_artifacts() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path(), Some(250 * 1024)).expect("cache");
        let fetcher = Fetcher::new(cache, config()).expect("fetcher");
        let bodies: Vec<Vec<u8>> = (0..4).map(|seed| server::generate(100 * 1024, 20 + seed)).collect();
        let fetch = |index: usize| {
            let want = want(&bodies[index], vec![Source::Range(Arc::new(MemorySource::new(bodies[index].clone())))]);
            let fetcher = fetcher.clone();
            async move { fetcher.ensure(&want, ignore).await.expect("fetched") }
        };
        let cached = || {
            let mut digests: Vec<String> = fetcher.cache().entries().expect("entries").into_iter().map(|entry| entry.sha256).collect();
            digests.sort();
            digests
        };
        let digest = |index: usize| sha256_hex(&bodies[index]);
        let sorted = |mut digests: Vec<String>| {
            digests.sort();
            digests
        };

        let held = fetch(0).await; // leased throughout
        drop(fetch(1).await);
        let _third = fetch(2).await; // 300 KiB > 250: the oldest unleased (1) goes, not 0
        assert_eq!(cached(), sorted(vec![digest(0), digest(2)]));
        drop(held);
        let _fourth = fetch(3).await; // now 0 is unleased and the oldest of 0, 2 (leased), 3
        assert_eq!(cached(), sorted(vec![digest(2), digest(3)]));
        assert!(matches!(fetcher.cache().remove(&digest(3)), Err(FetchError::InUse { .. })));
    })
    .await;
}

#[tokio::test]
async fn a_range_source_resumes_from_where_it_failed_and_falls_back_in_order() {
    bounded(async {
        let body = server::generate(LEN, 30);
        let memory = Arc::new(MemorySource::new(body.clone()));
        memory.fail_once_at(LEN as u64 / 3);
        let server = Server::start(body.clone(), None).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let sources = vec![Source::http(server.url("/missing")), Source::Range(memory.clone())];

        let lease = fetcher(dir.path()).ensure(&want(&body, sources), ignore).await.expect("fetched");
        assert_eq!(std::fs::read(lease.path()).expect("read"), body);
        assert_eq!(server.requests().len(), 1, "the 404 source is tried once, first");
        assert_eq!(memory.opens(), vec![0, LEN as u64 / 3]);
    })
    .await;
}

#[tokio::test]
async fn an_import_hashes_what_it_streams_and_resumes_under_its_validator() {
    bounded(async {
        let body = server::generate(LEN, 40);
        let server = Server::start(body.clone(), None).await;
        server.fault_once(Fault::CutAt(LEN as u64 / 2));
        let dir = tempfile::tempdir().expect("tempdir");
        let import = Import { source: Source::http(server.url("/vcsa.ova")), sha256: None, size: None };

        let lease = fetcher(dir.path()).import(&import, ignore).await.expect("imported");
        assert_eq!(lease.sha256(), sha256_hex(&body));
        assert_eq!(std::fs::read(lease.path()).expect("read"), body);
        let requests = server.requests();
        assert_eq!(requests[1].if_range.as_deref(), Some(ETAG), "{requests:?}");
        assert!(ranged(&requests[1]).is_some_and(|at| at > 0));
        assert_eq!(server.served(), LEN as u64);
        assert_eq!(files(dir.path(), "partial"), Vec::<String>::new());
    })
    .await;
}
