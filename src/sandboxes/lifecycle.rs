//! A sandbox's life: created (its container started, uploads copied in), looked up, given a new
//! idle timeout, paused (its `/workspace` kept on the server's disk) and resumed, snapshotted
//! and reset, deleted; found again after a restart; paused or removed when idle or too old.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tracebox_model::sandbox::{
    OnTimeout, OpInput, OpOutput, RepoSource, SandboxInput, SandboxOp, SandboxRecord, SandboxStatus, SnapshotRecord,
};
use tracebox_model::{Placement, Source, Status, TraceId, TraceInput, format_us, now_us};

use super::{
    CommandRequest, Live, Sandboxes, SandboxesError, check_env, language, new_id, on_timeout, patiently, seconds,
};
use crate::nodes::NodeState;
use crate::sandbox::{NewSession, OpFrame, Session, Sweep};
use crate::trace::NewTrace;

/// `POST /sandboxes`, as a door received it: every field optional.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub language: Option<String>,
    /// Idle seconds before it is paused (or killed, `on_timeout`).
    pub timeout: Option<f64>,
    pub on_timeout: Option<String>,
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    pub disk_mb: Option<u64>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Uploads copied into `/workspace` (writable).
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// A repository at a commit, cloned by the server into `/workspace` (with its `.git`).
    pub repo: Option<RepoSource>,
    /// Commands run in the sandbox after the copy, as its first steps; the creation state is
    /// kept after them.
    #[serde(default)]
    pub setup: Vec<String>,
    /// Labels the node it goes to must carry (`[[nodes]]`' labels).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whose it is: set by the door from the caller's key, never read from the body.
    #[serde(skip)]
    pub tenant: Option<String>,
}

/// How long a view waits for a sandbox's disk usage.
const USAGE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// A sandbox as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxView {
    pub sandbox_id: String,
    pub status: SandboxStatus,
    pub language: tracebox_model::Language,
    pub memory_mb: u64,
    pub cpus: f64,
    pub disk_mb: u64,
    /// Bytes its `/workspace` holds (running sandboxes; null when it could not be asked).
    pub disk_used_bytes: Option<u64>,
    pub metadata: BTreeMap<String, String>,
    pub created_at: String,
    pub last_activity_at: String,
    /// When the idle timeout fires if nothing else happens.
    pub expires_at: String,
    pub timeout: f64,
    pub on_timeout: OnTimeout,
    /// When its maximum lifetime ends.
    pub lifetime_ends_at: String,
    pub steps: u64,
    pub trace_id: TraceId,
    /// The node its container runs on.
    pub node: String,
    /// Said on a resume: its kernel's variables did not survive the pause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl SandboxView {
    pub fn of(record: &SandboxRecord, disk_used_bytes: Option<u64>) -> SandboxView {
        SandboxView {
            sandbox_id: record.id.clone(),
            status: record.status,
            language: record.language,
            memory_mb: record.memory_mb,
            cpus: record.cpus,
            disk_mb: record.disk_mb,
            disk_used_bytes,
            metadata: record.metadata.clone(),
            created_at: format_us(record.created_at_us),
            last_activity_at: format_us(record.last_activity_at_us),
            expires_at: format_us(record.expires_at_us()),
            timeout: record.timeout_secs,
            on_timeout: record.on_timeout,
            lifetime_ends_at: format_us(record.lifetime_ends_at_us),
            steps: record.steps,
            trace_id: record.trace_id,
            node: record.node.clone(),
            note: None,
        }
    }
}

/// Metadata a sandbox may carry: a few short labels.
const MAX_METADATA: usize = 64;
const MAX_METADATA_BYTES: usize = 256;

impl Sandboxes {
    /// Make a sandbox: its record, its trace, its container with the uploads in `/workspace`.
    /// Nothing is left behind when it fails.
    pub async fn create(&self, request: CreateRequest) -> Result<SandboxView, SandboxesError> {
        let settings = &self.inner.settings;
        let language = language(request.language.as_deref())?;
        let timeout = seconds(
            "timeout",
            request.timeout,
            settings.default_timeout_secs,
            settings.min_timeout_secs,
            settings.max_timeout_secs,
        )?;
        let memory_mb =
            bounded("memory_mb", request.memory_mb, settings.default_memory_mb, 16, settings.max_memory_mb)?;
        let disk_mb = bounded("disk_mb", request.disk_mb, settings.default_disk_mb, 1, settings.max_disk_mb)?;
        let cpus = request.cpus.unwrap_or(settings.default_cpus);
        if !cpus.is_finite() || cpus < 0.01 || cpus > settings.max_cpus {
            return Err(SandboxesError::Invalid(format!("`cpus`: {cpus} is outside 0.01..={}", settings.max_cpus)));
        }
        check_env(&request.env)?;
        check_metadata(&request.metadata)?;
        check_setup(&request.setup)?;
        if let Some(repo) = &request.repo {
            super::repo::check(repo)?;
        }
        let on_timeout = on_timeout(request.on_timeout.as_deref())?;
        let inputs = self.inner.files.inputs(&request.files, request.tenant.as_deref()).await?;
        let _reserved = self.reserve().await?;
        let placement = Placement { strategy: None, labels: request.labels.clone() };
        let node = self.inner.nodes.pick(&placement, false, &Default::default())?;
        let now = now_us();
        let record = SandboxRecord {
            id: super::new_id("sbx_"),
            status: SandboxStatus::Running,
            language,
            memory_mb,
            cpus,
            disk_mb,
            env: request.env,
            metadata: request.metadata,
            container: None,
            trace_id: TraceId::new(),
            created_at_us: now,
            last_activity_at_us: now,
            timeout_secs: timeout,
            on_timeout,
            lifetime_ends_at_us: now + (settings.max_lifetime_secs * 1e6) as i64,
            creation_snapshot: None,
            paused_snapshot: None,
            steps: 0,
            // Kept and shown without the credentials a URL may carry; cloned with them.
            repo: request.repo.as_ref().map(RepoSource::without_credentials),
            tenant: request.tenant.clone(),
            node: node.name().to_owned(),
            labels: request.labels.clone(),
        };
        self.begin_trace(&record, &request.files, &request.setup);
        let record =
            match self.bring_up(record.clone(), &inputs, request.repo.as_ref(), !request.setup.is_empty()).await {
                Ok(record) => record,
                Err(error) => {
                    let status = if error.is_callers() { Status::Error } else { Status::InternalError };
                    self.end_trace(&record, &format!("failed to start: {error}"), status).await;
                    return Err(error);
                }
            };
        if request.setup.is_empty() {
            return Ok(SandboxView::of(&record, None));
        }
        match self.set_up(&record, &request.setup).await {
            Ok(record) => Ok(SandboxView::of(&record, None)),
            Err(error) => {
                if let Err(removing) = self.remove(&record, &format!("its setup failed: {error}"), Status::Error).await
                {
                    tracing::warn!(sandbox = %record.id, error = %removing, "could not remove a sandbox whose setup failed");
                }
                Err(error)
            }
        }
    }

    /// Run the `setup` commands as the sandbox's first steps, then keep `/workspace` as its
    /// creation state (what a reset goes back to).
    async fn set_up(&self, record: &SandboxRecord, setup: &[String]) -> Result<SandboxRecord, SandboxesError> {
        for (index, command) in setup.iter().enumerate() {
            tracing::info!(sandbox = %record.id, index, command, "running a setup command");
            // Installing a project's dependencies takes longer than a step usually may.
            let timeout = Some(self.inner.settings.max_step_timeout_secs);
            let request = CommandRequest { cmd: command.clone(), timeout, ..CommandRequest::default() };
            let execution = self.command(&record.id, request).await?;
            if execution.status != Status::Success {
                return Err(SandboxesError::SetupFailed {
                    index,
                    command: command.clone(),
                    why: why_failed(&execution),
                    trace_id: execution.trace_id,
                });
            }
        }
        let live = self.session_of(record).await?;
        let tar = tar(&live.session).await?;
        let snapshot = self.keep_snapshot(record, &tar, Some("creation"), &[]).await?;
        self.update(&record.id, |record| record.creation_snapshot = Some(snapshot.id.clone())).await
    }

    /// A place for one more sandbox, held while it is created; `TooMany` when the sandboxes
    /// stored and those being created fill TRACEBOX_SANDBOX_MAX.
    async fn reserve(&self) -> Result<Reservation, SandboxesError> {
        let _one_at_a_time = self.inner.records.lock().await;
        let creating = self.inner.creating.load(Ordering::SeqCst);
        let count = self.inner.store.sandboxes(None).await?.len() + creating;
        if count >= self.inner.settings.max_sandboxes {
            return Err(SandboxesError::TooMany { count });
        }
        self.inner.creating.fetch_add(1, Ordering::SeqCst);
        Ok(Reservation { sandboxes: self.clone() })
    }

    fn begin_trace(&self, record: &SandboxRecord, files: &[String], setup: &[String]) {
        let input = SandboxInput {
            sandbox_id: record.id.clone(),
            language: record.language,
            memory_mb: record.memory_mb,
            cpus: record.cpus,
            disk_mb: record.disk_mb,
            env_names: record.env.keys().cloned().collect(),
            metadata: record.metadata.clone(),
            files: files.to_vec(),
            timeout_secs: record.timeout_secs,
            on_timeout: record.on_timeout,
            repo: record.repo.clone(),
            setup: setup.to_vec(),
        };
        self.inner.store.begin(NewTrace {
            id: record.trace_id,
            parent_id: None,
            source: Source::Http,
            language: Some(record.language),
            boot_id: self.inner.boot_id.clone(),
            started_at_us: record.created_at_us,
            input: TraceInput::Sandbox(input),
            tenant: record.tenant.clone(),
        });
    }

    /// Start the container (while the repository, if any, is cloned), copy the repository and
    /// the uploads in, keep the creation state when there is one (unless `setup` commands are
    /// still to change it), and record it all.
    async fn bring_up(
        &self,
        mut record: SandboxRecord,
        inputs: &[tracebox_model::InputFile],
        repo: Option<&RepoSource>,
        setup: bool,
    ) -> Result<SandboxRecord, SandboxesError> {
        let (session, workspace) =
            tokio::join!(self.start_container(&record), self.workspace_tar(&record, inputs, repo));
        let session = session?;
        let copied = async {
            if let Some(tar) = workspace? {
                // The container unpacks while the server compresses the same tar as the
                // creation state: on a repository of tens of MB, each takes about a second.
                let keeping = async {
                    if setup {
                        return Ok(None);
                    }
                    self.keep_snapshot(&record, &tar, Some("creation"), &[]).await.map(Some)
                };
                let (unpacked, kept) = tokio::join!(untar(&session, &tar), keeping);
                unpacked?;
                record.creation_snapshot = kept?.map(|snapshot| snapshot.id);
            }
            record.container = Some(session.container().to_owned());
            self.inner.store.put_sandbox(record.clone()).await?;
            Ok::<_, SandboxesError>(())
        };
        if let Err(error) = copied.await {
            let _ = session.remove().await;
            self.forget_snapshots(&record.id).await;
            return Err(error);
        }
        self.go_live(&record, session)?;
        Ok(record)
    }

    /// What `/workspace` starts with: the repository's tree at its commit, then the uploads
    /// (None: nothing).
    async fn workspace_tar(
        &self,
        record: &SandboxRecord,
        inputs: &[tracebox_model::InputFile],
        repo: Option<&RepoSource>,
    ) -> Result<Option<Vec<u8>>, SandboxesError> {
        let mut builder = match repo {
            Some(repo) => {
                let settings = &self.inner.settings.repo;
                let disk = record.disk_mb << 20;
                let (limit, why) = if disk < settings.max_bytes {
                    (disk, format!("the sandbox's disk_mb ({})", record.disk_mb))
                } else {
                    (settings.max_bytes, "TRACEBOX_REPO_MAX_BYTES".to_owned())
                };
                super::repo::fetch(repo, settings, limit, &why).await?
            }
            None if inputs.is_empty() => return Ok(None),
            None => tar::Builder::new(Vec::new()),
        };
        for input in inputs {
            builder
                .append_path_with_name(&input.host_path, &input.name)
                .map_err(|e| SandboxesError::Invalid(format!("cannot read the upload {:?}: {e}", input.name)))?;
        }
        let tar = builder.into_inner();
        tar.map(Some).map_err(|e| SandboxesError::Invalid(format!("cannot pack /workspace's files: {e}")))
    }

    /// Start the sandbox's container on its node.
    async fn start_container(&self, record: &SandboxRecord) -> Result<Session, SandboxesError> {
        let node = self.inner.nodes.reachable(&record.node)?;
        let profile = super::warm::Profile {
            memory_mb: record.memory_mb,
            cpus: record.cpus,
            pids: self.inner.settings.pids,
            disk_mb: record.disk_mb,
        };
        // A warm container has no environment of its own: a sandbox with one gets its own.
        if record.env.is_empty()
            && let Some(session) =
                self.inner.warm.get(&record.node).and_then(|warm| warm.take(record.language, profile))
        {
            let (runtime, container, id) = (node.sandbox().clone(), session.container().to_owned(), record.id.clone());
            // Off the creation's path: the name is for people reading `docker ps`.
            self.inner.runner.runtime().spawn(async move {
                if let Err(error) = runtime.name_session(&container, &id).await {
                    tracing::warn!(%error, sandbox = %id, "could not name the sandbox's container after it");
                }
            });
            return Ok(session);
        }
        let new = NewSession {
            id: &record.id,
            language: record.language,
            memory_bytes: (record.memory_mb + record.disk_mb) << 20,
            cpus: record.cpus,
            pids: self.inner.settings.pids,
            disk_mb: record.disk_mb,
            env: &record.env,
        };
        Ok(node.sandbox().start_session(new).await?)
    }

    /// `session` serves sandbox `record` from now on.
    pub(super) fn go_live(&self, record: &SandboxRecord, session: Session) -> Result<(), SandboxesError> {
        let node = Arc::clone(self.inner.nodes.get(&record.node)?);
        self.live().insert(record.id.clone(), Arc::new(Live::new(session, node)));
        Ok(())
    }

    /// One sandbox as the API shows it, with its disk use when it runs.
    pub async fn view(&self, id: &str) -> Result<SandboxView, SandboxesError> {
        let record = self.record(id).await?;
        let used = match self.session_of(&record).await {
            // A busy supervisor makes the view wait no more than this: the usage is then null.
            Ok(live) => tokio::time::timeout(USAGE_PATIENCE, live.session.call(json!({"op": "usage"}), &[]))
                .await
                .ok()
                .and_then(Result::ok)
                .and_then(|reply| reply["used"].as_u64()),
            Err(_) => None,
        };
        Ok(SandboxView::of(&record, used))
    }

    /// The sandboxes, newest first: of `status` when given, whose metadata hold every pair of
    /// `metadata`, and of `tenant` when given.
    pub async fn list(
        &self,
        status: Option<SandboxStatus>,
        metadata: &BTreeMap<String, String>,
        tenant: Option<&str>,
    ) -> Result<Vec<SandboxView>, SandboxesError> {
        let records = self.inner.store.sandboxes(status).await?;
        let matches = |record: &SandboxRecord| {
            tenant.is_none_or(|tenant| record.tenant.as_deref() == Some(tenant))
                && metadata.iter().all(|(k, v)| record.metadata.get(k) == Some(v))
        };
        Ok(records.iter().filter(|record| matches(record)).map(|record| SandboxView::of(record, None)).collect())
    }

    /// Kill and remove a sandbox, its snapshots with it; its trace stays.
    pub async fn delete(&self, id: &str) -> Result<(), SandboxesError> {
        let record = self.record(id).await?;
        self.remove(&record, "deleted", Status::Success).await
    }

    pub(super) async fn remove(&self, record: &SandboxRecord, why: &str, status: Status) -> Result<(), SandboxesError> {
        let live = self.live().remove(&record.id);
        if let Some(live) = live {
            patiently("removing a sandbox's container", async { Ok(live.session.remove().await?) }).await?;
        } else if let Some(container) = &record.container
            && let Ok(node) = self.inner.nodes.reachable(&record.node)
        {
            // Not attached (its engine was down at start): removed all the same. On a node that
            // is down, the sweep when it comes back removes it (no sandbox owns it then).
            let _ = node.sandbox().remove_container(container).await;
        }
        self.forget_snapshots(&record.id).await;
        self.inner.store.remove_sandbox(&record.id).await?;
        self.end_trace(record, why, status).await;
        tracing::info!(sandbox = %record.id, why, "sandbox removed");
        Ok(())
    }

    /// How many sandboxes `tenant` holds (running or paused).
    pub async fn count_of(&self, tenant: &str) -> Result<u64, crate::trace::StoreError> {
        let records = self.inner.store.sandboxes(None).await?;
        Ok(records.iter().filter(|record| record.tenant.as_deref() == Some(tenant)).count() as u64)
    }

    /// Remove every sandbox (of `tenant`, when given); how many went.
    pub async fn cleanup(&self, tenant: Option<&str>) -> Result<usize, SandboxesError> {
        let mut records = self.inner.store.sandboxes(None).await?;
        records.retain(|record| tenant.is_none_or(|tenant| record.tenant.as_deref() == Some(tenant)));
        for record in &records {
            self.remove(record, "cleaned up", Status::Success).await?;
        }
        Ok(records.len())
    }

    /// A new idle timeout, counted from now.
    pub async fn set_timeout(
        &self,
        id: &str,
        timeout: Option<f64>,
        on_timeout_asked: Option<&str>,
    ) -> Result<SandboxView, SandboxesError> {
        let settings = &self.inner.settings;
        let current = self.record(id).await?;
        let timeout =
            seconds("timeout", timeout, current.timeout_secs, settings.min_timeout_secs, settings.max_timeout_secs)?;
        let on = match on_timeout_asked {
            Some(_) => on_timeout(on_timeout_asked)?,
            None => current.on_timeout,
        };
        let record = self
            .update(id, |record| {
                record.timeout_secs = timeout;
                record.on_timeout = on;
                record.last_activity_at_us = now_us();
            })
            .await?;
        Ok(SandboxView::of(&record, None))
    }

    /// Keep `/workspace` on the server's disk and free the container.
    pub async fn pause(&self, id: &str) -> Result<SandboxView, SandboxesError> {
        let record = self.record(id).await?;
        let live = self.session_of(&record).await?;
        let _only_step = live.steps.acquire().await;
        let input = OpInput { sandbox_id: id.to_owned(), op: SandboxOp::Pause, path: None, snapshot: None };
        let (record, _) = self
            .traced(&record, input, async {
                let tar = tar(&live.session).await?;
                // A pause's snapshot replaces the last pause's: pausing again and again never
                // fills the quota.
                let earlier: Vec<String> = self
                    .inner
                    .store
                    .snapshots(id)
                    .await?
                    .into_iter()
                    .filter(|s| s.label.as_deref() == Some("pause"))
                    .map(|s| s.id)
                    .collect();
                let snapshot = self.keep_snapshot(&record, &tar, Some("pause"), &earlier).await?;
                let output =
                    OpOutput { bytes: Some(snapshot.bytes), snapshot_id: Some(snapshot.id.clone()), error: None };
                let record = self
                    .update(id, |record| {
                        record.status = SandboxStatus::Paused;
                        record.paused_snapshot = Some(snapshot.id);
                        record.container = None;
                    })
                    .await?;
                self.live().remove(id);
                let _ = live.session.remove().await;
                Ok((record, output))
            })
            .await?;
        Ok(SandboxView::of(&record, None))
    }

    /// A new container with the files the pause kept.
    pub async fn resume(&self, id: &str) -> Result<SandboxView, SandboxesError> {
        let record = self.record(id).await?;
        if record.status != SandboxStatus::Paused {
            return Err(SandboxesError::Conflict(format!("sandbox {id} is {}, not paused", record.status)));
        }
        let snapshot = record.paused_snapshot.clone();
        // Its files are on the server's disk: a node that is down or draining is no reason to
        // wait; it goes to another that carries its labels.
        let stays = self.inner.nodes.get(&record.node).is_ok_and(|node| node.state() == NodeState::Up);
        let record = match stays {
            true => record,
            false => {
                let placement = Placement { strategy: None, labels: record.labels.clone() };
                let node = self.inner.nodes.pick(&placement, false, &Default::default())?;
                tracing::info!(sandbox = id, from = %record.node, to = %node.name(), "resuming on another node: its own is down");
                self.update(id, |record| record.node = node.name().to_owned()).await?
            }
        };
        let input =
            OpInput { sandbox_id: id.to_owned(), op: SandboxOp::Resume, path: None, snapshot: snapshot.clone() };
        let (record, _) = self
            .traced(&record, input, async {
                let session = self.start_container(&record).await?;
                let restored = async {
                    if let Some(snapshot) = &snapshot {
                        untar(&session, &self.open_snapshot(id, snapshot).await?).await?;
                    }
                    self.update(id, |record| {
                        record.status = SandboxStatus::Running;
                        record.container = Some(session.container().to_owned());
                        record.last_activity_at_us = now_us();
                    })
                    .await
                };
                match restored.await {
                    Ok(record) => {
                        self.go_live(&record, session)?;
                        Ok((record, OpOutput::default()))
                    }
                    Err(error) => {
                        let _ = session.remove().await;
                        Err(error)
                    }
                }
            })
            .await?;
        let mut view = SandboxView::of(&record, None);
        view.note = Some("resumed with the files it had; its interpreter's variables did not survive the pause".into());
        Ok(view)
    }

    /// Keep `/workspace` as it is now.
    pub async fn snapshot(&self, id: &str, label: Option<String>) -> Result<SnapshotRecord, SandboxesError> {
        let record = self.record(id).await?;
        let live = self.session_of(&record).await?;
        let input = OpInput { sandbox_id: id.to_owned(), op: SandboxOp::Snapshot, path: None, snapshot: label.clone() };
        let (snapshot, _) = self
            .traced(&record, input, async {
                let tar = tar(&live.session).await?;
                let snapshot = self.keep_snapshot(&record, &tar, label.as_deref(), &[]).await?;
                let output =
                    OpOutput { bytes: Some(snapshot.bytes), snapshot_id: Some(snapshot.id.clone()), error: None };
                Ok((snapshot, output))
            })
            .await?;
        Ok(snapshot)
    }

    /// A sandbox's snapshots, oldest first.
    pub async fn snapshots(&self, id: &str) -> Result<Vec<SnapshotRecord>, SandboxesError> {
        self.record(id).await?;
        Ok(self.inner.store.snapshots(id).await?)
    }

    /// `/workspace` as a snapshot kept it (by default, as it was right after creation), and a
    /// new kernel.
    pub async fn reset(&self, id: &str, snapshot: Option<String>) -> Result<SandboxView, SandboxesError> {
        let record = self.record(id).await?;
        let live = self.session_of(&record).await?;
        let _only_step = live.steps.acquire().await;
        let target = snapshot.clone().or_else(|| record.creation_snapshot.clone());
        let input = OpInput { sandbox_id: id.to_owned(), op: SandboxOp::Reset, path: None, snapshot: target.clone() };
        self.traced(&record, input, async {
            let tar = match &target {
                Some(snapshot) => self.open_snapshot(id, snapshot).await?,
                None => empty_tar()?,
            };
            untar(&live.session, &tar).await?;
            live.session.call(json!({"op": "restart"}), &[]).await?;
            Ok(((), OpOutput { bytes: Some(tar.len() as u64), ..OpOutput::default() }))
        })
        .await?;
        Ok(SandboxView::of(&self.record(id).await?, None))
    }

    /// Compress and keep `tar` as a snapshot of `record`, within the quotas, in place of the
    /// snapshots `replacing` names (which then neither count nor stay).
    async fn keep_snapshot(
        &self,
        record: &SandboxRecord,
        tar: &[u8],
        label: Option<&str>,
        replacing: &[String],
    ) -> Result<SnapshotRecord, SandboxesError> {
        let settings = &self.inner.settings;
        let files = self.inner.snapshots.clone();
        let tar = tar.to_vec();
        let compressed = tokio::task::spawn_blocking(move || files.compress(&tar))
            .await
            .map_err(|e| SandboxesError::Invalid(format!("keeping a snapshot failed: {e}")))??;
        let bytes = compressed.len();
        // Within the quotas before anything is written: a refused snapshot leaves no file.
        let kept = self.inner.store.snapshots(&record.id).await?;
        let own: u64 = kept.iter().filter(|s| !replacing.contains(&s.id)).map(|s| s.bytes).sum::<u64>() + bytes;
        let total = self.inner.store.snapshot_bytes().await? + bytes;
        for (used, limit) in [(own, settings.max_snapshot_bytes), (total, settings.max_total_snapshot_bytes)] {
            if used > limit {
                return Err(SandboxesError::SnapshotQuota { bytes: used, limit });
            }
        }
        let files = self.inner.snapshots.clone();
        let sha256 = compressed.sha256.clone();
        tokio::task::spawn_blocking(move || files.store(&compressed))
            .await
            .map_err(|e| SandboxesError::Invalid(format!("keeping a snapshot failed: {e}")))??;
        let snapshot = SnapshotRecord {
            id: new_id("snap_"),
            sandbox_id: record.id.clone(),
            label: label.map(str::to_owned),
            sha256,
            bytes,
            created_at_us: now_us(),
        };
        self.inner.store.put_snapshot(snapshot.clone()).await?;
        if !replacing.is_empty() {
            let unused = self.inner.store.remove_snapshots(replacing.to_vec()).await?;
            let files = self.inner.snapshots.clone();
            let _ = tokio::task::spawn_blocking(move || files.forget(&unused)).await;
        }
        Ok(snapshot)
    }

    async fn open_snapshot(&self, sandbox_id: &str, snapshot_id: &str) -> Result<Vec<u8>, SandboxesError> {
        let snapshots = self.inner.store.snapshots(sandbox_id).await?;
        let Some(snapshot) = snapshots.into_iter().find(|s| s.id == snapshot_id) else {
            return Err(SandboxesError::NoSuchFile {
                message: format!("sandbox {sandbox_id} has no snapshot {snapshot_id:?}"),
            });
        };
        let files = self.inner.snapshots.clone();
        tokio::task::spawn_blocking(move || files.open(&snapshot.sha256))
            .await
            .map_err(|e| SandboxesError::Invalid(format!("reading a snapshot failed: {e}")))?
            .map_err(Into::into)
    }

    /// Forget a sandbox's snapshots and remove the files nothing else holds.
    async fn forget_snapshots(&self, sandbox_id: &str) {
        match self.inner.store.remove_sandbox_snapshots(sandbox_id).await {
            Ok(unused) => {
                let files = self.inner.snapshots.clone();
                let _ = tokio::task::spawn_blocking(move || files.forget(&unused)).await;
            }
            Err(error) => tracing::warn!(sandbox = sandbox_id, %error, "could not forget a sandbox's snapshots"),
        }
    }

    /// Pause or kill the sandboxes idle past their timeout, and remove those past their
    /// lifetime. Called every few seconds.
    pub async fn reap(&self) {
        let Ok(records) = self.inner.store.sandboxes(None).await else { return };
        let now = now_us();
        for record in records {
            let busy = self.live().get(&record.id).is_some_and(|live| live.steps.available_permits() == 0);
            let outcome = if now >= record.lifetime_ends_at_us {
                self.remove(&record, "its lifetime ended", Status::Success).await
            } else if record.status == SandboxStatus::Running && now >= record.expires_at_us() && !busy {
                match record.on_timeout {
                    OnTimeout::Pause => self.pause(&record.id).await.map(|_| ()),
                    OnTimeout::Kill => self.remove(&record, "killed at its idle timeout", Status::Success).await,
                }
            } else {
                continue;
            };
            if let Err(error) = outcome {
                tracing::warn!(sandbox = %record.id, %error, "could not end an idle sandbox");
            }
        }
    }

    /// Run `work` to its end on the server's runtime, whatever becomes of the request that
    /// asked for it: a client that hangs up mid-create must leave neither a container that no
    /// sandbox owns nor a step's trace that never ends. The doors call every operation that
    /// changes a sandbox or records a step through this.
    pub async fn detached<T, Work>(&self, work: impl FnOnce(Sandboxes) -> Work) -> Result<T, SandboxesError>
    where
        Work: Future<Output = Result<T, SandboxesError>> + Send + 'static,
        T: Send + 'static,
    {
        let task = self.inner.runner.runtime().spawn(work(self.clone()));
        task.await.map_err(|error| SandboxesError::Unfinished(error.to_string()))?
    }

    /// Start the warm containers (at the server's start) on the nodes that are up.
    pub fn warm_up(&self) {
        for (node, warm) in &self.inner.warm {
            if self.inner.nodes.reachable(node).is_ok() {
                for language in tracebox_model::Language::ALL {
                    warm.fill(language);
                }
            }
        }
    }

    /// Remove the warm containers no sandbox took (shutdown); running sandboxes stay.
    pub async fn close(&self) {
        futures_util::future::join_all(self.inner.warm.values().map(|warm| warm.close())).await;
        // A warm start that failed half-way (its engine went away between create and start)
        // left a container no shelf holds: nothing owns it, so it goes now.
        for node in self.inner.nodes.all() {
            let Ok(owned) = self.owned(node.name()).await else { continue };
            let unowned = Sweep::Unowned { owned: &owned, older_than: Duration::ZERO };
            if let Err(error) = node.sandbox().sweep(unowned).await {
                tracing::debug!(node = %node.name(), %error, "not swept at shutdown: its engine does not answer");
            }
        }
    }

    /// Warm containers waiting, per language, on all nodes (for `/metrics`).
    pub fn warm_idle(&self) -> std::collections::HashMap<tracebox_model::Language, usize> {
        let mut idle = std::collections::HashMap::new();
        for warm in self.inner.warm.values() {
            for (language, count) in warm.idle() {
                *idle.entry(language).or_default() += count;
            }
        }
        idle
    }

    /// How many sandboxes are in each state (for `/health` and `/metrics`).
    pub async fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::from([("running", 0), ("paused", 0)]);
        for record in self.inner.store.sandboxes(None).await.unwrap_or_default() {
            *counts.entry(record.status.as_str()).or_default() += 1;
        }
        counts
    }
}

/// A sandbox being created, counted against TRACEBOX_SANDBOX_MAX until it is stored or failed.
struct Reservation {
    sandboxes: Sandboxes,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.sandboxes.inner.creating.fetch_sub(1, Ordering::SeqCst);
    }
}

fn bounded(field: &str, asked: Option<u64>, default: u64, min: u64, max: u64) -> Result<u64, SandboxesError> {
    let value = asked.unwrap_or(default);
    if !(min..=max).contains(&value) {
        return Err(SandboxesError::Invalid(format!("`{field}`: {value} is outside {min}..={max}")));
    }
    Ok(value)
}

fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), SandboxesError> {
    if metadata.len() > MAX_METADATA {
        return Err(SandboxesError::Invalid(format!("`metadata`: at most {MAX_METADATA} entries")));
    }
    for (key, value) in metadata {
        if key.is_empty() || key.len() > MAX_METADATA_BYTES || value.len() > MAX_METADATA_BYTES {
            return Err(SandboxesError::Invalid(format!(
                "`metadata`: keys of 1 to {MAX_METADATA_BYTES} bytes and values of at most {MAX_METADATA_BYTES}"
            )));
        }
    }
    Ok(())
}

/// The uploads, as a tar of files at `/workspace/<name>`.
/// The most `setup` commands a sandbox may have.
pub const MAX_SETUP_COMMANDS: usize = 32;

fn check_setup(setup: &[String]) -> Result<(), SandboxesError> {
    if setup.len() > MAX_SETUP_COMMANDS {
        return Err(SandboxesError::Invalid(format!(
            "`setup` has {} commands, more than the {MAX_SETUP_COMMANDS} allowed; join some with &&",
            setup.len()
        )));
    }
    match setup.iter().position(|command| command.trim().is_empty()) {
        Some(index) => Err(SandboxesError::Invalid(format!("`setup[{index}]` is empty"))),
        None => Ok(()),
    }
}

/// Why a step did not succeed, with the end of what it printed.
fn why_failed(execution: &tracebox_model::Execution) -> String {
    let said = execution.why_not_success().unwrap_or_default();
    let printed = format!("{}{}", execution.stdout, execution.stderr);
    let printed = printed.trim();
    let tail: String = printed.chars().rev().take(500).collect::<Vec<_>>().into_iter().rev().collect();
    if tail.is_empty() { said } else { format!("{said}: {tail}") }
}

fn empty_tar() -> Result<Vec<u8>, SandboxesError> {
    tar::Builder::new(Vec::new())
        .into_inner()
        .map_err(|e| SandboxesError::Invalid(format!("cannot make an empty archive: {e}")))
}

/// `/workspace` as a tar.
async fn tar(session: &Session) -> Result<Vec<u8>, SandboxesError> {
    let mut op = session.request(json!({"op": "tar"}), &[]).await?;
    let mut tar = Vec::new();
    loop {
        match op.next().await? {
            OpFrame::Tar(bytes) => tar.extend_from_slice(&bytes),
            OpFrame::Reply(reply) => {
                crate::sandbox::reply_of(reply)?;
                return Ok(tar);
            }
            _ => {}
        }
    }
}

/// Empty `/workspace` and put `tar`'s files there.
async fn untar(session: &Session, tar: &[u8]) -> Result<(), SandboxesError> {
    session.call(json!({"op": "untar"}), tar).await?;
    Ok(())
}
