//! Fuzzes parameter values: a values file (`--values FILE`) and each of its lines as a
//! `--set NAME=VALUE` assignment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmesh_proto::pattern;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(diagnostics) = pattern::values_from_yaml("values", &text) {
        for diagnostic in &diagnostics {
            let _ = diagnostic.to_string();
        }
    }
    let _ = pattern::parse_assignment(&text);
    for line in text.lines() {
        if let Err(problem) = pattern::parse_assignment(line) {
            let _ = problem.to_string();
        }
    }
});
