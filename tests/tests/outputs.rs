//! Pattern outputs end to end, through a real master and agent on the real Docker engine:
//! value outputs from params and run facts, `from` outputs read from a run step's and a
//! service's containers, and a secret output. `runs show` and `instances show` give them;
//! the secret's value is in no event, no master store file and no log, and only `--reveal`
//! shows it. A missing `from` file fails the run, naming the output.

use std::path::{Path, PathBuf};

use pmesh_tests::docker::{require_tools_image, Instance};
use pmesh_tests::{files_under, run_id_in, Mesh, Run};
use serde_json::{json, Value};

fn pattern() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("patterns/outputs")
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("not JSON ({err}): {}\n{}", run.stdout, run.stderr))
}

#[test]
fn outputs_are_shown_and_a_secret_one_only_revealed() -> anyhow::Result<()> {
    require_tools_image();
    let mesh = Mesh::init()?;
    let master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let agent = mesh.start_agent("pc-1", &[])?;
    let push = mesh.pmesh(&["pattern", "push", pattern().to_str().expect("utf-8")]);
    anyhow::ensure!(push.code == 0, "push failed: {}", push.stderr);

    let instance = Instance::new("outputs");
    let token = format!("tok-{:016x}", rand::random::<u64>());
    let values = mesh.dir.path().join("values.yaml");
    std::fs::write(&values, format!("token: \"{token}\"\n"))?;
    let run = mesh.pmesh(&["run", "outputs", "--on", "pc-1", "--instance", &instance.0, "-f", values.to_str().expect("utf-8")]);
    anyhow::ensure!(run.code == 0, "run failed: {}\n{}", run.stdout, run.stderr);
    let run_id = run_id_in(&run.stdout).unwrap_or_else(|| panic!("no run id in: {}", run.stdout));

    let expected = json!({
        "address": {"type": "ip", "secret": false, "value": "127.0.0.1"},
        "agent": {"type": "string", "secret": false, "value": "pc-1"},
        "endpoint": {"type": "url", "secret": false, "value": "http://127.0.0.1:8053/hello"},
        "port": {"type": "port", "secret": false, "value": 8053},
        "message": {"type": "string", "secret": false, "value": "hello from the container\n"},
        "exports": {"type": "list", "secret": false, "value": ["/srv/a", "/srv/b"]},
        "token": {"type": "string", "secret": true, "value": null},
    });
    let shown = mesh.pmesh(&["runs", "show", &run_id, "-o", "json"]);
    assert_eq!(json_of(&shown)["agents"]["pc-1"]["outputs"], expected, "{}", shown.stdout);
    let shown_text = mesh.pmesh(&["runs", "show", &run_id]);
    assert!(shown_text.stdout.contains("Outputs on pc-1:") && shown_text.stdout.contains("<secret>"), "{}", shown_text.stdout);

    let instance_json = json_of(&mesh.pmesh(&["instances", "show", &instance.0, "-o", "json"]));
    assert_eq!(instance_json["outputs"], expected);
    assert_eq!(
        (&instance_json["agent"], &instance_json["pattern"], &instance_json["state"], &instance_json["last_run"]),
        (&json!("pc-1"), &json!("outputs@1.0.0"), &json!("succeeded"), &json!(run_id))
    );
    let listed = json_of(&mesh.pmesh(&["instances", "ls", "--agent", "pc-1", "-o", "json"]));
    let names: Vec<&str> = listed.as_array().expect("a list").iter().filter_map(|item| item["name"].as_str()).collect();
    assert_eq!(names, [instance.0.as_str()]);
    let other_agent = json_of(&mesh.pmesh(&["instances", "ls", "--agent", "pc-2", "-o", "json"]));
    assert_eq!(other_agent, json!([]));
    let shown_instance = mesh.pmesh(&["instances", "show", &instance.0]);
    assert!(shown_instance.stdout.contains("token     string  <secret>"), "{}", shown_instance.stdout);

    let revealed = json_of(&mesh.pmesh(&["instances", "show", &instance.0, "--reveal", "-o", "json"]));
    assert_eq!(revealed["outputs"]["token"], json!({"type": "string", "secret": true, "value": token}));
    assert_eq!(revealed["outputs"]["port"], expected["port"]);

    let unknown = mesh.pmesh(&["instances", "show", "no-such-instance"]);
    assert_eq!(unknown.code, 1, "an unknown instance is not found: {}", unknown.stderr);
    assert!(unknown.stderr.contains("no instance \"no-such-instance\""), "{}", unknown.stderr);

    // The secret is in no event, no display without --reveal, no master file and no log.
    let watched = mesh.pmesh(&["runs", "watch", &run_id, "-o", "json"]);
    assert!(watched.stdout.contains("run_finished") || watched.stdout.contains("succeeded"), "{}", watched.stdout);
    let mut texts = vec![
        ("pmesh run".to_owned(), format!("{}{}", run.stdout, run.stderr)),
        ("runs watch".to_owned(), watched.stdout),
        ("runs show".to_owned(), shown.stdout),
        ("runs show (text)".to_owned(), shown_text.stdout),
        ("instances show".to_owned(), shown_instance.stdout),
        ("the agent's log".to_owned(), agent.log_text()),
        ("the master's log".to_owned(), master.log_text()),
    ];
    let master_files = files_under(&mesh.master_dir());
    assert!(master_files.iter().any(|(_, text)| text.contains(&instance.0)), "the master's store holds the instance");
    texts.extend(master_files);
    let leaks: Vec<&String> = texts.iter().filter(|(_, text)| text.contains(&token)).map(|(name, _)| name).collect();
    assert!(leaks.is_empty(), "the secret output's value appears in {leaks:?}");
    Ok(())
}

#[test]
fn a_missing_from_file_fails_the_run_naming_the_output() -> anyhow::Result<()> {
    require_tools_image();
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let _agent = mesh.start_agent("pc-1", &[])?;
    let push = mesh.pmesh(&["pattern", "push", pattern().to_str().expect("utf-8")]);
    anyhow::ensure!(push.code == 0, "push failed: {}", push.stderr);
    let instance = Instance::new("outputs-missing");
    let values = mesh.dir.path().join("values.yaml");
    std::fs::write(&values, "token: not-so-secret\nwrite_message: false\n")?;
    let run = mesh.pmesh(&["run", "outputs", "--on", "pc-1", "--instance", &instance.0, "-f", values.to_str().expect("utf-8")]);
    assert_ne!(run.code, 0, "the run fails: {}", run.stdout);
    assert!(
        run.stdout.contains("output `message`: /out/message.txt of step write: no file /out/message.txt in the container"),
        "the failure names the output, the step and the path: {}\n{}",
        run.stdout,
        run.stderr
    );
    let run_id = run_id_in(&run.stdout).unwrap_or_else(|| panic!("no run id in: {}", run.stdout));
    let shown = json_of(&mesh.pmesh(&["runs", "show", &run_id, "-o", "json"]));
    assert_eq!((&shown["agents"]["pc-1"]["state"], &shown["agents"]["pc-1"]["outputs"]), (&json!("failed"), &json!({})));
    let instance_json = json_of(&mesh.pmesh(&["instances", "show", &instance.0, "-o", "json"]));
    assert_eq!((&instance_json["state"], &instance_json["outputs"]), (&json!("failed"), &json!({})));
    Ok(())
}
