//! Each subsystem's settings, cut from the one [`Config`]. This is the only place that knows
//! both sides: the sandbox, files, Claude and the runner never see the command line or the TOML
//! file, and each reads exactly the settings it is given.

use std::time::Duration;

use crate::claude::{ClaudeSettings, ClientSettings};
use crate::files::{ArtifactLimits, FilesSettings};
use crate::sandbox::{PoolSettings, SandboxSettings};

use super::{Config, MIB};

impl Config {
    /// What the sandbox reads: the engine, the image, every container's limits, the pool.
    pub fn sandbox_settings(&self) -> SandboxSettings {
        SandboxSettings {
            docker_host: self.docker_host.clone(),
            image: self.image.clone(),
            base_image: self.base_image.clone(),
            nofile_limit: self.nofile_limit,
            file_size_limit_bytes: self.file_size_limit_mb * MIB,
            tmp_size_mb: self.tmp_size_mb,
            workspace_size_mb: self.workspace_size_mb,
            default_limits: self.default_limits(),
            isolation: self.isolation,
            pool: PoolSettings {
                size: self.pool_size,
                refill_concurrency: self.pool_refill_concurrency,
                max_age: Duration::from_secs_f64(self.pool_max_age_secs),
                max_runs: self.recycle_max_runs,
                max_idle_recycled: self.recycle_max_idle,
            },
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

    /// What Claude calls read: the API's address and key, timeouts, retries.
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
        }
    }
}
