//! The host ports a plan would publish that something on this host already holds, so that
//! `pmesh run --plan` says "host port 7453/tcp is already taken" instead of `create` for a
//! step whose container Docker would then refuse to start.
//!
//! The test is the one Docker's port publishing meets: binding the address (`0.0.0.0` unless
//! the step names a host IP) and port here, and letting go at once. Only steps that would
//! create a container are checked: a container being replaced or left unchanged may hold its
//! own ports, and it frees them before its replacement starts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use crate::executor::plan::{Action, Plan, PortSpec, Protocol};
use crate::executor::preview::Planned;

/// What a plan blocked by a taken port says in place of `create`.
pub const BLOCKED: &str = "blocked";

/// Marks each planned `create` whose step publishes a port this host already holds as
/// [`BLOCKED`], naming the ports in its detail.
pub fn check(plan: &Plan, planned: &mut [Planned]) {
    for item in planned.iter_mut().filter(|item| item.kind == "step" && item.action == "create") {
        let Some(step) = plan.steps.iter().find(|step| step.name == item.name) else { continue };
        let (Action::Run(spec) | Action::Service(spec)) = &step.action else { continue };
        let taken: Vec<String> = spec.ports.iter().filter(|port| is_taken(port)).map(describe).collect();
        if !taken.is_empty() {
            let plural = if taken.len() == 1 { "port" } else { "ports" };
            item.action = BLOCKED;
            item.detail = format!("host {plural} {} already taken on this agent: the container could not start", taken.join(", "));
        }
    }
}

fn describe(port: &PortSpec) -> String {
    match &port.host_ip {
        Some(ip) => format!("{ip}:{}/{}", port.host_port, port.protocol.as_str()),
        None => format!("{}/{}", port.host_port, port.protocol.as_str()),
    }
}

/// Whether binding the port as Docker would fails because something holds it.
fn is_taken(port: &PortSpec) -> bool {
    let ip = port.host_ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let address = SocketAddr::new(ip, port.host_port);
    let bound = match port.protocol {
        Protocol::Tcp => TcpListener::bind(address).map(drop),
        Protocol::Udp => UdpSocket::bind(address).map(drop),
    };
    // Only "in use" counts: a host IP this host lacks, or a port below 1024 for an agent
    // without the privilege, is Docker's to judge.
    matches!(bound, Err(err) if err.kind() == std::io::ErrorKind::AddrInUse)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(host_port: u16, protocol: Protocol) -> PortSpec {
        PortSpec { container_port: 53, host_port, host_ip: Some("127.0.0.1".into()), protocol }
    }

    #[test]
    fn a_held_port_is_taken_and_a_free_one_is_not() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let held_port = held.local_addr().unwrap().port();
        assert!(is_taken(&port(held_port, Protocol::Tcp)));
        drop(held);
        assert!(!is_taken(&port(held_port, Protocol::Tcp)));
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(is_taken(&port(udp.local_addr().unwrap().port(), Protocol::Udp)));
        assert_eq!(describe(&port(53, Protocol::Udp)), "127.0.0.1:53/udp");
    }
}
