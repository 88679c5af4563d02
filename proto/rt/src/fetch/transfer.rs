//! Getting an artifact's bytes into its partial file: sources in order, attempts on each with
//! backoff, every attempt resuming from what the partial holds, and the result verified.
//!
//! Per source: a transient failure (broken connection, stall, 5xx) is retried after a backoff
//! from where the bytes stopped; an attempt that moved bytes forward does not count against
//! `max_attempts` and starts the backoff over, since resuming makes it progress rather than a
//! repeat. A permanent failure (refused credentials, not found, TLS, wrong content) moves on
//! to the next source at once. A local failure (disk full, I/O) ends the fetch: no source
//! would help.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;

use super::error::Disposition;
use super::http::{self, Opened};
use super::partial::{check_space, Partial};
use super::progress::Meter;
use super::source::{ByteStream, Source};
use super::{FetchConfig, FetchError};

/// What the caller knows of the artifact.
pub(crate) struct Expected {
    pub(crate) sha256: Option<String>,
    pub(crate) size: Option<u64>,
}

/// The partial's content, verified against [`Expected`].
pub(crate) struct Verified {
    pub(crate) sha256: String,
    pub(crate) size: u64,
}

/// What every download shares: the HTTP client and the limits.
pub(crate) struct Settings {
    pub(crate) client: reqwest::Client,
    pub(crate) config: FetchConfig,
}

/// Fills `partial` from the first source that can serve the artifact, and verifies it.
pub(crate) async fn download(
    settings: &Settings,
    sources: &[Source],
    partial: &mut Partial,
    expected: &Expected,
    meter: &mut Meter<'_>,
) -> Result<Verified, FetchError> {
    let mut failures = Vec::new();
    for source in sources {
        let origin = source.describe();
        match from_source(settings, source, &origin, partial, expected, meter).await {
            Ok(verified) => return Ok(verified),
            Err(error) if error.disposition() == Disposition::Stop => return Err(error),
            Err(error) => {
                tracing::warn!(%origin, %error, "source failed");
                failures.push((origin, error));
            }
        }
    }
    Err(FetchError::AllSourcesFailed(failures))
}

async fn from_source(
    settings: &Settings,
    source: &Source,
    origin: &str,
    partial: &mut Partial,
    expected: &Expected,
    meter: &mut Meter<'_>,
) -> Result<Verified, FetchError> {
    let config = &settings.config;
    let mut delays = backoff(config);
    let mut failed_attempts = 0u32;
    let mut restarted = false;
    loop {
        let before = partial.len();
        let error = match attempt(settings, source, origin, partial, expected, meter).await {
            Ok(()) => match verify(partial, expected, origin).await {
                Ok(verified) => return Ok(verified),
                // A prefix left by an earlier attempt (another source, a crash) may be what was
                // wrong: `verify` emptied the partial, so one more try from zero settles it.
                Err(error @ FetchError::Checksum { .. }) if before > 0 && !restarted => {
                    tracing::warn!(%origin, %error, "a resumed download did not verify; downloading it again from the start");
                    restarted = true;
                    continue;
                }
                Err(error) => return Err(error),
            },
            Err(error) => error,
        };
        if error.disposition() != Disposition::Retry {
            return Err(error);
        }
        if partial.len() > before {
            delays = backoff(config);
        } else {
            failed_attempts += 1;
            if failed_attempts >= config.max_attempts {
                return Err(error);
            }
        }
        let delay = delays.next().unwrap_or(config.backoff_max);
        tracing::info!(%origin, %error, held = partial.len(), retry_in = ?delay, "download interrupted; resuming after a pause");
        tokio::time::sleep(delay).await;
    }
}

/// Exponential from `backoff_min`, doubling up to `backoff_max`, each delay plus up to as
/// much again at random, so agents that failed together do not retry together.
fn backoff(config: &FetchConfig) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(config.backoff_min)
        .with_max_delay(config.backoff_max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// One request to `source`, appending to the partial until the body ends or fails. `Ok` means
/// the body ended where it should; [`verify`] says whether it is the artifact.
async fn attempt(
    settings: &Settings,
    source: &Source,
    origin: &str,
    partial: &mut Partial,
    expected: &Expected,
    meter: &mut Meter<'_>,
) -> Result<(), FetchError> {
    if prepare(partial, expected, origin).await? == Held::Whole {
        return Ok(());
    }
    let Some((head, body)) = open_resuming(settings, source, origin, partial).await? else {
        return Ok(());
    };
    let size = adopt(head, partial, expected, origin).await?;
    meter.set_total(size);
    meter.advance(partial.len());
    receive(body, settings.config.stall_timeout, partial, expected, size, origin, meter).await
}

/// What the partial holds before a request.
#[derive(Debug, PartialEq, Eq)]
enum Held {
    /// The whole artifact, by its expected size: nothing to request.
    Whole,
    /// A prefix to resume from (or nothing).
    Prefix,
}

/// Discards a partial that cannot be a prefix of the artifact, and checks that the rest fits
/// on the disk when the size is known.
async fn prepare(partial: &mut Partial, expected: &Expected, origin: &str) -> Result<Held, FetchError> {
    if let Some(size) = expected.size {
        if partial.len() > size {
            // Longer than the artifact: whatever it holds, it is not a prefix of it.
            partial.reset().await?;
        }
        if partial.len() == size {
            return Ok(Held::Whole);
        }
        check_space(&partial_dir(partial), size - partial.len())?;
    }
    // Without a digest, only a validator (If-Range) can prove that a prefix and the rest of
    // the body are the same content.
    if expected.sha256.is_none() && partial.validator_for(origin).is_none() && partial.len() > 0 {
        partial.reset().await?;
    }
    Ok(Held::Prefix)
}

/// A body from the source that continues the partial, or `None` when the source says the
/// partial already holds all of it. A source with nothing past the partial's bytes (`416`)
/// is asked again from zero.
async fn open_resuming(
    settings: &Settings,
    source: &Source,
    origin: &str,
    partial: &mut Partial,
) -> Result<Option<(Head, ByteStream)>, FetchError> {
    let mut offset = partial.len();
    loop {
        match open(settings, source, origin, offset, partial.validator_for(origin)).await? {
            Opened::Body { start, total, validator, body } => return Ok(Some((Head { start, total, validator }, body))),
            Opened::Unsatisfiable { total } if offset > 0 && total == Some(offset) => return Ok(None),
            Opened::Unsatisfiable { .. } if offset > 0 => {
                tracing::info!(%origin, offset, "the source has no bytes past the partial; starting over");
                partial.reset().await?;
                offset = 0;
            }
            Opened::Unsatisfiable { .. } => {
                return Err(FetchError::Protocol {
                    origin: origin.to_owned(),
                    detail: "refused a request from byte 0 as unsatisfiable".into(),
                })
            }
        }
    }
}

/// What the response to a request said of its body.
struct Head {
    /// Where the body starts: the partial's length, or 0 when the source sent it all.
    start: u64,
    /// The artifact's size, when the source gave it.
    total: Option<u64>,
    validator: Option<String>,
}

/// Fits the partial to where the body starts and checks the size the response announces;
/// returns the artifact's size, when known.
async fn adopt(head: Head, partial: &mut Partial, expected: &Expected, origin: &str) -> Result<Option<u64>, FetchError> {
    if head.start != partial.len() {
        // The whole artifact instead of the range: a server without ranges, or the content
        // changed since the partial's validator.
        tracing::info!(%origin, offset = partial.len(), "the source sent the whole artifact; starting over");
        partial.reset().await?;
    }
    if head.start == 0 {
        partial.set_validator(origin, head.validator);
    }
    if let (Some(size), Some(total)) = (expected.size, head.total) {
        if size != total {
            return Err(FetchError::Checksum {
                origin: origin.to_owned(),
                expected: describe(expected),
                got: format!("a {total}-byte artifact"),
            });
        }
    }
    let size = expected.size.or(head.total);
    if expected.size.is_none() {
        if let Some(size) = size {
            check_space(&partial_dir(partial), size.saturating_sub(partial.len()))?;
        }
    }
    Ok(size)
}

/// Appends the body to the partial until it ends, stalls, fails or overruns the expected
/// size; a body that ends short of `size` is a network failure, resumed by the next attempt.
async fn receive(
    mut body: ByteStream,
    stall: Duration,
    partial: &mut Partial,
    expected: &Expected,
    size: Option<u64>,
    origin: &str,
    meter: &mut Meter<'_>,
) -> Result<(), FetchError> {
    loop {
        let Ok(next) = tokio::time::timeout(stall, body.next()).await else {
            partial.flush().await?;
            return Err(FetchError::Stalled { origin: origin.to_owned(), after: stall });
        };
        let chunk = match next {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(error)) => {
                partial.flush().await?;
                return Err(error);
            }
        };
        if let Some(size) = expected.size {
            if partial.len() + chunk.len() as u64 > size {
                partial.reset().await?;
                return Err(FetchError::Checksum {
                    origin: origin.to_owned(),
                    expected: describe(expected),
                    got: format!("more than {size} bytes"),
                });
            }
        }
        partial.push(chunk).await?;
        meter.advance(partial.len());
    }
    partial.flush().await?;
    match size {
        Some(size) if partial.len() < size => Err(FetchError::Network {
            origin: origin.to_owned(),
            detail: format!("the transfer ended after {} of {size} bytes", partial.len()),
        }),
        _ => Ok(()),
    }
}

/// The directory the partial lives in: the file system whose free space counts.
fn partial_dir(partial: &Partial) -> std::path::PathBuf {
    partial.path().parent().map(ToOwned::to_owned).unwrap_or_default()
}

async fn open(settings: &Settings, source: &Source, origin: &str, offset: u64, validator: Option<&str>) -> Result<Opened, FetchError> {
    let stall = settings.config.stall_timeout;
    match source {
        Source::Http { url, auth } => http::open(&settings.client, url, auth.as_ref(), origin, offset, validator, stall).await,
        Source::Range(range) => {
            let body: ByteStream = tokio::time::timeout(stall, range.open(offset))
                .await
                .map_err(|_| FetchError::Stalled { origin: origin.to_owned(), after: stall })??;
            Ok(Opened::Body { start: offset, total: None, validator: None, body })
        }
    }
}

/// Seals the partial and checks it; a mismatch empties it, so bad bytes are never resumed.
async fn verify(partial: &mut Partial, expected: &Expected, origin: &str) -> Result<Verified, FetchError> {
    let (sha256, size) = partial.seal().await?;
    let size_matches = expected.size.is_none_or(|expected| expected == size);
    let digest_matches = expected.sha256.as_deref().is_none_or(|expected| expected == sha256);
    if size_matches && digest_matches {
        return Ok(Verified { sha256, size });
    }
    partial.reset().await?;
    Err(FetchError::Checksum { origin: origin.to_owned(), expected: describe(expected), got: format!("sha256 {sha256}, {size} bytes") })
}

fn describe(expected: &Expected) -> String {
    match (&expected.sha256, expected.size) {
        (Some(sha256), Some(size)) => format!("sha256 {sha256}, {size} bytes"),
        (Some(sha256), None) => format!("sha256 {sha256}"),
        (None, Some(size)) => format!("{size} bytes"),
        (None, None) => "anything".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_stops_growing_at_the_max() {
        let config =
            FetchConfig { backoff_min: Duration::from_millis(100), backoff_max: Duration::from_millis(800), ..FetchConfig::default() };
        let delays: Vec<Duration> = backoff(&config).take(6).collect();
        let bases = [100, 200, 400, 800, 800, 800].map(Duration::from_millis);
        for (delay, base) in delays.iter().zip(bases) {
            assert!(*delay >= base && *delay <= base * 2, "{delays:?}");
        }
    }
}
