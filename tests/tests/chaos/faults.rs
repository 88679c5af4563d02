//! The fault schedule of a round, drawn from the seeded RNG: a few times, after a random
//! delay, SIGKILL the master or a random agent and start it again after a random downtime;
//! about half the time, also partition a random agent (both directions, through its proxies)
//! for a few seconds. Every daemon is up and every link healed when [`inject`] returns, so
//! the round's runs can finish.
//!
//! The pauses here are the schedule itself (when a fault strikes, how long it lasts), not a
//! wait for anything: what the test waits for afterwards always has a condition and a
//! deadline.

use std::time::Duration;

use pmesh_tests::chaos::ChaosMesh;
use rand::rngs::StdRng;
use rand::Rng;

/// Faults per round.
pub const PER_ROUND: usize = 2;

/// Lets the schedule's time pass: the gap before a fault, or how long it lasts.
fn hold(duration: Duration) {
    std::thread::sleep(duration);
}

fn millis(rng: &mut StdRng, range: std::ops::Range<u64>) -> Duration {
    Duration::from_millis(rng.random_range(range))
}

/// Injects the round's faults; returns what was done, one phrase per fault, for the report.
///
/// # Errors
/// When a daemon does not come back up: that is a finding in itself, and the error carries
/// its log.
pub fn inject(chaos: &mut ChaosMesh, rng: &mut StdRng) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    for _ in 0..PER_ROUND {
        hold(millis(rng, 1_000..5_000));
        let victim = rng.random_range(0..=chaos.agents.len());
        let downtime = millis(rng, 200..3_000);
        if victim == 0 {
            chaos.kill_master();
            hold(downtime);
            chaos.restart_master()?;
            done.push(format!("kill master {:.1}s", downtime.as_secs_f64()));
        } else {
            let agent_idx = victim - 1;
            chaos.kill_agent(agent_idx);
            hold(downtime);
            chaos.restart_agent(agent_idx)?;
            done.push(format!("kill {} {:.1}s", chaos.agents[agent_idx].name, downtime.as_secs_f64()));
        }
        if rng.random_bool(0.5) {
            let agent_idx = rng.random_range(0..chaos.agents.len());
            let cut_for = millis(rng, 2_000..8_000);
            hold(millis(rng, 0..2_000));
            chaos.partition(agent_idx);
            hold(cut_for);
            chaos.heal(agent_idx);
            done.push(format!("cut {} {:.1}s", chaos.agents[agent_idx].name, cut_for.as_secs_f64()));
        }
    }
    Ok(done)
}
