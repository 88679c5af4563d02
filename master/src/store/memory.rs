//! A [`Backend`] in memory, for tests: a second implementation of the seam, so the store's
//! interface tests run against more than sled and a backend-specific assumption shows.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::backend::{Backend, Namespace, Txn};

type Entries = BTreeMap<(Namespace, Vec<u8>), Vec<u8>>;

/// Every namespace in one ordered map under one lock: a transaction holds the lock throughout.
#[derive(Default)]
pub struct MemoryBackend {
    entries: Mutex<Entries>,
}

impl MemoryBackend {
    fn entries(&self) -> MutexGuard<'_, Entries> {
        // Every change is one insert or remove: a panic cannot leave half of one behind.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for MemoryBackend {
    fn get(&self, namespace: Namespace, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.entries().get(&(namespace, key.to_vec())).cloned())
    }

    fn scan(&self, namespace: Namespace, prefix: &[u8], start: &[u8]) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .entries()
            .range((namespace, start.to_vec())..)
            .take_while(|((found, key), _)| *found == namespace && key.starts_with(prefix))
            .map(|((_, key), value)| (key.clone(), value.clone()))
            .collect())
    }

    fn put(&self, namespace: Namespace, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        self.entries().insert((namespace, key.to_vec()), value.to_vec());
        Ok(())
    }

    fn remove(&self, namespace: Namespace, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.entries().remove(&(namespace, key.to_vec())))
    }

    fn compare_and_swap(&self, namespace: Namespace, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> anyhow::Result<bool> {
        let mut entries = self.entries();
        let key = (namespace, key.to_vec());
        if entries.get(&key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        match new {
            Some(value) => entries.insert(key, value.to_vec()),
            None => entries.remove(&key),
        };
        Ok(true)
    }

    fn commit(&self, txn: &Txn) -> anyhow::Result<bool> {
        let mut entries = self.entries();
        let holds = txn.compares.iter().all(|compare| entries.get(&(compare.namespace, compare.key.clone())) == compare.expected.as_ref());
        if !holds {
            return Ok(false);
        }
        for write in &txn.writes {
            let key = (write.namespace, write.key.clone());
            match &write.value {
                Some(value) => entries.insert(key, value.clone()),
                None => entries.remove(&key),
            };
        }
        Ok(true)
    }

    fn flush(&self) -> anyhow::Result<()> {
        Ok(())
    }
}
