//! Fuzzes the pattern lint and parse: the input is `pattern.yaml`, and what follows its first
//! NUL byte (if any) is a template the pattern may name as `templates/t.j2`. A pattern that
//! parses has its defaults checked and that template rendered with them.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use pmesh_proto::pattern::{self, PATTERN_FILE};

fuzz_target!(|data: &[u8]| {
    let (pattern_bytes, template_bytes) = match data.iter().position(|byte| *byte == 0) {
        Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
        None => (data, None),
    };
    let mut files = BTreeMap::new();
    files.insert(PATTERN_FILE.to_owned(), pattern_bytes.to_vec());
    if let Some(template) = template_bytes {
        files.insert("templates/t.j2".to_owned(), template.to_vec());
    }
    let diagnostics = pattern::lint(&files);
    let parsed = pattern::parse(&files);
    // The two agree: lint is parse's errors.
    assert_eq!(diagnostics.is_empty(), parsed.is_ok());
    for diagnostic in &diagnostics {
        let _ = diagnostic.to_string();
    }
    let Ok(pattern) = parsed else { return };
    let Ok(params) = pattern::validate_values(&pattern, &BTreeMap::new()) else { return };
    if let Some(template) = template_bytes {
        let _ = pattern::render(&String::from_utf8_lossy(template), &params);
    }
});
