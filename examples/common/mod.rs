//! What the benchmark programs share (not an example itself: Cargo only builds
//! `examples/*.rs` and `examples/*/main.rs`).

use std::time::Duration;

/// The `p` quantile (0.0–1.0) of `samples`, nearest rank, in milliseconds (0 for none).
pub fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    let ms: Vec<f64> = samples.iter().map(|s| s.as_secs_f64() * 1000.0).collect();
    tracebox::stats::percentile(&ms, p).unwrap_or(0.0)
}
