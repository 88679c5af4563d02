//! Fuzzes `agent.toml`: parsed as `AgentConfig::load` parses it, then range-checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmesh_agent::config::AgentConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = toml::from_str::<AgentConfig>(text) else { return };
    if let Err(invalid) = config.validate() {
        let _ = invalid.to_string();
    }
});
