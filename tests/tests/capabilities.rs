//! Capabilities end to end through the real mesh (master, agents, Docker): a pattern whose
//! service asks for `NET_ADMIN` is refused at `--plan` and at start, with exit 2 and the
//! message naming the step, the capability and the config key, by an agent whose `agent.toml`
//! does not allow it; nothing (container, network, volume, rendered file) is created. An agent
//! that allows it runs the step, and the container's `HostConfig.CapAdd` holds the capability,
//! which the process then has in its effective set; it is never privileged.

use std::path::Path;

use pmesh_tests::docker::{docker, instance_objects, require_tools_image, Instance, TOOLS_IMAGE};
use pmesh_tests::Mesh;

/// A pattern of one service asking for `NET_ADMIN`, with a network, a volume and a rendered
/// file, so that a refused run would have had something to create.
fn write_pattern(dir: &Path) {
    std::fs::create_dir_all(dir.join("templates")).expect("pattern dir");
    let yaml = "apiVersion: pmesh/v1\nkind: Pattern\nmetadata:\n  name: netadmin\n  version: 1.0.0\n  category: shared-service\n\
         images:\n  tools: {ref: \"example.org/tools:1\"}\n\
         files:\n  - {path: templates/note.j2, template: true, dest: note}\n\
         steps:\n  router:\n    kind: service\n    image: tools\n    capabilities: [NET_ADMIN]\n    command: [sleep, \"3600\"]\n    \
         networks: [lan]\n    mounts:\n      - {file: note, target: /note, readonly: true}\n      - {volume: data, target: /data}\n";
    std::fs::write(dir.join("pattern.yaml"), yaml).expect("pattern.yaml");
    std::fs::write(dir.join("templates/note.j2"), "hello\n").expect("template");
}

const REFUSAL: &str = "step \"router\" needs capability NET_ADMIN, which this agent does not allow; \
                       add it to [security] allow_capabilities in agent.toml";

#[test]
fn a_capability_is_refused_unless_the_agent_allows_it_and_then_added() -> anyhow::Result<()> {
    require_tools_image();
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let rewrite = format!("[images.rewrite]\n\"example.org/tools:1\" = \"{TOOLS_IMAGE}\"\n");
    mesh.enrol("pc-1", &[])?;
    std::fs::write(mesh.agent_dir("pc-1").join("agent.toml"), &rewrite)?;
    mesh.enrol("pc-2", &[])?;
    std::fs::write(mesh.agent_dir("pc-2").join("agent.toml"), format!("{rewrite}[security]\nallow_capabilities = [\"NET_ADMIN\"]\n"))?;
    let _agents = [mesh.start_agent("pc-1", &[])?, mesh.start_agent("pc-2", &[])?];
    let pattern = mesh.dir.path().join("netadmin");
    write_pattern(&pattern);
    let push = mesh.pmesh(&["pattern", "push", pattern.to_str().expect("utf-8")]);
    anyhow::ensure!(push.code == 0, "push failed: {}", push.stderr);

    // Refused: at --plan and at start, exit 2, the message, nothing created.
    let instance = Instance::new("caps");
    let plan = mesh.pmesh(&["run", "netadmin", "--on", "pc-1", "--instance", &instance.0, "--plan"]);
    assert_eq!(plan.code, 2, "{}\n{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains(REFUSAL), "{}", plan.stdout);
    let run = mesh.pmesh(&["run", "netadmin", "--on", "pc-1", "--instance", &instance.0]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(REFUSAL), "{}", run.stderr);
    assert_eq!(instance_objects(&instance.0), Vec::<String>::new(), "a refused run creates nothing");
    assert!(!mesh.agent_dir("pc-1").join("instances").join(&instance.0).exists(), "no file was rendered");

    // Allowed: the plan lists what the step asks for, the run succeeds with the capability.
    let plan = mesh.pmesh(&["run", "netadmin", "--on", "pc-2", "--instance", &instance.0, "--plan"]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("capabilities NET_ADMIN"), "{}", plan.stdout);
    let run = mesh.pmesh(&["run", "netadmin", "--on", "pc-2", "--instance", &instance.0]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let container = format!("pmesh-pc-2-{}-router", instance.0);
    assert_eq!(docker(&["inspect", "-f", "{{json .HostConfig.CapAdd}}", &container]), "[\"NET_ADMIN\"]");
    assert_eq!(docker(&["inspect", "-f", "{{.HostConfig.Privileged}}", &container]), "false");
    let status = docker(&["exec", &container, "grep", "CapEff", "/proc/self/status"]);
    let effective = u64::from_str_radix(status.split_whitespace().last().unwrap_or_default(), 16)?;
    assert_ne!(effective & (1 << 12), 0, "CAP_NET_ADMIN (12) is effective: {status}");
    Ok(())
}
