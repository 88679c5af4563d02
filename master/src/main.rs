//! `pmesh`: the shared `main` of both binaries, around the master's command line.

fn main() -> std::process::ExitCode {
    pmesh_rt::cli::main("pmesh", None, pmesh_master::cli::run)
}
