//! A full disk under an agent's data directory (its journal, bundles and artifact cache), a
//! small tmpfs the test mounts: a run whose bundle cannot be stored fails at once, saying the
//! agent's disk is full; a run whose events the journal cannot take (the disk filling up with
//! the bundle held) must end in a clear error too; nothing is corrupted (the agent restarts on
//! the same journal), and once space returns a run succeeds with every line once.

use std::time::Duration;

use pmesh_tests::chaos::Tmpfs;
use pmesh_tests::docker::{require_tools_image, Instance};
use pmesh_tests::Mesh;

fn chatty() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/patterns/chatty").to_owned()
}

fn run(mesh: &Mesh, instance: &Instance, lines: u32) -> anyhow::Result<(String, Vec<serde_json::Value>)> {
    let started = mesh.pmesh(&["run", "chatty", "--on", "pc-1", "--instance", &instance.0, "-p", &format!("lines={lines}"), "--detach"]);
    anyhow::ensure!(started.code == 0, "{}{}", started.stdout, started.stderr);
    let run_id = started.stdout.lines().find_map(|line| line.strip_prefix("run ")).and_then(|rest| rest.split_whitespace().next());
    let run_id = run_id.ok_or_else(|| anyhow::anyhow!("no run id in {}", started.stdout))?.to_owned();
    let events = super::runs::events(mesh, &run_id, Duration::from_secs(120))?;
    Ok((run_id, events))
}

#[test]
fn a_full_agent_disk_fails_clearly_and_recovers() -> anyhow::Result<()> {
    require_tools_image();
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let disk = Tmpfs::mount(&mesh.agent_dir("pc-1"), "24m")?;
    mesh.enrol("pc-1", &[])?;
    let mut agent = mesh.start_agent("pc-1", &[])?;
    let push = mesh.pmesh(&["pattern", "push", &chatty()]);
    anyhow::ensure!(push.code == 0, "{}", push.stderr);

    let fill = disk.fill()?;
    let full = Instance::new("full");
    let (run_id, events) = run(&mesh, &full, 20_000)?;
    let shown = super::runs::show(&mesh, &run_id);
    let error = shown["agents"]["pc-1"]["error"].as_str().unwrap_or_default().to_owned();
    assert_eq!((shown["state"].as_str(), events.len()), (Some("failed"), 0), "nothing ran: {shown:#}");
    assert!(error.contains("disk is full"), "a clear error: {error:?}");

    // With the bundle held, the disk filling up in the middle of a run: the journal cannot
    // take the run's events.
    std::fs::remove_file(&fill)?;
    let warm = Instance::new("warm");
    let (run_id, _) = run(&mesh, &warm, 10)?;
    assert_eq!(super::runs::show(&mesh, &run_id)["state"], "succeeded");
    let fill = disk.fill()?;
    let midrun = Instance::new("midrun");
    let (run_id, events) = run(&mesh, &midrun, 20_000)?;
    let shown = super::runs::show(&mesh, &run_id);
    println!("while full: {} events, run {shown:#}", events.len());
    println!("agent log: {}", agent.log_text().lines().filter(|line| !line.contains("INFO")).take(5).collect::<Vec<_>>().join("\n"));
    let error = shown["agents"]["pc-1"]["error"].as_str().unwrap_or_default().to_owned();
    assert_ne!(shown["state"], "succeeded", "a run cannot succeed without its journal");
    assert!(error.contains("disk is full"), "a clear error: {error:?}");

    std::fs::remove_file(fill)?;
    agent.kill();
    let _agent = mesh.start_agent("pc-1", &[])?;
    let again = Instance::new("room");
    let (run_id, events) = run(&mesh, &again, 20_000)?;
    assert_eq!(super::runs::show(&mesh, &run_id)["state"], "succeeded");
    let lines = events.iter().filter(|event| event["kind"] == "RUN_EVENT_KIND_LOG").count();
    assert_eq!(lines, 20_000, "every line once space returned");
    Ok(())
}
