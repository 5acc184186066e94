//! Stateful sandboxes: long-lived containers with a `/workspace` of their own, commands and code
//! cells whose state persists, files in and out, pause and resume, snapshots and reset.
//!
//! The store, not this process, owns a sandbox: its record says what it is and where, so a
//! restart of tracebox finds every sandbox again (`adopt`). Steps go through the one pipeline
//! (`Runner`, at `Place::Sandbox`); the container side is `crate::sandbox::Session`.

mod adoption;
mod lifecycle;
mod repo;
mod snapshots;
mod steps;
mod tools;
mod warm;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Semaphore;
use tracebox_model::sandbox::{OnTimeout, OpInput, OpOutput, SandboxRecord, SandboxStatus};
use tracebox_model::{EventLog, Language, Source, Status, TraceId, TraceInput, TraceOutput, now_us};

use crate::files::{FileError, Files};
use crate::nodes::{Node, Nodes, NodesError};
use crate::policy::Policy;
use crate::runner::{RunError, Runner};
use crate::sandbox::{OpError, SandboxError, Session};
use crate::trace::{FinishedTrace, NewTrace, StoreError, TraceStore};

pub use lifecycle::{CreateRequest, SandboxView};
pub use repo::{RepoError, RepoSettings, acts_as_server as repo_acts_as_server};
pub use snapshots::{SnapshotFileError, SnapshotFiles};
pub use steps::{CodeRequest, CommandRequest};
pub use tools::{ReplayReport, ReplayedStep, ToolReply};

/// Bounds and defaults of sandboxes (from the configuration).
#[derive(Debug, Clone)]
pub struct SandboxesSettings {
    /// Sandboxes that may exist at once (running or paused).
    pub max_sandboxes: usize,
    pub default_timeout_secs: f64,
    pub min_timeout_secs: f64,
    pub max_timeout_secs: f64,
    /// How long a sandbox may live at most, whatever its activity.
    pub max_lifetime_secs: f64,
    pub default_disk_mb: u64,
    pub max_disk_mb: u64,
    pub default_memory_mb: u64,
    pub max_memory_mb: u64,
    pub default_cpus: f64,
    pub max_cpus: f64,
    pub pids: i64,
    /// A step's (command's, cell's) timeout when it names none, and the most it may ask.
    pub default_step_timeout_secs: f64,
    pub max_step_timeout_secs: f64,
    /// Combined stdout + stderr of a step before it is stopped.
    pub output_bytes: u64,
    /// Steps that may wait for a sandbox's running one.
    pub max_queued_steps: usize,
    /// The largest file read or written at once through the files API.
    pub max_file_bytes: u64,
    /// Bytes of the files of one multipart upload, in all.
    pub max_upload_bytes: u64,
    /// Snapshots' compressed bytes per sandbox, and in all.
    pub max_snapshot_bytes: u64,
    pub max_total_snapshot_bytes: u64,
    /// Containers started ahead for the default sandbox of each language.
    pub pool_size: usize,
    /// Clones of sandboxes' repositories.
    pub repo: RepoSettings,
}

/// A sandbox operation that cannot be done; each maps to one HTTP status (`api/error.rs`).
#[derive(Debug, thiserror::Error)]
pub enum SandboxesError {
    #[error("no sandbox {0:?}; list them with GET /sandboxes")]
    NotFound(String),
    /// A request field out of bounds or malformed; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// Not in a state for this (paused, say); the message says what to do.
    #[error("{0}")]
    Conflict(String),
    #[error(
        "{count} sandboxes exist, the most this server keeps (TRACEBOX_SANDBOX_MAX); delete one, or raise the setting"
    )]
    TooMany { count: usize },
    /// A step is running and the queue behind it is full.
    #[error(
        "sandbox {id} is running a step and {queued} more wait, the most allowed (TRACEBOX_SANDBOX_MAX_QUEUED_STEPS); wait for one to end"
    )]
    Busy { id: String, queued: usize },
    /// A path outside `/workspace`, or one that does not fit the operation.
    #[error("{message}")]
    BadPath { message: String },
    #[error("{message}")]
    NoSuchFile { message: String },
    #[error(
        "snapshots of this sandbox would take {bytes} bytes, over the {limit} allowed (TRACEBOX_SNAPSHOT_MAX_BYTES, TRACEBOX_SNAPSHOT_MAX_TOTAL_BYTES); delete sandboxes no longer needed (their snapshots go with them), or raise the settings"
    )]
    SnapshotQuota { bytes: u64, limit: u64 },
    #[error("{0}")]
    TooLarge(String),
    #[error("the range starts past the end of the file ({size} bytes as served)")]
    RangeNotSatisfiable { size: u64 },
    /// The operation's task ended before it did (a panic, a shutdown).
    #[error("the operation did not finish: {0}")]
    Unfinished(String),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Its node is down, or no node can take a new sandbox.
    #[error(transparent)]
    Node(#[from] NodesError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Files(#[from] FileError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotFileError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A `setup` command failed: the sandbox is not kept.
    #[error("setup command {index} ({command:?}) failed: {why}; the sandbox was removed")]
    SetupFailed { index: usize, command: String, why: String, trace_id: TraceId },
}

impl SandboxesError {
    /// The request was refused for what it asked (a bad field, a path, a size), not for the
    /// server's or the sandbox's trouble.
    pub fn is_callers(&self) -> bool {
        matches!(
            self,
            SandboxesError::Invalid(_)
                | SandboxesError::BadPath { .. }
                | SandboxesError::NoSuchFile { .. }
                | SandboxesError::TooLarge(_)
                | SandboxesError::RangeNotSatisfiable { .. }
        )
    }
}

impl From<OpError> for SandboxesError {
    fn from(error: OpError) -> SandboxesError {
        match error {
            OpError::Refused { code, message } => match code.as_str() {
                "bad_path" | "is_a_directory" | "not_a_directory" | "not_a_file" => SandboxesError::BadPath { message },
                "not_found" => SandboxesError::NoSuchFile { message },
                "no_space" | "too_large" => SandboxesError::TooLarge(message),
                _ => SandboxesError::Sandbox(SandboxError::Refused { code, message }),
            },
            OpError::Gone => SandboxesError::Sandbox(SandboxError::SessionGone),
            OpError::Removed => SandboxesError::Sandbox(SandboxError::SessionRemoved),
            OpError::Sandbox(error) => SandboxesError::Sandbox(error),
        }
    }
}

/// The sandboxes. Cheap to clone.
#[derive(Clone)]
pub struct Sandboxes {
    inner: Arc<Inner>,
}

struct Inner {
    settings: SandboxesSettings,
    /// Where sandboxes' containers run: each sandbox on one node, for its life (or until a
    /// resume finds its node down and moves it).
    nodes: Nodes,
    /// Redacts what file reads return, as it does runs' output.
    policy: Arc<Policy>,
    store: TraceStore,
    runner: Runner,
    files: Files,
    snapshots: SnapshotFiles,
    boot_id: String,
    /// The running sandboxes' sessions.
    live: Mutex<HashMap<String, Arc<Live>>>,
    /// Read-modify-write of records, one at a time.
    records: tokio::sync::Mutex<()>,
    /// Containers started ahead for the default sandboxes, per node.
    warm: BTreeMap<String, warm::Warm>,
    /// Sandboxes being created: counted with those stored, so that creates at once cannot pass
    /// TRACEBOX_SANDBOX_MAX together.
    creating: std::sync::atomic::AtomicUsize,
}

/// A running sandbox: its container's session, and the one step it runs at a time. Its node
/// counts it (for placement and `/nodes`) while it is live.
struct Live {
    session: Session,
    node: Arc<Node>,
    steps: Arc<Semaphore>,
    queued: std::sync::atomic::AtomicUsize,
}

impl Live {
    fn new(session: Session, node: Arc<Node>) -> Live {
        node.count_sandbox(true);
        Live { session, node, steps: Arc::new(Semaphore::new(1)), queued: std::sync::atomic::AtomicUsize::new(0) }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.node.count_sandbox(false);
    }
}

impl Sandboxes {
    #[allow(clippy::too_many_arguments)] // the services a sandbox uses, each its own
    pub fn new(
        settings: SandboxesSettings,
        nodes: Nodes,
        policy: Arc<Policy>,
        store: TraceStore,
        runner: Runner,
        files: Files,
        snapshots: SnapshotFiles,
        boot_id: &str,
    ) -> Sandboxes {
        let profile = warm::Profile {
            memory_mb: settings.default_memory_mb,
            cpus: settings.default_cpus,
            pids: settings.pids,
            disk_mb: settings.default_disk_mb,
        };
        let warm = nodes
            .all()
            .iter()
            .map(|node| {
                let warm =
                    warm::Warm::new(node.sandbox().clone(), runner.runtime().clone(), settings.pool_size, profile);
                (node.name().to_owned(), warm)
            })
            .collect();
        // Clones a crash left half-made are nobody's.
        repo::clear(&settings.repo);
        Sandboxes {
            inner: Arc::new(Inner {
                warm,
                settings,
                nodes,
                policy,
                store,
                runner,
                files,
                snapshots,
                boot_id: boot_id.to_owned(),
                live: Mutex::new(HashMap::new()),
                records: tokio::sync::Mutex::new(()),
                creating: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    pub fn settings(&self) -> &SandboxesSettings {
        &self.inner.settings
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Live>>> {
        self.inner.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A sandbox's record; `NotFound` when there is none.
    pub async fn record(&self, id: &str) -> Result<SandboxRecord, SandboxesError> {
        match self.inner.store.sandbox(id).await? {
            Some(record) if record.status != SandboxStatus::Stopped => Ok(record),
            _ => Err(SandboxesError::NotFound(id.to_owned())),
        }
    }

    /// The session of a running sandbox; `Conflict` when it is paused, `NodeDown` when its
    /// node's engine does not answer (a container that stopped talking is asked about: was it
    /// the container, or its engine?).
    async fn session_of(&self, record: &SandboxRecord) -> Result<Arc<Live>, SandboxesError> {
        if record.status == SandboxStatus::Paused {
            return Err(SandboxesError::Conflict(format!(
                "sandbox {} is paused; resume it first (POST /sandboxes/{}/resume)",
                record.id, record.id
            )));
        }
        let nodes = &self.inner.nodes;
        nodes.reachable(&record.node)?;
        let live = self.live().get(&record.id).cloned();
        if live.as_ref().is_some_and(|live| live.session.is_gone()) && !nodes.answers(&record.node).await {
            return Err(nodes
                .reachable(&record.node)
                .err()
                .unwrap_or_else(|| NodesError::NodeDown {
                    name: record.node.clone(),
                    why: "its engine does not answer".to_owned(),
                })
                .into());
        }
        live.ok_or_else(|| {
            SandboxesError::Conflict(format!(
                "sandbox {} has no container right now (its engine may be down); try again, or delete it",
                record.id
            ))
        })
    }

    /// Change a record under the records' lock: `change` sees the stored record.
    async fn update(&self, id: &str, change: impl FnOnce(&mut SandboxRecord)) -> Result<SandboxRecord, SandboxesError> {
        let _one_at_a_time = self.inner.records.lock().await;
        let mut record = self.record(id).await?;
        change(&mut record);
        self.inner.store.put_sandbox(record.clone()).await?;
        Ok(record)
    }

    /// Note activity (it moves the idle timeout) and a step.
    async fn touch(&self, id: &str, step: bool) -> Result<SandboxRecord, SandboxesError> {
        self.update(id, |record| {
            record.last_activity_at_us = now_us();
            record.steps += u64::from(step);
        })
        .await
    }

    /// Record an operation on a sandbox as one of its steps: `work` runs between the trace's
    /// start and end, and its outcome is the step's.
    async fn traced<T>(
        &self,
        record: &SandboxRecord,
        input: OpInput,
        work: impl Future<Output = Result<(T, OpOutput), SandboxesError>>,
    ) -> Result<(T, TraceId), SandboxesError> {
        let id = TraceId::new();
        let mut log = EventLog::start();
        self.inner.store.begin(NewTrace {
            id,
            parent_id: Some(record.trace_id),
            source: Source::Http,
            language: None,
            boot_id: self.inner.boot_id.clone(),
            started_at_us: log.started_at_us(),
            input: TraceInput::SandboxOp(input),
            tenant: None,
        });
        let result = work.await;
        let (status, output) = match &result {
            Ok((_, output)) => (Status::Success, output.clone()),
            Err(error) => {
                let report = tracebox_model::record::ErrorReport { code: None, message: error.to_string() };
                (Status::Error, OpOutput { error: Some(report), ..OpOutput::default() })
            }
        };
        log.record("finished", json!({ "status": status }));
        let finished = FinishedTrace {
            id,
            status,
            ended_at_us: log.now_us(),
            exit_code: None,
            output: TraceOutput::SandboxOp(output),
            events: log.into_events(),
        };
        self.inner.store.finish(finished).await?;
        let _ = self.touch(&record.id, true).await;
        result.map(|(value, _)| (value, id))
    }

    /// End a sandbox's trace (deleted, killed, lost) with how many steps it took.
    async fn end_trace(&self, record: &SandboxRecord, ended: &str, status: Status) {
        let output = tracebox_model::sandbox::SandboxOutput { ended: ended.to_owned(), steps: record.steps };
        let mut log = EventLog::start();
        log.record("sandbox.ended", json!({ "why": ended }));
        let finished = FinishedTrace {
            id: record.trace_id,
            status,
            ended_at_us: log.now_us(),
            exit_code: None,
            output: TraceOutput::Sandbox(output),
            events: log.into_events(),
        };
        if let Err(error) = self.inner.store.finish(finished).await {
            tracing::warn!(sandbox = %record.id, %error, "could not end a sandbox's trace");
        }
    }
}

/// A new id: `prefix` and 26 lower-case letters and digits (130 random bits).
fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let random = [uuid::Uuid::new_v4().into_bytes(), uuid::Uuid::new_v4().into_bytes()].concat();
    let mut id = String::with_capacity(prefix.len() + 26);
    id.push_str(prefix);
    id.extend(random.iter().take(26).map(|byte| char::from(ALPHABET[usize::from(byte % 32)])));
    id
}

/// The seconds a request asked for, within `min..=max`, or `default`; the field named when not.
fn seconds(field: &str, asked: Option<f64>, default: f64, min: f64, max: f64) -> Result<f64, SandboxesError> {
    let secs = asked.unwrap_or(default);
    if !secs.is_finite() || secs < min || secs > max {
        return Err(SandboxesError::Invalid(format!("`{field}`: {secs} s is outside {min}..={max} s")));
    }
    Ok(secs)
}

/// How long a sandbox's step may take at most to be stopped and say so.
const STOP_PATIENCE: Duration = Duration::from_secs(15);

/// The environment of a sandbox, checked like a run's.
fn check_env(env: &BTreeMap<String, String>) -> Result<(), SandboxesError> {
    crate::submission::check_env(env).map_err(|error| SandboxesError::Invalid(error.to_string()))
}

/// The language a request named, or Python.
fn language(asked: Option<&str>) -> Result<Language, SandboxesError> {
    let parsed = asked.map(str::parse::<Language>).transpose();
    parsed
        .map(|language| language.unwrap_or(Language::Python))
        .map_err(|error| SandboxesError::Invalid(format!("`language`: {error}")))
}

/// What happens at the idle timeout, as a request names it.
fn on_timeout(asked: Option<&str>) -> Result<OnTimeout, SandboxesError> {
    match asked {
        None | Some("pause") => Ok(OnTimeout::Pause),
        Some("kill") => Ok(OnTimeout::Kill),
        Some(other) => Err(SandboxesError::Invalid(format!("`on_timeout`: {other:?} is not pause or kill"))),
    }
}

/// Use the engine's operations without waiting longer than `STOP_PATIENCE`.
async fn patiently<T>(what: &str, work: impl Future<Output = Result<T, SandboxesError>>) -> Result<T, SandboxesError> {
    tokio::time::timeout(STOP_PATIENCE, work).await.unwrap_or_else(|_| {
        Err(SandboxesError::Sandbox(SandboxError::NotReady { why: format!("{what} took over {STOP_PATIENCE:?}") }))
    })
}
