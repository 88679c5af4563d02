//! The depot against a real sled database and directory: uploads and their refusals, names,
//! removal and what patterns need, reads from an offset, reconciliation. (The v1 record's
//! frozen layout is read in `store::tests`, with the store's other records.)

use std::collections::BTreeMap;

use futures_util::stream;
use pmesh_proto::bundle::BundleFile;
use sha2::{Digest, Sha256};

use super::*;
use crate::store::PatternRecord;

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    depot: Arc<Depot>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("store");
    let depot = Arc::new(open_depot(&dir, &store));
    Fixture { dir, store, depot }
}

fn open_depot(dir: &tempfile::TempDir, store: &Store) -> Depot {
    Depot::open(&dir.path().join("depot"), store.clone(), FetchConfig::default()).expect("depot")
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u64 * 31 + u64::from(seed)) as u8 ^ (i >> 11) as u8).collect()
}

fn sha256_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn header(name: &str, sha256: &str, size: usize) -> v1::AddArtifactChunk {
    v1::AddArtifactChunk {
        header: Some(v1::AddArtifactHeader { name: name.into(), sha256: sha256.into(), size: size as u64 }),
        data: Vec::new(),
    }
}

fn data(bytes: &[u8]) -> Vec<v1::AddArtifactChunk> {
    bytes.chunks(300_000).map(|piece| v1::AddArtifactChunk { header: None, data: piece.to_vec() }).collect()
}

async fn add(depot: &Depot, messages: Vec<v1::AddArtifactChunk>) -> Result<v1::ArtifactSummary, ApiError> {
    depot.add(stream::iter(messages.into_iter().map(Ok))).await
}

fn upload(name: &str, sha256: &str, bytes: &[u8]) -> Vec<v1::AddArtifactChunk> {
    let mut messages = vec![header(name, sha256, bytes.len())];
    messages.extend(data(bytes));
    messages
}

fn depot_files(fixture: &Fixture) -> (Vec<String>, Vec<String>) {
    let list = |sub: &str| {
        let mut names: Vec<String> = std::fs::read_dir(fixture.dir.path().join("depot").join(sub))
            .expect("list")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    (list("sha256"), list("partial"))
}

fn invalid(result: Result<v1::ArtifactSummary, ApiError>) -> String {
    match result {
        Err(ApiError::Invalid(message)) => message,
        other => panic!("expected an invalid-argument refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_uploads_are_refused_and_change_nothing() {
    let fixture = fixture();
    let bytes = content(700_000, 1);
    let sha256 = sha256_of(&bytes);
    let mut header_and_data = header("a", "", bytes.len());
    header_and_data.data = b"x".to_vec();
    let cases: Vec<(Vec<v1::AddArtifactChunk>, &str)> = vec![
        (vec![], "the upload is empty"),
        (data(&bytes), "data before the header"),
        (vec![header_and_data], "carries data beside the header"),
        (upload("a", "", &bytes[1..]).into_iter().chain(data(b"!!")).collect(), "more than 699999 bytes"),
        (upload("a", "", &bytes).into_iter().take(2).collect(), "expected 700000 bytes, got sha256"),
        (upload("a", &"0".repeat(64), &bytes), "not what its header announced"),
        (upload("a", "abc", &bytes), "is not a sha256"),
        (upload("Not_A_Label", "", &bytes), "artifact name \"Not_A_Label\""),
        (vec![header("a", "", 0)], "size is 0"),
        (upload("a", "", &bytes).into_iter().chain([header("b", "", 1)]).collect(), "a second header"),
    ];
    for (messages, expected) in cases {
        let message = invalid(add(&fixture.depot, messages).await);
        assert!(message.contains(expected), "{expected:?} not in {message:?}");
        assert_eq!(depot_files(&fixture), (vec![], vec![]), "after {expected:?}");
        assert!(fixture.depot.list().expect("list").is_empty());
    }
    // A client that breaks off mid-upload.
    let broken =
        stream::iter(vec![Ok(header("a", &sha256, bytes.len())), Ok(data(&bytes).remove(0)), Err(Status::cancelled("client went away"))]);
    let message = invalid(fixture.depot.add(broken).await);
    assert!(message.contains("broke off: client went away"), "{message}");
    assert_eq!(depot_files(&fixture), (vec![], vec![]));
}

#[tokio::test]
async fn an_upload_lands_once_and_names_resolve_to_its_content() {
    let fixture = fixture();
    let bytes = content(2_000_000, 2);
    let sha256 = sha256_of(&bytes);

    let added = add(&fixture.depot, upload("first", "", &bytes)).await.expect("added");
    assert_eq!((added.sha256.as_str(), added.size, added.names.as_slice()), (sha256.as_str(), 2_000_000, ["first".to_owned()].as_slice()));
    let added_at = added.added_at_unix;
    assert_eq!(std::fs::read(fixture.dir.path().join("depot/sha256").join(&sha256)).expect("read"), bytes);

    // Known by its digest: the header alone adds the name, and nothing is read.
    let again = add(&fixture.depot, vec![header("second", &sha256.to_uppercase(), bytes.len())]).await.expect("named");
    assert_eq!((again.names.clone(), again.added_at_unix), (vec!["first".to_owned(), "second".to_owned()], added_at));
    let message = invalid(add(&fixture.depot, vec![header("third", &sha256, 5)]).await);
    assert!(message.contains("not 5"), "{message}");
    // Sent again without a digest: hashed, found the same, nothing new.
    let repeat = add(&fixture.depot, upload("first", "", &bytes)).await.expect("repeat");
    assert_eq!(repeat, again);

    // A name belongs to one content: the other content is refused and not kept.
    let other = content(1000, 3);
    match add(&fixture.depot, upload("first", "", &other)).await {
        Err(ApiError::AlreadyExists(message)) => assert!(message.contains(&sha256), "{message}"),
        result => panic!("expected the name to be refused: {result:?}"),
    }
    match add(&fixture.depot, upload("second", &sha256_of(&other), &other)).await {
        Err(ApiError::AlreadyExists(_)) => {}
        result => panic!("expected the name to be refused before any byte: {result:?}"),
    }
    assert_eq!(depot_files(&fixture), (vec![sha256.clone()], vec![]));
    let listed = fixture.depot.list().expect("list");
    assert_eq!(listed, vec![again]);
}

fn register(fixture: &Fixture, name: &str, declares: &[(&str, usize)]) {
    let mut yaml = format!("apiVersion: pmesh/v1\nkind: Pattern\nmetadata:\n  name: {name}\n  version: 1.0.0\n  description: d\n  category: basic-tool\nartifacts:\n");
    for (idx, (sha256, size)) in declares.iter().enumerate() {
        yaml.push_str(&format!("  a{idx}:\n    url: http://127.0.0.1:1/a{idx}\n    sha256: {sha256}\n    size: {size}\n"));
    }
    yaml.push_str("steps:\n  s:\n    kind: wait\n    probe:\n      tcp: {host: 127.0.0.1, port: 1}\n    deadline: 1s\n");
    let files = BTreeMap::from([("pattern.yaml".to_owned(), BundleFile::new(yaml))]);
    let archive = pmesh_proto::bundle::pack(&files).expect("pack");
    let record = PatternRecord {
        v: 1,
        name: name.into(),
        version: "1.0.0".into(),
        digest: pmesh_proto::bundle::digest(&archive),
        description: String::new(),
        category: "basic-tool".into(),
        pushed_at: 0,
    };
    fixture.store.put_pattern(&record, &archive, b"signature").expect("register");
}

#[tokio::test]
async fn removal_is_refused_while_a_registered_pattern_needs_it() {
    let fixture = fixture();
    let (needed, spare) = (content(5000, 4), content(6000, 5));
    let (needed_sha, spare_sha) = (sha256_of(&needed), sha256_of(&spare));
    add(&fixture.depot, upload("needed", "", &needed)).await.expect("add");
    add(&fixture.depot, upload("", "", &spare)).await.expect("add");
    register(&fixture, "zeta", &[(&needed_sha, needed.len())]);
    register(&fixture, "alpha", &[(&needed_sha, needed.len()), (&"f".repeat(64), 1)]);

    let listed = fixture.depot.list().expect("list");
    let needed_by: BTreeMap<String, Vec<String>> = listed.into_iter().map(|artifact| (artifact.sha256, artifact.needed_by)).collect();
    assert_eq!(needed_by[&needed_sha], ["alpha@1.0.0", "zeta@1.0.0"]);
    assert!(needed_by[&spare_sha].is_empty());

    match fixture.depot.remove("needed", false) {
        Err(ApiError::Invalid(message)) => assert!(message.contains("alpha@1.0.0, zeta@1.0.0") && message.contains("--force"), "{message}"),
        result => panic!("expected a refusal: {result:?}"),
    }
    assert!(matches!(fixture.depot.remove("nothing-like-it", false), Err(ApiError::NotFound(_))));
    assert!(matches!(fixture.depot.remove("0123", false), Err(ApiError::NotFound(_))), "a prefix needs 8 digits");
    let removed = fixture.depot.remove(&spare_sha[..12].to_uppercase(), false).expect("by prefix");
    assert_eq!((removed.sha256.as_str(), removed.removed), (spare_sha.as_str(), true));
    let removed = fixture.depot.remove("needed", true).expect("forced");
    assert_eq!(removed.sha256, needed_sha);
    assert_eq!(depot_files(&fixture), (vec![], vec![]));
    assert!(fixture.depot.list().expect("list").is_empty());
}

#[tokio::test]
async fn a_read_streams_exactly_the_tail_from_its_offset() {
    let fixture = fixture();
    let bytes = content(READ_CHUNK * 2 + 12_345, 6);
    let sha256 = sha256_of(&bytes);
    add(&fixture.depot, upload("big", "", &bytes)).await.expect("add");

    for offset in [0, 1, READ_CHUNK, READ_CHUNK * 2 + 12_000, bytes.len()] {
        let mut rx = fixture.depot.read(&sha256, offset as u64).await.expect("read");
        let mut tail = Vec::new();
        let mut n_messages = 0;
        while let Some(message) = rx.recv().await {
            let message = message.expect("chunk");
            assert_eq!((message.offset, message.size), ((offset + tail.len()) as u64, bytes.len() as u64));
            assert!(message.data.len() <= READ_CHUNK);
            tail.extend_from_slice(&message.data);
            n_messages += 1;
        }
        assert!(tail == bytes[offset..], "offset {offset}: {} bytes instead of {}", tail.len(), bytes.len() - offset);
        assert!(n_messages >= 1, "offset {offset}: at least one message, to carry the size");
    }
    assert!(matches!(fixture.depot.read(&sha256, bytes.len() as u64 + 1).await, Err(ApiError::Invalid(_))));
    assert!(matches!(fixture.depot.read(&"e".repeat(64), 0).await, Err(ApiError::NotFound(_))));
    assert!(matches!(fixture.depot.read("e", 0).await, Err(ApiError::Invalid(_))));
}

#[tokio::test]
async fn opening_reconciles_files_and_records() {
    let fixture = fixture();
    let bytes = content(4000, 7);
    let kept = add(&fixture.depot, upload("kept", "", &bytes)).await.expect("add");
    let Fixture { dir, store, depot } = fixture;
    drop(depot);
    let orphan = content(3000, 8);
    let orphan_sha = sha256_of(&orphan);
    std::fs::write(dir.path().join("depot/sha256").join(&orphan_sha), &orphan).expect("orphan file");
    std::fs::remove_file(dir.path().join("depot/sha256").join(&kept.sha256)).expect("lose a file");
    std::fs::write(dir.path().join("depot/partial/upload-1-0.part"), b"abandoned").expect("partial");

    let depot = open_depot(&dir, &store);
    let listed = depot.list().expect("list");
    assert_eq!(
        listed.iter().map(|artifact| (artifact.sha256.as_str(), artifact.size, artifact.names.len())).collect::<Vec<_>>(),
        [(orphan_sha.as_str(), 3000, 0)]
    );
    assert_eq!(std::fs::read_dir(dir.path().join("depot/partial")).expect("list").count(), 0);
}

/// A URL's failure is neither the caller's mistake (exit 2) nor a refusal by the master
/// (exit 5): the CLI reports it as a failure (exit 1), in the fetcher's words.
#[test]
fn import_failures_are_named_by_whose_they_are() {
    use pmesh_rt::fetch::FetchError;
    let origin = || "http://mirror.lab/x.iso".to_owned();
    let cases = [
        (FetchError::Stalled { origin: origin(), after: std::time::Duration::from_secs(60) }, tonic::Code::FailedPrecondition),
        (FetchError::Status { origin: origin(), status: 503 }, tonic::Code::FailedPrecondition),
        (FetchError::Tls { origin: origin(), detail: "unknown issuer".into() }, tonic::Code::FailedPrecondition),
        (FetchError::Unauthorized { origin: origin(), status: 401 }, tonic::Code::FailedPrecondition),
        (FetchError::NotFound { origin: origin() }, tonic::Code::NotFound),
        (FetchError::Invalid("not a URL".into()), tonic::Code::InvalidArgument),
    ];
    for (error, code) in cases {
        let described = error.to_string();
        let status = Status::from(import_error(error));
        assert_eq!(status.code(), code, "{described}");
        assert_eq!(status.message(), described);
    }
}
