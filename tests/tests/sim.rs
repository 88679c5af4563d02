//! `pmesh-agent simulate` against a real master: five identities join with their own tokens,
//! the master's heartbeat records each of them up at its own loopback address, SIGTERM stops
//! them all (and the master then sees them down), a restart serves the same identities without
//! tokens (and, with the real Docker engine, runs a container-less pattern on all five), and a
//! count with identities that have no token is refused before anything changes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pmesh_tests::docker::Instance;
use pmesh_tests::{bin, wait_until, Mesh};

/// The simulation's process, killed on drop.
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn simulate(mesh: &Mesh, count: &str, extra: &[&str], docker: bool) -> Command {
    let data = mesh.dir.path().join("sim");
    let mut command = Command::new(bin("pmesh-agent"));
    command
        .args(["simulate", "--count", count, "--master", &mesh.master_address(), "--data"])
        .arg(&data)
        .args(["--for", "5m"])
        .args(extra)
        .env("RUST_LOG", "info");
    if !docker {
        // The identities' Info asks no Docker engine; a missing socket answers at once.
        command.env("DOCKER_HOST", format!("unix://{}", mesh.dir.path().join("no-docker.sock").display()));
    }
    command
}

fn start(mut command: Command, log: &Path) -> Sim {
    let file = std::fs::File::create(log).expect("a log file");
    let child = command.stdout(Stdio::from(file.try_clone().expect("a log file"))).stderr(Stdio::from(file)).spawn().expect("simulate");
    Sim(child)
}

/// The listed agents with `status`, by name.
fn with_status(mesh: &Mesh, status: &str) -> Vec<String> {
    let mut names: Vec<String> = mesh
        .agents()
        .unwrap_or_default()
        .into_iter()
        .filter(|agent| agent["status"] == status)
        .filter_map(|agent| agent["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn terminate(sim: &mut Sim) -> std::process::ExitStatus {
    let status = Command::new("kill").arg("-TERM").arg(sim.0.id().to_string()).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = sim.0.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the simulation did not stop within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn five_simulated_agents_join_and_answer_the_heartbeat() {
    let mesh = Mesh::init().expect("mesh");
    let _master = mesh.start_master().expect("master");
    let mut fingerprint = String::new();
    let mut tokens = String::new();
    for _ in 0..5 {
        let (token, ca) = mesh.token(&[]).expect("a token");
        tokens.push_str(&token);
        tokens.push('\n');
        fingerprint = ca;
    }
    let token_file = mesh.dir.path().join("tokens");
    std::fs::write(&token_file, tokens).expect("token file");
    let log = mesh.dir.path().join("sim.log");
    let token_path = token_file.to_str().expect("utf-8");
    let mut sim = start(simulate(&mesh, "5", &["--token-file", token_path, "--ca-fingerprint", &fingerprint], false), &log);

    let expected: Vec<String> = (1..=5).map(|index| format!("sim-{index:05}")).collect();
    let all_up = wait_until("five simulated agents up", Duration::from_secs(60), || with_status(&mesh, "up") == expected);
    assert!(all_up.is_ok(), "{all_up:?}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    // Five identities: each its own certificate and its own listener, reporting its own name.
    let agents = mesh.agents().expect("agents");
    let mut addresses: Vec<&str> = agents.iter().filter_map(|agent| agent["address"].as_str()).collect();
    let mut serials: Vec<&str> = agents.iter().filter_map(|agent| agent["cert_serial"].as_str()).collect();
    addresses.sort_unstable();
    addresses.dedup();
    serials.sort_unstable();
    serials.dedup();
    assert_eq!((addresses.len(), serials.len()), (5, 5), "{agents:?}");
    assert!(addresses.iter().all(|address| address.starts_with("127.0.0.1:")), "{addresses:?}");

    assert!(terminate(&mut sim).success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    wait_until("all five down once stopped", Duration::from_secs(30), || with_status(&mesh, "down") == expected).expect("down");

    // Six identities, one of them without a token: refused with a usage error, nothing joined.
    let refused = simulate(&mesh, "6", &[], false).output().expect("simulate");
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("1 identities are not enrolled yet: pass --token-file"), "{refused:?}");
    assert!(!mesh.dir.path().join("sim/sim-00006").exists());

    // The same five again, from their data directories, without a token, with Docker: the
    // real service takes a bundle and a run, and streams the run's events back.
    let log = mesh.dir.path().join("sim-again.log");
    let mut again = start(simulate(&mesh, "5", &[], true), &log);
    wait_until("the five up again", Duration::from_secs(60), || with_status(&mesh, "up") == expected).expect("up again");
    let push = mesh.pmesh(&["pattern", "push", concat!(env!("CARGO_MANIFEST_DIR"), "/patterns/noop")]);
    assert_eq!(push.code, 0, "{push:?}");
    let instance = Instance::new("sim");
    let port = mesh.master_port.to_string();
    let run = mesh.pmesh(&["run", "noop", "--all", "--instance", &instance.0, "-p", &format!("port={port}")]);
    assert_eq!(run.code, 0, "{run:?}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    for name in &expected {
        assert!(run.stdout.contains(name.as_str()) || run.stderr.contains(name.as_str()), "{name} missing from {run:?}");
    }
    assert!(terminate(&mut again).success());
}
