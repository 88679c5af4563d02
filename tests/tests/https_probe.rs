//! `wait` probes over HTTPS, through `pmesh-agent pattern apply` against a real TLS server on
//! loopback (`pmesh_tests::tls`): pinned to the server certificate's thumbprint, with basic
//! auth from a secret param and a JSON condition, the probe succeeds once the server answers
//! `STABLE` (after two `DEGRADED` answers), sending the right credentials every time; another
//! server's thumbprint is refused in the handshake (no request reaches the server); a wrong
//! password is a 401 that fails the step; a CA pin accepts the server its CA signed and
//! refuses one another CA signed, from PEM text or from a file (a missing file said so).

use std::path::{Path, PathBuf};
use std::process::Command;

use pmesh_tests::docker::Instance;
use pmesh_tests::tls::{basic, Seen, TlsServer};
use pmesh_tests::{bin, Run};

const PASSWORD: &str = "Nsx-Probe-Secret-81";

fn pattern(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("patterns").join(name)
}

/// `pmesh-agent pattern apply` of `name` with `values` in a values file (the password stays
/// off the command line).
fn apply(dir: &Path, name: &str, instance: &Instance, values: &str) -> Run {
    let values_file = dir.join(format!("{}.yaml", instance.0));
    std::fs::write(&values_file, values).expect("values file");
    Command::new(bin("pmesh-agent"))
        .args(["--data-dir", dir.join("agent").to_str().expect("utf-8"), "pattern", "apply", "--instance", &instance.0])
        .args(["-f", values_file.to_str().expect("utf-8")])
        .arg(pattern(name))
        .output()
        .expect("running pmesh-agent")
        .into()
}

fn all_output(run: &Run) -> String {
    format!("{}\n{}", run.stdout, run.stderr)
}

/// NSX-like: 401 without the right credentials, DEGRADED for the first two answers, then STABLE.
fn nsx() -> TlsServer {
    let expected = basic("admin", PASSWORD);
    TlsServer::start(move |index, request: &Seen| {
        if request.authorization.as_deref() != Some(expected.as_str()) {
            return (401, r#"{"error_message": "not authenticated"}"#.into());
        }
        let status = if index < 2 { "DEGRADED" } else { "STABLE" };
        (200, format!(r#"{{"mgmt_cluster_status": {{"status": "{status}"}}, "control_cluster_status": {{"status": "STABLE"}}}}"#))
    })
}

fn values(server: &TlsServer, thumbprint: &str, password: &str) -> String {
    format!("url: \"{}\"\nthumbprint: \"{thumbprint}\"\npassword: \"{password}\"\n", server.url("/api/v1/cluster/status"))
}

#[test]
fn a_pinned_probe_waits_for_stable_and_refuses_another_certificate_or_a_wrong_password() {
    let dir = tempfile::tempdir().expect("temp dir");

    let server = nsx();
    let instance = Instance::new("https-tp");
    let run = apply(dir.path(), "https-thumbprint", &instance, &values(&server, &server.thumbprint, PASSWORD));
    assert_eq!(run.code, 0, "the pinned probe succeeds: {}", all_output(&run));
    let requests = server.requests();
    assert!(requests.len() >= 3, "it waited through the DEGRADED answers: {requests:?}");
    assert!(requests.iter().all(|request| request.path == "/api/v1/cluster/status"), "{requests:?}");
    assert!(requests.iter().all(|request| request.authorization == Some(basic("admin", PASSWORD))), "basic auth every time");
    assert!(!all_output(&run).contains(PASSWORD), "the password shows in no output");

    // Another server's certificate: the handshake fails, so no request (nor credential) is sent.
    let other = nsx();
    let impostor = nsx();
    let instance = Instance::new("https-wrong");
    let run = apply(dir.path(), "https-thumbprint", &instance, &values(&impostor, &other.thumbprint, PASSWORD));
    assert_ne!(run.code, 0, "a wrong thumbprint fails the step: {}", all_output(&run));
    assert!(all_output(&run).contains(&format!("not the pinned {}", other.thumbprint)), "{}", all_output(&run));
    assert!(all_output(&run).contains(&impostor.thumbprint), "the refusal names what was presented: {}", all_output(&run));
    assert!(impostor.requests().is_empty(), "nothing was sent to the impostor: {:?}", impostor.requests());

    // The right certificate, a wrong password: 401 until the deadline.
    let instance = Instance::new("https-401");
    let run = apply(dir.path(), "https-thumbprint", &instance, &values(&other, &other.thumbprint, "not-the-password"));
    assert_ne!(run.code, 0, "a wrong password fails the step: {}", all_output(&run));
    assert!(all_output(&run).contains("answered 401, expected 200"), "{}", all_output(&run));
    assert!(!all_output(&run).contains("not-the-password"), "the password shows in no output");
}

#[test]
fn a_ca_pin_accepts_the_server_it_signed_and_refuses_another() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TlsServer::start(|_, _| (200, "{}".into()));
    let other = TlsServer::start(|_, _| (200, "{}".into()));
    let values = |target: &TlsServer, ca: &str| {
        let indented: String = ca.lines().map(|line| format!("  {line}\n")).collect();
        format!("url: \"{}\"\nca: |\n{indented}", target.url("/"))
    };

    let instance = Instance::new("https-ca");
    let run = apply(dir.path(), "https-ca", &instance, &values(&server, &server.ca_pem));
    assert_eq!(run.code, 0, "the server its CA signed: {}", all_output(&run));
    assert_eq!(server.requests().len(), 1, "one attempt was enough");

    let instance = Instance::new("https-ca-other");
    let run = apply(dir.path(), "https-ca", &instance, &values(&other, &server.ca_pem));
    assert_ne!(run.code, 0, "a server another CA signed: {}", all_output(&run));
    assert!(all_output(&run).to_lowercase().contains("certificate"), "the refusal is about the certificate: {}", all_output(&run));
    assert!(other.requests().is_empty(), "nothing was sent: {:?}", other.requests());

    // The same CA from a file on the pattern controller; a missing file says which.
    let ca_file = dir.path().join("lab-ca.pem");
    std::fs::write(&ca_file, &server.ca_pem).expect("CA file");
    let file_values = |target: &TlsServer, path: &Path| format!("url: \"{}\"\nca_file: \"{}\"\n", target.url("/"), path.display());
    let instance = Instance::new("https-ca-file");
    let run = apply(dir.path(), "https-ca-file", &instance, &file_values(&server, &ca_file));
    assert_eq!(run.code, 0, "the CA file's server: {}", all_output(&run));
    assert_eq!(server.requests().len(), 2, "one more attempt");
    let missing = dir.path().join("missing.pem");
    let instance = Instance::new("https-ca-missing");
    let run = apply(dir.path(), "https-ca-file", &instance, &file_values(&server, &missing));
    assert_ne!(run.code, 0, "{}", all_output(&run));
    assert!(all_output(&run).contains(&format!("reading the CA file {}", missing.display())), "{}", all_output(&run));
}
