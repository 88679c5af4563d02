//! The firewall script (`photon/firewall/pmesh-firewall.sh`) opens the agent's port once, live
//! and persisted in Photon's stock ip4save, keeps the file's mode and other tables, and refuses
//! bad arguments without a change.

use std::os::unix::fs::PermissionsExt;

use crate::common::{ip4save_with_rule, mode, read, stock_ip4save};
use crate::sandbox::Sandbox;

#[test]
fn firewall_script_is_idempotent_on_the_stock_ip4save() {
    let sandbox = Sandbox::new();
    for _ in 0..2 {
        let run = sandbox.firewall(&["open", "7444"]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    assert_eq!(read(&sandbox.ip4save()), ip4save_with_rule());
    assert_eq!(
        sandbox.log("iptables.log"),
        "-C INPUT -p tcp --dport 7444 -j ACCEPT\n-I INPUT -p tcp --dport 7444 -j ACCEPT\n\
         -C INPUT -p tcp --dport 7444 -j ACCEPT\n",
        "the live rule is added once"
    );
}

#[test]
fn firewall_script_writes_into_the_filter_table_and_keeps_the_mode() {
    let sandbox = Sandbox::new();
    let nat = "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n";
    std::fs::write(sandbox.ip4save(), format!("{nat}{}", stock_ip4save())).expect("writing");
    std::fs::set_permissions(sandbox.ip4save(), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let run = sandbox.firewall(&["open", "7444"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(read(&sandbox.ip4save()), format!("{nat}{}", ip4save_with_rule()));
    assert_eq!(mode(&sandbox.ip4save()), 0o600);
}

#[test]
fn firewall_script_refuses_bad_ports_and_changes_nothing() {
    let sandbox = Sandbox::new();
    for args in [&["open"][..], &["open", "abc"], &["open", "0"], &["open", "70000"], &["close", "7444"]] {
        let run = sandbox.firewall(args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains("usage"), "{run:?}");
    }
    assert_eq!(read(&sandbox.ip4save()), stock_ip4save());
    assert_eq!(sandbox.log("iptables.log"), "");
}
