//! Group commit: many tasks that each need "my writes are on disk" share one flush.
//!
//! A flush (sled's `Db::flush`, an fsync) costs the same for one write as for a thousand, so
//! callers that arrive while a flush runs wait for the next one and are all answered by it.
//! It also keeps the daemons off sled 0.34's `flush_async`, which can deadlock when several
//! tasks await it at once (spacejam/sled#1308): the flush here is the blocking one, run on
//! tokio's blocking pool, and only one runs at a time.
//!
//! Correctness rests on a ticket taken *after* the caller's writes: a flush that starts after
//! ticket `t` was taken covers every write made before `t`, so it may answer `t`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;

type FlushFn = dyn Fn() -> std::io::Result<()> + Send + Sync;

/// One flush, shared by everyone who asked before it started.
#[derive(Clone)]
pub struct GroupFlush {
    inner: Arc<Inner>,
}

struct Inner {
    flush: Arc<FlushFn>,
    /// The last ticket handed out.
    requested: AtomicU64,
    /// Every ticket up to this one is durable.
    completed: AtomicU64,
    /// Held by the one task flushing; a FIFO, so waiters are answered in order.
    leader: tokio::sync::Mutex<()>,
}

impl GroupFlush {
    /// Shares `flush`, which must make every write made before it was called durable.
    pub fn new(flush: impl Fn() -> std::io::Result<()> + Send + Sync + 'static) -> GroupFlush {
        GroupFlush {
            inner: Arc::new(Inner {
                flush: Arc::new(flush),
                requested: AtomicU64::new(0),
                completed: AtomicU64::new(0),
                leader: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Returns once every write this task made before the call is durable.
    ///
    /// # Errors
    /// When the flush fails; a later call tries again.
    pub async fn flush(&self) -> anyhow::Result<()> {
        let inner = &self.inner;
        let ticket = inner.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _leader = inner.leader.lock().await;
        if inner.completed.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        // Every ticket handed out so far was taken after its writes: this flush covers them.
        let covers = inner.requested.load(Ordering::SeqCst);
        let flush = inner.flush.clone();
        tokio::task::spawn_blocking(move || flush()).await.context("the flush task panicked")?.context("flushing to disk")?;
        inner.completed.fetch_max(covers, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_flushes_and_all_return() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let counted = flushes.clone();
        let group = GroupFlush::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            Ok(())
        });
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let group = group.clone();
            tasks.spawn(async move { group.flush().await });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap().unwrap();
        }
        let flushes = flushes.load(Ordering::SeqCst);
        assert!((1..200).contains(&flushes), "200 callers were answered by {flushes} flushes");
    }

    #[tokio::test]
    async fn a_failed_flush_is_reported_and_the_next_call_flushes_again() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let group =
            GroupFlush::new(
                move || {
                    if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                        Err(std::io::Error::other("disk on fire"))
                    } else {
                        Ok(())
                    }
                },
            );
        let error = group.flush().await.unwrap_err();
        assert!(format!("{error:#}").contains("disk on fire"), "{error:#}");
        group.flush().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
