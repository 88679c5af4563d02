//! `images`: where each container image comes from (a registry reference, an artifact's
//! tarball, or a build from a directory of the pattern), and for a build the artifacts placed
//! in its context and its build args.

use std::collections::{BTreeMap, BTreeSet};

use super::super::formats;
use super::super::spec::{Build, Image};
use super::super::yaml::Node;
use super::Decoder;

const IMAGE_FIELDS: [&str; 3] = ["ref", "load", "build"];
const BUILD_FIELDS: [&str; 4] = ["context", "dockerfile", "artifacts", "args"];

impl Decoder<'_> {
    pub(super) fn image(&mut self, name: &str, key: &Node, node: &Node) -> Option<Image> {
        let fields = self.fields(node, key.mark, &IMAGE_FIELDS, &format!("image `{name}`"))?;
        let present: Vec<(&Node, &Node)> = IMAGE_FIELDS.iter().filter_map(|field| fields.get(field)).collect();
        match present.as_slice() {
            [] => {
                self.report.error(key.mark, format!("image `{name}` needs one of `ref`, `load` or `build`"));
                None
            }
            [(field, value)] => match field.as_str() {
                Some("ref") => {
                    let text = self.text(value, false)?;
                    let problem = if text.contains("${") { None } else { formats::image_ref_problem(&text) };
                    match problem {
                        Some(problem) => {
                            self.report.error(value.mark, problem);
                            None
                        }
                        None => Some(Image::Ref(text)),
                    }
                }
                Some("load") => self.reference(value, "artifact").map(Image::Load),
                _ => self.build(field, value).map(Image::Build),
            },
            [_, (second, _), ..] => {
                self.report.error(second.mark, format!("image `{name}` takes one of `ref`, `load` or `build`, not several"));
                None
            }
        }
    }

    fn build(&mut self, key: &Node, node: &Node) -> Option<Build> {
        let fields = self.fields(node, key.mark, &BUILD_FIELDS, "build")?;
        let (_, context_node) = fields.required(self, "context")?;
        let context = self.path(context_node, true)?;
        let dockerfile = match fields.get("dockerfile") {
            Some((_, node)) => self.path(node, false)?,
            None => "Dockerfile".to_owned(),
        };
        let prefix = if context == "." { String::new() } else { format!("{context}/") };
        if !self.files.keys().any(|file| file.starts_with(&prefix)) {
            self.report.error(context_node.mark, format!("build context `{context}` is not a directory of the pattern"));
            return None;
        }
        let dockerfile_path = format!("{prefix}{dockerfile}");
        let mut valid = true;
        if !self.files.contains_key(&dockerfile_path) {
            let mark = fields.get("dockerfile").map_or(context_node.mark, |(_, node)| node.mark);
            self.report.error(mark, format!("the Dockerfile `{dockerfile_path}` is not in the pattern"));
            valid = false;
        }
        let artifacts = match fields.get("artifacts") {
            Some((_, node)) => self.build_artifacts(node, &prefix),
            None => Some(Vec::new()),
        };
        let args = match fields.get("args") {
            Some((_, node)) => self.build_args(node),
            None => Some(BTreeMap::new()),
        };
        valid.then_some(())?;
        Some(Build { context, dockerfile, artifacts: artifacts?, args: args? })
    }

    /// The artifacts a build places in its context, each under its own name at the context's
    /// root: declared, named once, and not shadowing a file of the context.
    fn build_artifacts(&mut self, node: &Node, prefix: &str) -> Option<Vec<String>> {
        let items = self.sequence(node)?;
        let mut names = Vec::new();
        let mut seen = BTreeSet::new();
        let mut valid = true;
        for item in items {
            let Some(name) = self.reference(item, "artifact") else {
                valid = false;
                continue;
            };
            let shadowed = format!("{prefix}{name}");
            if !seen.insert(name.clone()) {
                self.report.error(item.mark, format!("artifact `{name}` is listed twice"));
                valid = false;
            } else if self.files.keys().any(|file| *file == shadowed || file.starts_with(&format!("{shadowed}/"))) {
                self.report.error(
                    item.mark,
                    format!("artifact `{name}` would replace `{shadowed}` of the context: artifacts go at its root by name"),
                );
                valid = false;
            }
            names.push(name);
        }
        valid.then_some(names)
    }

    /// Build args (`ARG` in the Dockerfile), by name: text with placeholders, never a secret
    /// (Docker keeps build args in the image's history, for anyone who can pull it).
    fn build_args(&mut self, node: &Node) -> Option<BTreeMap<String, String>> {
        let entries = self.mapping(node)?;
        let mut args = Some(BTreeMap::new());
        for (key, value) in entries {
            let name = self.string(key).filter(|name| {
                let valid = formats::is_env_name(name);
                if !valid {
                    self.report.error(key.mark, format!("`{name}` is not a valid build arg name"));
                }
                valid
            });
            let value = if value.as_map().is_some() || value.as_seq().is_some() {
                self.report.error(value.mark, format!("expected a string, found {}", value.describe()));
                None
            } else {
                self.text(value, false)
            };
            match (name, value, args.as_mut()) {
                (Some(name), Some(value), Some(map)) => {
                    map.insert(name, value);
                }
                _ => args = None,
            }
        }
        args
    }
}
