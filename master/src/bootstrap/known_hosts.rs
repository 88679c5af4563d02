//! pmesh's own known-hosts file (`DATA_DIR/known_hosts`), and the rule that decides whether a
//! presented host key is trusted.
//!
//! The file uses OpenSSH's format (`HOST KEYTYPE BASE64`, `[HOST]:PORT` when the port is not
//! 22), so `ssh -o UserKnownHostsFile=DATA_DIR/known_hosts` reads it too. The rule: a key
//! recorded for the host is trusted; a different key for a recorded host is refused, always;
//! an unknown host is trusted only when the operator pinned its fingerprint or accepted it
//! explicitly, and is then recorded.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::ssh::HostKey;

/// What the operator said about the host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Only a key already in the known-hosts file.
    Known,
    /// A key with this `SHA256:BASE64` fingerprint (`--host-key`).
    Pinned(String),
    /// Any key for a host not in the file yet (`--accept-new-host-key`).
    AcceptNew,
}

/// The decision about one presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Recorded already.
    Known,
    /// Not recorded, but pinned or accepted: record it once logged in.
    Accepted,
    /// Not recorded and neither pinned nor accepted.
    Unknown,
    /// The pinned fingerprint is another one.
    PinMismatch { pinned: String },
    /// The file holds another key for this host, at this line (1-based).
    Changed { line: usize },
}

impl Verdict {
    /// Whether the key is trusted.
    pub fn trusted(&self) -> bool {
        matches!(self, Verdict::Known | Verdict::Accepted)
    }
}

/// The known-hosts file, as read.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
    text: String,
}

/// How a host appears in the file.
fn pattern(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

impl KnownHosts {
    /// Reads `path`; a missing file is an empty one.
    ///
    /// # Errors
    /// When the file exists but cannot be read.
    pub fn load(path: &Path) -> anyhow::Result<KnownHosts> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        Ok(KnownHosts { path: path.to_path_buf(), text })
    }

    /// Where the file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Decides whether `key`, presented by `host:port`, is trusted under `policy`.
    pub fn check(&self, host: &str, port: u16, key: &HostKey, policy: &HostKeyPolicy) -> Verdict {
        let wanted = pattern(host, port);
        let mut changed = None;
        for (index, line) in self.text.lines().enumerate() {
            let mut fields = line.split_whitespace();
            let (Some(hosts), Some(kind), Some(blob)) = (fields.next(), fields.next(), fields.next()) else { continue };
            if hosts.starts_with('#') || !hosts.split(',').any(|entry| entry.eq_ignore_ascii_case(&wanted)) {
                continue;
            }
            if format!("{kind} {blob}") == key.openssh {
                return match policy {
                    HostKeyPolicy::Pinned(pinned) if !same_fingerprint(pinned, &key.fingerprint) => {
                        Verdict::PinMismatch { pinned: pinned.clone() }
                    }
                    _ => Verdict::Known,
                };
            }
            changed.get_or_insert(index + 1);
        }
        match (changed, policy) {
            (Some(line), _) => Verdict::Changed { line },
            (None, HostKeyPolicy::Known) => Verdict::Unknown,
            (None, HostKeyPolicy::AcceptNew) => Verdict::Accepted,
            (None, HostKeyPolicy::Pinned(pinned)) if same_fingerprint(pinned, &key.fingerprint) => Verdict::Accepted,
            (None, HostKeyPolicy::Pinned(pinned)) => Verdict::PinMismatch { pinned: pinned.clone() },
        }
    }

    /// Appends `key` for `host:port` and saves the file (mode 0600, written atomically).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn record(&mut self, host: &str, port: u16, key: &HostKey) -> anyhow::Result<()> {
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
        }
        self.text.push_str(&format!("{} {}\n", pattern(host, port), key.openssh));
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        pmesh_rt::files::write_private(&self.path, self.text.as_bytes())
            .with_context(|| format!("recording the host key in {}", self.path.display()))
    }
}

/// Whether two fingerprints are the same, with or without the `SHA256:` prefix and base64
/// padding.
fn same_fingerprint(pinned: &str, presented: &str) -> bool {
    let bare = |text: &str| text.trim().trim_start_matches("SHA256:").trim_end_matches('=').to_owned();
    bare(pinned) == bare(presented)
}

/// Checks that `text` looks like an OpenSSH SHA256 fingerprint, for `--host-key`.
///
/// # Errors
/// A sentence saying what was expected.
pub fn parse_fingerprint(text: &str) -> Result<String, String> {
    let body = text.strip_prefix("SHA256:").ok_or_else(|| format!("{text:?} is not SHA256:BASE64 (as `ssh-keygen -lf` prints)"))?;
    let valid = body.len() >= 43 && body.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not SHA256:BASE64 (as `ssh-keygen -lf` prints)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const FP_A: &str = "SHA256:4bWfD8h0Pm8hXb0d6vL3Fv3jYcQ2kQ2Xb0d6vL3Fv3j";
    const KEY_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIObbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const FP_B: &str = "SHA256:Zz9WfD8h0Pm8hXb0d6vL3Fv3jYcQ2kQ2Xb0d6vL3Fv3";

    fn key(openssh: &str, fingerprint: &str) -> HostKey {
        HostKey { openssh: openssh.into(), fingerprint: fingerprint.into() }
    }

    fn check(file: &str, port: u16, presented: &HostKey, policy: HostKeyPolicy, expected: Verdict) {
        let known = KnownHosts { path: PathBuf::from("known_hosts"), text: file.into() };
        assert_eq!(known.check("Host.Lab", port, presented, &policy), expected, "file {file:?}, policy {policy:?}");
    }

    #[test]
    fn verdicts() {
        let a = key(KEY_A, FP_A);
        let b = key(KEY_B, FP_B);
        let recorded = format!("# comment\nother {KEY_B}\nhost.lab {KEY_A}\n");
        check(&recorded, 22, &a, HostKeyPolicy::Known, Verdict::Known);
        check(&recorded, 22, &b, HostKeyPolicy::Known, Verdict::Changed { line: 3 });
        // A changed key is refused even when accepting new keys or pinning the new one.
        check(&recorded, 22, &b, HostKeyPolicy::AcceptNew, Verdict::Changed { line: 3 });
        check(&recorded, 22, &b, HostKeyPolicy::Pinned(FP_B.into()), Verdict::Changed { line: 3 });
        // The port is part of the host's name.
        check(&recorded, 2222, &a, HostKeyPolicy::Known, Verdict::Unknown);
        check(&format!("[host.lab]:2222 {KEY_A}\n"), 2222, &a, HostKeyPolicy::Known, Verdict::Known);
        check(&format!("a,host.lab {KEY_A}\n"), 22, &a, HostKeyPolicy::Known, Verdict::Known);
        check("", 22, &a, HostKeyPolicy::Known, Verdict::Unknown);
        check("", 22, &a, HostKeyPolicy::AcceptNew, Verdict::Accepted);
        check("", 22, &a, HostKeyPolicy::Pinned(FP_A.into()), Verdict::Accepted);
        check("", 22, &a, HostKeyPolicy::Pinned(format!("{FP_A}=")), Verdict::Accepted);
        check("", 22, &a, HostKeyPolicy::Pinned(FP_B.into()), Verdict::PinMismatch { pinned: FP_B.into() });
        check(&recorded, 22, &a, HostKeyPolicy::Pinned(FP_B.into()), Verdict::PinMismatch { pinned: FP_B.into() });
    }

    #[test]
    fn recorded_keys_are_known_next_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub/known_hosts");
        let a = key(KEY_A, FP_A);
        let mut known = KnownHosts::load(&path).expect("missing is empty");
        known.record("host.lab", 2222, &a).expect("recorded");
        let known = KnownHosts::load(&path).expect("reads");
        assert_eq!(known.check("host.lab", 2222, &a, &HostKeyPolicy::Known), Verdict::Known);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).expect("exists").permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn fingerprints_are_checked_for_shape() {
        assert!(parse_fingerprint(FP_A).is_ok());
        assert!(parse_fingerprint("4bWfD8h0Pm8hXb0d6vL3Fv3jYcQ2kQ2Xb0d6vL3Fv3j").is_err());
        assert!(parse_fingerprint("SHA256:short").is_err());
        assert!(parse_fingerprint("sha256:0123abcd").is_err());
    }
}
