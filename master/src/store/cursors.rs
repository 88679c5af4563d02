//! The agents' journal cursors (`Namespace::Cursors`): agent → the last sequence number
//! persisted from its journal, and which journal that is.
//!
//! The value is the 8-byte big-endian sequence number, followed by the journal's id when the
//! master has learnt it (an agent announces it on every event stream). A record of 8 bytes
//! alone, written before journals had ids, is adopted by the first id seen. A different id
//! means another journal under the same agent name (the host installed again and enrolled
//! with a `--force` token): its numbers start again at 1, so the cursor starts again at 0.

use super::{Namespace, Store, Txn};

/// A decoded cursor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Cursor {
    pub(super) seq: u64,
    pub(super) journal: Option<String>,
}

impl Cursor {
    /// Absent or malformed is 0 of no known journal.
    pub(super) fn decode(value: Option<&[u8]>) -> Cursor {
        let Some(value) = value.filter(|value| value.len() >= 8) else { return Cursor::default() };
        let (seq, journal) = value.split_at(8);
        let seq = u64::from_be_bytes(seq.try_into().expect("split at 8"));
        let journal = std::str::from_utf8(journal).ok().filter(|id| !id.is_empty()).map(str::to_owned);
        Cursor { seq, journal }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut value = self.seq.to_be_bytes().to_vec();
        value.extend_from_slice(self.journal.as_deref().unwrap_or_default().as_bytes());
        value
    }

    /// The same journal, moved to `seq`.
    pub(super) fn at(&self, seq: u64) -> Cursor {
        Cursor { seq, journal: self.journal.clone() }
    }
}

impl Store {
    /// The last sequence number persisted from `agent`'s journal (0 for none).
    ///
    /// # Errors
    /// When the database fails.
    pub fn cursor(&self, agent: &str) -> anyhow::Result<u64> {
        Ok(Cursor::decode(self.backend.get(Namespace::Cursors, agent.as_bytes())?.as_deref()).seq)
    }

    /// Records that `agent`'s events now come from the journal `journal`; returns the cursor
    /// to follow it from, which is 0 when the cursor was into another journal.
    ///
    /// # Errors
    /// When the database fails.
    pub fn follow_journal(&self, agent: &str, journal: &str) -> anyhow::Result<u64> {
        loop {
            let stored = self.backend.get(Namespace::Cursors, agent.as_bytes())?;
            let cursor = Cursor::decode(stored.as_deref());
            let next = match cursor.journal.as_deref() {
                Some(known) if known == journal => return Ok(cursor.seq),
                Some(known) => {
                    tracing::warn!(
                        agent,
                        old_journal = known,
                        new_journal = journal,
                        old_cursor = cursor.seq,
                        "the agent's journal is another one (the host was installed again); following it from its start"
                    );
                    Cursor { seq: 0, journal: Some(journal.to_owned()) }
                }
                None => Cursor { seq: cursor.seq, journal: Some(journal.to_owned()) },
            };
            let mut txn = Txn::default();
            txn.compare(Namespace::Cursors, agent.as_bytes(), stored);
            txn.put(Namespace::Cursors, agent.as_bytes(), next.encode());
            if self.backend.commit(&txn)? {
                return Ok(next.seq);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_cursor_reads_as_its_number_of_no_journal() {
        let cursor = Cursor::decode(Some(&42u64.to_be_bytes()));
        assert_eq!(cursor, Cursor { seq: 42, journal: None });
        assert_eq!(cursor.encode(), 42u64.to_be_bytes().to_vec());
    }

    #[test]
    fn a_cursor_round_trips_with_its_journal() {
        let cursor = Cursor { seq: 7, journal: Some("abc".to_owned()) };
        assert_eq!(Cursor::decode(Some(&cursor.encode())), cursor);
        assert_eq!(Cursor::decode(Some(b"short")), Cursor::default());
        assert_eq!(Cursor::decode(None), Cursor::default());
    }
}
