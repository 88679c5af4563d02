//! Facts about the host: identity, OS, kernel, CPUs, memory and free disk, read from `/proc`,
//! `/etc/os-release` and `statvfs`, plus Docker's status and the problems the agent reports.

use std::path::Path;

/// The fields of `os-release` the agent reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
}

/// Parses `os-release` text: `KEY=value` lines, values optionally quoted.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut release = OsRelease::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else { continue };
        let value = value.trim().trim_matches('"').trim_matches('\'').to_owned();
        match key {
            "ID" => release.id = value,
            "VERSION_ID" => release.version_id = value,
            _ => {}
        }
    }
    release
}

/// Reads `/etc/os-release`, falling back to `/usr/lib/os-release`.
pub fn os_release() -> OsRelease {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| parse_os_release(&text))
        .unwrap_or_default()
}

/// `MemTotal` of `/proc/meminfo` in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|text| text.trim().to_owned()).unwrap_or_default()
}

/// The host's name.
pub fn hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
}

/// The kernel release.
pub fn kernel() -> String {
    read_trimmed("/proc/sys/kernel/osrelease")
}

/// Total memory in bytes, 0 when unknown.
pub fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| parse_mem_total(&text)).unwrap_or(0)
}

/// Bytes available to unprivileged users on the file system holding `path`.
pub fn disk_free(path: &Path) -> u64 {
    pmesh_rt::disk::free_bytes(path).unwrap_or(0)
}

/// The conditions an operator should act on, one sentence each, for `pmesh agents ls`: today
/// the journal's own report of a disk that fails ("journal: disk full at PATH").
pub fn problems(journal: &crate::journal::Journal) -> Vec<String> {
    journal.problem().into_iter().collect()
}

/// Usable CPUs.
pub fn cpus() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_photon_and_debian() {
        let photon = "NAME=\"VMware Photon OS\"\nVERSION=\"5.0\"\nID=photon\nVERSION_ID=5.0\n";
        assert_eq!(parse_os_release(photon), OsRelease { id: "photon".into(), version_id: "5.0".into() });
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(parse_os_release(debian), OsRelease { id: "debian".into(), version_id: "12".into() });
        assert_eq!(parse_os_release("garbage"), OsRelease::default());
    }

    #[test]
    fn meminfo() {
        assert_eq!(parse_mem_total("MemTotal:       2048 kB\nMemFree: 1 kB"), Some(2048 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB"), None);
    }

    #[test]
    fn disk_free_of_existing_dir_is_positive() {
        assert!(disk_free(Path::new("/")) > 0);
        assert_eq!(disk_free(Path::new("/no/such/dir")), 0);
    }
}
