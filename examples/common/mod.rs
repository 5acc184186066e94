//! What the benchmark programs share (not an example itself: Cargo only builds
//! `examples/*.rs` and `examples/*/main.rs`).

use std::time::Duration;

/// The `p` quantile (0.0–1.0) of `samples`, nearest rank, in milliseconds.
pub fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}
