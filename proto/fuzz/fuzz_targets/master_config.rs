//! Fuzzes `master.toml`: parsed as `MasterConfig::load` parses it, then range-checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmesh_master::config::MasterConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = toml::from_str::<MasterConfig>(text) else { return };
    if config.validate().is_ok() {
        let _ = config.advertise();
    }
});
