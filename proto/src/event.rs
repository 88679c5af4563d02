//! A run's events as the mesh records them: [`RunEvent`] is the one shape an event has between
//! the agent's runner and the operator's screen. The agent journals it, the wire carries it
//! (`v1::RunEvent`, converted here and nowhere else), the master stores it and the CLI shows
//! it. Adding a field is one edit here (the struct and its two conversions) and one in the
//! `.proto` file.
//!
//! The stores keep this type inside their own versioned records (`"v": 1`), serialised with
//! serde: the kind as a name (`step_failed`), and, for stores written before the kind was
//! typed, also as the protocol's number.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::progress::Progress;
use crate::v1;

/// The gRPC metadata key under which `WatchEvents` names the journal it streams: a host
/// installed again under the same agent name has another journal, numbered from 1 again.
pub const JOURNAL_ID_METADATA: &str = "pmesh-journal-id";

/// One event of a run, with the agent-wide, gap-free sequence number the agent's journal gave
/// it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    pub seq: u64,
    pub run_id: String,
    pub at_unix_ms: i64,
    pub kind: Kind,
    /// The step, or empty for run-level events.
    #[serde(default)]
    pub step: String,
    /// The log line, the failure or skip reason, the image and how it was obtained, the
    /// number of steps, or the outcome.
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub percent: f64,
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// A failed step's last output lines.
    #[serde(default)]
    pub tail: Vec<String>,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub instance: String,
    #[serde(default)]
    pub pattern: String,
    /// An artifact transfer's progress (`progress` events of `artifact:NAME` steps).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "transfer_of_any_version")]
    pub transfer: Option<Progress>,
    /// A succeeded run's outputs (its `run_finished` event); secret ones without a value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<RunOutput>,
}

/// One output of a run: a pattern's `outputs` entry with its typed value. `Debug` never
/// shows a secret one's value.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutput {
    pub name: String,
    /// The output's type name (`string`, `port`, `url`, `list`, …).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// The value; `None` when it is withheld: always for a secret in an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

impl fmt::Debug for RunOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value: &dyn fmt::Debug = match (&self.value, self.secret) {
            (Some(_), true) => &"<secret>",
            (value, _) => value,
        };
        f.debug_struct("RunOutput")
            .field("name", &self.name)
            .field("type", &self.kind)
            .field("secret", &self.secret)
            .field("value", value)
            .finish()
    }
}

impl RunOutput {
    /// The output as events carry it: a secret one without its value.
    pub fn withheld(mut self) -> RunOutput {
        if self.secret {
            self.value = None;
        }
        self
    }
}

impl From<RunOutput> for v1::RunOutput {
    fn from(output: RunOutput) -> Self {
        let value_json = output.value.map(|value| value.to_string()).unwrap_or_default();
        v1::RunOutput { name: output.name, r#type: output.kind, secret: output.secret, value_json }
    }
}

impl TryFrom<v1::RunOutput> for RunOutput {
    type Error = EventError;

    fn try_from(output: v1::RunOutput) -> Result<Self, Self::Error> {
        let value = match output.value_json.as_str() {
            "" => None,
            json => Some(serde_json::from_str(json).map_err(|_| EventError::BadOutput(output.name.clone()))?),
        };
        Ok(RunOutput { name: output.name, kind: output.r#type, secret: output.secret, value })
    }
}

impl RunEvent {
    /// An event of `kind` with every other field empty.
    pub fn new(seq: u64, run_id: impl Into<String>, at_unix_ms: i64, kind: Kind) -> RunEvent {
        RunEvent {
            seq,
            run_id: run_id.into(),
            at_unix_ms,
            kind,
            step: String::new(),
            text: String::new(),
            percent: 0.0,
            exit_code: None,
            tail: Vec::new(),
            attempt: 0,
            instance: String::new(),
            pattern: String::new(),
            transfer: None,
            outputs: Vec::new(),
        }
    }

    /// Whether this event ends its run on its agent.
    pub fn ends_run(&self) -> bool {
        self.kind == Kind::RunFinished
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    RunStarted,
    ImageReady,
    StepStarted,
    StepUnchanged,
    Log,
    Progress,
    StepRetrying,
    StepSucceeded,
    StepFailed,
    StepSkipped,
    RunFinished,
}

/// Every kind with its stored name and its protocol value.
const KINDS: [(Kind, &str, v1::RunEventKind); 11] = [
    (Kind::RunStarted, "run_started", v1::RunEventKind::RunStarted),
    (Kind::ImageReady, "image_ready", v1::RunEventKind::ImageReady),
    (Kind::StepStarted, "step_started", v1::RunEventKind::StepStarted),
    (Kind::StepUnchanged, "step_unchanged", v1::RunEventKind::StepUnchanged),
    (Kind::Log, "log", v1::RunEventKind::Log),
    (Kind::Progress, "progress", v1::RunEventKind::Progress),
    (Kind::StepRetrying, "step_retrying", v1::RunEventKind::StepRetrying),
    (Kind::StepSucceeded, "step_succeeded", v1::RunEventKind::StepSucceeded),
    (Kind::StepFailed, "step_failed", v1::RunEventKind::StepFailed),
    (Kind::StepSkipped, "step_skipped", v1::RunEventKind::StepSkipped),
    (Kind::RunFinished, "run_finished", v1::RunEventKind::RunFinished),
];

impl Kind {
    /// The stored name: `run_started`, `step_failed`, …
    pub fn name(self) -> &'static str {
        KINDS.iter().find(|(kind, ..)| *kind == self).map(|(_, name, _)| *name).expect("KINDS lists every kind")
    }

    /// The kind a stored name stands for.
    pub fn from_name(name: &str) -> Option<Kind> {
        KINDS.iter().find(|(_, known, _)| *known == name).map(|(kind, ..)| *kind)
    }

    /// Whether the step this event belongs to is over (succeeded, unchanged, failed, skipped).
    pub fn ends_step(self) -> bool {
        matches!(self, Kind::StepSucceeded | Kind::StepUnchanged | Kind::StepFailed | Kind::StepSkipped)
    }
}

impl From<Kind> for v1::RunEventKind {
    fn from(kind: Kind) -> Self {
        KINDS.iter().find(|(known, ..)| *known == kind).map(|(.., wire)| *wire).expect("KINDS lists every kind")
    }
}

impl TryFrom<i32> for Kind {
    type Error = EventError;

    /// The kind the protocol's number stands for; `UNSPECIFIED` and numbers from a newer
    /// protocol are refused.
    fn try_from(number: i32) -> Result<Self, Self::Error> {
        KINDS.iter().find(|(.., wire)| *wire as i32 == number).map(|(kind, ..)| *kind).ok_or(EventError::UnknownKind(number))
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KindVisitor;

        impl Visitor<'_> for KindVisitor {
            type Value = Kind;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an event kind, by name or protocol number")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<Kind, E> {
                Kind::from_name(name).ok_or_else(|| E::unknown_variant(name, &[]))
            }

            fn visit_i64<E: de::Error>(self, number: i64) -> Result<Kind, E> {
                i32::try_from(number)
                    .ok()
                    .and_then(|number| Kind::try_from(number).ok())
                    .ok_or_else(|| E::custom(format!("unknown event kind {number}")))
            }

            fn visit_u64<E: de::Error>(self, number: u64) -> Result<Kind, E> {
                self.visit_i64(i64::try_from(number).unwrap_or(i64::MAX))
            }
        }

        deserializer.deserialize_any(KindVisitor)
    }
}

/// A wire event this build cannot represent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("unknown event kind {0} (is the peer newer than this build?)")]
    UnknownKind(i32),
    #[error("an event envelope carries no event")]
    Empty,
    #[error("output {0:?} carries a value that is not JSON")]
    BadOutput(String),
}

impl From<RunEvent> for v1::RunEvent {
    fn from(event: RunEvent) -> Self {
        let transfer = event.transfer.unwrap_or(Progress { done: 0, total: None, rate: 0.0, eta: None });
        v1::RunEvent {
            seq: event.seq,
            run_id: event.run_id,
            at_unix_ms: event.at_unix_ms,
            kind: v1::RunEventKind::from(event.kind) as i32,
            step: event.step,
            text: event.text,
            percent: event.percent,
            exit_code: event.exit_code.unwrap_or(0),
            has_exit_code: event.exit_code.is_some(),
            tail: event.tail,
            attempt: event.attempt,
            instance: event.instance,
            pattern: event.pattern,
            done_bytes: transfer.done,
            total_bytes: transfer.total.unwrap_or(0),
            rate_bytes_per_second: transfer.rate,
            outputs: event.outputs.into_iter().map(v1::RunOutput::from).collect(),
        }
    }
}

impl TryFrom<v1::RunEvent> for RunEvent {
    type Error = EventError;

    fn try_from(event: v1::RunEvent) -> Result<Self, Self::Error> {
        let moved = event.done_bytes > 0 || event.total_bytes > 0 || event.rate_bytes_per_second > 0.0;
        Ok(RunEvent {
            seq: event.seq,
            kind: Kind::try_from(event.kind)?,
            run_id: event.run_id,
            at_unix_ms: event.at_unix_ms,
            step: event.step,
            text: event.text,
            percent: event.percent,
            exit_code: event.has_exit_code.then_some(event.exit_code),
            tail: event.tail,
            attempt: event.attempt,
            instance: event.instance,
            pattern: event.pattern,
            transfer: moved.then(|| Progress::from_wire(event.done_bytes, event.total_bytes, event.rate_bytes_per_second)),
            outputs: event.outputs.into_iter().map(RunOutput::try_from).collect::<Result<_, _>>()?,
        })
    }
}

/// A run's event as the master serves it to watchers: which agent, and its position among the
/// run's events.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentEvent {
    pub agent: String,
    /// The position of the event among the run's events, for resuming a watch.
    pub index: u64,
    pub event: RunEvent,
}

impl From<AgentEvent> for v1::AgentRunEvent {
    fn from(envelope: AgentEvent) -> Self {
        v1::AgentRunEvent { agent: envelope.agent, index: envelope.index, event: Some(envelope.event.into()) }
    }
}

impl TryFrom<v1::AgentRunEvent> for AgentEvent {
    type Error = EventError;

    fn try_from(envelope: v1::AgentRunEvent) -> Result<Self, Self::Error> {
        let event = envelope.event.ok_or(EventError::Empty)?;
        Ok(AgentEvent { agent: envelope.agent, index: envelope.index, event: event.try_into()? })
    }
}

/// Reads a transfer as this type writes it, or as the master stored it before: a
/// `[done, total, rate]` triple.
fn transfer_of_any_version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Progress>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum AnyVersion {
        // First: serde would also read a sequence as a `Progress`, positionally.
        Triple(u64, u64, f64),
        Current(Progress),
    }
    Ok(Option::<AnyVersion>::deserialize(deserializer)?.map(|transfer| match transfer {
        AnyVersion::Current(progress) => progress,
        AnyVersion::Triple(done, total, rate) => Progress::from_wire(done, total, rate),
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn transfer_event() -> RunEvent {
        RunEvent {
            step: "artifact:esxi".into(),
            text: "1.0 KiB of 4.0 KiB".into(),
            percent: 25.0,
            transfer: Some(Progress { done: 1024, total: Some(4096), rate: 1024.0, eta: Some(Duration::from_secs(3)) }),
            ..RunEvent::new(7, "r1", 1_700_000_000_000, Kind::Progress)
        }
    }

    #[test]
    fn every_kind_round_trips_by_name_and_number() {
        for (kind, name, wire) in KINDS {
            assert_eq!(kind.name(), name);
            assert_eq!(Kind::from_name(name), Some(kind));
            assert_eq!(v1::RunEventKind::from(kind), wire);
            assert_eq!(Kind::try_from(wire as i32), Ok(kind));
            assert_eq!(serde_json::from_str::<Kind>(&serde_json::to_string(&kind).unwrap()).unwrap(), kind);
            assert_eq!(serde_json::from_str::<Kind>(&(wire as i32).to_string()).unwrap(), kind);
        }
        assert_eq!(Kind::try_from(0), Err(EventError::UnknownKind(0)));
        assert_eq!(Kind::try_from(99), Err(EventError::UnknownKind(99)));
        assert!(serde_json::from_str::<Kind>("\"exploded\"").is_err());
    }

    #[test]
    fn an_event_survives_the_wire() {
        let failed = RunEvent {
            step: "named".into(),
            text: "exit 1".into(),
            exit_code: Some(1),
            tail: vec!["a".into(), "b".into()],
            attempt: 2,
            ..RunEvent::new(3, "r1", 5, Kind::StepFailed)
        };
        let finished = RunEvent {
            text: "succeeded".into(),
            outputs: vec![
                RunOutput { name: "port".into(), kind: "port".into(), secret: false, value: Some(serde_json::json!(53)) },
                RunOutput { name: "zones".into(), kind: "list".into(), secret: false, value: Some(serde_json::json!(["a", "b"])) },
                RunOutput { name: "password".into(), kind: "string".into(), secret: true, value: None },
            ],
            ..RunEvent::new(1, "r1", 0, Kind::RunFinished)
        };
        for event in [failed, transfer_event(), finished] {
            let wire = v1::RunEvent::from(event.clone());
            assert_eq!(RunEvent::try_from(wire).unwrap(), event);
        }
        let unknown = v1::RunEvent { kind: 42, ..v1::RunEvent::from(transfer_event()) };
        assert_eq!(RunEvent::try_from(unknown), Err(EventError::UnknownKind(42)));
    }

    #[test]
    fn a_secret_output_is_withheld() {
        let secret = RunOutput { name: "pw".into(), kind: "string".into(), secret: true, value: Some("hunter22".into()) };
        assert!(!format!("{secret:?}").contains("hunter22"), "{secret:?}");
        assert_eq!(secret.clone().withheld().value, None);
        let wire = v1::RunOutput::from(secret.withheld());
        assert_eq!(wire.value_json, "");
        let plain = RunOutput { name: "a".into(), kind: "string".into(), secret: false, value: Some("x".into()) };
        assert_eq!(plain.clone().withheld(), plain);
        let bad = v1::RunOutput { value_json: "{".into(), ..v1::RunOutput::from(plain) };
        assert_eq!(RunOutput::try_from(bad), Err(EventError::BadOutput("a".into())));
    }

    #[test]
    fn reads_the_agent_journal_records_written_before_it() {
        let journal = r#"{"v":1,"seq":7,"run_id":"r1","at_unix_ms":1,"kind":"progress","step":"artifact:a","text":"t",
            "percent":25.0,"exit_code":null,"tail":[],"attempt":0,"instance":"","pattern":"",
            "transfer":{"done":1024,"total":4096,"rate":1024.0,"eta_seconds":3}}"#;
        let event: RunEvent = serde_json::from_str(journal).unwrap();
        assert_eq!((event.kind, event.transfer.unwrap().total), (Kind::Progress, Some(4096)));
    }

    #[test]
    fn reads_the_master_records_written_before_it() {
        // The master stored the protocol's number and the transfer as a triple.
        let master = r#"{"v":1,"agent":"pc-1","seq":7,"run_id":"r1","at_unix_ms":1,"kind":6,"step":"artifact:a","text":"t",
            "percent":25.0,"exit_code":null,"tail":[],"attempt":0,"transfer":[1024,4096,1024.0]}"#;
        let event: RunEvent = serde_json::from_str(master).unwrap();
        assert_eq!(event.kind, Kind::Progress);
        assert_eq!(event.transfer, Some(Progress::from_wire(1024, 4096, 1024.0)));
        let without: RunEvent = serde_json::from_str(r#"{"seq":1,"run_id":"r","at_unix_ms":0,"kind":5}"#).unwrap();
        assert_eq!(without, RunEvent::new(1, "r", 0, Kind::Log));
    }
}
