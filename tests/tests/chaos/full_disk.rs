//! A full disk in each place a daemon writes: the agent's journal, the agent's artifact cache
//! and the master's data directory, each a small tmpfs the test mounts ([`Tmpfs`], as root)
//! and fills with a file while a run goes on, then frees by removing the file.
//!
//! - Journal: the run is held, not failed and not dropping events (the runner waits on the
//!   journal); `pmesh agents ls` says "journal: disk full at PATH", the agent logs it once;
//!   once space returns the run goes on and
//!   succeeds, and the master has every line exactly once. The agent restarts on the same
//!   journal and runs again. (The journal refuses writes before sled meets ENOSPC, so sled's
//!   own failure and the reopen after it are not reached here; see agent/src/journal/disk.rs.)
//! - Artifact cache: a download that cannot be written fails the run with a message naming
//!   the cache and ENOSPC, and nothing is left counted as cached; once space returns the next
//!   run fetches it (resuming the partial download) and succeeds.
//! - Master: a start answers a clear error (no panic, no internal error); the events the
//!   agent journals meanwhile wait in its journal, and once space returns they flow from the
//!   master's cursor, every line exactly once; a restarted master reads it all back.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pmesh_tests::chaos::Tmpfs;
use pmesh_tests::docker::{require_tools_image, Instance};
use pmesh_tests::http::{generated, Behaviour, FileServer, SHA256};
use pmesh_tests::{wait_until, Daemon, Mesh};
use serde_json::Value;

/// Lines of the paced runs: 10 every 20 ms, so a run takes a few seconds and the disk fills
/// in its middle.
const LINES: u32 = 2000;
const LOG: &str = "log";

fn pattern(name: &str) -> String {
    format!("{}/patterns/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn start(mesh: &Mesh, pattern: &str, instance: &Instance, params: &[String]) -> pmesh_tests::Run {
    let mut args = vec!["run", pattern, "--on", "pc-1", "--instance", &instance.0, "--detach"];
    for param in params {
        args.extend(["-p", param.as_str()]);
    }
    mesh.pmesh(&args)
}

/// Starts a run and returns its id.
fn started(mesh: &Mesh, pattern: &str, instance: &Instance, params: &[String]) -> anyhow::Result<String> {
    let run = start(mesh, pattern, instance, params);
    anyhow::ensure!(run.code == 0, "starting {pattern} failed ({}): {}{}", run.code, run.stdout, run.stderr);
    let run_id = run.stdout.lines().find_map(|line| line.strip_prefix("run ")).and_then(|rest| rest.split_whitespace().next());
    Ok(run_id.ok_or_else(|| anyhow::anyhow!("no run id in {}", run.stdout))?.to_owned())
}

fn paced(lines: u32) -> Vec<String> {
    vec![format!("lines={lines}"), "burst=10".into(), "pause_ms=20".into()]
}

fn state(mesh: &Mesh, run_id: &str) -> String {
    super::runs::show(mesh, run_id)["state"].as_str().unwrap_or_default().to_owned()
}

fn wait_state(mesh: &Mesh, run_id: &str, wanted: &[&str], timeout: Duration) -> anyhow::Result<String> {
    wait_until(&format!("run {run_id} to be {wanted:?}"), timeout, || wanted.contains(&state(mesh, run_id).as_str()))
        .map_err(|err| anyhow::anyhow!("{err}: {:#}", super::runs::show(mesh, run_id)))?;
    Ok(state(mesh, run_id))
}

/// The problems `pmesh agents ls -o json` lists for pc-1.
fn problems(mesh: &Mesh) -> Vec<String> {
    let agents = mesh.agents().unwrap_or_default();
    let agent = agents.iter().find(|agent| agent["name"] == "pc-1").cloned().unwrap_or(Value::Null);
    agent["problems"].as_array().into_iter().flatten().filter_map(|problem| problem.as_str().map(str::to_owned)).collect()
}

/// Every stored event of a run that has ended, checked: its log lines are exactly `1..=lines`
/// in order, and no sequence number comes twice.
fn every_line_once(mesh: &Mesh, run_id: &str, lines: u32) -> anyhow::Result<()> {
    let events = super::runs::events(mesh, run_id, Duration::from_secs(60))?;
    let texts: Vec<&str> = events.iter().filter(|event| event["kind"] == LOG).filter_map(|event| event["text"].as_str()).collect();
    let expected: Vec<String> = (1..=lines).map(|line| line.to_string()).collect();
    let lost = expected.iter().filter(|line| !texts.contains(&line.as_str())).count();
    anyhow::ensure!(texts == expected, "{} lines stored for {lines} printed, {lost} lost", texts.len());
    let mut seqs: Vec<u64> = events.iter().filter_map(|event| event["seq"].as_u64()).collect();
    let n_seqs = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    anyhow::ensure!(seqs.len() == n_seqs, "{} events stored twice", n_seqs - seqs.len());
    Ok(())
}

fn log_lines(daemon: &Daemon, text: &str) -> usize {
    daemon.log_text().lines().filter(|line| line.contains(text)).count()
}

#[test]
fn a_full_journal_holds_the_run_and_every_event_arrives_once_space_returns() -> anyhow::Result<()> {
    require_tools_image();
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let journal = mesh.agent_dir("pc-1").join("journal");
    let disk = Tmpfs::mount(&journal, "16m")?;
    let mut agent = mesh.start_agent("pc-1", &[])?;
    let push = mesh.pmesh(&["pattern", "push", &pattern("paced")]);
    anyhow::ensure!(push.code == 0, "{}", push.stderr);

    let instance = Instance::new("jfull");
    let run_id = started(&mesh, "paced", &instance, &paced(LINES))?;
    wait_state(&mesh, &run_id, &["running"], Duration::from_secs(60))?;
    let fill = disk.fill()?;
    let condition = format!("journal: disk full at {}", journal.display());
    wait_until("agents ls to report the journal's disk", Duration::from_secs(60), || problems(&mesh).contains(&condition))
        .map_err(|err| anyhow::anyhow!("{err}: {:?}; agent log {}", problems(&mesh), agent.log_text()))?;
    let table = mesh.pmesh(&["agents", "ls"]);
    assert!(table.stdout.contains(&condition), "the table shows it too: {}", table.stdout);
    assert_eq!(state(&mesh, &run_id), "running", "the run is held, not failed");
    assert_eq!(log_lines(&agent, &condition), 1, "logged once, not per event: {}", agent.log_text());

    std::fs::remove_file(&fill)?;
    let ended = wait_state(&mesh, &run_id, &["succeeded", "failed", "cancelled"], Duration::from_secs(180))?;
    assert_eq!(ended, "succeeded", "{:#}", super::runs::show(&mesh, &run_id));
    every_line_once(&mesh, &run_id, LINES)?;
    assert_eq!(log_lines(&agent, "the journal is written to disk again"), 1, "the recovery is logged once: {}", agent.log_text());
    wait_until("the problem to clear", Duration::from_secs(30), || problems(&mesh).is_empty())?;

    // Nothing corrupted: the agent starts again on the same journal and runs.
    agent.kill();
    let _agent = mesh.start_agent("pc-1", &[])?;
    let again = Instance::new("jagain");
    let run_id = started(&mesh, "paced", &again, &paced(100))?;
    assert_eq!(wait_state(&mesh, &run_id, &["succeeded", "failed", "cancelled"], Duration::from_secs(120))?, "succeeded");
    every_line_once(&mesh, &run_id, 100)
}

fn cached(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("sha256"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_full_artifact_cache_fails_the_run_clearly_and_caches_nothing() -> anyhow::Result<()> {
    require_tools_image();
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let cache = mesh.agent_dir("pc-1").join("artifacts");
    let disk = Tmpfs::mount(&cache, "8m")?;
    let _agent = mesh.start_agent("pc-1", &[])?;
    let push = mesh.pmesh(&["pattern", "push", &pattern("fetch")]);
    anyhow::ensure!(push.code == 0, "{}", push.stderr);
    // Slow enough that the disk fills in the middle of the download.
    let server = FileServer::start(Arc::new(generated()), Behaviour { bytes_per_second: Some(512 * 1024), ..Behaviour::default() });
    let url = vec![format!("url={}", server.url())];

    let instance = Instance::new("afull");
    let run_id = started(&mesh, "fetch", &instance, &url)?;
    let partial = cache.join("partial");
    let downloading =
        || std::fs::read_dir(&partial).into_iter().flatten().flatten().any(|entry| entry.metadata().is_ok_and(|meta| meta.len() > 0));
    wait_until("the download to begin", Duration::from_secs(60), downloading)?;
    let fill = disk.fill()?;
    let ended = wait_state(&mesh, &run_id, &["succeeded", "failed", "cancelled"], Duration::from_secs(120))?;
    assert_eq!(ended, "failed");
    let events = super::runs::events(&mesh, &run_id, Duration::from_secs(30))?;
    let reasons: Vec<&str> =
        events.iter().filter(|event| event["kind"] == "step_failed").filter_map(|event| event["text"].as_str()).collect();
    let cache_text = cache.display().to_string();
    assert!(
        reasons.iter().any(|reason| reason.contains("ENOSPC") && reason.contains(&cache_text)),
        "the reason names the cache and ENOSPC: {reasons:?}"
    );
    assert_eq!(cached(&cache), Vec::<String>::new(), "nothing counted as cached");

    std::fs::remove_file(&fill)?;
    let again = Instance::new("aroom");
    let run_id = started(&mesh, "fetch", &again, &url)?;
    assert_eq!(wait_state(&mesh, &run_id, &["succeeded", "failed", "cancelled"], Duration::from_secs(120))?, "succeeded");
    let events = super::runs::events(&mesh, &run_id, Duration::from_secs(30))?;
    let read = format!("{SHA256}  /artifacts/generated.bin");
    assert!(events.iter().any(|event| event["kind"] == LOG && event["text"] == read.as_str()), "the step read the whole artifact");
    assert_eq!(cached(&cache), vec![SHA256.to_owned()]);
    Ok(())
}

#[test]
fn a_full_master_disk_answers_clearly_and_events_flow_from_the_cursor_once_space_returns() -> anyhow::Result<()> {
    require_tools_image();
    let mesh = Mesh::init()?;
    let disk = Tmpfs::mount_keeping(&mesh.master_dir(), "32m")?;
    let mut master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let _agent = mesh.start_agent("pc-1", &[])?;
    let push = mesh.pmesh(&["pattern", "push", &pattern("paced")]);
    anyhow::ensure!(push.code == 0, "{}", push.stderr);
    wait_until("pc-1 to be up", Duration::from_secs(30), || mesh.status("pc-1").as_deref() == Some("up"))?;

    let instance = Instance::new("mfull");
    let run_id = started(&mesh, "paced", &instance, &paced(LINES))?;
    wait_state(&mesh, &run_id, &["running"], Duration::from_secs(60))?;
    let fill = disk.fill()?;
    let refused = start(&mesh, "paced", &Instance::new("mrefused"), &paced(10));
    assert_ne!(refused.code, 0, "a start cannot be recorded: {}", refused.stdout);
    let data_dir = mesh.master_dir().display().to_string();
    assert!(
        refused.stderr.contains("data directory is full") && refused.stderr.contains(&data_dir),
        "a clear error naming the directory, not an internal one: {}",
        refused.stderr
    );
    // The run goes on on the agent; its events wait in the agent's journal while the master
    // cannot persist them.
    let held = wait_until("the master to log its full disk", Duration::from_secs(60), || {
        log_lines(&master, "the master's data directory is full") > 0
    });
    held.map_err(|err| anyhow::anyhow!("{err}: {}", master.log_text()))?;

    std::fs::remove_file(&fill)?;
    let ended = wait_state(&mesh, &run_id, &["succeeded", "failed", "cancelled"], Duration::from_secs(180))?;
    assert_eq!(ended, "succeeded");
    every_line_once(&mesh, &run_id, LINES)?;
    assert_eq!(log_lines(&master, "the master's database takes writes again"), 1, "the recovery is logged once: {}", master.log_text());
    assert!(master.log_text().lines().all(|line| !line.contains("panicked")), "{}", master.log_text());

    // Nothing corrupted: a restarted master reads it all back, and starts runs again.
    master.kill();
    let _master = mesh.start_master()?;
    every_line_once(&mesh, &run_id, LINES)?;
    let after = started(&mesh, "paced", &Instance::new("mafter"), &paced(100))?;
    assert_eq!(wait_state(&mesh, &after, &["succeeded", "failed", "cancelled"], Duration::from_secs(120))?, "succeeded");
    every_line_once(&mesh, &after, 100)
}
