//! `pmesh-agent`: the shared `main` of both binaries, around the agent's command line.

fn main() -> std::process::ExitCode {
    // Two workers: the agent mostly waits on Docker and the network, and shares its host.
    pmesh_rt::cli::main("pmesh-agent", Some(2), pmesh_agent::cli::run)
}
