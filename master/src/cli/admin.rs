//! `pmesh admin issue|revoke`: operator credentials, issued by the master from a key made
//! here (the key never leaves this host), and revoked by name.

use std::path::Path;

use pmesh_proto::v1;

use super::args::AdminCommand;
use super::client::{self, exit, CliError};

pub(super) async fn run(command: AdminCommand, credentials: Option<&Path>, data_dir: &Path) -> Result<(), CliError> {
    match command {
        AdminCommand::Issue { name, out } => issue(&name, &out, credentials, data_dir).await,
        AdminCommand::Revoke { name } => revoke(&name, credentials, data_dir).await,
    }
}

async fn issue(name: &str, out: &Path, credentials: Option<&Path>, data_dir: &Path) -> Result<(), CliError> {
    if out.exists() {
        return Err(CliError::new(exit::USAGE, format!("{} exists; refusing to overwrite a credential", out.display())));
    }
    let (key, csr_pem) = crate::identity::key_and_csr()?;
    let mut connection = client::connect(credentials, data_dir)?;
    let issued = connection
        .client
        .issue_admin(v1::IssueAdminRequest { name: name.to_owned(), csr_pem })
        .await
        .map_err(|status| connection.failed(status))?
        .into_inner();
    crate::credentials::Credentials {
        master: issued.master_address,
        name: name.to_owned(),
        ca: issued.ca_pem,
        cert: issued.cert_pem,
        key: key.serialize_pem(),
    }
    .save(out)?;
    println!("wrote credential for admin {name} to {} (serial {})", out.display(), issued.serial);
    Ok(())
}

async fn revoke(name: &str, credentials: Option<&Path>, data_dir: &Path) -> Result<(), CliError> {
    let mut connection = client::connect(credentials, data_dir)?;
    let revoked = connection
        .client
        .revoke_admin(v1::RevokeAdminRequest { name: name.to_owned() })
        .await
        .map_err(|status| connection.failed(status))?
        .into_inner();
    println!("revoked {} credential(s) of admin {name}: {}", revoked.revoked_serials.len(), revoked.revoked_serials.join(", "));
    Ok(())
}
