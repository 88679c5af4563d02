//! Artifacts end to end, with the real binaries, a real HTTP server on loopback, the master's
//! real depot over mTLS and real Docker: a run fetches its pattern's artifact into the agent's
//! cache, verified, once (two runs at once share one download; a later run moves no byte),
//! mounts it read-only, reports the transfer's bytes; the depot is tried before the URL; a
//! missing artifact fails the run and leaves nothing in the cache; an agent killed mid-download
//! resumes it with a `Range` request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pmesh_tests::docker::{require_tools_image, Instance};
use pmesh_tests::http::{generated, Behaviour, FileServer, SHA256, SIZE};
use pmesh_tests::{run_id_in, wait_until, Daemon, Mesh};

fn pattern() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/patterns/fetch").to_owned()
}

fn lab(names: &[&str]) -> anyhow::Result<(Mesh, Daemon, Vec<Daemon>)> {
    require_tools_image();
    let mesh = Mesh::init()?;
    let master = mesh.start_master()?;
    let mut agents = Vec::new();
    for name in names {
        mesh.enrol(name, &[])?;
        agents.push(mesh.start_agent(name, &[])?);
    }
    let push = mesh.pmesh(&["pattern", "push", &pattern()]);
    anyhow::ensure!(push.code == 0, "push failed: {}", push.stderr);
    Ok((mesh, master, agents))
}

/// Follows a run to its end: its exit code and every event.
fn watch(mesh: &Mesh, run_id: &str) -> (i32, Vec<serde_json::Value>) {
    let watch = mesh.pmesh(&["runs", "watch", run_id, "-o", "json"]);
    (watch.code, watch.stdout.lines().filter_map(|line| serde_json::from_str(line).ok()).collect())
}

fn cache(mesh: &Mesh, agent: &str, sub: &str) -> Vec<PathBuf> {
    let dir = mesh.agent_dir(agent).join("artifacts").join(sub);
    std::fs::read_dir(&dir).map(|entries| entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect()).unwrap_or_default()
}

#[test]
fn runs_fetch_once_verify_mount_read_only_and_report_bytes_and_a_later_run_moves_nothing() -> anyhow::Result<()> {
    let (mesh, _master, _agents) = lab(&["pc-1"])?;
    let content = Arc::new(generated());
    let server = FileServer::start(content.clone(), Behaviour::default());
    let url = format!("url={}", server.url());
    let (first, second, third) = (Instance::new("fa"), Instance::new("fb"), Instance::new("fc"));

    // Two runs started back to back need the same artifact (the fetcher's unit tests hold
    // two truly concurrent fetches to one download).
    let mut run_ids = Vec::new();
    for instance in [&first, &second] {
        let started = mesh.pmesh(&["run", "fetch", "--on", "pc-1", "--instance", &instance.0, "-p", &url, "--detach"]);
        assert_eq!(started.code, 0, "{}\n{}", started.stdout, started.stderr);
        run_ids.push(run_id_in(&started.stdout).expect("run id printed"));
    }
    for run_id in &run_ids {
        let (code, events) = watch(&mesh, run_id);
        assert_eq!(code, 0, "{events:#?}");
        let logs: Vec<&str> = events.iter().filter(|event| event["kind"] == "log").filter_map(|event| event["text"].as_str()).collect();
        assert!(logs.iter().any(|line| *line == format!("{SHA256}  /artifacts/generated.bin")), "the step read the artifact: {logs:?}");
        assert!(!logs.contains(&"writable"), "the artifact is mounted read-only");
        let transfers: Vec<&serde_json::Value> =
            events.iter().filter(|event| event["step"] == "artifact:generated" && event["kind"] == "progress").collect();
        // The run that did not download waited for the other's transfer; the one that did
        // reports its bytes, ending at the whole artifact.
        if let Some(last) = transfers.last() {
            assert_eq!((last["done_bytes"].as_u64(), last["total_bytes"].as_u64()), (Some(SIZE as u64), Some(SIZE as u64)), "{last:#}");
            assert!(last["text"].as_str().is_some_and(|text| text.starts_with("3.0 MiB of 3.0 MiB")), "{last:#}");
        }
        assert!(events.iter().any(|event| event["step"] == "artifact:generated" && event["kind"] == "step_succeeded"), "{events:#?}");
    }
    assert_eq!(server.requests().len(), 1, "two runs at once downloaded it once: {:?}", server.requests());
    assert_eq!(
        std::fs::read(mesh.agent_dir("pc-1").join("artifacts/sha256").join(SHA256))?,
        *content,
        "the cache holds the verified bytes"
    );
    assert!(cache(&mesh, "pc-1", "partial").is_empty());

    // A later run, and a plan, find it in the cache.
    let plan = mesh.pmesh(&["run", "fetch", "--on", "pc-1", "--instance", &third.0, "-p", &url, "--plan", "-o", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout)?;
    assert_eq!(
        plan["pc-1"]["actions"][0],
        serde_json::json!({ "kind": "artifact", "name": "generated", "action": "cached", "detail": "" })
    );
    let again = mesh.pmesh(&["run", "fetch", "--on", "pc-1", "--instance", &third.0, "-p", &url]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(server.requests().len(), 1, "a cached artifact moves no byte");
    Ok(())
}

#[test]
fn the_depot_is_tried_first_and_an_artifact_no_source_has_fails_the_run_leaving_nothing() -> anyhow::Result<()> {
    let (mesh, _master, _agents) = lab(&["pc-1", "pc-2"])?;
    let file = mesh.dir.path().join("generated.bin");
    std::fs::write(&file, generated())?;
    let added = mesh.pmesh(&["artifact", "add", file.to_str().expect("a UTF-8 path"), "--sha256", SHA256]);
    assert_eq!(added.code, 0, "{}", added.stderr);

    // Nothing listens on port 1: only the depot can provide it.
    let (from_depot, missing) = (Instance::new("dep"), Instance::new("miss"));
    let run = mesh.pmesh(&["run", "fetch", "--on", "pc-1", "--instance", &from_depot.0, "-p", "url=http://127.0.0.1:1/generated.bin"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(mesh.agent_dir("pc-1").join("artifacts/sha256").join(SHA256).exists());

    // Neither the depot nor the URL has it: the run fails, naming both, and pc-2 keeps nothing.
    let removed = mesh.pmesh(&["artifact", "rm", SHA256, "--force"]);
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    let server = FileServer::start(Arc::new(generated()), Behaviour::default());
    let url = format!("url=http://127.0.0.1:{}/files/missing.bin", server.port);
    let run = mesh.pmesh(&["run", "fetch", "--on", "pc-2", "--instance", &missing.0, "-p", &url]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let failure = run.stdout.lines().find(|line| line.contains("artifact:generated") && line.contains("FAILED")).unwrap_or_default();
    assert!(failure.contains("the master's depot does not have it") && failure.contains("missing.bin does not have it"), "{}", run.stdout);
    assert!(cache(&mesh, "pc-2", "sha256").is_empty() && cache(&mesh, "pc-2", "partial").is_empty(), "nothing is left in the cache");
    assert!(!run.stdout.contains("check          started"), "no step ran without its artifact:\n{}", run.stdout);
    Ok(())
}

#[test]
fn an_agent_killed_mid_download_resumes_it_with_a_range_request() -> anyhow::Result<()> {
    let (mesh, _master, mut agents) = lab(&["pc-1"])?;
    let content = Arc::new(generated());
    // About three seconds for the whole file: time to kill the agent in the middle.
    let server = FileServer::start(content.clone(), Behaviour { bytes_per_second: Some(1024 * 1024), ..Behaviour::default() });
    let instance = Instance::new("resume");
    let started =
        mesh.pmesh(&["run", "fetch", "--on", "pc-1", "--instance", &instance.0, "-p", &format!("url={}", server.url()), "--detach"]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    let run_id = run_id_in(&started.stdout).expect("run id printed");

    let partial_len =
        || cache(&mesh, "pc-1", "partial").iter().filter_map(|path| std::fs::metadata(path).ok()).map(|meta| meta.len()).max().unwrap_or(0);
    wait_until("a partial download of 512 KiB", Duration::from_secs(30), || partial_len() >= 512 * 1024)?;
    agents[0].kill();
    let kept = partial_len();
    assert!(kept > 0 && kept < SIZE as u64, "the partial survives the kill: {kept} bytes");
    agents[0] = mesh.start_agent("pc-1", &[])?;

    let (code, events) = watch(&mesh, &run_id);
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(std::fs::read(mesh.agent_dir("pc-1").join("artifacts/sha256").join(SHA256))?, *content);
    let requests = server.requests();
    assert!(requests.len() >= 2, "{requests:?}");
    assert_eq!(requests[0].range_start(), None, "{requests:?}");
    let resumed = requests.last().and_then(|request| request.range_start()).unwrap_or(0);
    assert!(resumed > 0 && resumed <= kept, "resumed from {resumed}, {kept} bytes were kept: {requests:?}");
    Ok(())
}
