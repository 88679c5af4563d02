//! What the photon tests share: where the appliance's files are, reading them, the stock
//! ip4save fixture and the rule the appliance adds to it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The rule both the firewall script and the kickstart persist for the agent's port.
const PERSISTED_RULE: &str = "-A INPUT -p tcp -m tcp --dport 7444 -j ACCEPT";

pub fn photon() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../photon")
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

pub fn stock_ip4save() -> String {
    read(&photon().join("firewall/testdata/ip4save.photon"))
}

/// The stock ip4save with the agent's rule where both the script and the kickstart put it.
pub fn ip4save_with_rule() -> String {
    stock_ip4save().replace("COMMIT\n", &format!("{PERSISTED_RULE}\nCOMMIT\n"))
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display())).permissions().mode() & 0o777
}
