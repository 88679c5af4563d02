//! Every kind of command into a closed pipe (`pmesh runs logs ID | head -1`) exits 0 and
//! says nothing: Rust's `println!` panics there by default ("failed printing to stdout:
//! Broken pipe", exit 101).
//!
//! The pipe's reader is closed before the command starts, so its very first line meets the
//! closed pipe, whatever the timing: with `head -1` a short output could fit in the pipe's
//! buffer before `head` exits, and the test would prove nothing.

use std::process::{Command, Stdio};

use pmesh_tests::{bin, run_id_in, Run};

use super::lab::{pattern, pmesh_into, Lab};

/// A pipe whose reader has gone.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    writer.into()
}

fn assert_quiet(what: &str, run: &Run) {
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{what} into a closed pipe");
}

#[test]
fn every_kind_of_command_exits_quietly_into_a_closed_pipe() -> anyhow::Result<()> {
    let lab = Lab::start(&["pc-1"], &["steps"])?;
    let run = lab.mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", "pipes-steps", "-p", "lines=50"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let run_id = run_id_in(&run.stdout).expect("run id printed");

    let cases: &[&[&str]] = &[
        &["runs", "logs", &run_id],
        &["runs", "logs", &run_id, "-o", "json"],
        &["runs", "watch", &run_id],
        &["runs", "watch", &run_id, "-o", "json"],
        &["runs", "show", &run_id],
        &["runs", "ls"],
        &["agents", "ls"],
        &["agents", "show", "pc-1", "-o", "json"],
        &["pattern", "ls"],
        &["instances", "ls"],
        &["ca", "fingerprint"],
    ];
    for args in cases {
        assert_quiet(&args.join(" "), &lab.pmesh_into(args, closed_pipe()));
    }
    // A run followed live (here through a pipe, so one line per event) stops quietly too,
    // and the run goes on: the reader left, as with Ctrl-C.
    let followed = lab.pmesh_into(&["run", "steps", "--on", "pc-1", "--instance", "pipes-steps"], closed_pipe());
    assert_quiet("run", &followed);

    // Commands that need no master, and both binaries' help.
    assert_quiet("pattern show", &pmesh_into(None, &["pattern", "show", &pattern("steps")], closed_pipe()));
    assert_quiet("pmesh --help", &pmesh_into(None, &["--help"], closed_pipe()));
    for shell in ["bash", "zsh", "fish"] {
        assert_quiet("completions", &pmesh_into(None, &["completions", shell], closed_pipe()));
    }
    let agent: Run = Command::new(bin("pmesh-agent")).arg("--help").stdout(closed_pipe()).stderr(Stdio::piped()).output()?.into();
    assert_quiet("pmesh-agent --help", &agent);
    Ok(())
}

#[test]
fn a_closed_stderr_keeps_the_exit_code() -> anyhow::Result<()> {
    // `pattern lint` of a broken pattern ends with its error on stderr and exits 2; with
    // stderr closed it still exits 2 (not a panic's 101).
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("pattern.yaml"), "apiVersion: pmesh/v1\nkind: Nonsense\n")?;
    let output =
        Command::new(bin("pmesh")).args(["pattern", "lint"]).arg(dir.path()).stdout(Stdio::piped()).stderr(closed_pipe()).output()?;
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(!output.stdout.is_empty(), "the problems are still listed");
    Ok(())
}
