//! Stand-ins for the vendor tools that cannot be installed here (OVF Tool, PowerCLI,
//! Terraform), and the helpers their tests share: the stand-in downloads (an OVF Tool
//! `.bundle` and `.zip`), checksums, and a catalog pattern copied with its artifact's checksum
//! set to a stand-in's, as a user sets it to their own download's.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The directory of the stand-ins' sources (`tests/standins`).
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("standins")
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A stand-in OVF Tool `.bundle` (4.6.2's form): a shell script with the real installer's
/// interface, installing the stand-in `ovftool`; `unique` goes into a comment, so each test
/// has a download of its own checksum.
///
/// # Panics
/// When `sh` cannot run `tests/standins/ovftool/make-bundle.sh`.
pub fn ovftool_bundle(unique: &str) -> Vec<u8> {
    let out = tempfile::NamedTempFile::new().expect("a temp file");
    let script = dir().join("ovftool/make-bundle.sh");
    let status = std::process::Command::new("sh").arg(&script).arg(out.path()).arg(unique).status().expect("sh runs");
    assert!(status.success(), "{} failed", script.display());
    std::fs::read(out.path()).expect("the bundle")
}

/// A stand-in OVF Tool `.zip` (4.6.3's form): `ovftool/ovftool`, executable, as the real
/// archive lays it out; `unique` goes into a second entry.
///
/// # Panics
/// When the stand-in's source is missing.
pub fn ovftool_zip(unique: &str) -> Vec<u8> {
    let tool = std::fs::read(dir().join("ovftool/ovftool")).expect("tests/standins/ovftool/ovftool");
    stored_zip(&[("ovftool/ovftool", &tool, 0o755), ("ovftool/README.txt", unique.as_bytes(), 0o644)])
}

/// A zip archive of `entries` (path, contents, Unix mode), stored without compression: what
/// `unzip` reads, written without a zip library.
pub fn stored_zip(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut zip = Vec::new();
    let mut central = Vec::new();
    for (path, contents, mode) in entries {
        let offset = zip.len() as u32;
        let (crc, size, name_len) = (crc32(contents), contents.len() as u32, path.len() as u16);
        // Local file header: version 1.0, no flags, stored, no time.
        zip.extend(0x0403_4b50u32.to_le_bytes());
        zip.extend([10u16, 0, 0, 0, 0].iter().flat_map(|field| field.to_le_bytes()));
        zip.extend([crc, size, size].iter().flat_map(|field| field.to_le_bytes()));
        zip.extend([name_len, 0].iter().flat_map(|field| field.to_le_bytes()));
        zip.extend(path.as_bytes());
        zip.extend(*contents);
        // Central directory entry: made by Unix (3) so `unzip` keeps the mode.
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend([(3u16 << 8) | 20, 10, 0, 0, 0, 0].iter().flat_map(|field| field.to_le_bytes()));
        central.extend([crc, size, size].iter().flat_map(|field| field.to_le_bytes()));
        central.extend([name_len, 0, 0, 0, 0].iter().flat_map(|field| field.to_le_bytes()));
        central.extend([(0o100_000 | mode) << 16, offset].iter().flat_map(|field| field.to_le_bytes()));
        central.extend(path.as_bytes());
    }
    let (central_at, central_len, n_entries) = (zip.len() as u32, central.len() as u32, entries.len() as u16);
    zip.extend(central);
    zip.extend(0x0605_4b50u32.to_le_bytes());
    zip.extend([0u16, 0, n_entries, n_entries].iter().flat_map(|field| field.to_le_bytes()));
    zip.extend([central_len, central_at].iter().flat_map(|field| field.to_le_bytes()));
    zip.extend(0u16.to_le_bytes());
    zip
}

/// CRC-32 (IEEE), bit by bit: the stand-ins are small.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Copies the catalog pattern `patterns/NAME` to `dest`, with the artifact checksum of
/// zeros and its size of 1 (the catalog's "set your download's here") replaced by
/// `download`'s, and the version set to `version`.
///
/// # Panics
/// When the pattern cannot be read or written.
pub fn pattern_for_download(name: &str, dest: &Path, download: &[u8], version: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns").join(name);
    for (path, _) in crate::files_under(&source) {
        let relative = Path::new(&path).strip_prefix(&source).expect("under the pattern");
        let target = dest.join(relative);
        std::fs::create_dir_all(target.parent().expect("a file has a parent")).expect("mkdir");
        std::fs::copy(&path, &target).expect("copy");
    }
    let yaml_path = dest.join("pattern.yaml");
    let yaml = std::fs::read_to_string(&yaml_path).expect("pattern.yaml");
    let zeros = format!("\"{}\"", "0".repeat(64));
    assert!(yaml.contains(&zeros) && yaml.contains("    size: 1\n"), "{name} declares the placeholder checksum and size");
    let yaml = yaml
        .replace(&zeros, &sha256_hex(download))
        .replace("    size: 1\n", &format!("    size: {}\n", download.len()))
        .replace("  version: 1.0.0\n", &format!("  version: {version}\n"));
    std::fs::write(&yaml_path, yaml).expect("pattern.yaml");
    dest.to_owned()
}

/// A provider mirror as `terraform providers mirror DIR` lays it out, as a tarball: one
/// stand-in provider package, `hashicorp/vsphere` 2.9.2 for linux_amd64.
///
/// # Panics
/// Never: the tar is written to memory.
pub fn provider_mirror_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let package = b"stand-in provider package\n";
    for (path, contents) in [
        ("registry.terraform.io/hashicorp/vsphere/index.json", &b"{\"versions\":{\"2.9.2\":{}}}\n"[..]),
        ("registry.terraform.io/hashicorp/vsphere/2.9.2.json", &b"{\"archives\":{\"linux_amd64\":{}}}\n"[..]),
        ("registry.terraform.io/hashicorp/vsphere/terraform-provider-vsphere_2.9.2_linux_amd64.zip", &package[..]),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, contents).expect("in memory");
    }
    builder.into_inner().expect("in memory")
}

/// Builds the stand-in image `tests/standins/NAME` (on the test tools image) as
/// `pmesh-test/standin-NAME:UNIQUE`; the caller removes it.
///
/// # Panics
/// When the build fails.
pub fn build_image(name: &str, unique: &str) -> String {
    let tag = format!("pmesh-test/standin-{name}:{unique}");
    let context = dir().join(name);
    crate::docker::docker(&["build", "-q", "-t", &tag, context.to_str().expect("a UTF-8 path")]);
    tag
}

/// The files a stand-in recorded under `/record` in the container of `step` of `instance`,
/// by name.
///
/// # Panics
/// When there is no such container or it recorded nothing.
pub fn recorded(instance: &str, step: &str) -> std::collections::BTreeMap<String, String> {
    let filter = |key: &str, value: &str| format!("label=io.pmesh.{key}={value}");
    let ids = crate::docker::docker(&["ps", "-aq", "--filter", &filter("instance", instance), "--filter", &filter("step", step)]);
    let id = ids.lines().next().unwrap_or_else(|| panic!("no container of step {step} of {instance}"));
    let out = tempfile::tempdir().expect("a temp dir");
    crate::docker::docker(&["cp", &format!("{id}:/record"), out.path().to_str().expect("a UTF-8 path")]);
    let record = out.path().join("record");
    std::fs::read_dir(&record)
        .expect("the stand-in recorded")
        .flatten()
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(entry.path()).expect("text")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_of_a_known_text() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
