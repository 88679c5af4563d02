//! Compiles `proto/pmesh/v1/*.proto` with protox (pure Rust), so no system `protoc` is needed,
//! and writes the encoded descriptor set that gRPC reflection serves.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["pmesh/v1/types.proto", "pmesh/v1/agent.proto", "pmesh/v1/master.proto"];
    for file in files {
        println!("cargo:rerun-if-changed=proto/{file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("pmesh_descriptor.bin"), descriptors.encode_to_vec())?;
    // No transport: the generated clients take any channel, and the daemons dial through
    // pmesh-rt, so proto needs none of tonic's sockets.
    tonic_prost_build::configure().build_transport(false).compile_fds(descriptors)?;
    Ok(())
}
