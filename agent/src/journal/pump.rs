//! The pump between a run's runner and the journal: events arrive on a bounded channel and
//! are journalled in batches.
//!
//! A batch the journal cannot write is never dropped. The pump retries it with backoff until
//! it is on disk, taking nothing more from the channel meanwhile, so the runner waits on a
//! full channel (and a container's output waits in its pipe) instead of events being lost.
//! A batch the journal accepted (numbered, held for a reopen) is waited for with
//! [`Sink::sync`], never appended twice. The condition itself is logged once and reported in
//! the agent's facts by the journal ([`super::Journal::problem`]); the pump logs only at debug
//! level, once per batch.

use std::time::Duration;

use tokio::sync::mpsc;

use super::{AppendError, Journal};
use crate::executor::events::Event;

/// The most events written to the journal in one flush.
pub const MAX_BATCH: usize = 512;
/// The first pause after a failed write; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where the pump writes: the journal, or a test's stand-in.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// Journals a batch (see [`Journal::append`]).
    async fn append(&self, batch: &[Event]) -> Result<u64, AppendError>;
    /// Makes every accepted batch durable (see [`Journal::sync`]).
    async fn sync(&self) -> Result<(), AppendError>;
}

#[async_trait::async_trait]
impl Sink for Journal {
    async fn append(&self, batch: &[Event]) -> Result<u64, AppendError> {
        Journal::append(self, batch).await
    }

    async fn sync(&self) -> Result<(), AppendError> {
        Journal::sync(self).await
    }
}

/// Journals every event `rx` carries, in batches of up to [`MAX_BATCH`], until the channel
/// closes and everything received is on disk.
pub async fn pump(sink: &dyn Sink, mut rx: mpsc::Receiver<Event>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        write(sink, &batch).await;
    }
}

/// Writes one batch, retrying with backoff until it is durable.
async fn write(sink: &dyn Sink, batch: &[Event]) {
    let mut backoff = FIRST_BACKOFF;
    let mut accepted = false;
    let mut failures = 0u32;
    loop {
        let result = if accepted { sink.sync().await } else { sink.append(batch).await.map(drop) };
        match result {
            Ok(()) => {
                if failures > 0 {
                    tracing::debug!(events = batch.len(), failures, "a held batch is journalled");
                }
                return;
            }
            Err(err) => {
                accepted |= err.accepted;
                if failures == 0 {
                    tracing::debug!(events = batch.len(), error = %err, "journalling a batch failed; holding it and retrying");
                }
                failures = failures.saturating_add(1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::events::EventKind;
    use std::sync::Mutex;
    use std::time::SystemTime;

    /// A journal whose disk fails `fail_appends` times (refused), then `fail_syncs` flushes of
    /// an accepted batch (the first of those fails inside the append), then works.
    #[derive(Default)]
    struct Flaky {
        fail_appends: Mutex<u32>,
        fail_syncs: Mutex<u32>,
        journalled: Mutex<Vec<String>>,
        calls: Mutex<Vec<&'static str>>,
        /// Batches accepted but not yet durable.
        held: Mutex<Vec<String>>,
    }

    fn full() -> anyhow::Error {
        anyhow::Error::new(std::io::Error::from_raw_os_error(28))
    }

    #[async_trait::async_trait]
    impl Sink for Flaky {
        async fn append(&self, batch: &[Event]) -> Result<u64, AppendError> {
            self.calls.lock().unwrap().push("append");
            {
                let mut refusals = self.fail_appends.lock().unwrap();
                if *refusals > 0 {
                    *refusals -= 1;
                    return Err(AppendError::refused(full()));
                }
            }
            let lines = batch.iter().map(|event| format!("{:?}", event.kind));
            self.held.lock().unwrap().extend(lines);
            self.sync().await?;
            Ok(self.journalled.lock().unwrap().len() as u64)
        }

        async fn sync(&self) -> Result<(), AppendError> {
            self.calls.lock().unwrap().push("sync");
            {
                let mut failures = self.fail_syncs.lock().unwrap();
                if *failures > 0 {
                    *failures -= 1;
                    return Err(AppendError::accepted(full()));
                }
            }
            let held: Vec<String> = self.held.lock().unwrap().drain(..).collect();
            self.journalled.lock().unwrap().extend(held);
            Ok(())
        }
    }

    fn log(line: usize) -> Event {
        Event { at: SystemTime::now(), run_id: "r1".into(), kind: EventKind::Log { step: "s".into(), line: line.to_string() } }
    }

    /// The bug this replaces: a failed write dropped the batch. Refused batches are appended
    /// again, accepted ones only waited for; every event arrives once, in order, and the
    /// runner's sends wait on the full channel meanwhile.
    #[tokio::test(start_paused = true)]
    async fn a_failed_write_is_retried_not_dropped_and_never_doubled() {
        let sink = std::sync::Arc::new(Flaky { fail_appends: Mutex::new(3), fail_syncs: Mutex::new(4), ..Flaky::default() });
        let (tx, rx) = mpsc::channel(4);
        let pumping = {
            let sink = sink.clone();
            tokio::spawn(async move { pump(sink.as_ref(), rx).await })
        };
        let n_events = 2 * MAX_BATCH + 7;
        for line in 0..n_events {
            tx.send(log(line)).await.expect("the pump holds the receiver until the channel closes");
        }
        drop(tx);
        pumping.await.unwrap();

        let journalled = sink.journalled.lock().unwrap().clone();
        let expected: Vec<String> = (0..n_events).map(|line| format!("{:?}", log(line).kind)).collect();
        assert_eq!(journalled, expected, "every event once, in order");
        let calls = sink.calls.lock().unwrap().clone();
        let appends = calls.iter().filter(|call| **call == "append").count();
        // Three refusals, then one accepted append per batch; the failed syncs retry as syncs.
        assert_eq!(&calls[..4], ["append", "append", "append", "append"]);
        assert_eq!(&calls[4..9], ["sync", "sync", "sync", "sync", "sync"], "an accepted batch is synced, not appended again");
        assert!(appends >= 3 + 3, "the three refused attempts and at least one append per batch: {calls:?}");
    }
}
