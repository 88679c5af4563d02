//! The catalog's `basic/powercli` and `basic/terraform` end to end, with the real binaries
//! and real Docker. PowerCLI and Terraform cannot be installed from the registries these
//! machines reach, so each runs a **stand-in** image (`tests/standins/pwsh`,
//! `tests/standins/terraform`: the test tools image with a script in the tool's place) that
//! accepts the command line the pattern gives the real tool and records what it was given:
//! its arguments, its environment, its scripts or configuration. The tests check those
//! records, and that the password reaches the tool's environment but no process's command
//! line (a watcher samples every process's `/proc/PID/cmdline` during the run), no event and
//! neither daemon's log.

use std::sync::Arc;

use pmesh_tests::docker::{docker_output, require_tools_image, Instance};
use pmesh_tests::http::{Behaviour, FileServer};
use pmesh_tests::processes::Watch;
use pmesh_tests::standins::{build_image, pattern_for_download, provider_mirror_tar, recorded};
use pmesh_tests::{Daemon, Mesh};

/// A mesh with one agent, `pc-1`.
fn lab() -> anyhow::Result<(Mesh, Daemon, Daemon)> {
    require_tools_image();
    let mesh = Mesh::init()?;
    let master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    let agent = mesh.start_agent("pc-1", &[])?;
    Ok((mesh, master, agent))
}

/// An image the test built, removed when it ends.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker_output(&["rmi", "-f", &self.0]);
    }
}

fn unique() -> String {
    format!("{}-{}", std::process::id(), rand::random::<u32>())
}

/// Runs `args` under a watch of every command line for `password`, with `marker` (the
/// tool's own command line) proving the watch saw the tool: the run's stdout, and the run's
/// events as JSON text.
fn run_watched(mesh: &Mesh, args: &[&str], password: &str, marker: &str) -> (String, String) {
    let watch = Watch::start(vec![password.to_owned(), marker.to_owned()], &["cmdline"]);
    let run = mesh.pmesh(args);
    let (scans, seen) = watch.finish();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(scans > 10, "the command lines were watched ({scans} scans)");
    assert!(seen.iter().any(|line| line.contains(marker)), "the watch saw the tool run: {seen:?}");
    let leaks: Vec<&String> = seen.iter().filter(|line| line.contains(password)).collect();
    assert!(leaks.is_empty(), "the password was on a command line: {leaks:?}");
    let run_id = pmesh_tests::run_id_in(&run.stdout).expect("run id printed");
    let events = mesh.pmesh(&["runs", "watch", &run_id, "-o", "json"]);
    assert_eq!(events.code, 0, "{}", events.stderr);
    (run.stdout, events.stdout)
}

fn assert_secret_kept(password: &str, texts: &[(&str, &str)]) {
    for (what, text) in texts {
        assert!(!text.contains(password), "the password is in {what}");
    }
}

#[test]
fn powercli_runs_the_script_non_interactively_with_plain_output_and_the_password_only_in_its_environment() -> anyhow::Result<()> {
    let (mesh, master, agent) = lab()?;
    let image = Image(build_image("pwsh", &unique()));
    let instance = Instance::new("pcli");
    let password = format!("Pw-{}", rand::random::<u64>());
    let script = "Get-VM | Select-Object Name, PowerState\nNew-Folder -Name lab -Location (Get-Folder vm)";
    let values = mesh.dir.path().join("powercli.yaml");
    let values_text = format!(
        "script: |\n  {}\nserver: vcsim.lab.local\nusername: administrator@vsphere.local\npassword: \"{password}\"\npowercli_image: {}\n",
        script.replace('\n', "\n  "),
        image.0
    );
    std::fs::write(&values, values_text)?;
    let pattern = concat!(env!("CARGO_MANIFEST_DIR"), "/../patterns/basic/powercli");
    let push = mesh.pmesh(&["pattern", "push", pattern]);
    assert_eq!(push.code, 0, "{}", push.stderr);
    let args = ["run", "powercli", "--on", "pc-1", "--instance", &instance.0, "-f", values.to_str().expect("utf-8")];
    let (stdout, events) = run_watched(&mesh, &args, &password, "-NonInteractive -File /pmesh/run.ps1");
    assert!(stdout.contains("stand-in pwsh ran /pmesh/run.ps1 against vcsim.lab.local as administrator@vsphere.local"), "{stdout}");

    let record = recorded(&instance.0, "script");
    assert_eq!(record["args"], "-NonInteractive\n-File\n/pmesh/run.ps1\n");
    let env: Vec<&str> = record["env"].lines().collect();
    for wanted in [format!("VI_PASSWORD={password}"), "VI_SERVER=vcsim.lab.local".into(), "VI_USERNAME=administrator@vsphere.local".into()]
    {
        assert!(env.contains(&wanted.as_str()), "{wanted} in the tool's environment: {env:?}");
    }
    let wrapper = &record["run.ps1"];
    for setting in [
        "$ProgressPreference = 'SilentlyContinue'",
        "$PSStyle.OutputRendering = 'PlainText'",
        "Set-PowerCLIConfiguration -InvalidCertificateAction Fail -ParticipateInCeip $false -Confirm:$false -Scope Session | Out-Null",
        "Remove-Item Env:VI_PASSWORD",
        "Connect-VIServer -Server $env:VI_SERVER -Credential $credential | Out-Null",
        ". /pmesh/script.ps1",
    ] {
        assert!(wrapper.lines().any(|line| line == setting), "`{setting}` in the wrapper:\n{wrapper}");
    }
    assert!(!wrapper.contains(&password), "the wrapper holds no password");
    assert_eq!(record["script.ps1"], format!("{script}\n"), "the user's script, as given");
    assert_secret_kept(
        &password,
        &[("the events", &events), ("the master's log", &master.log_text()), ("the agent's log", &agent.log_text())],
    );
    Ok(())
}

#[test]
fn terraform_applies_offline_from_the_provider_mirror_with_the_credentials_only_in_its_environment() -> anyhow::Result<()> {
    let (mesh, master, agent) = lab()?;
    let image = Image(build_image("terraform", &unique()));
    let instance = Instance::new("tf");
    let password = format!("Pw-{}", rand::random::<u64>());
    let mirror = provider_mirror_tar();
    let server = FileServer::start(Arc::new(mirror.clone()), Behaviour::default());
    let pattern = pattern_for_download("basic/terraform", &mesh.dir.path().join("terraform"), &mirror, "1.0.0");
    let push = mesh.pmesh(&["pattern", "push", pattern.to_str().expect("utf-8")]);
    assert_eq!(push.code, 0, "{}", push.stderr);
    let config = "provider \"vsphere\" {}\nresource \"vsphere_folder\" \"lab\" {\n  path = \"lab\"\n  type = \"vm\"\n}";
    let values = mesh.dir.path().join("terraform.yaml");
    let values_text = format!(
        "config: |\n  {}\nserver: vcsim.lab.local\nusername: administrator@vsphere.local\npassword: \"{password}\"\nmirror_url: {}\nterraform_image: {}\n",
        config.replace('\n', "\n  "),
        server.url(),
        image.0
    );
    std::fs::write(&values, values_text)?;
    let args = ["run", "terraform", "--on", "pc-1", "--instance", &instance.0, "-f", values.to_str().expect("utf-8")];
    let (stdout, events) = run_watched(&mesh, &args, &password, "terraform apply -input=false -auto-approve");
    assert!(stdout.contains("Apply complete! Resources: 1 added"), "{stdout}");

    let record = recorded(&instance.0, "apply");
    assert_eq!(record["calls"], "init -input=false -no-color\napply -input=false -auto-approve -no-color\n");
    let env: Vec<&str> = record["env"].lines().collect();
    for wanted in [
        format!("VSPHERE_PASSWORD={password}"),
        "VSPHERE_SERVER=vcsim.lab.local".into(),
        "VSPHERE_USER=administrator@vsphere.local".into(),
        "TF_CLI_CONFIG_FILE=/pmesh/terraformrc".into(),
    ] {
        assert!(env.contains(&wanted.as_str()), "{wanted} in the tool's environment: {env:?}");
    }
    let cli_config = &record["terraformrc"];
    assert!(cli_config.contains("filesystem_mirror {") && cli_config.contains("path    = \"/tmp/pmesh-mirror\""), "{cli_config}");
    assert!(cli_config.contains("direct {\n    exclude = [\"*/*/*\"]"), "nothing is downloaded: {cli_config}");
    assert!(
        record["mirror"]
            .lines()
            .any(|line| line == "./registry.terraform.io/hashicorp/vsphere/terraform-provider-vsphere_2.9.2_linux_amd64.zip"),
        "the mirror artifact was unpacked where the CLI config points: {}",
        record["mirror"]
    );
    assert_eq!(record["main.tf"], format!("{config}\n"));
    assert_eq!(record["workdir"], "/work\n", "terraform runs in the state volume");
    assert_secret_kept(
        &password,
        &[("the events", &events), ("the master's log", &master.log_text()), ("the agent's log", &agent.log_text())],
    );
    Ok(())
}
