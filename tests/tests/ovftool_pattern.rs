//! The catalog's `basic/ovftool` end to end, with the real binaries, real Docker and the
//! download served by a real HTTP server on loopback: its image is built from a user's
//! download, fetched and checksummed by the agent's artifact cache and placed in the build
//! context. OVF Tool itself cannot be installed here, so the downloads are stand-ins
//! (`tests/standins/ovftool`): a `.bundle` with the real installer's interface and a `.zip`
//! laid out as the real one, each installing an `ovftool` that prints the real tool's
//! version line and deploy progress. The base image is `pmesh-test/ovftool-base` (Debian's
//! libnsl, libcrypt and ncurses 5, and unzip), passed as the pattern's `base_image`.
//!
//! - From the `.bundle`: `--plan` says `build`, the build streams as the step
//!   `image:ovftool` and the smoke test prints 4.6.2; again: `--plan` says `present`, nothing
//!   is built, the image id is the same; a changed download builds a new image.
//! - From the `.zip`: the smoke test prints 4.6.3, and another pattern runs the image (the
//!   `image` output) with its `Disk progress` percentages reaching the events and the CLI.
//! - A failing Dockerfile fails the step `image:ovftool` with the build's last lines, and no
//!   step runs.

use std::path::PathBuf;
use std::sync::Arc;

use pmesh_tests::docker::{docker, docker_output, Instance};
use pmesh_tests::http::{Behaviour, FileServer};
use pmesh_tests::standins::{ovftool_bundle, ovftool_zip, pattern_for_download};
use pmesh_tests::{run_id_in, Daemon, Mesh};

const BASE_IMAGE: &str = "pmesh-test/ovftool-base:bookworm-1";

/// A mesh with one agent, `pc-1`.
fn lab() -> anyhow::Result<(Mesh, Daemon, Daemon)> {
    assert!(
        docker_output(&["image", "inspect", BASE_IMAGE]).status.success(),
        "{BASE_IMAGE} is missing: build it with tests/images/build.sh (tests/run.sh does)"
    );
    let mesh = Mesh::init()?;
    let master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let agent = mesh.start_agent("pc-1", &[])?;
    Ok((mesh, master, agent))
}

/// Images the test made, removed when it ends.
#[derive(Default)]
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = docker_output(&["rmi", "-f", image]);
        }
    }
}

/// A run of basic/ovftool (as pushed from `pattern`) whose download `server` serves.
struct OvftoolRun<'a> {
    mesh: &'a Mesh,
    instance: &'a Instance,
    server: &'a FileServer,
}

impl OvftoolRun<'_> {
    fn args(&self) -> Vec<String> {
        let url = format!("download_url={}", self.server.url());
        let base = format!("base_image={BASE_IMAGE}");
        ["run", "ovftool", "--on", "pc-1", "--instance", &self.instance.0, "-p", &url, "-p", &base].map(str::to_owned).to_vec()
    }

    /// What `--plan` says it would do with the image.
    fn planned_image(&self) -> serde_json::Value {
        let mut args = self.args();
        args.extend(["--plan", "-o", "json"].map(str::to_owned));
        let plan = self.mesh.pmesh(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
        let plan: serde_json::Value = serde_json::from_str(&plan.stdout).expect("the plan is JSON");
        let actions = plan["pc-1"]["actions"].as_array().cloned().unwrap_or_default();
        actions.into_iter().find(|action| action["kind"] == "image").unwrap_or_else(|| panic!("no image in the plan: {plan:#}"))
    }

    /// Runs it to its end: its exit code and every event.
    fn apply(&self) -> (i32, Vec<serde_json::Value>) {
        let mut args = self.args();
        args.push("--detach".into());
        let started = self.mesh.pmesh(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(started.code, 0, "{}\n{}", started.stdout, started.stderr);
        watch(self.mesh, &run_id_in(&started.stdout).expect("run id printed"))
    }
}

/// Follows a run to its end: its exit code and every event.
fn watch(mesh: &Mesh, run_id: &str) -> (i32, Vec<serde_json::Value>) {
    let watch = mesh.pmesh(&["runs", "watch", run_id, "-o", "json"]);
    (watch.code, watch.stdout.lines().filter_map(|line| serde_json::from_str(line).ok()).collect())
}

fn of_step<'a>(events: &'a [serde_json::Value], step: &str, kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|event| event["step"] == step && event["kind"] == kind.to_lowercase()).collect()
}

fn logs<'a>(events: &'a [serde_json::Value], step: &str) -> Vec<&'a str> {
    of_step(events, step, "LOG").iter().filter_map(|event| event["text"].as_str()).collect()
}

/// The instance's `image` output, from its last run that succeeded.
fn image_output(mesh: &Mesh, instance: &Instance) -> String {
    let shown = mesh.pmesh(&["instances", "show", &instance.0, "-o", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap_or_else(|_| panic!("{}\n{}", shown.stdout, shown.stderr));
    shown["outputs"]["image"]["value"].as_str().unwrap_or_else(|| panic!("no image output: {shown:#}")).to_owned()
}

fn image_id(reference: &str) -> String {
    docker(&["image", "inspect", "--format", "{{.Id}}", reference])
}

fn push(mesh: &Mesh, pattern: &std::path::Path) {
    let push = mesh.pmesh(&["pattern", "push", pattern.to_str().expect("a UTF-8 path")]);
    assert_eq!(push.code, 0, "{}\n{}", push.stdout, push.stderr);
}

fn unique(label: &str) -> String {
    format!("{label} {} {}", std::process::id(), rand::random::<u64>())
}

#[test]
fn the_image_builds_from_a_bundle_once_and_again_when_the_download_changes() -> anyhow::Result<()> {
    let (mesh, _master, _agent) = lab()?;
    let mut images = Images::default();
    let instance = Instance::new("ovfb");
    let bundle = ovftool_bundle(&unique("bundle"));
    let server = FileServer::start(Arc::new(bundle.clone()), Behaviour::default());
    push(&mesh, &pattern_for_download("basic/ovftool", &mesh.dir.path().join("ovftool-1"), &bundle, "1.0.0"));
    let run = OvftoolRun { mesh: &mesh, instance: &instance, server: &server };

    assert_eq!(run.planned_image()["action"], "build", "nothing built yet");
    let (code, events) = run.apply();
    assert_eq!(code, 0, "{events:#?}");
    let tag = image_output(&mesh, &instance);
    images.0.push(tag.clone());
    assert!(tag.starts_with("pmesh/ovftool-ovftool:"), "{tag}");
    let build_log = logs(&events, "image:ovftool");
    assert!(build_log.contains(&"installing OVF Tool from a .bundle"), "{build_log:#?}");
    assert!(build_log.contains(&"Installation was successful."), "the installer ran headless: {build_log:#?}");
    assert!(!of_step(&events, "image:ovftool", "PROGRESS").is_empty(), "Docker's steps are the build's progress: {events:#?}");
    assert_eq!(of_step(&events, "image:ovftool", "STEP_SUCCEEDED").len(), 1);
    assert_eq!(logs(&events, "smoke"), ["VMware ovftool 4.6.2 (build-22220919)"]);
    let built = image_id(&tag);

    assert_eq!(run.planned_image(), serde_json::json!({"kind": "image", "name": tag, "action": "present", "detail": ""}));
    let (code, events) = run.apply();
    assert_eq!(code, 0, "{events:#?}");
    assert!(of_step(&events, "image:ovftool", "STEP_STARTED").is_empty(), "nothing is built again: {events:#?}");
    assert!(events.iter().any(|event| event["kind"] == "image_ready" && event["text"] == format!("{tag} present")));
    assert_eq!(image_id(&tag), built, "the same image");

    // A new download (its checksum set in the pattern, as a user does) builds a new image.
    let newer = ovftool_bundle(&unique("newer bundle"));
    let newer_server = FileServer::start(Arc::new(newer.clone()), Behaviour::default());
    push(&mesh, &pattern_for_download("basic/ovftool", &mesh.dir.path().join("ovftool-2"), &newer, "1.0.1"));
    let run = OvftoolRun { mesh: &mesh, instance: &instance, server: &newer_server };
    assert_eq!(run.planned_image()["action"], "build");
    let (code, events) = run.apply();
    assert_eq!(code, 0, "{events:#?}");
    let new_tag = image_output(&mesh, &instance);
    images.0.push(new_tag.clone());
    assert_ne!(new_tag, tag);
    assert_eq!(of_step(&events, "image:ovftool", "STEP_SUCCEEDED").len(), 1, "{events:#?}");
    assert_ne!(image_id(&new_tag), built);
    Ok(())
}

#[test]
fn the_image_builds_from_a_zip_and_another_pattern_runs_it_with_its_progress() -> anyhow::Result<()> {
    let (mesh, _master, _agent) = lab()?;
    let mut images = Images::default();
    let (instance, deploy) = (Instance::new("ovfz"), Instance::new("ovfd"));
    let zip = ovftool_zip(&unique("zip"));
    let server = FileServer::start(Arc::new(zip.clone()), Behaviour::default());
    push(&mesh, &pattern_for_download("basic/ovftool", &mesh.dir.path().join("ovftool"), &zip, "1.0.0"));
    let (code, events) = OvftoolRun { mesh: &mesh, instance: &instance, server: &server }.apply();
    assert_eq!(code, 0, "{events:#?}");
    let tag = image_output(&mesh, &instance);
    images.0.push(tag.clone());
    assert!(logs(&events, "image:ovftool").contains(&"installing OVF Tool from a .zip"), "{events:#?}");
    assert_eq!(logs(&events, "smoke"), ["VMware ovftool 4.6.3 (build-24031167)"]);

    let deploy_pattern = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/patterns/ovftool-deploy"));
    push(&mesh, &deploy_pattern);
    let image = format!("ovftool_image={tag}");
    let run = mesh.pmesh(&["run", "ovftool-deploy", "--on", "pc-1", "--instance", &deploy.0, "-p", &image]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for percent in ["0%", "25%", "50%", "75%", "99%"] {
        assert!(run.stdout.lines().any(|line| line.contains("deploy") && line.ends_with(percent)), "{percent} in the CLI:\n{}", run.stdout);
    }
    assert!(run.stdout.contains("| Completed successfully"), "{}", run.stdout);
    let (_, events) = watch(&mesh, &run_id_in(&run.stdout).expect("run id printed"));
    let percents: Vec<f64> = of_step(&events, "deploy", "PROGRESS").iter().filter_map(|event| event["percent"].as_f64()).collect();
    assert_eq!(percents, [0.0, 25.0, 50.0, 75.0, 99.0]);
    Ok(())
}

#[test]
fn a_failing_dockerfile_fails_the_image_step_with_its_last_lines_and_runs_nothing() -> anyhow::Result<()> {
    let (mesh, _master, _agent) = lab()?;
    let instance = Instance::new("ovff");
    let bundle = ovftool_bundle(&unique("failing"));
    let server = FileServer::start(Arc::new(bundle.clone()), Behaviour::default());
    let pattern = pattern_for_download("basic/ovftool", &mesh.dir.path().join("ovftool"), &bundle, "1.0.0");
    let dockerfile = pattern.join("image/Dockerfile");
    let broken =
        std::fs::read_to_string(&dockerfile)?.replace("ENTRYPOINT", "RUN echo checking the install && ls /opt/no-such-dir\nENTRYPOINT");
    std::fs::write(&dockerfile, broken)?;
    push(&mesh, &pattern);
    let (code, events) = OvftoolRun { mesh: &mesh, instance: &instance, server: &server }.apply();
    assert_eq!(code, 1, "{events:#?}");
    let failed = of_step(&events, "image:ovftool", "STEP_FAILED");
    assert_eq!(failed.len(), 1, "{events:#?}");
    let reason = failed[0]["text"].as_str().unwrap_or_default();
    assert!(reason.contains("returned a non-zero code: 2"), "{reason}");
    let tail: Vec<&str> = failed[0]["tail"].as_array().into_iter().flatten().filter_map(|line| line.as_str()).collect();
    assert!(tail.contains(&"checking the install"), "{tail:#?}");
    assert!(tail.iter().any(|line| line.contains("/opt/no-such-dir")), "{tail:#?}");
    assert!(of_step(&events, "smoke", "STEP_STARTED").is_empty(), "no step runs without its image");
    Ok(())
}
