//! The harness of pmesh's multi-process tests: a mesh in a temporary directory, with a master
//! and agents started as the real binaries on loopback ports.
//!
//! Processes are killed when their handle drops. Waiting is always for a condition with a
//! deadline ([`wait_until`]), never a bare sleep.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub mod chaos;
pub mod docker;
pub mod http;
pub mod processes;
pub mod proxy;
pub mod standins;
pub mod tls;
pub mod vcsa;
pub mod vcsim;

/// The built binary `name`, from `$PMESH_BIN_DIR` (the benchmark points it at release
/// builds), else the workspace's debug target directory.
///
/// # Panics
/// When it has not been built; the message says how to build it.
pub fn bin(name: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = std::env::var_os("PMESH_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| target.join("debug"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (tests/run.sh does)",
        path.display()
    );
    path
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("binding an ephemeral loopback port")
}

/// The first of `n_ports` consecutive loopback ports that were all free a moment ago.
pub fn free_port_block(n_ports: u16) -> u16 {
    for _ in 0..100 {
        let first = free_port();
        let all_free =
            (0..n_ports).all(|offset| first.checked_add(offset).is_some_and(|port| TcpListener::bind(("127.0.0.1", port)).is_ok()));
        if all_free {
            return first;
        }
    }
    panic!("no block of {n_ports} free loopback ports");
}

/// Polls `condition` until it holds or `timeout` passes.
///
/// # Errors
/// When the deadline passes; the message says what was awaited.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// A child process killed on drop, its output in a log file.
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("the process did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(program: &Path, args: &[&str], log: &Path) -> anyhow::Result<Daemon> {
    let file = std::fs::File::create(log)?;
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .env("RUST_LOG", "info")
        .env_remove("PMESH_HOME")
        .env_remove("PMESH_CREDENTIALS")
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(Daemon { child, log: log.to_path_buf() })
}

/// A mesh in a temporary directory.
pub struct Mesh {
    pub dir: tempfile::TempDir,
    pub master_port: u16,
    pub check_interval: String,
    pub extra_serve_args: Vec<String>,
}

/// A finished CLI command.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Mesh {
    /// Creates the CA (`pmesh ca init`) in a fresh directory.
    ///
    /// # Errors
    /// When `ca init` fails.
    pub fn init() -> anyhow::Result<Mesh> {
        let dir = tempfile::tempdir()?;
        let master_port = free_port();
        let mesh = Mesh { dir, master_port, check_interval: "1s".into(), extra_serve_args: Vec::new() };
        let run = mesh.pmesh(&["ca", "init", "--listen", &mesh.master_address()]);
        if run.code != 0 {
            bail!("ca init failed: {}", run.stderr);
        }
        Ok(mesh)
    }

    pub fn master_address(&self) -> String {
        format!("127.0.0.1:{}", self.master_port)
    }

    pub fn master_dir(&self) -> PathBuf {
        self.dir.path().join("master")
    }

    pub fn agent_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("agent-{name}"))
    }

    /// Runs `pmesh` with the master's data directory.
    pub fn pmesh(&self, args: &[&str]) -> Run {
        let data_dir = self.master_dir();
        let mut full = vec!["--data-dir", data_dir.to_str().expect("utf-8 temp path")];
        full.extend_from_slice(args);
        self.command("pmesh", &full)
    }

    /// Runs a binary with `args`, without the data-dir default.
    pub fn command(&self, program: &str, args: &[&str]) -> Run {
        Command::new(bin(program))
            .args(args)
            .env_remove("PMESH_HOME")
            .env_remove("PMESH_CREDENTIALS")
            .output()
            .expect("running a pmesh binary")
            .into()
    }

    /// Starts `pmesh serve` and waits until it accepts connections.
    ///
    /// # Errors
    /// When it does not come up.
    pub fn start_master(&self) -> anyhow::Result<Daemon> {
        let data_dir = self.master_dir();
        let mut args = vec!["serve", "--data-dir", data_dir.to_str().expect("utf-8"), "--check-interval", &self.check_interval];
        args.extend(self.extra_serve_args.iter().map(String::as_str));
        let log = self.dir.path().join(format!("master-{}.log", unique()));
        let daemon = spawn(&bin("pmesh"), &args, &log)?;
        let address = self.master_address();
        wait_until("the master to listen", Duration::from_secs(20), || std::net::TcpStream::connect(&address).is_ok())
            .with_context(|| daemon.log_text())?;
        Ok(daemon)
    }

    /// Creates a join token; `args` are extra `token create` flags.
    ///
    /// # Errors
    /// When `token create` fails.
    pub fn token(&self, args: &[&str]) -> anyhow::Result<(String, String)> {
        let mut full = vec!["token", "create", "-o", "json"];
        full.extend_from_slice(args);
        let run = self.pmesh(&full);
        if run.code != 0 {
            bail!("token create failed ({}): {}", run.code, run.stderr);
        }
        let json: serde_json::Value = serde_json::from_str(&run.stdout)?;
        Ok((json["token"].as_str().context("token")?.to_owned(), json["ca_fingerprint"].as_str().context("fingerprint")?.to_owned()))
    }

    /// Runs `pmesh-agent join` for `name`, advertising `127.0.0.1:port`.
    pub fn join(&self, name: &str, port: u16, token: &str, fingerprint: &str) -> Run {
        let data_dir = self.agent_dir(name);
        let advertise = format!("127.0.0.1:{port}");
        self.command(
            "pmesh-agent",
            &[
                "join",
                "--data-dir",
                data_dir.to_str().expect("utf-8"),
                "--master",
                &self.master_address(),
                "--token",
                token,
                "--ca-fingerprint",
                fingerprint,
                "--name",
                name,
                "--advertise",
                &advertise,
            ],
        )
    }

    /// Creates a token and joins `name`; returns its port.
    ///
    /// # Errors
    /// When either step fails.
    pub fn enrol(&self, name: &str, token_args: &[&str]) -> anyhow::Result<u16> {
        let (token, fingerprint) = self.token(token_args)?;
        let port = free_port();
        let run = self.join(name, port, &token, &fingerprint);
        if run.code != 0 {
            bail!("join {name} failed ({}): {}", run.code, run.stderr);
        }
        Ok(port)
    }

    /// Joins `name` advertising `advertise` (a proxy, say) rather than its own port.
    ///
    /// # Errors
    /// When the token or the join fails.
    pub fn enrol_advertising(&self, name: &str, advertise: &str, token_args: &[&str]) -> anyhow::Result<()> {
        let (token, fingerprint) = self.token(token_args)?;
        let data_dir = self.agent_dir(name);
        let run = self.command(
            "pmesh-agent",
            &[
                "join",
                "--data-dir",
                data_dir.to_str().expect("utf-8"),
                "--master",
                &self.master_address(),
                "--token",
                &token,
                "--ca-fingerprint",
                &fingerprint,
                "--name",
                name,
                "--advertise",
                advertise,
            ],
        );
        if run.code != 0 {
            bail!("join {name} failed ({}): {}", run.code, run.stderr);
        }
        Ok(())
    }

    /// Joins `name` with the master reached at `master` and the agent advertised at
    /// `advertise`: proxies, say, so that a test can partition either direction.
    ///
    /// # Errors
    /// When the token or the join fails.
    pub fn enrol_through(&self, name: &str, master: &str, advertise: &str, token_args: &[&str]) -> anyhow::Result<()> {
        let (token, fingerprint) = self.token(token_args)?;
        let data_dir = self.agent_dir(name);
        let data_dir = data_dir.to_str().expect("utf-8");
        let args = [
            "join",
            "--data-dir",
            data_dir,
            "--master",
            master,
            "--token",
            &token,
            "--ca-fingerprint",
            &fingerprint,
            "--name",
            name,
            "--advertise",
            advertise,
        ];
        let run = self.command("pmesh-agent", &args);
        if run.code != 0 {
            bail!("join {name} failed ({}): {}", run.code, run.stderr);
        }
        Ok(())
    }

    /// Starts `pmesh-agent run` on `listen` (not its advertised address).
    ///
    /// # Errors
    /// When it does not come up.
    pub fn start_agent_listening(&self, name: &str, listen: &str) -> anyhow::Result<Daemon> {
        let data_dir = self.agent_dir(name);
        let args = ["run", "--data-dir", data_dir.to_str().expect("utf-8"), "--listen", listen];
        let log = self.dir.path().join(format!("agent-{name}-{}.log", unique()));
        let daemon = spawn(&bin("pmesh-agent"), &args, &log)?;
        wait_until("the agent to listen", Duration::from_secs(20), || std::net::TcpStream::connect(listen).is_ok())
            .with_context(|| daemon.log_text())?;
        Ok(daemon)
    }

    /// Starts `pmesh-agent run` for an enrolled agent under `wrapper` (a command that execs the
    /// rest of its arguments, such as `env LD_PRELOAD=… FAKETIME=-10m`), and waits until it listens.
    ///
    /// # Errors
    /// When it does not come up.
    pub fn start_agent_wrapped(&self, name: &str, wrapper: &[&str]) -> anyhow::Result<Daemon> {
        let (program, wrapper_args) = wrapper.split_first().context("an empty wrapper")?;
        let data_dir = self.agent_dir(name);
        let enrolment: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(data_dir.join("agent.json"))?)?;
        let advertise = enrolment["advertise"].as_str().context("advertise")?.to_owned();
        let agent = bin("pmesh-agent");
        let mut args: Vec<&str> = wrapper_args.to_vec();
        args.extend([agent.to_str().expect("utf-8"), "run", "--data-dir", data_dir.to_str().expect("utf-8"), "--listen", &advertise]);
        let log = self.dir.path().join(format!("agent-{name}-{}.log", unique()));
        let daemon = spawn(Path::new(program), &args, &log)?;
        wait_until("the agent to listen", Duration::from_secs(20), || std::net::TcpStream::connect(&advertise).is_ok())
            .with_context(|| daemon.log_text())?;
        Ok(daemon)
    }

    /// Starts `pmesh-agent run` for an enrolled agent and waits until it listens.
    ///
    /// # Errors
    /// When it does not come up.
    pub fn start_agent(&self, name: &str, extra: &[&str]) -> anyhow::Result<Daemon> {
        let data_dir = self.agent_dir(name);
        let enrolment: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(data_dir.join("agent.json"))?)?;
        let advertise = enrolment["advertise"].as_str().context("advertise")?.to_owned();
        let mut args = vec!["run", "--data-dir", data_dir.to_str().expect("utf-8"), "--listen", &advertise];
        args.extend_from_slice(extra);
        let log = self.dir.path().join(format!("agent-{name}-{}.log", unique()));
        let daemon = spawn(&bin("pmesh-agent"), &args, &log)?;
        wait_until("the agent to listen", Duration::from_secs(20), || std::net::TcpStream::connect(&advertise).is_ok())
            .with_context(|| daemon.log_text())?;
        Ok(daemon)
    }

    /// `pmesh agents ls -o json`, parsed.
    ///
    /// # Errors
    /// When the command fails.
    pub fn agents(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let run = self.pmesh(&["agents", "ls", "-o", "json"]);
        if run.code != 0 {
            bail!("agents ls failed ({}): {}", run.code, run.stderr);
        }
        Ok(serde_json::from_str(&run.stdout)?)
    }

    /// The status (`up`, `down`, `unknown`) of agent `name`, if listed.
    pub fn status(&self, name: &str) -> Option<String> {
        self.agents()
            .ok()?
            .into_iter()
            .find(|agent| agent["name"] == name)
            .map(|agent| agent["status"].as_str().unwrap_or_default().to_owned())
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_nanos()).unwrap_or(0)
}

/// The run id `pmesh run` printed (its `run ID ...` line), if any.
pub fn run_id_in(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|line| line.strip_prefix("run ")).and_then(|rest| rest.split_whitespace().next()).map(str::to_owned)
}

/// Every regular file under `dir` (recursively), as (path, bytes read as lossy text): where a
/// test searches a daemon's data directory for a secret.
pub fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                found.push((path.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    found
}
