//! Rendering for the terminal (aligned tables, `key: value` blocks) and for scripts (`-o json`).

use pmesh_proto::v1::{AgentState, AgentStatus};
use serde::Serialize;

use crate::error::now_unix;

/// `-o text` or `-o json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// The stable JSON shape of an agent (`pmesh agents ls -o json`).
#[derive(Debug, Serialize)]
pub struct AgentView {
    pub name: String,
    pub address: String,
    pub status: &'static str,
    pub labels: std::collections::BTreeMap<String, String>,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_free_bytes: u64,
    pub docker_reachable: bool,
    pub docker_version: String,
    pub docker_error: String,
    pub agent_version: String,
    pub last_seen_unix: Option<i64>,
    pub last_error: Option<String>,
    pub enrolled_at_unix: i64,
    pub cert_serial: String,
    pub cert_not_after_unix: i64,
    /// What the agent reported wrong, such as "journal: disk full at PATH".
    pub problems: Vec<String>,
}

impl From<AgentStatus> for AgentView {
    fn from(agent: AgentStatus) -> Self {
        let status = match AgentState::try_from(agent.state) {
            Ok(AgentState::Up) => "up",
            Ok(AgentState::Down) => "down",
            _ => "unknown",
        };
        let info = agent.info.unwrap_or_default();
        let docker = info.docker.unwrap_or_default();
        let os = [info.os_id, info.os_version].join(" ").trim().to_owned();
        AgentView {
            name: agent.name,
            address: agent.address,
            status,
            labels: agent.labels.into_iter().collect(),
            os,
            kernel: info.kernel,
            arch: info.arch,
            cpus: info.cpus,
            memory_bytes: info.memory_bytes,
            disk_free_bytes: info.disk_free_bytes,
            docker_reachable: docker.reachable,
            docker_version: docker.version,
            docker_error: docker.error,
            agent_version: info.agent_version,
            last_seen_unix: (agent.last_seen_unix > 0).then_some(agent.last_seen_unix),
            last_error: (!agent.last_error.is_empty()).then_some(agent.last_error),
            enrolled_at_unix: agent.enrolled_at_unix,
            cert_serial: agent.cert_serial,
            cert_not_after_unix: agent.cert_not_after_unix,
            problems: info.problems,
        }
    }
}

impl AgentView {
    fn labels_text(&self) -> String {
        let labels: Vec<String> = self.labels.iter().map(|(key, value)| format!("{key}={value}")).collect();
        if labels.is_empty() {
            "-".into()
        } else {
            labels.join(",")
        }
    }

    fn docker_text(&self) -> String {
        match (self.docker_reachable, self.last_seen_unix) {
            (_, None) => "-".into(),
            (true, _) => self.docker_version.clone(),
            (false, _) => "unreachable".into(),
        }
    }
}

/// "12s ago", "3m ago", "never".
pub fn ago(unix: Option<i64>) -> String {
    let Some(unix) = unix else { return "never".into() };
    let seconds = (now_unix() - unix).max(0);
    match seconds {
        0..=59 => format!("{seconds}s ago"),
        60..=3599 => format!("{}m ago", seconds / 60),
        3600..=86399 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86400),
    }
}

/// Whether tables leave out their header row (`--no-headers`, for `cut` and `awk`).
static NO_HEADERS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets `--no-headers` for every table this process prints.
pub fn set_no_headers(no_headers: bool) {
    NO_HEADERS.store(no_headers, std::sync::atomic::Ordering::Relaxed);
}

/// Columns padded to their widest cell; without the header row under `--no-headers`.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    table_with(header, rows, NO_HEADERS.load(std::sync::atomic::Ordering::Relaxed))
}

fn table_with(header: &[&str], rows: &[Vec<String>], no_headers: bool) -> String {
    let out = aligned(header, rows);
    if no_headers {
        return out.split_once('\n').map(|(_, rows)| rows.to_owned()).unwrap_or_default();
    }
    out
}

fn aligned(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.len()).collect();
    for row in rows {
        for (idx, cell) in row.iter().enumerate() {
            widths[idx] = widths[idx].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `pmesh agents ls` as text.
pub fn agents_table(agents: &[AgentView]) -> String {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|agent| {
            vec![
                agent.name.clone(),
                agent.address.clone(),
                agent.status.to_owned(),
                agent.labels_text(),
                if agent.os.is_empty() { "-".into() } else { agent.os.clone() },
                agent.docker_text(),
                if agent.agent_version.is_empty() { "-".into() } else { agent.agent_version.clone() },
                ago(agent.last_seen_unix),
                if agent.problems.is_empty() { "-".into() } else { agent.problems.join("; ") },
            ]
        })
        .collect();
    table(&["NAME", "ADDRESS", "STATUS", "LABELS", "OS", "DOCKER", "AGENT", "LAST SEEN", "PROBLEMS"], &rows)
}

fn bytes(n: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    format!("{:.1} GiB", n as f64 / GIB)
}

/// `pmesh agents show NAME` as text.
pub fn agent_detail(agent: &AgentView) -> String {
    let unix_time = |unix: i64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64)).to_string()
    };
    let mut lines = vec![
        ("Name", agent.name.clone()),
        ("Address", agent.address.clone()),
        ("Status", agent.status.to_owned()),
        ("Labels", agent.labels_text()),
        ("Last seen", ago(agent.last_seen_unix)),
    ];
    if let Some(error) = &agent.last_error {
        lines.push(("Last error", error.clone()));
    }
    if !agent.problems.is_empty() {
        lines.push(("Problems", agent.problems.join("; ")));
    }
    lines.extend([
        ("OS", agent.os.clone()),
        ("Kernel", agent.kernel.clone()),
        ("Arch", agent.arch.clone()),
        ("CPUs", agent.cpus.to_string()),
        ("Memory", bytes(agent.memory_bytes)),
        ("Disk free", bytes(agent.disk_free_bytes)),
        ("Docker", if agent.docker_reachable { agent.docker_version.clone() } else { format!("unreachable: {}", agent.docker_error) }),
        ("Agent version", agent.agent_version.clone()),
        ("Enrolled", unix_time(agent.enrolled_at_unix)),
        ("Certificate", format!("serial {}, expires {}", agent.cert_serial, unix_time(agent.cert_not_after_unix))),
    ]);
    lines.iter().map(|(key, value)| format!("{:<16}{value}", format!("{key}:"))).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let out = table(&["A", "LONGER"], &[vec!["xxxx".into(), "y".into()], vec!["z".into(), "w".into()]]);
        assert_eq!(out, "A     LONGER\nxxxx  y\nz     w");
    }

    #[test]
    fn no_headers_leaves_the_rows() {
        let out = table_with(&["A", "LONGER"], &[vec!["xxxx".into(), "y".into()], vec!["z".into(), "w".into()]], true);
        assert_eq!(out, "xxxx  y\nz     w");
    }

    #[test]
    fn ago_buckets() {
        assert_eq!(ago(None), "never");
        assert_eq!(ago(Some(now_unix() - 5)), "5s ago");
        assert_eq!(ago(Some(now_unix() - 120)), "2m ago");
    }
}
