//! The sandbox: runs one program in a hardened, fresh Docker container and reports how it
//! ended. Only this module talks to Docker.

mod container;
mod docker;
mod handler;
mod image;
mod janitor;
mod limits;
mod output;
mod pool;
mod protocol;
mod run;
mod session;
mod settings;
mod step;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use tracebox_model::{EventLog, HandlerCall, InputFile, Isolation, Language, RunLimits, TraceId};

pub use docker::{EngineInfo, TlsFiles};
pub use image::{Base, BaseReason, ImageReady, ImageStatus};
pub use janitor::Sweep;
pub use pool::{PoolSettings, PoolState, ProfileState};
pub use run::{ARTIFACTS_GRACE, ArtifactsCut, Chunk, Handover, RawOutcome, RunIo};
pub use session::{Op, OpError, OpFrame, Session, reply_of};
pub use settings::SandboxSettings;
pub use step::{CommandLine, Step};

use container::Container;
use docker::Engine;
use limits::{ContainerSettings, ContainerSpec, Profile, Purpose};
use pool::Pool;
use protocol::HandlerFrame;
use run::Program;

/// How long `/health` waits for the engine before calling it unreachable.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long past its longest wait a container's supervisor waits for tracebox before it ends
/// by itself (should tracebox die, no container outlives it for long).
pub const SUPERVISOR_IDLE_SLACK: Duration = Duration::from_secs(60);
/// How often the pool replaces old and dead containers.
const POOL_TEND_EVERY: Duration = Duration::from_secs(5);
/// How long shutdown waits for the pool's starts under way, then again for removals.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

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
    /// The engine is there, the runtime containers are to run under is not registered with it.
    #[error("{}", runtime_missing(host, runtime, registered))]
    RuntimeMissing {
        host: String,
        runtime: String,
        /// The runtimes the engine has (empty when not asked).
        registered: Vec<String>,
    },
    /// The engine is there, the sandbox image is not.
    #[error("the sandbox image {image} is missing; build it with `tracebox image build`")]
    ImageMissing { image: String },
    /// The image cannot be built because its base cannot be had.
    #[error("the base image {base} is not available and could not be pulled ({message}); {}", image::BASE_RULE)]
    BaseImageUnavailable { base: Base, message: String },
    /// `docker build` of the sandbox image failed.
    #[error("building the sandbox image failed: {0}")]
    Build(String),
    /// The engine refused or failed an operation.
    #[error("Docker failed to {operation}: {source}")]
    Docker { operation: &'static str, source: Cause },
    /// A container did not stop after SIGKILL.
    #[error("a killed container did not stop within 10 s")]
    StopTimeout,
    /// A new container's supervisor never became ready.
    #[error("a sandbox container did not become ready: {why}")]
    NotReady { why: String },
    /// No warm container came in time.
    #[error(
        "no sandbox container was ready within {waited_ms} ms (TRACEBOX_QUEUE_TIMEOUT_SECS){}",
        last_error.as_deref().map(|e| format!("; the last start failed: {e}")).unwrap_or_default()
    )]
    PoolEmpty { waited_ms: u64, last_error: Option<String> },
    /// A stateful sandbox's supervisor refused an operation (`code`: `bad_path`, `not_found`…).
    #[error("{message}")]
    Refused { code: String, message: String },
    /// A stateful sandbox's container went away under an operation.
    #[error("the sandbox's container stopped (was it killed from outside?); its files in /workspace are lost")]
    SessionGone,
    /// A stateful sandbox was removed (deleted, or at the end of its lifetime) while an
    /// operation or step was under way in it.
    #[error("the sandbox was removed (deleted, or its lifetime ended) while this ran; what it did is lost with it")]
    SessionRemoved,
    /// The container stopped after the program was sent and before its supervisor took it.
    #[error(
        "the sandbox container stopped before it took the program (was it killed from outside?); \
         nothing of the program ran, so sending it again is safe"
    )]
    Lost,
    /// The container's channel carried what its supervisor never writes; the container was
    /// ended. (A program cannot cause it: it would be a fault of the supervisor's.)
    #[error(
        "the sandbox container was ended after its channel carried something unexpected ({0}); the run's output may be incomplete"
    )]
    Garbled(#[from] protocol::Garbled),
}

impl SandboxError {
    /// True when the run could not have a working container in time, and nothing of it ran:
    /// a full server, or a container lost on the way (HTTP 503 busy, with Retry-After).
    pub fn is_busy(&self) -> bool {
        matches!(self, SandboxError::PoolEmpty { .. } | SandboxError::Lost)
    }

    /// True when the engine or image is missing: a fixable setup problem (HTTP 503), not a bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            SandboxError::Unreachable { .. }
                | SandboxError::RuntimeMissing { .. }
                | SandboxError::ImageMissing { .. }
                | SandboxError::BaseImageUnavailable { .. }
        )
    }
}

/// What to do when the engine lacks `runtime`: the daemon.json lines that register it and the
/// reload that makes the engine read them (for gVisor's runsc, exactly what
/// scripts/ensure-runsc.sh writes).
fn runtime_missing(host: &str, runtime: &str, registered: &[String]) -> String {
    let has = if registered.is_empty() { String::new() } else { format!(" (it has: {})", registered.join(", ")) };
    let entry = if runtime == "runsc" {
        r#"{"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}}}"#.to_owned()
    } else {
        format!(r#"{{"runtimes": {{"{runtime}": {{"path": "/path/to/{runtime}"}}}}}}"#)
    };
    format!(
        "the Docker engine at {host} has no runtime named {runtime} (TRACEBOX_RUNTIME){has}; register it: add to \
         /etc/docker/daemon.json (merged with what it holds) {entry} and reload the engine (`sudo kill -HUP \
         $(cat /var/run/docker.pid)`, or `sudo systemctl reload docker`; running containers go on). For gVisor, \
         scripts/ensure-runsc.sh installs Debian's runsc and does both. Or set TRACEBOX_RUNTIME=runc"
    )
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
    pub isolation: Isolation,
    pub tenant: Option<&'a str>,
    /// The latest this run may still wait for a warm container: the queue timeout counts from
    /// its arrival, whether it waited for a run slot, a container, or both.
    pub wait_until: tokio::time::Instant,
    /// Handler mode: the function to call, and its event. Served by the same warm containers.
    pub handler: Option<&'a HandlerCall>,
}

/// A stateful sandbox's container to start.
pub struct NewSession<'a> {
    /// The sandbox's id: its container's label and name.
    pub id: &'a str,
    pub language: Language,
    pub memory_bytes: u64,
    pub cpus: f64,
    pub pids: i64,
    pub disk_mb: u64,
    pub env: &'a std::collections::BTreeMap<String, String>,
}

/// The limits of one step in a sandbox.
pub struct StepProgram<'a> {
    pub stdin: &'a str,
    pub timeout: Duration,
    pub output_bytes: u64,
}

/// The container a run has: leased from the pool, or made for it alone.
enum Held {
    Leased(pool::Lease),
    Own(Container),
}

/// A container ready for one run, taken by [`Sandbox::acquire`]: nothing of the run has
/// happened yet, so a failure to get one may be tried again elsewhere.
pub struct Acquired(Held);

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
    /// The Docker runtime this server's containers run under (`runc`, `runsc`…).
    pub runtime: String,
    /// Does the engine list it? None when the engine could not be asked.
    pub runtime_registered: Option<bool>,
    pub error: Option<String>,
    pub pool: PoolState,
}

impl SandboxHealth {
    /// Can runs be served: the engine answers, with the image and the runtime?
    pub fn ready(&self) -> bool {
        self.docker_reachable && self.image_present && self.runtime_registered == Some(true)
    }
}

/// Build the sandbox image `settings` name unless it is up to date (always, with `force`).
/// Needs only Docker: no trace store, no server.
pub async fn ensure_image(
    settings: &SandboxSettings,
    force: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<ImageReady, SandboxError> {
    let engine = Engine::connect(settings.docker_host.as_deref(), settings.tls.as_ref())?;
    image::ensure(&engine, &settings.image, settings.base_image.as_deref(), force, progress).await
}

/// A cloneable handle to the sandbox.
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    settings: Arc<ContainerSettings>,
    /// The base image as configured; unset, `ensure_image` chooses one.
    base_image: Option<Arc<str>>,
    pool: Pool,
}

impl Sandbox {
    /// A sandbox as `settings` say, whose containers are labelled with this data directory's
    /// `instance_id` and this start's `boot_id`. Its pool starts empty ([`Sandbox::warm_up`]).
    pub fn connect(settings: &SandboxSettings, instance_id: &str, boot_id: &str) -> Result<Sandbox, SandboxError> {
        let engine = Engine::connect(settings.docker_host.as_deref(), settings.tls.as_ref())?;
        let container = Arc::new(ContainerSettings::new(settings, instance_id, boot_id));
        let limits = &settings.default_limits;
        let stocked = Language::ALL.iter().map(|l| Profile::of(*l, limits, settings.isolation, None)).collect();
        let pool = Pool::new(engine.clone(), Arc::clone(&container), settings.pool.clone(), stocked);
        let base_image = settings.base_image.as_deref().map(Arc::from);
        Ok(Sandbox { engine, settings: container, base_image, pool })
    }

    /// The id of this start of tracebox, on every container it makes.
    pub fn boot_id(&self) -> &str {
        &self.settings.boot_id
    }

    /// The Docker runtime this sandbox's containers run under.
    pub fn runtime(&self) -> &str {
        &self.settings.runtime
    }

    /// Does the engine have the runtime registered? `RuntimeMissing`, with the fix, if not: every
    /// container would fail to be created. Checked before a server or a run starts.
    pub async fn check_runtime(&self) -> Result<(), SandboxError> {
        let registered = self.engine.runtimes().await?;
        if registered.iter().any(|name| *name == self.settings.runtime) {
            return Ok(());
        }
        Err(SandboxError::RuntimeMissing {
            host: self.engine.host().to_owned(),
            runtime: self.settings.runtime.clone(),
            registered,
        })
    }

    /// Build the sandbox image unless it is up to date (always, with `force`).
    pub async fn ensure_image(&self, force: bool, progress: &mut dyn FnMut(&str)) -> Result<ImageReady, SandboxError> {
        image::ensure(&self.engine, &self.settings.image, self.base_image.as_deref(), force, progress).await
    }

    /// Fill the warm pool, `progress` hearing how far it got.
    pub async fn warm_up(&self, progress: &(dyn Fn(&str) + Sync)) {
        self.pool.warm_up(progress).await;
    }

    /// Keep the pool fresh: replace old and dead containers, every few seconds, until aborted.
    pub fn spawn_pool_tender(&self, runtime: &tokio::runtime::Handle) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        let every = POOL_TEND_EVERY;
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                pool.tend();
            }
        })
    }

    /// Remove the pool's waiting containers, make no more, and wait (a little) until the
    /// containers being removed are gone (shutdown).
    pub async fn close(&self) {
        self.pool.close();
        self.pool.settle(SHUTDOWN_WAIT).await;
        self.engine.removals_done(SHUTDOWN_WAIT).await;
    }

    /// The pool now.
    pub fn pool_state(&self) -> PoolState {
        self.pool.state()
    }

    /// The engine's address, as configured (for messages and `/nodes`).
    pub fn docker_host(&self) -> &str {
        self.engine.host()
    }

    /// What the engine says of itself (a heartbeat).
    pub async fn engine_info(&self) -> Result<EngineInfo, SandboxError> {
        self.engine.info().await
    }

    /// Stop (`true`) or resume keeping containers warm: the engine went down, or came back.
    pub fn suspend_pool(&self, suspended: bool) {
        self.pool.suspend(suspended);
    }

    /// Make this engine hold the sandbox image `source` holds, copied over (`docker save` to
    /// `docker load`, streamed) unless it already has the same build; `progress` hears how far.
    pub async fn copy_image_from(
        &self,
        source: &Sandbox,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<bool, SandboxError> {
        let image = &self.settings.image;
        let wanted = source
            .engine
            .image_labels(image)
            .await?
            .ok_or_else(|| SandboxError::ImageMissing { image: image.clone() })?;
        let here = self.engine.image_labels(image).await?;
        if here.is_some_and(|labels| labels.get(image::CONTEXT_LABEL) == wanted.get(image::CONTEXT_LABEL)) {
            return Ok(false);
        }
        progress(&format!("copying {image} from {} to {}", source.engine.host(), self.engine.host()));
        let copied = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&copied);
        let source_engine = source.engine.clone();
        let image_name = image.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, SandboxError>>(8);
        // The export is read on a task of its own, so the load reads as it comes.
        let exporting = tokio::spawn(async move {
            let mut export = std::pin::pin!(source_engine.export_image(&image_name));
            while let Some(chunk) = futures_util::StreamExt::next(&mut export).await {
                if let Ok(bytes) = &chunk {
                    counted.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
        });
        let tar = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
        let load = self.engine.load_image(tar);
        let mut load = std::pin::pin!(load);
        let mut ticks = tokio::time::interval(Duration::from_secs(2));
        ticks.tick().await;
        let loaded = loop {
            tokio::select! {
                loaded = &mut load => break loaded,
                _ = ticks.tick() => {
                    let mib = copied.load(std::sync::atomic::Ordering::Relaxed) >> 20;
                    progress(&format!("copying {image} to {}: {mib} MiB", self.engine.host()));
                }
            }
        };
        exporting.abort();
        loaded?;
        let mib = copied.load(std::sync::atomic::Ordering::Relaxed) >> 20;
        progress(&format!("copied {image} to {} ({mib} MiB)", self.engine.host()));
        Ok(true)
    }

    /// A container for one program: a warm one of the pool when its profile has one, else one
    /// made for it. With `fail_fast` (the run has other engines to go to), a failing start of
    /// the pool ends the wait instead of the queue timeout.
    pub async fn acquire(
        &self,
        spec: &RunSpec<'_>,
        fail_fast: bool,
        log: &mut EventLog,
    ) -> Result<Acquired, SandboxError> {
        let profile = Profile::of(spec.language, spec.limits, spec.isolation, spec.tenant);
        let pooled = spec.files.is_empty() && self.pool.serves(&profile);
        let held = if pooled {
            let wait = spec.wait_until.saturating_duration_since(tokio::time::Instant::now());
            let (mut lease, waited) = self.pool.take(&profile, wait, fail_fast).await.map_err(|empty| {
                SandboxError::PoolEmpty { waited_ms: empty.waited.as_millis() as u64, last_error: empty.last_error }
            })?;
            let container = lease.container();
            log.record(
                "pool.took",
                json!({
                    "container": container.name,
                    "waited_ms": waited.map(|w| w.as_secs_f64() * 1000.0),
                    "warm_for_ms": container.ready_at.elapsed().as_millis() as u64,
                    "run": container.runs,
                }),
            );
            Held::Leased(lease)
        } else {
            let trace_id = spec.trace_id.to_string();
            let name = format!("tracebox-{trace_id}");
            let made = ContainerSpec {
                profile: &profile,
                files: spec.files,
                max_runs: 1,
                max_idle: spec.limits.timeout + SUPERVISOR_IDLE_SLACK,
                purpose: Purpose::Run(&trace_id),
            };
            let mut container = Container::start(&self.engine, &self.settings, &made, &name).await?;
            log.record("container.started", json!({ "container": name, "ms": container.start_ms }));
            container.taken();
            Held::Own(container)
        };
        Ok(Acquired(held))
    }

    /// Run one program in the container `acquired` holds, talking to its client through `io`
    /// and recording its steps in `log`. What the program leaves in `/workspace/out` is sent, as
    /// a tar, to `io.artifacts`. A container lost before it took the program gives `io` back.
    pub async fn run(&self, acquired: Acquired, spec: &RunSpec<'_>, io: RunIo, log: &mut EventLog) -> Handover {
        let Acquired(mut held) = acquired;
        let (key, event, request_id) = match spec.handler {
            Some(call) => (handler::new_key(), call.event.to_string(), spec.trace_id.to_string()),
            None => Default::default(),
        };
        let program = Program {
            code: spec.code,
            env: spec.env,
            stdin: spec.stdin,
            timeout: spec.limits.timeout,
            output_bytes: spec.limits.output_bytes,
            handler: spec.handler.map(|call| HandlerFrame {
                name: &call.name,
                event: &event,
                key: &key,
                request_id: &request_id,
                memory_mb: spec.limits.memory_bytes / (1024 * 1024),
                result_limit: call.result_limit,
                channel_limit: handler::channel_limit(call.result_limit),
            }),
        };
        let container = match &mut held {
            Held::Leased(lease) => lease.container(),
            Held::Own(container) => container,
        };
        let handover = run::run(container, program, io, log).await;
        let clean = matches!(&handover, Handover::Ran(Ok(raw)) if raw.clean);
        match held {
            Held::Leased(lease) => lease.release(clean),
            Held::Own(container) => container.discard(),
        }
        handover
    }

    /// Start the container of a stateful sandbox: every guarantee of a run's container, a
    /// `/workspace` of `disk_mb`, the sandbox's `env` for its commands and kernel.
    pub async fn start_session(&self, new: NewSession<'_>) -> Result<Session, SandboxError> {
        let limits = RunLimits {
            timeout: Duration::ZERO,
            memory_bytes: new.memory_bytes,
            cpus: new.cpus,
            pids: new.pids,
            output_bytes: 0,
        };
        let profile = Profile::of(new.language, &limits, Isolation::Fresh, None);
        let spec = ContainerSpec {
            profile: &profile,
            files: &[],
            max_runs: 1,
            max_idle: Duration::ZERO,
            purpose: Purpose::Sandbox { id: new.id, disk_mb: new.disk_mb, env: new.env },
        };
        Session::start(&self.engine, &self.settings, &spec, &sandbox_container_name(new.id)).await
    }

    /// Name a container started ahead after the sandbox that adopted it, so that `docker ps`
    /// tells which sandbox each container serves.
    pub async fn name_session(&self, container: &str, sandbox_id: &str) -> Result<(), SandboxError> {
        self.engine.rename(container, &sandbox_container_name(sandbox_id)).await
    }

    /// Remove a container (a sandbox's, not attached).
    pub async fn remove_container(&self, container: &str) -> Result<(), SandboxError> {
        self.engine.remove(container).await
    }

    /// Attach again to a sandbox's container that kept running while tracebox was down.
    pub async fn attach_session(&self, container: &str) -> Result<Session, SandboxError> {
        Session::attach(&self.engine, container).await
    }

    /// The sandbox containers of this data directory: (sandbox id, container id, running?).
    pub async fn sandbox_containers(&self) -> Result<Vec<(String, String, bool)>, SandboxError> {
        janitor::sandbox_containers(&self.engine, &self.settings.instance_id).await
    }

    /// Run a command or a code cell in a sandbox, as [`Sandbox::run`] runs a program.
    pub async fn run_step(
        session: &Session,
        step: Step<'_>,
        program: StepProgram<'_>,
        io: RunIo,
        log: &mut EventLog,
    ) -> Result<RawOutcome, SandboxError> {
        step::run(session, step, program.stdin, program.timeout, program.output_bytes, io, log).await
    }

    /// Remove this data directory's containers that `which` selects; returns how many.
    pub async fn sweep(&self, which: Sweep<'_>) -> Result<usize, SandboxError> {
        janitor::sweep(&self.engine, &self.settings, which).await
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
            runtime: self.settings.runtime.clone(),
            runtime_registered: None,
            error: None,
            pool: self.pool.state(),
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
        match tokio::time::timeout(HEALTH_TIMEOUT, self.check_runtime()).await {
            Ok(Ok(())) => health.runtime_registered = Some(true),
            Ok(Err(error @ SandboxError::RuntimeMissing { .. })) => {
                health.runtime_registered = Some(false);
                health.error.get_or_insert(error.to_string());
            }
            Ok(Err(error)) => _ = health.error.get_or_insert(error.to_string()),
            Err(_) => _ = health.error.get_or_insert_with(too_slow),
        }
        health
    }
}

/// The name of a sandbox's container.
fn sandbox_container_name(sandbox_id: &str) -> String {
    format!("tracebox-sandbox-{sandbox_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_runtime_says_how_to_register_it() {
        let gvisor = runtime_missing("unix:///var/run/docker.sock", "runsc", &["runc".to_owned()]);
        for part in [
            "no runtime named runsc",
            "(it has: runc)",
            "/etc/docker/daemon.json",
            r#"{"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}}}"#,
            "kill -HUP $(cat /var/run/docker.pid)",
            "scripts/ensure-runsc.sh",
            "TRACEBOX_RUNTIME=runc",
        ] {
            assert!(gvisor.contains(part), "{part:?} not in {gvisor}");
        }
        let other = runtime_missing("tcp://h:2376", "kata", &[]);
        assert!(other.contains(r#"{"runtimes": {"kata": {"path": "/path/to/kata"}}}"#), "{other}");
        assert!(!other.contains("it has"), "{other}");
    }
}
