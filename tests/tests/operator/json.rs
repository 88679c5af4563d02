//! One JSON contract, as far as it goes today: event kinds as lowercase names with an RFC 3339
//! time, `ca fingerprint -o json`, and `runs ls` newest first with its filters and `--no-headers`.

use pmesh_tests::docker::Instance;
use pmesh_tests::run_id_in;

use super::lab::Lab;

fn run_ids(lab: &Lab, args: &[&str]) -> Vec<String> {
    let listed = lab.mesh.pmesh(&[&["runs", "ls", "-o", "json"], args].concat());
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let runs: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).expect("runs ls -o json is JSON");
    runs.iter().map(|run| run["run_id"].as_str().unwrap_or_default().to_owned()).collect()
}

#[test]
fn kinds_are_lowercase_and_runs_list_newest_first_with_filters() -> anyhow::Result<()> {
    let lab = Lab::start(&["pc-1"], &["steps"])?;
    let instance = Instance::new("json");
    let mut started = Vec::new();
    for _ in 0..2 {
        let run = lab.mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0, "-p", "lines=1"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        started.push(run_id_in(&run.stdout).expect("run id printed"));
    }

    let watch = lab.mesh.pmesh(&["runs", "watch", &started[0], "-o", "json"]);
    let events: Vec<serde_json::Value> = watch.stdout.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let kinds: Vec<&str> = events.iter().filter_map(|event| event["kind"].as_str()).collect();
    assert!(kinds.contains(&"run_started") && kinds.contains(&"step_succeeded") && kinds.contains(&"log"), "{kinds:?}");
    let rfc3339 = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")?;
    assert!(events.iter().all(|event| rfc3339.is_match(event["at"].as_str().unwrap_or_default())), "{events:?}");

    let fingerprint = lab.mesh.pmesh(&["ca", "fingerprint", "-o", "json"]);
    let fingerprint: serde_json::Value = serde_json::from_str(&fingerprint.stdout)?;
    assert!(fingerprint["ca_fingerprint"].as_str().is_some_and(|text| text.starts_with("sha256:")), "{fingerprint}");

    let newest_first: Vec<String> = started.iter().rev().cloned().collect();
    assert_eq!(run_ids(&lab, &[]), newest_first);
    assert_eq!(run_ids(&lab, &["--state", "succeeded", "--pattern", "steps", "--agent", "pc-1", "--since", "1h"]), newest_first);
    assert!(run_ids(&lab, &["--state", "failed"]).is_empty());
    assert!(run_ids(&lab, &["--pattern", "dns"]).is_empty());
    assert!(run_ids(&lab, &["--agent", "pc-2"]).is_empty());

    // --no-headers: the rows alone, for cut and awk.
    let rows = lab.mesh.pmesh(&["runs", "ls", "--no-headers"]);
    let first: Vec<&str> = rows.stdout.lines().map(|line| line.split_whitespace().next().unwrap_or_default()).collect();
    assert_eq!(first, newest_first, "{}", rows.stdout);
    Ok(())
}
