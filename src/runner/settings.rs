//! What the pipeline is given of the server's configuration (built by
//! `Config::runner_settings`; the runner does not know the configuration exists).

use std::time::Duration;

use crate::submission::RequestLimits;

/// How many runs go at once, how long the others may wait, and the limits requests are
/// checked against.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Runs executing at once; further runs wait in a queue.
    pub max_concurrent_runs: usize,
    /// Runs that may wait in that queue; past it a run is refused at once.
    pub max_queued_runs: usize,
    /// How long a run may wait, for a slot and then a warm container, before it is refused.
    pub queue_timeout: Duration,
    /// What the doors check each request against ([`super::Runner::request_limits`]); the
    /// runner itself bounds a live run's stdin by it, and names its maxima in its messages.
    pub requests: RequestLimits,
}
