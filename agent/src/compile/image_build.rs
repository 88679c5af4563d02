//! Images built on the agent: the context's files copied under the instance's `pattern/`
//! directory, the artifacts the build names placed beside them, the build args resolved, and
//! the tag: a digest of all of it, so an image is rebuilt exactly when one of them changes.

use std::collections::BTreeMap;

use pmesh_proto::pattern::spec::Build;
use sha2::{Digest, Sha256};

use super::{CompileError, Compiler};
use crate::executor::plan::{BuildSpec, ImageSource};

/// Hex digits of the digest in a built image's tag (64 bits: collisions are not a concern
/// among one agent's images).
const TAG_DIGEST_LEN: usize = 16;

/// What a built image is built from, with each piece length-prefixed so that no two
/// different inputs hash alike (`ab`+`c` is not `a`+`bc`).
#[derive(Default)]
pub(crate) struct BuildDigest {
    hasher: Sha256,
}

impl BuildDigest {
    fn piece(&mut self, kind: &str, parts: &[&[u8]]) {
        self.hasher.update(kind.as_bytes());
        for part in parts {
            self.hasher.update((part.len() as u64).to_be_bytes());
            self.hasher.update(part);
        }
    }

    /// The Dockerfile's path in the context.
    pub(crate) fn dockerfile(&mut self, path: &str) {
        self.piece("dockerfile", &[path.as_bytes()]);
    }

    /// A file of the context (the Dockerfile among them), by its path in the context.
    pub(crate) fn file(&mut self, path: &str, contents: &[u8]) {
        self.piece("file", &[path.as_bytes(), contents]);
    }

    /// An artifact placed in the context, by its name and checksum (its bytes are that
    /// checksum's: the cache verified them).
    pub(crate) fn artifact(&mut self, name: &str, sha256: &str) {
        self.piece("artifact", &[name.as_bytes(), sha256.as_bytes()]);
    }

    /// A build arg, resolved.
    pub(crate) fn arg(&mut self, name: &str, value: &str) {
        self.piece("arg", &[name.as_bytes(), value.as_bytes()]);
    }

    /// The digest's first hex digits, as a tag.
    pub(crate) fn tag(self) -> String {
        let mut hex = hex::encode(self.hasher.finalize());
        hex.truncate(TAG_DIGEST_LEN);
        hex
    }
}

impl Compiler<'_> {
    /// An image built from a context directory of the pattern, its files copied under
    /// `pattern/`, the artifacts it names taken from the cache, tagged
    /// `pmesh/PATTERN-NAME:DIGEST`.
    pub(super) fn build(&mut self, name: &str, build: &Build, place: &str) -> Result<ImageSource, CompileError> {
        let pattern_dir = self.inputs.work_dir.join("pattern");
        let prefix = if build.context == "." { String::new() } else { format!("{}/", build.context.trim_end_matches('/')) };
        let mut digest = BuildDigest::default();
        digest.dockerfile(&build.dockerfile);
        let mut files = Vec::new();
        // The pattern's files come sorted by path (a BTreeMap), so the digest is stable.
        for (path, contents) in self.inputs.files.iter().filter(|(path, _)| path.starts_with(&prefix)) {
            let in_context = &path[prefix.len()..];
            digest.file(in_context, contents);
            self.materials.files.insert(pattern_dir.join(path), contents.clone());
            files.push((in_context.to_owned(), pattern_dir.join(path)));
        }
        let mut artifacts = Vec::new();
        for artifact in &build.artifacts {
            let spec = self
                .pattern
                .artifacts
                .get(artifact)
                .ok_or_else(|| CompileError(format!("{place}.build.artifacts: {artifact} is not an artifact of the pattern")))?;
            let path = self
                .inputs
                .artifacts
                .get(artifact)
                .ok_or_else(|| CompileError(format!("{place}.build.artifacts: artifact {artifact} is not in the cache")))?;
            digest.artifact(artifact, &spec.sha256);
            artifacts.push((artifact.clone(), path.clone()));
        }
        let mut args = BTreeMap::new();
        for (arg, value) in &build.args {
            let value = self.placeholders.text(value, &format!("{place}.build.args.{arg}"))?;
            digest.arg(arg, &value);
            args.insert(arg.clone(), value);
        }
        Ok(ImageSource::Build(BuildSpec {
            name: name.to_owned(),
            files,
            dockerfile: build.dockerfile.clone(),
            artifacts,
            args,
            tag: format!("pmesh/{}-{name}:{}", self.pattern.metadata.name, digest.tag()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tag of a build from `files`, `artifacts` and `args`.
    fn tag(files: &[(&str, &str)], artifacts: &[(&str, &str)], args: &[(&str, &str)]) -> String {
        let mut digest = BuildDigest::default();
        digest.dockerfile("Dockerfile");
        for (path, contents) in files {
            digest.file(path, contents.as_bytes());
        }
        for (name, sha256) in artifacts {
            digest.artifact(name, sha256);
        }
        for (name, value) in args {
            digest.arg(name, value);
        }
        digest.tag()
    }

    #[test]
    fn the_tag_changes_with_every_input_and_only_with_them() {
        let base = tag(&[("Dockerfile", "FROM x")], &[("tool", "aa")], &[("BASE", "debian")]);
        assert_eq!(base.len(), TAG_DIGEST_LEN);
        assert_eq!(base, tag(&[("Dockerfile", "FROM x")], &[("tool", "aa")], &[("BASE", "debian")]), "the same inputs, the same tag");
        let changed = [
            tag(&[("Dockerfile", "FROM y")], &[("tool", "aa")], &[("BASE", "debian")]),
            tag(&[("Dockerfile", "FROM x"), ("install.sh", "")], &[("tool", "aa")], &[("BASE", "debian")]),
            tag(&[("Dockerfile", "FROM x")], &[("tool", "bb")], &[("BASE", "debian")]),
            tag(&[("Dockerfile", "FROM x")], &[("other", "aa")], &[("BASE", "debian")]),
            tag(&[("Dockerfile", "FROM x")], &[("tool", "aa")], &[("BASE", "photon")]),
            tag(&[("Dockerfile", "FROM x")], &[("tool", "aa")], &[]),
            tag(&[("Dockerfile", "FROM x")], &[], &[("BASE", "debian")]),
        ];
        for (index, other) in changed.iter().enumerate() {
            assert_ne!(&base, other, "change {index} kept the tag");
        }
    }

    #[test]
    fn pieces_cannot_be_confused() {
        assert_ne!(tag(&[("ab", "c")], &[], &[]), tag(&[("a", "bc")], &[], &[]));
        assert_ne!(tag(&[("a", "")], &[], &[]), tag(&[], &[], &[("a", "")]));
        assert_ne!(tag(&[("x", "1"), ("y", "2")], &[], &[]), tag(&[("x", "1y2")], &[], &[]));
    }
}

#[cfg(test)]
mod compile_tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use pmesh_proto::pattern;

    use crate::compile::{compile, Inputs};
    use crate::config::ImageConfig;
    use crate::executor::plan::{BuildSpec, ImageSource};

    const YAML: &str = r#"
apiVersion: pmesh/v1
kind: Pattern
metadata: {name: tool, version: 1.0.0, category: basic-tool}
params:
  base: {type: string, default: "debian:12"}
artifacts:
  download:
    url: https://depot.lab/tool.zip
    sha256: 1111111111111111111111111111111111111111111111111111111111111111
    size: 10
images:
  tool:
    build: {context: ., artifacts: [download], args: {BASE: "${base}"}}
steps:
  smoke: {kind: run, image: tool}
outputs:
  image: {type: string, value: "${image.tool}"}
"#;

    /// The build the pattern compiles to with `values`, and its `image` output.
    fn built(values: &str, dockerfile: &str) -> (BuildSpec, serde_json::Value) {
        let files = BTreeMap::from([
            ("pattern.yaml".to_owned(), YAML.as_bytes().to_vec()),
            ("Dockerfile".to_owned(), dockerfile.as_bytes().to_vec()),
        ]);
        let pattern = pattern::parse(&files).expect("the pattern parses");
        let supplied = pattern::values_from_yaml("values", values).expect("values");
        let params = pattern::validate_values(&pattern, &supplied).expect("valid values");
        let (images, facts) = (ImageConfig::default(), pattern::RunFacts::default());
        let artifacts = BTreeMap::from([("download".to_owned(), PathBuf::from("/cache/sha256/1111"))]);
        let inputs = Inputs {
            files: &files,
            params: &params,
            instance: "lab",
            agent: "",
            run_id: "r1",
            work_dir: Path::new("/data/instances/lab"),
            images: &images,
            artifacts: &artifacts,
            max_parallel: 4,
            facts: &facts,
        };
        let compiled = compile(&pattern, &inputs).expect("it compiles");
        let [ImageSource::Build(build)] = compiled.plan.images.as_slice() else { panic!("one built image: {:?}", compiled.plan.images) };
        let output = match &compiled.plan.outputs[0].source {
            crate::executor::plan::OutputSource::Value(value) => value.clone(),
            crate::executor::plan::OutputSource::File { .. } => panic!("a value output"),
        };
        (build.clone(), output)
    }

    #[test]
    fn a_build_packs_its_context_files_and_artifacts_with_its_args_and_its_tag_follows_them() {
        let (build, output) = built("{}", "FROM $BASE\n");
        let pattern_dir = Path::new("/data/instances/lab/pattern");
        let files: Vec<(&str, &Path)> = build.files.iter().map(|(name, path)| (name.as_str(), path.as_path())).collect();
        assert_eq!(files, [("Dockerfile", &*pattern_dir.join("Dockerfile")), ("pattern.yaml", &*pattern_dir.join("pattern.yaml"))]);
        assert_eq!(build.artifacts, [("download".to_owned(), PathBuf::from("/cache/sha256/1111"))]);
        assert_eq!(build.args, BTreeMap::from([("BASE".to_owned(), "debian:12".to_owned())]));
        assert!(build.tag.starts_with("pmesh/tool-tool:"), "{}", build.tag);
        assert_eq!(output, serde_json::Value::String(build.tag.clone()), "the output names the built tag");
        assert_eq!(built("{}", "FROM $BASE\n").0.tag, build.tag, "the same inputs, the same tag");
        assert_ne!(built("base: photon:5", "FROM $BASE\n").0.tag, build.tag, "an arg changes it");
        assert_ne!(built("{}", "FROM $BASE\nRUN true\n").0.tag, build.tag, "the Dockerfile changes it");
    }
}
