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

/// A duration as a configuration file writes it: [`shown`]'s largest whole unit (`365d`, not
/// humantime's `11months 30days 3h 50m 24s`), unless it has a part below a millisecond,
/// which humantime's form keeps exactly.
pub fn written(duration: Duration) -> String {
    if duration.subsec_nanos().is_multiple_of(1_000_000) {
        shown(duration)
    } else {
        humantime::format_duration(duration).to_string()
    }
}

/// Serde for a configuration's durations: written with [`written`], read as humantime reads
/// them (`30d`, `2h 30m`, `100ms`), so a file pmesh writes says what a person would.
/// `#[serde(with = "pmesh_rt::config::duration")]`.
pub mod duration {
    use std::time::Duration;

    /// # Errors
    /// The serializer's.
    pub fn serialize<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::written(*value))
    }

    /// # Errors
    /// When the text is not a duration humantime reads.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        humantime_serde::deserialize(deserializer)
    }
}

/// Every setting of `config` that differs from `T::default()`, as `key = value` with dotted
/// keys (`artifacts.retries = 5`): what a daemon logs at start. Only what `T` serializes is
/// seen, so a secret the type skips (a registry password) never shows.
pub fn non_defaults<T: serde::Serialize + Default>(config: &T) -> Vec<String> {
    let (Ok(actual), Ok(default)) = (toml::Value::try_from(config), toml::Value::try_from(T::default())) else {
        return Vec::new();
    };
    let mut settings = Vec::new();
    differences("", &actual, Some(&default), &mut settings);
    settings
}

fn differences(key: &str, actual: &toml::Value, default: Option<&toml::Value>, settings: &mut Vec<String>) {
    match (actual, default) {
        (toml::Value::Table(table), default) if !table.is_empty() => {
            for (name, value) in table {
                let dotted = if key.is_empty() { name.clone() } else { format!("{key}.{name}") };
                let default = default.and_then(|default| default.get(name));
                differences(&dotted, value, default, settings);
            }
        }
        (value, default) if Some(value) != default => settings.push(format!("{key} = {value}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        #[serde(with = "duration")]
        lifetime: Duration,
        nested: Nested,
        #[serde(skip)]
        secret: String,
    }

    #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Nested {
        retries: u32,
        name: Option<String>,
    }

    impl Default for Sample {
        fn default() -> Self {
            Sample { lifetime: 30 * DAY, nested: Nested::default(), secret: String::new() }
        }
    }

    #[test]
    fn durations_are_written_as_people_write_them_and_read_back() {
        for (duration, text) in
            [(365 * DAY, "365d"), (15 * MINUTE, "15m"), (Duration::from_millis(100), "100ms"), (Duration::from_secs(90), "90s")]
        {
            assert_eq!(written(duration), text);
            let sample = Sample { lifetime: duration, ..Sample::default() };
            let toml_text = toml::to_string(&sample).unwrap();
            assert!(toml_text.contains(&format!("lifetime = \"{text}\"")), "{toml_text}");
            assert_eq!(toml::from_str::<Sample>(&toml_text).unwrap(), sample);
        }
        assert_eq!(written(Duration::from_micros(1500)), "1ms 500us");
    }

    #[test]
    fn only_settings_that_differ_from_the_defaults_are_listed() {
        assert!(non_defaults(&Sample::default()).is_empty());
        let changed = Sample { lifetime: 365 * DAY, nested: Nested { retries: 5, name: Some("x".into()) }, secret: "hunter2".into() };
        assert_eq!(non_defaults(&changed), ["lifetime = \"365d\"", "nested.name = \"x\"", "nested.retries = 5"]);
    }
}
