//! The master's artifact depot through the real `pmesh` binary over mTLS: uploads verified
//! by sha256 (and refused, keeping nothing, when they do not match), `ls`, `rm` refused while
//! a registered pattern needs the artifact, `ReadArtifact` from an offset, and a URL import
//! from a loopback HTTP server that cuts its first response mid-body, which the master
//! resumes with a `Range` request.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pmesh_proto::v1;
use pmesh_tests::http::{generated, Behaviour, FileServer, SHA256, SIZE};
use pmesh_tests::{Mesh, Run};

/// Where the server cuts its first response.
const CUT_AT: usize = SIZE / 2;

fn sha256_of(bytes: &[u8]) -> String {
    pmesh_proto::bundle::digest(bytes).trim_start_matches("sha256:").to_owned()
}

fn depot_files(mesh: &Mesh, sub: &str) -> Vec<String> {
    let dir = mesh.master_dir().join("depot").join(sub);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("listing {}: {err}", dir.display()))
        .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn ok(run: Run, what: &str) -> Run {
    assert_eq!(run.code, 0, "{what}: {run:?}");
    run
}

fn listed(mesh: &Mesh) -> Vec<serde_json::Value> {
    let run = ok(mesh.pmesh(&["artifact", "ls", "-o", "json"]), "artifact ls");
    serde_json::from_str(&run.stdout).expect("ls -o json is JSON")
}

fn write_generated(mesh: &Mesh) -> (PathBuf, Vec<u8>) {
    let content = generated();
    assert_eq!(sha256_of(&content), SHA256, "the generator and tests/patterns/needs-artifact must agree");
    let path = mesh.dir.path().join("generated.bin");
    std::fs::write(&path, &content).expect("writing the generated file");
    (path, content)
}

#[test]
fn files_are_verified_listed_read_from_an_offset_and_kept_while_needed() -> anyhow::Result<()> {
    pmesh_proto::tls::install_default_provider();
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let (path, content) = write_generated(&mesh);
    let file = path.to_str().expect("utf-8 temp path");

    // A wrong sha256: refused as invalid, nothing kept, not even a partial.
    let wrong = sha256_of(b"something else");
    let run = mesh.pmesh(&["artifact", "add", file, "--sha256", &wrong]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("not what its header announced") && run.stderr.contains(SHA256), "{}", run.stderr);
    assert_eq!((depot_files(&mesh, "sha256"), depot_files(&mesh, "partial")), (vec![], vec![]));
    assert!(listed(&mesh).is_empty());

    // With the right sha256, then again without one: the second is hashed and changes nothing.
    let run = ok(mesh.pmesh(&["artifact", "add", file, "--sha256", &SHA256.to_uppercase()]), "add with --sha256");
    assert!(run.stdout.contains(&format!("added generated-bin sha256 {SHA256} (3.0 MiB)")), "{}", run.stdout);
    let run = ok(mesh.pmesh(&["artifact", "add", file]), "add again");
    assert!(run.stdout.contains("already in the depot, nothing changed"), "{}", run.stdout);
    // Known by its sha256: only the header is sent, and the new name is added.
    let run = ok(mesh.pmesh(&["artifact", "add", file, "--sha256", SHA256, "--name", "generated", "-o", "json"]), "add a name");
    let added: serde_json::Value = serde_json::from_str(&run.stdout)?;
    assert_eq!((&added["created"], &added["names"]), (&serde_json::json!(false), &serde_json::json!(["generated", "generated-bin"])));
    assert_eq!(depot_files(&mesh, "sha256"), vec![SHA256.to_owned()]);
    assert_eq!(std::fs::read(mesh.master_dir().join("depot/sha256").join(SHA256))?, content);
    assert_eq!(depot_files(&mesh, "partial"), Vec::<String>::new());

    let artifacts = listed(&mesh);
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert_eq!(
        (&artifacts[0]["sha256"], &artifacts[0]["size"], &artifacts[0]["needed_by"]),
        (&serde_json::json!(SHA256), &serde_json::json!(SIZE), &serde_json::json!([]))
    );
    let run = ok(mesh.pmesh(&["artifact", "ls"]), "artifact ls");
    let row = run.stdout.lines().nth(1).unwrap_or_default().split_whitespace().collect::<Vec<_>>();
    assert_eq!(row[..5], ["generated,generated-bin", &SHA256[..12], "3.0", "MiB", "-"], "{}", run.stdout);

    // A registered pattern that declares it keeps it, unless forced.
    let pattern = Path::new(env!("CARGO_MANIFEST_DIR")).join("patterns/needs-artifact");
    ok(mesh.pmesh(&["pattern", "push", pattern.to_str().expect("utf-8")]), "pattern push");
    assert_eq!(listed(&mesh)[0]["needed_by"], serde_json::json!(["needs-artifact@1.0.0"]));
    let run = mesh.pmesh(&["artifact", "rm", "generated"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("needed by the registered pattern(s) needs-artifact@1.0.0") && run.stderr.contains("--force"),
        "{}",
        run.stderr
    );
    assert_eq!(depot_files(&mesh, "sha256"), vec![SHA256.to_owned()]);
    let run = mesh.pmesh(&["artifact", "rm", "no-such-artifact"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("the depot has no artifact named \"no-such-artifact\""), "{}", run.stderr);

    // ReadArtifact, as agents call it (here with the admin credential), from an offset.
    let offset = 1_000_003;
    let tail = read_artifact(&mesh, SHA256, offset)?;
    assert_eq!(tail.len(), SIZE - offset as usize);
    assert!(tail == content[offset as usize..], "ReadArtifact from {offset} returned other bytes than the tail");

    let run = ok(mesh.pmesh(&["artifact", "rm", &SHA256[..10], "--force"]), "rm --force");
    assert!(run.stdout.contains(&format!("removed artifact {SHA256}")), "{}", run.stdout);
    assert_eq!(depot_files(&mesh, "sha256"), Vec::<String>::new());
    assert!(listed(&mesh).is_empty());
    Ok(())
}

/// The bytes of `sha256` from `offset`, checking each message's offset and size.
fn read_artifact(mesh: &Mesh, sha256: &str, offset: u64) -> anyhow::Result<Vec<u8>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let connection = pmesh_master::cli::client::connect(None, &mesh.master_dir()).map_err(|err| anyhow::anyhow!(err.message))?;
        let request = v1::ReadArtifactRequest { sha256: sha256.to_owned(), offset };
        let mut stream = connection.client.clone().read_artifact(request).await?.into_inner();
        let mut tail = Vec::new();
        while let Some(message) = stream.message().await? {
            assert_eq!((message.offset, message.size), (offset + tail.len() as u64, SIZE as u64));
            tail.extend_from_slice(&message.data);
        }
        Ok(tail)
    })
}

#[test]
fn a_url_import_resumes_with_a_range_request_after_a_cut() -> anyhow::Result<()> {
    pmesh_proto::tls::install_default_provider();
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let content = Arc::new(generated());
    let server = FileServer::start(content.clone(), Behaviour { cut_first_at: Some(CUT_AT), ..Behaviour::default() });
    let url = server.url();

    let run = ok(mesh.pmesh(&["artifact", "add", &url]), "artifact add URL");
    assert!(run.stdout.contains(&format!("added generated-image-bin sha256 {SHA256}")), "{}", run.stdout);

    let requests = server.requests();
    assert!(requests.len() >= 2, "a cut and a resume: {requests:?}");
    assert!(requests.iter().all(|request| request.path == "/files/Generated_Image.bin"), "{requests:?}");
    assert_eq!(requests[0].range, None, "the first request asks for everything: {requests:?}");
    let resumed_from: Vec<u64> = requests[1..]
        .iter()
        .map(|request| request.range_start().unwrap_or_else(|| panic!("a second full download instead of a range: {requests:?}")))
        .collect();
    assert!(resumed_from[0] > 0 && resumed_from[0] <= CUT_AT as u64, "resumed from {resumed_from:?}, cut at {CUT_AT}");
    assert_eq!(std::fs::read(mesh.master_dir().join("depot/sha256").join(SHA256))?, *content);
    assert_eq!(depot_files(&mesh, "partial"), Vec::<String>::new());
    let artifacts = listed(&mesh);
    assert_eq!((&artifacts[0]["names"], &artifacts[0]["size"]), (&serde_json::json!(["generated-image-bin"]), &serde_json::json!(SIZE)));

    // A URL the server does not have: a clear failure, nothing added.
    let missing = format!("http://127.0.0.1:{}/files/missing.bin", server.port);
    let run = mesh.pmesh(&["artifact", "add", &missing]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("does not have it (not found)"), "{}", run.stderr);
    assert_eq!(listed(&mesh).len(), 1);
    Ok(())
}
