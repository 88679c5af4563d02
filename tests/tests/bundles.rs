//! Signed bundles from the master to a real agent process over mTLS: delivered once by
//! digest, and refused when unsigned, tampered with or signed by another key.

use std::sync::Arc;
use std::time::Duration;

use pmesh_master::bundles::{deliver, pack_and_sign, Delivery, SignedBundle};
use pmesh_master::identity::PkiPaths;
use pmesh_proto::identity::{Identity, Role};
use pmesh_tests::Mesh;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[test]
fn bundles_are_delivered_once_and_verified_by_the_agent() -> anyhow::Result<()> {
    pmesh_proto::tls::install_default_provider();
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let port = mesh.enrol("pc-1", &[])?;
    let _agent = mesh.start_agent("pc-1", &[])?;

    let pki = PkiPaths::new(&mesh.master_dir());
    let pattern = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/shared/dns");
    let signed = pack_and_sign(&pattern, &pki)?;
    // The master's own identity dials the agent, as dispatch will.
    let ca = CertificateDer::from_pem_slice(&std::fs::read(pki.ca_cert())?)?;
    let cert = CertificateDer::from_pem_slice(&std::fs::read(pki.master_cert())?)?;
    let key = PrivateKeyDer::from_pem_slice(&std::fs::read(pki.master_key())?)?;
    let tls = Arc::new(pmesh_proto::tls::client_config(&ca, Some((vec![cert], key)))?);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let _entered = runtime.enter();
    let dialled = pmesh_rt::net::dial(&format!("127.0.0.1:{port}"), &Identity::new(Role::Agent, "pc-1")?, tls, Duration::from_secs(10))?;
    let push = |bundle: &SignedBundle| runtime.block_on(deliver(dialled.channel.clone(), bundle));

    assert_eq!(push(&signed).map_err(|status| anyhow::anyhow!("{status}"))?, Delivery::Sent);
    assert_eq!(push(&signed).map_err(|status| anyhow::anyhow!("{status}"))?, Delivery::AlreadyHeld, "a held digest is not sent again");
    let stored = mesh.agent_dir("pc-1").join("bundles").join(format!("{}.tar", signed.digest.trim_start_matches("sha256:")));
    assert_eq!(std::fs::read(&stored)?, signed.archive, "kept by digest");

    let refused = |bundle: SignedBundle, expected: &str| {
        let status = push(&bundle).expect_err("refused");
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(status.message().contains(expected), "{}", status.message());
    };
    let mut tampered = signed.clone();
    let middle = tampered.archive.len() / 2;
    tampered.archive[middle] ^= 0x20;
    tampered.digest = pmesh_proto::bundle::digest(&tampered.archive);
    refused(tampered, "does not verify");
    // A bundle the agent does not hold yet, signed by another mesh's key, then unsigned.
    let other = Mesh::init()?;
    let mut changed = signed;
    changed.archive = pmesh_proto::bundle::pack(&std::collections::BTreeMap::from([(
        "pattern.yaml".to_string(),
        pmesh_proto::bundle::BundleFile { contents: b"other\n".to_vec(), executable: false },
    )]))?;
    changed.digest = pmesh_proto::bundle::digest(&changed.archive);
    changed.signature = pmesh_proto::bundle::sign(&changed.archive, &std::fs::read(PkiPaths::new(&other.master_dir()).bundle_key())?)?;
    refused(changed.clone(), "does not verify");
    changed.signature = Vec::new();
    refused(changed, "not signed");
    Ok(())
}

#[test]
fn a_registered_pattern_is_shown_from_the_master_by_name_and_version() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../patterns/shared/dns");
    let push = mesh.pmesh(&["pattern", "push", dir]);
    assert_eq!(push.code, 0, "{}", push.stderr);
    let from_disk = mesh.pmesh(&["pattern", "show", dir]);
    assert_eq!(from_disk.code, 0, "{}", from_disk.stderr);

    // The newest version by name, then the exact version: the same tables as the directory's,
    // with the registration line after the title.
    for reference in ["dns", "dns@2.0.0"] {
        let shown = mesh.pmesh(&["pattern", "show", reference]);
        assert_eq!(shown.code, 0, "{reference}: {}", shown.stderr);
        let (title, rest) = shown.stdout.split_once('\n').expect("a title");
        let (registered, tables) = rest.split_once('\n').expect("a registration line");
        assert!(registered.starts_with("registered sha256:") && registered.contains(" at 20"), "{registered}");
        assert_eq!(format!("{title}\n{tables}"), from_disk.stdout, "{reference}");
    }
    let json = mesh.pmesh(&["pattern", "show", "dns", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout)?;
    assert_eq!(json["metadata"]["version"], "2.0.0");
    assert!(json["registered"]["digest"].as_str().is_some_and(|digest| digest.starts_with("sha256:")), "{json}");
    assert!(json["outputs"]["zones"].is_object(), "{json}");

    // A version that is not registered names the ones that are, and exits 1.
    let missing = mesh.pmesh(&["pattern", "show", "dns@9.9.9"]);
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(missing.stderr.contains("registered versions of dns: 2.0.0"), "{}", missing.stderr);
    let unknown = mesh.pmesh(&["pattern", "show", "nosuch"]);
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("push it with `pmesh pattern push`"), "{}", unknown.stderr);
    Ok(())
}
