//! `pmesh ca init` and `pmesh ca fingerprint`: creating a mesh, and the fingerprint agents pin.

use std::net::SocketAddr;
use std::path::Path;

use super::args::CaCommand;
use super::client::{exit, CliError};
use super::output::Format;
use crate::config::MasterConfig;

pub(super) fn run(command: CaCommand, data_dir: &Path, format: Format) -> Result<(), CliError> {
    match command {
        CaCommand::Init { listen, advertise } => init(data_dir, listen, advertise, format),
        CaCommand::Fingerprint => {
            let ca = crate::identity::Ca::load(&crate::identity::PkiPaths::new(data_dir))?;
            match format {
                Format::Text => println!("{}", ca.fingerprint()),
                Format::Json => println!("{}", serde_json::json!({ "ca_fingerprint": ca.fingerprint() })),
            }
            Ok(())
        }
    }
}

fn init(data_dir: &Path, listen: SocketAddr, advertise: Option<String>, format: Format) -> Result<(), CliError> {
    let config = MasterConfig { listen, advertise, ..MasterConfig::default() };
    let summary = crate::daemon::ca_init(data_dir, &config).map_err(|err| {
        let code = if err.to_string().contains("already exists") { exit::USAGE } else { exit::FAILED };
        CliError::new(code, format!("{err:#}"))
    })?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "ca_fingerprint": summary.ca_fingerprint,
                "credentials": summary.credentials,
                "config": summary.config,
            })
        ),
        Format::Text => {
            println!("created the mesh CA in {}", data_dir.display());
            println!("CA fingerprint: {}", summary.ca_fingerprint);
            println!("admin credential: {}", summary.credentials.display());
            println!("start the master with: pmesh serve --data-dir {}", data_dir.display());
        }
    }
    Ok(())
}
