//! The small formats a pattern is made of: names, hostnames, addresses, checksums, image
//! references and memory sizes. Each check is a pure function of the text.

use std::net::IpAddr;

/// A DNS label (RFC 1123): 1 to 63 lowercase letters, digits and `-`, not starting or ending
/// with `-`. Pattern, artifact, image, step, network and volume names are labels, because they
/// end up in container names and labels.
pub fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// The Linux capabilities (`capabilities(7)`, kernel 5.9 and later: `CAP_CHOWN` = 0 to
/// `CAP_CHECKPOINT_RESTORE` = 40), in the kernel's order and without the `CAP_` prefix, as
/// patterns and `agent.toml` write them and Docker's `CapAdd` takes them.
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Why `name` is not a capability a pattern or an agent may name, or `None` when it is one.
/// `ALL` (Docker's every-capability shorthand) is refused: each one is asked for by name.
pub fn capability_problem(name: &str) -> Option<String> {
    if CAPABILITIES.contains(&name) {
        return None;
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Some(if bare == "ALL" {
        "`ALL` is not allowed: list each capability by name".to_owned()
    } else if CAPABILITIES.contains(&bare) {
        format!("write the capability as `{bare}`: upper case, without the `CAP_` prefix")
    } else {
        format!(
            "`{}` is not a Linux capability; expected a name such as `NET_ADMIN` or `SYS_ADMIN` (see capabilities(7))",
            super::diagnostic::excerpt(name)
        )
    })
}

/// A param name: a letter or `_`, then letters, digits and `_`, so templates can use it as a
/// variable (`{{ zone_name }}`).
pub fn is_identifier(text: &str) -> bool {
    let mut bytes = text.bytes();
    matches!(bytes.next(), Some(first) if first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// A DNS name: labels of letters, digits and `-` (1 to 63 characters each, not starting or
/// ending with `-`) joined by dots, at most 253 characters, with an optional final dot.
pub fn is_hostname(text: &str) -> bool {
    let name = text.strip_suffix('.').unwrap_or(text);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// An IPv4 or IPv6 address.
pub fn is_ip(text: &str) -> bool {
    text.parse::<IpAddr>().is_ok()
}

/// An address and a prefix length that fits it, such as `10.0.0.0/24` or `fd00::/64`.
pub fn is_cidr(text: &str) -> bool {
    let Some((address, prefix)) = text.split_once('/') else { return false };
    let Ok(address) = address.parse::<IpAddr>() else { return false };
    let max = if address.is_ipv4() { 32 } else { 128 };
    !prefix.is_empty() && prefix.bytes().all(|byte| byte.is_ascii_digit()) && prefix.parse::<u8>().is_ok_and(|len| len <= max)
}

/// 64 lowercase hex digits.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// An environment variable name.
pub fn is_env_name(text: &str) -> bool {
    is_identifier(text)
}

/// Why `text` is not a Docker image reference (`[registry[:port]/]path[:tag][@sha256:hex]`),
/// or `None` when it is one.
pub fn image_ref_problem(text: &str) -> Option<String> {
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (text, None),
    };
    if let Some(digest) = digest {
        let valid = digest.strip_prefix("sha256:").is_some_and(is_sha256);
        if !valid {
            return Some(format!("`{text}` has a malformed digest; expected `@sha256:` and 64 lowercase hex digits"));
        }
    }
    let last_slash = rest.rfind('/').map_or(0, |idx| idx + 1);
    let (name, tag) = match rest[last_slash..].split_once(':') {
        Some((_, tag)) => (&rest[..rest.len() - tag.len() - 1], Some(tag)),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte));
        if !valid {
            return Some(format!("`{text}` has a malformed tag `{tag}`"));
        }
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 && (components[0].contains(['.', ':']) || components[0] == "localhost") {
        let registry = components.remove(0);
        let (host, port) = registry.split_once(':').unwrap_or((registry, "0"));
        if !is_hostname(host) || port.parse::<u16>().is_err() {
            return Some(format!("`{text}` has a malformed registry `{registry}`"));
        }
    }
    let component_ok = |component: &str| {
        !component.is_empty()
            && component
                .split(['.', '_', '-'])
                .all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit()))
    };
    if components.iter().all(|component| component_ok(component)) {
        None
    } else {
        Some(format!("`{text}` is not an image reference; expected lowercase `name[:tag][@sha256:digest]`"))
    }
}

/// A memory size in bytes, from an integer or a number with a binary unit as Docker reads them
/// (`512m`, `2g`, `512Mi`, `1GiB`; `k`, `m`, `g` and `t` are powers of 1024).
pub fn parse_memory(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

/// Whether `text` is written as a memory size (digits and a known unit) too large for 64 bits,
/// so the message can say it is out of range rather than not a size.
pub fn memory_overflows(text: &str) -> bool {
    let text = text.trim();
    let split = text.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    !digits.is_empty() && parse_memory(text).is_none() && parse_memory(&format!("1{unit}")).is_some()
}

/// Why `path` may not name a file inside a pattern (absolute, `..`, empty parts), if it may not.
pub fn relative_path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        Some("is empty")
    } else if path.starts_with('/') || path.contains('\\') {
        Some("must be relative to the pattern directory, with `/` separators")
    } else if path.split('/').any(|part| part == "..") {
        Some("must stay inside the pattern directory (no `..`)")
    } else if path.split('/').any(|part| part.is_empty() || part == ".") {
        Some("must not have empty or `.` parts")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(function: fn(&str) -> bool, cases: &[(&str, bool)]) {
        for (input, expected) in cases {
            assert_eq!(function(input), *expected, "{input:?}");
        }
    }

    #[test]
    fn names() {
        check(is_dns_label, &[("dns", true), ("a-1", true), ("-a", false), ("A", false), ("", false), ("a_b", false)]);
        check(is_identifier, &[("zone", true), ("_x1", true), ("1x", false), ("a-b", false), ("", false)]);
    }

    #[test]
    fn addresses() {
        check(is_hostname, &[("lab.local", true), ("lab.local.", true), ("a..b", false), ("-a.b", false), (".", false)]);
        check(is_ip, &[("10.0.0.1", true), ("::1", true), ("300.1.1.1", false)]);
        check(is_cidr, &[("10.0.0.0/24", true), ("fd00::/64", true), ("10.0.0.0/33", false), ("10.0.0.0", false), ("10.0.0.0/", false)]);
    }

    #[test]
    fn image_refs() {
        let cases = [
            ("bind9", None),
            ("registry.lab:5000/tools/govc:v0.37", None),
            ("ubuntu@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", None),
            ("Ubuntu", Some("`Ubuntu` is not an image reference; expected lowercase `name[:tag][@sha256:digest]`")),
            ("ubuntu:", Some("`ubuntu:` has a malformed tag ``")),
            ("ubuntu@sha256:abc", Some("`ubuntu@sha256:abc` has a malformed digest; expected `@sha256:` and 64 lowercase hex digits")),
        ];
        for (input, expected) in cases {
            assert_eq!(image_ref_problem(input).as_deref(), expected, "{input}");
        }
    }

    #[test]
    fn memory() {
        let cases =
            [("512m", Some(512 << 20)), ("2Gi", Some(2 << 30)), ("1GiB", Some(1 << 30)), ("100", Some(100)), ("1x", None), ("m", None)];
        for (input, expected) in cases {
            assert_eq!(parse_memory(input), expected, "{input}");
        }
    }

    #[test]
    fn capabilities() {
        let distinct: std::collections::BTreeSet<&str> = CAPABILITIES.iter().copied().collect();
        assert_eq!(distinct.len(), 41);
        assert_eq!(capability_problem("SYS_ADMIN"), None);
        assert_eq!(capability_problem("CHECKPOINT_RESTORE"), None);
        assert_eq!(
            capability_problem("CAP_SYS_ADMIN").as_deref(),
            Some("write the capability as `SYS_ADMIN`: upper case, without the `CAP_` prefix")
        );
        assert_eq!(capability_problem("all").as_deref(), Some("`ALL` is not allowed: list each capability by name"));
        assert!(capability_problem("SYS_WIZARD").is_some_and(|problem| problem.starts_with("`SYS_WIZARD` is not a Linux capability")));
    }
}
