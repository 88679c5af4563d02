//! The boundary "proto does no I/O", enforced by Cargo: `pmesh-proto`'s dependency tree holds
//! no gRPC framework, no HTTP stack, no socket library and no tokio at all. proto generates
//! the protocol's messages with prost; the services are generated in pmesh-rt.

use std::process::Command;

/// Crates that do I/O or carry a transport, which proto must not reach.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "tokio-stream",
    "tokio-util",
    "tonic",
    "tonic-prost",
    "hyper",
    "hyper-util",
    "mio",
    "h2",
    "socket2",
    "tokio-rustls",
    "tower",
    "axum",
];

/// What breaks the boundary in `cargo tree --prefix none -f "{p}|{f}"` output, one entry per
/// offending crate.
fn violations(tree: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in tree.lines() {
        let Some((package, _features)) = line.split_once('|') else { continue };
        let name = package.split_whitespace().next().unwrap_or_default();
        if !FORBIDDEN.contains(&name) {
            continue;
        }
        let entry = package.trim().to_owned();
        if !found.contains(&entry) {
            found.push(entry);
        }
    }
    found
}

#[test]
fn proto_depends_on_no_transport_and_no_runtime() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(&cargo)
        .args(["tree", "-p", "pmesh-proto", "-e", "normal", "--prefix", "none", "-f", "{p}|{f}", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .output()
        .expect("running cargo tree");
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(tree.lines().any(|line| line.starts_with("pmesh-proto ")), "cargo tree printed no pmesh-proto:\n{tree}");
    let found = violations(&tree);
    assert!(found.is_empty(), "pmesh-proto must do no I/O, yet depends on: {}", found.join("; "));
}

#[test]
fn a_transport_or_a_runtime_in_the_tree_is_named() {
    let tree = "pmesh-proto v0.1.0 (/pmesh/proto)|default\n\
                tonic v0.14.9|codegen,transport\n\
                hyper v1.12.0|client,http2\n\
                hyper v1.12.0|client,http2 (*)\n\
                tokio v1.54.1|default,net,rt,sync\n\
                tokio-stream v0.1.19|\n";
    assert_eq!(violations(tree), ["tonic v0.14.9", "hyper v1.12.0", "tokio v1.54.1", "tokio-stream v0.1.19"]);
    assert!(violations("pmesh-proto v0.1.0 (/pmesh/proto)|default\nprost v0.14.3|default\n").is_empty());
}
