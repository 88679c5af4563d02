//! Running shell scripts on the host as root, over an [`ssh::Session`].
//!
//! A script travels on the command's stdin (`sh -s`, or `sudo -n sh -s` for a non-root
//! login), never in its arguments: what is in it, a join token included, does not show in the
//! host's process list or in sudo's log. The script is wrapped in a function called with
//! stdin from `/dev/null`, so the shell has read all of it before any command runs, and no
//! command in it can swallow the rest of the script by reading stdin.

use std::time::Duration;

use super::ssh::{Output, Session, SshError};

/// The default time a step's script may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// Quotes `text` as one word for a POSIX shell.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A shell script that replaces `path` atomically with `content` and sets its mode; the
/// directory is created when missing.
pub fn write_file_script(path: &str, mode: &str, content: &str) -> String {
    const MARKER: &str = "PMESH_FILE_END_7f3c";
    assert!(!content.contains(MARKER), "embedded files never contain the here-document marker");
    let newline = if content.ends_with('\n') { "" } else { "\n" };
    let dir = path.rsplit_once('/').map(|(dir, _)| dir).filter(|dir| !dir.is_empty()).unwrap_or("/");
    let (path, dir) = (quote(path), quote(dir));
    format!(
        "install -d -m 0755 {dir}\n\
         cat > {path}.pmesh-new <<'{MARKER}'\n{content}{newline}{MARKER}\n\
         chmod {mode} {path}.pmesh-new\n\
         mv -f {path}.pmesh-new {path}\n"
    )
}

/// The host, and how to become root on it.
pub struct Host<'a> {
    pub session: &'a Session,
    /// Whether commands need `sudo -n` (the login user is not root).
    pub sudo: bool,
}

impl Host<'_> {
    /// Runs `script` as root (through `sudo -n` when needed) and returns what it printed.
    ///
    /// # Errors
    /// When the session fails or `timeout` passes; a non-zero exit is in the [`Output`].
    pub async fn run(&self, script: &str, timeout: Duration) -> Result<Output, SshError> {
        let command = if self.sudo { "sudo -n sh -s" } else { "sh -s" };
        self.session.exec(command, wrap(script).as_bytes(), timeout).await
    }

    /// Runs `script` as the login user, the same way.
    ///
    /// # Errors
    /// As [`Host::run`].
    pub async fn run_unprivileged(&self, script: &str, timeout: Duration) -> Result<Output, SshError> {
        self.session.exec("sh -s", wrap(script).as_bytes(), timeout).await
    }
}

fn wrap(script: &str) -> String {
    format!("pmesh_main() {{\nset -e\n{script}\n}}\npmesh_main </dev/null\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> String {
        let output = std::process::Command::new("sh").arg("-c").arg(script).output().expect("sh runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    #[test]
    fn quoted_words_survive_the_shell() {
        for text in ["plain", "it's", "a b", "$(touch /x) `y` \"z\"", ""] {
            assert_eq!(sh(&format!("printf %s {}", quote(text))), text);
        }
    }

    #[test]
    fn written_files_hold_exactly_their_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub/file.conf");
        let path = path.to_str().expect("utf-8");
        for content in ["a\n$HOME `x`\n", "no trailing newline"] {
            sh(&write_file_script(path, "0640", content));
            let written = std::fs::read_to_string(path).expect("written");
            assert_eq!(written.trim_end_matches('\n'), content.trim_end_matches('\n'));
        }
    }

    #[test]
    fn a_wrapped_script_cannot_read_the_rest_of_itself() {
        let script = wrap("cat\necho after");
        let output = std::process::Command::new("sh")
            .arg("-s")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().expect("stdin").write_all(script.as_bytes())?;
                child.wait_with_output()
            })
            .expect("sh runs");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "after\n");
    }
}
