//! The catalog's `workload/vcenter` through `pmesh-agent pattern apply`, against vcsim (the
//! target vCenter), a stand-in VCSA ISO (`pmesh_tests::vcsa`: a tar archive with the ISO's
//! layout, extracted by the pattern's bsdtar) served over loopback HTTP, and a real TLS
//! server on loopback standing in for the appliance's HTTPS endpoint. vcsa-deploy cannot be
//! had here: the stand-in checks the rendered JSON against the template's keys, logs in to
//! vcsim, prechecks, and deploys the ISO's (stub) OVA into vcsim with the real tool's
//! progress lines. The test's copy of the pattern waits 20s for `ready`, not 45 minutes.
//!
//! - A wrong target password fails the precheck step: deploy never runs, no VM is made.
//! - With the right one: the precheck and the deploy run, the `RUNNING NN/100` lines are
//!   percentages, the appliance VM is in vcsim, and `ready` waits until the endpoint answers
//!   200 with the pinned certificate; no password is in the output or on any process's
//!   command line (sampled throughout the run).
//! - Again: every step is unchanged, still one VM.
//! - Pinned to another certificate's thumbprint: `ready` refuses the endpoint, which
//!   receives no request.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use pmesh_tests::docker::{docker_output, Instance};
use pmesh_tests::http::{Behaviour, FileServer};
use pmesh_tests::processes::Watch;
use pmesh_tests::standins::pattern_for_download;
use pmesh_tests::tls::TlsServer;
use pmesh_tests::vcsa::{standin_iso, VCSA_BASE_IMAGE};
use pmesh_tests::vcsim::{Vcsim, VCSIM_USER};
use pmesh_tests::{bin, Run};

struct Lab {
    dir: tempfile::TempDir,
    pattern: PathBuf,
    instance: Instance,
    vcsim: Vcsim,
    _iso_server: FileServer,
    iso_url: String,
    root_password: String,
    sso_password: String,
}

impl Lab {
    fn start() -> anyhow::Result<Lab> {
        assert!(
            docker_output(&["image", "inspect", VCSA_BASE_IMAGE]).status.success(),
            "{VCSA_BASE_IMAGE} is missing: build it with tests/images/build.sh (tests/run.sh does)"
        );
        let dir = tempfile::tempdir()?;
        let instance = Instance::new("vcenter");
        // A local apply's containers join `pmesh-INSTANCE`, where vcsim answers as `vcsim`.
        let vcsim = Vcsim::start(&format!("pmesh-{}", instance.0))?;
        let scratch = dir.path().join("scratch");
        std::fs::create_dir_all(&scratch)?;
        let iso = standin_iso(&scratch);
        let pattern = pattern_for_download("workload/vcenter", &dir.path().join("pattern"), &iso, "1.0.0");
        // The copy waits seconds, not the 45 minutes an appliance's firstboot may take.
        let yaml_path = pattern.join("pattern.yaml");
        let yaml = std::fs::read_to_string(&yaml_path)?;
        assert!(yaml.contains("    deadline: 45m\n    interval: 15s\n"), "ready's deadline and interval");
        std::fs::write(&yaml_path, yaml.replace("    deadline: 45m\n    interval: 15s\n", "    deadline: 20s\n    interval: 1s\n"))?;
        let iso_server = FileServer::start(Arc::new(iso), Behaviour::default());
        let iso_url = iso_server.url();
        let root_password = format!("Root-{}!", vcsim.password);
        let sso_password = format!("Sso-{}!", vcsim.password);
        Ok(Lab { dir, pattern, instance, vcsim, _iso_server: iso_server, iso_url, root_password, sso_password })
    }

    /// `pmesh-agent pattern apply`, the secrets in a values file, `target_password` as the
    /// target's; the appliance's endpoint is `appliance` pinned to `thumbprint`.
    fn apply(&self, target_password: &str, appliance: &TlsServer, thumbprint: &str) -> Run {
        let values_file = self.dir.path().join("secrets.yaml");
        let secrets = format!(
            "password: \"{target_password}\"\nroot_password: \"{}\"\nsso_password: \"{}\"\niso_url: \"{}\"\n",
            self.root_password, self.sso_password, self.iso_url
        );
        std::fs::write(&values_file, secrets).expect("values file");
        let values = [
            format!("url={}", self.vcsim.url()),
            format!("username={VCSIM_USER}"),
            "insecure=true".to_owned(),
            "datacenter=DC0".to_owned(),
            "cluster=DC0_C0".to_owned(),
            "datastore=LocalDS_0".to_owned(),
            format!("name={}", self.vm_name()),
            "system_name=vcsa.lab.local".to_owned(),
            // The appliance's address is where the test's TLS server listens.
            "ip=127.0.0.1".to_owned(),
            "gateway=10.0.0.1".to_owned(),
            "dns_servers=10.0.0.2".to_owned(),
            format!("appliance_thumbprint={thumbprint}"),
            format!("https_port={}", appliance.port),
            format!("base_image={VCSA_BASE_IMAGE}"),
        ];
        let mut command = Command::new(bin("pmesh-agent"));
        command.args(["--data-dir", self.dir.path().join("agent").to_str().expect("utf-8"), "pattern", "apply"]);
        command.args(["--instance", &self.instance.0, "-f", values_file.to_str().expect("utf-8")]);
        for value in &values {
            command.args(["-p", value]);
        }
        command.arg(&self.pattern).output().expect("running pmesh-agent").into()
    }

    fn vm_name(&self) -> String {
        format!("vcsa-{}", self.instance.0)
    }

    fn secrets(&self) -> [&str; 3] {
        [&self.vcsim.password, &self.root_password, &self.sso_password]
    }
}

/// The lines `step` printed, without their timestamps.
fn lines_of<'a>(run: &'a Run, step: &str) -> Vec<&'a str> {
    run.stdout
        .lines()
        .filter_map(|line| line.split_once(' ').map(|(_, rest)| rest))
        .filter(|rest| rest.split_whitespace().next() == Some(step))
        .collect()
}

fn all_output(run: &Run) -> String {
    format!("{}\n{}", run.stdout, run.stderr)
}

/// The endpoint: 503 while "starting" (the first two answers), then 200.
fn appliance() -> TlsServer {
    TlsServer::start(|index, _| if index < 2 { (503, "{}".into()) } else { (200, r#"{"status": "up"}"#.into()) })
}

/// Removes the images pmesh built from the stand-in ISO when the test ends, pass or fail.
struct BuiltImages;

impl Drop for BuiltImages {
    fn drop(&mut self) {
        let listed = docker_output(&["images", "-q", "pmesh/vcenter-vcsa"]);
        for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
            let _ = docker_output(&["rmi", "-f", id]);
        }
    }
}

#[test]
fn vcenter_prechecks_deploys_into_vcsim_and_is_ready_only_with_the_pinned_certificate() -> anyhow::Result<()> {
    let _images = BuiltImages;
    let lab = Lab::start()?;
    let endpoint = appliance();

    let refused = lab.apply("not-the-password", &endpoint, &endpoint.thumbprint);
    assert_ne!(refused.code, 0, "a wrong target password fails: {}", all_output(&refused));
    assert!(lines_of(&refused, "precheck").iter().any(|line| line.contains("Precheck failed")), "{}", refused.stdout);
    assert!(lines_of(&refused, "deploy").iter().any(|line| line.contains("skipped")), "deploy never ran: {}", refused.stdout);
    assert!(lab.vcsim.vms(&lab.vm_name()).is_empty(), "no VM was made");
    assert!(endpoint.requests().is_empty(), "nothing waited for the appliance");

    // vcsa-deploy's own command line is the marker that shows the watch saw the deploy.
    let marker = "--log-dir /tmp/vcsa-logs /pmesh/vcsa.json";
    let mut needles: Vec<String> = lab.secrets().iter().map(|secret| secret.to_string()).collect();
    needles.push(marker.to_owned());
    let watch = Watch::start(needles, &["cmdline"]);
    let run = lab.apply(&lab.vcsim.password, &endpoint, &endpoint.thumbprint);
    let (scans, seen) = watch.finish();
    let output = all_output(&run);
    assert_eq!(run.code, 0, "the deploy succeeds: {output}\n{}", lab.vcsim.logs());
    assert!(scans > 10, "the command lines were watched ({scans} scans)");
    assert!(seen.iter().any(|line| line.contains(marker)), "the watch saw vcsa-deploy run: {seen:?}");
    assert!(seen.iter().all(|line| line.contains(marker) && lab.secrets().iter().all(|secret| !line.contains(secret))), "{seen:?}");
    let precheck = lines_of(&run, "precheck").join("\n");
    assert!(precheck.contains("Template verification succeeded"), "the JSON has the template's keys: {precheck}");
    assert!(precheck.contains("--precheck-only) completed successfully"), "{precheck}");
    let deploy = lines_of(&run, "deploy");
    for percent in ["5%", "27%", "41%", "59%", "86%", "100%"] {
        assert!(deploy.iter().any(|line| line.ends_with(&format!(" {percent}"))), "{percent} is a progress event: {deploy:#?}");
    }
    assert!(deploy.iter().any(|line| line.contains("Successfully completed VCSA deployment.")), "{deploy:#?}");
    assert_eq!(lab.vcsim.vms(&lab.vm_name()).len(), 1, "the appliance VM is in vcsim");
    assert!(lines_of(&run, "ready").iter().any(|line| line.ends_with("succeeded")), "{}", run.stdout);
    assert!(endpoint.requests().len() >= 3, "ready waited through the 503s: {:?}", endpoint.requests());
    assert!(output.contains("warning: insecure"), "insecure says so: {output}");
    for secret in lab.secrets() {
        assert!(!output.contains(secret), "a password shows in the output");
    }

    let again = lab.apply(&lab.vcsim.password, &endpoint, &endpoint.thumbprint);
    assert_eq!(again.code, 0, "{}", all_output(&again));
    for step in ["precheck", "deploy"] {
        assert!(lines_of(&again, step).iter().any(|line| line.ends_with("unchanged")), "{step} unchanged: {}", again.stdout);
    }
    assert_eq!(lab.vcsim.vms(&lab.vm_name()).len(), 1, "still one appliance VM");

    let impostor = appliance();
    let pinned_elsewhere = lab.apply(&lab.vcsim.password, &impostor, &endpoint.thumbprint);
    assert_ne!(pinned_elsewhere.code, 0, "another certificate is refused: {}", all_output(&pinned_elsewhere));
    let ready = lines_of(&pinned_elsewhere, "ready").join("\n");
    assert!(ready.contains(&format!("not the pinned {}", endpoint.thumbprint)), "{ready}");
    assert!(impostor.requests().is_empty(), "the impostor got no request: {:?}", impostor.requests());
    Ok(())
}
