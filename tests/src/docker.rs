//! Docker helpers for tests: the locally built tool image, and the `docker` CLI for checks
//! made from outside pmesh (what is running, what carries which labels).

use std::process::Command;

/// The image built by `tests/images/build.sh` from Debian packages: bind9, dig, curl, nc.
pub const TOOLS_IMAGE: &str = "pmesh-test/tools:bookworm-1";

/// Fails with instructions when the test image is missing; never skips.
pub fn require_tools_image() {
    let present = Command::new("docker").args(["image", "inspect", TOOLS_IMAGE]).output().map(|out| out.status.success());
    assert!(
        present.unwrap_or(false),
        "{TOOLS_IMAGE} is missing: build it with tests/images/build.sh (tests/run.sh does)"
    );
}

/// Runs `docker ARGS` and returns stdout; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker").args(args).output().expect("running docker");
    assert!(output.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Names of containers (running or not) whose label `key` is `value`.
pub fn containers_with_label(key: &str, value: &str) -> Vec<String> {
    let out = docker(&["ps", "-a", "--filter", &format!("label={key}={value}"), "--format", "{{.Names}}"]);
    let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
    names.sort();
    names
}

/// Whether the container `name` is running.
pub fn is_running(name: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", name])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "true")
        .unwrap_or(false)
}

/// Removes every container, network and volume labelled with `instance`.
pub fn remove_instance(instance: &str) {
    let filter = format!("label=io.pmesh.instance={instance}");
    for (list, remove) in [
        (vec!["ps", "-aq", "--filter", &filter], vec!["rm", "-f"]),
        (vec!["network", "ls", "-q", "--filter", &filter], vec!["network", "rm"]),
        (vec!["volume", "ls", "-q", "--filter", &filter], vec!["volume", "rm", "-f"]),
    ] {
        let ids = Command::new("docker").args(&list).output().map(|out| String::from_utf8_lossy(&out.stdout).into_owned()).unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = Command::new("docker").args(&remove).arg(id).output();
        }
    }
}

/// A unique instance name for a test, removed from Docker when dropped.
pub struct Instance(pub String);

impl Instance {
    pub fn new(prefix: &str) -> Instance {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        Instance(format!("{prefix}-{}-{}", std::process::id() % 10_000, nanos % 100_000))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        remove_instance(&self.0);
    }
}
