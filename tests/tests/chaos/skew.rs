//! An agent whose clock is off by more than the master's `clock_skew` (300 s by default),
//! started with Debian's libfaketime preloaded (ahead: see the second test). Behind by ten minutes, it refuses the
//! master's certificate as not yet valid: the agent's log says so, and the master records
//! that a clock is wrong (not that its certificate expired, as the same TLS alert would
//! suggest). The other agent stays up meanwhile, and with its clock right again the agent is
//! up again.

use std::time::Duration;

use pmesh_tests::{wait_until, Mesh};

/// libfaketime's multi-threaded library, preloaded with `env` so that the agent keeps its own
/// process id (the `faketime` wrapper forks, and killing it would leave the agent running).
fn libfaketime() -> String {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("faketime/libfaketimeMT.so.1"))
        .find(|path| path.exists());
    let path = found.expect("libfaketime is missing: install Debian's faketime package (.ci/run does)");
    path.to_str().expect("utf-8 library path").to_owned()
}

fn last_error(mesh: &Mesh, name: &str) -> String {
    let shown = mesh.pmesh(&["agents", "show", name, "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap_or_default();
    json["last_error"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn an_agent_whose_clock_is_behind_is_refused_clearly_and_nothing_else_breaks() -> anyhow::Result<()> {
    let preload = format!("LD_PRELOAD={}", libfaketime());
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    mesh.enrol("pc-2", &[])?;
    let _steady = mesh.start_agent("pc-2", &[])?;
    let behind = mesh.start_agent_wrapped("pc-1", &["env", &preload, "FAKETIME=-10m"])?;

    let result =
        wait_until("the master to record why pc-1 refuses it", Duration::from_secs(30), || last_error(&mesh, "pc-1").contains("clock"));
    let error = last_error(&mesh, "pc-1");
    result.map_err(|err| anyhow::anyhow!("{err}: last_error {error:?}"))?;
    assert!(error.contains("the peer's clock is wrong"), "{error}");
    assert_eq!(mesh.status("pc-1").as_deref(), Some("down"));
    wait_until("the agent to log the refusal", Duration::from_secs(10), || behind.log_text().contains("certificate not valid yet"))
        .map_err(|err| anyhow::anyhow!("{err}: {}", behind.log_text()))?;
    assert_eq!(mesh.status("pc-2").as_deref(), Some("up"), "the other agent is not affected");

    drop(behind);
    let _right = mesh.start_agent("pc-1", &[])?;
    wait_until("pc-1 to be up with its clock right", Duration::from_secs(30), || mesh.status("pc-1").as_deref() == Some("up"))
        .map_err(|err| anyhow::anyhow!("{err}: last_error {:?}; agent log {}", last_error(&mesh, "pc-1"), _right.log_text()))?;
    Ok(())
}

/// Ahead: by ten minutes (more than `clock_skew`, which only moves not-before back for clocks
/// behind), nothing is refused and the agent stays up; by more than the certificates'
/// lifetimes (400 days), the agent refuses the master's certificate as expired, and the master
/// records that the agent's clock is the wrong one, not its own certificate. With its clock
/// right again the agent is up again.
#[test]
fn an_agent_whose_clock_is_ahead_is_named_as_the_wrong_clock() -> anyhow::Result<()> {
    let preload = format!("LD_PRELOAD={}", libfaketime());
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let ahead = mesh.start_agent_wrapped("pc-1", &["env", &preload, "FAKETIME=+10m"])?;
    wait_until("pc-1 to be up ten minutes ahead", Duration::from_secs(30), || mesh.status("pc-1").as_deref() == Some("up"))
        .map_err(|err| anyhow::anyhow!("{err}: last_error {:?}; agent log {}", last_error(&mesh, "pc-1"), ahead.log_text()))?;
    drop(ahead);

    let far = mesh.start_agent_wrapped("pc-1", &["env", &preload, "FAKETIME=+400d"])?;
    let result =
        wait_until("the master to record why pc-1 refuses it", Duration::from_secs(30), || last_error(&mesh, "pc-1").contains("clock"));
    let error = last_error(&mesh, "pc-1");
    result.map_err(|err| anyhow::anyhow!("{err}: last_error {error:?}; agent log {}", far.log_text()))?;
    assert!(error.contains("by this host's clock it is valid") && error.contains("the peer's clock is wrong"), "{error}");
    wait_until("pc-1 to be down", Duration::from_secs(30), || mesh.status("pc-1").as_deref() == Some("down"))?;
    wait_until("the agent to log the master's certificate as expired by its clock", Duration::from_secs(30), || {
        far.log_text().contains("this host's clock says 2028") || far.log_text().contains("this host's clock says 2029")
    })
    .map_err(|err| anyhow::anyhow!("{err}: {}", far.log_text()))?;

    drop(far);
    let right = mesh.start_agent("pc-1", &[])?;
    wait_until("pc-1 to be up with its clock right", Duration::from_secs(30), || mesh.status("pc-1").as_deref() == Some("up"))
        .map_err(|err| anyhow::anyhow!("{err}: last_error {:?}; agent log {}", last_error(&mesh, "pc-1"), right.log_text()))?;
    Ok(())
}
