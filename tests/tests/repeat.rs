//! A step repeated over a list, through `pmesh-agent pattern apply` on the real Docker engine
//! (`tests/patterns/repeat`): each repetition is its own step in the output (`deploy[esxi-01]`)
//! with its own `${item}` and `${index}`, at most `parallel: 2` run at once (each counts itself
//! in and out of a shared volume under flock), the step that needs them starts after the last,
//! and a longer list runs only the new repetition.

use std::path::{Path, PathBuf};
use std::process::Command;

use pmesh_tests::docker::{containers_with_label, require_tools_image, Instance};
use pmesh_tests::{bin, Run};

fn pattern() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("patterns/repeat")
}

fn agent(dir: &Path, verb: &str, instance: &str, values: &[&str]) -> Run {
    let mut command = Command::new(bin("pmesh-agent"));
    command.args(["--data-dir", dir.to_str().expect("utf-8"), "pattern", verb, "--instance", instance]);
    for value in values {
        command.args(["-p", value]);
    }
    command.arg(pattern()).output().expect("running pmesh-agent").into()
}

/// The output lines of `step`, without their timestamps.
fn lines_of<'a>(run: &'a Run, step: &str) -> Vec<&'a str> {
    run.stdout.lines().filter_map(|line| line.split_once(' ').map(|(_, rest)| rest)).filter(|rest| rest.starts_with(step)).collect()
}

#[test]
fn a_repeated_step_runs_each_item_as_its_own_step_bounded_and_a_longer_list_adds_one() {
    require_tools_image();
    let dir = tempfile::tempdir().expect("temp dir");
    let instance = Instance::new("repeat");
    let run = agent(dir.path(), "apply", &instance.0, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let hosts = ["esxi-01", "esxi-02", "esxi-03", "esxi-04"];
    for (idx, host) in hosts.iter().enumerate() {
        let step = format!("deploy[{host}]");
        let lines = lines_of(&run, &step);
        assert!(lines.iter().any(|line| line.ends_with("started")), "{step} has its own line: {}", run.stdout);
        assert!(lines.iter().any(|line| line.ends_with("succeeded")), "{step} succeeded: {}", run.stdout);
        let greeting = format!("| host {host} index {} of {}", idx + 1, instance.0);
        assert!(lines.iter().any(|line| line.ends_with(&greeting)), "{step}: ${{item}}, ${{index}}, ${{pmesh_instance}}: {lines:?}");
    }
    let after = lines_of(&run, "after ");
    let summary = after.iter().find_map(|line| line.split_once("| after: ").map(|(_, rest)| rest)).expect("after reports");
    let (done, peak) = summary.split_once(" peak ").expect("done and peak");
    assert_eq!(done.split_whitespace().collect::<Vec<_>>(), hosts, "`after` started once every repetition had finished");
    let peak: usize = peak.trim().parse().expect("a number");
    assert!((1..=2).contains(&peak), "at most two repetitions ran at once, found {peak}");
    let containers = containers_with_label("io.pmesh.instance", &instance.0);
    assert!(containers.iter().any(|name| name.ends_with("-deploy-esxi-03")), "one container per repetition: {containers:?}");

    let longer = agent(dir.path(), "apply", &instance.0, &["hosts=esxi-01,esxi-02,esxi-03,esxi-04,esxi-05"]);
    assert_eq!(longer.code, 0, "{}\n{}", longer.stdout, longer.stderr);
    for host in &hosts[..] {
        let lines = lines_of(&longer, &format!("deploy[{host}]"));
        assert!(lines.iter().any(|line| line.ends_with("unchanged")), "{host} is not run again: {lines:?}");
        assert!(!lines.iter().any(|line| line.contains("| host")), "{host} did not run: {lines:?}");
    }
    let added = lines_of(&longer, "deploy[esxi-05]");
    let greeting = format!("| host esxi-05 index 5 of {}", instance.0);
    assert!(added.iter().any(|line| line.ends_with(&greeting)), "only the new host runs: {added:?}");

    let destroyed = agent(dir.path(), "destroy", &instance.0, &[]);
    assert_eq!(destroyed.code, 0, "{}", destroyed.stderr);
    assert!(containers_with_label("io.pmesh.instance", &instance.0).is_empty());
}
