//! The one place YAML becomes a [`Pattern`]: every field is read here, every problem is
//! reported with the line and column of the key or value at fault, and decoding goes on after
//! a problem so that lint lists them all.
//!
//! Names are collected before they are used, so references (to params, artifacts, images,
//! files and steps) are checked where they are written. The step graph is checked last.

mod fields;
mod https;
mod images;
mod outputs;
mod params;
mod repeat;
mod steps;

use std::collections::{BTreeMap, BTreeSet};

use super::diagnostic::{Mark, Report};
use super::formats;
use super::spec::{Artifact, Category, FileSpec, Metadata, ParamType, Pattern, StepKind, API_VERSION, KIND};
use super::template;
use super::yaml::Node;
pub(crate) use fields::Fields;
pub(crate) use https::HTTP_PROBE_FIELDS;

pub(crate) const TOP_FIELDS: [&str; 9] = ["apiVersion", "kind", "metadata", "params", "artifacts", "images", "files", "steps", "outputs"];
const METADATA_FIELDS: [&str; 4] = ["name", "version", "description", "category"];
const ARTIFACT_FIELDS: [&str; 5] = ["url", "urls", "sha256", "size", "auth"];
const FILE_FIELDS: [&str; 3] = ["path", "template", "dest"];

/// How the names of a mapping's entries are checked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Names {
    /// DNS labels; the text names them in messages ("step name").
    Label(&'static str),
    /// Identifiers (param names).
    Identifier,
    /// Identifiers naming outputs.
    OutputName,
}

/// What a param offers to the places that use it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParamInfo {
    /// `None` when the param itself is invalid (already reported): uses of it are not checked.
    pub kind: Option<ParamType>,
    /// Required, or has a default: a run always has a value for it.
    pub always_set: bool,
}

/// The names declared in the pattern, for reference checks.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    pub params: BTreeMap<String, ParamInfo>,
    pub artifacts: BTreeSet<String>,
    pub images: BTreeSet<String>,
    pub file_dests: BTreeSet<String>,
    /// Every step name, with its kind when that could be read.
    pub steps: BTreeMap<String, Option<StepKind>>,
}

/// The decoder of one `pattern.yaml`.
pub(crate) struct Decoder<'a> {
    pub report: &'a mut Report,
    pub files: &'a BTreeMap<String, Vec<u8>>,
    pub scope: Scope,
    /// `needs` edges that name an existing step: (from, to, where the reference is).
    pub edges: Vec<(String, String, Mark)>,
    /// Steps that must run after another one (exec and exec probes in a service): (step,
    /// service, where the reference is).
    pub runs_in: Vec<(String, String, Mark)>,
    /// Decoding a repeated step: `${item}` and `${index}` are placeholders.
    pub repeating: bool,
}

/// Decodes a pattern; `None` when it has a problem (all of them are in `report`).
pub(crate) fn decode(root: &Node, files: &BTreeMap<String, Vec<u8>>, report: &mut Report) -> Option<Pattern> {
    let mut decoder = Decoder { report, files, scope: Scope::default(), edges: Vec::new(), runs_in: Vec::new(), repeating: false };
    let pattern = decoder.pattern(root);
    for (mark, problem) in super::graph::check(&decoder.edges, &decoder.runs_in) {
        decoder.report.error(mark, problem);
    }
    if decoder.report.is_clean() {
        pattern
    } else {
        None
    }
}

impl Decoder<'_> {
    fn pattern(&mut self, root: &Node) -> Option<Pattern> {
        if root.as_map().is_none() {
            let found = root.describe();
            self.report.error(root.mark, format!("expected a mapping with `apiVersion`, `kind`, `metadata` and `steps`, found {found}"));
            return None;
        }
        let top = self.fields(root, Mark::START, &TOP_FIELDS, "the pattern")?;
        let api_version = self.constant(&top, "apiVersion", API_VERSION);
        let kind = self.constant(&top, "kind", KIND);
        let metadata = top.required(self, "metadata").and_then(|(key, node)| self.metadata(key, node));
        let params = self.map_of(top.get("params"), Names::Identifier, Self::param);
        self.collect_names(&top);
        let artifacts = self.map_of(top.get("artifacts"), Names::Label("artifact name"), Self::artifact);
        let images = self.map_of(top.get("images"), Names::Label("image name"), Self::image);
        let files = match top.get("files") {
            Some((_, node)) => self.files(node),
            None => Some(Vec::new()),
        };
        let steps = top.required(self, "steps").and_then(|field| self.steps(field));
        let outputs = self.outputs(top.get("outputs"));
        Some(Pattern {
            api_version: api_version?,
            kind: kind?,
            metadata: metadata?,
            params: params?,
            artifacts: artifacts?,
            images: images?,
            files: files?,
            steps: steps?,
            outputs: outputs?,
        })
    }

    fn constant(&mut self, top: &Fields<'_>, field: &str, expected: &str) -> Option<String> {
        let (_, node) = top.required(self, field)?;
        let text = self.string(node)?;
        if text != expected {
            self.report.error(node.mark, format!("`{field}` must be `{expected}`, found `{text}`"));
            return None;
        }
        Some(text)
    }

    fn metadata(&mut self, key: &Node, node: &Node) -> Option<Metadata> {
        let fields = self.fields(node, key.mark, &METADATA_FIELDS, "metadata")?;
        let name = fields.required(self, "name").and_then(|(_, node)| self.label(node, "pattern name"));
        let version = fields.required(self, "version").and_then(|(_, node)| {
            let text = self.string(node)?;
            match semver::Version::parse(&text) {
                Ok(version) => Some(version),
                Err(err) => {
                    self.report.error(node.mark, format!("`{text}` is not a semantic version such as 1.0.0: {err}"));
                    None
                }
            }
        });
        let description = match fields.get("description") {
            Some((_, node)) => self.string(node),
            None => Some(String::new()),
        };
        let category = fields.required(self, "category").and_then(|(_, node)| {
            let text = self.string(node)?;
            let category = match text.as_str() {
                "basic-tool" => Category::BasicTool,
                "shared-service" => Category::SharedService,
                "workload-domain" => Category::WorkloadDomain,
                _ => return self.one_of(node, &text, "category", &Category::ALL),
            };
            Some(category)
        });
        Some(Metadata { name: name?, version: version?, description: description?, category: category? })
    }

    /// Gathers the names of artifacts, images and steps (with their kinds) before anything
    /// that refers to them is decoded.
    fn collect_names(&mut self, top: &Fields<'_>) {
        let keys = |field: &str| -> Vec<String> {
            let entries = top.get(field).and_then(|(_, node)| node.as_map()).unwrap_or_default();
            entries.iter().filter_map(|(key, _)| key.as_str().map(str::to_owned)).collect()
        };
        self.scope.artifacts = keys("artifacts").into_iter().collect();
        self.scope.images = keys("images").into_iter().collect();
        let steps = top.get("steps").and_then(|(_, node)| node.as_map()).unwrap_or_default();
        for (key, step) in steps {
            let Some(name) = key.as_str() else { continue };
            let kind = step
                .as_map()
                .and_then(|entries| entries.iter().find(|(field, _)| field.as_str() == Some("kind")))
                .and_then(|(_, kind)| kind.as_str())
                .and_then(StepKind::from_name);
            self.scope.steps.insert(name.to_owned(), kind);
        }
        if let Some((_, files)) = top.get("files") {
            for file in files.as_seq().unwrap_or_default() {
                let field = |name: &str| {
                    file.as_map()
                        .and_then(|entries| entries.iter().find(|(key, _)| key.as_str() == Some(name)))
                        .and_then(|(_, value)| value.as_str())
                };
                if let Some(dest) = field("dest").or_else(|| field("path")) {
                    self.scope.file_dests.insert(dest.to_owned());
                }
            }
        }
    }

    /// Decodes an optional mapping of named entries (params, artifacts, images, steps), going
    /// on after a bad entry so that every one is checked; `None` when any is bad.
    pub(super) fn map_of<T>(
        &mut self,
        field: Option<(&Node, &Node)>,
        names: Names,
        decode: fn(&mut Self, &str, &Node, &Node) -> Option<T>,
    ) -> Option<BTreeMap<String, T>> {
        let Some((_, node)) = field else { return Some(BTreeMap::new()) };
        let entries = self.mapping(node)?;
        let mut decoded = Some(BTreeMap::new());
        for (key, value) in entries {
            let name = match names {
                Names::Label(what) => self.label(key, what),
                Names::Identifier => self.identifier(key),
                Names::OutputName => self.output_name(key),
            };
            let entry = name.as_deref().and_then(|name| decode(self, name, key, value));
            match (name, entry, decoded.as_mut()) {
                (Some(name), Some(entry), Some(map)) => {
                    map.insert(name, entry);
                }
                _ => decoded = None,
            }
        }
        decoded
    }

    fn artifact(&mut self, name: &str, key: &Node, node: &Node) -> Option<Artifact> {
        let fields = self.fields(node, key.mark, &ARTIFACT_FIELDS, &format!("artifact `{name}`"))?;
        let urls = match (fields.get("url"), fields.get("urls")) {
            (Some((_, url)), None) => self.url(url).map(|url| vec![url]),
            (None, Some((_, urls))) => {
                let items = self.sequence(urls)?;
                if items.is_empty() {
                    self.report.error(urls.mark, "`urls` needs at least one URL");
                }
                items.iter().map(|item| self.url(item)).collect::<Option<Vec<_>>>()
            }
            (Some(_), Some((urls_key, _))) => {
                self.report.error(urls_key.mark, "give `url` or `urls`, not both");
                None
            }
            (None, None) => {
                self.report.error(key.mark, format!("artifact `{name}` is missing field `url`"));
                None
            }
        };
        let sha256 = fields.required(self, "sha256").and_then(|(_, node)| {
            let text = self.string(node)?;
            if formats::is_sha256(&text) {
                return Some(text);
            }
            self.report.error(node.mark, format!("`{text}` is not a sha256 checksum (64 lowercase hex digits)"));
            None
        });
        let size = fields.required(self, "size").and_then(|(_, node)| self.integer(node, 0, i64::MAX)).map(|size| size as u64);
        let auth = match fields.get("auth") {
            None => Some(None),
            Some((_, node)) => self.param_ref(node, &[ParamType::Secret], "auth").map(Some),
        };
        Some(Artifact { urls: urls?, sha256: sha256?, size: size?, auth: auth? })
    }

    /// An artifact URL; it may hold a secret (a download token) in its query string, which
    /// the agent's fetcher never logs (it names a URL without query or password) and events
    /// redact. In the path it would reach the agent's log, so it is refused there.
    fn url(&mut self, node: &Node) -> Option<String> {
        let text = self.text(node, true)?;
        if !(text.starts_with("https://") || text.starts_with("http://") || text.starts_with("${")) {
            self.report.error(node.mark, format!("`{text}` is not an http:// or https:// URL"));
            return None;
        }
        let query_at = text.find('?').unwrap_or(text.len());
        let secrets = self.scope.params.iter().filter(|(_, info)| info.kind == Some(ParamType::Secret));
        for (name, _) in secrets {
            if text[..query_at].contains(&format!("${{{name}}}")) {
                self.report.error(
                    node.mark,
                    format!("secret param `{name}` may only be in a URL's query string (after `?`), which is never logged"),
                );
                return None;
            }
        }
        Some(text)
    }

    fn files(&mut self, node: &Node) -> Option<Vec<FileSpec>> {
        let items = self.sequence(node)?;
        let mut specs = Some(Vec::new());
        let mut dests: BTreeMap<String, usize> = BTreeMap::new();
        for item in items {
            let spec = self.file(item, &mut dests);
            match (spec, specs.as_mut()) {
                (Some(spec), Some(list)) => list.push(spec),
                _ => specs = None,
            }
        }
        specs
    }

    fn file(&mut self, node: &Node, dests: &mut BTreeMap<String, usize>) -> Option<FileSpec> {
        let fields = self.fields(node, node.mark, &FILE_FIELDS, "file")?;
        let (_, path_node) = fields.required(self, "path")?;
        let path = self.path(path_node, false)?;
        let is_template = match fields.get("template") {
            Some((_, node)) => self.boolean(node)?,
            None => false,
        };
        let dest = match fields.get("dest") {
            Some((_, node)) => Some(self.path(node, false)?),
            None => None,
        };
        let dest_mark = fields.get("dest").map_or(path_node.mark, |(_, node)| node.mark);
        let effective = dest.clone().unwrap_or_else(|| path.clone());
        if let Some(line) = dests.insert(effective.clone(), dest_mark.line) {
            self.report.error(dest_mark, format!("two files have the dest `{effective}` (the other at line {line})"));
        }
        let Some(content) = self.files.get(&path) else {
            self.report.error(path_node.mark, format!("`{path}` is not a file of the pattern"));
            return None;
        };
        if is_template && content.len() > super::yaml::MAX_INPUT_BYTES {
            let limit = super::yaml::MAX_INPUT_BYTES;
            self.report.error(path_node.mark, format!("template `{path}` is {} bytes; at most {limit} are accepted", content.len()));
        } else if is_template {
            match std::str::from_utf8(content) {
                Ok(text) => {
                    let params: BTreeSet<String> = self.scope.params.keys().cloned().collect();
                    for diagnostic in template::check(&path, text, &params) {
                        self.report.push(diagnostic);
                    }
                }
                Err(_) => self.report.error(path_node.mark, format!("template `{path}` is not UTF-8 text")),
            }
        }
        Some(FileSpec { path, template: is_template, dest })
    }

    /// A path inside the pattern directory (`.` allowed for build contexts).
    pub(super) fn path(&mut self, node: &Node, allow_dot: bool) -> Option<String> {
        let text = self.string(node)?;
        if allow_dot && text == "." {
            return Some(text);
        }
        match formats::relative_path_problem(&text) {
            Some(problem) => {
                self.report.error(node.mark, format!("path `{text}` {problem}"));
                None
            }
            None => Some(text),
        }
    }
}
