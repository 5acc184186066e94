//! When to try a failed call again and how long to wait, as Anthropic's own SDKs do
//! (../shared/ANTHROPIC.md §6): 408, 409, 429 and 5xx (529 overloaded among them) and lost
//! connections are retried; `x-should-retry` overrides; `retry-after-ms` / `retry-after` are
//! honoured up to a minute; otherwise exponential backoff from 0.5 s to 8 s with jitter.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// Longest server-asked wait that is honoured; longer asks fall back to the backoff.
const MAX_ASKED_WAIT: Duration = Duration::from_secs(60);
const BACKOFF_START_SECS: f64 = 0.5;
const BACKOFF_MAX_SECS: f64 = 8.0;

/// Should a call that got `status` be tried again?
pub fn retryable(status: u16, headers: &HeaderMap, message: &str) -> bool {
    match headers.get("x-should-retry").and_then(|v| v.to_str().ok()) {
        Some("true") => return true,
        Some("false") => return false,
        _ => {}
    }
    // A 429 for a spending cap carries no retry-after and will not heal by waiting.
    if status == 429 && asked_wait(headers).is_none() && message.to_ascii_lowercase().contains("spend") {
        return false;
    }
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// How long to wait before retry number `retries_taken + 1`.
pub fn delay(retries_taken: u32, headers: Option<&HeaderMap>) -> Duration {
    if let Some(asked) = headers.and_then(asked_wait) {
        return asked;
    }
    let backoff = (BACKOFF_START_SECS * 2f64.powi(retries_taken.min(16) as i32)).min(BACKOFF_MAX_SECS);
    Duration::from_secs_f64(backoff * (1.0 - 0.25 * random_unit()))
}

/// The wait the server asked for, when it asked for one worth honouring.
pub fn asked_wait(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let asked = if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        Some(ms / 1000.0)
    } else if let Some(value) = header("retry-after") {
        value.parse::<f64>().ok().or_else(|| seconds_until(value))
    } else {
        None
    }?;
    let asked = Duration::try_from_secs_f64(asked).ok()?;
    (asked > Duration::ZERO && asked <= MAX_ASKED_WAIT).then_some(asked)
}

/// Seconds from now until an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn seconds_until(date: &str) -> Option<f64> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(date, &format).ok()?.assume_utc();
    let now = time::OffsetDateTime::from(SystemTime::now());
    Some((at - now).as_seconds_f64())
}

/// A number in [0, 1) for the jitter, from the 53 low bits of a random UUID (all random: the
/// version and variant bits are above them).
fn random_unit() -> f64 {
    const BITS: u32 = 53;
    (uuid::Uuid::new_v4().as_u128() & ((1u128 << BITS) - 1)) as f64 / (1u64 << BITS) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_statuses_that_heal_are_retried_and_the_others_not() {
        let none = HeaderMap::new();
        for status in [408, 409, 429, 500, 502, 503, 504, 529] {
            assert!(retryable(status, &none, ""), "{status}");
        }
        for status in [400, 401, 402, 403, 404, 413, 422] {
            assert!(!retryable(status, &none, ""), "{status}");
        }
        assert!(!retryable(500, &headers(&[("x-should-retry", "false")]), ""));
        assert!(retryable(400, &headers(&[("x-should-retry", "true")]), ""));
        assert!(!retryable(429, &none, "You have reached your spend limit"));
        assert!(retryable(429, &headers(&[("retry-after", "2")]), "spend limit"));
    }

    #[test]
    fn a_wait_the_server_asks_for_is_honoured_up_to_a_minute() {
        assert_eq!(delay(0, Some(&headers(&[("retry-after", "2")]))), Duration::from_secs(2));
        assert_eq!(delay(0, Some(&headers(&[("retry-after", "0.25")]))), Duration::from_millis(250));
        assert_eq!(
            delay(3, Some(&headers(&[("retry-after-ms", "120"), ("retry-after", "9")]))),
            Duration::from_millis(120)
        );
        let too_long = delay(0, Some(&headers(&[("retry-after", "3600")])));
        assert!(too_long <= Duration::from_millis(500), "fell back to the backoff: {too_long:?}");
        let date = delay(0, Some(&headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")])));
        assert!(date <= Duration::from_millis(500), "a date in the past is no wait to honour");
    }

    #[test]
    fn the_backoff_doubles_with_jitter_and_is_capped() {
        for _ in 0..100 {
            let first = delay(0, None).as_secs_f64();
            assert!((0.375..=0.5).contains(&first), "{first}");
            let second = delay(1, None).as_secs_f64();
            assert!((0.75..=1.0).contains(&second), "{second}");
            let late = delay(10, None).as_secs_f64();
            assert!((6.0..=8.0).contains(&late), "{late}");
        }
    }
}
