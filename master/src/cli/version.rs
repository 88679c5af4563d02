//! `pmesh version`: this CLI's version and the master's, each with its revision and build
//! date, so a mismatch after an upgrade shows at once.

use std::path::Path;

use pmesh_proto::v1;
use serde_json::json;

use super::client::{self, CliError};
use super::output::Format;

/// Prints both versions; the CLI's first, so it shows even when the master cannot be asked.
///
/// # Errors
/// The connection's failure (no credential: 5; master unreachable: 4) after the CLI's line.
pub async fn run(credentials: Option<&Path>, data_dir: &Path, format: Format) -> Result<(), CliError> {
    let cli = pmesh_rt::docs::VERSION;
    if format == Format::Text {
        println!("pmesh (this CLI): {cli}");
    }
    let connection = client::connect(credentials, data_dir)?;
    let master =
        connection.client.clone().version(v1::VersionRequest {}).await.map_err(|status| connection.failed(status))?.into_inner().version;
    match format {
        Format::Text => println!("master {}: {master}", connection.master),
        Format::Json => println!("{}", json!({ "cli": cli, "master": master, "master_address": connection.master })),
    }
    Ok(())
}
