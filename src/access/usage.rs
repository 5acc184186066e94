//! What each key is doing against its limits: its request rate (a token bucket, governor's), its
//! runs going now, and the counts `/metrics` shows per key name.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracebox_model::access::KeyLimits;

/// One key's state. Made on the key's first request after a start, from its limits then.
pub struct KeyUsage {
    pub name: String,
    pub limits: KeyLimits,
    rate: Option<DefaultDirectRateLimiter>,
    runs: Option<Arc<Semaphore>>,
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub runs_refused: AtomicU64,
    running: Arc<AtomicU64>,
}

/// Runs of a key going on (one, or a batch's items at once): counted until dropped.
pub struct RunPermit {
    _slots: Option<OwnedSemaphorePermit>,
    count: u64,
    running: Arc<AtomicU64>,
}

impl Drop for RunPermit {
    fn drop(&mut self) {
        self.running.fetch_sub(self.count, Ordering::AcqRel);
    }
}

impl KeyUsage {
    pub fn new(name: &str, limits: KeyLimits) -> KeyUsage {
        let rate = limits.rate_per_sec.and_then(quota).map(RateLimiter::direct);
        let runs =
            limits.max_concurrent_runs.map(|n| Arc::new(Semaphore::new(usize::try_from(n).unwrap_or(usize::MAX))));
        KeyUsage {
            name: name.to_owned(),
            limits,
            rate,
            runs,
            requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            runs_refused: AtomicU64::new(0),
            running: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Count a request; when it is over the key's rate, how long until one would be allowed.
    pub fn request(&self) -> Result<(), Duration> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let Some(rate) = &self.rate else { return Ok(()) };
        rate.check().map_err(|not_until| {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
            not_until.wait_time_from(DefaultClock::default().now())
        })
    }

    /// A slot for one more run, or None when the key has as many going as it may.
    pub fn run(&self) -> Option<RunPermit> {
        self.runs(1)
    }

    /// Slots for `count` runs at once (a batch's items), all or none.
    pub fn runs(&self, count: u32) -> Option<RunPermit> {
        let slots = match &self.runs {
            Some(runs) => match Arc::clone(runs).try_acquire_many_owned(count) {
                Ok(slots) => Some(slots),
                Err(_) => {
                    self.runs_refused.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            },
            None => None,
        };
        self.running.fetch_add(u64::from(count), Ordering::AcqRel);
        Some(RunPermit { _slots: slots, count: u64::from(count), running: Arc::clone(&self.running) })
    }

    /// Runs going now.
    pub fn running(&self) -> u64 {
        self.running.load(Ordering::Acquire)
    }
}

/// A bucket of `per_sec` requests a second that holds as many (at least one): a client may
/// send a second's worth at once, then at the rate.
fn quota(per_sec: f64) -> Option<Quota> {
    if !(per_sec.is_finite() && per_sec > 0.0) {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / per_sec).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(per_sec.ceil().clamp(1.0, f64::from(u32::MAX)) as u32)?;
    Quota::with_period(period).map(|quota| quota.allow_burst(burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_rate_passes_and_the_next_request_waits() {
        let usage = KeyUsage::new("k", KeyLimits { rate_per_sec: Some(5.0), ..KeyLimits::default() });
        for _ in 0..5 {
            usage.request().unwrap();
        }
        let wait = usage.request().unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200), "{wait:?}");
        assert_eq!((usage.requests.load(Ordering::Relaxed), usage.rate_limited.load(Ordering::Relaxed)), (6, 1));
    }

    #[test]
    fn runs_are_counted_and_held_to_the_limit() {
        let usage = KeyUsage::new("k", KeyLimits { max_concurrent_runs: Some(2), ..KeyLimits::default() });
        let (a, b) = (usage.run().unwrap(), usage.run().unwrap());
        assert!(usage.run().is_none(), "a third run over a limit of two");
        assert_eq!(usage.running(), 2);
        drop(a);
        let _c = usage.run().expect("a slot is free again");
        drop(b);
        assert_eq!(usage.running(), 1);
        let four = KeyUsage::new("k", KeyLimits { max_concurrent_runs: Some(4), ..KeyLimits::default() });
        let batch = four.runs(3).expect("three of four");
        assert!(four.runs(2).is_none(), "all or none: two more would be five");
        assert_eq!(four.running(), 3);
        drop(batch);
        assert_eq!(four.running(), 0);
        let unlimited = KeyUsage::new("u", KeyLimits::default());
        let held: Vec<_> = (0..100).map(|_| unlimited.run().unwrap()).collect();
        assert_eq!(unlimited.running(), held.len() as u64);
    }
}
