//! The mesh with real processes, real TLS and real sled on loopback: enrolment, the registry's
//! heartbeat, restarts, renewal and the files' modes.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use pmesh_tests::{wait_until, Mesh};
use rustls_pki_types::pem::PemObject;

const UP_TIMEOUT: Duration = Duration::from_secs(15);

#[test]
fn two_agents_enrol_and_are_listed_up_with_facts() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &["--label", "site=lab", "--label", "tier=dns"])?;
    mesh.enrol("pc-2", &[])?;
    let _agent1 = mesh.start_agent("pc-1", &[])?;
    let _agent2 = mesh.start_agent("pc-2", &[])?;
    wait_until("both agents up", UP_TIMEOUT, || {
        mesh.status("pc-1").as_deref() == Some("up") && mesh.status("pc-2").as_deref() == Some("up")
    })?;

    let agents = mesh.agents()?;
    let pc1 = agents.iter().find(|agent| agent["name"] == "pc-1").expect("pc-1 listed");
    assert_eq!(pc1["labels"]["site"], "lab");
    assert_eq!(pc1["labels"]["tier"], "dns");
    assert!(pc1["cpus"].as_u64().unwrap_or(0) >= 1, "{pc1}");
    assert!(pc1["memory_bytes"].as_u64().unwrap_or(0) > 0, "{pc1}");
    assert!(pc1["disk_free_bytes"].as_u64().unwrap_or(0) > 0, "{pc1}");
    assert!(!pc1["os"].as_str().unwrap_or_default().is_empty(), "{pc1}");
    assert_eq!(pc1["agent_version"], env!("CARGO_PKG_VERSION"));
    // The CI machine runs a Docker engine; the agent must have reached it.
    assert_eq!(pc1["docker_reachable"], true, "{pc1}");

    let table = mesh.pmesh(&["agents", "ls"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    for column in ["NAME", "ADDRESS", "STATUS", "LABELS", "OS", "DOCKER", "AGENT", "LAST SEEN"] {
        assert!(table.stdout.contains(column), "{}", table.stdout);
    }
    let show = mesh.pmesh(&["agents", "show", "pc-1"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(show.stdout.contains("site=lab") && show.stdout.contains("Status:") && show.stdout.contains("up"));
    Ok(())
}

#[test]
fn a_stopped_agent_goes_down_and_comes_back_up() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let mut agent = mesh.start_agent("pc-1", &[])?;
    wait_until("pc-1 up", UP_TIMEOUT, || mesh.status("pc-1").as_deref() == Some("up"))?;

    agent.kill();
    // One check interval is 1 s; allow scheduling slack on a loaded 2-core machine.
    wait_until("pc-1 down within a check interval", Duration::from_secs(4), || mesh.status("pc-1").as_deref() == Some("down"))?;
    let show = mesh.pmesh(&["agents", "show", "pc-1", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&show.stdout)?;
    assert!(json["last_error"].as_str().unwrap_or_default().contains("refused"), "{json}");

    let _agent = mesh.start_agent("pc-1", &[])?;
    wait_until("pc-1 up again", UP_TIMEOUT, || mesh.status("pc-1").as_deref() == Some("up"))?;
    Ok(())
}

#[test]
fn the_registry_survives_a_master_restart() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let mut master = mesh.start_master()?;
    mesh.enrol("pc-1", &["--label", "site=a"])?;
    mesh.enrol("pc-2", &[])?;
    let before: Vec<String> = mesh.agents()?.iter().map(|agent| agent["name"].to_string()).collect();

    let status = master.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}\n{}", master.log_text());
    assert!(master.log_text().contains("master stopped"), "{}", master.log_text());
    let _master = mesh.start_master()?;
    let after = mesh.agents()?;
    let names: Vec<String> = after.iter().map(|agent| agent["name"].to_string()).collect();
    assert_eq!(names, before);
    assert_eq!(after[0]["labels"]["site"], "a");
    Ok(())
}

#[test]
fn an_agent_renews_its_certificate_before_expiry() -> anyhow::Result<()> {
    let mut mesh = Mesh::init()?;
    // A 9 s lifetime: renewal is due after 6 s.
    mesh.extra_serve_args = vec!["--agent-cert-lifetime".into(), "9s".into()];
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let serial = |mesh: &Mesh| -> Option<String> {
        let show = mesh.pmesh(&["agents", "show", "pc-1", "-o", "json"]);
        let json: serde_json::Value = serde_json::from_str(&show.stdout).ok()?;
        json["cert_serial"].as_str().map(str::to_owned)
    };
    let first = serial(&mesh).expect("serial recorded at join");
    let pem_before = std::fs::read_to_string(mesh.agent_dir("pc-1").join("identity/agent.pem"))?;
    let agent = mesh.start_agent("pc-1", &["--renew-check-interval", "1s"])?;
    wait_until("a renewed certificate", Duration::from_secs(20), || serial(&mesh).is_some_and(|now| now != first))
        .map_err(|err| anyhow::anyhow!("{err}\n{}", agent.log_text()))?;
    let pem_after = std::fs::read_to_string(mesh.agent_dir("pc-1").join("identity/agent.pem"))?;
    assert_ne!(pem_before, pem_after, "the new certificate and key are on disk");
    // Past the first certificate's expiry, the master still reaches the agent: it serves the
    // renewed certificate without a restart.
    wait_until("the agent up after the first certificate expired", Duration::from_secs(20), || {
        let show = mesh.pmesh(&["agents", "show", "pc-1", "-o", "json"]);
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&show.stdout) else { return false };
        let last_seen = json["last_seen_unix"].as_i64().unwrap_or(0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        json["status"] == "up" && last_seen >= now - 1 && json["enrolled_at_unix"].as_i64().unwrap_or(0) + 10 < now
    })
    .map_err(|err| anyhow::anyhow!("{err}\n{}", agent.log_text()))?;
    assert!(agent.log_text().contains("certificate renewed"), "{}", agent.log_text());
    Ok(())
}

#[test]
fn key_files_are_private() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let issued = mesh.dir.path().join("bob.credentials");
    let run = mesh.pmesh(&["admin", "issue", "bob", "--out", issued.to_str().expect("utf-8")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let master = mesh.master_dir();
    for private in [
        master.join("pki/ca.key"),
        master.join("pki/master.key"),
        master.join("pki/bundle-signing.key"),
        master.join("admin.credentials"),
        mesh.agent_dir("pc-1").join("identity/agent.pem"),
        issued,
    ] {
        let mode = std::fs::metadata(&private)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", private.display());
    }
    let ca = std::fs::metadata(master.join("pki/ca.crt"))?.permissions().mode() & 0o777;
    assert_eq!(ca, 0o644);
    Ok(())
}

#[test]
fn ca_init_refuses_to_overwrite_a_mesh() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let before = std::fs::read(mesh.master_dir().join("pki/ca.key"))?;
    let run = mesh.pmesh(&["ca", "init", "--listen", "127.0.0.1:1"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert_eq!(std::fs::read(mesh.master_dir().join("pki/ca.key"))?, before, "nothing changed");
    Ok(())
}

#[test]
fn removing_an_agent_revokes_its_certificate() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    mesh.enrol("pc-2", &[])?;
    let pem = std::fs::read_to_string(mesh.agent_dir("pc-1").join("identity/agent.pem"))?;

    let removed = mesh.pmesh(&["agents", "rm", "pc-1"]);
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    assert!(removed.stdout.contains("revoked 1 certificate"), "{}", removed.stdout);
    let names: Vec<String> = mesh.agents()?.iter().map(|agent| agent["name"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(names, ["pc-2"]);
    let again = mesh.pmesh(&["agents", "rm", "pc-1"]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(again.stderr.contains("no agent named \"pc-1\""), "{}", again.stderr);

    // The removed agent's certificate no longer renews.
    pmesh_proto::tls::install_default_provider();
    let credentials = pmesh_master::credentials::Credentials::load(&mesh.master_dir().join("admin.credentials"))?;
    let ca = rustls_pki_types::CertificateDer::from_pem_slice(credentials.ca.as_bytes())?;
    let cert = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes())?;
    let tls = std::sync::Arc::new(pmesh_proto::tls::client_config(&ca, Some((vec![cert], key)))?);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let status = runtime.block_on(async {
        let dialled = pmesh_rt::net::dial(&mesh.master_address(), &pmesh_proto::identity::Identity::master(), tls, Duration::from_secs(5))
            .expect("channel");
        pmesh_rt::v1::master_client::MasterClient::new(dialled.channel)
            .renew(pmesh_proto::v1::RenewRequest { csr_pem: String::new() })
            .await
            .expect_err("a removed agent cannot renew")
    });
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().contains("has been revoked"), "{}", status.message());
    Ok(())
}
