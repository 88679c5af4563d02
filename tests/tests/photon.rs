//! The PhotonOS appliance in `photon/`: its shell scripts pass shellcheck; the kickstart uses
//! only keys the Photon installer accepts and does what the appliance needs; the first-boot
//! script configures the network, opens the firewall once, joins with the token in the
//! environment only, and runs once; the firewall script is idempotent on Photon's stock
//! ip4save; the Packer template and the OVF properties agree with the scripts.
//!
//! Nothing here runs on Photon or under VMware. The first-boot script runs against a
//! temporary root, with stand-ins on PATH for VMware Tools (`vmtoolsd`, which fails, and
//! `vmware-rpctool`, which serves a sample OVF environment), `pmesh-agent`, `systemctl`,
//! `networkctl`, `iptables` and `ip`: small shell scripts that record their arguments and
//! environment. The stock ip4save fixture is Photon's default file (the same on 4 and 5) as
//! published, not one copied from a running VM.
//!
//! One test then runs the appliance for real on a Debian host with systemd as PID 1 (the
//! image tests/images/build.sh builds): `install-appliance.sh` installs the payload, and the
//! first-boot unit, started by systemd, enrols the host with a running master through the real
//! `pmesh-agent`, behind Photon's own firewall rules loaded into the container's real iptables.
//! Only VMware Tools and Docker's unit are stand-ins there; that test says how.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pmesh_tests::docker::{docker, docker_output, start_master_on, Host, Network};
use pmesh_tests::{bin, wait_until, Mesh, Run};

const TOKEN: &str = "pmt_TESTTOKEN0123456789abcdef";
const FINGERPRINT: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const PERSISTED_RULE: &str = "-A INPUT -p tcp -m tcp --dport 7444 -j ACCEPT";

fn photon() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../photon")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn stock_ip4save() -> String {
    read(&photon().join("firewall/testdata/ip4save.photon"))
}

/// The stock ip4save with the agent's rule where both the script and the kickstart put it.
fn ip4save_with_rule() -> String {
    stock_ip4save().replace("COMMIT\n", &format!("{PERSISTED_RULE}\nCOMMIT\n"))
}

fn on_path(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|out| out.status.success())
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("writing a script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display())).permissions().mode() & 0o777
}

// ---- shellcheck -----------------------------------------------------------------------------

fn shell_scripts(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading photon/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            shell_scripts(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "sh") {
            found.push(path);
        }
    }
}

fn shellcheck(path: &Path) -> Run {
    assert!(on_path("shellcheck"), "shellcheck is missing: install it with `apt-get install -y shellcheck` (.ci/run does)");
    Command::new("shellcheck").arg(path).output().expect("running shellcheck").into()
}

/// The kickstart's postinstall lines, as the script the installer runs.
fn postinstall_script() -> String {
    kickstart()["postinstall"]
        .as_array()
        .expect("postinstall is a list")
        .iter()
        .map(|line| format!("{}\n", line.as_str().expect("postinstall lines are strings")))
        .collect()
}

#[test]
fn every_shell_script_passes_shellcheck_and_is_executable() {
    let mut scripts = Vec::new();
    shell_scripts(&photon(), &mut scripts);
    let names: BTreeSet<_> = scripts.iter().filter_map(|path| path.file_name()?.to_str()).collect();
    for expected in ["pmesh-firstboot.sh", "pmesh-firewall.sh", "install-appliance.sh"] {
        assert!(names.contains(expected), "{expected} not found under photon/: {names:?}");
    }
    for script in &scripts {
        let run = shellcheck(script);
        assert_eq!(run.code, 0, "{}:\n{}", script.display(), run.stdout);
        assert_eq!(mode(script) & 0o111, 0o111, "{} is not executable", script.display());
    }
    // The kickstart's postinstall is a script too.
    let dir = tempfile::tempdir().expect("temp dir");
    let postinstall = dir.path().join("postinstall.sh");
    std::fs::write(&postinstall, postinstall_script()).expect("writing postinstall");
    let run = shellcheck(&postinstall);
    assert_eq!(run.code, 0, "ks.json postinstall:\n{}", run.stdout);
}

#[test]
fn shellcheck_catches_a_broken_script() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("broken.sh");
    std::fs::write(&script, "#!/bin/bash\nrm $1\n").expect("writing");
    let run = shellcheck(&script);
    assert_ne!(run.code, 0);
    assert!(run.stdout.contains("SC2086"), "{}", run.stdout);
}

// ---- the kickstart --------------------------------------------------------------------------

fn kickstart() -> serde_json::Value {
    serde_json::from_str(&read(&photon().join("ks.json"))).expect("ks.json is JSON")
}

/// Keys that both the Photon 4 installer and photon-os-installer's current master accept; the
/// installer refuses a kickstart with any other key ("Unknown install_config keys").
#[rustfmt::skip]
const INSTALLER_KEYS: &[&str] = &[
    "additional_files", "additional_packages", "additional_rpms_path", "arch", "autopartition",
    "bootmode", "disk", "eject_cdrom", "hostname", "linux_flavor", "live", "log_level", "ostree",
    "packages", "packagelist_file", "partition_type", "partitions", "network", "password",
    "postinstall", "postinstallscripts", "preinstall", "preinstallscripts", "public_key",
    "photon_docker_image", "search_path", "setup_grub_script", "shadow_password", "type", "ui",
];

#[test]
fn kickstart_is_one_the_installer_accepts_and_prepares_the_appliance() {
    let ks = kickstart();
    let object = ks.as_object().expect("ks.json is an object");
    for key in object.keys() {
        assert!(INSTALLER_KEYS.contains(&key.as_str()), "the Photon installer would refuse key {key:?}");
    }
    for key in ["hostname", "password", "disk", "partitions", "bootmode", "linux_flavor", "packages", "postinstall"] {
        assert!(object.contains_key(key), "ks.json lacks {key}");
    }
    assert_eq!(ks["password"]["crypted"], true);
    assert_eq!(ks["password"]["age"], -1, "the root password must not expire");
    let placeholder = ks["password"]["text"].as_str().expect("password text");
    assert!(placeholder.starts_with('!'), "an unreplaced placeholder must lock root, not be a password: {placeholder}");
    assert_eq!(ks["linux_flavor"], "linux-esx");
    assert_eq!(ks["bootmode"], "efi");

    let packages: BTreeSet<&str> = ["packages", "additional_packages"]
        .iter()
        .flat_map(|key| ks[key].as_array().into_iter().flatten())
        .filter_map(|package| package.as_str())
        .collect();
    for package in ["minimal", "docker", "open-vm-tools", "iptables"] {
        assert!(packages.contains(package), "{package} is not installed: {packages:?}");
    }

    // The OS on the first disk, the agent's data on the second; one growing partition per disk.
    let partitions = ks["partitions"].as_array().expect("partitions");
    let on = |mountpoint: &str| partitions.iter().find(|part| part["mountpoint"] == mountpoint).cloned();
    assert!(on("/").is_some_and(|root| root.get("disk").is_none()), "/ belongs on the default disk");
    assert_eq!(on("/var/lib/pmesh-agent").expect("a /var/lib/pmesh-agent partition")["disk"], "/dev/sdb");
    let mut growing = BTreeSet::new();
    for part in partitions.iter().filter(|part| part["size"] == 0) {
        let disk = part["disk"].as_str().unwrap_or("default").to_owned();
        assert!(growing.insert(disk.clone()), "two size-0 partitions on {disk}");
    }

    let postinstall = postinstall_script();
    assert!(postinstall.starts_with("#!/bin/sh\n"), "{postinstall}");
    for line in ["systemctl enable docker.service\n", "chage -I -1 -m 0 -M 99999 -E -1 root\n"] {
        assert!(postinstall.contains(line), "postinstall lacks {line:?}");
    }
    assert!(!postinstall.contains("restart iptables"), "restarting iptables flushes Docker's rules");
}

/// Runs the postinstall's ip4save line on a copy of the stock file.
fn run_postinstall_firewall_line(ip4save: &Path) {
    let line = postinstall_script()
        .lines()
        .find(|line| line.contains("ip4save") && !line.starts_with('#'))
        .expect("a postinstall line editing ip4save")
        .replace("/etc/systemd/scripts/ip4save", ip4save.to_str().expect("utf-8"));
    let status = Command::new("sh").arg("-c").arg(&line).status().expect("running sh");
    assert!(status.success(), "{line}");
}

#[test]
fn kickstart_persists_the_port_once_and_like_the_firewall_script() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ip4save = dir.path().join("ip4save");
    std::fs::write(&ip4save, stock_ip4save()).expect("writing ip4save");
    run_postinstall_firewall_line(&ip4save);
    run_postinstall_firewall_line(&ip4save);
    assert_eq!(read(&ip4save), ip4save_with_rule());
}

// ---- the firewall script --------------------------------------------------------------------

/// A temporary root with an ip4save and stand-ins on PATH, for the firewall and first-boot
/// scripts.
struct Sandbox {
    dir: tempfile::TempDir,
}

/// The stand-ins. Each records its arguments, one invocation a line, in $STUB_LOG/NAME.log.
const STUBS: &[(&str, &str)] = &[
    // The live firewall: -C succeeds once -I has added the same rule.
    (
        "iptables",
        r#"echo "$*" >>"$STUB_LOG/iptables.log"
case "$1" in
  -C) shift; grep -qxF -- "$*" "$STUB_LOG/iptables.rules" 2>/dev/null ;;
  -I) shift; echo "$*" >>"$STUB_LOG/iptables.rules" ;;
esac"#,
    ),
    ("systemctl", r#"echo "$*" >>"$STUB_LOG/systemctl.log""#),
    ("systemd-sysusers", r#"echo "$*" >>"$STUB_LOG/systemd-sysusers.log""#),
    ("networkctl", r#"echo "$*" >>"$STUB_LOG/networkctl.log""#),
    (
        "ip",
        r#"echo "$*" >>"$STUB_LOG/ip.log"
echo "10.0.0.2 via 10.0.0.1 dev eth0 src 10.0.0.77 uid 0""#,
    ),
    // As on a VM whose vmtoolsd cannot reach the RPC channel: the script falls back.
    ("vmtoolsd", r#"echo "$*" >>"$STUB_LOG/vmtoolsd.log"; echo "vmtoolsd: no RPC channel" >&2; exit 1"#),
    (
        "vmware-rpctool",
        r#"echo "$1" >>"$STUB_LOG/vmware-rpctool.log"
case "$1" in
  "info-get guestinfo.ovfEnv") [ -f "$STUB_OVFENV" ] && exec cat "$STUB_OVFENV" ;;
  "info-get guestinfo."*) [ -f "$STUB_GUESTINFO/${1#info-get guestinfo.}" ] && exec cat "$STUB_GUESTINFO/${1#info-get guestinfo.}" ;;
  "info-set guestinfo."*) rest=${1#info-set guestinfo.}; printf '%s' "${rest#* }" >"$STUB_GUESTINFO/${rest%% *}"; exit 0 ;;
esac
echo "No value found" >&2
exit 1"#,
    ),
    // The agent: records argv (a line each) and its environment; exits with the next code from
    // $STUB_LOG/join-codes (default 0) and, on success, writes agent.json like the real join.
    (
        "pmesh-agent",
        r#"n=$(( $(cat "$STUB_LOG/join-count" 2>/dev/null || echo 0) + 1 ))
echo "$n" >"$STUB_LOG/join-count"
printf '%s\n' "$@" >"$STUB_LOG/join-$n.argv"
env >"$STUB_LOG/join-$n.env"
code=$(sed -n "${n}p" "$STUB_LOG/join-codes" 2>/dev/null)
code=${code:-0}
if [ "$code" = 0 ]; then
  while [ $# -gt 0 ]; do [ "$1" = --data-dir ] && data_dir=$2; shift; done
  mkdir -p "$data_dir" && echo '{"v":1}' >"$data_dir/agent.json"
fi
echo "pmesh-agent (stand-in): exit $code" >&2
exit "$code""#,
    ),
];

impl Sandbox {
    fn new() -> Sandbox {
        let sandbox = Sandbox { dir: tempfile::tempdir().expect("temp dir") };
        for dir in [sandbox.root().join("etc/systemd/scripts"), sandbox.stubs(), sandbox.logs(), sandbox.guestinfo()] {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(sandbox.ip4save(), stock_ip4save()).expect("writing ip4save");
        for (name, body) in STUBS {
            write_executable(&sandbox.stubs().join(name), &format!("#!/bin/bash\n{body}\n"));
        }
        sandbox
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn stubs(&self) -> PathBuf {
        self.dir.path().join("bin")
    }
    fn logs(&self) -> PathBuf {
        self.dir.path().join("log")
    }
    /// Plain guestinfo variables, a file each, which the vmware-rpctool stand-in gets and sets.
    fn guestinfo(&self) -> PathBuf {
        self.dir.path().join("guestinfo")
    }
    fn ip4save(&self) -> PathBuf {
        self.root().join("etc/systemd/scripts/ip4save")
    }
    fn marker(&self) -> PathBuf {
        self.root().join("var/lib/pmesh-agent/.firstboot-done")
    }
    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs().join(name)).unwrap_or_default()
    }
    fn set_ovfenv(&self, xml: &str) {
        std::fs::write(self.dir.path().join("ovfenv.xml"), xml).expect("writing the OVF environment");
    }
    fn set_join_codes(&self, codes: &[i32]) {
        let text: String = codes.iter().map(|code| format!("{code}\n")).collect();
        std::fs::write(self.logs().join("join-codes"), text).expect("writing join codes");
    }
    fn n_joins(&self) -> usize {
        self.log("join-count").trim().parse().unwrap_or(0)
    }

    /// Runs `script args` with only the stand-ins, /usr/bin and /bin on PATH.
    fn run(&self, script: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        let path = format!("{}:/usr/bin:/bin", self.stubs().display());
        let mut command = Command::new(script);
        command
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("STUB_LOG", self.logs())
            .env("STUB_OVFENV", self.dir.path().join("ovfenv.xml"))
            .env("STUB_GUESTINFO", self.guestinfo())
            .env("PMESH_FIRSTBOOT_ROOT", self.root())
            .env("PMESH_FIREWALL_ROOT", self.root())
            .env("PMESH_INSTALL_ROOT", self.root())
            .env("PMESH_FIREWALL", photon().join("firewall/pmesh-firewall.sh"))
            .env("PMESH_FIRSTBOOT_RETRY_DELAY", "0");
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().expect("running a photon script").into()
    }

    fn firewall(&self, args: &[&str]) -> Run {
        self.run(&photon().join("firewall/pmesh-firewall.sh"), args, &[])
    }

    fn first_boot(&self, env: &[(&str, &str)]) -> Run {
        self.run(&photon().join("firstboot/pmesh-firstboot.sh"), &[], env)
    }
}

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

// ---- the first boot -------------------------------------------------------------------------

fn sample_ovfenv() -> String {
    read(&photon().join("firstboot/testdata/ovfenv-static.xml"))
}

fn join_argv(sandbox: &Sandbox, n: usize) -> Vec<String> {
    sandbox.log(&format!("join-{n}.argv")).lines().map(str::to_owned).collect()
}

fn assert_no_token(run: &Run) {
    assert!(!run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN), "the token was printed: {run:?}");
}

#[test]
fn first_boot_joins_with_the_token_in_the_environment_only_then_runs_no_more() {
    let sandbox = Sandbox::new();
    sandbox.set_ovfenv(&sample_ovfenv());
    let run = sandbox.first_boot(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_no_token(&run);

    // VMware Tools: vmtoolsd failed, vmware-rpctool answered, and the token was cleared.
    assert!(sandbox.log("vmtoolsd.log").contains("info-get guestinfo.ovfEnv"));
    let rpc = sandbox.log("vmware-rpctool.log");
    assert!(rpc.contains("info-get guestinfo.ovfEnv\n") && rpc.contains("info-set guestinfo.pmesh.token ''\n"), "{rpc}");

    // The static network, readable by systemd-networkd, applied live.
    let network = sandbox.root().join("etc/systemd/network/10-pmesh-static.network");
    assert_eq!(mode(&network), 0o644);
    let text = read(&network);
    for line in ["[Match]\nName=eth0\n", "Address=10.0.0.50/24\n", "Gateway=10.0.0.1\n", "DNS=10.0.0.2\nDNS=10.0.0.3\n"] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    assert_eq!(sandbox.log("networkctl.log"), "reload\nreconfigure eth0\n");

    // The join: every property on the command line except the token, which is in the env.
    assert_eq!(sandbox.n_joins(), 1);
    let data_dir = sandbox.root().join("var/lib/pmesh-agent");
    let expected = [
        "join",
        "--data-dir",
        data_dir.to_str().expect("utf-8"),
        "--master",
        "10.0.0.2:7443",
        "--ca-fingerprint",
        FINGERPRINT,
        "--name",
        "pc-1",
        "--advertise",
        "10.0.0.50:7444",
    ];
    assert_eq!(join_argv(&sandbox, 1), expected);
    assert!(!sandbox.log("join-1.argv").contains(TOKEN), "the token is on the command line");
    assert!(sandbox.log("join-1.env").lines().any(|line| line == format!("PMESH_JOIN_TOKEN={TOKEN}")));

    assert_eq!(read(&sandbox.ip4save()), ip4save_with_rule());
    assert_eq!(
        sandbox.log("systemctl.log"),
        "enable --now docker.service\nenable --now pmesh-agent.service\ndisable pmesh-firstboot.service\n"
    );
    assert!(sandbox.marker().exists());

    // The marker makes the second run a no-op: no command runs, no file changes.
    let logs_before: Vec<String> =
        ["systemctl.log", "iptables.log", "vmware-rpctool.log", "networkctl.log"].iter().map(|name| sandbox.log(name)).collect();
    let again = sandbox.first_boot(&[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("already done"), "{again:?}");
    let logs_after: Vec<String> =
        ["systemctl.log", "iptables.log", "vmware-rpctool.log", "networkctl.log"].iter().map(|name| sandbox.log(name)).collect();
    assert_eq!(logs_before, logs_after);
    assert_eq!(sandbox.n_joins(), 1);
    assert_eq!(read(&sandbox.ip4save()), ip4save_with_rule());
}

#[test]
fn first_boot_without_its_marker_finishes_without_joining_again() {
    let sandbox = Sandbox::new();
    sandbox.set_ovfenv(&sample_ovfenv());
    assert_eq!(sandbox.first_boot(&[]).code, 0);
    std::fs::remove_file(sandbox.marker()).expect("removing the marker");
    let run = sandbox.first_boot(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("already enrolled"), "{run:?}");
    assert_eq!(sandbox.n_joins(), 1, "joined twice");
    assert_eq!(read(&sandbox.ip4save()), ip4save_with_rule(), "the rule is persisted once");
    assert!(sandbox.marker().exists());
}

#[test]
fn a_refused_join_fails_with_its_code_and_leaves_no_marker() {
    let sandbox = Sandbox::new();
    sandbox.set_ovfenv(&sample_ovfenv());
    sandbox.set_join_codes(&[5]);
    let run = sandbox.first_boot(&[]);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("refused the join (exit 5)"), "{run:?}");
    assert_no_token(&run);
    assert!(!sandbox.marker().exists());
    assert!(!sandbox.log("systemctl.log").contains("pmesh-agent"), "the agent was started");
    assert!(!sandbox.log("vmware-rpctool.log").contains("info-set"), "the token was cleared before it was spent");

    // A new token as a plain guestinfo variable (as `govc vm.change -e` sets it on the running VM)
    // wins over the spent one in the OVF environment, and the retry succeeds.
    std::fs::write(sandbox.guestinfo().join("pmesh.token"), "pmt_SECONDTOKEN").expect("writing guestinfo");
    let retry = sandbox.first_boot(&[]);
    assert_eq!(retry.code, 0, "{retry:?}");
    assert!(sandbox.log("join-2.env").contains("PMESH_JOIN_TOKEN=pmt_SECONDTOKEN\n"));
    assert_eq!(read(&sandbox.guestinfo().join("pmesh.token")), "''", "the guestinfo token was not overwritten");
    assert!(sandbox.marker().exists());
}

#[test]
fn an_unreachable_master_is_retried_then_reported() {
    let sandbox = Sandbox::new();
    sandbox.set_ovfenv(&sample_ovfenv());
    sandbox.set_join_codes(&[4, 4, 0]);
    let run = sandbox.first_boot(&[("PMESH_FIRSTBOOT_JOIN_ATTEMPTS", "3")]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sandbox.n_joins(), 3);

    let sandbox = Sandbox::new();
    sandbox.set_ovfenv(&sample_ovfenv());
    sandbox.set_join_codes(&[4, 4, 4]);
    let run = sandbox.first_boot(&[("PMESH_FIRSTBOOT_JOIN_ATTEMPTS", "2")]);
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(sandbox.n_joins(), 2);
    assert!(run.stderr.contains("10.0.0.2:7443 is unreachable (exit 4)"), "{run:?}");
    assert!(!sandbox.marker().exists());
}

#[test]
fn missing_properties_are_named_and_nothing_is_done() {
    let sandbox = Sandbox::new();
    let without = sample_ovfenv()
        .lines()
        .filter(|line| !line.contains("pmesh.token") && !line.contains("pmesh.ca_fingerprint"))
        .collect::<Vec<_>>()
        .join("\n");
    sandbox.set_ovfenv(&without);
    let run = sandbox.first_boot(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("missing OVF properties: pmesh.token pmesh.ca_fingerprint"), "{run:?}");
    // Each missing key was also looked up as a plain guestinfo variable.
    assert!(sandbox.log("vmware-rpctool.log").contains("info-get guestinfo.pmesh.token\n"));
    assert_eq!(sandbox.n_joins(), 0);
    assert_eq!(sandbox.log("systemctl.log"), "");
    assert!(!sandbox.marker().exists());
}

#[test]
fn with_dhcp_the_advertised_address_is_the_one_towards_the_master() {
    let sandbox = Sandbox::new();
    // Through the test hook this time, and a master without a port.
    let fixture = sandbox.dir.path().join("dhcp.xml");
    let dhcp: String = sample_ovfenv()
        .lines()
        .filter(|line| !["pmesh.ip", "pmesh.netmask", "pmesh.gateway", "pmesh.dns"].iter().any(|key| line.contains(key)))
        .map(|line| format!("{}\n", line.replace("10.0.0.2:7443", "10.0.0.2")))
        .collect();
    std::fs::write(&fixture, dhcp).expect("writing");
    let command = format!("cat '{}'", fixture.display());
    let run = sandbox.first_boot(&[("PMESH_FIRSTBOOT_OVFENV_CMD", &command)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!sandbox.root().join("etc/systemd/network/10-pmesh-static.network").exists());
    assert_eq!(sandbox.log("networkctl.log"), "");
    assert_eq!(sandbox.log("ip.log"), "-4 -o route get 10.0.0.2\n");
    let argv = join_argv(&sandbox, 1);
    let after = |flag: &str| argv.iter().skip_while(|arg| *arg != flag).nth(1).cloned();
    assert_eq!(after("--master").as_deref(), Some("10.0.0.2:7443"));
    assert_eq!(after("--advertise").as_deref(), Some("10.0.0.77:7444"));
}

#[test]
fn the_parser_takes_attributes_in_any_order_and_decodes_entities() {
    let sandbox = Sandbox::new();
    sandbox.set_ovfenv(&format!(
        "<?xml version=\"1.0\"?>\n<Environment xmlns:oe=\"http://schemas.dmtf.org/ovf/environment/1\">\n\
         <PropertySection>\n<Property\n oe:value=\"master.lab&amp;x:7443\"\n oe:key=\"pmesh.master\"/>\
         <Property oe:key=\"pmesh.token\" oe:value=\"{TOKEN}\"/><Property oe:key=\"other.key\" oe:value=\"x\"/>\
         <Property oe:key=\"pmesh.name\" oe:value=\"&lt;pc&gt;&quot;&apos;\"/>\n</PropertySection>\n</Environment>\n"
    ));
    let run = sandbox.run(&photon().join("firstboot/pmesh-firstboot.sh"), &["--show-config"], &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_no_token(&run);
    for line in [
        "pmesh.master=master.lab&x:7443\n",
        &format!("pmesh.token=<redacted, {} characters>\n", TOKEN.len()),
        "pmesh.name=<pc>\"'\n",
        "pmesh.ca_fingerprint=\n",
    ] {
        assert!(run.stdout.contains(line), "{line:?} not in:\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("other.key"));
}

#[test]
fn the_first_boot_unit_verifies_and_runs_once() {
    let unit = read(&photon().join("firstboot/pmesh-firstboot.service"));
    for directive in [
        "Type=oneshot\n",
        "RemainAfterExit=yes\n",
        "After=vmtoolsd.service network-online.target\n",
        "Wants=network-online.target\n",
        "ConditionPathExists=!/var/lib/pmesh-agent/.firstboot-done\n",
        "ExecStart=/usr/local/libexec/pmesh/pmesh-firstboot.sh\n",
        "WantedBy=multi-user.target\n",
    ] {
        assert!(unit.contains(directive), "the unit lacks {directive:?}");
    }
    // The unit's condition and the script's marker are the same file.
    let script = read(&photon().join("firstboot/pmesh-firstboot.sh"));
    assert!(script.contains("data_dir=/var/lib/pmesh-agent\nmarker=\"$root$data_dir/.firstboot-done\""));

    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("pmesh-firstboot.service");
    let script_path = photon().join("firstboot/pmesh-firstboot.sh").canonicalize().expect("script path");
    std::fs::write(&copy, unit.replace("/usr/local/libexec/pmesh/pmesh-firstboot.sh", script_path.to_str().expect("utf-8")))
        .expect("writing the unit copy");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze is missing: install the systemd package (.ci/run does)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.trim().is_empty(), "{stderr}");
}

#[test]
fn install_appliance_lays_out_the_payload_the_units_expect() {
    let sandbox = Sandbox::new();
    let payload = sandbox.dir.path().join("payload");
    std::fs::create_dir_all(&payload).expect("mkdir");
    let repo = photon().join("..");
    for (from, name) in [
        ("systemd/pmesh-agent.service", "pmesh-agent.service"),
        ("systemd/pmesh.sysusers", "pmesh.sysusers"),
        ("photon/firstboot/pmesh-firstboot.sh", "pmesh-firstboot.sh"),
        ("photon/firstboot/pmesh-firstboot.service", "pmesh-firstboot.service"),
        ("photon/firewall/pmesh-firewall.sh", "pmesh-firewall.sh"),
    ] {
        std::fs::copy(repo.join(from), payload.join(name)).unwrap_or_else(|err| panic!("{from}: {err}"));
    }
    std::fs::write(payload.join("pmesh-agent"), "#!/bin/sh\n").expect("writing the agent");
    for _ in 0..2 {
        let run = sandbox.run(&photon().join("install-appliance.sh"), &[payload.to_str().expect("utf-8")], &[]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let root = sandbox.root();
    for (path, expected_mode) in [
        ("usr/local/bin/pmesh-agent", 0o755),
        ("usr/lib/sysusers.d/pmesh.conf", 0o644),
        ("etc/systemd/system/pmesh-agent.service", 0o644),
        ("etc/systemd/system/pmesh-firstboot.service", 0o644),
        ("usr/local/libexec/pmesh/pmesh-firstboot.sh", 0o755),
        // Beside the first-boot script, where it looks for it by default.
        ("usr/local/libexec/pmesh/pmesh-firewall.sh", 0o755),
        ("etc/systemd/system/docker.service.d/10-pmesh-after-iptables.conf", 0o644),
    ] {
        assert_eq!(mode(&root.join(path)), expected_mode, "{path}");
    }
    // Each unit's ExecStart is a file the payload installed.
    for unit in ["pmesh-agent.service", "pmesh-firstboot.service"] {
        let text = read(&root.join("etc/systemd/system").join(unit));
        let exec = text.lines().find_map(|line| line.strip_prefix("ExecStart=")).expect("ExecStart");
        let program = exec.split_whitespace().next().expect("program");
        assert!(root.join(program.trim_start_matches('/')).exists(), "{unit}: {program} is not installed");
    }
    let enable = format!("--root={} enable docker.service pmesh-firstboot.service\n", root.display());
    assert_eq!(sandbox.log("systemctl.log"), enable.repeat(2), "the agent is enabled only after its join");
    assert!(sandbox.log("systemd-sysusers.log").contains(&format!("--root={}", root.display())));
}

// ---- the first boot on a real systemd host --------------------------------------------------

/// A stand-in `docker.service` for the container: the engine is this machine's, its socket
/// bind-mounted at /var/run/docker.sock, so the unit the first boot enables and starts has
/// nothing to run.
const STAND_IN_DOCKER_UNIT: &str = "# A stand-in for Docker's unit, written by pmesh's photon test: the engine is the test machine's,\n\
# its socket bind-mounted into this container.\n[Unit]\nDescription=Docker (stand-in)\n\n[Service]\nType=oneshot\n\
RemainAfterExit=yes\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n";

/// The OVF environment vCenter hands a VM deployed with the three required properties.
fn ovf_environment(master: &str, token: &str, fingerprint: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Environment xmlns=\"http://schemas.dmtf.org/ovf/environment/1\" \
         xmlns:oe=\"http://schemas.dmtf.org/ovf/environment/1\">\n   <PropertySection>\n\
         <Property oe:key=\"pmesh.master\" oe:value=\"{master}\"/>\n\
         <Property oe:key=\"pmesh.token\" oe:value=\"{token}\"/>\n\
         <Property oe:key=\"pmesh.ca_fingerprint\" oe:value=\"{fingerprint}\"/>\n   </PropertySection>\n</Environment>\n"
    )
}

/// The first boot, for real, on a Debian host with systemd as PID 1 and sshd (the container
/// image the bootstrap tests use), unprivileged, on a Docker network whose gateway runs a real
/// master:
/// - the appliance's payload (the agent binary as built, the units, the first-boot and firewall
///   scripts) is installed by `install-appliance.sh`, as the Packer build does;
/// - Photon's stock ip4save is loaded with `iptables-restore` into the container's own
///   netfilter (it has `NET_ADMIN` in its own network namespace), as Photon's iptables.service
///   does at boot: inbound traffic is dropped unless the first boot opens the agent's port, so
///   the master reaching the agent shows the live rule works;
/// - **stand-ins, said plainly**: `vmware-rpctool`
///   (photon/firstboot/testdata/stand-in-vmware-rpctool.sh) answers `info-get guestinfo.ovfEnv`
///   from a file holding an OVF environment with a real join token, because no VMware
///   hypervisor answers in a container; `docker.service` is a unit that does nothing, because
///   the engine is this machine's (its socket bind-mounted); the docker group is made by the
///   test, as Photon's docker package would.
///
/// systemd starts `pmesh-firstboot.service`; the agent must then be enrolled (the address it
/// advertises found from its route to the master), listed as up, its unit enabled; the
/// first-boot unit disabled and skipped by its condition after; the token nowhere in the
/// journal (every field, command lines included) or the agent's files.
#[test]
fn first_boot_enrols_a_real_systemd_host_and_disables_itself() {
    let name = format!("pmesh-fb-pc-fb-{}", std::process::id());
    let network = Network::create(&name);
    let listener = std::net::TcpListener::bind((network.gateway.as_str(), 0)).expect("binding the gateway address");
    let master_port = listener.local_addr().expect("address").port();
    drop(listener);
    let mesh = Mesh { dir: tempfile::tempdir().expect("temp dir"), master_port, check_interval: "1s".into(), extra_serve_args: Vec::new() };
    let master_address = format!("{}:{master_port}", network.gateway);
    let init = mesh.pmesh(&["ca", "init", "--listen", &master_address]);
    assert_eq!(init.code, 0, "ca init: {}", init.stderr);
    let master = start_master_on(&mesh, &master_address).unwrap_or_else(|err| panic!("{err:#}"));
    let host_args =
        ["--hostname", "pc-fb", "--network", &network.name, "--cap-add", "NET_ADMIN", "-v", "/var/run/docker.sock:/var/run/docker.sock"];
    let host = Host::start(&name, &host_args, true, &["/lib/systemd/systemd"]);

    host.add_docker_group();
    host.write_file("/etc/systemd/scripts/ip4save", "0644", &stock_ip4save());
    host.ok("iptables-restore < /etc/systemd/scripts/ip4save");
    host.write_file("/usr/bin/vmware-rpctool", "0755", &read(&photon().join("firstboot/testdata/stand-in-vmware-rpctool.sh")));
    host.write_file("/etc/systemd/system/docker.service", "0644", STAND_IN_DOCKER_UNIT);
    host.ok("systemctl daemon-reload");

    // The payload, flat, as the Packer template uploads it.
    let payload = tempfile::tempdir().expect("temp dir");
    let repo = photon().join("..");
    for (from, to) in [
        (bin("pmesh-agent"), "pmesh-agent"),
        (repo.join("systemd/pmesh-agent.service"), "pmesh-agent.service"),
        (repo.join("systemd/pmesh.sysusers"), "pmesh.sysusers"),
        (photon().join("firstboot/pmesh-firstboot.sh"), "pmesh-firstboot.sh"),
        (photon().join("firstboot/pmesh-firstboot.service"), "pmesh-firstboot.service"),
        (photon().join("firewall/pmesh-firewall.sh"), "pmesh-firewall.sh"),
        (photon().join("install-appliance.sh"), "install-appliance.sh"),
    ] {
        std::fs::copy(&from, payload.path().join(to)).unwrap_or_else(|err| panic!("{}: {err}", from.display()));
    }
    docker(&["cp", payload.path().to_str().expect("utf-8"), &format!("{name}:/root/pmesh-payload")]);
    host.ok("/root/pmesh-payload/install-appliance.sh /root/pmesh-payload");
    assert_eq!(host.sh("systemctl is-enabled pmesh-firstboot.service pmesh-agent.service"), "enabled\ndisabled");

    // A real token, in the OVF environment the stand-in serves; it reaches the container on
    // docker exec's stdin, never in a command line.
    let (token, fingerprint) = mesh.token(&["--name", "pc-fb"]).expect("token create");
    host.write_file("/var/lib/stand-in-guestinfo/ovfEnv", "0600", &ovf_environment(&master_address, &token, &fingerprint));
    let journal = || host.sh("journalctl --no-pager -o cat -u pmesh-firstboot -u pmesh-agent");

    let started = docker_output(&["exec", &name, "systemctl", "start", "pmesh-firstboot.service"]);
    assert!(started.status.success(), "systemctl start pmesh-firstboot: {}\n{}", String::from_utf8_lossy(&started.stderr), journal());
    assert!(journal().contains("pmesh-firstboot: done"), "{}", journal());
    assert_eq!(host.sh("systemctl is-enabled pmesh-firstboot.service"), "disabled", "the first boot disabled itself");
    assert_eq!(host.sh("systemctl is-enabled pmesh-agent.service; systemctl is-active pmesh-agent.service"), "enabled\nactive");
    host.ok("test -f /var/lib/pmesh-agent/.firstboot-done");
    wait_until("the master to list pc-fb as up", Duration::from_secs(30), || mesh.status("pc-fb").as_deref() == Some("up"))
        .unwrap_or_else(|err| panic!("{err}: {:?}\n{}", mesh.agents(), journal()));
    let listed = mesh.agents().expect("agents ls").into_iter().find(|agent| agent["name"] == "pc-fb").expect("pc-fb is listed");
    assert_eq!(listed["address"], format!("{}:7444", host.ip), "the address towards the master: {listed}");

    // The firewall: the live rule in netfilter, the persisted one in ip4save once.
    host.ok("iptables -C INPUT -p tcp --dport 7444 -j ACCEPT");
    assert_eq!(host.ok("cat /etc/systemd/scripts/ip4save") + "\n", ip4save_with_rule());
    // The guest cleared the plain guestinfo variable it could.
    assert!(host.ok("cat /var/log/stand-in-vmware-rpctool.log").lines().any(|call| call == "info-set guestinfo.pmesh.token"));

    // Started again (restarted: a oneshot that remains after exit is still active), the
    // unit's condition skips it: no second join, no restart of the agent.
    let pid = host.main_pid("pmesh-agent");
    host.ok("systemctl restart pmesh-firstboot.service");
    assert_eq!(host.sh("systemctl show -p ConditionResult --value pmesh-firstboot.service"), "no");
    assert_eq!(host.main_pid("pmesh-agent"), pid);

    // The token: in no journal field (messages, command lines, environment-derived fields),
    // in none of the agent's files or settings, and not in the master's log.
    let everything = docker_output(&["exec", &name, "journalctl", "--no-pager", "-o", "export"]);
    let everything = String::from_utf8_lossy(&everything.stdout);
    assert!(everything.contains("pmesh-firstboot: done"), "the journal was read");
    assert!(!everything.contains(&token), "the token is in the journal");
    let files = host.sh("find /var/lib/pmesh-agent /etc/pmesh /etc/systemd -type f -exec cat {} + 2>/dev/null");
    assert!(!files.contains(&token), "the token is stored in the agent's files");
    assert!(!master.log_text().contains(&token), "the token is in the master's log");
}

// ---- the Packer template and the OVF properties ---------------------------------------------

fn packer_dir() -> PathBuf {
    photon().join("packer")
}

/// A basic HCL check, for when Packer is absent: strings and comments close, brackets balance
/// outside them (template interpolations `${...}` included), and the top level is a sequence
/// of blocks. Returns the top-level block headers, such as `variable "vm_name"`.
fn hcl_structure(text: &str) -> Result<Vec<String>, String> {
    enum Open {
        Bracket(char, usize),
        Str(usize),
        Interp,
    }
    let chars: Vec<char> = text.chars().collect();
    let (mut stack, mut headers, mut header) = (Vec::new(), Vec::new(), String::new());
    let (mut index, mut line) = (0, 1);
    while index < chars.len() {
        let (c, next) = (chars[index], chars.get(index + 1).copied());
        if c == '\n' {
            line += 1;
        }
        if let Some(Open::Str(start)) = stack.last() {
            if stack.len() == 1 {
                header.push(c);
            }
            match (c, next) {
                ('\n', _) => return Err(format!("line {start}: unterminated string")),
                ('\\', _) => index += 1,
                ('"', _) => drop(stack.pop()),
                ('$' | '%', Some('{')) => {
                    stack.push(Open::Interp);
                    index += 1;
                }
                _ => {}
            }
            index += 1;
            continue;
        }
        match (c, next) {
            ('#', _) | ('/', Some('/')) => {
                while index < chars.len() && chars[index] != '\n' {
                    index += 1;
                }
                continue;
            }
            ('/', Some('*')) => {
                let start = line;
                index += 2;
                while index + 1 < chars.len() && !(chars[index] == '*' && chars[index + 1] == '/') {
                    line += usize::from(chars[index] == '\n');
                    index += 1;
                }
                if index + 1 >= chars.len() {
                    return Err(format!("line {start}: unterminated comment"));
                }
                index += 2;
                continue;
            }
            ('<', Some('<')) => {
                return Err(format!("line {line}: heredocs are not handled by this check"));
            }
            ('"', _) => {
                if stack.is_empty() {
                    header.push(c);
                }
                stack.push(Open::Str(line));
                index += 1;
                continue;
            }
            ('{' | '[' | '(', _) => {
                if stack.is_empty() {
                    headers.push(header.split_whitespace().collect::<Vec<_>>().join(" "));
                }
                stack.push(Open::Bracket(c, line));
            }
            ('}' | ']' | ')', _) => match stack.pop() {
                Some(Open::Interp) if c == '}' => {}
                Some(Open::Bracket(open, _)) if matches!((open, c), ('{', '}') | ('[', ']') | ('(', ')')) => {
                    if stack.is_empty() {
                        header.clear();
                        index += 1;
                        continue;
                    }
                }
                _ => return Err(format!("line {line}: unbalanced {c:?}")),
            },
            _ => {}
        }
        if stack.is_empty() {
            header.push(c);
        }
        index += 1;
    }
    match stack.last() {
        Some(Open::Bracket(open, start)) => Err(format!("line {start}: {open:?} is never closed")),
        Some(_) => Err("unterminated string or interpolation at the end".into()),
        None if !header.trim().is_empty() => Err(format!("text after the last block: {:?}", header.trim())),
        None => Ok(headers),
    }
}

/// What the appliance needs from the template, read from its text.
fn check_template_content(text: &str, headers: &[String]) {
    assert!(headers.iter().any(|header| header == "source \"vsphere-iso\" \"pmesh-controller\""), "{headers:?}");
    assert!(headers.iter().any(|header| header == "build"), "{headers:?}");
    assert!(!headers.iter().any(|header| header == "packer"), "the packer block belongs in plugins.pkr.hcl");
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "firmware = \"efi\"",
        "guest_os_type = \"vmwarePhoton64Guest\"",
        "disk_controller_type = [\"pvscsi\"]",
        "cdrom_type = \"sata\"",
        "export {",
        "linux /isolinux/vmlinuz root=/dev/ram0 loglevel=3 insecure_installation=1 ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.json photon.media=cdrom",
    ] {
        assert!(flat.contains(needle), "the template lacks {needle:?}");
    }
    assert_eq!(flat.matches("storage {").count(), 2, "two disks: the OS and the artifact cache");
    for secret in ["vcenter_password", "root_password", "root_password_crypted"] {
        let block = text.split(&format!("variable \"{secret}\" {{")).nth(1).and_then(|rest| rest.split("\n}").next());
        assert!(block.is_some_and(|block| block.contains("sensitive   = true")), "variable {secret} must be sensitive");
    }
    let placeholder = kickstart()["password"]["text"].as_str().expect("password text").to_owned();
    assert!(text.contains(&format!("\"{placeholder}\"")), "the template must replace the kickstart's placeholder {placeholder}");
    for source in text.lines().filter_map(|line| line.trim().strip_prefix("source      = \"${path.root}/")) {
        let relative = source.trim_end_matches('"');
        assert!(packer_dir().join(relative).exists(), "the template uploads {relative}, which does not exist");
    }
}

/// `packer version`, as (major, minor), when Packer is installed.
fn packer_version() -> Option<(u32, u32)> {
    let output = Command::new("packer").arg("version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split_whitespace().find_map(|word| word.strip_prefix('v'))?;
    let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

fn packer_validate(dir: &Path, args: &[&str]) -> Run {
    Command::new("packer").arg("validate").args(args).current_dir(dir).output().expect("running packer").into()
}

/// Packer before 1.7 has the vsphere-iso builder built in, so it checks every builder and
/// provisioner field, not only the syntax. It predates `http_content`, so that one line is left
/// out of the copy it checks, laid out like the repository so relative paths resolve.
fn legacy_full_validate() {
    let mirror = tempfile::tempdir().expect("temp dir");
    let packer_copy = mirror.path().join("photon/packer");
    std::fs::create_dir_all(&packer_copy).expect("mkdir");
    for name in ["ks.json", "firstboot", "firewall", "install-appliance.sh"] {
        std::os::unix::fs::symlink(photon().join(name), mirror.path().join("photon").join(name)).expect("symlink");
    }
    std::os::unix::fs::symlink(photon().join("../systemd"), mirror.path().join("systemd")).expect("symlink");
    let template = read(&packer_dir().join("pmesh-controller.pkr.hcl"));
    let stripped: String = template.lines().filter(|line| !line.contains("http_content")).map(|line| format!("{line}\n")).collect();
    std::fs::write(packer_copy.join("template.pkr.hcl"), stripped).expect("writing");
    let agent = photon().join("install-appliance.sh");
    #[rustfmt::skip]
    let vars = [
        "vcenter_server=vcenter.lab.example", "vcenter_username=builder@vsphere.local",
        "vcenter_password=vcenter-secret-value", "datacenter=dc1", "cluster=cluster1",
        "datastore=datastore1", "network=build-network", "iso_paths=[\"[datastore1] iso/photon.iso\"]",
        "root_password=root-secret-value", "root_password_crypted=$6$salt$hashvalue",
        &format!("agent_binary={}", agent.display()),
    ];
    let mut args = Vec::new();
    for var in &vars {
        args.extend(["-var", var]);
    }
    args.push("template.pkr.hcl");
    let run = packer_validate(&packer_copy, &args);
    assert_eq!(run.code, 0, "packer validate (full, Packer < 1.7):\n{}{}", run.stdout, run.stderr);
}

#[test]
fn the_packer_template_is_valid() {
    let template = packer_dir().join("pmesh-controller.pkr.hcl");
    let text = read(&template);
    let headers = hcl_structure(&text).unwrap_or_else(|err| panic!("{}: {err}", template.display()));
    check_template_content(&text, &headers);
    let plugins = read(&packer_dir().join("plugins.pkr.hcl"));
    assert_eq!(hcl_structure(&plugins).expect("plugins.pkr.hcl"), ["packer"]);
    assert!(plugins.contains("source  = \"github.com/hashicorp/vsphere\""), "{plugins}");

    let Some(version) = packer_version() else {
        eprintln!(
            "packer is not installed (`apt-get install -y packer`): the template was checked by the \
             structural HCL check above, not by Packer"
        );
        return;
    };
    let run = packer_validate(&packer_dir(), &["-syntax-only", "pmesh-controller.pkr.hcl"]);
    assert_eq!(run.code, 0, "packer validate -syntax-only:\n{}{}", run.stdout, run.stderr);
    if version < (1, 7) {
        legacy_full_validate();
    } else {
        // Recent Packer reads the whole directory, plugins.pkr.hcl's requirements included.
        let run = packer_validate(&packer_dir(), &["-syntax-only", "."]);
        assert_eq!(run.code, 0, "packer validate -syntax-only .:\n{}{}", run.stdout, run.stderr);
    }
}

#[test]
fn the_template_checks_catch_a_broken_template() {
    let text = read(&packer_dir().join("pmesh-controller.pkr.hcl"));
    let broken = text.replacen("  export {\n", "  export \n", 1);
    assert!(hcl_structure(&broken).is_err(), "the structural check missed an unbalanced brace");
    assert!(hcl_structure("a = \"open\n").is_err());
    assert_eq!(hcl_structure("/* a\n */ block \"label\" {\n  x = \"${var.a} }\" // }\n}\n"), Ok(vec!["block \"label\"".to_owned()]));
    if packer_version().is_some() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("broken.pkr.hcl"), broken).expect("writing");
        let run = packer_validate(dir.path(), &["-syntax-only", "broken.pkr.hcl"]);
        assert_ne!(run.code, 0, "packer accepted a broken template");
    }
}

#[test]
fn the_ovf_properties_agree_across_script_yaml_and_readme() {
    let script = read(&photon().join("firstboot/pmesh-firstboot.sh"));
    let list = script.split("known_keys=(").nth(1).and_then(|rest| rest.split(')').next()).expect("known_keys in the script");
    let keys: Vec<&str> = list.split_whitespace().collect();
    assert!(keys.len() >= 9 && keys.iter().all(|key| key.starts_with("pmesh.")), "{keys:?}");

    let yaml = read(&photon().join("packer/ova-environment.yaml"));
    assert!(yaml.contains("transports:\n        - com.vmware.guestInfo\n"), "the OVF must use the guestinfo transport");
    let declared: Vec<&str> =
        yaml.lines().filter_map(|line| line.strip_prefix("        ")?.strip_suffix(':')).filter(|key| key.starts_with("pmesh.")).collect();
    assert_eq!(declared, keys, "ova-environment.yaml declares other properties than the script reads");
    let token_block = yaml.split("        pmesh.token:\n").nth(1).expect("pmesh.token").split("        pmesh.").next().unwrap_or_default();
    assert!(token_block.contains("password: true"), "the token must be a password property");

    let readme = read(&photon().join("README.md"));
    for key in &keys {
        assert!(readme.contains(&format!("`{key}`")), "photon/README.md does not document {key}");
    }
    for needle in [
        "--prop:pmesh.master=",
        "--prop:pmesh.token=",
        "--prop:pmesh.ca_fingerprint=",
        "--X:injectOvfEnv",
        "pmesh token create --ttl 2h --name pc-1",
    ] {
        assert!(readme.contains(needle), "photon/README.md lacks {needle:?}");
    }
}
