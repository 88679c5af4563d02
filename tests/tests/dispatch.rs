//! Dispatch end to end with real processes: the master pushes a signed bundle to agents,
//! starts runs, consumes the agents' journals and streams the events to the CLI. The steps run
//! in real containers (the locally built tool image).

use std::collections::BTreeMap;
use std::time::Duration;

use pmesh_tests::docker::{containers_with_label, require_tools_image, Instance};
use pmesh_tests::{run_id_in, wait_until, Mesh};

fn steps_pattern() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/patterns/steps").to_owned()
}

/// A master and `names` agents, enrolled with `site=lab`, running, and the steps pattern pushed.
fn lab(names: &[&str]) -> anyhow::Result<(Mesh, pmesh_tests::Daemon, Vec<pmesh_tests::Daemon>)> {
    require_tools_image();
    let mesh = Mesh::init()?;
    let master = mesh.start_master()?;
    let mut agents = Vec::new();
    for name in names {
        mesh.enrol(name, &["--label", "site=lab"])?;
        agents.push(mesh.start_agent(name, &[])?);
    }
    let push = mesh.pmesh(&["pattern", "push", &steps_pattern()]);
    anyhow::ensure!(push.code == 0, "push failed: {}", push.stderr);
    Ok((mesh, master, agents))
}

/// Every event of a run, from `pmesh runs watch ID -o json`.
fn events(mesh: &Mesh, run_id: &str) -> Vec<serde_json::Value> {
    let watch = mesh.pmesh(&["runs", "watch", run_id, "-o", "json"]);
    watch.stdout.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// Per agent, the sequence numbers the master stored must be contiguous and unique.
fn assert_contiguous(events: &[serde_json::Value]) {
    let mut by_agent: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for event in events {
        by_agent.entry(event["agent"].as_str().unwrap_or_default().to_owned()).or_default().push(event["seq"].as_u64().unwrap_or(0));
    }
    for (agent, mut seqs) in by_agent {
        seqs.sort_unstable();
        let expected: Vec<u64> = (seqs[0]..seqs[0] + seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "{agent}: events are gap-free and unique");
    }
}

#[test]
fn a_run_on_two_agents_by_selector_succeeds_with_contiguous_events() -> anyhow::Result<()> {
    let (mesh, _master, _agents) = lab(&["pc-1", "pc-2"])?;
    let instance = Instance::new("sel");
    let run = mesh.pmesh(&["run", "steps", "--selector", "site=lab", "--instance", &instance.0]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let run_id = run_id_in(&run.stdout).expect("run id printed");
    for agent in ["pc-1", "pc-2"] {
        assert!(run.stdout.contains(&format!("{agent}       third          succeeded")), "{}", run.stdout);
    }

    let logs = mesh.pmesh(&["runs", "logs", &run_id, "--step", "second"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    for agent in ["pc-1", "pc-2"] {
        for line in 1..=3 {
            assert!(logs.stdout.contains(&format!("{agent:<10} second         second-{line}")), "{}", logs.stdout);
        }
    }
    assert!(!logs.stdout.contains("first-1"), "--step filters");
    let all = events(&mesh, &run_id);
    assert!(all.len() > 20, "{all:?}");
    assert_contiguous(&all);

    let shown = mesh.pmesh(&["runs", "show", &run_id, "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&shown.stdout)?;
    assert_eq!(json["state"], "succeeded");
    assert_eq!(json["agents"]["pc-2"]["state"], "succeeded");
    Ok(())
}

#[test]
fn invalid_values_change_nothing_and_list_every_problem() -> anyhow::Result<()> {
    let (mesh, _master, _agents) = lab(&["pc-1"])?;
    let instance = Instance::new("bad");
    let run = mesh.pmesh(&["run", "steps", "--all", "--instance", &instance.0, "-p", "pause=-1", "-p", "lines=zero"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("param pause") && run.stderr.contains("param lines"), "{}", run.stderr);
    let listed = mesh.pmesh(&["runs", "ls", "-o", "json"]);
    assert_eq!(listed.stdout.trim(), "[]", "no run was recorded");
    assert!(containers_with_label("io.pmesh.instance", &instance.0).is_empty());
    assert!(!mesh.agent_dir("pc-1").join("bundles").exists(), "nothing was sent to the agent");
    Ok(())
}

#[test]
fn a_plan_changes_nothing_and_says_what_a_run_would_do_then_what_it_would_leave_alone() -> anyhow::Result<()> {
    let (mesh, _master, _agents) = lab(&["pc-1", "pc-2"])?;
    let instance = Instance::new("plan");
    let plan_json = |mesh: &Mesh| -> anyhow::Result<serde_json::Value> {
        let plan = mesh.pmesh(&["run", "steps", "--all", "--instance", &instance.0, "--plan", "-o", "json"]);
        anyhow::ensure!(plan.code == 0, "{}\n{}", plan.stdout, plan.stderr);
        Ok(serde_json::from_str(&plan.stdout)?)
    };
    let actions = |plan: &serde_json::Value, agent: &str| -> Vec<(String, String)> {
        plan[agent]["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|action| {
                (action["name"].as_str().unwrap_or_default().to_owned(), action["action"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    };

    let before = plan_json(&mesh)?;
    for agent in ["pc-1", "pc-2"] {
        assert_eq!(
            actions(&before, agent),
            [("pmesh-test/tools:bookworm-1", "present"), ("first", "create"), ("second", "create"), ("third", "create")]
                .map(|(name, action)| (name.to_owned(), action.to_owned())),
            "{before:#}"
        );
    }
    assert_eq!(mesh.pmesh(&["runs", "ls", "-o", "json"]).stdout.trim(), "[]", "a plan records no run");
    assert!(containers_with_label("io.pmesh.instance", &instance.0).is_empty(), "a plan creates no container");
    for agent in ["pc-1", "pc-2"] {
        assert!(!mesh.agent_dir(agent).join("bundles").exists(), "a plan stores no bundle on {agent}");
        assert!(!mesh.agent_dir(agent).join("instances").exists(), "a plan renders no file on {agent}");
    }
    let text = mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0, "--plan"]);
    assert!(
        text.stdout.contains("3 create, 1 present") && text.stdout.contains("nothing was pushed, started or changed"),
        "{}",
        text.stdout
    );

    // After a run on pc-1 only, pc-1 would leave its steps alone and pc-2 would still create them.
    let run = mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let after = plan_json(&mesh)?;
    assert_eq!(
        actions(&after, "pc-1")[1..],
        [("first", "unchanged"), ("second", "unchanged"), ("third", "unchanged")]
            .map(|(name, action)| (name.to_owned(), action.to_owned()))
    );
    assert_eq!(
        actions(&after, "pc-2")[1..],
        [("first", "create"), ("second", "create"), ("third", "create")].map(|(name, action)| (name.to_owned(), action.to_owned()))
    );

    // A changed parameter changes the steps' specs: the plan says they would be replaced.
    let changed = mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0, "--plan", "-p", "lines=4", "-o", "json"]);
    let changed: serde_json::Value = serde_json::from_str(&changed.stdout)?;
    assert!(actions(&changed, "pc-1")[1..].iter().all(|(_, action)| action == "replace"), "{changed:#}");
    Ok(())
}

/// On a terminal the run is drawn as bars (one per agent and step, redrawn in place with
/// cursor movements); in a pipe, as timestamped lines. `script` gives the CLI a real pty.
#[test]
fn a_run_draws_bars_on_a_terminal_and_lines_in_a_pipe() -> anyhow::Result<()> {
    let (mesh, _master, _agents) = lab(&["pc-1"])?;
    let instance = Instance::new("tty");
    let data_dir = mesh.master_dir();
    let command = format!(
        "{} --data-dir {} run steps --on pc-1 --instance {} -p lines=2",
        pmesh_tests::bin("pmesh").display(),
        data_dir.display(),
        instance.0
    );
    let output = std::process::Command::new("script").args(["-qfec", &command, "/dev/null"]).env("TERM", "xterm").output()?;
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(screen.contains("\u{1b}["), "the terminal got cursor movements (bars): {screen:?}");
    for step in ["first", "second", "third"] {
        assert!(screen.contains(&format!("pc-1 {step}")), "a bar for {step}: {screen:?}");
    }
    assert!(screen.contains("succeeded"), "the bars end with the step's outcome: {screen:?}");
    assert!(
        !screen.lines().any(|line| line.starts_with("20") && line.contains(" pc-1 ")),
        "no timestamped event lines on a terminal: {screen:?}"
    );

    let piped = mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0, "-p", "lines=2"]);
    assert_eq!(piped.code, 0, "{}", piped.stderr);
    assert!(!piped.stdout.contains('\u{1b}'), "no escape codes in a pipe: {:?}", piped.stdout);
    assert!(
        piped
            .stdout
            .lines()
            .any(|line| line.starts_with("20") && line.contains("pc-1") && line.contains("third") && line.contains("unchanged")),
        "{}",
        piped.stdout
    );
    Ok(())
}

#[test]
fn a_killed_master_catches_up_and_loses_nothing() -> anyhow::Result<()> {
    let (mesh, mut master, _agents) = lab(&["pc-1"])?;
    let instance = Instance::new("crash");
    let run = mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0, "-p", "pause=1", "-p", "lines=4", "--detach"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run_id = run_id_in(&run.stdout).expect("run id printed");
    // Kill the master once the run is under way, in its second step.
    wait_until("the second step to start", Duration::from_secs(60), || {
        let logs = mesh.pmesh(&["runs", "logs", &run_id]);
        logs.stdout.contains("second-1")
    })?;
    master.kill();
    let _master = mesh.start_master()?;
    let watch = mesh.pmesh(&["runs", "watch", &run_id]);
    assert_eq!(watch.code, 0, "the run completes: {}\n{}", watch.stdout, watch.stderr);
    let all = events(&mesh, &run_id);
    assert_contiguous(&all);
    let lines: Vec<&str> = all.iter().filter(|event| event["kind"] == "log").filter_map(|event| event["text"].as_str()).collect();
    assert_eq!(lines.len(), 12, "every line once: {lines:?}");
    Ok(())
}

#[test]
fn cancel_stops_the_containers_and_the_run_ends_cancelled() -> anyhow::Result<()> {
    let (mesh, _master, _agents) = lab(&["pc-1"])?;
    let instance = Instance::new("stop");
    let run = mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0, "-p", "pause=30", "--detach"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run_id = run_id_in(&run.stdout).expect("run id printed");
    wait_until("the first step to print", Duration::from_secs(60), || mesh.pmesh(&["runs", "logs", &run_id]).stdout.contains("first-1"))?;
    let cancel = mesh.pmesh(&["runs", "cancel", &run_id]);
    assert_eq!(cancel.code, 0, "{}", cancel.stderr);
    assert!(cancel.stdout.contains("pc-1"), "{}", cancel.stdout);
    let watch = mesh.pmesh(&["runs", "watch", &run_id]);
    assert_eq!(watch.code, 3, "{}\n{}", watch.stdout, watch.stderr);
    let running = pmesh_tests::docker::docker(&["ps", "-q", "--filter", &format!("label=io.pmesh.instance={}", instance.0)]);
    assert!(running.is_empty(), "no container of the run is running");
    Ok(())
}

/// A partition between master and agent for 20 seconds in the middle of a run: the run carries
/// on at the agent, and once the network heals every event arrives, in order, once.
#[test]
fn a_partition_heals_and_every_event_arrives_once() -> anyhow::Result<()> {
    require_tools_image();
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let agent_port = pmesh_tests::free_port();
    let proxy = pmesh_tests::proxy::Proxy::start(format!("127.0.0.1:{agent_port}").parse()?);
    mesh.enrol_advertising("pc-1", &format!("127.0.0.1:{}", proxy.port), &[])?;
    let _agent = mesh.start_agent_listening("pc-1", &format!("127.0.0.1:{agent_port}"))?;
    let push = mesh.pmesh(&["pattern", "push", &steps_pattern()]);
    assert_eq!(push.code, 0, "{}", push.stderr);

    let instance = Instance::new("split");
    let run = mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0, "-p", "pause=1", "-p", "lines=12", "--detach"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run_id = run_id_in(&run.stdout).expect("run id printed");
    wait_until("the first step to print", Duration::from_secs(60), || mesh.pmesh(&["runs", "logs", &run_id]).stdout.contains("first-1"))?;
    proxy.cut();
    let cut_at = std::time::Instant::now();
    let logs_during = mesh.pmesh(&["runs", "logs", &run_id]).stdout.lines().count();
    // Hold the partition for 20 seconds: the run goes on at the agent meanwhile.
    wait_until("20 seconds of partition", Duration::from_secs(25), || cut_at.elapsed() >= Duration::from_secs(20))?;
    let logs_after_cut = mesh.pmesh(&["runs", "logs", &run_id]).stdout.lines().count();
    assert!(logs_after_cut <= logs_during + 2, "no events crossed the cut ({logs_during} then {logs_after_cut})");
    proxy.restore();

    let watch = mesh.pmesh(&["runs", "watch", &run_id]);
    assert_eq!(watch.code, 0, "{}\n{}", watch.stdout, watch.stderr);
    let all = events(&mesh, &run_id);
    assert_contiguous(&all);
    let lines: Vec<&str> = all.iter().filter(|event| event["kind"] == "log").filter_map(|event| event["text"].as_str()).collect();
    let expected: Vec<String> =
        ["first", "second", "third"].iter().flat_map(|step| (1..=12).map(move |line| format!("{step}-{line}"))).collect();
    assert_eq!(lines, expected, "every line, in order, once");
    Ok(())
}

/// A run past its `--timeout` is stopped on the agent and fails, saying so.
#[test]
fn a_run_past_its_timeout_fails_and_its_containers_stop() -> anyhow::Result<()> {
    let (mesh, _master, _agents) = lab(&["pc-1"])?;
    let instance = Instance::new("late");
    let run = mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0, "-p", "pause=30", "--timeout", "3s"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("FAILED: the run timed out after 3s"), "{}", run.stdout);
    let running = pmesh_tests::docker::docker(&["ps", "-q", "--filter", &format!("label=io.pmesh.instance={}", instance.0)]);
    assert!(running.is_empty(), "no container of the run is running");
    Ok(())
}

/// SIGKILL the agent in the middle of a long run step and start it again: the step's
/// container is re-adopted, not restarted, and the run completes with every line once.
#[test]
fn a_killed_agent_readopts_its_running_container() -> anyhow::Result<()> {
    let (mesh, _master, mut agents) = lab(&["pc-1"])?;
    let instance = Instance::new("adopt");
    let run = mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0, "-p", "pause=1", "-p", "lines=6", "--detach"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run_id = run_id_in(&run.stdout).expect("run id printed");
    wait_until("the second step to print", Duration::from_secs(60), || mesh.pmesh(&["runs", "logs", &run_id]).stdout.contains("second-2"))?;
    let container = format!("pmesh-pc-1-{}-second", instance.0);
    let started_at = |name: &str| pmesh_tests::docker::docker(&["inspect", "-f", "{{.Id}} {{.State.StartedAt}}", name]);
    let before = started_at(&container);
    agents[0].kill();
    agents[0] = mesh.start_agent("pc-1", &[])?;
    let watch = mesh.pmesh(&["runs", "watch", &run_id]);
    assert_eq!(watch.code, 0, "{}\n{}", watch.stdout, watch.stderr);
    assert_eq!(started_at(&container), before, "the same container, never restarted");
    let all = events(&mesh, &run_id);
    assert_contiguous(&all);
    let lines: Vec<&str> = all.iter().filter(|event| event["kind"] == "log").filter_map(|event| event["text"].as_str()).collect();
    let expected: Vec<String> =
        ["first", "second", "third"].iter().flat_map(|step| (1..=6).map(move |line| format!("{step}-{line}"))).collect();
    assert_eq!(lines, expected, "every line, in order, once");
    Ok(())
}

/// A container removed while its agent was down fails its step with a clear reason.
#[test]
fn a_container_that_vanished_fails_its_step_clearly() -> anyhow::Result<()> {
    let (mesh, _master, mut agents) = lab(&["pc-1"])?;
    let instance = Instance::new("gone");
    let run = mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0, "-p", "pause=2", "-p", "lines=10", "--detach"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run_id = run_id_in(&run.stdout).expect("run id printed");
    wait_until("the first step to print", Duration::from_secs(60), || mesh.pmesh(&["runs", "logs", &run_id]).stdout.contains("first-1"))?;
    agents[0].kill();
    pmesh_tests::docker::docker(&["rm", "-f", &format!("pmesh-pc-1-{}-first", instance.0)]);
    agents[0] = mesh.start_agent("pc-1", &[])?;
    let watch = mesh.pmesh(&["runs", "watch", &run_id]);
    assert_eq!(watch.code, 1, "{}\n{}", watch.stdout, watch.stderr);
    assert!(watch.stdout.contains("FAILED: the container of step first vanished while the agent was down"), "{}", watch.stdout);
    Ok(())
}

/// Several runs of a pattern the agent does not hold yet, started at once: each start pushes
/// the bundle, and every run succeeds (concurrent writes of one bundle once collided on a
/// fixed temporary file name, and the master then called the agent unreachable).
#[test]
fn runs_started_at_once_on_an_agent_without_the_bundle_all_succeed() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let _agent = mesh.start_agent("pc-1", &[])?;
    let push = mesh.pmesh(&["pattern", "push", concat!(env!("CARGO_MANIFEST_DIR"), "/patterns/noop")]);
    anyhow::ensure!(push.code == 0, "push failed: {}", push.stderr);
    let port = mesh.master_port.to_string();
    let runs: Vec<pmesh_tests::Run> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|run_idx| {
                let (mesh, port) = (&mesh, &port);
                scope.spawn(move || {
                    let instance = format!("at-once-{run_idx}");
                    mesh.pmesh(&["run", "noop", "--on", "pc-1", "--instance", &instance, "-p", &format!("port={port}")])
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().expect("a run thread")).collect()
    });
    for run in &runs {
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        assert!(!run.stdout.contains("unreachable"), "{}", run.stdout);
    }
    Ok(())
}

/// A host installed again (its data directory gone) and enrolled again under its name with a
/// `--force` token starts a new journal, numbered from 1 again, while the master's cursor is
/// still far into the old one: the master must follow the new journal from its start, not skip
/// its events as replays.
#[test]
fn a_host_installed_again_under_its_name_has_its_new_journal_followed() -> anyhow::Result<()> {
    let (mesh, _master, mut agents) = lab(&["pc-1"])?;
    let instance = Instance::new("again");
    // Several runs move the cursor well past what the new journal's first run will number.
    for _ in 0..3 {
        let run = mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0, "-p", "lines=3"]);
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    }
    agents[0].terminate(Duration::from_secs(20))?;
    std::fs::remove_dir_all(mesh.agent_dir("pc-1"))?;
    mesh.enrol("pc-1", &["--name", "pc-1", "--force", "--label", "site=lab"])?;
    let _agent = mesh.start_agent("pc-1", &[])?;

    let run = mesh.pmesh(&["run", "steps", "--on", "pc-1", "--instance", &instance.0, "-p", "lines=3", "--detach"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run_id = run_id_in(&run.stdout).expect("run id printed");
    wait_until("the run on the new journal to end on the master", Duration::from_secs(90), || {
        let shown = mesh.pmesh(&["runs", "show", &run_id, "-o", "json"]);
        shown.stdout.contains("succeeded") || shown.stdout.contains("failed")
    })?;
    let shown = mesh.pmesh(&["runs", "show", &run_id, "-o", "json"]);
    assert!(shown.stdout.contains("succeeded"), "{}", shown.stdout);
    let all = events(&mesh, &run_id);
    assert_contiguous(&all);
    assert_eq!(all.first().and_then(|event| event["seq"].as_u64()), Some(1), "the new journal is read from its start: {all:?}");
    Ok(())
}
