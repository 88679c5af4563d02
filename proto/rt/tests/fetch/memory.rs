//! A [`RangeSource`] serving bytes from memory, as the agent's depot stream would, that can
//! break once mid-stream and records the offsets it was opened at.

use std::sync::Mutex;

use bytes::Bytes;
use futures_util::StreamExt;
use pmesh_rt::fetch::{ByteStream, FetchError, RangeSource};

pub struct MemorySource {
    body: Bytes,
    fail_at: Mutex<Option<u64>>,
    opens: Mutex<Vec<u64>>,
}

impl MemorySource {
    pub fn new(body: Vec<u8>) -> MemorySource {
        MemorySource { body: Bytes::from(body), fail_at: Mutex::new(None), opens: Mutex::new(Vec::new()) }
    }

    /// The next stream that passes `at` breaks there with a transient error.
    pub fn fail_once_at(&self, at: u64) {
        *self.fail_at.lock().expect("fail_at") = Some(at);
    }

    pub fn opens(&self) -> Vec<u64> {
        self.opens.lock().expect("opens").clone()
    }
}

#[async_trait::async_trait]
impl RangeSource for MemorySource {
    fn describe(&self) -> String {
        "the in-memory depot".into()
    }

    async fn open(&self, offset: u64) -> Result<ByteStream, FetchError> {
        self.opens.lock().expect("opens").push(offset);
        let len = self.body.len() as u64;
        let fail_at = {
            let mut fail_at = self.fail_at.lock().expect("fail_at");
            match *fail_at {
                Some(at) if at > offset && at < len => fail_at.take(),
                _ => None,
            }
        };
        let end = fail_at.unwrap_or(len).min(len);
        let start = offset.min(len);
        let mut items: Vec<Result<Bytes, FetchError>> = Vec::new();
        let mut at = start;
        while at < end {
            let next = (at + 64 * 1024).min(end);
            items.push(Ok(self.body.slice(at as usize..next as usize)));
            at = next;
        }
        if fail_at.is_some() {
            items.push(Err(FetchError::Network { origin: self.describe(), detail: "the stream was reset".into() }));
        }
        Ok(futures_util::stream::iter(items).boxed())
    }
}
