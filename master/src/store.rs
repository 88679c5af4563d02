//! The master's state in sled: agents, join tokens, issued and revoked certificates.
//!
//! Records are this module's own serde types, stored as JSON and tagged with a schema version
//! (`"v": 1`); they are not the wire types. The `meta` tree holds `schema_version`, checked at
//! open, so a newer database is refused rather than misread. Nothing outside this module knows
//! that sled exists.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The schema this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// What the master remembers about an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub v: u32,
    pub name: String,
    /// `host:port` the master dials.
    pub address: String,
    pub labels: BTreeMap<String, String>,
    pub enrolled_at: i64,
    pub cert_serial: String,
    pub cert_not_after: i64,
    pub health: Health,
    pub last_seen: Option<i64>,
    pub last_error: Option<String>,
    pub facts: Option<FactsRecord>,
}

/// The outcome of the last check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Unknown,
    Up,
    Down,
}

/// The facts an agent last reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FactsRecord {
    pub hostname: String,
    pub os_id: String,
    pub os_version: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_free_bytes: u64,
    pub data_dir: String,
    pub docker_reachable: bool,
    pub docker_version: String,
    pub docker_error: String,
    pub agent_version: String,
}

/// A join token, stored by the sha256 of its text so the database never holds a usable token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub v: u32,
    pub created_at: i64,
    pub expires_at: i64,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub force: bool,
    /// Set when an agent joined with it; a used token is kept so a reuse can be named.
    pub used_at: Option<i64>,
    pub used_by: Option<String>,
}

/// A certificate the CA issued, kept so a name can be revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedRecord {
    pub v: u32,
    /// `pmesh://ROLE/NAME`.
    pub identity: String,
    pub not_after: i64,
    pub revoked_at: Option<i64>,
}

/// The master's database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    agents: sled::Tree,
    tokens: sled::Tree,
    certs: sled::Tree,
}

/// Why a token could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the join token is not known to this master")]
    Unknown,
    #[error("the join token was already used (by {by}); create a new one with `pmesh token create`")]
    Used { by: String },
    #[error("the join token expired; create a new one with `pmesh token create`")]
    Expired,
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    ///
    /// # Errors
    /// When sled cannot open it (another `pmesh serve` holds it), or its schema is newer than
    /// this build.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        let db =
            sled::open(dir).with_context(|| format!("opening the database in {} (is another `pmesh serve` running?)", dir.display()))?;
        let meta = db.open_tree("meta")?;
        match meta.get("schema_version")? {
            None => {
                meta.insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())?;
            }
            Some(found) => {
                let found: u32 = std::str::from_utf8(&found)?.parse()?;
                if found > SCHEMA_VERSION {
                    bail!("database schema {found} is newer than this pmesh ({SCHEMA_VERSION}); upgrade pmesh");
                }
            }
        }
        Ok(Store { agents: db.open_tree("agents")?, tokens: db.open_tree("tokens")?, certs: db.open_tree("certs")?, db })
    }

    /// The underlying database, for the stores of other modules.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Flushes to disk; called after every state change an operator waits on.
    ///
    /// # Errors
    /// When the disk fails.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.db.flush()?;
        Ok(())
    }

    // ---- agents

    pub fn agent(&self, name: &str) -> anyhow::Result<Option<AgentRecord>> {
        get(&self.agents, name)
    }

    pub fn agents(&self) -> anyhow::Result<Vec<AgentRecord>> {
        self.agents.iter().values().map(|value| decode(&value?)).collect()
    }

    pub fn put_agent(&self, record: &AgentRecord) -> anyhow::Result<()> {
        put(&self.agents, &record.name, record)
    }

    /// Applies `change` to an agent's record, if it still exists; a record removed meanwhile
    /// stays removed (a check finishing after `agents rm` must not bring it back).
    pub fn update_agent(&self, name: &str, change: impl Fn(&mut AgentRecord)) -> anyhow::Result<()> {
        let mut failure = None;
        self.agents.fetch_and_update(name, |old| {
            let old = old?;
            match decode::<AgentRecord>(old) {
                Ok(mut record) => {
                    change(&mut record);
                    serde_json::to_vec(&record).ok()
                }
                Err(err) => {
                    failure = Some(err);
                    Some(old.to_vec())
                }
            }
        })?;
        failure.map_or(Ok(()), Err)
    }

    pub fn remove_agent(&self, name: &str) -> anyhow::Result<Option<AgentRecord>> {
        self.agents.remove(name)?.map(|value| decode(&value)).transpose()
    }

    // ---- tokens

    pub fn put_token(&self, hash: &str, record: &TokenRecord) -> anyhow::Result<()> {
        put(&self.tokens, hash, record)
    }

    /// Marks a token used by `agent`, atomically: of two joins racing on one token, one wins.
    ///
    /// # Errors
    /// [`TokenError`] (inside the anyhow error) when the token is unknown, used or expired.
    pub fn consume_token(&self, hash: &str, agent: &str, now: i64) -> anyhow::Result<TokenRecord> {
        loop {
            let current = self.tokens.get(hash)?.ok_or(TokenError::Unknown)?;
            let mut record: TokenRecord = decode(&current)?;
            if let Some(by) = &record.used_by {
                return Err(TokenError::Used { by: by.clone() }.into());
            }
            if record.expires_at <= now {
                return Err(TokenError::Expired.into());
            }
            record.used_at = Some(now);
            record.used_by = Some(agent.to_owned());
            let new = serde_json::to_vec(&record)?;
            if self.tokens.compare_and_swap(hash, Some(current), Some(new))?.is_ok() {
                return Ok(record);
            }
        }
    }

    /// Looks a token up without using it.
    pub fn token(&self, hash: &str) -> anyhow::Result<Option<TokenRecord>> {
        get(&self.tokens, hash)
    }

    /// Drops tokens that expired before `cutoff`.
    pub fn purge_tokens(&self, cutoff: i64) -> anyhow::Result<usize> {
        let mut n_purged = 0;
        for entry in self.tokens.iter() {
            let (key, value) = entry?;
            let record: TokenRecord = decode(&value)?;
            if record.expires_at < cutoff {
                self.tokens.remove(key)?;
                n_purged += 1;
            }
        }
        Ok(n_purged)
    }

    // ---- certificates

    pub fn record_issued(&self, serial: &str, identity: &str, not_after: i64) -> anyhow::Result<()> {
        let record = IssuedRecord { v: SCHEMA_VERSION, identity: identity.to_owned(), not_after, revoked_at: None };
        put(&self.certs, serial, &record)
    }

    /// Revokes every unexpired certificate issued to `identity`; returns their serials.
    pub fn revoke_identity(&self, identity: &str, now: i64) -> anyhow::Result<Vec<String>> {
        let mut revoked = Vec::new();
        for entry in self.certs.iter() {
            let (key, value) = entry?;
            let mut record: IssuedRecord = decode(&value)?;
            if record.identity == identity && record.revoked_at.is_none() && record.not_after > now {
                record.revoked_at = Some(now);
                self.certs.insert(&key, serde_json::to_vec(&record)?)?;
                revoked.push(String::from_utf8_lossy(&key).into_owned());
            }
        }
        Ok(revoked)
    }

    /// Revokes one serial.
    pub fn revoke_serial(&self, serial: &str, now: i64) -> anyhow::Result<()> {
        if let Some(mut record) = get::<IssuedRecord>(&self.certs, serial)? {
            record.revoked_at.get_or_insert(now);
            put(&self.certs, serial, &record)?;
        }
        Ok(())
    }

    /// Whether `serial` was revoked. A serial this master never issued counts as revoked: the
    /// CA key signs nothing it does not record, so an unknown serial means the record was lost
    /// or the certificate did not come from this master.
    pub fn is_revoked(&self, serial: &str) -> anyhow::Result<bool> {
        Ok(get::<IssuedRecord>(&self.certs, serial)?.is_none_or(|record| record.revoked_at.is_some()))
    }

    /// Issued records whose identity is `identity`.
    pub fn issued_to(&self, identity: &str) -> anyhow::Result<Vec<(String, IssuedRecord)>> {
        let mut found = Vec::new();
        for entry in self.certs.iter() {
            let (key, value) = entry?;
            let record: IssuedRecord = decode(&value)?;
            if record.identity == identity {
                found.push((String::from_utf8_lossy(&key).into_owned(), record));
            }
        }
        Ok(found)
    }
}

fn get<T: DeserializeOwned>(tree: &sled::Tree, key: &str) -> anyhow::Result<Option<T>> {
    tree.get(key)?.map(|value| decode(&value)).transpose()
}

fn put<T: Serialize>(tree: &sled::Tree, key: &str, value: &T) -> anyhow::Result<()> {
    tree.insert(key, serde_json::to_vec(value)?)?;
    Ok(())
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).context("a database record does not decode; the database may be damaged")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_at: i64) -> TokenRecord {
        TokenRecord { v: 1, created_at: 0, expires_at, name: None, labels: BTreeMap::new(), force: false, used_at: None, used_by: None }
    }

    #[test]
    fn token_is_single_use_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_token("a", &token(100)).unwrap();
        store.put_token("b", &token(10)).unwrap();
        assert!(store.consume_token("a", "pc-1", 50).is_ok());
        let reuse = store.consume_token("a", "pc-2", 51).unwrap_err();
        assert_eq!(reuse.downcast_ref(), Some(&TokenError::Used { by: "pc-1".into() }));
        let expired = store.consume_token("b", "pc-3", 50).unwrap_err();
        assert_eq!(expired.downcast_ref(), Some(&TokenError::Expired));
        let unknown = store.consume_token("c", "pc-3", 50).unwrap_err();
        assert_eq!(unknown.downcast_ref(), Some(&TokenError::Unknown));
    }

    #[test]
    fn revocation_by_identity_and_unknown_serials() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.record_issued("01", "pmesh://admin/bob", 1000).unwrap();
        store.record_issued("02", "pmesh://admin/bob", 1000).unwrap();
        store.record_issued("03", "pmesh://admin/ann", 1000).unwrap();
        assert!(!store.is_revoked("01").unwrap());
        assert!(store.is_revoked("ff").unwrap(), "unknown serials are refused");
        let mut revoked = store.revoke_identity("pmesh://admin/bob", 10).unwrap();
        revoked.sort();
        assert_eq!(revoked, ["01", "02"]);
        assert!(store.is_revoked("02").unwrap());
        assert!(!store.is_revoked("03").unwrap());
    }

    /// Records written by schema v1 must keep decoding; this is the v1 layout, frozen.
    #[test]
    fn reads_schema_v1_records() {
        let agent = r#"{"v":1,"name":"pc-1","address":"10.0.0.5:7444","labels":{"site":"lab"},
            "enrolled_at":1,"cert_serial":"0a","cert_not_after":2,"health":"up","last_seen":3,
            "last_error":null,"facts":{"hostname":"pc-1","os_id":"photon","os_version":"5.0",
            "kernel":"6.1","arch":"x86_64","cpus":2,"memory_bytes":1,"disk_free_bytes":1,
            "data_dir":"/var/lib/pmesh-agent","docker_reachable":true,"docker_version":"24.0.9",
            "docker_error":"","agent_version":"0.1.0"}}"#;
        let record: AgentRecord = decode(agent.as_bytes()).unwrap();
        assert_eq!(record.health, Health::Up);
        assert_eq!(record.facts.unwrap().os_id, "photon");
        let token = r#"{"v":1,"created_at":1,"expires_at":2,"name":null,"labels":{},"force":false,
            "used_at":null,"used_by":null}"#;
        assert!(decode::<TokenRecord>(token.as_bytes()).is_ok());
        let issued = r#"{"v":1,"identity":"pmesh://agent/pc-1","not_after":2,"revoked_at":null}"#;
        assert!(decode::<IssuedRecord>(issued.as_bytes()).is_ok());
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta").unwrap().insert("schema_version", "99").unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
