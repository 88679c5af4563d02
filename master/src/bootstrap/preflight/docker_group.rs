//! The group through which the agent's unit reaches the Docker socket.
//!
//! The unit names it (`SupplementaryGroups=docker`), because its id differs between hosts. A
//! host whose socket exists without a docker group (a socket bind-mounted into a container, an
//! engine installed by hand) gets the group made with the socket's own gid: the group that owns
//! the socket is then the one the unit names. When that cannot work, the problem says how to
//! fix it.

use super::{docker_state, DockerState, Facts};

/// The socket the probe looks at.
const SOCKET: &str = "/var/run/docker.sock";

/// What the install does about the docker group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerGroup {
    /// The group exists and owns the socket (or the socket is not there to say otherwise).
    Present,
    /// Docker is installed by bootstrap, whose package makes the group.
    ComesWithDocker,
    /// No group, but the socket's group id is known: make `docker` with that gid.
    Create { gid: u32 },
    /// Bootstrap cannot make the agent reach the socket; the sentence says how to fix it.
    Problem(String),
}

/// The docker group's state from the facts (`docker_group`, `docker_group_gid`,
/// `docker_socket_gid`).
pub fn docker_group(facts: &Facts) -> DockerGroup {
    if docker_state(facts) == DockerState::Missing {
        return DockerGroup::ComesWithDocker;
    }
    let socket_gid = facts.get("docker_socket_gid").and_then(|gid| gid.parse::<u32>().ok());
    let group_gid = facts.get("docker_group_gid").and_then(|gid| gid.parse::<u32>().ok());
    match (facts.yes("docker_group"), socket_gid) {
        (true, Some(socket)) if socket != 0 && group_gid.is_some_and(|group| group != socket) => DockerGroup::Problem(format!(
            "{SOCKET} belongs to gid {socket}, not to the docker group (gid {}); the agent's unit reaches the socket through \
             the docker group: give the socket to it (`chgrp docker {SOCKET}`, and `\"group\": \"docker\"` in \
             /etc/docker/daemon.json so it stays), then run bootstrap again",
            group_gid.unwrap_or_default()
        )),
        (true, _) => DockerGroup::Present,
        (false, Some(0)) => DockerGroup::Problem(format!(
            "the docker group is missing and {SOCKET} belongs to root's group, which the agent never joins: create the \
             group and restart Docker so it gives the socket to it (`groupadd docker && systemctl restart docker`, or \
             `chgrp docker {SOCKET}` for an engine started another way), then run bootstrap again"
        )),
        (false, Some(gid)) => DockerGroup::Create { gid },
        (false, None) => DockerGroup::Problem(format!(
            "the docker group is missing and {SOCKET} is not there to take its group from; the agent's unit reaches the \
             socket through that group (SupplementaryGroups=docker): start Docker, or create the group (`groupadd docker`) \
             and restart Docker, then run bootstrap again"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(text: &str) -> Facts {
        Facts::parse(&format!("docker_unit=yes\ndocker_active=active\n{text}"))
    }

    #[test]
    fn the_group_that_owns_the_socket_is_used_or_the_fix_is_named() {
        assert_eq!(
            docker_group(&facts("docker_group=yes\ndocker_group_gid=105\ndocker_socket=yes\ndocker_socket_gid=105")),
            DockerGroup::Present
        );
        assert_eq!(docker_group(&facts("docker_socket=yes\ndocker_socket_gid=998")), DockerGroup::Create { gid: 998 });
        assert_eq!(docker_group(&Facts::parse("")), DockerGroup::ComesWithDocker);
        let problem = |text: &str| match docker_group(&facts(text)) {
            DockerGroup::Problem(sentence) => sentence,
            other => panic!("{text:?}: {other:?}"),
        };
        assert!(problem("docker_socket=yes\ndocker_socket_gid=0").contains("belongs to root's group"));
        assert!(problem("").starts_with("the docker group is missing and /var/run/docker.sock is not there"));
        let other_group = problem("docker_group=yes\ndocker_group_gid=105\ndocker_socket=yes\ndocker_socket_gid=998");
        assert!(other_group.contains("belongs to gid 998, not to the docker group (gid 105)"), "{other_group}");
        // A root-owned socket with a docker group: dockerd gives it to the group when it starts.
        assert_eq!(
            docker_group(&facts("docker_group=yes\ndocker_group_gid=105\ndocker_socket=yes\ndocker_socket_gid=0")),
            DockerGroup::Present
        );
    }
}
