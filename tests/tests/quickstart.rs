//! The README's main command, `tests/quickstart.sh`, does what the README says: two agents
//! enrolled over mTLS and listed as up, the DNS pattern dispatched to one of them and
//! answering a real `dig`.

use std::process::Command;

#[test]
fn quickstart_lists_two_agents_up() {
    let state = tempfile::tempdir().expect("temp dir");
    let port = pmesh_tests::free_port_block(11);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/quickstart.sh");
    let run = |args: &[&str]| {
        Command::new(script)
            .args(args)
            .env("PMESH_LOCAL", state.path())
            .env("PMESH_PORT", port.to_string())
            // The binaries are built already (tests/run.sh); cargo holds its lock meanwhile.
            .env("PMESH_QUICKSTART_NO_BUILD", "1")
            .output()
            .expect("running quickstart.sh")
    };
    let started = run(&[]);
    let stopped = run(&["stop"]);
    let stdout = String::from_utf8_lossy(&started.stdout);
    assert!(started.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&started.stderr));
    assert!(stopped.status.success());
    let table: Vec<&str> = stdout.lines().skip_while(|line| !line.starts_with("NAME")).take(3).collect();
    assert_eq!(table.len(), 3, "{stdout}");
    for (line, name) in table[1..].iter().zip(["pc-1", "pc-2"]) {
        assert!(line.starts_with(name) && line.contains(" up "), "{line}");
    }
    // The DNS pattern was dispatched to pc-1, shown live, and answers.
    assert!(stdout.contains("pc-1       check-zone     succeeded"), "{stdout}");
    assert!(stdout.contains("pc-1         succeeded"), "{stdout}");
    let answer = stdout.lines().skip_while(|line| !line.starts_with("==> dig")).nth(1);
    assert_eq!(answer, Some("10.0.0.10"), "{stdout}");
}
