//! Registered patterns, parsed once: a bundle is immutable, so its parse is kept by digest
//! (bounded, least recently used out) and a run start does not parse it again. Also the one
//! way the master reads a bundle's pattern and a run's values.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pmesh_proto::pattern::{Params, Pattern};

use crate::error::ApiError;

/// Parsed patterns kept at most; a pattern is a few kilobytes parsed.
pub const CAPACITY: usize = 64;

/// Bundle digest → its parsed pattern.
pub struct PatternCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// Digest → (last use, pattern).
    by_digest: HashMap<String, (u64, Arc<Pattern>)>,
    uses: u64,
}

impl PatternCache {
    /// A cache of at most `capacity` patterns (at least one).
    pub fn new(capacity: usize) -> PatternCache {
        PatternCache { capacity: capacity.max(1), entries: Mutex::new(Entries::default()) }
    }

    /// The pattern of the bundle `archive` with `digest`, parsed only if it is not cached.
    ///
    /// # Errors
    /// [`ApiError::Invalid`] listing every problem when the bundle does not open or parse.
    pub fn get_or_parse(&self, digest: &str, archive: &[u8]) -> Result<Arc<Pattern>, ApiError> {
        if let Some(pattern) = self.get(digest) {
            return Ok(pattern);
        }
        let pattern = Arc::new(parse(archive)?);
        self.insert(digest, pattern.clone());
        Ok(pattern)
    }

    /// The cached pattern of `digest`, marked as just used.
    pub fn get(&self, digest: &str) -> Option<Arc<Pattern>> {
        let mut entries = self.entries();
        entries.uses += 1;
        let now = entries.uses;
        entries.by_digest.get_mut(digest).map(|(last_use, pattern)| {
            *last_use = now;
            pattern.clone()
        })
    }

    /// Keeps `pattern` as the parse of `digest`, evicting the least recently used past the cap.
    pub fn insert(&self, digest: &str, pattern: Arc<Pattern>) {
        let mut entries = self.entries();
        entries.uses += 1;
        let now = entries.uses;
        entries.by_digest.insert(digest.to_owned(), (now, pattern));
        while entries.by_digest.len() > self.capacity {
            let oldest = entries.by_digest.iter().min_by_key(|(_, (last_use, _))| *last_use).map(|(digest, _)| digest.clone());
            let Some(oldest) = oldest else { break };
            entries.by_digest.remove(&oldest);
        }
    }

    /// How many patterns are cached.
    pub fn len(&self) -> usize {
        self.entries().by_digest.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // Entries are inserted and removed whole: a panic cannot leave a half-made one.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The pattern of a bundle.
///
/// # Errors
/// [`ApiError::Invalid`] listing every problem.
pub fn parse(archive: &[u8]) -> Result<Pattern, ApiError> {
    let files = pmesh_proto::bundle::open(archive).map_err(|err| ApiError::Invalid(err.to_string()))?;
    let contents: BTreeMap<String, Vec<u8>> = files.into_iter().map(|(path, file)| (path, file.contents)).collect();
    pmesh_proto::pattern::parse(&contents).map_err(|diagnostics| ApiError::Invalid(lines(&diagnostics)))
}

/// A run's values (JSON, or YAML; empty for none) checked against `pattern`'s params.
///
/// # Errors
/// [`ApiError::Invalid`] listing every problem.
pub fn values(pattern: &Pattern, values_text: &str) -> Result<Params, ApiError> {
    let values_text = if values_text.trim().is_empty() { "{}" } else { values_text };
    let supplied =
        pmesh_proto::pattern::values_from_yaml("values", values_text).map_err(|diagnostics| ApiError::Invalid(lines(&diagnostics)))?;
    pmesh_proto::pattern::validate_values(pattern, &supplied).map_err(|problems| ApiError::Invalid(lines(&problems)))
}

/// Renders the templates of the bundle `archive` with a run's checked `params`, as each agent
/// will, so a value only a template refuses (its `fail()`) is refused here, before any agent
/// is asked or anything is recorded.
///
/// # Errors
/// [`ApiError::Invalid`] naming the template and why.
pub fn render_templates(archive: &[u8], pattern: &Pattern, params: &Params) -> Result<(), ApiError> {
    let files = pmesh_proto::bundle::open(archive).map_err(|err| ApiError::Invalid(err.to_string()))?;
    for file in pattern.files.iter().filter(|file| file.template) {
        let text = files.get(&file.path).and_then(|found| std::str::from_utf8(&found.contents).ok());
        let text = text.ok_or_else(|| ApiError::Invalid(format!("files: {} is not a UTF-8 file of the bundle", file.path)))?;
        pmesh_proto::pattern::render(text, params).map_err(|err| ApiError::Invalid(format!("files: {}: {err}", file.path)))?;
    }
    Ok(())
}

fn lines<T: ToString>(problems: &[T]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use pmesh_proto::bundle::BundleFile;

    use super::*;

    fn bundle(version: &str) -> Vec<u8> {
        let yaml = format!(
            "apiVersion: pmesh/v1\nkind: Pattern\nmetadata:\n  name: p\n  version: {version}\n  description: d\n  category: basic-tool\n\
             params:\n  port:\n    type: integer\n    required: true\n\
             steps:\n  s:\n    kind: wait\n    probe:\n      tcp: {{host: 127.0.0.1, port: 1}}\n    deadline: 1s\n"
        );
        pmesh_proto::bundle::pack(&BTreeMap::from([("pattern.yaml".to_owned(), BundleFile::new(yaml))])).expect("pack")
    }

    #[test]
    fn a_digest_is_parsed_once_and_the_least_recently_used_goes_first() {
        let cache = PatternCache::new(2);
        let first = cache.get_or_parse("d1", &bundle("1.0.0")).expect("parses");
        assert!(Arc::ptr_eq(&first, &cache.get_or_parse("d1", b"not even an archive").expect("cached")), "no second parse");
        cache.get_or_parse("d2", &bundle("2.0.0")).expect("parses");
        cache.get("d1");
        cache.get_or_parse("d3", &bundle("3.0.0")).expect("parses");
        assert_eq!(cache.len(), 2);
        assert!(cache.get("d1").is_some() && cache.get("d3").is_some());
        assert!(cache.get("d2").is_none(), "the least recently used was evicted");
        assert!(matches!(cache.get_or_parse("d4", b"junk"), Err(ApiError::Invalid(_))));
        assert!(cache.get("d4").is_none(), "a failed parse is not cached");
    }

    #[test]
    fn values_are_checked_against_the_params() {
        let pattern = parse(&bundle("1.0.0")).expect("parses");
        assert_eq!(
            values(&pattern, r#"{"port": 53}"#).expect("valid").get("port").and_then(|value| value.as_text()).as_deref(),
            Some("53")
        );
        for (text, expected) in [("", "required"), ("{}", "required"), (r#"{"port": 53, "other": 1}"#, "other"), ("[1]", "mapping")] {
            match values(&pattern, text) {
                Err(ApiError::Invalid(message)) => assert!(message.contains(expected), "{text:?}: {message}"),
                other => panic!("{text:?}: expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn templates_render_at_the_master_so_their_refusals_come_first() {
        let yaml =
            "apiVersion: pmesh/v1\nkind: Pattern\nmetadata:\n  name: p\n  version: 1.0.0\n  description: d\n  category: basic-tool\n\
                    params:\n  name:\n    type: string\n    required: true\n\
                    files:\n  - {path: t.j2, template: true}\n\
                    steps:\n  s:\n    kind: wait\n    probe:\n      tcp: {host: 127.0.0.1, port: 1}\n    deadline: 1s\n";
        let template = "{% if name is not matching('[a-z]+') %}{{ fail('name: `' ~ name ~ '` is not lowercase') }}{% endif %}{{ name }}\n";
        let files = BTreeMap::from([("pattern.yaml".to_owned(), BundleFile::new(yaml)), ("t.j2".to_owned(), BundleFile::new(template))]);
        let archive = pmesh_proto::bundle::pack(&files).expect("pack");
        let pattern = parse(&archive).expect("parses");
        let good = values(&pattern, r#"{"name": "www"}"#).expect("valid");
        assert!(render_templates(&archive, &pattern, &good).is_ok());
        let bad = values(&pattern, r#"{"name": "WWW"}"#).expect("valid for the param");
        match render_templates(&archive, &pattern, &bad) {
            Err(ApiError::Invalid(message)) => {
                assert_eq!(message, "files: t.j2: 1:43: invalid operation: name: `WWW` is not lowercase");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
