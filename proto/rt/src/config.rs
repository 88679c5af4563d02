//! What both daemons' configuration checks share: a value out of its range as an error naming
//! the key, and the range checks for durations and counts, with ranges written the way the
//! files write durations (`100ms`, `1d`).

use std::time::Duration;

pub const MINUTE: Duration = Duration::from_secs(60);
pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// A configuration value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct InvalidValue {
    /// The key, as written in the file (`artifacts.retries`).
    pub key: String,
    /// Why the value is refused.
    pub reason: String,
}

/// A duration in its largest whole unit (`1d`, `90s`, `100ms`), as a range is written.
pub fn shown(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        _ if duration.subsec_nanos() != 0 => format!("{}ms", duration.as_millis()),
        0 => "0s".to_owned(),
        _ if secs.is_multiple_of(86_400) => format!("{}d", secs / 86_400),
        _ if secs.is_multiple_of(3600) => format!("{}h", secs / 3600),
        _ if secs.is_multiple_of(60) => format!("{}m", secs / 60),
        _ => format!("{secs}s"),
    }
}

/// `value` of `key` within `min..=max`.
///
/// # Errors
/// When it is not, with the bound it crosses.
pub fn within(key: &str, value: Duration, min: Duration, max: Duration) -> Result<(), InvalidValue> {
    if value >= min && value <= max {
        return Ok(());
    }
    let reason = match (value < min, min.is_zero()) {
        (true, false) if value.is_zero() => format!("must be longer than 0s (at least {})", shown(min)),
        (true, _) => format!("{} is out of range: at least {}", shown(value), shown(min)),
        (false, _) => format!("{} is out of range: at most {}", shown(value), shown(max)),
    };
    Err(InvalidValue { key: key.to_owned(), reason })
}

/// A count of `key` within `min..=max`.
///
/// # Errors
/// When it is not, with the range.
pub fn count(key: &str, value: u64, min: u64, max: u64) -> Result<(), InvalidValue> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    let range = if max == u64::MAX { format!("at least {min}") } else { format!("from {min} to {max}") };
    Err(InvalidValue { key: key.to_owned(), reason: format!("{value} is out of range: expected {range}") })
}
