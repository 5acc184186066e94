//! Each subsystem's settings, cut from the one [`Config`]. This is the only place that knows
//! both sides: the sandbox, sandboxes, files, Claude and the runner never see the command line or the TOML
//! file, and each reads exactly the settings it is given.

use std::time::Duration;

use crate::access::AccessSettings;
use crate::claude::{CallSettings, ClaudeSettings, ClientSettings};
use crate::files::{ArtifactLimits, FilesSettings};
use crate::nodes::{NodeSettings, NodesSettings};
use crate::runner::RunnerSettings;
use crate::sandbox::{PoolSettings, SandboxSettings, TlsFiles};
use crate::sandboxes::{RepoSettings, SandboxesSettings};
use crate::submission::RequestLimits;

use super::{Config, LOCAL_NODE, MIB};

impl Config {
    /// What the sandbox reads: the engine, the image, every container's limits, the pool.
    pub fn sandbox_settings(&self) -> SandboxSettings {
        SandboxSettings {
            docker_host: self.docker_host.clone(),
            tls: None,
            image: self.image.clone(),
            base_image: self.base_image.clone(),
            runtime: self.runtime.clone(),
            nofile_limit: self.nofile_limit,
            file_size_limit_bytes: self.file_size_limit_mb * MIB,
            tmp_size_mb: self.tmp_size_mb,
            workspace_size_mb: self.workspace_size_mb,
            default_limits: self.request_limits().default_limits(),
            isolation: self.isolation,
            pool: PoolSettings {
                size: self.pool_size,
                refill_concurrency: self.pool_refill_concurrency,
                max_age: Duration::from_secs_f64(self.pool_max_age_secs),
                max_runs: self.recycle_max_runs,
                max_idle_recycled: self.recycle_max_idle,
            },
            node: LOCAL_NODE.to_owned(),
            other_nodes: Vec::new(),
        }
    }

    /// What access reads: tokens' lives, and whether keys are needed while none exists (beyond
    /// loopback, unless the operator chose to be open).
    pub fn access_settings(&self) -> AccessSettings {
        AccessSettings {
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            token_max_ttl: Duration::from_secs(self.token_max_ttl_secs),
            session_ttl: Duration::from_secs(self.session_ttl_secs),
            always_required: !self.addr.ip().is_loopback() && !self.insecure_no_auth,
            insecure_no_auth: self.insecure_no_auth,
        }
    }

    /// What the files module reads: the uploads directory, the limits on uploads and artifacts.
    pub fn files_settings(&self) -> FilesSettings {
        FilesSettings {
            dir: self.uploads_dir(),
            upload_max_file_bytes: self.upload_max_file_bytes,
            upload_max_request_bytes: self.upload_max_request_bytes,
            upload_max_total_bytes: self.upload_max_total_bytes,
            artifacts: ArtifactLimits {
                max_files: self.artifacts_max_files,
                max_bytes: self.artifacts_max_bytes,
                max_total_bytes: self.artifacts_max_total_bytes,
                retention: (self.artifacts_retention_hours > 0.0)
                    .then(|| Duration::from_secs_f64(self.artifacts_retention_hours * 3600.0)),
            },
        }
    }

    /// What Claude calls read: the API's address and key, timeouts, retries; the defaults of a
    /// question, and how many blocks of a reply run.
    pub fn claude_settings(&self) -> ClaudeSettings {
        ClaudeSettings {
            client: ClientSettings {
                base_url: self.anthropic_base_url.clone(),
                api_key: self.anthropic_api_key.clone(),
                connect_timeout: Duration::from_secs_f64(self.claude_connect_timeout_secs),
                read_timeout: Duration::from_secs_f64(self.claude_read_timeout_secs),
                attempt_timeout: Duration::from_secs_f64(self.claude_timeout_secs),
                max_retries: self.claude_max_retries,
                retry_budget: Duration::from_secs_f64(self.claude_retry_budget_secs),
            },
            calls: CallSettings {
                model: self.claude_model.clone(),
                max_tokens: self.claude_max_tokens,
                max_blocks: self.claude_max_blocks,
            },
        }
    }

    /// What the pipeline reads: how many runs go at once, how long others wait, and the
    /// limits requests are checked against.
    pub fn runner_settings(&self) -> RunnerSettings {
        RunnerSettings {
            max_concurrent_runs: self.runs_at_once(),
            max_queued_runs: self.max_queued_runs,
            queue_timeout: Duration::from_secs_f64(self.queue_timeout_secs),
            requests: self.request_limits(),
        }
    }

    /// Runs executing at once, server-wide: max_concurrent_runs, or with `[[nodes]]` the sum of
    /// theirs (each node holds its own to its own).
    pub fn runs_at_once(&self) -> usize {
        if self.nodes.is_empty() {
            return self.max_concurrent_runs;
        }
        self.nodes.iter().map(|node| node.max_concurrent_runs.unwrap_or(self.max_concurrent_runs)).sum()
    }

    /// What the nodes read: each engine with the sandbox's settings for it, the strategy and the
    /// heartbeat. Without `[[nodes]]`, one node, `local`, at docker_host.
    pub fn nodes_settings(&self) -> NodesSettings {
        let sandbox = self.sandbox_settings();
        let nodes = if self.nodes.is_empty() {
            vec![NodeSettings {
                name: LOCAL_NODE.to_owned(),
                sandbox,
                labels: Default::default(),
                max_concurrent_runs: self.max_concurrent_runs,
                mounts_files: true,
            }]
        } else {
            self.nodes
                .iter()
                .map(|node| {
                    let tls = match (&node.tls_ca, &node.tls_cert, &node.tls_key) {
                        (Some(ca), Some(cert), Some(key)) => {
                            Some(TlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() })
                        }
                        _ => None,
                    };
                    let other_nodes =
                        self.nodes.iter().filter(|other| other.name != node.name).map(|o| o.name.clone()).collect();
                    NodeSettings {
                        name: node.name.clone(),
                        sandbox: SandboxSettings {
                            docker_host: Some(node.docker_host.clone()),
                            tls,
                            node: node.name.clone(),
                            other_nodes,
                            runtime: node.runtime.clone().unwrap_or_else(|| sandbox.runtime.clone()),
                            ..sandbox.clone()
                        },
                        labels: node.labels.clone(),
                        max_concurrent_runs: node.max_concurrent_runs.unwrap_or(self.max_concurrent_runs),
                        mounts_files: node.docker_host.starts_with("unix://"),
                    }
                })
                .collect()
        };
        NodesSettings { nodes, strategy: self.placement, heartbeat: Duration::from_secs_f64(self.node_heartbeat_secs) }
    }

    /// What every door checks a request against (and what a request that asks nothing gets).
    pub fn request_limits(&self) -> RequestLimits {
        RequestLimits {
            max_code_bytes: self.max_code_bytes,
            max_stdin_bytes: self.max_stdin_bytes,
            default_timeout_secs: self.default_timeout_secs,
            max_timeout_secs: self.max_timeout_secs,
            default_memory_mb: self.default_memory_mb,
            max_memory_mb: self.max_memory_mb,
            cpus: self.cpus,
            pids_limit: self.pids_limit,
            output_limit_bytes: self.output_limit_bytes,
            isolation: self.isolation,
            recycle_allowed: self.recycle_allowed,
            max_result_bytes: self.max_result_bytes,
        }
    }

    /// The sandboxes' bounds and defaults.
    pub fn sandboxes_settings(&self) -> SandboxesSettings {
        SandboxesSettings {
            max_sandboxes: self.sandbox_max,
            default_timeout_secs: self.sandbox_timeout_secs,
            min_timeout_secs: self.sandbox_min_timeout_secs,
            max_timeout_secs: self.sandbox_max_timeout_secs,
            max_lifetime_secs: self.sandbox_max_lifetime_secs,
            default_disk_mb: self.sandbox_disk_mb,
            max_disk_mb: self.sandbox_max_disk_mb,
            default_memory_mb: self.default_memory_mb,
            max_memory_mb: self.max_memory_mb,
            default_cpus: self.cpus,
            max_cpus: self.cpus.max(1.0),
            pids: self.pids_limit,
            default_step_timeout_secs: self.default_timeout_secs,
            max_step_timeout_secs: self.sandbox_max_step_timeout_secs,
            output_bytes: self.output_limit_bytes,
            max_queued_steps: self.sandbox_max_queued_steps,
            max_file_bytes: self.upload_max_file_bytes,
            max_upload_bytes: self.upload_max_request_bytes,
            max_snapshot_bytes: self.snapshot_max_bytes,
            max_total_snapshot_bytes: self.snapshot_max_total_bytes,
            pool_size: self.sandbox_pool_size,
            repo: RepoSettings {
                dir: self.clones_dir(),
                max_bytes: self.repo_max_bytes,
                clone_timeout: Duration::from_secs_f64(self.repo_clone_timeout_secs),
            },
        }
    }
}
