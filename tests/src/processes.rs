//! Watching this machine's processes for secrets while a run goes on: every process's
//! command line (and, where a test asks, its environment), as `ps` and anyone on the host can
//! read them, sampled until the watch is finished.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Watches the processes' `/proc/PID/{parts}` for any of the needles until finished.
pub struct Watch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Watch {
    /// Starts watching for `needles` in `parts` (`cmdline`, `environ`) of every process. A
    /// test gives a marker it knows is there (a tool's own command line) besides its secrets,
    /// so that a watch that sees nothing cannot pass for one that found nothing.
    pub fn start(needles: Vec<String>, parts: &'static [&'static str]) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop_flag, found) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let mut scans = 0;
            while !stop_flag.load(Ordering::SeqCst) {
                for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    for part in parts {
                        let Ok(bytes) = std::fs::read(entry.path().join(part)) else { continue };
                        let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
                        if needles.iter().any(|needle| text.contains(needle.as_str())) {
                            found.lock().expect("lock").push(format!("{}/{part}: {text}", entry.path().display()));
                        }
                    }
                }
                scans += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            scans
        });
        Watch { stop, seen, thread: Some(thread) }
    }

    /// Stops watching; the number of scans made and what was seen.
    ///
    /// # Panics
    /// When the watching thread panicked.
    pub fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let scans = self.thread.take().map(|thread| thread.join().expect("the watch thread")).unwrap_or(0);
        let seen = self.seen.lock().expect("lock").clone();
        (scans, seen)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
