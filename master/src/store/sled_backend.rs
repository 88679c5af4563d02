//! The [`Backend`] over sled: one tree per [`Namespace`], named as the master's database has
//! always named them, so existing databases open unchanged. This is the only file of the
//! master that uses sled.

use std::path::Path;

use anyhow::Context;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::backend::{Backend, Namespace, Txn};

/// The master's sled database.
pub struct SledBackend {
    db: sled::Db,
    /// Indexed by [`Namespace::index`].
    trees: Vec<sled::Tree>,
}

impl SledBackend {
    /// Opens (or creates) the database in `dir`.
    ///
    /// # Errors
    /// When sled cannot open it (another `pmesh serve` holds it).
    pub fn open(dir: &Path) -> anyhow::Result<SledBackend> {
        let db =
            sled::open(dir).with_context(|| format!("opening the database in {} (is another `pmesh serve` running?)", dir.display()))?;
        let trees = Namespace::ALL.iter().map(|namespace| db.open_tree(namespace.name())).collect::<Result<Vec<_>, _>>()?;
        Ok(SledBackend { db, trees })
    }

    fn tree(&self, namespace: Namespace) -> &sled::Tree {
        &self.trees[namespace.index()]
    }
}

impl Backend for SledBackend {
    fn get(&self, namespace: Namespace, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.tree(namespace).get(key)?.map(|value| value.to_vec()))
    }

    fn scan(&self, namespace: Namespace, prefix: &[u8], start: &[u8]) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut found = Vec::new();
        for entry in self.tree(namespace).range(start..) {
            let (key, value) = entry?;
            if !key.starts_with(prefix) {
                break;
            }
            found.push((key.to_vec(), value.to_vec()));
        }
        Ok(found)
    }

    fn put(&self, namespace: Namespace, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        self.tree(namespace).insert(key, value)?;
        Ok(())
    }

    fn remove(&self, namespace: Namespace, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.tree(namespace).remove(key)?.map(|value| value.to_vec()))
    }

    fn compare_and_swap(&self, namespace: Namespace, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> anyhow::Result<bool> {
        Ok(self.tree(namespace).compare_and_swap(key, expected, new)?.is_ok())
    }

    fn commit(&self, txn: &Txn) -> anyhow::Result<bool> {
        // A sled transaction spans the trees it is given; each namespace involved is given once.
        let mut involved: Vec<Namespace> =
            txn.compares.iter().map(|compare| compare.namespace).chain(txn.writes.iter().map(|write| write.namespace)).collect();
        involved.sort();
        involved.dedup();
        let trees: Vec<&sled::Tree> = involved.iter().map(|namespace| self.tree(*namespace)).collect();
        let position = |namespace: Namespace| involved.binary_search(&namespace).expect("every namespace of the txn is involved");
        let result = trees[..].transaction(|views| {
            for compare in &txn.compares {
                let current = views[position(compare.namespace)].get(&compare.key)?;
                if current.as_deref() != compare.expected.as_deref() {
                    return Err(ConflictableTransactionError::Abort(()));
                }
            }
            for write in &txn.writes {
                let view = &views[position(write.namespace)];
                match &write.value {
                    Some(value) => view.insert(write.key.as_slice(), value.as_slice())?,
                    None => view.remove(write.key.as_slice())?,
                };
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(true),
            Err(TransactionError::Abort(())) => Ok(false),
            Err(TransactionError::Storage(err)) => Err(err.into()),
        }
    }

    fn flush(&self) -> anyhow::Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
