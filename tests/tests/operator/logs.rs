//! Logs: no colour codes in a log file, `--log-format json` on both daemons, and `-v`/`-q`
//! and `RUST_LOG` for the CLI.

use pmesh_tests::Mesh;

/// Every line of a daemon's log is a JSON object with a level and a message.
fn assert_json_lines(what: &str, log: &str) {
    let lines: Vec<&str> = log.lines().filter(|line| !line.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "{what} logged something");
    for line in lines {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("{what}: {err}: {line}"));
        assert!(parsed["level"].is_string() && parsed["fields"]["message"].is_string(), "{what}: {line}");
    }
}

#[test]
fn daemons_log_json_on_request_and_never_colour_into_a_file() -> anyhow::Result<()> {
    let mut mesh = Mesh::init()?;
    let text_master = mesh.start_master()?;
    pmesh_tests::wait_until("the master to log", std::time::Duration::from_secs(10), || text_master.log_text().contains("configuration"))?;
    assert!(!text_master.log_text().contains('\u{1b}'), "no escape codes in a log file: {:?}", text_master.log_text());
    drop(text_master);

    mesh.extra_serve_args = vec!["--log-format".into(), "json".into()];
    let master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let agent = mesh.start_agent("pc-1", &["--log-format", "json"])?;
    pmesh_tests::wait_until("pc-1 up", std::time::Duration::from_secs(30), || mesh.status("pc-1").as_deref() == Some("up"))?;
    assert_json_lines("the master", &master.log_text());
    assert_json_lines("the agent", &agent.log_text());
    assert!(master.log_text().contains("\"non_default\""), "the configuration as fields: {}", master.log_text());

    // The CLI: warnings only by default, more with -v, RUST_LOG over both, nothing with -qq.
    let quiet = mesh.pmesh(&["agents", "ls"]);
    assert_eq!((quiet.code, quiet.stderr.as_str()), (0, ""));
    let verbose = mesh.pmesh(&["-v", "agents", "ls"]);
    assert!(verbose.stderr.contains("connecting") && verbose.stderr.contains("admin.credentials"), "{}", verbose.stderr);
    assert!(!verbose.stderr.contains('\u{1b}'), "no colour into a pipe: {:?}", verbose.stderr);
    let rust_log = std::process::Command::new(pmesh_tests::bin("pmesh"))
        .args(["--data-dir", mesh.master_dir().to_str().expect("utf-8"), "agents", "ls"])
        .env("RUST_LOG", "info")
        .output()?;
    assert!(String::from_utf8_lossy(&rust_log.stderr).contains("connecting"), "RUST_LOG turns logging on");
    let silent = mesh.pmesh(&["-qq", "agents", "show", "nope"]);
    assert_eq!(silent.code, 1, "-q changes logging, not the outcome: {}", silent.stderr);
    Ok(())
}
