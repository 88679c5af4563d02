//! A temporary root with an ip4save and stand-ins on PATH, in which the firewall, first-boot
//! and install scripts run: each stand-in records its arguments (and the agent's its
//! environment) for the tests to read.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pmesh_tests::Run;

use crate::common::{photon, stock_ip4save};

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("writing a script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A temporary root with an ip4save and stand-ins on PATH, for the firewall and first-boot
/// scripts.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
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
    pub fn new() -> Sandbox {
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

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    pub fn stubs(&self) -> PathBuf {
        self.dir.path().join("bin")
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("log")
    }
    /// Plain guestinfo variables, a file each, which the vmware-rpctool stand-in gets and sets.
    pub fn guestinfo(&self) -> PathBuf {
        self.dir.path().join("guestinfo")
    }
    pub fn ip4save(&self) -> PathBuf {
        self.root().join("etc/systemd/scripts/ip4save")
    }
    pub fn marker(&self) -> PathBuf {
        self.root().join("var/lib/pmesh-agent/.firstboot-done")
    }
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs().join(name)).unwrap_or_default()
    }
    pub fn set_ovfenv(&self, xml: &str) {
        std::fs::write(self.dir.path().join("ovfenv.xml"), xml).expect("writing the OVF environment");
    }
    pub fn set_join_codes(&self, codes: &[i32]) {
        let text: String = codes.iter().map(|code| format!("{code}\n")).collect();
        std::fs::write(self.logs().join("join-codes"), text).expect("writing join codes");
    }
    pub fn n_joins(&self) -> usize {
        self.log("join-count").trim().parse().unwrap_or(0)
    }

    /// Runs `script args` with only the stand-ins, /usr/bin and /bin on PATH.
    pub fn run(&self, script: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
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

    pub fn firewall(&self, args: &[&str]) -> Run {
        self.run(&photon().join("firewall/pmesh-firewall.sh"), args, &[])
    }

    pub fn first_boot(&self, env: &[(&str, &str)]) -> Run {
        self.run(&photon().join("firstboot/pmesh-firstboot.sh"), &[], env)
    }
}
