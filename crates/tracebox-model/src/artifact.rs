//! What a run left in `/workspace/out/`: the files that came back, and those that did not.

use serde::{Deserialize, Serialize};

/// A file a run left in `/workspace/out/`, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Its path in `/workspace`, e.g. `out/plot.png`.
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Where to download it (`GET`, traced as a download).
    pub url: String,
}

/// A file of `/workspace/out/` that did not come back, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Omitted {
    pub name: String,
    pub reason: String,
}
