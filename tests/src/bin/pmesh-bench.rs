//! `pmesh-bench`: pmesh's benchmark. It starts real processes on loopback (release builds,
//! from `$PMESH_BIN_DIR`) and prints each measurement beside its target. It asserts nothing:
//! performance is reported, not tested.
//!
//! - fan-out: `pmesh run --all` of a container-less pattern, to completion, on 10, 50 and 200
//!   agents;
//! - events: one container printing lines as fast as it can, received by a watcher of the run
//!   (events per second); then one printing them at a steady rate (500 lines every 10 ms), for
//!   p50/p99 latency from the agent's event time to the watcher;
//! - start latency: from the start request to the step container's start, beside
//!   `docker run -d` of the same image;
//! - idle RSS of the master and of an agent;
//! - a large artifact (1 GiB by default) fetched by an agent over loopback HTTP and from the
//!   master's depot over mTLS, beside `curl -o - URL | sha256sum` of the same file.
//!
//! Usage: `tests/bench.sh [--agents 10,50,200] [--lines 100000] [--artifact-mib 1024] [--burst 500]`
//! (`--burst`: lines the latency pattern writes every 10 ms).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use pmesh_proto::v1;
use pmesh_tests::{wait_until, Mesh};

fn patterns_dir(name: &str) -> String {
    format!("{}/patterns/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A `/proc/PID/status` memory field in KiB: `VmRSS`, or its parts `RssAnon` (heap and
/// stacks) and `RssFile` (the binary's pages in memory, shared with every agent).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find(|line| line.starts_with(&format!("{field}:"))).and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as i64).unwrap_or(0)
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn docker_started_at_ms(name: &str) -> anyhow::Result<i64> {
    let output = std::process::Command::new("docker").args(["inspect", "-f", "{{.State.StartedAt}}", name]).output()?;
    anyhow::ensure!(output.status.success(), "no container {name} yet");
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let parsed = humantime::parse_rfc3339_weak(text.trim_end_matches('Z').split('.').next().unwrap_or_default())
        .with_context(|| format!("StartedAt {text:?}"))?;
    let nanos: u64 = text
        .split('.')
        .nth(1)
        .map(|fraction| fraction.trim_end_matches('Z'))
        .map(|digits| format!("{digits:0<9}")[..9].parse().unwrap_or(0))
        .unwrap_or(0);
    Ok((parsed.duration_since(UNIX_EPOCH)?.as_nanos() as u64 / 1_000_000 + nanos / 1_000_000) as i64)
}

/// Runs `pattern` on a001 and watches it to the end: the number of log events, the seconds
/// from the first to the last, and each one's latency from the agent's event time.
async fn watch_run(
    connection: &pmesh_master::cli::client::Connection,
    pattern: &str,
    values: &str,
    instance: &str,
) -> anyhow::Result<(u64, f64, Vec<f64>)> {
    let mut client = connection.client.clone();
    let started = client
        .start_run(v1::MasterStartRunRequest {
            pattern: pattern.into(),
            on: vec!["a001".into()],
            values_json: values.into(),
            instance: instance.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut request = tonic::Request::new(v1::WatchRunRequest { run_id: started.run_id.clone(), from_index: 0, no_follow: false });
    request.set_timeout(Duration::from_secs(3600));
    let mut stream = client.watch_run(request).await?.into_inner();
    let (mut count, mut first, mut last) = (0u64, None, Instant::now());
    let mut latencies = Vec::new();
    while let Some(envelope) = stream.message().await? {
        let Some(event) = envelope.event else { continue };
        if std::env::var_os("PMESH_BENCH_DEBUG").is_some() {
            eprintln!("{event:?}");
        }
        if event.kind == v1::RunEventKind::Log as i32 {
            first.get_or_insert_with(Instant::now);
            last = Instant::now();
            count += 1;
            latencies.push((now_ms() - event.at_unix_ms) as f64);
        }
    }
    let seconds = first.map(|first| last.duration_since(first).as_secs_f64()).unwrap_or(f64::NAN);
    Ok((count, seconds, latencies))
}

/// The time an artifact step took on its agent, from the run's own events (`artifact:NAME`
/// started to succeeded, both stamped by the agent).
async fn artifact_seconds(
    connection: &pmesh_master::cli::client::Connection,
    agent: &str,
    instance: &str,
    values: &str,
) -> anyhow::Result<f64> {
    let mut client = connection.client.clone();
    let started = client
        .start_run(v1::MasterStartRunRequest {
            pattern: "bench-artifact".into(),
            on: vec![agent.into()],
            values_json: values.into(),
            instance: instance.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut request = tonic::Request::new(v1::WatchRunRequest { run_id: started.run_id.clone(), from_index: 0, no_follow: false });
    request.set_timeout(Duration::from_secs(3600));
    let mut stream = client.watch_run(request).await?.into_inner();
    let (mut began, mut ended) = (None, None);
    while let Some(envelope) = stream.message().await? {
        let Some(event) = envelope.event else { continue };
        if event.step != "artifact:blob" {
            continue;
        }
        match v1::RunEventKind::try_from(event.kind) {
            Ok(v1::RunEventKind::StepStarted) => began = Some(event.at_unix_ms),
            Ok(v1::RunEventKind::StepSucceeded) => ended = Some(event.at_unix_ms),
            Ok(v1::RunEventKind::StepFailed) => bail!("the artifact fetch failed on {agent}: {}", event.text),
            _ => {}
        }
    }
    match (began, ended) {
        (Some(began), Some(ended)) => Ok((ended - began) as f64 / 1000.0),
        _ => bail!("no artifact step in the run on {agent}"),
    }
}

/// Fetching a large artifact over HTTP and from the depot, beside `curl | sha256sum` of the
/// same file from the same server. Uses agents a002 and a003, whose caches are empty.
fn artifact_bench(
    mesh: &Mesh,
    runtime: &tokio::runtime::Runtime,
    connection: &pmesh_master::cli::client::Connection,
    mib: usize,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let size = mib * 1024 * 1024;
    let content: Vec<u8> = (0..size as u64).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8).collect();
    let sha256 = pmesh_proto::bundle::digest(&content).trim_start_matches("sha256:").to_owned();
    let file = mesh.dir.path().join("blob.bin");
    std::fs::write(&file, &content)?;
    let server = pmesh_tests::http::FileServer::start(std::sync::Arc::new(content), pmesh_tests::http::Behaviour::default());
    let pattern = mesh.dir.path().join("bench-artifact");
    std::fs::create_dir_all(&pattern)?;
    std::fs::write(
        pattern.join("pattern.yaml"),
        format!(
            "apiVersion: pmesh/v1\nkind: Pattern\nmetadata:\n  name: bench-artifact\n  version: 1.0.0\n  description: One large artifact\n  category: basic-tool\n\
             params:\n  url:\n    type: string\n    required: true\n    description: Where it is\n\
             artifacts:\n  blob:\n    url: \"${{url}}\"\n    sha256: {sha256}\n    size: {size}\n\
             images:\n  tools:\n    ref: pmesh-test/tools:bookworm-1\n\
             steps:\n  check:\n    kind: run\n    image: tools\n    command: [\"true\"]\n    mounts:\n      - artifact: blob\n        target: /blob\n"
        ),
    )?;
    let push = mesh.pmesh(&["pattern", "push", pattern.to_str().context("a UTF-8 path")?]);
    anyhow::ensure!(push.code == 0, "push bench-artifact: {}", push.stderr);

    let curl = Instant::now();
    let output = std::process::Command::new("sh").args(["-c", &format!("curl -sS -o - {} | sha256sum", server.url())]).output()?;
    let curl = curl.elapsed().as_secs_f64();
    anyhow::ensure!(
        String::from_utf8_lossy(&output.stdout).starts_with(&sha256),
        "curl | sha256sum: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let over_http = runtime.block_on(artifact_seconds(connection, "a002", "art-http", &format!("{{\"url\": \"{}\"}}", server.url())))?;
    let added = mesh.pmesh(&["artifact", "add", file.to_str().context("a UTF-8 path")?, "--sha256", &sha256, "--name", "blob"]);
    anyhow::ensure!(added.code == 0, "artifact add: {}", added.stderr);
    let from_depot = runtime.block_on(artifact_seconds(connection, "a003", "art-depot", "{\"url\": \"http://127.0.0.1:1/nowhere\"}"))?;
    pmesh_tests::docker::remove_instance("art-http");
    pmesh_tests::docker::remove_instance("art-depot");

    let rate = |seconds: f64| format!("{:.0} MiB/s", mib as f64 / seconds);
    Ok(vec![
        (format!("artifact {mib} MiB: curl -o - | sha256sum, loopback HTTP"), rate(curl), "-".into()),
        (
            format!("artifact {mib} MiB: agent fetch over HTTP"),
            format!("{} ({:.2}x)", rate(over_http), curl / over_http),
            ">= 0.95x curl".into(),
        ),
        (
            format!("artifact {mib} MiB: agent fetch from the depot (mTLS)"),
            format!("{} ({:.2}x)", rate(from_depot), curl / from_depot),
            ">= 0.8x curl".into(),
        ),
    ])
}

struct Args {
    agents: Vec<usize>,
    lines: u64,
    artifact_mib: usize,
    /// Lines the latency pattern writes every 10 ms.
    burst: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut parsed = Args { agents: vec![10, 50, 200], lines: 100_000, artifact_mib: 1024, burst: 500 };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let value = raw.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--agents" => parsed.agents = value.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--lines" => parsed.lines = value.parse()?,
            "--artifact-mib" => parsed.artifact_mib = value.parse()?,
            "--burst" => parsed.burst = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(parsed)
}

fn main() -> anyhow::Result<()> {
    pmesh_proto::tls::install_default_provider();
    pmesh_tests::docker::require_tools_image();
    let args = args()?;
    let mut mesh = Mesh::init()?;
    mesh.check_interval = "5s".into();
    let master = mesh.start_master()?;
    for pattern in ["noop", "chatty", "paced"] {
        let push = mesh.pmesh(&["pattern", "push", &patterns_dir(pattern)]);
        anyhow::ensure!(push.code == 0, "push {pattern}: {}", push.stderr);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let connection = runtime
        .block_on(async { pmesh_master::cli::client::connect(None, &mesh.master_dir()) })
        .map_err(|err| anyhow::anyhow!(err.message))?;
    let mut results: Vec<(String, String, String)> = Vec::new();
    // Unique instances: a leftover container of an earlier, interrupted benchmark with the same
    // spec would make a step "unchanged" and measure nothing.
    let tag = std::process::id();

    // Events, start latency and artifacts first, with three agents: each measurement below
    // says how many processes shared the two cores while it ran.
    let mut agents = Vec::new();
    let enrol_up_to = |agents: &mut Vec<pmesh_tests::Daemon>, target: usize| -> anyhow::Result<()> {
        while agents.len() < target {
            let name = format!("a{:03}", agents.len() + 1);
            mesh.enrol(&name, &[])?;
            agents.push(mesh.start_agent(&name, &[])?);
        }
        // Measure only once the master has reached every agent.
        wait_until("every agent up", Duration::from_secs(120), || {
            mesh.agents().is_ok_and(|listed| listed.len() == agents.len() && listed.iter().all(|agent| agent["status"] == "up"))
        })
    };
    enrol_up_to(&mut agents, 3)?;

    // Events (three agents): throughput with one container printing lines as fast as it can, then latency
    // at a steady rate (a queue that grows during a burst measures the burst, not latency).
    let (count, seconds, _) =
        runtime.block_on(watch_run(&connection, "chatty", &format!("{{\"lines\": {}}}", args.lines), &format!("chatty-{tag}")))?;
    results.push((
        format!("events to a watcher, burst ({count} log events)"),
        format!("{:.0} /s", count as f64 / seconds),
        ">= 50000 /s".into(),
    ));
    let paced_values = format!("{{\"lines\": {}, \"burst\": {}, \"pause_ms\": 10}}", args.lines, args.burst);
    let (count, seconds, mut latencies) = runtime.block_on(watch_run(&connection, "paced", &paced_values, &format!("paced-{tag}")))?;
    latencies.sort_by(f64::total_cmp);
    results.push((
        format!("event latency p50 / p99 at {:.0} events/s", count as f64 / seconds),
        format!("{:.0} ms / {:.0} ms", percentile(&latencies, 0.5), percentile(&latencies, 0.99)),
        "p99 < 50 ms".into(),
    ));

    // Start latency beside docker run.
    let mut pmesh_ms = Vec::new();
    let mut docker_ms = Vec::new();
    let mut network_ms = Vec::new();
    for round in 0..5 {
        let instance = format!("start{round}-{tag}");
        let t0 = now_ms();
        runtime.block_on(connection.client.clone().start_run(v1::MasterStartRunRequest {
            pattern: "chatty".into(),
            on: vec!["a001".into()],
            values_json: "{\"lines\": 1}".into(),
            instance: instance.clone(),
            ..Default::default()
        }))?;
        let name = format!("pmesh-a001-{instance}-print");
        wait_until("the step container", Duration::from_secs(30), || docker_started_at_ms(&name).is_ok_and(|at| at > 0))?;
        pmesh_ms.push((docker_started_at_ms(&name)? - t0) as f64);
        let t1 = now_ms();
        let id = pmesh_tests::docker::docker(&["run", "-d", pmesh_tests::docker::TOOLS_IMAGE, "true"]);
        docker_ms.push((docker_started_at_ms(&id)? - t1) as f64);
        pmesh_tests::docker::docker(&["rm", "-f", &id]);
        // What a pattern instance does in Docker: its own network, then the container on it.
        let network = format!("bench-net{round}-{tag}");
        let t2 = now_ms();
        pmesh_tests::docker::docker(&["network", "create", &network]);
        let id = pmesh_tests::docker::docker(&["run", "-d", "--network", &network, pmesh_tests::docker::TOOLS_IMAGE, "true"]);
        network_ms.push((docker_started_at_ms(&id)? - t2) as f64);
        pmesh_tests::docker::docker(&["rm", "-f", &id]);
        pmesh_tests::docker::docker(&["network", "rm", &network]);
        pmesh_tests::docker::remove_instance(&instance);
    }
    pmesh_ms.sort_by(f64::total_cmp);
    docker_ms.sort_by(f64::total_cmp);
    let (pmesh_median, docker_median) = (pmesh_ms[2], docker_ms[2]);
    results.push((
        "start latency, pmesh (median of 5)".into(),
        format!("{pmesh_median:.0} ms"),
        format!("<= 1.2 x docker run = {:.0} ms", docker_median * 1.2),
    ));
    results.push(("start latency, docker run -d (median of 5)".into(), format!("{docker_median:.0} ms"), "-".into()));
    network_ms.sort_by(f64::total_cmp);
    results.push(("start latency, docker network create + run -d (median of 5)".into(), format!("{:.0} ms", network_ms[2]), "-".into()));
    if args.artifact_mib > 0 {
        results.extend(artifact_bench(&mesh, &runtime, &connection, args.artifact_mib)?);
    }
    // Fan-out.
    for &target in &args.agents {
        enrol_up_to(&mut agents, target)?;
        let mut samples = Vec::new();
        for round in 0..3 {
            let started = Instant::now();
            let run = mesh.pmesh(&[
                "run",
                "noop",
                "--all",
                "--instance",
                &format!("fan{target}r{round}-{tag}"),
                "-p",
                &format!("port={}", mesh.master_port),
            ]);
            let elapsed = started.elapsed();
            anyhow::ensure!(
                run.code == 0,
                "fan-out run on {target} agents: {}\n{}",
                run.stderr,
                run.stdout
                    .lines()
                    .filter(|line| line.contains("FAILED") || line.contains("failed") || line.contains("unreachable"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            samples.push(elapsed.as_secs_f64());
        }
        samples.sort_by(f64::total_cmp);
        results.push((
            format!("fan-out, {target} agents (median of 3, CLI wall clock)"),
            format!("{:.3} s", samples[1]),
            if target == 200 { "< 1 s".into() } else { "-".into() },
        ));
    }

    // Idle RSS: memory after five seconds with nothing to do is what is measured, so this
    // pause is the measurement's definition, not a wait for a condition.
    std::thread::sleep(Duration::from_secs(5));
    results.push(("master idle RSS".into(), format!("{:.1} MB", rss_kib(master.pid()) as f64 / 1024.0), "-".into()));
    let mut agent_rss: Vec<u64> = agents.iter().map(|agent| rss_kib(agent.pid())).collect();
    agent_rss.sort_unstable();
    results.push(("agent idle RSS (median)".into(), format!("{:.1} MB", agent_rss[agent_rss.len() / 2] as f64 / 1024.0), "< 15 MB".into()));
    let median_of = |field: &str| {
        let mut values: Vec<u64> = agents.iter().map(|agent| status_kib(agent.pid(), field)).collect();
        values.sort_unstable();
        values[values.len() / 2] as f64 / 1024.0
    };
    results.push((
        "  of which anonymous / file-backed (medians)".into(),
        format!("{:.1} MB / {:.1} MB", median_of("RssAnon"), median_of("RssFile")),
        "-".into(),
    ));

    pmesh_tests::docker::remove_instance(&format!("chatty-{tag}"));
    pmesh_tests::docker::remove_instance(&format!("paced-{tag}"));
    for round in 0..3 {
        for &target in &args.agents {
            pmesh_tests::docker::remove_instance(&format!("fan{target}r{round}-{tag}"));
        }
    }

    println!("\n{:<58} {:>20}  TARGET", "MEASUREMENT", "MEASURED");
    for (name, measured, target) in results {
        println!("{name:<58} {measured:>20}  {target}");
    }
    drop(agents);
    Ok(())
}
