//! What the nodes are given of the server's configuration (`Config::nodes_settings` builds it).

use std::collections::BTreeMap;
use std::time::Duration;

use tracebox_model::Strategy;

use crate::sandbox::SandboxSettings;

/// One Docker engine tracebox drives.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Its name in `/nodes`, traces and metrics.
    pub name: String,
    /// Where its engine is, and everything its containers are made with.
    pub sandbox: SandboxSettings,
    pub labels: BTreeMap<String, String>,
    /// Runs it takes at once.
    pub max_concurrent_runs: usize,
    /// Its engine sees the server's disk (a unix socket; the implicit `local` node, whatever
    /// its address, as before nodes existed): runs with uploaded files may go there.
    pub mounts_files: bool,
}

/// The nodes, and how work is spread over them.
#[derive(Debug, Clone)]
pub struct NodesSettings {
    /// At least one; the first is where the sandbox image is built.
    pub nodes: Vec<NodeSettings>,
    /// The strategy of requests that name none.
    pub strategy: Strategy,
    /// How often each engine is asked whether it is there.
    pub heartbeat: Duration,
}

/// Heartbeats missed in a row before a node is `down`.
pub const MISSES_TO_DOWN: u32 = 3;
