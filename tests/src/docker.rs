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
