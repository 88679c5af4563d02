//! The chaos suite: a master and three agents, every link between them through a proxy
//! ([`pmesh_tests::chaos::ChaosMesh`]), real binaries, real TLS, real sled and real Docker.
//!
//! Each round starts 20 runs at once across the agents (the `chaos` pattern: four steps in a
//! diamond, each printing numbered lines at a pace, so a run takes some seconds and every line
//! it must produce is known), then injects faults while they go on: SIGKILLs of the master or
//! of a random agent, restarted after a random downtime, and partitions of a random agent
//! (`faults`). It waits, with a deadline, until every run has ended, then counts (`audit`),
//! from the events the master stored and from Docker, the lost events, duplicated events,
//! orphan containers (before and after `pmesh-agent pattern destroy`) and wrong final states.
//! It prints the counts per round and in total, with one line per finding, and asserts that
//! every count is 0.
//!
//! Beside it, in the same binary: `skew` (an agent whose clock is behind or ahead by more than
//! `clock_skew`, under libfaketime) and `full_disk` (a small tmpfs filled under the agent's
//! journal, the agent's artifact cache and the master's data directory, then freed: a clear
//! error or a held run, nothing lost, duplicated or corrupted, and recovery).
//!
//! Bounds and replay, from the environment:
//! - `PMESH_CHAOS_ROUNDS`: rounds to run (default 4: about 3 to 4 minutes on a 2-core
//!   machine shared with other builds);
//! - `PMESH_CHAOS_SECONDS`: run rounds until this many seconds have passed instead (at least
//!   one), for a longer soak on demand;
//! - `PMESH_CHAOS_SEED`: the RNG seed of the fault schedule. The seed is printed first; set it
//!   to replay a failed run's schedule (timings on a loaded machine still vary).
//!
//! Run it with `cargo build --workspace --bins && cargo test -p pmesh-tests --test chaos --
//! --nocapture`.

mod audit;
mod faults;
mod full_disk;
mod runs;
mod skew;

use std::time::{Duration, Instant};

use audit::{Counts, Findings, SeqLedger};
use pmesh_tests::chaos::ChaosMesh;
use pmesh_tests::docker::require_tools_image;
use rand::SeedableRng;

const DEFAULT_ROUNDS: usize = 4;
const RUNS_PER_ROUND: usize = 20;
const N_AGENTS: usize = 3;
const LINES_PER_STEP: u32 = 10;
const PAUSE_MS: u32 = 300;
/// How long a round's runs may take to end once the faults are over: generous, for a shared
/// 2-core machine.
const END_DEADLINE: Duration = Duration::from_secs(300);

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(text.trim().parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")))
}

/// When to stop starting rounds.
enum Budget {
    Rounds(usize),
    Until(Instant),
}

impl Budget {
    fn from_env() -> Budget {
        match env_number("PMESH_CHAOS_SECONDS") {
            Some(seconds) => Budget::Until(Instant::now() + Duration::from_secs(seconds)),
            None => Budget::Rounds(env_number("PMESH_CHAOS_ROUNDS").map_or(DEFAULT_ROUNDS, |rounds| rounds as usize)),
        }
    }

    fn another(&self, done: usize) -> bool {
        match self {
            Budget::Rounds(rounds) => done < *rounds,
            Budget::Until(until) => done == 0 || Instant::now() < *until,
        }
    }
}

/// What a round did and found, with the timeline of each run a finding names.
struct Round {
    faults: Vec<String>,
    findings: Findings,
    timelines: Vec<(String, String)>,
}

/// One round: start the runs, inject the faults, wait for the runs to end, count.
fn round(chaos: &mut ChaosMesh, rng: &mut rand::rngs::StdRng, round_idx: usize, ledger: &mut SeqLedger) -> anyhow::Result<Round> {
    let agent_names: Vec<String> = chaos.agents.iter().map(|agent| agent.name.clone()).collect();
    // Every agent up before the runs start: a start is not a fault this suite injects.
    for name in &agent_names {
        pmesh_tests::wait_until(&format!("{name} to be up"), Duration::from_secs(60), || chaos.mesh.status(name).as_deref() == Some("up"))?;
    }
    let params = [format!("lines={LINES_PER_STEP}"), format!("pause_ms={PAUSE_MS}")];
    let started = runs::start(&chaos.mesh, round_idx, RUNS_PER_ROUND, &agent_names, &params)?;
    let faults = faults::inject(chaos, rng)?;
    let states = runs::wait_ended(&chaos.mesh, &started, END_DEADLINE);

    let mut findings = Findings::default();
    let mut timelines = Vec::new();
    for (run, state) in started.iter().zip(&states) {
        let noted = findings.notes.len();
        let shown = runs::show(&chaos.mesh, &run.run_id);
        let agent_state = shown["agents"][&run.agent]["state"].as_str().unwrap_or_default().to_owned();
        if state != "succeeded" || agent_state != "succeeded" {
            let error = shown["agents"][&run.agent]["error"].as_str().unwrap_or_default().to_owned();
            findings.wrong_state(format!("run {} ({}) ended {state:?}, {} {agent_state:?} {error}", run.run_id, run.instance.0, run.agent));
        }
        let events = runs::events(&chaos.mesh, &run.run_id, Duration::from_secs(30))?;
        ledger.record(&run.run_id, &events, &mut findings);
        audit::check_run(&run.run_id, &run.agent, LINES_PER_STEP, &events, &mut findings);
        if findings.notes.len() > noted {
            timelines.push((run.run_id.clone(), audit::timeline(&events)));
        }
    }
    ledger.gaps(&mut findings);

    let instances: Vec<String> = started.iter().map(|run| run.instance.0.clone()).collect();
    audit::check_containers(&instances, &audit::managed_containers(), &mut findings);
    for run in &started {
        runs::destroy(&chaos.mesh, run)?;
    }
    audit::check_destroyed(&instances, &audit::managed_containers(), &mut findings);
    Ok(Round { faults, findings, timelines })
}

#[test]
fn chaos_loses_duplicates_and_leaves_nothing() -> anyhow::Result<()> {
    require_tools_image();
    let seed = env_number("PMESH_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_nanos() as u64).unwrap_or(1)
    });
    println!("chaos seed {seed} (replay with PMESH_CHAOS_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let budget = Budget::from_env();
    let began = Instant::now();

    let mut chaos = ChaosMesh::start(N_AGENTS, &["--label", "site=chaos"])?;
    let push = chaos.mesh.pmesh(&["pattern", "push", &runs::pattern_dir()]);
    anyhow::ensure!(push.code == 0, "push failed: {}", push.stderr);

    let mut ledger = SeqLedger::default();
    let mut rows: Vec<(usize, Vec<String>, Counts)> = Vec::new();
    let mut notes = Vec::new();
    let mut dumps = Vec::new();
    let mut total = Counts::default();
    while budget.another(rows.len()) {
        let round_idx = rows.len() + 1;
        let round_began = Instant::now();
        let Round { faults, findings, timelines } = round(&mut chaos, &mut rng, round_idx, &mut ledger)?;
        dumps.extend(timelines);
        println!("round {round_idx} ({:.0}s): {} -> {}", round_began.elapsed().as_secs_f64(), faults.join(", "), findings.counts);
        notes.extend(findings.notes.iter().map(|note| format!("round {round_idx} {note}")));
        total.add(findings.counts);
        rows.push((round_idx, faults, findings.counts));
    }

    println!("\nchaos seed {seed}, {} rounds of {RUNS_PER_ROUND} runs in {:.0}s", rows.len(), began.elapsed().as_secs_f64());
    println!("{:<6} {:>6} {:>11} {:>8} {:>13}  faults", "round", "lost", "duplicated", "orphans", "wrong states");
    for (round_idx, faults, counts) in &rows {
        println!("{round_idx:<6} {counts}  {}", faults.join(", "));
    }
    println!("{:<6} {total}", "total");
    if !total.is_clean() {
        let dump = std::env::temp_dir().join(format!("pmesh-chaos-{seed}"));
        chaos.save_logs(&dump)?;
        for (run_id, timeline) in &dumps {
            std::fs::write(dump.join(format!("{run_id}.events")), timeline)?;
        }
        println!("the daemons' logs and the events of each run with a finding are in {}", dump.display());
    }
    assert!(total.is_clean(), "chaos seed {seed}: {total:?}\n{}", notes.join("\n"));
    Ok(())
}
