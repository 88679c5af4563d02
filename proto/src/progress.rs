//! How far a transfer is: the one progress type of every byte transfer pmesh reports (an
//! artifact fetched by an agent, imported by the master, or uploaded by the CLI), from the
//! fetcher's callback through run events, both event stores and the wire, to the CLI.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// How far a transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Bytes of the artifact held so far, a resumed prefix included.
    pub done: u64,
    /// The artifact's size, when known. (Stores written before this type held 0 for
    /// unknown.)
    #[serde(default, deserialize_with = "zero_is_unknown")]
    pub total: Option<u64>,
    /// Bytes per second, smoothed; 0 until measured.
    pub rate: f64,
    /// Time left at `rate`, when both the size and a rate are known (whole seconds when
    /// stored).
    #[serde(rename = "eta_seconds", default, with = "eta_seconds")]
    pub eta: Option<Duration>,
}

impl std::fmt::Display for Progress {
    /// `412.0 MiB of 1.0 GiB, 98.2 MiB/s, ETA 6s`, leaving out what is unknown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", human_bytes(self.done))?;
        if let Some(total) = self.total {
            write!(f, " of {}", human_bytes(total))?;
        }
        if self.rate > 0.0 {
            write!(f, ", {}/s", human_bytes(self.rate as u64))?;
        }
        if let Some(eta) = self.eta {
            write!(f, ", ETA {}", humanise_seconds(eta.as_secs()))?;
        }
        Ok(())
    }
}

/// Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `11.0 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Seconds as `42s`, `3m07s` or `2h05m`.
pub fn humanise_seconds(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

impl Progress {
    /// The share done, in percent, when the total is known and not zero.
    pub fn percent(&self) -> Option<f64> {
        self.total.filter(|total| *total > 0).map(|total| self.done as f64 * 100.0 / total as f64)
    }

    /// The progress the wire's three numbers describe (`done_bytes`, `total_bytes`,
    /// `rate_bytes_per_second`; a total of 0 is unknown), the ETA derived from them.
    pub fn from_wire(done: u64, total: u64, rate: f64) -> Progress {
        let total = (total > 0).then_some(total);
        let eta = match total {
            Some(total) if rate > 0.0 => Some(Duration::from_secs_f64(total.saturating_sub(done) as f64 / rate)),
            _ => None,
        };
        Progress { done, total, rate, eta }
    }
}

fn zero_is_unknown<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<u64>::deserialize(deserializer)?.filter(|total| *total > 0))
}

mod eta_seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(eta: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match eta {
            Some(eta) => serializer.serialize_some(&eta.as_secs()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_what_is_known() {
        let full =
            Progress { done: 412 * 1024 * 1024, total: Some(1 << 30), rate: 98.2 * 1024.0 * 1024.0, eta: Some(Duration::from_secs(6)) };
        assert_eq!(full.to_string(), "412.0 MiB of 1.0 GiB, 98.2 MiB/s, ETA 6s");
        assert_eq!(Progress { done: 512, total: None, rate: 0.0, eta: None }.to_string(), "512 B");
    }

    #[test]
    fn reads_the_journal_records_written_before_it() {
        // The agent journal's TransferRecord: a total of 0 meant unknown.
        let old: Progress = serde_json::from_str(r#"{"done":10,"total":0,"rate":1.5,"eta_seconds":null}"#).unwrap();
        assert_eq!(old, Progress { done: 10, total: None, rate: 1.5, eta: None });
        let old: Progress = serde_json::from_str(r#"{"done":10,"total":40,"rate":1.5,"eta_seconds":20}"#).unwrap();
        assert_eq!(old, Progress { done: 10, total: Some(40), rate: 1.5, eta: Some(Duration::from_secs(20)) });
        let round = serde_json::to_string(&old).unwrap();
        assert_eq!(serde_json::from_str::<Progress>(&round).unwrap(), old);
    }

    #[test]
    fn the_wire_numbers_give_the_eta() {
        let progress = Progress::from_wire(10, 40, 10.0);
        assert_eq!((progress.total, progress.eta, progress.percent()), (Some(40), Some(Duration::from_secs(3)), Some(25.0)));
        assert_eq!(Progress::from_wire(10, 0, 10.0).eta, None);
    }
}
