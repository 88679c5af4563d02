//! The round's runs through the real CLI: started concurrently, waited for with a deadline,
//! their stored events read back, their instances destroyed on their agents.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use pmesh_tests::docker::Instance;
use pmesh_tests::{run_id_in, wait_until, Mesh};
use serde_json::Value;

pub fn pattern_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/patterns/chaos").to_owned()
}

/// One started run: one instance on one agent.
pub struct Started {
    pub run_id: String,
    pub agent: String,
    /// Removed from Docker when dropped, whatever the round found.
    pub instance: Instance,
}

/// Starts `n_runs` runs at once, run `i` on agent `i mod n` with its own instance.
///
/// # Errors
/// When a start fails: no fault is active while runs start, so that is a failure of its own.
pub fn start(mesh: &Mesh, round: usize, n_runs: usize, agents: &[String], params: &[String]) -> anyhow::Result<Vec<Started>> {
    let outcomes: Vec<anyhow::Result<Started>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n_runs)
            .map(|run_idx| {
                scope.spawn(move || {
                    let agent = agents[run_idx % agents.len()].clone();
                    let instance = Instance::new(&format!("ch{round}x{run_idx}"));
                    let mut args = vec!["run", "chaos", "--on", &agent, "--instance", &instance.0, "--detach"];
                    for param in params {
                        args.extend(["-p", param.as_str()]);
                    }
                    let run = mesh.pmesh(&args);
                    if run.code != 0 {
                        bail!("starting run {run_idx} on {agent} failed ({}): {}{}", run.code, run.stdout, run.stderr);
                    }
                    let run_id = run_id_in(&run.stdout).with_context(|| format!("no run id in {:?}", run.stdout))?;
                    Ok(Started { run_id, agent, instance })
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().expect("a start thread panicked")).collect()
    });
    outcomes.into_iter().collect()
}

/// The state of every run the master lists, by id.
fn states(mesh: &Mesh) -> Option<Vec<(String, String)>> {
    let listed = mesh.pmesh(&["runs", "ls", "-o", "json"]);
    let runs: Vec<Value> = serde_json::from_str(&listed.stdout).ok()?;
    Some(
        runs.iter()
            .map(|run| (run["run_id"].as_str().unwrap_or_default().to_owned(), run["state"].as_str().unwrap_or_default().to_owned()))
            .collect(),
    )
}

fn ended(state: &str) -> bool {
    !matches!(state, "pending" | "running" | "")
}

/// Waits until every run of `started` has ended, or `timeout`; returns each run's state then
/// (a run still `running` at the deadline is reported, not waited for further).
pub fn wait_ended(mesh: &Mesh, started: &[Started], timeout: Duration) -> Vec<String> {
    let mut last: Vec<String> = vec![String::new(); started.len()];
    let _ = wait_until("every run to end", timeout, || {
        let Some(known) = states(mesh) else { return false };
        for (slot, run) in last.iter_mut().zip(started) {
            *slot = known.iter().find(|(run_id, _)| run_id == &run.run_id).map(|(_, state)| state.clone()).unwrap_or_default();
        }
        last.iter().all(|state| ended(state))
    });
    last
}

/// `pmesh runs show ID -o json`, parsed.
pub fn show(mesh: &Mesh, run_id: &str) -> Value {
    serde_json::from_str(&mesh.pmesh(&["runs", "show", run_id, "-o", "json"]).stdout).unwrap_or(Value::Null)
}

/// Every event the master stored for `run_id`, from `pmesh runs watch ID -o json`; the
/// command is stopped after `timeout` (it follows a run that has not ended) and whatever it
/// printed by then is returned.
pub fn events(mesh: &Mesh, run_id: &str, timeout: Duration) -> anyhow::Result<Vec<Value>> {
    let data_dir = mesh.master_dir();
    let mut child = Command::new(pmesh_tests::bin("pmesh"))
        .args(["--data-dir", data_dir.to_str().expect("utf-8 temp path"), "runs", "watch", run_id, "-o", "json"])
        .env_remove("PMESH_HOME")
        .env_remove("PMESH_CREDENTIALS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("running pmesh runs watch")?;
    let mut stdout = child.stdout.take().context("the watch's stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    if wait_until("the watch to return", timeout, || matches!(child.try_wait(), Ok(Some(_)))).is_err() {
        let _ = child.kill();
    }
    let _ = child.wait();
    let text = reader.join().expect("the reader thread panicked");
    Ok(text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect())
}

/// Destroys `run`'s instance on its agent with `pmesh-agent pattern destroy`.
///
/// # Errors
/// When the command fails.
pub fn destroy(mesh: &Mesh, run: &Started) -> anyhow::Result<()> {
    let data_dir = mesh.agent_dir(&run.agent);
    let pattern = pattern_dir();
    let args = ["--data-dir", data_dir.to_str().expect("utf-8"), "pattern", "destroy", &pattern, "--instance", &run.instance.0];
    let destroyed = mesh.command("pmesh-agent", &args);
    if destroyed.code != 0 {
        bail!("destroy of {} on {} failed ({}): {}", run.instance.0, run.agent, destroyed.code, destroyed.stderr);
    }
    Ok(())
}
