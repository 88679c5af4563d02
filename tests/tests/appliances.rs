//! The catalog's `workload/nsx-manager` and `workload/cloud-builder` through `pmesh-agent
//! pattern apply`, against vcsim with the govc image, each from a stub OVA built in the test
//! (vcsim hashes the disk and keeps none), and a real TLS server on loopback standing in for
//! the appliance's API (the appliances themselves cannot run here).
//!
//! - NSX Manager: the VM is imported with its `nsx_*` OVF properties and the instance's marks;
//!   `ready` logs in as admin and waits until `/api/v1/cluster/status` reports
//!   `mgmt_cluster_status.status` STABLE (after two DEGRADED answers); no password is in the
//!   output; a re-run changes nothing; destroy removes the VM.
//! - Cloud Builder: the VM with its `guestinfo.*` properties; `ready` pinned to the API's
//!   thumbprint with the admin login succeeds; pinned to another certificate it fails, and
//!   that server receives no request.
//!
//! The tests' copies of the patterns wait 20s for `ready`, not 45 minutes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use pmesh_tests::docker::Instance;
use pmesh_tests::http::{Behaviour, FileServer};
use pmesh_tests::standins::pattern_for_download;
use pmesh_tests::tls::{basic, TlsServer};
use pmesh_tests::vcsim::{stub_ova, Vcsim, GOVC_IMAGE, VCSIM_USER};
use pmesh_tests::{bin, Run};

struct Lab {
    dir: tempfile::TempDir,
    pattern: PathBuf,
    instance: Instance,
    vcsim: Vcsim,
    _ova_server: FileServer,
    values_file: PathBuf,
}

impl Lab {
    /// vcsim on the instance's network, the stub OVA served over loopback HTTP, the catalog
    /// pattern `name` copied with the OVA's checksum and a short `ready`, and `secrets` in a
    /// values file.
    fn start(name: &str, prefix: &str, secrets: &[(&str, &str)]) -> anyhow::Result<Lab> {
        let dir = tempfile::tempdir()?;
        let instance = Instance::new(prefix);
        let vcsim = Vcsim::start(&format!("pmesh-{}", instance.0))?;
        let ova = std::fs::read(stub_ova(dir.path())?)?;
        let pattern = pattern_for_download(&format!("workload/{name}"), &dir.path().join("pattern"), &ova, "1.0.0");
        let yaml_path = pattern.join("pattern.yaml");
        let yaml = std::fs::read_to_string(&yaml_path)?;
        let (long, short) = ("    deadline: 45m\n    interval: 15s\n", "    deadline: 20s\n    interval: 1s\n");
        assert!(yaml.contains(long), "ready's deadline and interval");
        std::fs::write(&yaml_path, yaml.replace(long, short))?;
        let ova_server = FileServer::start(Arc::new(ova), Behaviour::default());
        let values_file = dir.path().join("secrets.yaml");
        let mut values = format!("password: \"{}\"\nova_url: \"{}\"\n", vcsim.password, ova_server.url());
        for (key, value) in secrets {
            values.push_str(&format!("{key}: \"{value}\"\n"));
        }
        std::fs::write(&values_file, values)?;
        Ok(Lab { dir, pattern, instance, vcsim, _ova_server: ova_server, values_file })
    }

    fn agent(&self, verb: &str, api: &TlsServer, thumbprint: &str, extra: &[&str]) -> Run {
        let mut values = vec![
            format!("url={}", self.vcsim.url()),
            format!("username={VCSIM_USER}"),
            format!("thumbprint={}", self.vcsim.thumbprint),
            format!("govc_image={GOVC_IMAGE}"),
            format!("vm_name={}", self.vm_name()),
            "domain=lab.local".to_owned(),
            "ip=127.0.0.1".to_owned(),
            "gateway=10.0.0.1".to_owned(),
            "dns=10.0.0.2".to_owned(),
            format!("appliance_thumbprint={thumbprint}"),
            format!("https_port={}", api.port),
        ];
        values.extend(extra.iter().map(|value| value.to_string()));
        let mut command = Command::new(bin("pmesh-agent"));
        command.args(["--data-dir", self.dir.path().join("agent").to_str().expect("utf-8"), "pattern", verb]);
        command.args(["--instance", &self.instance.0, "-f", self.values_file.to_str().expect("utf-8")]);
        for value in &values {
            command.args(["-p", value]);
        }
        command.arg(&self.pattern).output().expect("running pmesh-agent").into()
    }

    fn vm_name(&self) -> String {
        format!("app-{}", self.instance.0)
    }

    fn extra_config(&self) -> BTreeMap<String, String> {
        self.vcsim.extra_config(&self.vm_name()).into_iter().collect()
    }
}

fn all_output(run: &Run) -> String {
    format!("{}\n{}", run.stdout, run.stderr)
}

fn step_line<'a>(run: &'a Run, step: &str, ending: &str) -> Option<&'a str> {
    run.stdout.lines().find(|line| {
        let rest = line.split_once(' ').map(|(_, rest)| rest).unwrap_or("");
        rest.split_whitespace().next() == Some(step) && rest.ends_with(ending)
    })
}

const NSX_ROOT: &str = "Nsx-Root-Secret-1!";
const NSX_ADMIN: &str = "Nsx-Admin-Secret-2!";
const NSX_AUDIT: &str = "Nsx-Audit-Secret-3!";

#[test]
fn nsx_manager_is_imported_with_its_properties_and_ready_when_stable() -> anyhow::Result<()> {
    let lab =
        Lab::start("nsx-manager", "nsx", &[("root_password", NSX_ROOT), ("admin_password", NSX_ADMIN), ("audit_password", NSX_AUDIT)])?;
    let expected = basic("admin", NSX_ADMIN);
    let api = TlsServer::start(move |index, request| {
        if request.authorization.as_deref() != Some(expected.as_str()) {
            return (403, r#"{"error_code": 403}"#.into());
        }
        let status = if index < 2 { "DEGRADED" } else { "STABLE" };
        (200, format!(r#"{{"mgmt_cluster_status": {{"status": "{status}"}}}}"#))
    });

    let run = lab.agent("apply", &api, &api.thumbprint, &["hostname=nsx01", "ssh=true"]);
    let output = all_output(&run);
    assert_eq!(run.code, 0, "{output}\n{}", lab.vcsim.logs());
    let extra = lab.extra_config();
    for (key, value) in [
        ("nsx_role", "NSX Manager"),
        ("nsx_hostname", "nsx01.lab.local"),
        ("nsx_ip_0", "127.0.0.1"),
        ("nsx_gateway_0", "10.0.0.1"),
        ("nsx_dns1_0", "10.0.0.2"),
        ("nsx_domain_0", "lab.local"),
        ("nsx_passwd_0", NSX_ROOT),
        ("nsx_cli_passwd_0", NSX_ADMIN),
        ("nsx_cli_audit_passwd_0", NSX_AUDIT),
        ("nsx_isSSHEnabled", "True"),
        ("nsx_allowSSHRootLogin", "False"),
        ("pmesh.instance", lab.instance.0.as_str()),
    ] {
        assert_eq!(extra.get(key).map(String::as_str), Some(value), "{key} in {:?}", extra.keys());
    }
    assert!(step_line(&run, "ready", "succeeded").is_some(), "{}", run.stdout);
    let requests = api.requests();
    assert!(requests.len() >= 3, "ready waited through DEGRADED: {requests:?}");
    assert!(requests.iter().all(|request| request.path == "/api/v1/cluster/status"), "{requests:?}");
    for secret in [NSX_ROOT, NSX_ADMIN, NSX_AUDIT, lab.vcsim.password.as_str()] {
        assert!(!output.contains(secret), "a password shows in the output");
    }

    let again = lab.agent("apply", &api, &api.thumbprint, &["hostname=nsx01", "ssh=true"]);
    assert_eq!(again.code, 0, "{}", all_output(&again));
    assert!(step_line(&again, "deploy", "unchanged").is_some(), "{}", again.stdout);
    assert_eq!(lab.vcsim.vms(&lab.vm_name()).len(), 1, "still one VM");

    let destroyed = lab.agent("destroy", &api, &api.thumbprint, &["hostname=nsx01", "ssh=true"]);
    assert_eq!(destroyed.code, 0, "{}", all_output(&destroyed));
    assert!(lab.vcsim.vms(&lab.vm_name()).is_empty(), "destroy removed the VM");
    Ok(())
}

#[test]
fn cloud_builder_is_imported_with_its_properties_and_ready_only_with_the_pinned_certificate() -> anyhow::Result<()> {
    const ADMIN: &str = "Cb-Admin-Secret-4!";
    const ROOT: &str = "Cb-Root-Secret-5!";
    let lab = Lab::start("cloud-builder", "cb", &[("admin_password", ADMIN), ("root_password", ROOT)])?;
    let expected = basic("admin", ADMIN);
    let respond = move |_: usize, request: &pmesh_tests::tls::Seen| {
        if request.authorization.as_deref() == Some(expected.as_str()) {
            (200, "[]".into())
        } else {
            (401, "{}".into())
        }
    };
    let api = TlsServer::start(respond.clone());

    let run = lab.agent("apply", &api, &api.thumbprint, &["hostname=cb01"]);
    assert_eq!(run.code, 0, "{}\n{}", all_output(&run), lab.vcsim.logs());
    let extra = lab.extra_config();
    for (key, value) in [
        ("guestinfo.ADMIN_USERNAME", "admin"),
        ("guestinfo.ADMIN_PASSWORD", ADMIN),
        ("guestinfo.ROOT_PASSWORD", ROOT),
        ("guestinfo.hostname", "cb01.lab.local"),
        ("guestinfo.ip0", "127.0.0.1"),
        ("guestinfo.netmask0", "255.255.255.0"),
        ("guestinfo.DNS", "10.0.0.2"),
        ("guestinfo.ntp", "pool.ntp.org"),
        ("FIPS_ENABLE", "False"),
    ] {
        assert_eq!(extra.get(key).map(String::as_str), Some(value), "{key} in {:?}", extra.keys());
    }
    assert!(step_line(&run, "ready", "succeeded").is_some(), "{}", run.stdout);
    assert_eq!(api.requests().first().map(|request| request.path.as_str()), Some("/v1/sddcs"));

    let impostor = TlsServer::start(respond);
    let refused = lab.agent("apply", &impostor, &api.thumbprint, &["hostname=cb01"]);
    assert_ne!(refused.code, 0, "{}", all_output(&refused));
    assert!(refused.stdout.contains(&format!("not the pinned {}", api.thumbprint)), "{}", refused.stdout);
    assert!(impostor.requests().is_empty(), "{:?}", impostor.requests());
    for secret in [ADMIN, ROOT] {
        assert!(!all_output(&run).contains(secret) && !all_output(&refused).contains(secret), "a password shows in the output");
    }
    Ok(())
}
