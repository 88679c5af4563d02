//! "Did you mean": the known name closest to one that matched nothing, for unknown agents,
//! patterns, versions, runs and steps. Similarity is Jaro-Winkler (strsim, the measure clap
//! uses for its own suggestions), so a typo, a missing dash or a swapped pair of letters
//! finds its name, and an unrelated word finds none.

/// How alike two names must be (0 to 1) for one to be suggested for the other.
const SIMILAR: f64 = 0.8;

/// `; did you mean "NAME"?` for the known name most like `wanted`, or nothing when none is
/// alike enough: a suffix for a "not found" sentence.
pub fn did_you_mean<'a>(wanted: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let best = known
        .into_iter()
        .filter(|name| *name != wanted)
        .map(|name| (strsim::jaro_winkler(wanted, name), name))
        .filter(|(score, _)| *score >= SIMILAR)
        .max_by(|left, right| left.0.total_cmp(&right.0));
    best.map(|(_, name)| format!("; did you mean {name:?}?")).unwrap_or_default()
}

/// The sentence for a pattern reference (`NAME` or `NAME@VERSION`) that names nothing
/// registered, given the registered `(name, version)` pairs: the name's versions when only
/// the version is wrong, else the closest name, else how to register one.
pub fn unknown_pattern<'a>(reference: &str, registered: impl IntoIterator<Item = (&'a str, &'a str)> + Clone) -> String {
    let (name, version) = reference.split_once('@').unwrap_or((reference, ""));
    let versions: Vec<&str> = registered.clone().into_iter().filter(|(known, _)| *known == name).map(|(_, version)| version).collect();
    if !versions.is_empty() {
        let suggestion = did_you_mean(version, versions.iter().copied());
        return format!("pattern {name} has no version {version:?} (registered: {}){suggestion}", versions.join(", "));
    }
    let mut names: Vec<&str> = registered.into_iter().map(|(known, _)| known).collect();
    names.dedup();
    match did_you_mean(name, names) {
        suggestion if !suggestion.is_empty() => format!("no pattern {name:?} is registered{suggestion}"),
        _ => format!("no pattern {name:?} is registered; push it with `pmesh pattern push PATH`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_pattern_or_version_names_what_is_registered() {
        let registered = [("steps", "1.0.0"), ("steps", "1.1.0"), ("dns", "2.0.0")];
        assert_eq!(unknown_pattern("stpes", registered), "no pattern \"stpes\" is registered; did you mean \"steps\"?");
        assert_eq!(
            unknown_pattern("steps@1.0.1", registered),
            "pattern steps has no version \"1.0.1\" (registered: 1.0.0, 1.1.0); did you mean \"1.0.0\"?"
        );
        assert_eq!(unknown_pattern("vcsa", registered), "no pattern \"vcsa\" is registered; push it with `pmesh pattern push PATH`");
    }

    fn check(wanted: &str, known: &[&str], expected: &str) {
        assert_eq!(did_you_mean(wanted, known.iter().copied()), expected, "{wanted} among {known:?}");
    }

    #[test]
    fn close_names_are_suggested_and_unrelated_ones_are_not() {
        check("pc1", &["pc-1", "pc-2", "vcsa"], "; did you mean \"pc-1\"?");
        check("stpes", &["steps", "dns"], "; did you mean \"steps\"?");
        check("frist", &["first", "second", "third"], "; did you mean \"first\"?");
        check("1.0.1", &["1.0.0", "2.3.0"], "; did you mean \"1.0.0\"?");
        check("zebra", &["pc-1", "steps"], "");
        check("pc-1", &[], "");
    }
}
