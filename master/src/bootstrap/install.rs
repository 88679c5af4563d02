//! The install: a plan made from the preflight facts (what each step finds and whether it
//! must change something), and the steps that carry it out on the host.
//!
//! Every step is idempotent: the plan skips what is already in place, and each step's script
//! checks again before it acts. `--dry-run` prints the plan and stops.

use std::time::Duration;

use super::preflight::{docker_group, docker_state, package_manager, DockerGroup, DockerState, Facts, Os};
use super::remote::{Host, STEP_TIMEOUT};
use super::shell::{quote, write_file_script};
use super::{Error, Layout, Request};

/// The agent's unit, as shipped in `systemd/`.
pub const UNIT: &str = include_str!("../../../systemd/pmesh-agent.service");
/// The system users, as shipped in `systemd/`.
pub const SYSUSERS: &str = include_str!("../../../systemd/pmesh.sysusers");

/// One step of the install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Docker(DockerAction),
    /// Make the docker group with the socket's gid, so the unit's `SupplementaryGroups=docker`
    /// reaches the socket.
    DockerGroup {
        gid: u32,
    },
    Account,
    Binary {
        upgrade: bool,
    },
    Config,
    Enrol,
    Unit,
    Service,
    Firewall(Firewall),
}

/// What the Docker step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerAction {
    Install { package_manager: &'static str, os: Os },
    EnableStart,
}

/// The firewall the host runs, as far as the agent's port goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firewall {
    /// Photon: a live iptables rule, persisted in `/etc/systemd/scripts/ip4save`.
    PhotonIptables,
    Firewalld,
    Ufw,
    /// A live iptables rule only: there is no rules file bootstrap knows to persist it in.
    IptablesLive,
}

/// A step as planned: what it finds, and the change it makes (none when in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub title: &'static str,
    /// `Some(step)` when the step changes something.
    pub change: Option<Step>,
    /// What is there, or what will be done.
    pub detail: String,
}

impl Planned {
    fn keep(title: &'static str, detail: impl Into<String>) -> Planned {
        Planned { title, change: None, detail: detail.into() }
    }
    fn change(title: &'static str, step: Step, detail: impl Into<String>) -> Planned {
        Planned { title, change: Some(step), detail: detail.into() }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// The steps, in order, for this host and request.
pub fn plan(facts: &Facts, request: &Request) -> Vec<Planned> {
    let layout = &request.layout;
    let mut steps = Vec::new();

    steps.push(match docker_state(facts) {
        DockerState::Missing => {
            let os = facts.os();
            let manager = package_manager(facts, os).unwrap_or("a package manager");
            Planned::change(
                "docker",
                Step::Docker(DockerAction::Install { package_manager: package_manager(facts, os).unwrap_or("none"), os }),
                format!("install Docker with {manager}, then enable and start docker.service"),
            )
        }
        DockerState::External => Planned::keep("docker", "using the engine at /var/run/docker.sock (this host has no docker.service)"),
        DockerState::Unit { enabled: true, active: true } => Planned::keep("docker", "docker.service is enabled and active"),
        DockerState::Unit { .. } => Planned::change("docker", Step::Docker(DockerAction::EnableStart), "enable and start docker.service"),
    });

    if let DockerGroup::Create { gid } = docker_group(facts) {
        steps.push(Planned::change(
            "docker-group",
            Step::DockerGroup { gid },
            format!("create the docker group with gid {gid}, the group that owns /var/run/docker.sock"),
        ));
    }

    let sysusers_current = facts.get("sysusers_sha256") == Some(sha256_hex(SYSUSERS.as_bytes()).as_str());
    steps.push(if sysusers_current && facts.yes("agent_user") {
        Planned::keep("account", "the pmesh-agent system user exists")
    } else {
        Planned::change("account", Step::Account, format!("install {} and create the pmesh-agent system user", layout.sysusers))
    });

    let local = &request.binary_sha256;
    steps.push(match facts.get("binary_sha256") {
        None => Planned::change(
            "binary",
            Step::Binary { upgrade: false },
            format!("upload pmesh-agent (sha256 {}) to {}", short(local), layout.binary),
        ),
        Some(remote) if remote == local => Planned::keep("binary", format!("{} is this version (sha256 {})", layout.binary, short(local))),
        Some(remote) if request.upgrade => Planned::change(
            "binary",
            Step::Binary { upgrade: true },
            format!("replace {} (sha256 {} with {})", layout.binary, short(remote), short(local)),
        ),
        Some(remote) => Planned::keep(
            "binary",
            format!(
                "{} differs from the local binary (sha256 {} here, {} there); kept: pass --upgrade to replace it",
                layout.binary,
                short(local),
                short(remote)
            ),
        ),
    });

    steps.push(if facts.yes("config") {
        Planned::keep("config", format!("{} exists; kept as it is", layout.config))
    } else {
        Planned::change("config", Step::Config, format!("write {}", layout.config))
    });

    steps.push(match facts.enrolment() {
        Some(enrolled) if facts.enrolled() => {
            Planned::keep("enrol", format!("enrolled as agent {} with master {}", enrolled.name, enrolled.master))
        }
        _ => Planned::change(
            "enrol",
            Step::Enrol,
            format!("enrol as agent {} with master {}: a one-time token now, the key made on the host", request.name, request.master),
        ),
    });

    let unit_current = facts.get("unit_sha256") == Some(sha256_hex(UNIT.as_bytes()).as_str());
    steps.push(if unit_current {
        Planned::keep("unit", format!("{} is current", layout.unit))
    } else {
        Planned::change("unit", Step::Unit, format!("install {}", layout.unit))
    });

    let running = facts.get("agent_enabled") == Some("enabled") && facts.get("agent_active") == Some("active");
    let changed_before = steps.iter().any(|step| matches!(step.change, Some(Step::Binary { .. } | Step::Unit | Step::Enrol)));
    steps.push(match (running, changed_before) {
        (true, false) => Planned::keep("service", "pmesh-agent.service is enabled and active"),
        (true, true) => Planned::change("service", Step::Service, "restart pmesh-agent.service"),
        (false, _) => Planned::change("service", Step::Service, "enable and start pmesh-agent.service"),
    });

    steps.push(firewall(facts, request.agent_port));
    steps
}

fn firewall(facts: &Facts, port: u16) -> Planned {
    let title = "firewall";
    if facts.yes("ip4save") {
        return if facts.yes("ip4save_rule") && facts.yes("iptables_rule") {
            Planned::keep(title, format!("tcp/{port} is open and persisted in /etc/systemd/scripts/ip4save"))
        } else {
            Planned::change(
                title,
                Step::Firewall(Firewall::PhotonIptables),
                format!("open tcp/{port}: a live iptables rule, persisted in /etc/systemd/scripts/ip4save"),
            )
        };
    }
    if facts.get("firewalld") == Some("active") {
        return if facts.yes("firewalld_rule") {
            Planned::keep(title, format!("firewalld allows tcp/{port}"))
        } else {
            Planned::change(title, Step::Firewall(Firewall::Firewalld), format!("allow tcp/{port} in firewalld (runtime and permanent)"))
        };
    }
    if facts.get("ufw") == Some("active") {
        return if facts.yes("ufw_rule") {
            Planned::keep(title, format!("ufw allows tcp/{port}"))
        } else {
            Planned::change(title, Step::Firewall(Firewall::Ufw), format!("allow tcp/{port} in ufw"))
        };
    }
    if let Some(error) = facts.get("iptables_error") {
        return Planned::keep(
            title,
            format!("skipped: iptables cannot be read here ({error}); if a firewall filters inbound traffic, open tcp/{port}"),
        );
    }
    if facts.get("iptables_policy").is_some() {
        let filters = facts.get("iptables_policy") != Some("ACCEPT") || facts.yes("iptables_filters");
        return match (filters, facts.yes("iptables_rule")) {
            (false, _) => Planned::keep(title, format!("iptables accepts inbound traffic; tcp/{port} needs no rule")),
            (true, true) => Planned::keep(title, format!("iptables accepts tcp/{port}")),
            (true, false) => Planned::change(
                title,
                Step::Firewall(Firewall::IptablesLive),
                format!("add a live iptables rule for tcp/{port} (not persisted: no rules file bootstrap knows)"),
            ),
        };
    }
    Planned::keep(title, "skipped: no iptables, firewalld or ufw on the host")
}

fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

/// The shell script for a step that runs as one script; the binary upload and enrolment
/// have their own paths (they need the SSH session and the master).
pub fn script(step: &Step, request: &Request) -> String {
    let layout = &request.layout;
    let port = request.agent_port;
    match step {
        Step::Docker(DockerAction::Install { package_manager, os }) => {
            let install = match (os, *package_manager) {
                (Os::Photon, _) => {
                    // Old Photon 4 images carry an expired repository key; updating photon-repos fixes it.
                    "tdnf -y -q install docker || { tdnf -y -q update photon-repos && tdnf -y -q makecache && tdnf -y -q install docker; }"
                }
                (Os::Debian, _) => {
                    "DEBIAN_FRONTEND=noninteractive apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get -y -q install docker.io"
                }
                _ => "dnf -y -q install docker || { echo 'install Docker (docker-ce or moby-engine) on this host, then run bootstrap again' >&2; exit 1; }",
            };
            format!("{install}\nsystemctl enable --now docker.service\n")
        }
        Step::Docker(DockerAction::EnableStart) => "systemctl enable --now docker.service\n".into(),
        // `-o`: the gid may have a name already (dockerroot); docker becomes another name for it.
        Step::DockerGroup { gid } => format!("getent group docker >/dev/null || groupadd -o -g {gid} docker\n"),
        Step::Account => format!("{}systemd-sysusers {}\n", write_file_script(layout.sysusers, "0644", SYSUSERS), quote(layout.sysusers)),
        Step::Config => {
            let content = format!(
                "# pmesh agent settings, written by `pmesh bootstrap`, which never overwrites this file.\n\
                 # Every key and its default is in the README (agent.toml).\n\
                 listen = \"0.0.0.0:{port}\"\n"
            );
            format!("if [ ! -e {0} ]; then\n{1}fi\n", quote(layout.config), write_file_script(layout.config, "0644", &content))
        }
        Step::Unit => format!("{}systemctl daemon-reload\n", write_file_script(layout.unit, "0644", UNIT)),
        Step::Service => {
            "systemctl enable pmesh-agent.service\n\
             if [ \"$(systemctl is-active pmesh-agent.service || true)\" = active ]; then systemctl restart pmesh-agent.service; else systemctl start pmesh-agent.service; fi\n"
                .into()
        }
        Step::Firewall(kind) => {
            let live = format!(
                "iptables -C INPUT -p tcp --dport {port} -j ACCEPT 2>/dev/null || iptables -I INPUT -p tcp --dport {port} -j ACCEPT\n"
            );
            match kind {
                Firewall::PhotonIptables => format!("{live}{}", persist_ip4save(port)),
                Firewall::IptablesLive => live,
                Firewall::Firewalld => format!("firewall-cmd -q --add-port={port}/tcp\nfirewall-cmd -q --permanent --add-port={port}/tcp\n"),
                Firewall::Ufw => format!("ufw allow {port}/tcp\n"),
            }
        }
        Step::Binary { .. } | Step::Enrol => String::new(),
    }
}

/// Inserts the rule into ip4save's filter table, before its COMMIT. Restarting iptables.service
/// would flush Docker's chains, so the live rule is added separately and the service is never
/// restarted.
fn persist_ip4save(port: u16) -> String {
    format!(
        r#"f=/etc/systemd/scripts/ip4save
if ! grep -Eq -- "^-A INPUT .*--dport {port} .*-j ACCEPT" "$f"; then
  rule='-A INPUT -p tcp -m tcp --dport {port} -j ACCEPT'
  in_filter=0 inserted=0
  while IFS= read -r line; do
    case "$line" in '*filter'*) in_filter=1 ;; esac
    if [ "$in_filter" = 1 ] && [ "$inserted" = 0 ] && [ "$line" = COMMIT ]; then printf '%s\n' "$rule"; inserted=1; fi
    printf '%s\n' "$line"
  done < "$f" > "$f.pmesh-new"
  if [ "$inserted" = 0 ]; then printf '*filter\n%s\nCOMMIT\n' "$rule" >> "$f.pmesh-new"; fi
  chmod --reference="$f" "$f.pmesh-new"
  mv -f "$f.pmesh-new" "$f"
fi
"#
    )
}

/// The script that installs the binary uploaded into `upload_dir` after checking its sha256,
/// and checks the installed copy again before it replaces the old one. The upload directory
/// is removed whatever happens.
pub fn install_binary_script(upload_dir: &str, layout: &Layout, sha256: &str) -> String {
    let dir = quote(upload_dir);
    let target = quote(layout.binary);
    let staged = quote(&format!("{}.pmesh-new", layout.binary));
    format!(
        r#"upload={dir}
trap 'rm -rf "$upload"' EXIT
check() {{ actual=$(sha256sum "$1" | cut -d' ' -f1); if [ "$actual" != {sha256} ]; then echo "$1 has sha256 $actual, not {sha256}" >&2; rm -f {staged}; exit 3; fi; }}
check "$upload/pmesh-agent"
install -d -m 0755 "$(dirname {target})"
install -m 0755 -o root -g root "$upload/pmesh-agent" {staged}
check {staged}
mv -f {staged} {target}
"#
    )
}

/// The script that enrols the host. The token is exported inside the script, which travels
/// on stdin, so it never appears in a process's arguments.
pub fn enrol_script(request: &Request, token: &str, ca_fingerprint: &str, master: &str) -> String {
    format!(
        "PMESH_JOIN_TOKEN={token}\nexport PMESH_JOIN_TOKEN\n{binary} join --data-dir {data_dir} --master {master} --ca-fingerprint {fingerprint} --name {name} --advertise {advertise}\n",
        token = quote(token),
        binary = quote(request.layout.binary),
        data_dir = quote(request.layout.data_dir),
        master = quote(master),
        fingerprint = quote(ca_fingerprint),
        name = quote(&request.name),
        advertise = quote(&request.advertise),
    )
}

/// Runs a step's script as root; a failure carries the script's stderr.
///
/// # Errors
/// [`Error::Failed`] with the step's name and what the host said.
pub async fn run_step(host: &Host<'_>, title: &str, script: &str, timeout: Duration) -> Result<String, Error> {
    let output = host.run(script, timeout).await.map_err(|err| Error::Failed(format!("{title}: {err}")))?;
    if output.success() {
        return Ok(output.stdout);
    }
    let said = [output.stderr.trim(), output.stdout.trim()].into_iter().find(|text| !text.is_empty()).unwrap_or("no output");
    Err(Error::Failed(format!("{title} failed on the host (exit {}): {said}", output.code.map_or("none".into(), |code| code.to_string()))))
}

/// How long a step may take: installing packages is slow.
pub fn timeout(step: &Step) -> Duration {
    match step {
        Step::Docker(DockerAction::Install { .. }) => Duration::from_secs(900),
        Step::Service => Duration::from_secs(180),
        _ => STEP_TIMEOUT,
    }
}

#[cfg(test)]
mod tests;
