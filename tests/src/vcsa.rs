//! The stand-in VCSA ISO for workload/vcenter's tests. The real ISO cannot be had here, so
//! this is a tar archive with the ISO's layout: `vcsa-cli-installer/lin64/vcsa-deploy` (the
//! stand-in of `tests/standins/vcsa`, with govc beside it to reach vcsim),
//! `vcsa-cli-installer/templates/install/embedded_vCSA_on_VC.json` (the real template's keys)
//! and `vcsa/…ova` (a stub OVA vcsim accepts). The pattern extracts it with bsdtar, which
//! reads ISO 9660 and tar alike; reading a real ISO is not exercised here.

use std::path::Path;

use crate::docker::docker;
use crate::vcsim::{stub_ova, GOVC_IMAGE};

/// The base the tests build the vcsa image on: bsdtar and jq (tests/images/build.sh).
pub const VCSA_BASE_IMAGE: &str = "pmesh-test/vcsa-base:bookworm-1";

/// The stand-in ISO's bytes; `scratch` holds the stub OVA and govc while it is made.
///
/// # Panics
/// When the govc image is missing or a file cannot be read.
pub fn standin_iso(scratch: &Path) -> Vec<u8> {
    let standin = crate::standins::dir().join("vcsa");
    let container = docker(&["create", GOVC_IMAGE]).trim().to_owned();
    let govc = scratch.join("govc");
    docker(&["cp", &format!("{container}:/usr/local/bin/govc"), govc.to_str().expect("a UTF-8 path")]);
    docker(&["rm", &container]);
    let ova = stub_ova(scratch).expect("the stub OVA");
    let read = |path: &Path| std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let entries = [
        ("vcsa-cli-installer/lin64/vcsa-deploy", read(&standin.join("vcsa-deploy")), 0o755),
        ("vcsa-cli-installer/lin64/govc", read(&govc), 0o755),
        ("vcsa-cli-installer/templates/install/embedded_vCSA_on_VC.json", read(&standin.join("embedded_vCSA_on_VC.json")), 0o444),
        ("vcsa/VMware-vCenter-Server-Appliance-8.0.3.00000-24022515_OVF10.ova", read(&ova), 0o444),
    ];
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents, mode) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        builder.append_data(&mut header, path, contents.as_slice()).expect("in memory");
    }
    builder.into_inner().expect("in memory")
}
