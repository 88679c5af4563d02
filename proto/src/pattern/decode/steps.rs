//! Decoding `steps`: the kind decides which fields a step accepts; references to images,
//! files, artifacts, params and other steps are checked where they are written.

use std::collections::BTreeMap;

use super::super::diagnostic::excerpt;
use super::super::formats;
use super::super::spec::{
    Action, Container, Exec, Healthcheck, Mount, MountSource, PortMapping, Probe, Protocol, Resources, Restart, Retries, Service, Step,
    StepKind, Wait,
};
use super::super::step::{DEFAULT_BACKOFF, DEFAULT_PROBE_INTERVAL, DNS_RECORD_TYPES};
use super::super::yaml::Node;
use super::{Decoder, Fields, Names, HTTP_PROBE_FIELDS};

/// The most CPUs a step may ask for.
const MAX_CPUS: f64 = 1024.0;
const RETRIES_FIELDS: [&str; 2] = ["attempts", "backoff"];
const MOUNT_FIELDS: [&str; 6] = ["file", "dir", "artifact", "volume", "target", "readonly"];
const PORT_FIELDS: [&str; 3] = ["container", "host", "protocol"];
const HEALTHCHECK_FIELDS: [&str; 5] = ["command", "interval", "timeout", "retries", "start_period"];
const RESOURCES_FIELDS: [&str; 2] = ["cpus", "memory"];
const PROBES: [&str; 4] = ["tcp", "http", "dns", "exec"];

/// Reads an optional field with `read`; `Some(default)` when absent.
fn optional<'d, T>(
    decoder: &mut Decoder<'d>,
    fields: &Fields<'_>,
    field: &str,
    default: T,
    read: impl FnOnce(&mut Decoder<'d>, &Node) -> Option<T>,
) -> Option<T> {
    match fields.get(field) {
        Some((_, node)) => read(decoder, node),
        None => Some(default),
    }
}

impl Decoder<'_> {
    pub(super) fn steps(&mut self, field: (&Node, &Node)) -> Option<BTreeMap<String, Step>> {
        let (_, node) = field;
        if node.as_map().is_some_and(<[_]>::is_empty) {
            self.report.error(node.mark, "a pattern needs at least one step");
            return None;
        }
        self.map_of(Some(field), Names::Label("step name"), Self::step)
    }

    fn step(&mut self, name: &str, key: &Node, node: &Node) -> Option<Step> {
        let kind_node = node.as_map().and_then(|entries| {
            entries.iter().find(|(field, value)| field.as_str() == Some("kind") && !value.is_null()).map(|(_, value)| value)
        });
        let Some(kind_node) = kind_node else {
            if node.as_map().is_some() {
                self.report.error(key.mark, format!("step `{name}` is missing field `kind`"));
            } else {
                self.report.error(node.mark, format!("expected a mapping, found {}", node.describe()));
            }
            return None;
        };
        let kind_name = self.string(kind_node)?;
        let Some(kind) = StepKind::from_name(&kind_name) else {
            return self.one_of(kind_node, &kind_name, "step kind", &StepKind::ALL);
        };
        let fields = self.fields(node, key.mark, &kind.fields(), &format!("{kind_name} step `{name}`"))?;
        let needs = optional(self, &fields, "needs", Vec::new(), |decoder, node| decoder.needs(name, kind, node));
        let timeout = optional(self, &fields, "timeout", None, |decoder, node| decoder.duration(node, false).map(Some));
        let retries = optional(self, &fields, "retries", None, |decoder, node| decoder.retries(node).map(Some));
        let repeat = fields.get("repeat").map(|(key, node)| self.repeat(key, node));
        self.repeating = repeat.is_some();
        let action = match kind {
            StepKind::Run => self.container(&fields).map(Action::Run),
            StepKind::Teardown => self.container(&fields).map(Action::Teardown),
            StepKind::Service => self.service(&fields).map(Action::Service),
            StepKind::Exec => self.exec(name, &fields).map(Action::Exec),
            StepKind::Wait => self.wait(name, &fields).map(Action::Wait),
        };
        self.repeating = false;
        let repeat = repeat.map_or(Some(None), |repeat| repeat.map(Some));
        Some(Step { needs: needs?, timeout: timeout?, retries: retries?, repeat: repeat?, action: action? })
    }

    fn needs(&mut self, name: &str, kind: StepKind, node: &Node) -> Option<Vec<String>> {
        let items = self.sequence(node)?;
        let mut needs = Some(Vec::new());
        for item in items {
            let Some(needed) = self.string(item) else {
                needs = None;
                continue;
            };
            let problem = match self.scope.steps.get(&needed) {
                None => Some(format!("`{needed}` is not a step of the pattern")),
                Some(Some(StepKind::Teardown)) if kind != StepKind::Teardown => {
                    Some(format!("`{needed}` is a teardown step, which runs only at destroy; only teardown steps may need it"))
                }
                Some(Some(other)) if kind == StepKind::Teardown && *other != StepKind::Teardown => {
                    Some(format!("teardown step `{name}` may only need other teardown steps, not the {} step `{needed}`", other.name()))
                }
                Some(_) => None,
            };
            match problem {
                Some(problem) => {
                    self.report.error(item.mark, problem);
                    needs = None;
                }
                None => {
                    self.edges.push((name.to_owned(), needed.clone(), item.mark));
                    if let Some(list) = needs.as_mut() {
                        list.push(needed);
                    }
                }
            }
        }
        needs
    }

    fn retries(&mut self, node: &Node) -> Option<Retries> {
        let fields = self.fields(node, node.mark, &RETRIES_FIELDS, "retries")?;
        let attempts = fields.required(self, "attempts").and_then(|(_, node)| self.integer(node, 1, 100));
        let backoff = optional(self, &fields, "backoff", DEFAULT_BACKOFF, |decoder, node| decoder.duration(node, true));
        Some(Retries { attempts: attempts? as u32, backoff: backoff? })
    }

    fn container(&mut self, fields: &Fields<'_>) -> Option<Container> {
        let image = fields.required(self, "image").and_then(|(_, node)| self.reference(node, "image"));
        let command = optional(self, fields, "command", Vec::new(), |decoder, node| decoder.string_list(node, false));
        let args = optional(self, fields, "args", Vec::new(), |decoder, node| decoder.string_list(node, false));
        let env = optional(self, fields, "env", BTreeMap::new(), Self::env);
        let mounts = optional(self, fields, "mounts", Vec::new(), Self::mounts);
        let networks = optional(self, fields, "networks", Vec::new(), |decoder, node| {
            let items = decoder.sequence(node)?;
            items.iter().map(|item| decoder.label(item, "network name")).collect::<Vec<_>>().into_iter().collect()
        });
        let resources = optional(self, fields, "resources", Resources::default(), Self::resources);
        let progress = optional(self, fields, "progress", Vec::new(), Self::progress);
        let capabilities = optional(self, fields, "capabilities", Vec::new(), Self::capabilities);
        Some(Container {
            image: image?,
            command: command?,
            args: args?,
            env: env?,
            mounts: mounts?,
            networks: networks?,
            resources: resources?,
            progress: progress?,
            capabilities: capabilities?,
        })
    }

    /// Linux capability names, each known and listed once.
    fn capabilities(&mut self, node: &Node) -> Option<Vec<String>> {
        let items = self.sequence(node)?;
        let (mut names, mut valid) = (Vec::new(), true);
        for item in items {
            let Some(name) = self.string(item) else {
                valid = false;
                continue;
            };
            let problem = formats::capability_problem(&name)
                .or_else(|| names.contains(&name).then(|| format!("capability `{name}` is listed twice")));
            if let Some(problem) = problem {
                self.report.error(item.mark, problem);
                valid = false;
            }
            names.push(name);
        }
        valid.then_some(names)
    }

    fn env(&mut self, node: &Node) -> Option<BTreeMap<String, String>> {
        let entries = self.mapping(node)?;
        let mut env = Some(BTreeMap::new());
        for (key, value) in entries {
            let name = self.string(key).filter(|name| {
                let valid = formats::is_env_name(name);
                if !valid {
                    self.report.error(key.mark, format!("`{name}` is not a valid environment variable name"));
                }
                valid
            });
            let value = if value.as_map().is_some() || value.as_seq().is_some() {
                self.report.error(value.mark, format!("expected a string, found {}", value.describe()));
                None
            } else {
                self.text(value, true)
            };
            match (name, value, env.as_mut()) {
                (Some(name), Some(value), Some(map)) => {
                    map.insert(name, value);
                }
                _ => env = None,
            }
        }
        env
    }

    fn progress(&mut self, node: &Node) -> Option<Vec<String>> {
        let items = self.sequence(node)?;
        items.iter().map(|item| self.regex(item, true)).collect::<Vec<_>>().into_iter().collect()
    }

    fn mounts(&mut self, node: &Node) -> Option<Vec<Mount>> {
        let items = self.sequence(node)?;
        items.iter().map(|item| self.mount(item)).collect::<Vec<_>>().into_iter().collect()
    }

    fn mount(&mut self, node: &Node) -> Option<Mount> {
        let fields = self.fields(node, node.mark, &MOUNT_FIELDS, "mount")?;
        let sources: Vec<(&Node, &Node)> = ["file", "dir", "artifact", "volume"].iter().filter_map(|field| fields.get(field)).collect();
        let source = match sources.as_slice() {
            [] => {
                self.report.error(node.mark, "a mount needs one of `file`, `dir`, `artifact` or `volume`");
                None
            }
            [(key, value)] => match key.as_str() {
                Some("file") => self.reference(value, "file").map(MountSource::File),
                Some("dir") => self.dir_ref(value).map(MountSource::Dir),
                Some("artifact") => self.reference(value, "artifact").map(MountSource::Artifact),
                _ => self.label(value, "volume name").map(MountSource::Volume),
            },
            [_, (second, _), ..] => {
                self.report.error(second.mark, "a mount takes one of `file`, `dir`, `artifact` or `volume`, not several");
                None
            }
        };
        let target = fields.required(self, "target").and_then(|(_, node)| {
            let text = self.string(node)?;
            if text.starts_with('/') {
                return Some(text);
            }
            self.report.error(node.mark, format!("mount target `{text}` must be an absolute path in the container"));
            None
        });
        let readonly = optional(self, &fields, "readonly", false, Self::boolean);
        Some(Mount { source: source?, target: target?, readonly: readonly? })
    }

    fn resources(&mut self, node: &Node) -> Option<Resources> {
        let fields = self.fields(node, node.mark, &RESOURCES_FIELDS, "resources")?;
        let cpus = optional(self, &fields, "cpus", None, |decoder, node| match node.as_float() {
            // Docker counts in billionths of a CPU in an i64: far more than any host has.
            Some(cpus) if cpus > MAX_CPUS || cpus.is_nan() => {
                decoder.report.error(node.mark, format!("`cpus` is out of range: at most {MAX_CPUS}"));
                None
            }
            Some(cpus) if cpus > 0.0 => Some(Some(cpus)),
            _ => {
                decoder.report.error(node.mark, "`cpus` must be a number above 0, such as 0.5 or 2");
                None
            }
        });
        let memory = optional(self, &fields, "memory", None, |decoder, node| {
            let text = node.as_str().unwrap_or_default();
            match formats::parse_memory(text).filter(|bytes| *bytes > 0) {
                // Docker takes the limit as an i64.
                Some(bytes) if bytes <= i64::MAX as u64 => Some(Some(bytes)),
                Some(_) => {
                    decoder.report.error(node.mark, format!("`{}` is out of range: at most 8388607t", excerpt(text)));
                    None
                }
                None if formats::memory_overflows(text) => {
                    decoder.report.error(node.mark, format!("`{}` is out of range: at most 8388607t", excerpt(text)));
                    None
                }
                None => {
                    decoder.report.error(node.mark, format!("`{}` is not a memory size such as `512m` or `2g`", excerpt(text)));
                    None
                }
            }
        });
        Some(Resources { cpus: cpus?, memory: memory? })
    }

    fn service(&mut self, fields: &Fields<'_>) -> Option<Service> {
        let container = self.container(fields);
        let ports = optional(self, fields, "ports", Vec::new(), |decoder, node| {
            let items = decoder.sequence(node)?;
            items.iter().map(|item| decoder.port_mapping(item)).collect::<Vec<_>>().into_iter().collect()
        });
        let restart = optional(self, fields, "restart", Restart::default(), |decoder, node| {
            let text = decoder.string(node)?;
            match text.as_str() {
                "no" => Some(Restart::No),
                "on-failure" => Some(Restart::OnFailure),
                "always" => Some(Restart::Always),
                "unless-stopped" => Some(Restart::UnlessStopped),
                _ => decoder.one_of(node, &text, "restart policy", &Restart::ALL),
            }
        });
        let healthcheck = optional(self, fields, "healthcheck", None, |decoder, node| decoder.healthcheck(node).map(Some));
        let reload = optional(self, fields, "reload", Vec::new(), Self::command);
        if let (Some((key, _)), Some(container)) = (fields.get("reload"), &container) {
            if !container.mounts.iter().any(|mount| matches!(mount.source, MountSource::Dir(_))) {
                self.report
                    .error(key.mark, "`reload` runs when only the files of `dir` mounts changed, and this service has no `dir` mount");
            }
        }
        Some(Service { container: container?, ports: ports?, restart: restart?, healthcheck: healthcheck?, reload: reload? })
    }

    /// A directory of the work directory for a `dir` mount: some file's `dest` is under it.
    fn dir_ref(&mut self, node: &Node) -> Option<String> {
        let name = self.string(node)?;
        let prefix = format!("{}/", name.trim_end_matches('/'));
        if self.scope.file_dests.iter().any(|dest| dest.starts_with(&prefix)) {
            return Some(name.trim_end_matches('/').to_owned());
        }
        self.report.error(node.mark, format!("no file of the pattern has a `dest` under `{}`", excerpt(&prefix)));
        None
    }

    fn port_mapping(&mut self, node: &Node) -> Option<PortMapping> {
        let fields = self.fields(node, node.mark, &PORT_FIELDS, "port mapping")?;
        let container = fields.required(self, "container").and_then(|(_, node)| self.integer(node, 1, 65535));
        let host = optional(self, &fields, "host", None, |decoder, node| decoder.port_value(node).map(Some));
        let protocol = optional(self, &fields, "protocol", Protocol::Tcp, |decoder, node| {
            let text = decoder.string(node)?;
            match text.as_str() {
                "tcp" => Some(Protocol::Tcp),
                "udp" => Some(Protocol::Udp),
                _ => decoder.one_of(node, &text, "protocol", &["tcp", "udp"]),
            }
        });
        Some(PortMapping { container: container? as u16, host: host?, protocol: protocol? })
    }

    fn healthcheck(&mut self, node: &Node) -> Option<Healthcheck> {
        let fields = self.fields(node, node.mark, &HEALTHCHECK_FIELDS, "healthcheck")?;
        let command = fields.required(self, "command").and_then(|(_, node)| self.command(node));
        let interval = optional(self, &fields, "interval", Healthcheck::default_interval(), |decoder, node| decoder.duration(node, false));
        let timeout = optional(self, &fields, "timeout", Healthcheck::default_timeout(), |decoder, node| decoder.duration(node, false));
        let retries =
            optional(self, &fields, "retries", i64::from(Healthcheck::default_retries()), |decoder, node| decoder.integer(node, 1, 1000));
        let start_period = optional(self, &fields, "start_period", Default::default(), |decoder, node| decoder.duration(node, true));
        Some(Healthcheck {
            command: command?,
            interval: interval?,
            timeout: timeout?,
            retries: retries? as u32,
            start_period: start_period?,
        })
    }

    /// A non-empty command line; secrets may not appear on it.
    fn command(&mut self, node: &Node) -> Option<Vec<String>> {
        let command = self.string_list(node, false)?;
        if command.is_empty() {
            self.report.error(node.mark, "the command needs at least one word");
            return None;
        }
        Some(command)
    }

    fn exec(&mut self, name: &str, fields: &Fields<'_>) -> Option<Exec> {
        let service = fields.required(self, "service").and_then(|(_, node)| {
            let service = self.service_ref(node)?;
            self.runs_in.push((name.to_owned(), service.clone(), node.mark));
            Some(service)
        });
        let command = fields.required(self, "command").and_then(|(_, node)| self.command(node));
        let env = optional(self, fields, "env", BTreeMap::new(), Self::env);
        let progress = optional(self, fields, "progress", Vec::new(), Self::progress);
        Some(Exec { service: service?, command: command?, env: env?, progress: progress? })
    }

    fn wait(&mut self, name: &str, fields: &Fields<'_>) -> Option<Wait> {
        let probe = fields.required(self, "probe").and_then(|(key, node)| self.probe(name, key, node));
        let deadline = fields.required(self, "deadline").and_then(|(_, node)| self.duration(node, false));
        let interval = optional(self, fields, "interval", DEFAULT_PROBE_INTERVAL, |decoder, node| decoder.duration(node, false));
        Some(Wait { probe: probe?, deadline: deadline?, interval: interval? })
    }

    fn probe(&mut self, name: &str, key: &Node, node: &Node) -> Option<Probe> {
        let fields = self.fields(node, key.mark, &PROBES, "probe")?;
        let present: Vec<(&Node, &Node)> = PROBES.iter().filter_map(|probe| fields.get(probe)).collect();
        let (probe_key, probe_node) = match present.as_slice() {
            [one] => *one,
            [] => {
                self.report.error(key.mark, "a probe needs one of `tcp`, `http`, `dns` or `exec`");
                return None;
            }
            [_, (second, _), ..] => {
                self.report.error(second.mark, "a probe takes one of `tcp`, `http`, `dns` or `exec`, not several");
                return None;
            }
        };
        let probe_name = probe_key.as_str().unwrap_or_default();
        let allowed: &[&str] = match probe_name {
            "tcp" => &["host", "port"],
            "http" => &HTTP_PROBE_FIELDS,
            "dns" => &["server", "port", "name", "type"],
            _ => &["service", "command"],
        };
        let fields = self.fields(probe_node, probe_key.mark, allowed, &format!("{probe_name} probe"))?;
        match probe_name {
            "tcp" => {
                let host = fields.required(self, "host").and_then(|(_, node)| self.text(node, false));
                let port = fields.required(self, "port").and_then(|(_, node)| self.port_value(node));
                Some(Probe::Tcp { host: host?, port: port? })
            }
            "http" => self.http_probe(probe_node, &fields),
            "dns" => self.dns_probe(&fields),
            _ => {
                let service = fields.required(self, "service").and_then(|(_, node)| {
                    let service = self.service_ref(node)?;
                    self.runs_in.push((name.to_owned(), service.clone(), node.mark));
                    Some(service)
                });
                let command = fields.required(self, "command").and_then(|(_, node)| self.command(node));
                Some(Probe::Exec { service: service?, command: command? })
            }
        }
    }

    fn dns_probe(&mut self, fields: &Fields<'_>) -> Option<Probe> {
        let server = optional(self, fields, "server", "127.0.0.1".to_owned(), |decoder, node| decoder.text(node, false));
        let port = optional(self, fields, "port", super::super::spec::PortValue::Number(53), Self::port_value);
        let lookup = fields.required(self, "name").and_then(|(_, node)| {
            let text = self.text(node, false)?;
            if text.contains("${") || formats::is_hostname(&text) {
                return Some(text);
            }
            self.report.error(node.mark, format!("`{text}` is not a DNS name"));
            None
        });
        let record_type = optional(self, fields, "type", "A".to_owned(), |decoder, node| {
            let text = decoder.string(node)?;
            if DNS_RECORD_TYPES.contains(&text.as_str()) {
                return Some(text);
            }
            decoder.one_of(node, &text, "record type", &DNS_RECORD_TYPES)
        });
        Some(Probe::Dns { server: server?, port: port?, name: lookup?, record_type: record_type? })
    }
}
