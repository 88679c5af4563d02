//! The catalog's LDAP pattern, applied by the real `pmesh-agent pattern apply` process (and,
//! for the secrets check, by a real master and agent) on the real Docker engine. The pattern
//! names the osixia/openldap image; the agent's image rewrite map points it at the image built
//! from Debian's slapd package. Every check is made by the real OpenLDAP clients
//! (`ldapsearch`, `ldapwhoami`) in another container, over the published ports.
//!
//! Passwords are random per test and travel only in files: the values file given with `-f`,
//! and password files the clients read with `-y`. A thread watches every process's command
//! line and environment while the runs go on; afterwards the events, the container logs and
//! the master's data directory are searched for them too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;

use pmesh_tests::docker::{docker, docker_output};
use pmesh_tests::processes::Watch;
use pmesh_tests::{bin, files_under, free_port, Mesh, Run};

const LDAP_IMAGE: &str = "pmesh-test/ldap:bookworm-1";
const UPSTREAM_IMAGE: &str = "osixia/openldap:1.5.0";
const BASE: &str = "dc=lab,dc=test";

fn pattern() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/shared/ldap")
}

fn require_ldap_image() {
    assert!(
        docker_output(&["image", "inspect", LDAP_IMAGE]).status.success(),
        "{LDAP_IMAGE} is missing: build it with tests/images/build.sh (tests/run.sh does)"
    );
}

fn random_password(label: &str) -> String {
    format!("{label}-{:016x}!", rand::random::<u64>())
}

/// The directory's content for one apply: uid → (full name, password), and groups.
struct Directory {
    users: BTreeMap<&'static str, (&'static str, String)>,
    groups: BTreeMap<&'static str, &'static str>,
    bind_password: String,
}

impl Directory {
    fn values(&self, ldap_port: u16, ldaps_port: u16) -> String {
        let users: String = self.users.iter().map(|(uid, (name, _))| format!("\n  {uid}: {name}")).collect();
        let groups: String = self.groups.iter().map(|(group, members)| format!("\n  {group}: \"{members}\"")).collect();
        let passwords: String = self.users.iter().map(|(uid, (_, password))| format!("\n  {uid}:{password}")).collect();
        format!(
            "domain: lab.test\nldap_port: {ldap_port}\nldaps_port: {ldaps_port}\nbind_password: \"{}\"\nusers:{}\ngroups:{}\nuser_passwords: |{}\n",
            self.bind_password,
            if users.is_empty() { " {}".to_owned() } else { users },
            if groups.is_empty() { " {}".to_owned() } else { groups },
            passwords,
        )
    }

    fn secrets(&self) -> Vec<String> {
        self.users.values().map(|(_, password)| password.clone()).chain([self.bind_password.clone()]).collect()
    }
}

struct Lab {
    dir: tempfile::TempDir,
    instance: String,
    ldap_port: u16,
    ldaps_port: u16,
}

impl Lab {
    fn new() -> Lab {
        require_ldap_image();
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("agent.toml"), format!("[images.rewrite]\n\"{UPSTREAM_IMAGE}\" = \"{LDAP_IMAGE}\"\n"))
            .expect("agent.toml");
        static NEXT_LAB: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let instance = format!("ldap-{}-{}", std::process::id(), NEXT_LAB.fetch_add(1, Ordering::SeqCst));
        Lab { dir, instance, ldap_port: free_port(), ldaps_port: free_port() }
    }

    fn values_file(&self, directory: &Directory) -> PathBuf {
        let path = self.dir.path().join("values.yaml");
        std::fs::write(&path, directory.values(self.ldap_port, self.ldaps_port)).expect("values");
        path
    }

    fn agent(&self, verb: &str, directory: &Directory) -> Run {
        self.agent_with(verb, &self.values_file(directory))
    }

    fn agent_with(&self, verb: &str, values: &Path) -> Run {
        let output = Command::new(bin("pmesh-agent"))
            .args(["--data-dir", self.dir.path().join("agent").to_str().expect("utf-8"), "pattern", verb])
            .arg(pattern())
            .args(["--instance", &self.instance, "--config"])
            .arg(self.dir.path().join("agent.toml"))
            .arg("-f")
            .arg(values)
            .output()
            .expect("running pmesh-agent");
        output.into()
    }

    fn slapd(&self) -> String {
        format!("pmesh-{}-slapd", self.instance)
    }

    /// The CA the pattern generated, as its `ca_certificate` output reads it.
    fn ca(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, docker(&["exec", &self.slapd(), "cat", "/certs/ca.pem"]) + "\n").expect("ca.pem");
        path
    }

    /// Runs an OpenLDAP client in its own container on the host network, with `password` in
    /// the file /pw and the CA at /ca.pem.
    fn client<S: AsRef<std::ffi::OsStr>>(&self, password: &str, args: &[S]) -> Run {
        let secret = self.dir.path().join(format!("pw-{}", rand::random::<u32>()));
        std::fs::write(&secret, password).expect("password file");
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
        let ca = self.ca();
        let output = Command::new("docker")
            .args(["run", "--rm", "--network", "host", "-e", "LDAPTLS_CACERT=/ca.pem", "-e", "LDAPTLS_REQCERT=demand", "-v"])
            .arg(format!("{}:/pw:ro", secret.display()))
            .arg("-v")
            .arg(format!("{}:/ca.pem:ro", ca.display()))
            .arg(LDAP_IMAGE)
            .args(args)
            .output()
            .expect("docker run");
        let _ = std::fs::remove_file(&secret);
        output.into()
    }

    /// `ldapsearch` over LDAPS as `dn`, parsed: one map of attribute → values per entry.
    fn search(&self, dn: &str, password: &str, filter: &str, attributes: &[&str]) -> Vec<BTreeMap<String, Vec<String>>> {
        let url = format!("ldaps://127.0.0.1:{}", self.ldaps_port);
        let mut args = vec!["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", &url, "-D", dn, "-y", "/pw", "-b", BASE, filter];
        args.extend_from_slice(attributes);
        let run = self.client(password, &args);
        assert_eq!(run.code, 0, "ldapsearch as {dn}: {}", run.stderr);
        parse_ldif(&run.stdout)
    }

    fn bind_dn() -> String {
        format!("cn=vcenter-bind,ou=services,{BASE}")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        pmesh_tests::docker::remove_instance(&self.instance);
    }
}

fn parse_ldif(text: &str) -> Vec<BTreeMap<String, Vec<String>>> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut entry: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for line in block.lines() {
                if let Some((name, value)) = line.split_once(": ").or_else(|| line.split_once(":: ")) {
                    entry.entry(name.to_owned()).or_default().push(value.to_owned());
                }
            }
            entry
        })
        .collect()
}

fn value_of(entry: &BTreeMap<String, Vec<String>>, name: &str) -> String {
    entry.get(name).and_then(|values| values.first()).cloned().unwrap_or_default()
}

fn by_dn(entries: Vec<BTreeMap<String, Vec<String>>>) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    entries.into_iter().map(|entry| (value_of(&entry, "dn"), entry)).collect()
}

fn alice_and_bob() -> Directory {
    Directory {
        users: BTreeMap::from([
            ("alice", ("Alice Smith", random_password("alice"))),
            ("bob", ("Bob Jones", random_password("bob:with:colons"))),
        ]),
        groups: BTreeMap::from([("vcenter-admins", "alice"), ("lab-users", "alice, bob")]),
        bind_password: random_password("bind"),
    }
}

/// Fails with every place a secret was found among `texts` (name, text).
fn assert_no_secret(secrets: &[String], texts: &[(String, String)]) {
    let leaks: Vec<String> = texts
        .iter()
        .filter(|(_, text)| secrets.iter().any(|secret| text.contains(secret.as_str())))
        .map(|(name, _)| name.clone())
        .collect();
    assert!(leaks.is_empty(), "a password appears in: {leaks:?}");
}

/// The logs of every container of `instance`, by container name.
fn container_logs(instance: &str) -> Vec<(String, String)> {
    pmesh_tests::docker::containers_with_label("io.pmesh.instance", instance)
        .into_iter()
        .map(|name| {
            let output = docker_output(&["logs", &name]);
            let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            (format!("docker logs {name}"), text)
        })
        .collect()
}

#[test]
fn the_ldap_pattern_serves_vcenter_shaped_entries_converges_and_keeps_its_data() {
    let lab = Lab::new();
    let lint = Command::new(bin("pmesh")).args(["pattern", "lint"]).arg(pattern()).output().expect("pmesh");
    assert!(lint.status.success(), "the catalog pattern lints clean: {}", String::from_utf8_lossy(&lint.stdout));

    let mut directory = alice_and_bob();
    let carol_password = random_password("carol");
    let bob_password = directory_password(&directory, "bob");
    let secrets = [directory.secrets(), vec![carol_password.clone()]].concat();
    let watch = Watch::start(secrets.clone(), &["cmdline", "environ"]);
    let first = lab.agent("apply", &directory);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    // The password files are readable by the agent's user only (the directory step reads them
    // as root); files without a secret stay readable for slapd, which runs as openldap.
    let mode = |name: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = lab.dir.path().join("agent/instances").join(&lab.instance).join("files").join(name);
        std::fs::metadata(&path)
            .map(|metadata| metadata.permissions().mode() & 0o777)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    };
    assert_eq!((mode("passwords"), mode("bind.password"), mode("slapd.conf")), (0o600, 0o600, 0o644));
    let alice_uuid = check_directory(&lab, &directory);
    let slapd = docker(&["inspect", "-f", "{{.Id}}", &lab.slapd()]);

    // A user without a password fails the run before anything changes.
    let mut broken = alice_and_bob();
    broken.users.insert("dave", ("Dave Null", String::new()));
    broken.bind_password = directory.bind_password.clone();
    std::fs::write(lab.dir.path().join("broken.yaml"), broken.values(lab.ldap_port, lab.ldaps_port).replace("\n  dave:\n", "\n"))
        .expect("values");
    let refused = lab.agent_with("apply", &lab.dir.path().join("broken.yaml"));
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(refused.stdout.contains("user dave has no password in user_passwords"), "{}", refused.stdout);
    let users = lab.search(&Lab::bind_dn(), &directory.bind_password, "(objectClass=inetOrgPerson)", &["uid"]);
    assert_eq!(users.len(), 2, "dave was not added: {users:?}");

    // Bob leaves, Carol arrives: only the directory step runs again.
    directory.users.remove("bob");
    directory.users.insert("carol", ("Carol Diaz", carol_password.clone()));
    directory.groups = BTreeMap::from([("vcenter-admins", "alice"), ("lab-users", "alice,carol")]);
    let second = lab.agent("apply", &directory);
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    assert!(second.stdout.contains(&format!("removed uid=bob,ou=users,{BASE}")), "{}", second.stdout);
    assert_eq!(docker(&["inspect", "-f", "{{.Id}}", &lab.slapd()]), slapd, "slapd was not replaced for a change of users");
    let users = by_dn(lab.search(&Lab::bind_dn(), &directory.bind_password, "(objectClass=inetOrgPerson)", &["uid", "entryUUID"]));
    let uids: Vec<String> = users.values().map(|entry| value_of(entry, "uid")).collect();
    assert_eq!(uids, ["alice", "carol"]);
    assert_eq!(value_of(&users[&format!("uid=alice,ou=users,{BASE}")], "entryUUID"), alice_uuid, "alice was updated in place");
    let groups = by_dn(lab.search(&Lab::bind_dn(), &directory.bind_password, "(cn=lab-users)", &["uniqueMember"]));
    assert_eq!(groups[&format!("cn=lab-users,ou=groups,{BASE}")]["uniqueMember"].len(), 2);
    assert!(lab.client(&carol_password, &whoami("carol", lab.ldaps_port)).stdout.contains("dn:uid=carol"));
    let bob = lab.client(&bob_password, &whoami("bob", lab.ldaps_port));
    assert_eq!(bob.code, 49, "bob can no longer bind: {}", bob.stderr);

    // The data lives in a volume: a new slapd container serves the same entries.
    docker(&["rm", "-f", &lab.slapd()]);
    let third = lab.agent("apply", &directory);
    assert_eq!(third.code, 0, "{}\n{}", third.stdout, third.stderr);
    assert_ne!(docker(&["inspect", "-f", "{{.Id}}", &lab.slapd()]), slapd);
    assert!(third.stdout.contains("directory      unchanged"), "the directory step did not run again: {}", third.stdout);
    let users = by_dn(lab.search(&Lab::bind_dn(), &directory.bind_password, "(uid=alice)", &["entryUUID"]));
    assert_eq!(value_of(&users[&format!("uid=alice,ou=users,{BASE}")], "entryUUID"), alice_uuid);
    assert!(lab.client(&carol_password, &whoami("carol", lab.ldaps_port)).stdout.contains("dn:uid=carol"));

    let (scans, seen) = watch.finish();
    assert!(scans > 10, "the command lines were watched ({scans} scans)");
    assert!(seen.is_empty(), "a password was on a command line or in an environment: {seen:?}");
    let mut texts = container_logs(&lab.instance);
    for (name, run) in [("first apply", &first), ("second apply", &second), ("third apply", &third)] {
        texts.push((name.to_owned(), format!("{}{}", run.stdout, run.stderr)));
    }
    assert_no_secret(&secrets, &texts);
}

fn directory_password(directory: &Directory, uid: &str) -> String {
    directory.users[uid].1.clone()
}

fn whoami(uid: &str, ldaps_port: u16) -> Vec<String> {
    ["ldapwhoami", "-x", "-H", &format!("ldaps://127.0.0.1:{ldaps_port}"), "-D", &format!("uid={uid},ou=users,{BASE}"), "-y", "/pw"]
        .map(str::to_owned)
        .to_vec()
}

/// The checks after the first apply; returns alice's entryUUID.
fn check_directory(lab: &Lab, directory: &Directory) -> String {
    let bind = Lab::bind_dn();
    let attributes = ["objectClass", "uid", "cn", "givenName", "sn", "mail", "entryUUID"];
    let users = by_dn(lab.search(&bind, &directory.bind_password, "(objectClass=inetOrgPerson)", &attributes));
    assert_eq!(users.len(), 2, "{users:?}");
    let alice = &users[&format!("uid=alice,ou=users,{BASE}")];
    assert!(alice["objectClass"].contains(&"inetOrgPerson".to_owned()), "{alice:?}");
    for (attribute, value) in [("uid", "alice"), ("cn", "Alice Smith"), ("givenName", "Alice"), ("sn", "Smith"), ("mail", "alice@lab.test")]
    {
        assert_eq!(value_of(alice, attribute), value, "{attribute} of alice");
    }
    let alice_uuid = value_of(alice, "entryUUID");
    assert_eq!(alice_uuid.len(), 36, "an entryUUID: {alice:?}");

    let groups =
        by_dn(lab.search(&bind, &directory.bind_password, "(objectClass=groupOfUniqueNames)", &["cn", "uniqueMember", "entryUUID"]));
    let members = |group: &str| groups[&format!("cn={group},ou=groups,{BASE}")]["uniqueMember"].clone();
    assert_eq!(members("vcenter-admins"), [format!("uid=alice,ou=users,{BASE}")]);
    assert_eq!(members("lab-users"), [format!("uid=alice,ou=users,{BASE}"), format!("uid=bob,ou=users,{BASE}")]);
    assert!(groups.values().all(|group| value_of(group, "entryUUID").len() == 36), "{groups:?}");

    // Each user binds with their own password (bob's has colons in it), and only with it.
    for uid in ["alice", "bob"] {
        let run = lab.client(&directory_password(directory, uid), &whoami(uid, lab.ldaps_port));
        assert_eq!(run.stdout.trim(), format!("dn:uid={uid},ou=users,{BASE}"), "{}", run.stderr);
    }
    let wrong = lab.client("not-the-password", &whoami("alice", lab.ldaps_port));
    assert_eq!(wrong.code, 49, "a wrong password is refused: {}", wrong.stderr);

    // LDAPS is verified against the CA output: a client trusting other CAs refuses it.
    let mut untrusting = vec!["env".to_owned(), "LDAPTLS_CACERT=/etc/ssl/certs/ca-certificates.crt".to_owned()];
    untrusting.extend(whoami("alice", lab.ldaps_port));
    let refused = lab.client(&directory_password(directory, "alice"), &untrusting);
    assert_ne!(refused.code, 0, "the certificate is not trusted without the pattern's CA");
    assert!(refused.stderr.contains("Can't contact LDAP server"), "{}", refused.stderr);
    // StartTLS on the plain port, verified the same way.
    let url = format!("ldap://127.0.0.1:{}", lab.ldap_port);
    let start_tls = lab.client(
        &directory_password(directory, "alice"),
        &["ldapwhoami", "-x", "-ZZ", "-H", &url, "-D", &format!("uid=alice,ou=users,{BASE}"), "-y", "/pw"],
    );
    assert_eq!(start_tls.code, 0, "{}", start_tls.stderr);

    // Nothing is readable anonymously.
    let anonymous = lab.client("", &["ldapsearch", "-x", "-H", &url, "-b", BASE]);
    assert_ne!(anonymous.code, 0, "an anonymous search is refused: {}", anonymous.stdout);

    // Passwords are stored hashed (read as root over the server's ldapi socket).
    let stored = docker(&[
        "exec",
        &lab.slapd(),
        "sh",
        "-c",
        &format!("ldapsearch -Q -LLL -o ldif-wrap=no -Y EXTERNAL -H ldapi://%2Frun%2Fpmesh-ldapi%2Fldapi -b uid=alice,ou=users,{BASE} -s base userPassword | sed -n 's/^userPassword:: //p' | base64 -d"),
    ]);
    assert!(stored.starts_with("{SSHA}"), "stored as {{SSHA}}: {stored}");
    assert!(!stored.contains(&directory_password(directory, "alice")));
    alice_uuid
}

#[test]
fn ldap_passwords_reach_no_event_log_stored_record_or_command_line() -> anyhow::Result<()> {
    require_ldap_image();
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    mesh.enrol("pc-1", &[])?;
    std::fs::write(mesh.agent_dir("pc-1").join("agent.toml"), format!("[images.rewrite]\n\"{UPSTREAM_IMAGE}\" = \"{LDAP_IMAGE}\"\n"))?;
    let agent = mesh.start_agent("pc-1", &[])?;
    let push = mesh.pmesh(&["pattern", "push", pattern().to_str().expect("utf-8")]);
    anyhow::ensure!(push.code == 0, "push failed: {}", push.stderr);

    let instance = pmesh_tests::docker::Instance::new("ldap");
    let directory = alice_and_bob();
    let values = mesh.dir.path().join("values.yaml");
    std::fs::write(&values, directory.values(free_port(), free_port()))?;
    // The watch must see what it looks for: a process carrying a marker as an argument.
    let marker = random_password("marker");
    let mut marked = Command::new("sh").args(["-c", "sleep 60", &marker]).spawn()?;
    let watch = Watch::start([directory.secrets(), vec![marker.clone()]].concat(), &["cmdline", "environ"]);
    let run = mesh.pmesh(&["run", "ldap", "--on", "pc-1", "--instance", &instance.0, "-f", values.to_str().expect("utf-8")]);
    let (scans, seen) = watch.finish();
    let _ = marked.kill();
    let _ = marked.wait();
    anyhow::ensure!(run.code == 0, "run failed: {}\n{}", run.stdout, run.stderr);
    assert!(scans > 10, "the command lines were watched ({scans} scans)");
    assert!(seen.iter().any(|line| line.contains(&marker)), "the watch finds what is on a command line");
    let leaks: Vec<&String> = seen.iter().filter(|line| !line.contains(&marker)).collect();
    assert!(leaks.is_empty(), "a password was on a command line or in an environment: {leaks:?}");

    let run_id = run.stdout.lines().find_map(|line| line.strip_prefix("run ")).and_then(|rest| rest.split_whitespace().next());
    let run_id = run_id.expect("run id printed").to_owned();
    let watched = mesh.pmesh(&["runs", "watch", &run_id, "-o", "json"]);
    assert!(watched.stdout.contains("set the password of uid=alice"), "the events hold the directory step's lines: {}", watched.stdout);
    let shown = mesh.pmesh(&["runs", "show", &run_id, "-o", "json"]);
    let logs = mesh.pmesh(&["runs", "logs", &run_id]);
    let outputs = mesh.pmesh(&["instances", "show", &instance.0, "-o", "json"]);
    let parsed: serde_json::Value = serde_json::from_str(&outputs.stdout)?;
    let value = |name: &str| parsed["outputs"][name]["value"].as_str().unwrap_or_default().to_owned();
    assert_eq!(value("base_dn"), BASE, "{}", outputs.stdout);
    assert_eq!(value("users_dn"), format!("ou=users,{BASE}"));
    assert_eq!(value("groups_dn"), format!("ou=groups,{BASE}"));
    assert_eq!(value("bind_dn"), format!("cn=vcenter-bind,ou=services,{BASE}"));
    assert!(value("ldaps_url").starts_with("ldaps://127.0.0.1:"), "{}", outputs.stdout);
    assert!(value("ca_certificate").starts_with("-----BEGIN CERTIFICATE-----"), "{}", outputs.stdout);
    let master_files = files_under(&mesh.master_dir());
    assert!(master_files.iter().any(|(_, text)| text.contains(&instance.0)), "the master's data directory holds the run");
    let mut texts = vec![
        ("pmesh run".to_owned(), format!("{}{}", run.stdout, run.stderr)),
        ("runs watch".to_owned(), watched.stdout),
        ("runs show".to_owned(), shown.stdout),
        ("runs logs".to_owned(), logs.stdout),
        ("instances show".to_owned(), outputs.stdout),
        ("the agent's log".to_owned(), agent.log_text()),
    ];
    texts.extend(master_files);
    texts.extend(files_under(mesh.dir.path()).into_iter().filter(|(path, _)| path.ends_with(".log")));
    texts.extend(container_logs(&instance.0));
    assert_no_secret(&directory.secrets(), &texts);
    Ok(())
}
