//! Fuzzes the agent journal's stored records and the wire's events: a journal segment (a JSON
//! array of events), a single event, a run record, and a protobuf `v1::RunEvent` converted into
//! the domain event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmesh_agent::journal::RunRecord;
use pmesh_proto::event::{AgentEvent, RunEvent};
use pmesh_proto::v1;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(segment) = serde_json::from_slice::<Vec<RunEvent>>(data) {
        // What the journal reads back, it writes the same way.
        let written = serde_json::to_vec(&segment).expect("events serialise");
        let reread: Vec<RunEvent> = serde_json::from_slice(&written).expect("written events read back");
        assert_eq!(reread.len(), segment.len());
    }
    if let Ok(event) = serde_json::from_slice::<RunEvent>(data) {
        let wire = v1::RunEvent::from(event.clone());
        let _ = RunEvent::try_from(wire);
        let _ = v1::AgentRunEvent::from(AgentEvent { agent: String::new(), index: 0, event });
    }
    if let Ok(run) = serde_json::from_slice::<RunRecord>(data) {
        let _ = serde_json::to_vec(&run).expect("a run record serialises");
    }
    if let Ok(wire) = v1::RunEvent::decode(data) {
        if let Ok(event) = RunEvent::try_from(wire) {
            let _ = serde_json::to_vec(&event).expect("an event serialises");
        }
    }
    if let Ok(wire) = v1::AgentRunEvent::decode(data) {
        let _ = AgentEvent::try_from(wire);
    }
});
