//! Generates the protocol's services (clients and servers) from `proto/pmesh/v1/*.proto`, over
//! the messages pmesh-proto generates from the same files (`extern_path`): the contract keeps
//! the messages and no transport, this crate keeps tonic. Also records the build's revision
//! and date for both binaries' `--version` (`PMESH_REVISION`, `PMESH_BUILD_DATE`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    build_facts();
    let files = ["pmesh/v1/types.proto", "pmesh/v1/agent.proto", "pmesh/v1/master.proto"];
    for file in files {
        println!("cargo:rerun-if-changed=../proto/{file}");
    }
    let descriptors = protox::compile(files, ["../proto"])?;
    // No generated `connect`: the daemons dial through `net::dial`, with the mesh's TLS.
    tonic_prost_build::configure().build_transport(false).extern_path(".pmesh.v1", "::pmesh_proto::v1").compile_fds(descriptors)?;
    Ok(())
}

/// `PMESH_REVISION` (the commit built; `unknown` outside git)
/// and `PMESH_BUILD_DATE` (UTC; `SOURCE_DATE_EPOCH` when set, for reproducible builds).
fn build_facts() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    // A new commit or checkout moves HEAD or the branch it names: build again then.
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["rev-parse", "--symbolic-full-name", "HEAD"]).and_then(|reference| git(&["rev-parse", "--git-path", &reference])),
    ]
    .into_iter()
    .flatten()
    {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let revision = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    let mut date = std::process::Command::new("date");
    date.arg("-u").arg("+%Y-%m-%d");
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        date.arg(format!("--date=@{epoch}"));
    }
    let date = date.output().ok().map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned()).filter(|date| !date.is_empty());
    println!("cargo:rustc-env=PMESH_REVISION={revision}");
    println!("cargo:rustc-env=PMESH_BUILD_DATE={}", date.unwrap_or_else(|| "unknown".to_owned()));
}
