//! The sandbox: runs one program in a hardened, fresh Docker container and reports how it
//! ended. Only this module talks to Docker.

mod docker;
mod end;
mod image;
mod janitor;
mod limits;
mod run;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::execution::{InputFile, Language, RunLimits};
use crate::trace::{EventLog, TraceId};

pub use image::ImageStatus;
pub use janitor::Sweep;
pub use run::{ARTIFACTS_GRACE, ArtifactsCut, Chunk, RawOutcome, RunIo};

use docker::Engine;
use limits::{ContainerJob, ContainerSettings};

/// How long `/health` waits for the engine before calling it unreachable.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The cause of a Docker failure, kept for the error chain without tying callers to bollard.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// The sandbox could not do its part; user code failing is never one of these.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No engine answers where tracebox looks for one.
    #[error(
        "the Docker engine at {host} is unreachable ({source}); start it (scripts/ensure-docker.sh installs and starts one) or point TRACEBOX_DOCKER_HOST at a running engine"
    )]
    Unreachable { host: String, source: Cause },
    /// The engine is there, the sandbox image is not.
    #[error("the sandbox image {image} is missing; build it with `tracebox image build`")]
    ImageMissing { image: String },
    /// The image cannot be built because its base cannot be had.
    #[error(
        "the base image {base} is not available and could not be pulled ({message}); without registry access build one from Debian's packages with scripts/build-base-image.sh and set TRACEBOX_BASE_IMAGE=tracebox-base:bookworm"
    )]
    BaseImageUnavailable { base: String, message: String },
    /// `docker build` of the sandbox image failed.
    #[error("building the sandbox image failed: {0}")]
    Build(String),
    /// The engine refused or failed an operation.
    #[error("Docker failed to {operation}: {source}")]
    Docker { operation: &'static str, source: Cause },
    /// A container did not stop after SIGKILL.
    #[error("a killed container did not stop within 10 s")]
    StopTimeout,
}

impl SandboxError {
    /// True when the engine or image is missing: a fixable setup problem (HTTP 503), not a bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            SandboxError::Unreachable { .. }
                | SandboxError::ImageMissing { .. }
                | SandboxError::BaseImageUnavailable { .. }
        )
    }
}

/// One program for the sandbox.
pub struct RunSpec<'a> {
    pub trace_id: TraceId,
    pub language: Language,
    pub code: &'a str,
    pub stdin: &'a str,
    pub env: &'a std::collections::BTreeMap<String, String>,
    pub limits: &'a RunLimits,
    /// Mounted read-only under `/workspace/`.
    pub files: &'a [InputFile],
}

/// What `/health` reports of the engine and image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SandboxHealth {
    pub docker_host: String,
    /// The labels this server's containers carry (`tracebox.instance`, `tracebox.boot`).
    pub instance_id: String,
    pub boot_id: String,
    pub docker_reachable: bool,
    pub docker_version: Option<String>,
    pub image: String,
    pub image_present: bool,
    pub error: Option<String>,
}

/// Build the sandbox image `config` names unless it is up to date (always, with `force`).
/// Needs only Docker: no trace store, no server.
pub async fn ensure_image(
    config: &Config,
    force: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<ImageStatus, SandboxError> {
    let engine = Engine::connect(config.docker_host.as_deref())?;
    image::ensure(&engine, &config.image, &config.base_image, force, progress).await
}

/// A cloneable handle to the sandbox.
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    settings: Arc<ContainerSettings>,
    base_image: Arc<str>,
}

impl Sandbox {
    /// A sandbox for `config`, whose containers are labelled with this data directory's
    /// `instance_id` and this start's `boot_id`.
    pub fn connect(config: &Config, instance_id: &str, boot_id: &str) -> Result<Sandbox, SandboxError> {
        Ok(Sandbox {
            engine: Engine::connect(config.docker_host.as_deref())?,
            settings: Arc::new(ContainerSettings::from_config(config, instance_id, boot_id)),
            base_image: config.base_image.as_str().into(),
        })
    }

    /// The id of this start of tracebox, on every container it makes.
    pub fn boot_id(&self) -> &str {
        &self.settings.boot_id
    }

    /// Build the sandbox image unless it is up to date (always, with `force`).
    pub async fn ensure_image(&self, force: bool, progress: &mut dyn FnMut(&str)) -> Result<ImageStatus, SandboxError> {
        image::ensure(&self.engine, &self.settings.image, &self.base_image, force, progress).await
    }

    /// Run one program in a fresh container, talking to its client through `io` and recording
    /// its steps in `log`. What the program leaves in `/workspace/out` is sent, as a tar, to
    /// `io.artifacts` once it ended by itself.
    pub async fn run(&self, spec: RunSpec<'_>, io: RunIo, log: &mut EventLog) -> Result<RawOutcome, SandboxError> {
        let trace_id = spec.trace_id.to_string();
        let marker = end::new_marker();
        let job = ContainerJob {
            trace_id: &trace_id,
            language: spec.language,
            env: spec.env,
            limits: spec.limits,
            files: spec.files,
            marker: &marker,
        };
        let input = run::frame(spec.code, spec.stdin);
        run::run_in_fresh_container(&self.engine, &self.settings, &job, input, io, log).await
    }

    /// Remove this data directory's containers that `which` selects; returns how many.
    pub async fn sweep(&self, which: Sweep<'_>) -> Result<usize, SandboxError> {
        janitor::sweep(&self.engine, &self.settings.instance_id, which).await
    }

    /// Is the engine there, and the image on it? Answers within a few seconds, whatever Docker does.
    pub async fn health(&self) -> SandboxHealth {
        let mut health = SandboxHealth {
            docker_host: self.engine.host().to_owned(),
            instance_id: self.settings.instance_id.clone(),
            boot_id: self.settings.boot_id.clone(),
            docker_reachable: false,
            docker_version: None,
            image: self.settings.image.clone(),
            image_present: false,
            error: None,
        };
        let too_slow = || format!("the Docker engine did not answer within {HEALTH_TIMEOUT:?}");
        match tokio::time::timeout(HEALTH_TIMEOUT, self.engine.version()).await {
            Ok(Ok(version)) => {
                health.docker_reachable = true;
                health.docker_version = Some(version);
            }
            Ok(Err(error)) => health.error = Some(error.to_string()),
            Err(_) => health.error = Some(too_slow()),
        }
        if !health.docker_reachable {
            return health;
        }
        match tokio::time::timeout(HEALTH_TIMEOUT, self.engine.image_labels(&self.settings.image)).await {
            Ok(Ok(Some(_))) => health.image_present = true,
            Ok(Ok(None)) => {
                let missing = SandboxError::ImageMissing { image: health.image.clone() };
                health.error = Some(missing.to_string());
            }
            Ok(Err(error)) => health.error = Some(error.to_string()),
            Err(_) => health.error = Some(too_slow()),
        }
        health
    }
}
