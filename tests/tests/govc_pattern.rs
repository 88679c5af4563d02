//! The catalog's `basic/govc` pattern through the real mesh against vcsim (the govmomi
//! simulator, built from Debian's source like the govc image): the vSphere target's
//! certificate is pinned by its thumbprint by default; a wrong thumbprint is refused by the
//! TLS check; neither a thumbprint nor `insecure` is refused before anything runs (exit 2);
//! `insecure: true` runs and warns. The password goes in a values file, reaches govc as
//! GOVC_PASSWORD and shows in no output.

use std::path::{Path, PathBuf};

use pmesh_tests::docker::{containers_with_label, Instance};
use pmesh_tests::vcsim::{Vcsim, GOVC_IMAGE, VCSIM_USER};
use pmesh_tests::{Daemon, Mesh, Run};

const AGENT: &str = "pc-1";

fn pattern() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/basic/govc")
}

struct Lab {
    mesh: Mesh,
    _master: Daemon,
    _agent: Daemon,
}

impl Lab {
    fn start() -> anyhow::Result<Lab> {
        let mesh = Mesh::init()?;
        let master = mesh.start_master()?;
        mesh.enrol(AGENT, &[])?;
        let agent = mesh.start_agent(AGENT, &[])?;
        let push = mesh.pmesh(&["pattern", "push", pattern().to_str().expect("utf-8")]);
        anyhow::ensure!(push.code == 0, "push failed: {}", push.stderr);
        Ok(Lab { mesh, _master: master, _agent: agent })
    }

    /// `pmesh run govc` with the target's password in a values file (0600) and `-p` for the rest.
    fn run(&self, instance: &Instance, vcsim: &Vcsim, values: &[String]) -> Run {
        let file = self.mesh.dir.path().join(format!("{}.yaml", instance.0));
        std::fs::write(&file, format!("password: {}\n", vcsim.password)).expect("values file");
        let mut args = vec!["run", "govc", "--on", AGENT, "--instance", &instance.0, "-f", file.to_str().expect("utf-8")];
        let common = [format!("url={}", vcsim.url()), format!("username={VCSIM_USER}"), format!("govc_image={GOVC_IMAGE}")];
        for value in common.iter().chain(values) {
            args.extend(["-p", value]);
        }
        self.mesh.pmesh(&args)
    }
}

fn all_output(run: &Run) -> String {
    format!("{}\n{}", run.stdout, run.stderr)
}

#[test]
fn govc_reaches_vcsim_pinned_by_thumbprint_and_refuses_what_it_cannot_verify() -> anyhow::Result<()> {
    let lab = Lab::start()?;

    let pinned = Instance::new("govc-pin");
    let vcsim = Vcsim::start(&format!("pmesh-{AGENT}-{}", pinned.0))?;
    let run = lab.run(&pinned, &vcsim, &[format!("thumbprint={}", vcsim.thumbprint)]);
    assert_eq!(run.code, 0, "pinned run: {}\n{}", all_output(&run), vcsim.logs());
    assert!(run.stdout.contains("API type:") && run.stdout.contains("VirtualCenter"), "govc about reached vcsim: {}", run.stdout);
    assert!(!all_output(&run).contains("warning: insecure"), "a pinned run does not warn");
    assert!(!all_output(&run).contains(&vcsim.password), "the password shows in no output");

    // A thumbprint of another certificate: govc refuses the connection.
    let wrong = Instance::new("govc-wrong");
    let vcsim_wrong = Vcsim::start(&format!("pmesh-{AGENT}-{}", wrong.0))?;
    let other_print = vcsim.thumbprint.clone();
    let run = lab.run(&wrong, &vcsim_wrong, &[format!("thumbprint={other_print}")]);
    assert_ne!(run.code, 0, "a wrong thumbprint must fail: {}", all_output(&run));
    assert!(all_output(&run).contains("thumbprint does not match"), "the refusal says why: {}", all_output(&run));

    // Neither a thumbprint nor insecure: refused before anything is created.
    let unpinned = Instance::new("govc-none");
    let run = lab.run(&unpinned, &vcsim_wrong, &[]);
    assert_eq!(run.code, 2, "refused as invalid input: {}", all_output(&run));
    assert!(all_output(&run).contains("give the target's `thumbprint`"), "{}", all_output(&run));
    assert!(containers_with_label("io.pmesh.instance", &unpinned.0).is_empty(), "nothing was created");

    // insecure: true runs, and says so.
    let insecure = Instance::new("govc-insecure");
    let vcsim_insecure = Vcsim::start(&format!("pmesh-{AGENT}-{}", insecure.0))?;
    let run = lab.run(&insecure, &vcsim_insecure, &["insecure=true".to_owned()]);
    assert_eq!(run.code, 0, "insecure run: {}", all_output(&run));
    assert!(all_output(&run).contains("warning: insecure: true"), "the run warns: {}", all_output(&run));
    assert!(!all_output(&run).contains(&vcsim_insecure.password));
    Ok(())
}
