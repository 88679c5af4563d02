//! Download progress for a caller's callback: at most one report per interval, and one at the
//! end, with a smoothed rate so a bursty connection does not make the ETA jump about.
//!
//! The report itself, [`Progress`], is the contract's one transfer type
//! (`pmesh_proto::progress`): the same value travels from here into run events, the journal,
//! the master's store and the CLI.

use std::time::{Duration, Instant};

pub use pmesh_proto::progress::{human_bytes, Progress};

/// The shortest time between two reports.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_millis(250);

/// Weight of the newest sample in the exponentially weighted rate.
const SMOOTHING: f64 = 0.3;

/// Turns a stream of byte counts into rate-limited [`Progress`] reports.
pub(crate) struct Meter<'a> {
    report: &'a (dyn Fn(Progress) + Send + Sync),
    total: Option<u64>,
    rate: f64,
    sample: Option<(Instant, u64)>,
}

impl<'a> Meter<'a> {
    pub(crate) fn new(report: &'a (dyn Fn(Progress) + Send + Sync), total: Option<u64>) -> Self {
        Meter { report, total, rate: 0.0, sample: None }
    }

    pub(crate) fn set_total(&mut self, total: Option<u64>) {
        self.total = total;
    }

    /// Records that `done` bytes are held; reports when the interval has passed.
    pub(crate) fn advance(&mut self, done: u64) {
        self.advance_at(done, Instant::now());
    }

    pub(crate) fn advance_at(&mut self, done: u64, now: Instant) {
        let Some((at, then)) = self.sample else {
            // The first sample only starts the clock: a resumed prefix is not a rate.
            self.sample = Some((now, done));
            return;
        };
        let elapsed = now.saturating_duration_since(at);
        if elapsed < REPORT_INTERVAL {
            return;
        }
        // A restart from zero makes `done` go down; that interval measures nothing.
        let instant_rate = done.saturating_sub(then) as f64 / elapsed.as_secs_f64();
        self.rate = if self.rate == 0.0 { instant_rate } else { SMOOTHING * instant_rate + (1.0 - SMOOTHING) * self.rate };
        self.sample = Some((now, done));
        (self.report)(self.progress(done));
    }

    /// The final report.
    pub(crate) fn finish(&mut self, done: u64) {
        (self.report)(Progress { eta: Some(Duration::ZERO), ..self.progress(done) });
    }

    fn progress(&self, done: u64) -> Progress {
        let eta = match self.total {
            Some(total) if self.rate > 0.0 => Some(Duration::from_secs_f64(total.saturating_sub(done) as f64 / self.rate)),
            _ => None,
        };
        Progress { done, total: self.total, rate: self.rate, eta }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn reports_are_rate_limited_smoothed_and_final() {
        let reports = Mutex::new(Vec::new());
        let record = |progress: Progress| reports.lock().expect("not poisoned").push(progress);
        let mut meter = Meter::new(&record, Some(10_000));
        let start = Instant::now();
        let at = |millis| start + Duration::from_millis(millis);
        meter.advance_at(1_000, at(0)); // a resumed prefix: starts the clock
        meter.advance_at(1_500, at(100)); // too soon
        meter.advance_at(2_000, at(500)); // 1000 bytes in 0.5 s
        meter.advance_at(2_100, at(600)); // too soon
        meter.advance_at(3_000, at(1_000)); // 1000 bytes in 0.5 s again
        meter.advance_at(3_200, at(1_500)); // 200 bytes in 0.5 s: smoothed, not 400
        meter.finish(10_000);

        let reports = reports.into_inner().expect("not poisoned");
        let summary: Vec<(u64, f64, Option<u64>)> = reports.iter().map(|p| (p.done, p.rate, p.eta.map(|eta| eta.as_secs()))).collect();
        let smoothed = SMOOTHING * 400.0 + (1.0 - SMOOTHING) * 2000.0;
        assert_eq!(
            summary,
            vec![
                (2_000, 2000.0, Some(4)),
                (3_000, 2000.0, Some(3)),
                (3_200, smoothed, Some((6_800.0 / smoothed) as u64)),
                (10_000, smoothed, Some(0)),
            ]
        );
    }

    #[test]
    fn no_eta_without_a_size() {
        let reports = Mutex::new(Vec::new());
        let record = |progress: Progress| reports.lock().expect("not poisoned").push(progress);
        let mut meter = Meter::new(&record, None);
        let start = Instant::now();
        meter.advance_at(0, start);
        meter.advance_at(500, start + Duration::from_secs(1));
        assert_eq!(reports.lock().expect("not poisoned")[0], Progress { done: 500, total: None, rate: 500.0, eta: None });
    }
}
