//! The trust invariant, from the outside: every call that must be refused is refused, and the
//! CLI says why in one sentence with the documented exit code (5 refused, 4 unreachable).
//! Real master and agent processes, real TLS on loopback.

use std::sync::Arc;
use std::time::Duration;

use pmesh_master::cli::client::{failure, CliError};
use pmesh_master::credentials::Credentials;
use pmesh_proto::identity::{Identity, Role};
use pmesh_proto::v1::{InfoRequest, ListAgentsRequest};
use pmesh_rt::net::dial;
use pmesh_rt::v1::agent_client::AgentClient;
use pmesh_rt::v1::master_client::MasterClient;
use pmesh_tests::{wait_until, Mesh, Run};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

const REFUSED: i32 = 5;

fn runtime() -> tokio::runtime::Runtime {
    pmesh_proto::tls::install_default_provider();
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn admin_credentials(mesh: &Mesh) -> Credentials {
    Credentials::load(&mesh.master_dir().join("admin.credentials")).expect("local admin credential")
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate PEM")
}

/// Calls `ListAgents` on the master with `tls`; returns the CLI's sentence for the refusal.
fn list_agents_with(mesh: &Mesh, tls: rustls::ClientConfig) -> (tonic::Code, CliError) {
    runtime().block_on(async {
        let dialled = dial(&mesh.master_address(), &Identity::master(), Arc::new(tls), Duration::from_secs(5)).expect("channel");
        let status =
            MasterClient::new(dialled.channel.clone()).list_agents(ListAgentsRequest {}).await.expect_err("the call must be refused");
        (status.code(), failure("master", status.clone(), dialled.explain(&status)))
    })
}

fn with_credentials(mesh: &Mesh, credentials: &Credentials, args: &[&str]) -> Run {
    let path = mesh.dir.path().join(format!("cred-{}.toml", credentials.name));
    credentials.save(&path).expect("writing credential");
    let mut full = vec!["--credentials", path.to_str().expect("utf-8")];
    full.extend_from_slice(args);
    mesh.command("pmesh", &full)
}

fn assert_refused(run: &Run, sentence: &str) {
    assert_eq!(run.code, REFUSED, "exit code; stderr: {}", run.stderr);
    assert!(run.stderr.contains(sentence), "expected {sentence:?} in: {}", run.stderr);
    assert_eq!(run.stderr.trim().lines().count(), 1, "one sentence: {}", run.stderr);
    assert!(!run.stderr.contains("transport error"), "no raw transport error: {}", run.stderr);
}

#[test]
fn a_call_without_a_client_certificate_is_refused() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let ca = der(&admin_credentials(&mesh).ca);
    let (code, cli) = list_agents_with(&mesh, pmesh_proto::tls::client_config(&ca, None)?);
    assert_eq!(code, tonic::Code::Unauthenticated);
    assert_eq!(cli.code as i32, REFUSED);
    assert!(cli.message.contains("needs a client certificate from the mesh CA, and none was presented"), "{}", cli.message);
    Ok(())
}

#[test]
fn a_certificate_from_another_ca_is_refused() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let other = Mesh::init()?;
    let _master = mesh.start_master()?;
    // Trusts our CA, presents a certificate from the other mesh's CA.
    let mut mixed = admin_credentials(&other);
    mixed.ca = admin_credentials(&mesh).ca;
    mixed.master = mesh.master_address();
    mixed.name = "mixed".into();
    let run = with_credentials(&mesh, &mixed, &["agents", "ls"]);
    assert_refused(&run, "refused our certificate: it was not issued by this mesh's CA");

    // Wholly the other mesh's credential: the client refuses our master's certificate.
    let mut foreign = admin_credentials(&other);
    foreign.master = mesh.master_address();
    foreign.name = "foreign".into();
    let run = with_credentials(&mesh, &foreign, &["agents", "ls"]);
    assert_refused(&run, "the peer's certificate was not issued by this mesh's CA");
    Ok(())
}

#[test]
fn an_expired_certificate_is_refused() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let pki = mesh.master_dir().join("pki");
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key"))?)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(pki.join("ca.crt"))?, ca_key)?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let identity = Identity::new(Role::Admin, "old")?;
    let mut params = rcgen::CertificateParams::new(vec![identity.dns_name()])?;
    params.subject_alt_names.push(rcgen::SanType::URI(identity.uri().try_into()?));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(2);
    params.not_after = now - time::Duration::hours(1);
    let cert = params.signed_by(&key, &issuer)?;

    // The CLI catches it before dialling.
    let mut expired = admin_credentials(&mesh);
    expired.name = "old".into();
    expired.cert = cert.pem();
    expired.key = key.serialize_pem();
    let run = with_credentials(&mesh, &expired, &["agents", "ls"]);
    assert_refused(&run, "expired at");

    // The master refuses it in the handshake.
    let tls = pmesh_proto::tls::client_config(
        &der(&expired.ca),
        Some((vec![cert.der().clone()], PrivateKeyDer::from_pem_slice(expired.key.as_bytes())?)),
    )?;
    let (_, cli) = list_agents_with(&mesh, tls);
    assert_eq!(cli.code as i32, REFUSED, "{}", cli.message);
    assert!(cli.message.contains("refused our certificate: it has expired"), "{}", cli.message);
    Ok(())
}

#[test]
fn a_revoked_admin_credential_is_refused() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let bob = mesh.dir.path().join("bob.credentials");
    let bob_arg = bob.to_str().expect("utf-8");
    assert_eq!(mesh.pmesh(&["admin", "issue", "bob", "--out", bob_arg]).code, 0);
    let before = mesh.command("pmesh", &["--credentials", bob_arg, "agents", "ls"]);
    assert_eq!(before.code, 0, "bob's credential works before revocation: {}", before.stderr);

    let revoke = mesh.pmesh(&["admin", "revoke", "bob"]);
    assert_eq!(revoke.code, 0, "{}", revoke.stderr);
    let after = mesh.command("pmesh", &["--credentials", bob_arg, "agents", "ls"]);
    assert_refused(&after, "has been revoked");
    // The local admin is untouched.
    assert_eq!(mesh.pmesh(&["agents", "ls"]).code, 0);
    Ok(())
}

#[test]
fn an_agent_certificate_cannot_call_admin_rpcs() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let pem = std::fs::read_to_string(mesh.agent_dir("pc-1").join("identity/agent.pem"))?;
    let mut as_agent = admin_credentials(&mesh);
    as_agent.name = "pc-1".into();
    as_agent.cert = pem.clone();
    as_agent.key = pem;
    let run = with_credentials(&mesh, &as_agent, &["agents", "ls"]);
    assert_refused(&run, "agent pc-1 may not call /pmesh.v1.Master/ListAgents: it needs an admin certificate");
    Ok(())
}

#[test]
fn an_agent_refuses_an_admin_certificate() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let port = mesh.enrol("pc-1", &[])?;
    let _agent = mesh.start_agent("pc-1", &[])?;
    let admin = admin_credentials(&mesh);
    let status = runtime().block_on(async {
        let dialled = dial(
            &format!("127.0.0.1:{port}"),
            &Identity::new(Role::Agent, "pc-1").expect("name"),
            Arc::new(admin.client_config().expect("tls")),
            Duration::from_secs(5),
        )
        .expect("channel");
        AgentClient::new(dialled.channel).info(InfoRequest {}).await.expect_err("refused")
    });
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status.message().contains("admin admin may not call /pmesh.v1.Agent/Info: agents answer only the master"),
        "{}",
        status.message()
    );
    Ok(())
}

#[test]
fn tokens_are_single_use_and_expire() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let (token, fingerprint) = mesh.token(&[])?;
    assert_eq!(mesh.join("pc-1", pmesh_tests::free_port(), &token, &fingerprint).code, 0);
    let reused = mesh.join("pc-2", pmesh_tests::free_port(), &token, &fingerprint);
    assert_refused(&reused, "the join token was already used (by pc-1)");
    assert!(!mesh.agent_dir("pc-2").join("agent.json").exists(), "a refused join writes nothing");

    let run = mesh.pmesh(&["token", "create", "--ttl", "1s", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&run.stdout)?;
    let short = json["token"].as_str().expect("token").to_owned();
    let expires_at = json["expires_at_unix"].as_i64().expect("expiry");
    wait_until("the token's expiry", Duration::from_secs(5), || {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0) > expires_at
    })?;
    let expired = mesh.join("pc-3", pmesh_tests::free_port(), &short, &fingerprint);
    assert_refused(&expired, "the join token expired");
    Ok(())
}

/// A token pinned to a name, used, then presented again for that name: the answer is that the
/// token was used, and by whom, not advice to make a --force token (which would revoke the
/// working agent's certificate).
#[test]
fn a_reused_pinned_token_says_it_was_used_and_by_whom() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let (token, fingerprint) = mesh.token(&["--name", "pc-1"])?;
    assert_eq!(mesh.join("pc-1", pmesh_tests::free_port(), &token, &fingerprint).code, 0);
    std::fs::remove_dir_all(mesh.agent_dir("pc-1"))?;
    let reused = mesh.join("pc-1", pmesh_tests::free_port(), &token, &fingerprint);
    assert_refused(&reused, "the join token was already used (by pc-1)");
    assert!(!reused.stderr.contains("--force"), "{}", reused.stderr);
    Ok(())
}

#[test]
fn re_enrolling_a_name_needs_a_forced_token() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let old_serial = serial(&mesh, "pc-1");
    let (token, fingerprint) = mesh.token(&[])?;
    let other_dir = mesh.dir.path().join("elsewhere");
    let join = |token: &str| {
        mesh.command(
            "pmesh-agent",
            &[
                "join",
                "--data-dir",
                other_dir.to_str().expect("utf-8"),
                "--master",
                &mesh.master_address(),
                "--token",
                token,
                "--ca-fingerprint",
                &fingerprint,
                "--name",
                "pc-1",
                "--advertise",
                "127.0.0.1:1",
            ],
        )
    };
    assert_refused(&join(&token), "agent \"pc-1\" is already enrolled; to re-enrol it, create a token with --force");
    let (forced, _) = mesh.token(&["--force"])?;
    let run = join(&forced);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_ne!(serial(&mesh, "pc-1"), old_serial, "a new certificate replaced the old one");
    Ok(())
}

fn serial(mesh: &Mesh, name: &str) -> String {
    let show = mesh.pmesh(&["agents", "show", name, "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&show.stdout).expect("agents show json");
    json["cert_serial"].as_str().expect("serial").to_owned()
}

#[test]
fn a_wrong_ca_fingerprint_at_join_is_refused() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let other = Mesh::init()?;
    let _master = mesh.start_master()?;
    let (token, _) = mesh.token(&[])?;
    let (_, wrong) = {
        let _other_master = other.start_master()?;
        other.token(&[])?
    };
    let run = mesh.join("pc-1", pmesh_tests::free_port(), &token, &wrong);
    assert_refused(&run, "the master's CA does not match the --ca-fingerprint given");
    assert!(!mesh.agent_dir("pc-1").exists() || !mesh.agent_dir("pc-1").join("agent.json").exists());
    // The token was not spent by the refused attempt.
    let (_, right) = mesh.token(&[])?;
    assert_eq!(mesh.join("pc-1", pmesh_tests::free_port(), &token, &right).code, 0);

    let malformed = mesh.join("pc-2", pmesh_tests::free_port(), &token, "sha256:abc");
    assert_eq!(malformed.code, 2, "{}", malformed.stderr);
    Ok(())
}

/// A client that offers only TLS 1.2, against the master and an agent.
#[test]
fn a_tls12_only_client_is_refused() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let port = mesh.enrol("pc-1", &[])?;
    let _agent = mesh.start_agent("pc-1", &[])?;
    let admin = admin_credentials(&mesh);
    for (address, identity) in
        [(mesh.master_address(), Identity::master()), (format!("127.0.0.1:{port}"), Identity::new(Role::Agent, "pc-1")?)]
    {
        let error = runtime().block_on(handshake_tls12(&address, &identity, &admin));
        let explained = pmesh_proto::tls::explain(&error).expect("a TLS error");
        assert!(explained.trust, "{explained:?}");
        assert!(explained.message.contains("pmesh speaks TLS 1.3 only"), "{}", explained.message);
    }
    Ok(())
}

async fn handshake_tls12(address: &str, identity: &Identity, admin: &Credentials) -> std::io::Error {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&admin.ca)).expect("CA");
    let config = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![der(&admin.cert)], PrivateKeyDer::from_pem_slice(admin.key.as_bytes()).expect("key"))
        .expect("client config");
    let tcp = tokio::net::TcpStream::connect(address).await.expect("tcp");
    let name = rustls_pki_types::ServerName::try_from(identity.dns_name()).expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect_err("TLS 1.2 must be refused")
}

#[test]
fn health_answers_a_mesh_certificate_only() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let admin = admin_credentials(&mesh);
    let check = |tls: rustls::ClientConfig| {
        runtime().block_on(async {
            let dialled = dial(&mesh.master_address(), &Identity::master(), Arc::new(tls), Duration::from_secs(5)).expect("channel");
            tonic_health::pb::health_client::HealthClient::new(dialled.channel)
                .check(tonic_health::pb::HealthCheckRequest { service: "pmesh.v1.Master".into() })
                .await
        })
    };
    let serving = check(admin.client_config()?).map_err(|status| anyhow::anyhow!("{status}"))?;
    assert_eq!(serving.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let refused = check(pmesh_proto::tls::client_config(&der(&admin.ca), None)?).expect_err("no certificate");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    Ok(())
}

/// A peer without a client certificate may only join, and a join is cut off after a few KiB,
/// before the master decodes it: an anonymous 1 MiB message is refused, and the master goes
/// on serving.
#[test]
fn an_anonymous_call_is_cut_off_before_it_is_decoded() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let (token, fingerprint) = mesh.token(&[])?;
    let runtime = runtime();
    let pin = pmesh_proto::identity::parse_fingerprint(&fingerprint)?;
    let tls = Arc::new(pmesh_proto::tls::pinned_client_config(pin)?);
    let _entered = runtime.enter();
    let dialled = dial(&mesh.master_address(), &Identity::master(), tls, Duration::from_secs(10))?;
    let huge = pmesh_proto::v1::JoinRequest { token: "x".repeat(1024 * 1024), ..Default::default() };
    let status = runtime
        .block_on(MasterClient::new(dialled.channel).max_encoding_message_size(64 * 1024 * 1024).join(huge))
        .expect_err("a 1 MiB anonymous join is refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("without a client certificate may send at most 8 KiB"), "{status:?}");
    // The master still serves, and a join of ordinary size works.
    assert_eq!(mesh.join("pc-1", pmesh_tests::free_port(), &token, &fingerprint).code, 0);
    Ok(())
}

/// One address may hold only its share of connections without a client certificate: past
/// pmesh_rt::accept::MAX_ANONYMOUS_PER_PEER, the master closes them right after the handshake,
/// while the ones within the share get the HTTP/2 preface.
#[test]
fn anonymous_connections_from_one_address_are_bounded() -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;

    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let (_, fingerprint) = mesh.token(&[])?;
    let runtime = runtime();
    let pin = pmesh_proto::identity::parse_fingerprint(&fingerprint)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pmesh_proto::tls::pinned_client_config(pin)?));
    let limit = pmesh_rt::accept::MAX_ANONYMOUS_PER_PEER;
    let (served, closed) = runtime.block_on(async {
        let mut streams = Vec::new();
        for _ in 0..limit + 4 {
            let tcp = tokio::net::TcpStream::connect(mesh.master_address()).await?;
            let name = rustls_pki_types::ServerName::try_from(Identity::master().dns_name())?;
            streams.push(connector.connect(name, tcp).await?);
        }
        let (mut served, mut closed) = (0, 0);
        for stream in &mut streams {
            let mut first = [0u8; 64];
            match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut first)).await {
                Ok(Ok(n_read)) if n_read > 0 => served += 1,
                Ok(_) => closed += 1,
                Err(_) => anyhow::bail!("a connection neither got the preface nor was closed"),
            }
        }
        Ok::<_, anyhow::Error>((served, closed))
    })?;
    assert_eq!((served, closed), (limit, 4));
    Ok(())
}
