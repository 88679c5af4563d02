//! Agents, join tokens, and issued and revoked certificates.
//!
//! A token is used once: [`Store::consume_token`] swaps the unused record for the used one
//! with compare-and-swap, so of two joins racing on one token (on one master or several) one
//! wins and the other sees it used.

use super::records::{AgentRecord, IssuedRecord, TokenRecord};
use super::{decode, encode, Namespace, Store, SCHEMA_VERSION};

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
    /// The agent named `name`.
    ///
    /// # Errors
    /// When the database fails or the record does not decode.
    pub fn agent(&self, name: &str) -> anyhow::Result<Option<AgentRecord>> {
        self.get(name)
    }

    /// Every agent, by name.
    ///
    /// # Errors
    /// When the database fails or a record does not decode.
    pub fn agents(&self) -> anyhow::Result<Vec<AgentRecord>> {
        Ok(self.all()?.into_iter().map(|(_, record)| record).collect())
    }

    /// Records an agent (enrolment); replaces one of the same name.
    ///
    /// # Errors
    /// When the database fails.
    pub fn put_agent(&self, record: &AgentRecord) -> anyhow::Result<()> {
        self.put(&record.name, record)
    }

    /// Applies `change` to an agent's record, if it still exists; a record removed meanwhile
    /// stays removed (a check finishing after `agents rm` must not bring it back).
    ///
    /// # Errors
    /// When the database fails or the record does not decode.
    pub fn update_agent(&self, name: &str, change: impl Fn(&mut AgentRecord)) -> anyhow::Result<()> {
        self.update(name, change).map(drop)
    }

    /// Removes an agent's record, and the cursor into its journal; returns the record.
    ///
    /// An agent enrolled again under the name starts a new journal at 1: an old cursor would
    /// make the master skip its first events as replays.
    ///
    /// # Errors
    /// When the database fails or the record does not decode.
    pub fn remove_agent(&self, name: &str) -> anyhow::Result<Option<AgentRecord>> {
        let removed = self.remove(name)?;
        self.backend.remove(Namespace::Cursors, name.as_bytes())?;
        // Its instances go with it: a re-enrolled agent starts with none.
        for (key, _) in self.backend.scan(Namespace::Instances, format!("{name}/").as_bytes(), b"")? {
            self.backend.remove(Namespace::Instances, &key)?;
        }
        Ok(removed)
    }

    /// Records a new token under the sha256 of its text.
    ///
    /// # Errors
    /// When the database fails.
    pub fn put_token(&self, hash: &str, record: &TokenRecord) -> anyhow::Result<()> {
        self.put(hash, record)
    }

    /// Marks a token used by `agent`, atomically: of two joins racing on one token, one wins.
    ///
    /// # Errors
    /// [`TokenError`] (inside the anyhow error) when the token is unknown, used or expired.
    pub fn consume_token(&self, hash: &str, agent: &str, now: i64) -> anyhow::Result<TokenRecord> {
        loop {
            let current = self.backend.get(Namespace::Tokens, hash.as_bytes())?.ok_or(TokenError::Unknown)?;
            let mut record: TokenRecord = decode(&current)?;
            if let Some(by) = &record.used_by {
                return Err(TokenError::Used { by: by.clone() }.into());
            }
            if record.expires_at <= now {
                return Err(TokenError::Expired.into());
            }
            record.used_at = Some(now);
            record.used_by = Some(agent.to_owned());
            if self.backend.compare_and_swap(Namespace::Tokens, hash.as_bytes(), Some(&current), Some(&encode(&record)?))? {
                return Ok(record);
            }
        }
    }

    /// Looks a token up without using it.
    ///
    /// # Errors
    /// When the database fails or the record does not decode.
    pub fn token(&self, hash: &str) -> anyhow::Result<Option<TokenRecord>> {
        self.get(hash)
    }

    /// Drops tokens that expired before `cutoff`; returns how many.
    ///
    /// # Errors
    /// When the database fails or a record does not decode.
    pub fn purge_tokens(&self, cutoff: i64) -> anyhow::Result<usize> {
        let mut n_purged = 0;
        for (hash, record) in self.all::<TokenRecord>()? {
            if record.expires_at < cutoff {
                self.backend.remove(Namespace::Tokens, hash.as_bytes())?;
                n_purged += 1;
            }
        }
        Ok(n_purged)
    }

    /// Records a certificate the CA issued.
    ///
    /// # Errors
    /// When the database fails.
    pub fn record_issued(&self, serial: &str, identity: &str, not_after: i64) -> anyhow::Result<()> {
        let record = IssuedRecord { v: SCHEMA_VERSION, identity: identity.to_owned(), not_after, revoked_at: None };
        self.put(serial, &record)
    }

    /// Revokes every unexpired certificate issued to `identity`; returns their serials.
    ///
    /// # Errors
    /// When the database fails or a record does not decode.
    pub fn revoke_identity(&self, identity: &str, now: i64) -> anyhow::Result<Vec<String>> {
        let mut revoked = Vec::new();
        for (serial, record) in self.issued_to(identity)? {
            if record.revoked_at.is_none() && record.not_after > now {
                self.revoke_serial(&serial, now)?;
                revoked.push(serial);
            }
        }
        Ok(revoked)
    }

    /// Revokes one serial (keeping the first revocation's time).
    ///
    /// # Errors
    /// When the database fails or the record does not decode.
    pub fn revoke_serial(&self, serial: &str, now: i64) -> anyhow::Result<()> {
        self.update::<IssuedRecord>(serial, |record| {
            record.revoked_at.get_or_insert(now);
        })
        .map(drop)
    }

    /// Whether `serial` was revoked. A serial this master never issued counts as revoked: the
    /// CA key signs nothing it does not record, so an unknown serial means the record was lost
    /// or the certificate did not come from this master.
    ///
    /// # Errors
    /// When the database fails or the record does not decode.
    pub fn is_revoked(&self, serial: &str) -> anyhow::Result<bool> {
        Ok(self.certificate(serial)? != CertStatus::Valid)
    }

    /// What this master's records say of the certificate with `serial`.
    ///
    /// # Errors
    /// When the database fails or the record does not decode.
    pub fn certificate(&self, serial: &str) -> anyhow::Result<CertStatus> {
        Ok(match self.get::<IssuedRecord>(serial)? {
            None => CertStatus::Unknown,
            Some(IssuedRecord { revoked_at: Some(at), .. }) => CertStatus::Revoked { at },
            Some(_) => CertStatus::Valid,
        })
    }

    /// Issued records whose identity is `identity`, with their serials.
    ///
    /// # Errors
    /// When the database fails or a record does not decode.
    pub fn issued_to(&self, identity: &str) -> anyhow::Result<Vec<(String, IssuedRecord)>> {
        Ok(self.all::<IssuedRecord>()?.into_iter().filter(|(_, record)| record.identity == identity).collect())
    }
}

/// What the master's records say of a presented certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Issued by this master and not revoked.
    Valid,
    /// Issued by this master and revoked at this time (unix seconds).
    Revoked { at: i64 },
    /// Not issued by this master: the CA key signs nothing this master does not record, so
    /// the record was lost or another master with the same CA issued it.
    Unknown,
}
