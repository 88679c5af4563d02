//! `pmesh destroy INSTANCE` through a real master and agent on the real Docker engine: the
//! agent destroys from the bundle and values it recorded (the CLI passes none, and the pattern
//! has a required param), removes exactly what carries the instance's labels (a second
//! instance of the same pattern and an unlabelled container stay), the master marks the
//! instance destroyed, a second destroy says so with exit 0, an unknown instance exits 1, and
//! running the instance again brings it back.

use std::path::{Path, PathBuf};

use pmesh_tests::docker::{docker, docker_output, instance_objects, is_running, require_tools_image, Instance, TOOLS_IMAGE};
use pmesh_tests::{Mesh, Run};
use serde_json::{json, Value};

fn pattern() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("patterns/destroyable")
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("not JSON ({err}): {}\n{}", run.stdout, run.stderr))
}

/// An unlabelled container, removed when dropped.
struct Bystander(String);

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", &self.0]);
    }
}

#[test]
fn destroy_from_the_master_removes_only_the_instance_and_is_idempotent() -> anyhow::Result<()> {
    require_tools_image();
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let _agent = mesh.start_agent("pc-1", &[])?;
    let push = mesh.pmesh(&["pattern", "push", pattern().to_str().expect("utf-8")]);
    anyhow::ensure!(push.code == 0, "push failed: {}", push.stderr);

    let doomed = Instance::new("destroy-a");
    let kept = Instance::new("destroy-b");
    for instance in [&doomed, &kept] {
        let run = mesh.pmesh(&["run", "destroyable", "--on", "pc-1", "--instance", &instance.0, "-p", "word=hello"]);
        anyhow::ensure!(run.code == 0, "run failed: {}\n{}", run.stdout, run.stderr);
    }
    let bystander = Bystander(format!("{}-bystander", doomed.0));
    docker(&["run", "-d", "--name", &bystander.0, "--label", &format!("io.pmesh.instance-like={}", doomed.0), TOOLS_IMAGE, "sleep", "600"]);
    let before = instance_objects(&doomed.0);
    assert!(before.len() >= 2, "the instance has its container and its volume: {before:?}");
    let volume = docker(&["volume", "ls", "-q", "--filter", &format!("label=io.pmesh.instance={}", doomed.0)]);
    assert!(!volume.is_empty(), "the instance has a volume");

    // No pattern directory, no values: the agent destroys from what it recorded.
    let destroyed = mesh.pmesh(&["destroy", &doomed.0]);
    assert_eq!(destroyed.code, 0, "{}\n{}", destroyed.stdout, destroyed.stderr);
    assert!(destroyed.stdout.contains(&format!("pmesh-pc-1-{}-serve", doomed.0)), "names what it removed: {}", destroyed.stdout);
    // The teardown hook ran, with the recorded value of the required param, before removal.
    assert!(destroyed.stdout.contains(&format!("pmesh-pc-1-{}-farewell", doomed.0)), "the hook ran: {}", destroyed.stdout);
    assert!(destroyed.stdout.contains(&volume), "names the volume: {}", destroyed.stdout);
    assert_eq!(instance_objects(&doomed.0), Vec::<String>::new(), "nothing carrying the instance's labels is left");
    assert!(is_running(&format!("pmesh-pc-1-{}-serve", kept.0)), "the other instance of the pattern is untouched");
    assert!(is_running(&bystander.0), "an unlabelled container is untouched");

    let shown = json_of(&mesh.pmesh(&["instances", "show", &doomed.0, "-o", "json"]));
    assert_eq!(shown["state"], json!("destroyed"), "{shown}");
    let other = json_of(&mesh.pmesh(&["instances", "show", &kept.0, "-o", "json"]));
    assert_eq!(other["state"], json!("succeeded"), "{other}");

    // Again: says so, exit 0, changes nothing.
    let again = mesh.pmesh(&["destroy", &doomed.0, "--agent", "pc-1", "-o", "json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(json_of(&again)["agents"], json!([{"agent": "pc-1", "removed": [], "already_destroyed": true}]));
    let again_text = mesh.pmesh(&["destroy", &doomed.0]);
    assert!(again_text.stdout.contains("already destroyed"), "{}", again_text.stdout);

    // Unknown: exit 1, named; on an agent that lacks it, too.
    let unknown = mesh.pmesh(&["destroy", "no-such-instance"]);
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("no instance \"no-such-instance\""), "{}", unknown.stderr);
    let elsewhere = mesh.pmesh(&["destroy", &kept.0, "--agent", "pc-2"]);
    assert_eq!(elsewhere.code, 1, "{}", elsewhere.stderr);
    assert!(is_running(&format!("pmesh-pc-1-{}-serve", kept.0)), "a destroy on another agent touched nothing");

    // Run again: it comes back, and a destroy removes it again.
    let rerun = mesh.pmesh(&["run", "destroyable", "--on", "pc-1", "--instance", &doomed.0, "-p", "word=again"]);
    anyhow::ensure!(rerun.code == 0, "run failed: {}\n{}", rerun.stdout, rerun.stderr);
    assert_eq!(json_of(&mesh.pmesh(&["instances", "show", &doomed.0, "-o", "json"]))["state"], json!("succeeded"));
    let second = mesh.pmesh(&["destroy", &doomed.0, "-o", "json"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(json_of(&second)["agents"][0]["already_destroyed"], json!(false));
    assert_eq!(instance_objects(&doomed.0), Vec::<String>::new());
    Ok(())
}
