//! Generates the protocol's services (clients and servers) from `proto/pmesh/v1/*.proto`, over
//! the messages pmesh-proto generates from the same files (`extern_path`): the contract keeps
//! the messages and no transport, this crate keeps tonic.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["pmesh/v1/types.proto", "pmesh/v1/agent.proto", "pmesh/v1/master.proto"];
    for file in files {
        println!("cargo:rerun-if-changed=../proto/{file}");
    }
    let descriptors = protox::compile(files, ["../proto"])?;
    // No generated `connect`: the daemons dial through `net::dial`, with the mesh's TLS.
    tonic_prost_build::configure().build_transport(false).extern_path(".pmesh.v1", "::pmesh_proto::v1").compile_fds(descriptors)?;
    Ok(())
}
