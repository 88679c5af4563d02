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
