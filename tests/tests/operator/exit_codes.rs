//! The README's exit codes, one row per documented case, run against a real mesh: the same
//! case exits the same way in every command (an unknown agent is 1 in `run` as in `agents
//! show`), and a name that matches nothing suggests the closest one.

use std::net::TcpListener;

use pmesh_tests::docker::Instance;
use pmesh_tests::{free_port, run_id_in, Run};

use super::lab::Lab;

/// One documented case: the command, its exit code, and what its stderr must say.
struct Case<'a> {
    what: &'a str,
    args: Vec<String>,
    code: i32,
    says: &'a str,
}

fn case<'a>(what: &'a str, args: &[&str], code: i32, says: &'a str) -> Case<'a> {
    Case { what, args: args.iter().map(|arg| (*arg).to_owned()).collect(), code, says }
}

fn check(lab: &Lab, cases: &[Case<'_>]) {
    let mut wrong = Vec::new();
    for case in cases {
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let run: Run = lab.mesh.pmesh(&args);
        if run.code != case.code || !run.stderr.contains(case.says) {
            wrong.push(format!(
                "{}: `pmesh {}` exited {} (want {}) saying {:?} (want {:?})",
                case.what,
                args.join(" "),
                run.code,
                case.code,
                run.stderr.trim(),
                case.says
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_documented_case_exits_with_its_code() -> anyhow::Result<()> {
    let mut lab = Lab::start(&["pc-1"], &["steps", "listener"])?;
    let instance = Instance::new("codes");
    let ran = lab.mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0, "-p", "lines=1"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let run_id = run_id_in(&ran.stdout).expect("run id printed");
    let port = free_port();
    let _held = TcpListener::bind(("0.0.0.0", port))?;
    let clash = format!("port={port}");
    let missing = lab.mesh.dir.path().join("no-such.credentials");
    let empty_dir = tempfile::tempdir()?;
    let bad_pattern = tempfile::tempdir()?;
    std::fs::write(bad_pattern.path().join("pattern.yaml"), "apiVersion: pmesh/v1\nkind: Nonsense\n")?;

    check(
        &lab,
        &[
            case("success", &["agents", "ls"], 0, ""),
            // 1: not found, the same sentence wherever the name is used.
            case("unknown agent (agents show)", &["agents", "show", "pc1"], 1, "no agent named \"pc1\"; did you mean \"pc-1\"?"),
            case("unknown agent (agents rm)", &["agents", "rm", "pc1"], 1, "no agent named \"pc1\"; did you mean \"pc-1\"?"),
            case("unknown agent (run)", &["run", "steps", "--on", "pc1"], 1, "no agent named \"pc1\"; did you mean \"pc-1\"?"),
            case("unknown agent (plan)", &["run", "steps", "--on", "pc1", "--plan"], 1, "no agent named \"pc1\"; did you mean \"pc-1\"?"),
            case("unknown pattern", &["run", "stpes", "--on", "pc-1"], 1, "no pattern \"stpes\" is registered; did you mean \"steps\"?"),
            case(
                "unknown version",
                &["run", "steps@1.0.1", "--on", "pc-1"],
                1,
                "pattern steps has no version \"1.0.1\" (registered: 1.0.0)",
            ),
            case("unknown run", &["runs", "show", "r1-nope"], 1, "no run \"r1-nope\""),
            case("unknown step", &["runs", "logs", &run_id, "--step", "frist"], 1, "has no step \"frist\"; did you mean \"first\"?"),
            case("unknown instance", &["instances", "show", "no-such-instance"], 1, "no-such-instance"),
            // 1: a run that failed on some agent.
            case("run failed", &["run", "listener", "--on", "pc-1", "--instance", &instance.0, "-p", &clash], 1, "did not succeed"),
            // 2: usage or validation; nothing changed.
            case("unknown flag", &["agents", "ls", "--bogus"], 2, "--bogus"),
            case("invalid value", &["run", "steps", "--on", "pc-1", "-p", "lines=0"], 2, "lines"),
            case("invalid pattern", &["pattern", "lint", bad_pattern.path().to_str().expect("utf-8")], 2, "problem"),
            // 5: refused, here a credential that is not there.
            case("missing credential file", &["--credentials", missing.to_str().expect("utf-8"), "agents", "ls"], 5, "no-such.credentials"),
        ],
    );
    // A data directory without a credential (not through Mesh::pmesh, which sets its own).
    let no_credential: Run = std::process::Command::new(pmesh_tests::bin("pmesh"))
        .args(["--data-dir", empty_dir.path().to_str().expect("utf-8"), "agents", "ls"])
        .env_remove("PMESH_HOME")
        .env_remove("PMESH_CREDENTIALS")
        .output()?
        .into();
    assert_eq!(no_credential.code, 5, "no credential in the data directory: {}", no_credential.stderr);

    // 3: a run cancelled.
    let slow = lab.mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0, "-p", "pause=30", "-p", "lines=2", "--detach"]);
    let slow_id = run_id_in(&slow.stdout).expect("run id printed");
    let cancel = lab.mesh.pmesh(&["runs", "cancel", &slow_id]);
    assert_eq!(cancel.code, 0, "{}", cancel.stderr);
    check(&lab, &[case("run cancelled", &["runs", "watch", &slow_id], 3, "")]);

    // 4: the master is not there.
    lab.stop_master();
    check(&lab, &[case("master stopped", &["agents", "ls"], 4, "cannot reach master")]);
    Ok(())
}
