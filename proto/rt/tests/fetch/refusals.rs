//! Failures: wrong content, refused credentials, missing files, TLS, stalls, disk space;
//! which are retried, and that none leaves a file in the cache or a secret in a message.

use std::time::Duration;

use pmesh_rt::fetch::{Auth, Cache, FetchConfig, FetchError, Fetcher, Secret, Source, Want};

use crate::server::{self, Fault, Server, TestPki};
use crate::{bounded, config, fetcher, files, ignore, only_failure, ranged, want, LEN};

#[tokio::test]
async fn wrong_bytes_fail_the_checksum_and_leave_nothing() {
    bounded(async {
        let body = server::generate(LEN, 8);
        let server = Server::start(body.clone(), None).await;
        server.fault_always(Fault::WrongBytes);
        let dir = tempfile::tempdir().expect("tempdir");
        let want = want(&body, vec![Source::http(server.url("/a.iso"))]);
        let error = only_failure(fetcher(dir.path()).ensure(&want, ignore).await.expect_err("mismatch"));
        let FetchError::Checksum { expected, got, .. } = &error else { panic!("{error:?}") };
        assert!(expected.contains(&want.sha256) && !got.contains(&want.sha256), "{error}");
        assert_eq!(server.requests().len(), 1, "a mismatch is not retried");
        assert_eq!(files(dir.path(), "sha256"), Vec::<String>::new());
        assert_eq!(files(dir.path(), "partial"), Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn refusals_are_permanent_and_leave_nothing() {
    bounded(async {
        let body = server::generate(64 * 1024, 9);
        let check = |fault: Fault, expected: fn(&FetchError) -> bool| {
            let body = body.clone();
            async move {
                let server = Server::start(body.clone(), None).await;
                server.fault_always(fault.clone());
                let dir = tempfile::tempdir().expect("tempdir");
                let error =
                    fetcher(dir.path()).ensure(&want(&body, vec![Source::http(server.url("/a.iso"))]), ignore).await.expect_err("refused");
                let error = only_failure(error);
                assert!(expected(&error), "{fault:?}: {error:?}");
                assert_eq!(server.requests().len(), 1, "{fault:?} is not retried");
                assert_eq!(files(dir.path(), "sha256"), Vec::<String>::new());
                assert_eq!(files(dir.path(), "partial"), Vec::<String>::new());
            }
        };
        check(Fault::Status(401), |e| matches!(e, FetchError::Unauthorized { status: 401, .. })).await;
        check(Fault::Status(403), |e| matches!(e, FetchError::Unauthorized { status: 403, .. })).await;
        check(Fault::Status(400), |e| matches!(e, FetchError::Status { status: 400, .. })).await;

        let server = Server::start(body.clone(), None).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let error =
            fetcher(dir.path()).ensure(&want(&body, vec![Source::http(server.url("/missing"))]), ignore).await.expect_err("not found");
        assert!(matches!(only_failure(error), FetchError::NotFound { origin } if origin.ends_with("/missing")));
    })
    .await;
}

#[tokio::test]
async fn transient_errors_are_retried_up_to_the_limit() {
    bounded(async {
        let body = server::generate(64 * 1024, 10);
        let server = Server::start(body.clone(), None).await;
        server.fault_once(Fault::Status(503));
        server.fault_once(Fault::Status(502));
        let dir = tempfile::tempdir().expect("tempdir");
        let want = want(&body, vec![Source::http(server.url("/a.iso"))]);
        fetcher(dir.path()).ensure(&want, ignore).await.expect("third time lucky");
        assert_eq!(server.requests().len(), 3);

        let server = Server::start(body.clone(), None).await;
        server.fault_always(Fault::Status(503));
        let dir = tempfile::tempdir().expect("tempdir");
        let want = Want { sources: vec![Source::http(server.url("/a.iso"))], ..want };
        let error = only_failure(fetcher(dir.path()).ensure(&want, ignore).await.expect_err("gave up"));
        assert!(matches!(error, FetchError::Status { status: 503, .. }), "{error:?}");
        assert_eq!(server.requests().len(), config().max_attempts as usize);
    })
    .await;
}

#[tokio::test]
async fn credentials_are_sent_and_never_appear_in_errors() {
    bounded(async {
        let body = server::generate(64 * 1024, 11);
        let server = Server::start(body.clone(), Some("right-token")).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let fetcher = fetcher(dir.path());
        let source = |secret: &str, query: &str| Source::Http {
            url: format!("{}?sig={query}", server.url("/a.iso")),
            auth: Some(Auth::parse(&Secret::new(secret))),
        };

        let refused = want(&body, vec![source("s3cr3t-wrong-token", "query-s3cr3t"), source("admin:pa55word", "q2")]);
        let error = fetcher.ensure(&refused, ignore).await.expect_err("refused");
        let printed = format!("{error} {error:?} {refused:?}");
        for secret in ["s3cr3t-wrong-token", "query-s3cr3t", "pa55word"] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
        assert!(printed.contains("refused the credentials") && printed.contains("/a.iso"), "{printed}");
        let FetchError::AllSourcesFailed(failures) = &error else { panic!("{error:?}") };
        assert!(failures.iter().all(|(_, e)| matches!(e, FetchError::Unauthorized { status: 401, .. })));
        assert!(server.requests().iter().all(|request| request.authorization));

        fetcher.ensure(&want(&body, vec![source("right-token", "x")]), ignore).await.expect("accepted");
    })
    .await;
}

#[tokio::test]
async fn https_verifies_against_the_ca_bundle_only_when_given() {
    bounded(async {
        let body = server::generate(LEN, 12);
        let pki = TestPki::new();
        let server = Server::start_tls(body.clone(), &pki).await;
        server.fault_once(Fault::CutAt(LEN as u64 / 3));
        let want = want(&body, vec![Source::http(server.url("/a.iso"))]);

        let dir = tempfile::tempdir().expect("tempdir");
        let error = only_failure(fetcher(dir.path()).ensure(&want, ignore).await.expect_err("untrusted"));
        let FetchError::Tls { detail, .. } = &error else { panic!("{error:?}") };
        assert!(detail.contains("not issued by a CA this host trusts"), "{error}");
        assert!(error.to_string().contains("CA bundle"), "{error}");
        assert!(server.requests().is_empty(), "no request crosses an unverified connection");

        let cache = Cache::open(dir.path().join("trusted"), None).expect("cache");
        let config = FetchConfig { ca_bundle: Some(pki.ca_pem.clone().into_bytes()), ..config() };
        let lease = Fetcher::new(cache, config).expect("fetcher").ensure(&want, ignore).await.expect("trusted");
        assert_eq!(std::fs::read(lease.path()).expect("read"), body);
        // The cut over TLS resumed too.
        assert!(ranged(&server.requests()[1]).is_some_and(|at| at > 0));
    })
    .await;
}

#[tokio::test]
async fn a_stalled_transfer_fails_as_stalled_and_keeps_its_bytes() {
    bounded(async {
        let body = server::generate(LEN, 13);
        let server = Server::start(body.clone(), None).await;
        server.fault_always(Fault::StallAt(LEN as u64 / 2));
        let dir = tempfile::tempdir().expect("tempdir");
        let config = FetchConfig { stall_timeout: Duration::from_millis(300), max_attempts: 2, ..config() };
        let fetcher = Fetcher::new(Cache::open(dir.path(), None).expect("cache"), config).expect("fetcher");
        let want = want(&body, vec![Source::http(server.url("/a.iso"))]);

        let error = only_failure(fetcher.ensure(&want, ignore).await.expect_err("stalled"));
        assert!(matches!(error, FetchError::Stalled { .. }), "{error:?}");
        // The first attempt moved bytes (not counted); then two that moved none.
        assert_eq!(server.requests().len(), 3);
        assert_eq!(files(dir.path(), "sha256"), Vec::<String>::new());
        let partial = dir.path().join("partial").join(format!("{}.part", want.sha256));
        assert_eq!(std::fs::metadata(partial).expect("kept for a resume").len(), LEN as u64 / 2);
    })
    .await;
}

#[tokio::test]
async fn too_little_disk_is_refused_before_any_request() {
    bounded(async {
        let body = server::generate(1024, 14);
        let server = Server::start(body.clone(), None).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let want = Want { size: u64::MAX / 2, ..want(&body, vec![Source::http(server.url("/a.iso"))]) };
        let error = fetcher(dir.path()).ensure(&want, ignore).await.expect_err("no room");
        assert!(matches!(&error, FetchError::DiskFull { .. }), "{error:?}");
        assert!(error.to_string().contains("bytes needed"), "{error}");
        assert!(server.requests().is_empty());
        assert_eq!(files(dir.path(), "sha256"), Vec::<String>::new());
        assert_eq!(files(dir.path(), "partial"), Vec::<String>::new());
    })
    .await;
}
