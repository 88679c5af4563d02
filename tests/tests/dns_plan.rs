//! The DNS pattern through a master and an agent: `pmesh run --plan` says `reload` (not
//! `replace`) when only its records changed, `unchanged` for the same values and `replace`
//! when the container's spec changed; the run that follows reloads the same container; an
//! invalid record is refused at `--plan` with exit 2.

use std::path::Path;

use pmesh_tests::docker::{docker, require_tools_image, Instance, TOOLS_IMAGE};
use pmesh_tests::{free_port, Mesh};

#[test]
fn a_plan_says_reload_when_only_the_records_changed() -> anyhow::Result<()> {
    require_tools_image();
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let rewrite = format!("[images.rewrite]\n\"internetsystemsconsortium/bind9:9.18\" = \"{TOOLS_IMAGE}\"\n");
    std::fs::write(mesh.agent_dir("pc-1").join("agent.toml"), rewrite)?;
    let _agent = mesh.start_agent("pc-1", &[])?;
    let pattern = Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/shared/dns");
    let push = mesh.pmesh(&["pattern", "push", pattern.to_str().expect("utf-8")]);
    anyhow::ensure!(push.code == 0, "push failed: {}", push.stderr);

    let instance = Instance::new("dnsplan");
    let values = mesh.dir.path().join("values.yaml");
    let port = format!("listen_port={}", free_port());
    let run = |records: &str, extra: &[&str]| {
        std::fs::write(&values, format!("zone: lab.test\nreverse: [10.0.0.0/24]\nrecords: {records}\n")).expect("values");
        let mut args = vec!["run", "dns", "--on", "pc-1", "--instance", &instance.0, "-p", &port, "-f", values.to_str().expect("utf-8")];
        args.extend_from_slice(extra);
        mesh.pmesh(&args)
    };
    let named_action = |records: &str, extra: &[&str]| -> anyhow::Result<String> {
        let plan = run(records, &[&["--plan", "-o", "json"], extra].concat());
        anyhow::ensure!(plan.code == 0, "{}\n{}", plan.stdout, plan.stderr);
        let plan: serde_json::Value = serde_json::from_str(&plan.stdout)?;
        let actions = plan["pc-1"]["actions"].as_array().cloned().unwrap_or_default();
        let named = actions.iter().find(|action| action["name"] == "named").ok_or_else(|| anyhow::anyhow!("no named in {plan:#}"))?;
        Ok(named["action"].as_str().unwrap_or_default().to_owned())
    };

    let first = run("[www A 10.0.0.7]", &[]);
    anyhow::ensure!(first.code == 0, "{}\n{}", first.stdout, first.stderr);
    let (by_instance, by_step) = (format!("label=io.pmesh.instance={}", instance.0), "label=io.pmesh.step=named".to_owned());
    let named_id = || docker(&["ps", "-q", "--no-trunc", "--filter", &by_instance, "--filter", &by_step]);
    let id = named_id();
    assert_eq!(id.lines().count(), 1, "one named container: {id}");

    assert_eq!(named_action("[www A 10.0.0.7]", &[])?, "unchanged");
    assert_eq!(named_action("[www A 10.0.0.8]", &[])?, "reload", "only the records changed");
    assert_eq!(named_action("[{name: www, type: A, value: 10.0.0.8}]", &[])?, "reload", "the long form, the same");
    assert_eq!(named_action("[www A 10.0.0.8]", &["-p", "ttl=600"])?, "reload", "the TTL is in the zone files");
    let other_port = format!("listen_port={}", free_port());
    assert_eq!(named_action("[www A 10.0.0.7]", &["-p", &other_port])?, "replace", "a published port is the container's spec");
    assert_eq!(named_id(), id, "plans changed nothing");

    let text = run("[www A 10.0.0.8]", &["--plan"]);
    assert!(text.stdout.contains("reload"), "{}", text.stdout);
    // A record only the zone template can refuse is refused by the master, at --plan and at
    // a start, with exit 2, before any agent is asked.
    for extra in [&["--plan"][..], &[]] {
        let refused = run("[{name: www, type: A, value: not-an-address}]", extra);
        assert_eq!(refused.code, 2, "{extra:?}: {}\n{}", refused.stdout, refused.stderr);
        assert!(refused.stderr.contains("records item 1: a A record's value must be an IPv4 address"), "{}", refused.stderr);
    }
    assert_eq!(mesh.pmesh(&["runs", "ls", "-o", "json"]).stdout.matches("run_id").count(), 1, "the refused start recorded no run");

    let changed = run("[www A 10.0.0.8]", &[]);
    anyhow::ensure!(changed.code == 0, "{}\n{}", changed.stdout, changed.stderr);
    assert!(changed.stdout.contains("reloading in place"), "{}", changed.stdout);
    assert_eq!(named_id(), id, "the run reloaded the same container");
    assert_eq!(named_action("[www A 10.0.0.8]", &[])?, "unchanged", "once reloaded, nothing is left to do");
    Ok(())
}
