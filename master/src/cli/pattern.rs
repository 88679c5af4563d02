//! `pmesh pattern lint PATH` and `pmesh pattern show PATH|NAME[@VERSION]`: read a pattern
//! directory from disk (or a registered bundle from the master) and hand its files to
//! `pmesh_proto::pattern`, which knows the format.
//!
//! Both exit with [`exit::USAGE`] (2) when the pattern has problems, after printing every one
//! as `PATH/FILE:LINE:COLUMN: message`; a directory that cannot be read is [`exit::FAILED`].

use std::collections::BTreeMap;
use std::path::Path;

use pmesh_proto::pattern::{self, Diagnostic, ParamValue, Pattern};
use pmesh_proto::v1;
use pmesh_rt::pattern_dir::{self, PatternDir, ReadError};

use super::client::{exit, CliError, Connection};
use super::output::{table, Format};

/// Reads the pattern at `path` (a directory, or its `pattern.yaml`).
///
/// # Errors
/// [`exit::USAGE`] when `path` is not a pattern or holds a symlink; [`exit::FAILED`] when a
/// file cannot be read.
pub fn read_pattern_dir(path: &Path) -> Result<PatternDir, CliError> {
    pattern_dir::read(path).map_err(|err| match err {
        ReadError::NotAPattern(message) => CliError::new(exit::USAGE, message),
        io @ ReadError::Io { .. } => CliError::new(exit::FAILED, io.to_string()),
    })
}

/// The pattern at `path`, or every problem printed and exit code 2.
fn parse(path: &Path, format: Format) -> Result<(PatternDir, Pattern), CliError> {
    let dir = read_pattern_dir(path)?;
    match pattern::parse(&dir.files) {
        Ok(pattern) => Ok((dir, pattern)),
        Err(diagnostics) => {
            print_diagnostics(&dir.root, &diagnostics, format);
            let n_problems = diagnostics.len();
            let plural = if n_problems == 1 { "" } else { "s" };
            Err(CliError::new(exit::USAGE, format!("{n_problems} problem{plural} in {}", dir.root.display())))
        }
    }
}

fn print_diagnostics(root: &Path, diagnostics: &[Diagnostic], format: Format) {
    match format {
        Format::Text => {
            for diagnostic in diagnostics {
                println!("{}", located(root, diagnostic));
            }
        }
        Format::Json => {
            let problems: Vec<serde_json::Value> = diagnostics
                .iter()
                .map(|diagnostic| {
                    serde_json::json!({
                        "file": root.join(&diagnostic.file).display().to_string(),
                        "line": diagnostic.line,
                        "column": diagnostic.column,
                        "message": diagnostic.message,
                    })
                })
                .collect();
            println!("{}", serde_json::json!({ "valid": false, "problems": problems }));
        }
    }
}

/// `PATH/FILE:LINE:COLUMN: message`, so a terminal or editor can jump to it.
fn located(root: &Path, diagnostic: &Diagnostic) -> String {
    format!("{}:{}:{}: {}", root.join(&diagnostic.file).display(), diagnostic.line, diagnostic.column, diagnostic.message)
}

/// `pmesh pattern lint PATH`: prints every problem, or a one-line confirmation.
///
/// # Errors
/// [`exit::USAGE`] when the pattern has problems or `path` is not a pattern directory;
/// [`exit::FAILED`] when a file cannot be read.
pub fn lint(path: &Path, format: Format) -> Result<(), CliError> {
    let (dir, pattern) = parse(path, format)?;
    let metadata = &pattern.metadata;
    match format {
        Format::Text => println!("{}: {} {} is valid", dir.root.display(), metadata.name, metadata.version),
        Format::Json => println!(
            "{}",
            serde_json::json!({ "valid": true, "name": metadata.name, "version": metadata.version.to_string(), "problems": [] })
        ),
    }
    Ok(())
}

/// `pmesh pattern show PATH`: the pattern's metadata, its params as a table and its steps.
/// `-o json` prints the whole normalised pattern.
///
/// # Errors
/// As [`lint`].
pub fn show(path: &Path, format: Format) -> Result<(), CliError> {
    let (_, pattern) = parse(path, format)?;
    match format {
        Format::Json => {
            let json = serde_json::to_string_pretty(&pattern).map_err(|err| CliError::new(exit::FAILED, err.to_string()))?;
            println!("{json}");
        }
        Format::Text => println!("{}", show_text(&pattern)),
    }
    Ok(())
}

/// Whether `target` of `pmesh pattern show` names a registered pattern (`NAME` or
/// `NAME@VERSION`) rather than a directory: it is not a path on disk, and reads as a name.
pub fn is_registered_reference(target: &Path) -> bool {
    if target.exists() {
        return false;
    }
    let Some(text) = target.to_str() else { return false };
    let (name, version) = text.split_once('@').map_or((text, None), |(name, version)| (name, Some(version)));
    pmesh_proto::identity::validate_name(name).is_ok() && version.is_none_or(|version| semver::Version::parse(version).is_ok())
}

/// `pmesh pattern show NAME[@VERSION]`: the registered pattern, as `show` prints a directory,
/// with its digest and when it was pushed.
///
/// # Errors
/// [`exit::FAILED`] when no such version is registered (the message lists those that are);
/// the connection's exit code when the master cannot be asked.
pub async fn show_registered(connection: &Connection, reference: &str, format: Format) -> Result<(), CliError> {
    let got = connection
        .client
        .clone()
        .max_decoding_message_size(64 * 1024 * 1024)
        .get_pattern(v1::GetPatternRequest { pattern: reference.to_owned() })
        .await
        .map_err(|status| connection.failed(status))?
        .into_inner();
    let summary = got.summary.unwrap_or_default();
    let files = pmesh_proto::bundle::open(&got.bundle)
        .map_err(|err| CliError::new(exit::FAILED, format!("the master's bundle of {reference} does not open: {err}")))?;
    let contents: BTreeMap<String, Vec<u8>> = files.into_iter().map(|(path, file)| (path, file.contents)).collect();
    let pattern = pattern::parse(&contents).map_err(|diagnostics| {
        CliError::new(
            exit::FAILED,
            format!("the registered {reference} does not parse here ({} problems): is this CLI older than the master?", diagnostics.len()),
        )
    })?;
    let pushed = u64::try_from(summary.pushed_at_unix)
        .map(|secs| humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string())
        .unwrap_or_default();
    match format {
        Format::Json => {
            let mut json = serde_json::to_value(&pattern).map_err(|err| CliError::new(exit::FAILED, err.to_string()))?;
            json["registered"] = serde_json::json!({ "digest": summary.digest, "pushed_at": pushed });
            println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
        }
        Format::Text => {
            let text = show_text(&pattern);
            let (title, rest) = text.split_once('\n').unwrap_or((&text, ""));
            println!("{title}\nregistered {} at {pushed}\n{rest}", summary.digest);
        }
    }
    Ok(())
}

fn show_text(pattern: &Pattern) -> String {
    let metadata = &pattern.metadata;
    let category = serde_json::to_value(metadata.category).ok().and_then(|value| value.as_str().map(str::to_owned)).unwrap_or_default();
    let mut out = format!("{} {} ({category})\n", metadata.name, metadata.version);
    if !metadata.description.is_empty() {
        out.push_str(&format!("{}\n", metadata.description));
    }
    out.push('\n');
    if pattern.params.is_empty() {
        out.push_str("no params\n");
    } else {
        let rows: Vec<Vec<String>> = pattern
            .params
            .iter()
            .map(|(name, param)| {
                vec![
                    name.clone(),
                    type_text(param),
                    if param.required { "yes".into() } else { "no".into() },
                    param.default.as_ref().map_or_else(|| "-".to_owned(), value_text),
                    if param.description.is_empty() { "-".into() } else { param.description.clone() },
                ]
            })
            .collect();
        out.push_str(&table(&["PARAM", "TYPE", "REQUIRED", "DEFAULT", "DESCRIPTION"], &rows));
        out.push('\n');
    }
    out.push('\n');
    // The capabilities column appears only when a step asks for one, so a pattern that asks
    // for none shows as it always did.
    let asks = pattern.steps.values().any(|step| !capabilities(step).is_empty());
    let rows: Vec<Vec<String>> = pattern
        .steps
        .iter()
        .map(|(name, step)| {
            let needs = if step.needs.is_empty() { "-".to_owned() } else { step.needs.join(",") };
            let mut row = vec![name.clone(), step.kind().name().to_owned(), needs];
            if asks {
                let names = capabilities(step);
                row.push(if names.is_empty() { "-".to_owned() } else { names.join(",") });
            }
            row
        })
        .collect();
    let headers: &[&str] = if asks { &["STEP", "KIND", "NEEDS", "CAPABILITIES"] } else { &["STEP", "KIND", "NEEDS"] };
    out.push_str(&table(headers, &rows));
    if !pattern.artifacts.is_empty() {
        let rows: Vec<Vec<String>> = pattern
            .artifacts
            .iter()
            .map(|(name, artifact)| {
                vec![name.clone(), pmesh_proto::progress::human_bytes(artifact.size), format!("sha256:{}", artifact.sha256)]
            })
            .collect();
        out.push_str(&format!("\n\n{}", table(&["ARTIFACT", "SIZE", "SHA256"], &rows)));
    }
    if !pattern.images.is_empty() {
        let rows: Vec<Vec<String>> = pattern.images.iter().map(|(name, image)| vec![name.clone(), image_text(image)]).collect();
        out.push_str(&format!("\n\n{}", table(&["IMAGE", "SOURCE"], &rows)));
    }
    if !pattern.outputs.is_empty() {
        let rows: Vec<Vec<String>> = pattern
            .outputs
            .iter()
            .map(|(name, output)| {
                let kind = if output.secret { format!("{} (secret)", output.kind.name()) } else { output.kind.name().to_owned() };
                vec![name.clone(), kind, if output.description.is_empty() { "-".into() } else { output.description.clone() }]
            })
            .collect();
        out.push_str(&format!("\n\n{}", table(&["OUTPUT", "TYPE", "DESCRIPTION"], &rows)));
    }
    out
}

/// Where an image comes from, in a few words.
fn image_text(image: &pattern::spec::Image) -> String {
    match image {
        pattern::spec::Image::Ref(reference) => reference.clone(),
        pattern::spec::Image::Load(artifact) => format!("loaded from artifact {artifact}"),
        pattern::spec::Image::Build(build) => format!("built from {}/{}", build.context, build.dockerfile),
    }
}

/// The Linux capabilities a step asks for.
fn capabilities(step: &pattern::spec::Step) -> &[String] {
    match &step.action {
        pattern::spec::Action::Run(container) | pattern::spec::Action::Teardown(container) => &container.capabilities,
        pattern::spec::Action::Service(service) => &service.container.capabilities,
        pattern::spec::Action::Exec(_) | pattern::spec::Action::Wait(_) => &[],
    }
}

fn type_text(param: &pattern::Param) -> String {
    let validation = &param.validation;
    let mut text = param.kind.name().to_owned();
    if let Some(items) = validation.items {
        text = format!("{text} of {}", items.name());
    }
    if !validation.values.is_empty() {
        text = format!("{text} ({})", validation.values.join("|"));
    }
    match (validation.min, validation.max) {
        (Some(min), Some(max)) => text.push_str(&format!(" {min}..{max}")),
        (Some(min), None) => text.push_str(&format!(" >={min}")),
        (None, Some(max)) => text.push_str(&format!(" <={max}")),
        (None, None) => {}
    }
    // A list's or map's pattern checks each item: too long for a column, and not the type.
    let is_collection = matches!(param.kind.name(), "list" | "map");
    if let Some(regex) = validation.pattern.as_ref().filter(|_| !is_collection) {
        text.push_str(&format!(" /{regex}/"));
    }
    text
}

fn value_text(value: &ParamValue) -> String {
    match value {
        ParamValue::List(items) => format!("[{}]", items.iter().map(value_text).collect::<Vec<_>>().join(", ")),
        ParamValue::Map(entries) => {
            let pairs: Vec<String> = entries.iter().map(|(key, value)| format!("{key}: {}", value_text(value))).collect();
            format!("{{{}}}", pairs.join(", "))
        }
        ParamValue::Secret(_) => "<redacted>".to_owned(),
        other => other.as_text().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/src/pattern/testdata").join(name)
    }

    #[test]
    fn shows_params_and_steps() {
        let dir = read_pattern_dir(&testdata("valid/dns")).expect("readable");
        let pattern = pattern::parse(&dir.files).expect("valid");
        let expected = "\
dns 1.0.0 (shared-service)
Authoritative BIND9 DNS server for one lab zone

PARAM        TYPE               REQUIRED  DEFAULT    DESCRIPTION
forwarders   list of ip         no        [1.1.1.1]  Resolvers for names outside the zone
listen_port  port               no        53         The port published on the pattern controller
records      list               no        []         Records as \"name type value\", such as \"vcsa A 10.0.0.10\"
ttl          integer 60..86400  no        3600       -
zone         hostname           yes       -          The zone to serve, such as lab.local

STEP          KIND     NEEDS
check-config  exec     ready
named         service  -
ready         wait     named

IMAGE  SOURCE
bind   internetsystemsconsortium/bind9:9.18";
        assert_eq!(show_text(&pattern), expected);
    }

    #[test]
    fn shows_the_capabilities_each_step_asks_for() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/shared/nfs");
        let dir = read_pattern_dir(&root).expect("readable");
        let pattern = pattern::parse(&dir.files).expect("valid");
        let text = show_text(&pattern);
        let steps = &text[text.find("STEP").expect("a step table")..];
        let steps = steps.split("\n\n").next().unwrap_or_default();
        assert_eq!(
            steps,
            "STEP     KIND     NEEDS    CAPABILITIES\nganesha  service  -        DAC_READ_SEARCH,SYS_ADMIN\nready    wait     ganesha  -"
        );
    }

    #[test]
    fn shows_artifacts_images_and_outputs() {
        let dir = read_pattern_dir(&testdata("valid/vcsa")).expect("readable");
        let text = show_text(&pattern::parse(&dir.files).expect("valid"));
        let artifacts = &text[text.find("ARTIFACT").expect("an artifact table")..];
        assert!(artifacts.starts_with("ARTIFACT       SIZE       SHA256\novftool-image  100.0 MiB  sha256:fedcba98"), "{artifacts}");
        assert!(text.contains("vcsa-ova       11.0 GiB   sha256:01234567"), "{text}");
        assert!(text.contains("ovftool  loaded from artifact ovftool-image\ntools    built from tools/Dockerfile"), "{text}");

        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/shared/dns");
        let dir = read_pattern_dir(&root).expect("readable");
        let text = show_text(&pattern::parse(&dir.files).expect("valid"));
        let outputs = &text[text.find("OUTPUT").expect("an output table")..];
        let names: Vec<&str> = outputs.lines().skip(1).filter_map(|line| line.split_whitespace().next()).collect();
        assert_eq!(names, ["address", "port", "zone", "zones"]);
        assert!(outputs.contains("port     port"), "{outputs}");
    }

    #[test]
    fn a_registered_reference_is_a_name_that_is_not_on_disk() {
        assert!(is_registered_reference(Path::new("dns")));
        assert!(is_registered_reference(Path::new("dns@2.0.0")));
        assert!(!is_registered_reference(Path::new("dns@two")), "not a version: read as a path, which then fails");
        assert!(!is_registered_reference(Path::new("./no/such/dir")));
        assert!(!is_registered_reference(&testdata("valid/dns")), "a directory is shown from disk");
    }

    #[test]
    fn reads_a_directory_or_its_pattern_file() {
        let by_dir = read_pattern_dir(&testdata("valid/vcsa")).expect("readable");
        let by_file = read_pattern_dir(&testdata("valid/vcsa/pattern.yaml")).expect("readable");
        assert_eq!(by_dir.files, by_file.files);
        assert!(by_dir.files.contains_key("tools/Dockerfile"));
        let missing = read_pattern_dir(&testdata("valid/nope")).expect_err("no such directory");
        assert_eq!(missing.code, exit::USAGE);
    }

    #[test]
    fn lint_exits_2_with_located_problems() {
        let err = lint(&testdata("lint/cycles"), Format::Text).expect_err("has problems");
        assert_eq!((err.code, err.message.ends_with("cycles")), (exit::USAGE, true));
        let root = testdata("lint/cycles");
        let dir = read_pattern_dir(&root).expect("readable");
        let diagnostics = pattern::lint(&dir.files);
        assert_eq!(
            located(&root, &diagnostics[0]),
            format!("{}/pattern.yaml:10:39: the steps' `needs` form a cycle: a -> c -> b -> a", root.display())
        );
    }
}
