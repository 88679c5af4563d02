//! `pmesh-bench-services`: time to services. One mesh on loopback (a master and four agents,
//! release builds from `$PMESH_BIN_DIR`), the catalog's DNS, NTP, LDAP and NFS patterns
//! pushed and their images present; then all four are run at once, each on its own agent, and
//! timed from that moment until
//!
//! - its `pmesh run` has finished (the pattern's own readiness steps passed), and
//! - it answers a real protocol exchange made from this process through its published port:
//!   a DNS SOA query (UDP), an NTP client request (UDP, a synchronised answer), an LDAP simple
//!   bind as the pattern's bind account (TCP, result `success`), an ONC RPC `NULL` call to
//!   nfsd version 3 (TCP, accepted).
//!
//! It prints each service's two times and the total beside the target (under 30 s). It
//! asserts no time: performance is reported, not tested. It fails only when a service does not
//! come up at all. NFS runs only where the `capabilities` field exists (the pattern lints);
//! otherwise the output says plainly that it was left out.
//!
//! Usage: `tests/bench.sh services`.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pmesh_tests::{free_port, wait_until, Mesh};

/// How long a service may take before the benchmark gives up on it.
const GIVE_UP: Duration = Duration::from_secs(180);

fn catalog(name: &str) -> PathBuf {
    PathBuf::from(format!("{}/../patterns/shared/{name}", env!("CARGO_MANIFEST_DIR")))
}

/// The agent configuration every agent gets: the catalog's upstream images mapped to the ones
/// `tests/images/build.sh` builds (no registry is reachable here).
const REWRITES: &str = "[images.rewrite]\n\
    \"internetsystemsconsortium/bind9:9.18\" = \"pmesh-test/tools:bookworm-1\"\n\
    \"cturra/ntp:latest\" = \"pmesh-test/ntp:bookworm-1\"\n\
    \"osixia/openldap:1.5.0\" = \"pmesh-test/ldap:bookworm-1\"\n\
    \"ghcr.io/kubernetes-sigs/nfs-ganesha:V4.0.8\" = \"pmesh-test/nfs:bookworm-1\"\n";

const IMAGES: [&str; 4] =
    ["pmesh-test/tools:bookworm-1", "pmesh-test/ntp:bookworm-1", "pmesh-test/ldap:bookworm-1", "pmesh-test/nfs:bookworm-1"];

/// A protocol exchange that says whether the service answered.
type Probe = Box<dyn Fn() -> bool + Send>;

struct Service {
    name: &'static str,
    agent: String,
    instance: String,
    /// `pmesh run` arguments after the instance: `-p`, `-f`.
    args: Vec<String>,
    probe: Probe,
}

/// What one service measured, in seconds from the common start.
#[derive(Default, Clone, Copy)]
struct Times {
    run_done: Option<f64>,
    answered: Option<f64>,
}

// ---- the protocol exchanges ----

fn udp_exchange(port: u16, request: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    socket.send_to(request, ("127.0.0.1", port)).ok()?;
    let mut buffer = [0u8; 1500];
    let (length, _) = socket.recv_from(&mut buffer).ok()?;
    Some(buffer[..length].to_vec())
}

fn tcp_exchange(port: u16, request: &[u8], at_least: usize) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_millis(1000))).ok()?;
    stream.write_all(request).ok()?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 512];
    while answer.len() < at_least {
        let read = stream.read(&mut buffer).ok()?;
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
    }
    Some(answer)
}

/// A DNS query for the zone's SOA: the answer has our id, no error and at least one record.
fn dns_answers(port: u16, zone: &str) -> bool {
    let mut query = vec![0x5e, 0x11, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in zone.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 6, 0, 1]);
    udp_exchange(port, &query).is_some_and(|answer| {
        answer.len() >= 12 && answer[..2] == [0x5e, 0x11] && answer[2] & 0x80 != 0 && answer[3] & 0x0f == 0 && answer[6..8] != [0, 0]
    })
}

/// An NTPv4 client request: a server-mode answer echoing our transmit time, synchronised
/// (leap indicator not 3, stratum 1 to 15).
fn ntp_answers(port: u16) -> bool {
    let mut request = [0u8; 48];
    request[0] = 0x23;
    let stamp = rand_u64();
    request[40..48].copy_from_slice(&stamp.to_be_bytes());
    udp_exchange(port, &request).is_some_and(|answer| {
        answer.len() >= 48
            && answer[0] & 0x07 == 4
            && answer[0] >> 6 != 3
            && (1..=15).contains(&answer[1])
            && answer[24..32] == request[40..48]
    })
}

/// An LDAP simple bind (BER, short lengths): the BindResponse's result code is 0.
fn ldap_binds(port: u16, dn: &str, password: &str) -> bool {
    let mut bind = vec![0x02, 0x01, 0x03, 0x04, dn.len() as u8];
    bind.extend_from_slice(dn.as_bytes());
    bind.extend_from_slice(&[0x80, password.len() as u8]);
    bind.extend_from_slice(password.as_bytes());
    let mut message = vec![0x02, 0x01, 0x01, 0x60, bind.len() as u8];
    message.extend_from_slice(&bind);
    let mut request = vec![0x30, message.len() as u8];
    request.extend_from_slice(&message);
    // 30 LL 02 01 01 61 LL 0a 01 CODE ...
    tcp_exchange(port, &request, 10).is_some_and(|answer| {
        answer.len() >= 10 && answer[0] == 0x30 && answer[2..6] == [0x02, 0x01, 0x01, 0x61] && answer[7..10] == [0x0a, 0x01, 0x00]
    })
}

/// An ONC RPC call of procedure 0 (`NULL`) of NFS version 3 over TCP: accepted, success.
fn nfs_answers(port: u16) -> bool {
    let words: [u32; 10] = [0x7e57_0001, 0, 2, 100_003, 3, 0, 0, 0, 0, 0];
    let mut request = (0x8000_0000u32 | 40).to_be_bytes().to_vec();
    request.extend(words.iter().flat_map(|word| word.to_be_bytes()));
    tcp_exchange(port, &request, 28).is_some_and(|answer| {
        let word =
            |index: usize| answer.get(index * 4..index * 4 + 4).map(|bytes| u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
        // record mark, xid, REPLY, MSG_ACCEPTED, verifier (flavor, length 0), SUCCESS
        word(1) == Some(0x7e57_0001) && word(2) == Some(1) && word(3) == Some(0) && word(5) == Some(0) && word(6) == Some(0)
    })
}

// ---- the benchmark ----

fn services(mesh: &Mesh, nfs: bool, tag: u32) -> anyhow::Result<Vec<Service>> {
    let instance = |name: &str| format!("{name}-{tag}");
    let (dns_port, ntp_port, ldap_port, ldaps_port) = (free_port(), free_port(), free_port(), free_port());
    let bind_password = format!("bench-{:016x}", rand_u64());
    let values = mesh.dir.path().join("ldap-values.yaml");
    std::fs::write(
        &values,
        format!("domain: lab.bench\nldap_port: {ldap_port}\nldaps_port: {ldaps_port}\nbind_password: \"{bind_password}\"\n"),
    )?;
    let p = |text: String| ["-p".to_owned(), text];
    let mut list = vec![
        Service {
            name: "dns",
            agent: "svc-dns".into(),
            instance: instance("dns"),
            args: [p("zone=lab.bench".into()), p(format!("listen_port={dns_port}"))].concat(),
            probe: Box::new(move || dns_answers(dns_port, "lab.bench")),
        },
        Service {
            name: "ntp",
            agent: "svc-ntp".into(),
            instance: instance("ntp"),
            args: p(format!("listen_port={ntp_port}")).to_vec(),
            probe: Box::new(move || ntp_answers(ntp_port)),
        },
        Service {
            name: "ldap",
            agent: "svc-ldap".into(),
            instance: instance("ldap"),
            args: vec!["-f".into(), values.to_str().context("a UTF-8 path")?.to_owned()],
            probe: Box::new(move || ldap_binds(ldap_port, "cn=vcenter-bind,ou=services,dc=lab,dc=bench", &bind_password)),
        },
    ];
    if nfs {
        let (nfs_port, mount_port, rpcbind_port) = (free_port(), free_port(), free_port());
        list.push(Service {
            name: "nfs",
            agent: "svc-nfs".into(),
            instance: instance("nfs"),
            args: [p(format!("nfs_port={nfs_port}")), p(format!("mount_port={mount_port}")), p(format!("rpcbind_port={rpcbind_port}"))]
                .concat(),
            probe: Box::new(move || nfs_answers(nfs_port)),
        });
    }
    Ok(list)
}

fn rand_u64() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_nanos()).unwrap_or(0);
    (nanos as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id())
}

/// Starts every service's run and probe at once; returns each one's times and failed runs.
fn measure(mesh: &Arc<Mesh>, services: Vec<Service>) -> (Vec<(&'static str, Times)>, Vec<String>) {
    let start = Instant::now();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for service in services {
        let times = Arc::new(Mutex::new(Times::default()));
        let (runner_times, runner_mesh, runner_failures) = (times.clone(), mesh.clone(), failures.clone());
        let mut args = vec![
            "run".to_owned(),
            service.name.to_owned(),
            "--on".into(),
            service.agent.clone(),
            "--instance".into(),
            service.instance.clone(),
        ];
        args.extend(service.args.iter().cloned());
        let runner = std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = runner_mesh.pmesh(&args);
            runner_times.lock().expect("lock").run_done = Some(start.elapsed().as_secs_f64());
            if run.code != 0 {
                runner_failures
                    .lock()
                    .expect("lock")
                    .push(format!("{}: pmesh run exited {}:\n{}\n{}", args[1], run.code, run.stdout, run.stderr));
            }
        });
        let probe_times = times.clone();
        let probe = service.probe;
        let prober = std::thread::spawn(move || {
            let answered = wait_until("the service to answer", GIVE_UP, &probe).is_ok();
            if answered {
                probe_times.lock().expect("lock").answered = Some(start.elapsed().as_secs_f64());
            }
        });
        handles.push((service.name, times, runner, prober));
    }
    let mut measured = Vec::new();
    for (name, times, runner, prober) in handles {
        let _ = runner.join();
        let _ = prober.join();
        let times = *times.lock().expect("lock");
        measured.push((name, times));
    }
    let failures = failures.lock().expect("lock").clone();
    (measured, failures)
}

fn seconds(value: Option<f64>) -> String {
    value.map_or("never".to_owned(), |value| format!("{value:.1} s"))
}

fn main() -> anyhow::Result<()> {
    pmesh_proto::tls::install_default_provider();
    for image in IMAGES {
        let present = std::process::Command::new("docker").args(["image", "inspect", image]).output()?.status.success();
        anyhow::ensure!(present, "{image} is missing: build it with tests/images/build.sh (tests/bench.sh does)");
    }
    let mut mesh = Mesh::init()?;
    mesh.check_interval = "5s".into();
    let master = mesh.start_master()?;
    let lint = mesh.command("pmesh", &["pattern", "lint", catalog("nfs").to_str().context("a UTF-8 path")?]);
    let nfs = lint.code == 0;
    let mut patterns = vec!["dns", "ntp", "ldap"];
    if nfs {
        patterns.push("nfs");
    }
    let mut agents = Vec::new();
    for pattern in &patterns {
        let agent = format!("svc-{pattern}");
        mesh.enrol(&agent, &[])?;
        let security = if *pattern == "nfs" { "[security]\nallow_capabilities = [\"DAC_READ_SEARCH\", \"SYS_ADMIN\"]\n" } else { "" };
        std::fs::write(mesh.agent_dir(&agent).join("agent.toml"), format!("{REWRITES}{security}"))?;
        agents.push(mesh.start_agent(&agent, &[])?);
        let push = mesh.pmesh(&["pattern", "push", catalog(pattern).to_str().context("a UTF-8 path")?]);
        anyhow::ensure!(push.code == 0, "push {pattern}: {}", push.stderr);
    }
    wait_until("every agent up", Duration::from_secs(60), || {
        mesh.agents().is_ok_and(|listed| listed.len() == agents.len() && listed.iter().all(|agent| agent["status"] == "up"))
    })?;

    let tag = std::process::id();
    let mesh = Arc::new(mesh);
    let list = services(&mesh, nfs, tag)?;
    let instances: Vec<String> = list.iter().map(|service| service.instance.clone()).collect();
    let (measured, failures) = measure(&mesh, list);
    for instance in &instances {
        pmesh_tests::docker::remove_instance(instance);
    }
    if !failures.is_empty() {
        bail!("a service did not come up:\n{}", failures.join("\n"));
    }

    println!("\n{:<64} {:>20}  TARGET", "MEASUREMENT", "MEASURED");
    for (name, times) in &measured {
        let label = format!("time to services: {name} (run finished / answering)");
        println!("{label:<64} {:>20}  -", format!("{} / {}", seconds(times.run_done), seconds(times.answered)));
    }
    let all = measured.iter().map(|(_, times)| Some(times.run_done?.max(times.answered?))).collect::<Option<Vec<f64>>>();
    let total = all.map(|all| all.into_iter().fold(0.0, f64::max));
    let label = format!("time to services: {} at once, all answering", patterns.join(", "));
    println!("{label:<64} {:>20}  < 30 s", seconds(total));
    if !nfs {
        println!(
            "\nNFS was NOT measured: this build does not know the pattern's `capabilities` field, so patterns/shared/nfs does not lint:\n{}",
            lint.stdout.trim()
        );
    }
    drop(agents);
    drop(master);
    Ok(())
}
