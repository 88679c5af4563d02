//! `pmesh token create`: a one-time join token, and the command an agent host runs with it.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use pmesh_proto::v1;

use super::args::TokenCommand;
use super::client::{self, CliError};
use super::output::Format;

pub(super) async fn run(command: TokenCommand, credentials: Option<&Path>, data_dir: &Path, format: Format) -> Result<(), CliError> {
    let TokenCommand::Create { ttl, name, labels, force } = command;
    let request = v1::CreateTokenRequest {
        ttl_seconds: ttl.map(|ttl| ttl.as_secs().max(1)).unwrap_or(0),
        name: name.unwrap_or_default(),
        labels: labels.into_iter().collect::<HashMap<_, _>>(),
        force,
    };
    let mut connection = client::connect(credentials, data_dir)?;
    let token = connection.client.create_token(request).await.map_err(|status| connection.failed(status))?.into_inner();
    print_token(&token, format);
    Ok(())
}

fn print_token(token: &v1::CreateTokenResponse, format: Format) {
    let expires = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(token.expires_at_unix.max(0) as u64));
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "token": token.token,
                "expires_at": expires.to_string(),
                "expires_at_unix": token.expires_at_unix,
                "ca_fingerprint": token.ca_fingerprint,
                "master": token.master_address,
            })
        ),
        Format::Text => {
            println!("token:          {}", token.token);
            println!("expires:        {expires}");
            println!("ca fingerprint: {}", token.ca_fingerprint);
            println!();
            println!("on the agent host:");
            println!(
                "  pmesh-agent join --master {} --token {} --ca-fingerprint {}",
                token.master_address, token.token, token.ca_fingerprint
            );
        }
    }
}
