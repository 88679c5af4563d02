//! What both binaries generate about themselves from their clap definitions, so it cannot
//! drift from the code: `--version` with the revision and build date, shell completions
//! (`completions bash|zsh|fish`, clap_complete) and man pages (the hidden `manpages DIR`,
//! clap_mangen: one page per command and subcommand, `pmesh-runs-logs.1`).

use std::path::{Path, PathBuf};

use super::cli::{exit, CliError};

/// The shells `completions` writes for (bash, zsh, fish, elvish, powershell).
pub use clap_complete::Shell;

/// `0.1.0 (rev 1a2b3c4d5e6f, built 2026-12-04)`: the version clap prints for `--version`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (rev ", env!("PMESH_REVISION"), ", built ", env!("PMESH_BUILD_DATE"), ")");

/// Writes `command`'s completion script for `shell` to stdout.
pub fn completions(mut command: clap::Command, shell: Shell) {
    let name = command.get_name().to_owned();
    // Into memory first: clap_complete panics with a message of its own on a closed pipe
    // (`completions bash | head`), while `print!` meets the quiet exit of `cli::main`.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    print!("{}", String::from_utf8_lossy(&script));
}

/// Writes a man page for `command` and each of its visible subcommands into `dir` (created if
/// needed); returns the pages' paths.
///
/// # Errors
/// [`exit::FAILED`] when a page cannot be written.
pub fn manpages(command: clap::Command, dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let failed = |path: &Path, err: std::io::Error| CliError::new(exit::FAILED, format!("writing {}: {err}", path.display()));
    std::fs::create_dir_all(dir).map_err(|err| failed(dir, err))?;
    let mut written = Vec::new();
    let mut pending = vec![(command.get_name().to_owned(), command)];
    while let Some((name, mut command)) = pending.pop() {
        command.build();
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set() && sub.get_name() != "help") {
            pending.push((format!("{name}-{}", sub.get_name()), sub.clone()));
        }
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command).title(name.clone()).render(&mut page).map_err(|err| failed(&path, err))?;
        std::fs::write(&path, page).map_err(|err| failed(&path, err))?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    #[command(name = "demo", version = VERSION)]
    struct Demo {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        /// Does one thing.
        One,
        #[command(hide = true)]
        Hidden,
    }

    #[test]
    fn a_page_per_visible_command() {
        use clap::CommandFactory;
        let dir = tempfile::tempdir().unwrap();
        let pages = manpages(Demo::command(), dir.path()).unwrap();
        let names: Vec<String> = pages.iter().map(|page| page.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["demo-one.1", "demo.1"]);
        let one = std::fs::read_to_string(&pages[0]).unwrap();
        assert!(one.contains("Does one thing"), "{one}");
        assert!(VERSION.contains(" (rev ") && VERSION.contains(", built "), "{VERSION}");
    }
}
