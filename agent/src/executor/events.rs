//! What a run reports while it happens. Events never carry environment values, and log lines
//! pass through [`Redactor`] so a tool that echoes a secret does not leak it.

use std::time::SystemTime;

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: SystemTime,
    pub run_id: String,
    pub kind: EventKind,
}

/// The kinds of events.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    RunStarted { instance: String, pattern: String, n_steps: usize },
    ImageReady { reference: String, action: ImageAction },
    StepStarted { step: String, attempt: u32 },
    /// The step's container or probe was already in the wanted state.
    StepUnchanged { step: String, container_id: Option<String> },
    Log { step: String, line: String },
    Progress { step: String, percent: f32 },
    StepRetrying { step: String, attempt: u32, reason: String },
    StepSucceeded { step: String, container_id: Option<String> },
    StepFailed { step: String, reason: String, exit_code: Option<i64>, tail: Vec<String> },
    StepSkipped { step: String, reason: String },
    RunFinished { outcome: Outcome },
}

/// How an image was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageAction {
    Present,
    Pulled,
    Loaded,
    Built,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
}

/// Replaces every secret value in a text with `<redacted>`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Redacts these values; empty and very short values are ignored (they would blank out
    /// ordinary text and hide nothing worth hiding).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|secret| secret.len() >= 4).collect();
        // Longest first, so a secret that contains another is redacted whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        Redactor { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "<redacted>"))
    }
}

/// Splits tool output into lines on `\n` and `\r` (ovftool and govc redraw progress with
/// `\r`), dropping empty ones.
pub fn split_lines(chunk: &str) -> impl Iterator<Item = &str> {
    chunk.split(['\n', '\r']).map(str::trim_end).filter(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets_longest_first() {
        let redactor = Redactor::new(["hunter2".to_string(), "hunter2-admin".to_string(), "x".to_string()]);
        assert_eq!(redactor.redact("pw=hunter2-admin and hunter2 x"), "pw=<redacted> and <redacted> x");
    }

    #[test]
    fn splits_on_carriage_returns() {
        let lines: Vec<&str> = split_lines("Disk progress: 1%\rDisk progress: 2%\r\nDone\n\n").collect();
        assert_eq!(lines, ["Disk progress: 1%", "Disk progress: 2%", "Done"]);
    }
}
