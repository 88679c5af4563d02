//! Fuzzes the lab file (`pmesh lab lint/plan/up FILE`): the YAML reader under its bounds, the
//! decoder with every diagnostic, and on a lab that parses, the dependency order, the instance
//! names and the output references of every value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmesh_proto::lab;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match lab::parse("lab.yaml", &text) {
        Ok(parsed) => {
            for component in parsed.order() {
                let _ = parsed.instance(component, component.count.saturating_sub(1));
                for value in &component.values {
                    let _ = lab::refs::references(&value.value);
                }
            }
        }
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                let _ = diagnostic.to_string();
            }
        }
    }
});
