//! A step that fails explains itself everywhere the operator looks: the host port a service
//! publishes is already held (by this test), which is how such runs fail in labs.
//!
//! `--plan` reports the step as blocked, from the agent's own check; the run ends with a
//! summary naming the step, the agent, Docker's reason and the command to see more; `runs
//! show` (text and JSON) and `runs logs` carry the error; on a terminal the failed step is a
//! red ✗, the skipped one has its own mark, and the reason wraps to the terminal's width.

use std::net::TcpListener;

use pmesh_tests::docker::Instance;
use pmesh_tests::{free_port, run_id_in};

use super::lab::{on_terminal, Lab};

#[test]
fn a_port_clash_is_blocked_in_the_plan_and_explained_after_the_run() -> anyhow::Result<()> {
    let lab = Lab::start(&["pc-1"], &["listener"])?;
    let port = free_port();
    let _held = TcpListener::bind(("0.0.0.0", port))?;
    let port_param = format!("port={port}");
    let instance = Instance::new("clash");
    let args = ["run", "listener", "--on", "pc-1", "--instance", &instance.0, "-p", &port_param];

    let plan = lab.mesh.pmesh(&[&args[..], &["--plan"]].concat());
    assert_eq!(plan.code, 1, "a plan that would fail exits 1: {}\n{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains(&format!("host port {port}/tcp already taken on this agent")), "{}", plan.stdout);
    let json = lab.mesh.pmesh(&[&args[..], &["--plan", "-o", "json"]].concat());
    let json: serde_json::Value = serde_json::from_str(&json.stdout)?;
    let actions = json["pc-1"]["actions"].as_array().cloned().unwrap_or_default();
    let listener = actions.iter().find(|action| action["name"] == "listener").expect("the listener step is planned");
    assert_eq!(listener["action"], "blocked", "{json:#}");

    let run = lab.mesh.pmesh(&args);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let run_id = run_id_in(&run.stdout).expect("run id printed");
    let summary = run.stdout.split_once(&format!("run {run_id} failed on pc-1:")).map(|(_, rest)| rest).unwrap_or_default();
    assert!(summary.contains("✗ pc-1 step listener: "), "the summary names the step and the agent: {}", run.stdout);
    assert!(summary.contains("address already in use"), "and Docker's reason: {}", run.stdout);
    assert!(summary.contains(&format!("more: pmesh runs logs {run_id} --step listener")), "and what to run next: {}", run.stdout);
    assert!(run.stdout.contains("after          skipped"), "the step after it is skipped: {}", run.stdout);

    let shown = lab.mesh.pmesh(&["runs", "show", &run_id, "-o", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout)?;
    let error = shown["agents"]["pc-1"]["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.starts_with("step listener: ") && error.contains("address already in use"), "{shown:#}");
    let text = lab.mesh.pmesh(&["runs", "show", &run_id]);
    assert!(text.stdout.lines().any(|line| line.starts_with("pc-1") && line.contains("step listener: ")), "{}", text.stdout);

    let logs = lab.mesh.pmesh(&["runs", "logs", &run_id]);
    assert!(logs.stdout.lines().any(|line| line.contains("listener") && line.contains("✗ failed: ")), "{}", logs.stdout);
    let logs = lab.mesh.pmesh(&["runs", "logs", &run_id, "-o", "json"]);
    let failed: Vec<serde_json::Value> = logs.stdout.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    assert!(failed.iter().any(|line| line["kind"] == "step_failed" && line["step"] == "listener"), "{}", logs.stdout);

    // On a 60-column terminal: marks, colour, and the reason wrapped rather than cut.
    let command = format!("{} --data-dir {} {}", pmesh_tests::bin("pmesh").display(), lab.mesh.master_dir().display(), args.join(" "));
    let (screen, escaped, code) = on_terminal(&command, 60);
    assert_eq!(code, 1, "{screen}");
    assert!(escaped.contains("\u{1b}[31m") && screen.contains("✗"), "a red ✗: {escaped:?}");
    assert!(!screen.contains("✓ FAILED"), "a failed step is not ticked: {screen}");
    assert!(screen.contains("pc-1 after               ○"), "the skipped step has its own mark: {screen}");
    // The summary, from its first line to its `more:` line. A bar is drawn right after that
    // last line, and fills the width: tmux's -J joins the two, so the line is cut there.
    let more = format!("more: pmesh runs logs {} --step listener", run_id_in(&screen).unwrap_or_default());
    let mut block: Vec<&str> = screen.lines().skip_while(|line| !line.contains("failed on pc-1:")).collect();
    let last = block.iter().position(|line| line.contains(&more)).expect("the summary ends with what to run next");
    block.truncate(last + 1);
    let end = block[last].find(&more).map_or(0, |at| at + more.len());
    block[last] = &block[last][..end];
    assert!(block.len() > 3, "the summary wraps over several lines: {screen}");
    assert!(block.iter().all(|line| line.trim_end().chars().count() <= 60), "no line is wider than the terminal: {screen}");
    let words = block.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("bind: address already in use"), "the whole reason is there: {screen}");
    Ok(())
}
