//! `pmesh`: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use pmesh_master::cli::{self, Cli, Command};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    pmesh_proto::tls::install_default_provider();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { cli::client::exit::USAGE } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("pmesh: cannot start the runtime: {err}");
            return ExitCode::from(cli::client::exit::FAILED);
        }
    };
    if let Command::Serve(args) = &cli.command {
        pmesh_rt::logging::init();
        return match runtime.block_on(serve(&cli, args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "master failed");
                ExitCode::from(cli::client::exit::FAILED)
            }
        };
    }
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pmesh: {}", err.message);
            ExitCode::from(err.code)
        }
    }
}

async fn serve(cli: &Cli, args: &cli::ServeArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let config = cli::serve_config(&cli.data_dir, args)?;
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let shutdown = CancellationToken::new();
    pmesh_rt::process::cancel_on_signal(shutdown.clone());
    pmesh_master::daemon::serve(listener, &cli.data_dir, config, shutdown).await
}
