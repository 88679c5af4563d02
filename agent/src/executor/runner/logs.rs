//! Container output as events: lines reported as `Log` events (redacted), percentages the
//! step's progress regexes find reported as `Progress`, and the last lines kept for a failure
//! report.

use std::collections::VecDeque;

use futures_util::StreamExt;

use super::{Runner, TAIL_LINES};
use crate::executor::contract::OutputStream;
use crate::executor::events::{EventKind, LineBuffer};
use crate::executor::plan::{Plan, PlannedStep};

impl Runner {
    /// Streams a container's output as log and progress events, skipping the first `skip`
    /// lines (already reported before an agent restart); returns the last lines.
    pub(super) async fn follow_logs(&self, plan: &Plan, step: &PlannedStep, mut logs: OutputStream, mut skip: u64) -> VecDeque<String> {
        let mut tail = VecDeque::with_capacity(TAIL_LINES);
        let mut buffer = LineBuffer::default();
        while let Some(chunk) = logs.next().await {
            let Ok(chunk) = chunk else { break };
            self.report_lines(plan, step, buffer.push(&chunk), &mut skip, &mut tail).await;
        }
        self.report_lines(plan, step, buffer.finish().into_iter().collect(), &mut skip, &mut tail).await;
        tail
    }

    /// Reports `lines` after the first `skip` of them, keeping the last ones in `tail`.
    async fn report_lines(&self, plan: &Plan, step: &PlannedStep, lines: Vec<String>, skip: &mut u64, tail: &mut VecDeque<String>) {
        for line in lines {
            if *skip > 0 {
                *skip -= 1;
                continue;
            }
            self.report_line(plan, step, &line).await;
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(self.redactor.redact(&line));
        }
    }

    /// Reports one line, and the progress it shows, if any.
    pub(super) async fn report_line(&self, plan: &Plan, step: &PlannedStep, line: &str) {
        self.emit(&plan.run_id, EventKind::Log { step: step.name.clone(), line: line.to_owned() }).await;
        if let Some(percent) = progress(&step.progress, line) {
            self.emit(&plan.run_id, EventKind::Progress { step: step.name.clone(), percent }).await;
        }
    }
}

/// The percentage a progress regex extracts from `line`, if any.
pub fn progress(patterns: &[regex::Regex], line: &str) -> Option<f32> {
    patterns.iter().find_map(|pattern| {
        let percent: f32 = pattern.captures(line)?.get(1)?.as_str().parse().ok()?;
        (0.0..=100.0).contains(&percent).then_some(percent)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_regexes() {
        let patterns = vec![regex::Regex::new(r"Disk progress: (\d+)%").unwrap(), regex::Regex::new(r"\((\d+)%,").unwrap()];
        assert_eq!(progress(&patterns, "Disk progress: 42%"), Some(42.0));
        assert_eq!(progress(&patterns, "Uploading x.ova... (7%, 3 MiB/s)"), Some(7.0));
        assert_eq!(progress(&patterns, "Disk progress: 420%"), None);
        assert_eq!(progress(&patterns, "Opening OVA source"), None);
    }
}
