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
        pmesh_master::logging::init();
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
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let server = pmesh_master::daemon::serve(listener, &cli.data_dir, config, shutdown.clone());
    tokio::pin!(server);
    // Readiness is reported once the server future has set up (CA loaded, database open);
    // an early failure ends the future before the first tick.
    tokio::select! {
        result = &mut server => return result,
        _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        }
    }
    let result = server.await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    result
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else { return };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
