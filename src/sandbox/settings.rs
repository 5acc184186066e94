//! What the sandbox is given of the server's configuration: all it reads, and nothing else (the
//! sandbox does not know the configuration exists; `Config::sandbox_settings` builds this).

use tracebox_model::{Isolation, RunLimits};

use super::PoolSettings;

/// The sandbox's settings: where the engine and image are, what every container is allowed,
/// and how the warm pool is kept.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// Docker engine address (`unix:///…` or `tcp://…`); None: `$DOCKER_HOST`, else the local
    /// socket.
    pub docker_host: Option<String>,
    /// Client certificates for a `tcp://` engine behind TLS.
    pub tls: Option<super::TlsFiles>,
    /// The image that runs the code (built from `Dockerfile.sandbox` when absent or outdated).
    pub image: String,
    /// The base that image is built on; None: `image::choose_base` chooses.
    pub base_image: Option<String>,
    /// The Docker runtime every container of this engine runs under (`runc`, `runsc`…), named
    /// in each create request; the engine must have it registered ([`super::Sandbox::check_runtime`]).
    /// Per engine: a sandbox for another engine is made from a clone with its own.
    pub runtime: String,
    /// Open files a process may hold (`ulimit -n`).
    pub nofile_limit: u64,
    /// Largest file a run may write (`ulimit -f`), in bytes.
    pub file_size_limit_bytes: u64,
    /// Size of a container's writable `/tmp`, and of its `/dev/shm`, in MiB.
    pub tmp_size_mb: u64,
    /// Size of a run's writable `/workspace`, in MiB.
    pub workspace_size_mb: u64,
    /// The limits of a run that asks for none: what the pool's containers are made for.
    pub default_limits: RunLimits,
    /// The isolation of a run that asks for none: the pool keeps containers of it warm.
    pub isolation: Isolation,
    pub pool: PoolSettings,
    /// The node these settings are for (a label on each of its containers), and the other
    /// nodes' names (their containers are left alone by this node's sweeps).
    pub node: String,
    pub other_nodes: Vec<String>,
}
