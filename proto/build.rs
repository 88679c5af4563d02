//! Compiles `proto/pmesh/v1/*.proto` with protox (pure Rust), so no system `protoc` is needed,
//! into the protocol's messages only, and writes the encoded descriptor set that gRPC
//! reflection serves. The services (clients and servers) are generated in pmesh-rt, which owns
//! the transport.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["pmesh/v1/types.proto", "pmesh/v1/agent.proto", "pmesh/v1/master.proto"];
    for file in files {
        println!("cargo:rerun-if-changed=proto/{file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("pmesh_descriptor.bin"), descriptors.encode_to_vec())?;
    // Messages only: no client or server code, so proto needs nothing of tonic.
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
