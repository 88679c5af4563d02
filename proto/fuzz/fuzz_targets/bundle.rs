//! Fuzzes the bundle reader: the input is a bundle as an agent receives it. It is opened, and
//! verified with its last 64 bytes taken as the signature and a fixed key, as the agent does
//! before opening.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmesh_proto::bundle;

/// Any 32 bytes are a candidate ed25519 public key; verification must reject, not panic.
const PUBLIC_KEY: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    if let Ok(files) = bundle::open(data) {
        // What opens must pack again, to the same files.
        let packed = bundle::pack(&files).expect("an opened bundle packs");
        assert_eq!(bundle::open(&packed).expect("a packed bundle opens"), files);
    }
    let split = data.len().saturating_sub(64);
    let (archive, signature) = data.split_at(split);
    let _ = bundle::verify(archive, signature, &PUBLIC_KEY);
    let _ = bundle::verify(archive, signature, &data[..data.len().min(32)]);
    let _ = bundle::public_key(data);
});
