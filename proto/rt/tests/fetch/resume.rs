//! Resuming: after a cut, from a partial a killed process left, after a dropped future, and
//! what happens to a partial the server cannot continue.

use pmesh_rt::fetch::{FetchError, Source, Want};

use crate::server::{self, Fault, Server, ETAG};
use crate::{bounded, fetcher, files, ignore, only_failure, ranged, wait_until, want, LEN};

#[tokio::test]
async fn a_cut_transfer_resumes_with_a_range_and_moves_the_file_once() {
    bounded(async {
        let body = server::generate(LEN, 2);
        let server = Server::start(body.clone(), None).await;
        server.fault_once(Fault::CutAt(LEN as u64 / 2));
        let dir = tempfile::tempdir().expect("tempdir");
        let lease = fetcher(dir.path()).ensure(&want(&body, vec![Source::http(server.url("/a.iso"))]), ignore).await.expect("fetched");
        assert_eq!(std::fs::read(lease.path()).expect("read"), body);

        let requests = server.requests();
        assert_eq!(requests.len(), 2, "{requests:?}");
        let resumed_at = ranged(&requests[1]).expect("the retry asks for a range");
        assert!(resumed_at > 0 && resumed_at <= LEN as u64 / 2, "{requests:?}");
        assert_eq!(requests[1].if_range.as_deref(), Some(ETAG));
        // Everything sent before the cut was kept: the file crossed the wire once.
        assert_eq!(server.served(), LEN as u64);
    })
    .await;
}

#[tokio::test]
async fn a_new_fetcher_resumes_a_partial_left_on_disk() {
    bounded(async {
        let body = server::generate(LEN, 3);
        let server = Server::start(body.clone(), None).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let want = want(&body, vec![Source::http(server.url("/a.iso"))]);
        // What a killed process leaves: a prefix, without a validator.
        let prefix = LEN / 3;
        std::fs::create_dir_all(dir.path().join("partial")).expect("mkdir");
        std::fs::write(dir.path().join("partial").join(format!("{}.part", want.sha256)), &body[..prefix]).expect("write");

        let lease = fetcher(dir.path()).ensure(&want, ignore).await.expect("fetched");
        assert_eq!(std::fs::read(lease.path()).expect("read"), body);
        let requests = server.requests();
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_eq!(ranged(&requests[0]), Some(prefix as u64));
        assert_eq!(server.served(), (LEN - prefix) as u64);
    })
    .await;
}

#[tokio::test]
async fn a_fetch_dropped_mid_transfer_is_resumed_by_the_next_process() {
    bounded(async {
        let body = server::generate(LEN, 4);
        let server = Server::start(body.clone(), None).await;
        server.fault_once(Fault::StallAt(LEN as u64 * 3 / 4));
        let dir = tempfile::tempdir().expect("tempdir");
        let want = want(&body, vec![Source::http(server.url("/a.iso"))]);
        let partial = dir.path().join("partial").join(format!("{}.part", want.sha256));

        let first = fetcher(dir.path());
        let task = tokio::spawn({
            let want = want.clone();
            async move { first.ensure(&want, ignore).await }
        });
        wait_until("bytes reach the partial", || std::fs::metadata(&partial).is_ok_and(|m| m.len() > 0)).await;
        task.abort();
        assert!(task.await.expect_err("aborted").is_cancelled());
        let served_before = server.served();

        // The first fetcher (and its cache lock) went with the task.
        let lease = fetcher(dir.path()).ensure(&want, ignore).await.expect("fetched");
        assert_eq!(std::fs::read(lease.path()).expect("read"), body);
        let requests = server.requests();
        assert_eq!(requests.len(), 2, "{requests:?}");
        let resumed_at = ranged(&requests[1]).expect("the new process resumes with a range");
        assert!(resumed_at > 0 && resumed_at <= served_before, "{resumed_at} of {served_before}");
        assert_eq!(server.served() - served_before, LEN as u64 - resumed_at);
    })
    .await;
}

#[tokio::test]
async fn a_server_ignoring_the_range_restarts_from_zero() {
    bounded(async {
        let body = server::generate(LEN, 5);
        let server = Server::start(body.clone(), None).await;
        server.fault_once(Fault::CutAt(LEN as u64 / 2));
        server.fault_once(Fault::IgnoreRange);
        let dir = tempfile::tempdir().expect("tempdir");
        let lease = fetcher(dir.path()).ensure(&want(&body, vec![Source::http(server.url("/a.iso"))]), ignore).await.expect("fetched");
        assert_eq!(std::fs::read(lease.path()).expect("read"), body);
        let requests = server.requests();
        assert!(ranged(&requests[1]).is_some_and(|at| at > 0), "{requests:?}");
        assert_eq!(server.served(), LEN as u64 / 2 + LEN as u64, "half, then all of it again");
    })
    .await;
}

#[tokio::test]
async fn a_corrupt_or_overlong_partial_is_discarded() {
    bounded(async {
        let body = server::generate(LEN, 6);
        let server = Server::start(body.clone(), None).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let want = want(&body, vec![Source::http(server.url("/a.iso"))]);
        let partial = dir.path().join("partial").join(format!("{}.part", want.sha256));
        std::fs::create_dir_all(partial.parent().expect("dir")).expect("mkdir");
        let fetcher = fetcher(dir.path());

        // Longer than the artifact: no range is asked for.
        std::fs::write(&partial, vec![7u8; LEN + 10]).expect("write");
        let lease = fetcher.ensure(&want, ignore).await.expect("fetched");
        assert_eq!(server.requests()[0].range, None);
        drop(lease);
        fetcher.cache().remove(&want.sha256).expect("remove");

        // A corrupt prefix: the resumed result fails the digest, and one restart from zero
        // fixes it.
        let mut corrupt = body[..LEN / 2].to_vec();
        corrupt[10] ^= 1;
        std::fs::write(&partial, corrupt).expect("write");
        let lease = fetcher.ensure(&want, ignore).await.expect("fetched");
        assert_eq!(std::fs::read(lease.path()).expect("read"), body);
        let ranges: Vec<Option<u64>> = server.requests()[1..].iter().map(ranged).collect();
        assert_eq!(ranges, vec![Some(LEN as u64 / 2), None]);
    })
    .await;
}

#[tokio::test]
async fn a_partial_the_server_cannot_continue_is_discarded() {
    bounded(async {
        let body = server::generate(LEN, 7);
        let server = Server::start(body.clone(), None).await;
        let dir = tempfile::tempdir().expect("tempdir");
        // The caller believes in a bigger artifact than the server has; the partial is past
        // the server's end: 416, the partial goes, and the full answer's size is refused.
        let want = Want { size: LEN as u64 + 100, ..want(&body, vec![Source::http(server.url("/a.iso"))]) };
        let partial = dir.path().join("partial").join(format!("{}.part", want.sha256));
        std::fs::create_dir_all(partial.parent().expect("dir")).expect("mkdir");
        std::fs::write(&partial, vec![0u8; LEN + 50]).expect("write");

        let error = only_failure(fetcher(dir.path()).ensure(&want, ignore).await.expect_err("refused"));
        assert!(matches!(&error, FetchError::Checksum { got, .. } if got.contains(&LEN.to_string())), "{error}");
        let ranges: Vec<Option<u64>> = server.requests().iter().map(ranged).collect();
        assert_eq!(ranges, vec![Some(LEN as u64 + 50), None]);
        assert_eq!(files(dir.path(), "partial"), Vec::<String>::new());
        assert_eq!(files(dir.path(), "sha256"), Vec::<String>::new());
    })
    .await;
}
