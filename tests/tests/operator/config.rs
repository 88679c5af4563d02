//! Honest configuration: a `--config` that names no file is an error, not the defaults;
//! each daemon logs the file it read and what differs from the defaults; and the file `ca
//! init` writes says `365d`, as a person would, not humantime's `11months 30days 3h 50m 24s`.

use pmesh_tests::Mesh;

#[test]
fn a_missing_config_file_is_refused_and_the_one_read_is_logged() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let written = std::fs::read_to_string(mesh.master_dir().join("master.toml"))?;
    assert!(written.contains("admin_cert_lifetime = \"365d\""), "{written}");
    assert!(written.contains("token_ttl = \"15m\""), "{written}");

    let missing = mesh.dir.path().join("nonexistent.toml");
    let missing = missing.to_str().expect("utf-8");
    let serve = mesh.pmesh(&["serve", "--config", missing]);
    assert_eq!(serve.code, 2, "{}", serve.stderr);
    assert!(serve.stderr.contains(&format!("--config {missing}: no such file")), "{}", serve.stderr);
    let agent = mesh.command("pmesh-agent", &["run", "--data-dir", mesh.dir.path().to_str().expect("utf-8"), "--config", missing]);
    assert_eq!(agent.code, 2, "{}", agent.stderr);
    assert!(agent.stderr.contains(&format!("--config {missing}: no such file")), "{}", agent.stderr);

    // The harness starts the master with `--check-interval 1s` (the default is 10s).
    let master = mesh.start_master()?;
    let config_path = mesh.master_dir().join("master.toml");
    pmesh_tests::wait_until("the master to log its configuration", std::time::Duration::from_secs(10), || {
        master.log_text().contains("configuration")
    })?;
    let log = master.log_text();
    let line = log.lines().find(|line| line.contains(&config_path.display().to_string())).unwrap_or_default();
    assert!(line.contains("check_interval = \"1s\""), "the file read and the flag that differs: {log}");
    assert!(!line.contains("token_ttl"), "only settings that differ: {line}");

    mesh.enrol("pc-1", &[])?;
    let agent = mesh.start_agent("pc-1", &[])?;
    let log = agent.log_text();
    assert!(log.contains("configuration") && log.contains("agent.toml (absent: defaults)"), "{log}");
    Ok(())
}
