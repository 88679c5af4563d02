//! What a run reports while it happens, in the runner's own terms, and its one conversion into
//! the mesh's event record ([`pmesh_proto::event::RunEvent`]), which the journal keeps and the
//! wire carries. Events never carry environment values, and log lines pass through
//! [`Redactor`] so a tool that echoes a secret does not leak it.

use std::time::{SystemTime, UNIX_EPOCH};

use pmesh_proto::event::{Kind, RunEvent, RunOutput};

pub use super::contract::ImageAction;

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
    RunStarted {
        instance: String,
        pattern: String,
        n_steps: usize,
    },
    ImageReady {
        reference: String,
        action: ImageAction,
    },
    StepStarted {
        step: String,
        attempt: u32,
    },
    /// The step's container or probe was already in the wanted state.
    StepUnchanged {
        step: String,
        container_id: Option<String>,
    },
    Log {
        step: String,
        line: String,
    },
    Progress {
        step: String,
        percent: f32,
    },
    /// Bytes of an artifact moving (`step` is `artifact:NAME`).
    Transfer {
        step: String,
        transfer: super::contract::Transfer,
    },
    StepRetrying {
        step: String,
        attempt: u32,
        reason: String,
    },
    StepSucceeded {
        step: String,
        container_id: Option<String>,
    },
    StepFailed {
        step: String,
        reason: String,
        exit_code: Option<i64>,
        tail: Vec<String>,
    },
    StepSkipped {
        step: String,
        reason: String,
    },
    RunFinished {
        outcome: Outcome,
        /// A succeeded run's outputs, secret values included: the journal keeps them in the
        /// run's record, and [`Event::record`] withholds the secret ones.
        outputs: Vec<RunOutput>,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
}

impl Outcome {
    /// `succeeded`, `failed` or `cancelled`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

impl Event {
    /// The event as the journal records it, numbered `seq`.
    pub fn record(&self, seq: u64) -> RunEvent {
        let at_unix_ms = self.at.duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as i64).unwrap_or(0);
        let kind = match &self.kind {
            EventKind::RunStarted { .. } => Kind::RunStarted,
            EventKind::ImageReady { .. } => Kind::ImageReady,
            EventKind::StepStarted { .. } => Kind::StepStarted,
            EventKind::StepUnchanged { .. } => Kind::StepUnchanged,
            EventKind::Log { .. } => Kind::Log,
            EventKind::Progress { .. } | EventKind::Transfer { .. } => Kind::Progress,
            EventKind::StepRetrying { .. } => Kind::StepRetrying,
            EventKind::StepSucceeded { .. } => Kind::StepSucceeded,
            EventKind::StepFailed { .. } => Kind::StepFailed,
            EventKind::StepSkipped { .. } => Kind::StepSkipped,
            EventKind::RunFinished { .. } => Kind::RunFinished,
        };
        let mut out = RunEvent::new(seq, self.run_id.clone(), at_unix_ms, kind);
        if let Some(step) = self.kind.step() {
            out.step = step.to_owned();
        }
        match &self.kind {
            EventKind::RunStarted { instance, pattern, n_steps } => {
                out.instance = instance.clone();
                out.pattern = pattern.clone();
                out.text = format!("{n_steps} steps");
            }
            EventKind::ImageReady { reference, action } => out.text = format!("{reference} {}", action.name()),
            EventKind::StepStarted { attempt, .. } => out.attempt = *attempt,
            EventKind::Log { line, .. } => out.text = line.clone(),
            EventKind::Progress { percent, .. } => out.percent = f64::from(*percent),
            EventKind::Transfer { transfer, .. } => {
                out.percent = transfer.percent().unwrap_or(0.0);
                out.text = transfer.to_string();
                out.transfer = Some(*transfer);
            }
            EventKind::StepRetrying { attempt, reason, .. } => {
                out.attempt = *attempt;
                out.text = reason.clone();
            }
            EventKind::StepFailed { reason, exit_code, tail, .. } => {
                out.text = reason.clone();
                out.exit_code = *exit_code;
                out.tail = tail.clone();
            }
            EventKind::StepSkipped { reason, .. } => out.text = reason.clone(),
            EventKind::RunFinished { outcome, outputs } => {
                out.text = outcome.name().to_owned();
                out.outputs = outputs.iter().cloned().map(RunOutput::withheld).collect();
            }
            EventKind::StepUnchanged { .. } | EventKind::StepSucceeded { .. } => {}
        }
        out
    }
}

impl EventKind {
    /// The step the event belongs to; `None` for run-level events.
    pub fn step(&self) -> Option<&str> {
        match self {
            EventKind::RunStarted { .. } | EventKind::ImageReady { .. } | EventKind::RunFinished { .. } => None,
            EventKind::StepStarted { step, .. }
            | EventKind::StepUnchanged { step, .. }
            | EventKind::Log { step, .. }
            | EventKind::Progress { step, .. }
            | EventKind::Transfer { step, .. }
            | EventKind::StepRetrying { step, .. }
            | EventKind::StepSucceeded { step, .. }
            | EventKind::StepFailed { step, .. }
            | EventKind::StepSkipped { step, .. } => Some(step),
        }
    }
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

/// The longest line kept whole; a tool writing more without a newline is cut into pieces.
const MAX_LINE: usize = 64 * 1024;

/// Turns output that arrives in arbitrary pieces (a write may end mid-line, or mid-character)
/// into lines, split on `\n` and `\r` (ovftool and govc redraw progress with `\r`), trimmed
/// at the end, empty ones dropped.
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// The lines `chunk` completes; a trailing partial line waits for the next chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let mut lines = Vec::new();
        let mut start = 0;
        for (index, byte) in self.pending.iter().enumerate() {
            if matches!(byte, b'\n' | b'\r') {
                Self::keep(&self.pending[start..index], &mut lines);
                start = index + 1;
            }
        }
        self.pending.drain(..start);
        if self.pending.len() >= MAX_LINE {
            Self::keep(&self.pending, &mut lines);
            self.pending.clear();
        }
        lines
    }

    /// The last line, when the output ended without a newline.
    pub fn finish(&mut self) -> Option<String> {
        let mut lines = Vec::new();
        Self::keep(&self.pending, &mut lines);
        self.pending.clear();
        lines.pop()
    }

    fn keep(bytes: &[u8], lines: &mut Vec<String>) {
        let line = String::from_utf8_lossy(bytes);
        let line = line.trim_end();
        if !line.is_empty() {
            lines.push(line.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_outputs_never_reach_the_record() {
        let outputs = vec![
            RunOutput { name: "pw".into(), kind: "string".into(), secret: true, value: Some("hunter22".into()) },
            RunOutput { name: "port".into(), kind: "port".into(), secret: false, value: Some(53.into()) },
        ];
        let event = Event { at: UNIX_EPOCH, run_id: "r1".into(), kind: EventKind::RunFinished { outcome: Outcome::Succeeded, outputs } };
        let record = event.record(1);
        let json = serde_json::to_string(&record).unwrap();
        assert!(!json.contains("hunter22") && !format!("{event:?}").contains("hunter22"), "{json}");
        assert_eq!(record.outputs[0].value, None);
        assert_eq!(record.outputs[1].value, Some(53.into()));
    }

    #[test]
    fn redacts_secrets_longest_first() {
        let redactor = Redactor::new(["hunter2".to_string(), "hunter2-admin".to_string(), "x".to_string()]);
        assert_eq!(redactor.redact("pw=hunter2-admin and hunter2 x"), "pw=<redacted> and <redacted> x");
    }

    fn lines_of(chunks: &[&[u8]]) -> Vec<String> {
        let mut buffer = LineBuffer::default();
        let mut lines: Vec<String> = chunks.iter().flat_map(|chunk| buffer.push(chunk)).collect();
        lines.extend(buffer.finish());
        lines
    }

    #[test]
    fn splits_on_carriage_returns() {
        assert_eq!(lines_of(&[b"Disk progress: 1%\rDisk progress: 2%\r\nDone\n\n"]), ["Disk progress: 1%", "Disk progress: 2%", "Done"]);
    }

    #[test]
    fn lines_and_characters_cut_between_chunks_are_joined() {
        let text = "104\n105\nh\u{e9}llo\nlast";
        let bytes = text.as_bytes();
        for cut in 1..bytes.len() {
            assert_eq!(lines_of(&[&bytes[..cut], &bytes[cut..]]), ["104", "105", "h\u{e9}llo", "last"], "cut at {cut}");
        }
    }

    #[test]
    fn an_endless_line_is_cut_into_pieces() {
        let long = vec![b'x'; MAX_LINE + 10];
        let lines = lines_of(&[&long[..MAX_LINE / 2], &long[MAX_LINE / 2..], b"\n"]);
        assert_eq!(lines.iter().map(String::len).collect::<Vec<_>>(), [MAX_LINE + 10]);
    }
}
