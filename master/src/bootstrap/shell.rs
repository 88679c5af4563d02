//! Shell text: quoting a word for a POSIX shell and the script that writes a file atomically.
//!
//! A leaf: it knows nothing of SSH or of how a script reaches the host, so the transport
//! ([`super::ssh`]) and the script builders ([`super::remote`], [`super::install`],
//! [`super::preflight`]) all use it without depending on one another.

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
}
