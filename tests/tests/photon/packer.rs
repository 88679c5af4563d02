//! The Packer template (`photon/packer`): a structural HCL check for when Packer is absent,
//! `packer validate` when it is present (a full validation on Packer before 1.7), the content
//! the appliance needs; and the OVF properties agree across the script, the OVA environment
//! and photon/README.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use pmesh_tests::Run;

use crate::common::{photon, read};
use crate::kickstart::kickstart;

fn packer_dir() -> PathBuf {
    photon().join("packer")
}

/// A basic HCL check, for when Packer is absent: strings and comments close, brackets balance
/// outside them (template interpolations `${...}` included), and the top level is a sequence
/// of blocks. Returns the top-level block headers, such as `variable "vm_name"`.
fn hcl_structure(text: &str) -> Result<Vec<String>, String> {
    enum Open {
        Bracket(char, usize),
        Str(usize),
        Interp,
    }
    let chars: Vec<char> = text.chars().collect();
    let (mut stack, mut headers, mut header) = (Vec::new(), Vec::new(), String::new());
    let (mut index, mut line) = (0, 1);
    while index < chars.len() {
        let (c, next) = (chars[index], chars.get(index + 1).copied());
        if c == '\n' {
            line += 1;
        }
        if let Some(Open::Str(start)) = stack.last() {
            if stack.len() == 1 {
                header.push(c);
            }
            match (c, next) {
                ('\n', _) => return Err(format!("line {start}: unterminated string")),
                ('\\', _) => index += 1,
                ('"', _) => drop(stack.pop()),
                ('$' | '%', Some('{')) => {
                    stack.push(Open::Interp);
                    index += 1;
                }
                _ => {}
            }
            index += 1;
            continue;
        }
        match (c, next) {
            ('#', _) | ('/', Some('/')) => {
                while index < chars.len() && chars[index] != '\n' {
                    index += 1;
                }
                continue;
            }
            ('/', Some('*')) => {
                let start = line;
                index += 2;
                while index + 1 < chars.len() && !(chars[index] == '*' && chars[index + 1] == '/') {
                    line += usize::from(chars[index] == '\n');
                    index += 1;
                }
                if index + 1 >= chars.len() {
                    return Err(format!("line {start}: unterminated comment"));
                }
                index += 2;
                continue;
            }
            ('<', Some('<')) => {
                return Err(format!("line {line}: heredocs are not handled by this check"));
            }
            ('"', _) => {
                if stack.is_empty() {
                    header.push(c);
                }
                stack.push(Open::Str(line));
                index += 1;
                continue;
            }
            ('{' | '[' | '(', _) => {
                if stack.is_empty() {
                    headers.push(header.split_whitespace().collect::<Vec<_>>().join(" "));
                }
                stack.push(Open::Bracket(c, line));
            }
            ('}' | ']' | ')', _) => match stack.pop() {
                Some(Open::Interp) if c == '}' => {}
                Some(Open::Bracket(open, _)) if matches!((open, c), ('{', '}') | ('[', ']') | ('(', ')')) => {
                    if stack.is_empty() {
                        header.clear();
                        index += 1;
                        continue;
                    }
                }
                _ => return Err(format!("line {line}: unbalanced {c:?}")),
            },
            _ => {}
        }
        if stack.is_empty() {
            header.push(c);
        }
        index += 1;
    }
    match stack.last() {
        Some(Open::Bracket(open, start)) => Err(format!("line {start}: {open:?} is never closed")),
        Some(_) => Err("unterminated string or interpolation at the end".into()),
        None if !header.trim().is_empty() => Err(format!("text after the last block: {:?}", header.trim())),
        None => Ok(headers),
    }
}

/// What the appliance needs from the template, read from its text.
fn check_template_content(text: &str, headers: &[String]) {
    assert!(headers.iter().any(|header| header == "source \"vsphere-iso\" \"pmesh-controller\""), "{headers:?}");
    assert!(headers.iter().any(|header| header == "build"), "{headers:?}");
    assert!(!headers.iter().any(|header| header == "packer"), "the packer block belongs in plugins.pkr.hcl");
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "firmware = \"efi\"",
        "guest_os_type = \"vmwarePhoton64Guest\"",
        "disk_controller_type = [\"pvscsi\"]",
        "cdrom_type = \"sata\"",
        "export {",
        "linux /isolinux/vmlinuz root=/dev/ram0 loglevel=3 insecure_installation=1 ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.json photon.media=cdrom",
    ] {
        assert!(flat.contains(needle), "the template lacks {needle:?}");
    }
    assert_eq!(flat.matches("storage {").count(), 2, "two disks: the OS and the artifact cache");
    for secret in ["vcenter_password", "root_password", "root_password_crypted"] {
        let block = text.split(&format!("variable \"{secret}\" {{")).nth(1).and_then(|rest| rest.split("\n}").next());
        assert!(block.is_some_and(|block| block.contains("sensitive   = true")), "variable {secret} must be sensitive");
    }
    let placeholder = kickstart()["password"]["text"].as_str().expect("password text").to_owned();
    assert!(text.contains(&format!("\"{placeholder}\"")), "the template must replace the kickstart's placeholder {placeholder}");
    for source in text.lines().filter_map(|line| line.trim().strip_prefix("source      = \"${path.root}/")) {
        let relative = source.trim_end_matches('"');
        assert!(packer_dir().join(relative).exists(), "the template uploads {relative}, which does not exist");
    }
}

/// `packer version`, as (major, minor), when Packer is installed.
fn packer_version() -> Option<(u32, u32)> {
    let output = Command::new("packer").arg("version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split_whitespace().find_map(|word| word.strip_prefix('v'))?;
    let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

fn packer_validate(dir: &Path, args: &[&str]) -> Run {
    Command::new("packer").arg("validate").args(args).current_dir(dir).output().expect("running packer").into()
}

/// Packer before 1.7 has the vsphere-iso builder built in, so it checks every builder and
/// provisioner field, not only the syntax. It predates `http_content`, so that one line is left
/// out of the copy it checks, laid out like the repository so relative paths resolve.
fn legacy_full_validate() {
    let mirror = tempfile::tempdir().expect("temp dir");
    let packer_copy = mirror.path().join("photon/packer");
    std::fs::create_dir_all(&packer_copy).expect("mkdir");
    for name in ["ks.json", "firstboot", "firewall", "install-appliance.sh"] {
        std::os::unix::fs::symlink(photon().join(name), mirror.path().join("photon").join(name)).expect("symlink");
    }
    std::os::unix::fs::symlink(photon().join("../systemd"), mirror.path().join("systemd")).expect("symlink");
    let template = read(&packer_dir().join("pmesh-controller.pkr.hcl"));
    let stripped: String = template.lines().filter(|line| !line.contains("http_content")).map(|line| format!("{line}\n")).collect();
    std::fs::write(packer_copy.join("template.pkr.hcl"), stripped).expect("writing");
    let agent = photon().join("install-appliance.sh");
    #[rustfmt::skip]
    let vars = [
        "vcenter_server=vcenter.lab.example", "vcenter_username=builder@vsphere.local",
        "vcenter_password=vcenter-secret-value", "datacenter=dc1", "cluster=cluster1",
        "datastore=datastore1", "network=build-network", "iso_paths=[\"[datastore1] iso/photon.iso\"]",
        "root_password=root-secret-value", "root_password_crypted=$6$salt$hashvalue",
        &format!("agent_binary={}", agent.display()),
    ];
    let mut args = Vec::new();
    for var in &vars {
        args.extend(["-var", var]);
    }
    args.push("template.pkr.hcl");
    let run = packer_validate(&packer_copy, &args);
    assert_eq!(run.code, 0, "packer validate (full, Packer < 1.7):\n{}{}", run.stdout, run.stderr);
}

#[test]
fn the_packer_template_is_valid() {
    let template = packer_dir().join("pmesh-controller.pkr.hcl");
    let text = read(&template);
    let headers = hcl_structure(&text).unwrap_or_else(|err| panic!("{}: {err}", template.display()));
    check_template_content(&text, &headers);
    let plugins = read(&packer_dir().join("plugins.pkr.hcl"));
    assert_eq!(hcl_structure(&plugins).expect("plugins.pkr.hcl"), ["packer"]);
    assert!(plugins.contains("source  = \"github.com/hashicorp/vsphere\""), "{plugins}");

    let Some(version) = packer_version() else {
        eprintln!(
            "packer is not installed (`apt-get install -y packer`): the template was checked by the \
             structural HCL check above, not by Packer"
        );
        return;
    };
    let run = packer_validate(&packer_dir(), &["-syntax-only", "pmesh-controller.pkr.hcl"]);
    assert_eq!(run.code, 0, "packer validate -syntax-only:\n{}{}", run.stdout, run.stderr);
    if version < (1, 7) {
        legacy_full_validate();
    } else {
        // Recent Packer reads the whole directory, plugins.pkr.hcl's requirements included.
        let run = packer_validate(&packer_dir(), &["-syntax-only", "."]);
        assert_eq!(run.code, 0, "packer validate -syntax-only .:\n{}{}", run.stdout, run.stderr);
    }
}

#[test]
fn the_template_checks_catch_a_broken_template() {
    let text = read(&packer_dir().join("pmesh-controller.pkr.hcl"));
    let broken = text.replacen("  export {\n", "  export \n", 1);
    assert!(hcl_structure(&broken).is_err(), "the structural check missed an unbalanced brace");
    assert!(hcl_structure("a = \"open\n").is_err());
    assert_eq!(hcl_structure("/* a\n */ block \"label\" {\n  x = \"${var.a} }\" // }\n}\n"), Ok(vec!["block \"label\"".to_owned()]));
    if packer_version().is_some() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("broken.pkr.hcl"), broken).expect("writing");
        let run = packer_validate(dir.path(), &["-syntax-only", "broken.pkr.hcl"]);
        assert_ne!(run.code, 0, "packer accepted a broken template");
    }
}

#[test]
fn the_ovf_properties_agree_across_script_yaml_and_readme() {
    let script = read(&photon().join("firstboot/pmesh-firstboot.sh"));
    let list = script.split("known_keys=(").nth(1).and_then(|rest| rest.split(')').next()).expect("known_keys in the script");
    let keys: Vec<&str> = list.split_whitespace().collect();
    assert!(keys.len() >= 9 && keys.iter().all(|key| key.starts_with("pmesh.")), "{keys:?}");

    let yaml = read(&photon().join("packer/ova-environment.yaml"));
    assert!(yaml.contains("transports:\n        - com.vmware.guestInfo\n"), "the OVF must use the guestinfo transport");
    let declared: Vec<&str> =
        yaml.lines().filter_map(|line| line.strip_prefix("        ")?.strip_suffix(':')).filter(|key| key.starts_with("pmesh.")).collect();
    assert_eq!(declared, keys, "ova-environment.yaml declares other properties than the script reads");
    let token_block = yaml.split("        pmesh.token:\n").nth(1).expect("pmesh.token").split("        pmesh.").next().unwrap_or_default();
    assert!(token_block.contains("password: true"), "the token must be a password property");

    let readme = read(&photon().join("README.md"));
    for key in &keys {
        assert!(readme.contains(&format!("`{key}`")), "photon/README.md does not document {key}");
    }
    for needle in [
        "--prop:pmesh.master=",
        "--prop:pmesh.token=",
        "--prop:pmesh.ca_fingerprint=",
        "--X:injectOvfEnv",
        "pmesh token create --ttl 2h --name pc-1",
    ] {
        assert!(readme.contains(needle), "photon/README.md lacks {needle:?}");
    }
}
