//! Preflight: what the host is and holds, read by one probe script that changes nothing, and
//! every problem that would stop the install, found before anything changes.
//!
//! The probe prints `key=value` lines ([`Facts`]); [`evaluate`] turns facts and the
//! operator's request into problems (sentences that say what to do) and notes. Nothing here
//! does I/O except [`probe`], so the rules are tested as data.

use std::collections::BTreeMap;
use std::time::Duration;

use super::remote::Host;
use super::shell::quote;
use super::ssh::SshError;
use super::{Layout, Request};

/// The probe: facts about the OS, systemd, Docker, the agent's port, the master's reachability
/// and what a previous bootstrap left, as `key=value` lines. Arguments: agent port, master
/// host, master port. It runs with `set -e`, so every test sits in an `if` or `&&` list.
const PROBE: &str = r#"
port=$1 master_host=$2 master_port=$3
say() { printf '%s=%s\n' "$1" "$(printf '%s' "$2" | tr '\n\t' '  ')"; }
if [ -r /etc/os-release ]; then
  grep -E '^(ID|VERSION_ID|ID_LIKE|PRETTY_NAME)=' /etc/os-release | sed 's/^/os_/' || true
fi
say arch "$(uname -m)"
say hostname "$(cat /proc/sys/kernel/hostname 2>/dev/null || true)"
say uid "$(id -u)"
if [ -d /run/systemd/system ]; then say systemd "$(systemctl --version 2>/dev/null | head -n1)"; fi
for tool in tdnf apt-get dnf sha256sum ss iptables firewall-cmd ufw systemd-sysusers bash timeout nc dockerd; do
  if command -v "$tool" >/dev/null 2>&1; then say "has_$tool" yes; fi
done
free=$(df -Pk / /usr/local /var/lib /var/tmp 2>/dev/null | tail -n +2 | while read -r _ _ _ avail _; do echo "$avail"; done | sort -n | head -n1)
say disk_free_kib "$free"
if systemctl cat docker.service >/dev/null 2>&1; then
  say docker_unit yes
  say docker_enabled "$(systemctl is-enabled docker.service 2>/dev/null || true)"
  say docker_active "$(systemctl is-active docker.service 2>/dev/null || true)"
fi
if [ -S /var/run/docker.sock ]; then
  say docker_socket yes
  say docker_socket_gid "$(stat -c %g /var/run/docker.sock 2>/dev/null || true)"
fi
if getent group docker >/dev/null 2>&1; then
  say docker_group yes
  say docker_group_gid "$(getent group docker | cut -d: -f3)"
fi
if command -v ss >/dev/null 2>&1; then
  say port_listener "$(ss -Htlnp "sport = :$port" 2>/dev/null | head -n1)"
else
  hex=$(printf '%04X' "$port")
  if grep -Eq "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:0000 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
    say port_listener "a process (ss is missing, so which one is unknown)"
  fi
fi
if command -v timeout >/dev/null 2>&1 && command -v bash >/dev/null 2>&1; then
  if timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$master_host" "$master_port" 2>/dev/null; then say master_reach yes; else say master_reach no; fi
elif command -v nc >/dev/null 2>&1; then
  if nc -z -w 5 "$master_host" "$master_port" >/dev/null 2>&1; then say master_reach yes; else say master_reach no; fi
fi
sum() { if [ -f "$2" ]; then say "$1" "$(sha256sum "$2" | cut -d' ' -f1)"; fi; }
if command -v sha256sum >/dev/null 2>&1; then
  sum binary_sha256 @BINARY@
  sum unit_sha256 @UNIT@
  sum sysusers_sha256 @SYSUSERS@
fi
if [ -f @CONFIG@ ]; then say config yes; fi
if getent passwd pmesh-agent >/dev/null 2>&1; then say agent_user yes; fi
if [ -f @DATA_DIR@/agent.json ]; then say enrolment "$(cat @DATA_DIR@/agent.json)"; fi
if [ -f @DATA_DIR@/identity/agent.pem ]; then say credential yes; fi
say agent_enabled "$(systemctl is-enabled pmesh-agent.service 2>/dev/null || true)"
say agent_active "$(systemctl is-active pmesh-agent.service 2>/dev/null || true)"
if [ -f /etc/systemd/scripts/ip4save ]; then
  say ip4save yes
  if grep -Eq -- "^-A INPUT .*--dport $port .*-j ACCEPT" /etc/systemd/scripts/ip4save; then say ip4save_rule yes; fi
fi
if command -v iptables >/dev/null 2>&1; then
  if rules=$(iptables -S INPUT 2>&1); then
    say iptables_policy "$(printf '%s\n' "$rules" | sed -n 's/^-P INPUT //p')"
    if printf '%s\n' "$rules" | grep -Eq -- '-j (DROP|REJECT)'; then say iptables_filters yes; fi
    if iptables -C INPUT -p tcp --dport "$port" -j ACCEPT >/dev/null 2>&1; then say iptables_rule yes; fi
  else
    say iptables_error "$(printf '%s\n' "$rules" | head -n1)"
  fi
fi
if command -v firewall-cmd >/dev/null 2>&1 && [ "$(systemctl is-active firewalld 2>/dev/null || true)" = active ]; then
  say firewalld active
  if firewall-cmd -q --query-port="$port/tcp" 2>/dev/null; then say firewalld_rule yes; fi
fi
if command -v ufw >/dev/null 2>&1 && ufw status 2>/dev/null | grep -q '^Status: active'; then
  say ufw active
  if ufw status 2>/dev/null | grep -Eq "^$port/tcp +ALLOW"; then say ufw_rule yes; fi
fi
true
"#;

/// What the probe found, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts(BTreeMap<String, String>);

impl Facts {
    /// Parses the probe's `key=value` lines; quotes around os-release values are dropped.
    pub fn parse(text: &str) -> Facts {
        let facts = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| {
                let value = value.trim();
                let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
                (key.trim().to_owned(), value.to_owned())
            })
            .collect();
        Facts(facts)
    }

    /// The value of `key`, when present and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|value| !value.is_empty())
    }

    /// Whether `key` is `yes`.
    pub fn yes(&self, key: &str) -> bool {
        self.get(key) == Some("yes")
    }

    /// The OS family, from os-release.
    pub fn os(&self) -> Os {
        let id = self.get("os_ID").unwrap_or_default();
        let like = self.get("os_ID_LIKE").unwrap_or_default();
        let is = |name: &str| id == name || like.split_whitespace().any(|entry| entry == name);
        if id == "photon" {
            Os::Photon
        } else if is("debian") || is("ubuntu") {
            Os::Debian
        } else if is("rhel") || is("fedora") || is("centos") {
            Os::Rhel
        } else {
            Os::Other
        }
    }

    /// `PRETTY_NAME`, else `ID VERSION_ID`.
    pub fn os_name(&self) -> String {
        self.get("os_PRETTY_NAME")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{} {}", self.get("os_ID").unwrap_or("unknown"), self.get("os_VERSION_ID").unwrap_or("")))
    }

    /// The enrolment record on the host, when there is one and it reads as JSON.
    pub fn enrolment(&self) -> Option<Enrolled> {
        let value: serde_json::Value = serde_json::from_str(self.get("enrolment")?).ok()?;
        Some(Enrolled {
            name: value["name"].as_str()?.to_owned(),
            master: value["master"].as_str()?.to_owned(),
            advertise: value["advertise"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// Whether the host holds a full enrolment (record and credential).
    pub fn enrolled(&self) -> bool {
        self.enrolment().is_some() && self.yes("credential")
    }
}

/// The OS families bootstrap knows how to install Docker on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    Photon,
    Debian,
    Rhel,
    Other,
}

/// The agent's enrolment on the host (`agent.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub name: String,
    pub master: String,
    pub advertise: String,
}

/// What the master knows about the agent name being bootstrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub address: String,
}

/// Problems (each stops the bootstrap) and notes (worth saying, stop nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

/// Runs the probe on `host` (as root when `host.sudo` works, else as the login user).
///
/// # Errors
/// When the session fails, or the host wants the login's password changed.
pub async fn probe(host: &Host<'_>, as_root: bool, layout: &Layout, agent_port: u16, master: (&str, u16)) -> Result<Facts, SshError> {
    let script = PROBE
        .replace("@BINARY@", &quote(layout.binary))
        .replace("@UNIT@", &quote(layout.unit))
        .replace("@SYSUSERS@", &quote(layout.sysusers))
        .replace("@CONFIG@", &quote(layout.config))
        .replace("@DATA_DIR@", &quote(layout.data_dir));
    let args = format!("set -- {} {} {}\n", agent_port, quote(master.0), master.1);
    let script = format!("{args}{script}");
    let timeout = Duration::from_secs(60);
    let output = if as_root { host.run(&script, timeout).await? } else { host.run_unprivileged(&script, timeout).await? };
    if password_change_required(&output.stderr) {
        return Err(SshError::PasswordExpired);
    }
    if !output.success() {
        return Err(SshError::Session(format!("the preflight probe failed on the host: {}", output.stderr.trim())));
    }
    Ok(Facts::parse(&output.stdout))
}

/// Whether sshd refused to run a command because the password must be changed first.
pub fn password_change_required(stderr: &str) -> bool {
    let stderr = stderr.to_ascii_lowercase();
    stderr.contains("password change required") || stderr.contains("password has expired") || stderr.contains("your password has expired")
}

/// Everything that would stop the install, and the notes worth printing, in the order an
/// operator fixes them: the platform, its resources, the network, then the enrolment.
pub fn evaluate(facts: &Facts, request: &Request, registered: Option<&Registered>) -> Findings {
    let mut findings = Findings::default();
    check_platform(facts, request, &mut findings);
    check_resources(facts, request, &mut findings);
    check_network(facts, request, &mut findings);
    check_enrolment(facts, request, registered, &mut findings);
    findings
}

/// Root, the OS and its version, the architecture, and the tools the steps rely on.
fn check_platform(facts: &Facts, request: &Request, findings: &mut Findings) {
    let problems = &mut findings.problems;
    if let Some(problem) = &request.root_problem {
        problems.push(problem.clone());
    }
    let version = facts.get("os_VERSION_ID").unwrap_or_default();
    match facts.os() {
        Os::Other => problems
            .push(format!("the OS is {}; bootstrap supports Photon OS 4 and 5, Debian, Ubuntu and RHEL-like systems", facts.os_name())),
        Os::Photon if !(version.starts_with('4') || version.starts_with('5')) => {
            problems.push(format!("the OS is Photon OS {version}; bootstrap supports Photon OS 4 and 5"));
        }
        _ => {}
    }
    let arch = normalise_arch(facts.get("arch").unwrap_or("unknown"));
    match request.binary_arch {
        Some(binary_arch) if binary_arch != arch => problems.push(format!(
            "the host is {arch} but the agent binary {} is built for {binary_arch}; pass --agent-binary with a {arch} build",
            request.binary_path
        )),
        _ => {}
    }
    if facts.get("systemd").is_none() {
        problems.push("systemd is not running as PID 1 (no /run/systemd/system); the agent runs as a systemd unit".into());
    }
    if !facts.yes("has_sha256sum") {
        problems.push("sha256sum is missing (coreutils); it verifies the uploaded agent binary".into());
    }
    if !facts.yes("has_systemd-sysusers") && !facts.yes("agent_user") {
        problems.push("systemd-sysusers is missing; it creates the pmesh-agent system user".into());
    }
}

/// Docker (present, or installable) and the disk space the binary and Docker need.
fn check_resources(facts: &Facts, request: &Request, findings: &mut Findings) {
    let (problems, notes) = (&mut findings.problems, &mut findings.notes);
    let os = facts.os();
    let docker = docker_state(facts);
    let mut needed_kib = request.binary_size / 1024 * 2 + 64 * 1024;
    match docker {
        DockerState::Missing => {
            needed_kib += 1024 * 1024;
            match (os, package_manager(facts, os)) {
                (Os::Other, _) => {}
                (_, None) => problems.push(format!("Docker is not installed and no package manager for {} was found", facts.os_name())),
                (_, Some(_)) => notes.push("Docker is not installed: it will be installed".into()),
            }
        }
        DockerState::External | DockerState::Unit { .. } => {}
    }
    if let DockerGroup::Problem(problem) = docker_group(facts) {
        problems.push(problem);
    }
    match facts.get("disk_free_kib").and_then(|free| free.parse::<u64>().ok()) {
        Some(free) if free < needed_kib => problems.push(format!(
            "only {} MiB free on the file systems holding /usr/local, /var/lib and /var/tmp; {} MiB are needed",
            free / 1024,
            needed_kib / 1024
        )),
        Some(_) => {}
        None => notes.push("free disk space could not be read".into()),
    }
}

/// The agent's port (free, or held by this agent) and the way to the master.
fn check_network(facts: &Facts, request: &Request, findings: &mut Findings) {
    let (problems, notes) = (&mut findings.problems, &mut findings.notes);
    if let Some(listener) = facts.get("port_listener") {
        // `ss -p` names the process only where root may look into it (not in every
        // container); then a running agent enrolled on this port is taken to be the listener.
        let ours_by_name = listener.contains("pmesh-agent");
        let ours_by_unit = !listener.contains("users:")
            && facts.get("agent_active") == Some("active")
            && facts.enrolment().and_then(|enrolled| super::split_host_port(&enrolled.advertise).map(|(_, port)| port))
                == Some(request.agent_port);
        if !ours_by_name && !ours_by_unit {
            problems.push(format!(
                "port {} is already in use on the host ({}); pick another with --advertise HOST:PORT",
                request.agent_port,
                listener.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
    }
    match facts.get("master_reach") {
        Some("yes") => {}
        Some(_) => problems.push(format!(
            "the host cannot reach the master at {} (TCP connect failed); check its `advertise` address and the firewalls between them",
            request.master
        )),
        None => notes.push(format!("could not check that the host reaches the master at {} (no bash or nc there)", request.master)),
    }
}

/// The host's enrolment against the master's registry: they must agree.
fn check_enrolment(facts: &Facts, request: &Request, registered: Option<&Registered>, findings: &mut Findings) {
    let problem = match (&facts.enrolment(), registered) {
        (Some(enrolled), _) if enrolled.name != request.name || enrolled.master != request.master => format!(
            "the host is already enrolled as agent {} with master {}; bootstrap will not re-enrol it as {} with {} \
             (remove {} on the host to start over)",
            enrolled.name, enrolled.master, request.name, request.master, request.layout.data_dir
        ),
        (Some(enrolled), None) => format!(
            "the host is enrolled as agent {}, but the master has no such agent (removed?); remove {} on the host and run bootstrap again",
            enrolled.name, request.layout.data_dir
        ),
        (None, Some(registered)) => format!(
            "an agent named {} is already registered with the master (at {}); choose another --name, or remove it with `pmesh agents rm {}`",
            request.name, registered.address, request.name
        ),
        _ => return,
    };
    findings.problems.push(problem);
}

/// How Docker is present on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerState {
    /// No docker.service and no socket.
    Missing,
    /// A socket but no unit: an engine managed some other way; bootstrap leaves it alone.
    External,
    /// A docker.service unit.
    Unit { enabled: bool, active: bool },
}

/// Docker's state from the facts.
pub fn docker_state(facts: &Facts) -> DockerState {
    if facts.yes("docker_unit") {
        DockerState::Unit { enabled: facts.get("docker_enabled") == Some("enabled"), active: facts.get("docker_active") == Some("active") }
    } else if facts.yes("docker_socket") {
        DockerState::External
    } else {
        DockerState::Missing
    }
}

/// The package manager that installs Docker on this OS, if present.
pub fn package_manager(facts: &Facts, os: Os) -> Option<&'static str> {
    let candidate = match os {
        Os::Photon => "tdnf",
        Os::Debian => "apt-get",
        Os::Rhel => "dnf",
        Os::Other => return None,
    };
    facts.yes(&format!("has_{candidate}")).then_some(candidate)
}

/// `uname -m` names, in one spelling.
pub fn normalise_arch(arch: &str) -> &str {
    match arch {
        "arm64" | "aarch64" => "aarch64",
        "amd64" | "x86_64" => "x86_64",
        other => other,
    }
}

/// The architecture an ELF file is built for, from its header.
pub fn elf_arch(header: &[u8]) -> Option<&'static str> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return None;
    }
    match u16::from_le_bytes([header[18], header[19]]) {
        0x3e => Some("x86_64"),
        0xb7 => Some("aarch64"),
        _ => None,
    }
}

mod docker_group;
pub use docker_group::{docker_group, DockerGroup};

#[cfg(test)]
mod tests;
