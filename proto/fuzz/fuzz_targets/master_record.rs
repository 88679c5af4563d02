//! Fuzzes the master's stored records, as its store reads them back from sled (JSON, `"v": 1`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmesh_master::store::{
    AgentRecord, AgentState, ArtifactRecord, FactsRecord, IssuedRecord, PatternRecord, RunRecord, RunState, Segment, StoredEvent,
    TokenRecord,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes `data` as `T`; what decodes must serialise again.
fn read<T: Serialize + DeserializeOwned>(data: &[u8]) -> Option<T> {
    let record = serde_json::from_slice::<T>(data).ok()?;
    let _ = serde_json::to_vec(&record).expect("a decoded record serialises");
    Some(record)
}

fuzz_target!(|data: &[u8]| {
    if let Some(event) = read::<StoredEvent>(data) {
        let _ = event.into_wire(0);
    }
    if let Some(segment) = read::<Segment>(data) {
        for event in segment.events {
            let _ = event.into_wire(segment.first);
        }
    }
    if let Some(run) = read::<RunRecord>(data) {
        let _ = run.overall().as_str();
    }
    let _ = read::<AgentRecord>(data);
    let _ = read::<AgentState>(data);
    let _ = read::<ArtifactRecord>(data);
    let _ = read::<FactsRecord>(data);
    let _ = read::<IssuedRecord>(data);
    let _ = read::<PatternRecord>(data);
    let _ = read::<TokenRecord>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<RunState>();
    }
});
