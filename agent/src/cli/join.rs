//! `pmesh-agent join`: enrolment with a master, by one-time token.

use std::path::Path;

use super::args::JoinArgs;
use crate::exit::CliError;
use crate::join::JoinOptions;

pub(super) async fn run(args: JoinArgs, data_dir: &Path) -> Result<(), CliError> {
    let JoinArgs { master, token, ca_fingerprint, name, advertise, force } = args;
    let options = JoinOptions { master, token, ca_fingerprint, name, advertise, force };
    let enrolment = crate::join::join(options, data_dir).await?;
    println!(
        "enrolled as agent {} with master {}; start it with: pmesh-agent run --data-dir {}",
        enrolment.name,
        enrolment.master,
        data_dir.display()
    );
    Ok(())
}
