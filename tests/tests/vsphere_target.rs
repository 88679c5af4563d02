//! The vSphere target is one param group: every vSphere pattern of the catalog declares the
//! same target params, exactly, and ships the same `vsphere/target.sh`, byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// workload/vcenter is not here: vcsa-deploy takes its target in the deployment JSON, not govc.
const PATTERNS: [&str; 4] = ["basic/govc", "workload/nested-esxi", "workload/nsx-manager", "workload/cloud-builder"];
const TARGET_PARAMS: [&str; 7] = ["url", "username", "password", "thumbprint", "ca_certificate", "insecure", "govc_image"];

fn dir(pattern: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns").join(pattern)
}

fn files(pattern: &str) -> BTreeMap<String, Vec<u8>> {
    let root = dir(pattern);
    pmesh_tests::files_under(&root)
        .into_iter()
        .map(|(path, text)| {
            let relative = Path::new(&path).strip_prefix(&root).expect("under the pattern").to_string_lossy().into_owned();
            (relative, text.into_bytes())
        })
        .collect()
}

#[test]
fn every_vsphere_pattern_takes_the_same_target() {
    let parsed: Vec<_> = PATTERNS
        .iter()
        .map(|pattern| (pattern, files(pattern), pmesh_proto::pattern::parse(&files(pattern)).expect("the pattern is valid")))
        .collect();
    let (first_name, first_files, first) = &parsed[0];
    for (name, files, pattern) in &parsed[1..] {
        for param in TARGET_PARAMS {
            assert_eq!(pattern.params.get(param), first.params.get(param), "{name} and {first_name} differ in param {param}");
            assert!(pattern.params.contains_key(param), "{name} lacks {param}");
        }
        assert_eq!(files.get("vsphere/target.sh"), first_files.get("vsphere/target.sh"), "{name}'s vsphere/target.sh differs");
    }
}
