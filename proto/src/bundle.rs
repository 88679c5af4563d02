//! Bundles: how a pattern travels from the master to an agent.
//!
//! A bundle is a deterministic tar archive of the pattern's files plus `MANIFEST.json`, which
//! lists every file's sha256 and size. Entries are sorted (the manifest first), with mtime 0,
//! uid and gid 0, no user or group names and mode 0644 or 0755, so the same files always give
//! the same bytes. The bundle's identity is the sha256 of those bytes ([`digest`]).
//!
//! The master signs the digest with its ed25519 key ([`sign`]); an agent checks the signature
//! with the key it got at enrolment ([`verify`]) before it opens the bundle ([`open`]), which
//! refuses anything but regular files at relative paths inside the bundle, and any file whose
//! hash differs from the manifest. Pure functions over bytes: no I/O.

use std::collections::BTreeMap;
use std::io::Read;

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::pattern::formats::relative_path_problem;

/// The name of the manifest inside a bundle.
pub const MANIFEST_FILE: &str = "MANIFEST.json";
/// The bundle format this build writes and reads.
pub const FORMAT: &str = "pmesh-bundle/v1";
/// What the master signs: this prefix, then the bundle's digest (`sha256:HEX`).
const SIGNED_PREFIX: &[u8] = b"pmesh-bundle-v1 signature of ";
const MODE_FILE: u32 = 0o644;
const MODE_EXECUTABLE: u32 = 0o755;

/// Why a bundle, a signature or a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BundleError {
    /// There is no signature: the agent runs nothing unsigned.
    #[error("the bundle is not signed")]
    Unsigned,
    /// The signature does not match: the bundle was changed after signing, or another key
    /// signed it.
    #[error("the bundle's signature does not verify: it was changed after signing or signed by another key")]
    BadSignature,
    /// The archive, its manifest or the signature's encoding is not what a bundle holds.
    #[error("malformed bundle: {0}")]
    Malformed(String),
    /// The signing key or the public key cannot be used.
    #[error("unusable key: {0}")]
    Key(String),
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// The file's bytes.
    pub contents: Vec<u8>,
    /// Whether it is stored with mode 0755 (scripts) rather than 0644.
    pub executable: bool,
}

impl BundleFile {
    /// A regular file (mode 0644).
    pub fn new(contents: impl Into<Vec<u8>>) -> Self {
        BundleFile { contents: contents.into(), executable: false }
    }

    /// An executable file (mode 0755).
    pub fn executable(contents: impl Into<Vec<u8>>) -> Self {
        BundleFile { contents: contents.into(), executable: true }
    }
}

/// `MANIFEST.json`: the format and every file's checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Every file of the bundle but the manifest, by path.
    pub files: BTreeMap<String, ManifestEntry>,
}

/// One file in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Lowercase hex sha256 of the contents.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// The manifest of `files`.
pub fn manifest(files: &BTreeMap<String, BundleFile>) -> Manifest {
    let entries = files
        .iter()
        .map(|(path, file)| {
            let entry = ManifestEntry { sha256: hex::encode(Sha256::digest(&file.contents)), size: file.contents.len() as u64 };
            (path.clone(), entry)
        })
        .collect();
    Manifest { format: FORMAT.to_owned(), files: entries }
}

/// The bundle's identity: `sha256:` and the hex sha256 of its bytes.
pub fn digest(bundle: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bundle)))
}

/// Packs `files` (paths relative to the pattern directory, `/` separators) into a bundle.
/// The same files give the same bytes, whatever order the map was filled in.
///
/// # Errors
/// [`BundleError::Malformed`] when a path is not a plain relative path or is the manifest's.
pub fn pack(files: &BTreeMap<String, BundleFile>) -> Result<Vec<u8>, BundleError> {
    for path in files.keys() {
        check_path(path)?;
        if path == MANIFEST_FILE {
            return Err(BundleError::Malformed(format!("`{MANIFEST_FILE}` is reserved for the bundle's manifest")));
        }
    }
    let manifest = serde_json::to_vec_pretty(&manifest(files)).expect("a manifest always serializes");
    let mut builder = tar::Builder::new(Vec::new());
    let manifest_entry = BundleFile::new(manifest);
    let entries = std::iter::once((MANIFEST_FILE, &manifest_entry)).chain(files.iter().map(|(path, file)| (path.as_str(), file)));
    for (path, file) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(if file.executable { MODE_EXECUTABLE } else { MODE_FILE });
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(file.contents.len() as u64);
        builder
            .append_data(&mut header, path, file.contents.as_slice())
            .map_err(|err| BundleError::Malformed(format!("cannot store `{path}`: {err}")))?;
    }
    builder.into_inner().map_err(|err| BundleError::Malformed(format!("cannot finish the archive: {err}")))
}

fn check_path(path: &str) -> Result<(), BundleError> {
    match relative_path_problem(path) {
        Some(problem) => Err(BundleError::Malformed(format!("path `{path}` {problem}"))),
        None => Ok(()),
    }
}

/// Unpacks a bundle into its files, the manifest left out, after checking every entry against
/// the manifest. Call [`verify`] first: this checks consistency, not origin.
///
/// # Errors
/// [`BundleError::Malformed`] for anything but regular files at relative paths inside the
/// bundle (no `..`, no absolute paths, no links or devices), a duplicate path, a missing or
/// invalid manifest, or a file missing from it, absent from the archive or with another hash
/// or size.
pub fn open(bundle: &[u8]) -> Result<BTreeMap<String, BundleFile>, BundleError> {
    let malformed = |what: String| BundleError::Malformed(what);
    let mut archive = tar::Archive::new(bundle);
    let entries = archive.entries().map_err(|err| malformed(format!("not a tar archive: {err}")))?;
    let mut files = BTreeMap::new();
    let mut manifest_bytes = None;
    for entry in entries {
        let mut entry = entry.map_err(|err| malformed(format!("unreadable entry: {err}")))?;
        let path = String::from_utf8(entry.path_bytes().into_owned()).map_err(|_| malformed("an entry's path is not UTF-8".to_owned()))?;
        check_path(&path)?;
        let kind = entry.header().entry_type();
        if kind != tar::EntryType::Regular {
            return Err(malformed(format!("`{path}` is a {kind:?} entry; bundles hold regular files only")));
        }
        let mode = entry.header().mode().map_err(|err| malformed(format!("`{path}` has an unreadable mode: {err}")))?;
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).map_err(|err| malformed(format!("cannot read `{path}`: {err}")))?;
        if path == MANIFEST_FILE {
            manifest_bytes = Some(contents);
            continue;
        }
        let file = BundleFile { contents, executable: mode & 0o111 != 0 };
        if files.insert(path.clone(), file).is_some() {
            return Err(malformed(format!("`{path}` appears twice")));
        }
    }
    let manifest_bytes = manifest_bytes.ok_or_else(|| malformed(format!("no {MANIFEST_FILE}")))?;
    let listed: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|err| malformed(format!("{MANIFEST_FILE} is not a manifest: {err}")))?;
    if listed.format != FORMAT {
        return Err(malformed(format!("unknown format `{}`; this build reads `{FORMAT}`", listed.format)));
    }
    let actual = manifest(&files);
    for (path, entry) in &listed.files {
        match actual.files.get(path) {
            None => return Err(malformed(format!("`{path}` is in the manifest but not in the archive"))),
            Some(found) if found != entry => return Err(malformed(format!("`{path}` does not match its manifest hash"))),
            Some(_) => {}
        }
    }
    if let Some(extra) = actual.files.keys().find(|path| !listed.files.contains_key(*path)) {
        return Err(malformed(format!("`{extra}` is not in the manifest")));
    }
    Ok(files)
}

fn signed_message(bundle: &[u8]) -> Vec<u8> {
    [SIGNED_PREFIX, digest(bundle).as_bytes()].concat()
}

/// Signs a bundle with an ed25519 key in PKCS#8 (v1 or v2) DER; the signature is 64 bytes.
///
/// # Errors
/// [`BundleError::Key`] when the key is not an ed25519 PKCS#8 key.
pub fn sign(bundle: &[u8], pkcs8_key: &[u8]) -> Result<Vec<u8>, BundleError> {
    let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8_key).map_err(|err| BundleError::Key(err.to_string()))?;
    Ok(key.sign(&signed_message(bundle)).as_ref().to_vec())
}

/// The 32-byte public key agents verify with, from the signing key.
///
/// # Errors
/// [`BundleError::Key`] when the key is not an ed25519 PKCS#8 key.
pub fn public_key(pkcs8_key: &[u8]) -> Result<Vec<u8>, BundleError> {
    let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8_key).map_err(|err| BundleError::Key(err.to_string()))?;
    Ok(key.public_key().as_ref().to_vec())
}

/// Checks that `signature` is the master's signature of `bundle`; returns the bundle's digest.
///
/// # Errors
/// [`BundleError::Unsigned`] for an empty signature, [`BundleError::Malformed`] for one that is
/// not 64 bytes, [`BundleError::Key`] for a public key that is not 32 bytes, and
/// [`BundleError::BadSignature`] when the bundle was changed or another key signed it.
pub fn verify(bundle: &[u8], signature: &[u8], public_key: &[u8]) -> Result<String, BundleError> {
    if signature.is_empty() {
        return Err(BundleError::Unsigned);
    }
    if signature.len() != 64 {
        return Err(BundleError::Malformed(format!("a signature is 64 bytes, this one is {}", signature.len())));
    }
    if public_key.len() != 32 {
        return Err(BundleError::Key(format!("an ed25519 public key is 32 bytes, this one is {}", public_key.len())));
    }
    UnparsedPublicKey::new(&ED25519, public_key).verify(&signed_message(bundle), signature).map_err(|_| BundleError::BadSignature)?;
    Ok(digest(bundle))
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;

    use super::*;

    fn key() -> Vec<u8> {
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("a key").as_ref().to_vec()
    }

    fn files(order: &[&str]) -> BTreeMap<String, BundleFile> {
        let all = [
            ("pattern.yaml", BundleFile::new(b"apiVersion: pmesh/v1\n".to_vec())),
            ("templates/zone.db.j2", BundleFile::new(b"$TTL {{ ttl }}\n".to_vec())),
            ("tools/configure.sh", BundleFile::executable(b"#!/bin/sh\n".to_vec())),
            (
                "a/very/long/path/that/does/not/fit/in/the/hundred/bytes/of/an/old/tar/header/name/field/file.txt",
                BundleFile::new(b"long".to_vec()),
            ),
        ];
        let mut map = BTreeMap::new();
        for name in order {
            let (path, file) = all.iter().find(|(path, _)| path.starts_with(name)).expect("known file");
            map.insert(path.to_string(), file.clone());
        }
        map
    }

    #[test]
    fn packing_is_deterministic_and_round_trips() {
        let forward = pack(&files(&["pattern", "templates", "tools", "a/"])).expect("packs");
        let backward = pack(&files(&["a/", "tools", "templates", "pattern"])).expect("packs");
        assert_eq!(forward, backward);
        assert_eq!(digest(&forward), digest(&backward));
        assert!(digest(&forward).starts_with("sha256:") && digest(&forward).len() == 71);
        let opened = open(&forward).expect("opens");
        assert_eq!(opened, files(&["pattern", "templates", "tools", "a/"]));
        assert!(opened["tools/configure.sh"].executable);

        let mut archive = tar::Archive::new(forward.as_slice());
        let headers: Vec<(String, u32, u64, u64)> = archive
            .entries()
            .expect("entries")
            .map(|entry| {
                let entry = entry.expect("entry");
                let header = entry.header();
                assert_eq!((header.uid().ok(), header.gid().ok()), (Some(0), Some(0)));
                assert_eq!(header.username_bytes().map(<[u8]>::len), Some(0));
                let path = String::from_utf8(entry.path_bytes().into_owned()).expect("utf-8");
                (path, header.mode().expect("mode"), header.mtime().expect("mtime"), header.size().expect("size"))
            })
            .collect();
        let names: Vec<&str> = headers.iter().map(|(path, ..)| path.as_str()).collect();
        assert_eq!(names[0], MANIFEST_FILE);
        assert!(names[1..].windows(2).all(|pair| pair[0] < pair[1]), "{names:?}");
        assert!(headers.iter().all(|(_, mode, mtime, _)| (*mode == 0o644 || *mode == 0o755) && *mtime == 0));
    }

    #[test]
    fn pack_refuses_bad_paths() {
        for (path, expected) in [
            ("../x", "malformed bundle: path `../x` must stay inside the pattern directory (no `..`)"),
            ("/etc/passwd", "malformed bundle: path `/etc/passwd` must be relative to the pattern directory, with `/` separators"),
            (MANIFEST_FILE, "malformed bundle: `MANIFEST.json` is reserved for the bundle's manifest"),
        ] {
            let files = BTreeMap::from([(path.to_owned(), BundleFile::new(b"x".to_vec()))]);
            assert_eq!(pack(&files).map_err(|err| err.to_string()), Err(expected.to_owned()), "{path}");
        }
    }

    #[test]
    fn signatures_bind_the_bundle_to_the_key() {
        let (master, other) = (key(), key());
        let bundle = pack(&files(&["pattern", "templates"])).expect("packs");
        let signature = sign(&bundle, &master).expect("signs");
        let public = public_key(&master).expect("public key");
        assert_eq!(verify(&bundle, &signature, &public), Ok(digest(&bundle)));

        let mut tampered = bundle.clone();
        let at = tampered.windows(4).position(|window| window == b"TTL ").expect("content in the archive");
        tampered[at] = b'X';
        assert_eq!(verify(&tampered, &signature, &public), Err(BundleError::BadSignature));
        let foreign = sign(&bundle, &other).expect("signs");
        assert_eq!(verify(&bundle, &foreign, &public), Err(BundleError::BadSignature));
        assert_eq!(verify(&bundle, &[], &public), Err(BundleError::Unsigned));
        assert!(matches!(verify(&bundle, &signature[..10], &public), Err(BundleError::Malformed(_))));
        assert!(matches!(verify(&bundle, &signature, &public[..8]), Err(BundleError::Key(_))));
        assert!(matches!(sign(&bundle, b"not a key"), Err(BundleError::Key(_))));
        // A tampered bundle is also refused by open, whatever the signature says.
        assert!(matches!(open(&tampered), Err(BundleError::Malformed(_))));
    }

    /// One entry of a hand-made archive: path, type and contents.
    type RawEntry<'a> = (&'a str, tar::EntryType, &'a [u8]);

    /// An archive written header by header, so tests can store what `pack` never would.
    fn raw(entries: &[RawEntry<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, contents) in entries {
            let mut header = tar::Header::new_gnu();
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(contents.len() as u64);
            header.set_cksum();
            builder.append(&header, *contents).expect("appends");
        }
        builder.into_inner().expect("finishes")
    }

    fn manifest_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let files = entries.iter().map(|(path, contents)| (path.to_string(), BundleFile::new(contents.to_vec()))).collect();
        serde_json::to_vec(&manifest(&files)).expect("serializes")
    }

    #[test]
    fn open_refuses_what_a_bundle_cannot_hold() {
        use tar::EntryType::{Regular, Symlink};
        let good = manifest_of(&[("pattern.yaml", b"x")]);
        let cases: Vec<(Vec<RawEntry<'_>>, &str)> = vec![
            (
                vec![(MANIFEST_FILE, Regular, &good), ("../pattern.yaml", Regular, b"x")],
                "path `../pattern.yaml` must stay inside the pattern directory (no `..`)",
            ),
            (
                vec![(MANIFEST_FILE, Regular, &good), ("/pattern.yaml", Regular, b"x")],
                "path `/pattern.yaml` must be relative to the pattern directory, with `/` separators",
            ),
            (
                vec![(MANIFEST_FILE, Regular, &good), ("pattern.yaml", Symlink, b"")],
                "`pattern.yaml` is a Symlink entry; bundles hold regular files only",
            ),
            (vec![("pattern.yaml", Regular, b"x")], "no MANIFEST.json"),
            (vec![(MANIFEST_FILE, Regular, &good), ("pattern.yaml", Regular, b"y")], "`pattern.yaml` does not match its manifest hash"),
            (vec![(MANIFEST_FILE, Regular, &good)], "`pattern.yaml` is in the manifest but not in the archive"),
            (
                vec![(MANIFEST_FILE, Regular, &good), ("pattern.yaml", Regular, b"x"), ("extra", Regular, b"")],
                "`extra` is not in the manifest",
            ),
            (
                vec![(MANIFEST_FILE, Regular, &good), ("pattern.yaml", Regular, b"x"), ("pattern.yaml", Regular, b"x")],
                "`pattern.yaml` appears twice",
            ),
            (
                vec![(MANIFEST_FILE, Regular, b"{}"), ("pattern.yaml", Regular, b"x")],
                "MANIFEST.json is not a manifest: missing field `format` at line 1 column 2",
            ),
        ];
        for (entries, expected) in cases {
            let got = open(&raw(&entries)).map(|files| files.into_keys().collect::<Vec<_>>());
            assert_eq!(got, Err(BundleError::Malformed(expected.to_owned())), "{expected}");
        }
        assert!(open(&raw(&[(MANIFEST_FILE, Regular, &good), ("pattern.yaml", Regular, b"x")])).is_ok());
    }
}
