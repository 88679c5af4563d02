//! Discoverability: completions for both binaries, man pages from the clap definitions,
//! examples in the main verbs' help, and `--version` with the revision and build date.

use pmesh_tests::Mesh;

#[test]
fn completions_man_pages_examples_and_version() -> anyhow::Result<()> {
    let mesh = Mesh::init()?;
    let revision = regex::Regex::new(r"^\S+ \d+\.\d+\.\d+ \(rev [0-9a-f]{12}, built \d{4}-\d{2}-\d{2}\)$")?;
    for (program, name) in [("pmesh", "pmesh"), ("pmesh-agent", "pmesh-agent")] {
        for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef"), ("fish", "complete -c")] {
            let script = mesh.command(program, &["completions", shell]);
            assert_eq!(script.code, 0, "{program} completions {shell}: {}", script.stderr);
            assert!(script.stdout.contains(marker) && script.stdout.contains(name), "{program} {shell}: {}", script.stdout);
        }
        let version = mesh.command(program, &["--version"]);
        assert!(revision.is_match(version.stdout.trim()), "{program} --version: {}", version.stdout);
    }
    let bash = mesh.command("pmesh", &["completions", "bash"]).stdout;
    assert!(bash.contains("runs") && bash.contains("--selector"), "verbs and flags complete");

    let dir = tempfile::tempdir()?;
    let pages = mesh.command("pmesh", &["manpages", dir.path().to_str().expect("utf-8")]);
    assert_eq!(pages.code, 0, "{}", pages.stderr);
    let logs = std::fs::read_to_string(dir.path().join("pmesh-runs-logs.1"))?;
    assert!(logs.contains(".TH") && logs.contains("\\-\\-step"), "a page per command, with its flags: {logs}");
    assert!(dir.path().join("pmesh.1").exists() && !dir.path().join("pmesh-manpages.1").exists(), "the hidden command has no page");
    let agent_dir = tempfile::tempdir()?;
    assert_eq!(mesh.command("pmesh-agent", &["manpages", agent_dir.path().to_str().expect("utf-8")]).code, 0);
    assert!(agent_dir.path().join("pmesh-agent-join.1").exists());

    // `pmesh version`: this CLI's, then the master's; the CLI's even when the master is down.
    let master = mesh.start_master()?;
    let both = mesh.pmesh(&["version", "-o", "json"]);
    let both: serde_json::Value = serde_json::from_str(&both.stdout)?;
    assert!(revision.is_match(&format!("pmesh {}", both["cli"].as_str().unwrap_or_default())), "{both}");
    assert_eq!(both["master"], both["cli"], "the same build on both sides: {both}");
    drop(master);
    let alone = mesh.pmesh(&["version"]);
    assert_eq!(alone.code, 4, "{}", alone.stderr);
    assert!(alone.stdout.starts_with("pmesh (this CLI): 0."), "{}", alone.stdout);

    for verb in ["run", "runs", "agents", "pattern", "bootstrap"] {
        let help = mesh.command("pmesh", &[verb, "--help"]);
        assert!(help.stdout.contains("Examples:\n  pmesh "), "{verb} --help has examples: {}", help.stdout);
    }
    Ok(())
}
