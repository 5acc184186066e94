//! The SQLite trace store: the only module that speaks SQL.
//!
//! Writes go to one writer thread that commits whatever is queued in one transaction, so the
//! request path never waits on the disk for long; a finished trace is acknowledged only once
//! committed, so a crash loses no finished trace. Reads use their own connection (WAL mode
//! lets them run beside the writer).

mod files;
mod keys;
mod queries;
mod retention;
mod sandboxes;
mod steps;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use tracebox_model::access::KeyRecord;
use tracebox_model::sandbox::{SandboxRecord, SandboxStatus, SnapshotRecord};
use tracebox_model::{TraceId, TraceInput, TraceKind, now_us};

use super::{
    ChildRecord, ChildWindow, FinishedTrace, NewTrace, StepPage, TraceDetail, TraceFilter, TracePage, TraceSummary,
};
pub use files::FileRecord;
pub use retention::{Doomed, Removed, Retention, Swept};
use writer::{Reply, Write};

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_traces.sql"),
    include_str!("migrations/0002_search_no.sql"),
    include_str!("migrations/0003_files.sql"),
    include_str!("migrations/0004_sandboxes.sql"),
    include_str!("migrations/0005_children_in_order.sql"),
    include_str!("migrations/0006_access.sql"),
    include_str!("migrations/0007_revoked_tokens.sql"),
];

/// The trace store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory for the database cannot be made.
    #[error("cannot create the trace directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    /// SQLite failed.
    #[error("trace database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer tracebox.
    #[error(
        "trace database {path} has schema version {found}, newer than this tracebox knows ({known}); run a newer tracebox"
    )]
    TooNew { path: PathBuf, found: usize, known: usize },
    /// The writer thread cannot be started.
    #[error("cannot start the trace writer thread: {0}")]
    Thread(std::io::Error),
    /// The writer thread is gone (the store was closed).
    #[error("the trace writer thread has stopped")]
    WriterGone,
    /// A batch of writes failed to commit.
    #[error("committing traces failed: {0}")]
    Commit(String),
    /// A read task panicked.
    #[error("a blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A cloneable handle to the trace database.
#[derive(Clone)]
pub struct TraceStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    instance_id: String,
    writes: Mutex<Option<mpsc::Sender<Write>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Mutex<Connection>,
    /// API keys' own connection (see `keys.rs`).
    keys: Mutex<Connection>,
}

impl TraceStore {
    /// Open (creating when absent) `dir/traces.db`, bring its schema up to date, and start the
    /// writer thread.
    pub fn open(dir: &Path) -> Result<TraceStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
        let path = dir.join("traces.db");
        let mut db = connect(&path)?;
        migrate(&mut db, &path)?;
        let instance_id = instance_id(&db)?;
        let reader = connect(&path)?;
        let keys = connect(&path)?;
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("trace-writer".into())
            .spawn(move || writer::write_loop(db, receiver))
            .map_err(StoreError::Thread)?;
        Ok(TraceStore {
            inner: Arc::new(Inner {
                path,
                instance_id,
                writes: Mutex::new(Some(sender)),
                writer: Mutex::new(Some(thread)),
                reader: Mutex::new(reader),
                keys: Mutex::new(keys),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A random id of this data directory, made on first open: containers carry it so a
    /// tracebox only ever sweeps the containers of its own data directory.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// Record a trace as running. Returns at once; the writer commits it shortly.
    pub fn begin(&self, trace: NewTrace) {
        self.send(Write::Begin(trace));
    }

    /// Replace what a running trace recorded as it began. Returns at once; a [`finish`] of
    /// the same trace after it commits it at the latest.
    ///
    /// [`finish`]: TraceStore::finish
    pub fn replace_input(&self, id: TraceId, input: TraceInput) {
        self.send(Write::Input(id, input));
    }

    /// Record how a trace ended, returning once it is committed. A trace ends once: ending
    /// one that is not running fails.
    pub async fn finish(&self, trace: FinishedTrace) -> Result<(), StoreError> {
        self.written(|done| Write::Finish(trace, done)).await
    }

    /// Remove the traces `ids` (a batch of [`TraceStore::doomed`]) with their events and
    /// search rows, returning once committed. Their artifacts are left to the caller.
    pub async fn remove(&self, ids: Vec<TraceId>) -> Result<Removed, StoreError> {
        self.written(|done| Write::Remove(ids, done)).await
    }

    /// Queue the write `make` returns and wait until it is committed.
    async fn written<T>(&self, make: impl FnOnce(Reply<T>) -> Write) -> Result<T, StoreError> {
        let (done, committed) = oneshot::channel();
        if !self.send(make(done)) {
            return Err(StoreError::WriterGone);
        }
        match committed.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(StoreError::Commit(message)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    fn send(&self, write: Write) -> bool {
        let writes = self.inner.writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        writes.as_ref().is_some_and(|sender| sender.send(write).is_ok())
    }

    /// Note the start of `boot_id`.
    pub async fn record_boot(&self, boot_id: &str) -> Result<(), StoreError> {
        let boot_id = boot_id.to_owned();
        self.blocking(move |db| {
            db.execute(
                "INSERT INTO boots (boot_id, started_at_us, pid, version) VALUES (?1, ?2, ?3, ?4)",
                params![boot_id, now_us(), std::process::id(), env!("CARGO_PKG_VERSION")],
            )?;
            Ok(())
        })
        .await
    }

    /// Mark as failed the traces left running by boots not in `live_boots`: those stopped
    /// before the runs finished. Returns how many were marked.
    pub async fn fail_orphaned(&self, live_boots: &[String]) -> Result<usize, StoreError> {
        let live = serde_json::to_string(live_boots).unwrap_or_else(|_| "[]".into());
        self.blocking(move |db| {
            let marked = db.execute(
                "UPDATE traces SET status = 'internal_error', ended_at_us = ?1,
                   output = json_set(output, '$.message', 'tracebox stopped before this run finished')
                 WHERE status = 'running' AND kind != 'sandbox'
                   AND coalesce(boot_id, '') NOT IN (SELECT value FROM json_each(?2))",
                params![now_us(), live],
            )?;
            Ok(marked)
        })
        .await
    }

    /// One page of traces, newest first.
    pub async fn list(&self, filter: TraceFilter) -> Result<TracePage, StoreError> {
        self.blocking(move |db| queries::list(db, &filter, queries::FIRST_WINDOW)).await
    }

    /// Whose trace `id` is: None when there is no such trace, `Some(None)` for one made while
    /// the server was open.
    pub async fn tenant_of(&self, id: TraceId) -> Result<Option<Option<String>>, StoreError> {
        self.blocking(move |db| queries::tenant_of(db, id)).await
    }

    /// One trace with its events and its first children ([`ChildWindow::FIRST`]).
    pub async fn get(&self, id: TraceId) -> Result<Option<TraceDetail>, StoreError> {
        self.get_with(id, ChildWindow::FIRST).await
    }

    /// One trace with its events and `window` of its children (all of them counted).
    pub async fn get_with(&self, id: TraceId, window: ChildWindow) -> Result<Option<TraceDetail>, StoreError> {
        self.blocking(move |db| queries::get(db, id, window)).await
    }

    /// `window` of the children of `parent`, in the order they started.
    pub async fn children(&self, parent: TraceId, window: ChildWindow) -> Result<Vec<TraceSummary>, StoreError> {
        self.blocking(move |db| queries::children(db, parent, window)).await
    }

    /// `window` of a sandbox's steps (the children of its trace `sandbox`), each cut to excerpts
    /// by one query, with how many there are in all.
    pub async fn steps(&self, sandbox: TraceId, window: ChildWindow) -> Result<StepPage, StoreError> {
        self.blocking(move |db| steps::steps(db, sandbox, window)).await
    }

    /// The place of `step` among the steps of the sandbox whose trace is `sandbox` (0-based),
    /// for a step's way back to its sandbox's page; None when `sandbox` is no sandbox's trace.
    pub async fn step_position(&self, sandbox: TraceId, step: TraceId) -> Result<Option<u64>, StoreError> {
        self.blocking(move |db| steps::step_position(db, sandbox, step)).await
    }

    /// The children of `parent` of one kind, in order, with their records: a sandbox's tool
    /// calls (its trajectory).
    pub async fn children_of_kind(&self, parent: TraceId, kind: TraceKind) -> Result<Vec<ChildRecord>, StoreError> {
        self.blocking(move |db| queries::children_of_kind(db, parent, kind)).await
    }

    /// How many traces the store holds.
    pub async fn count(&self) -> Result<u64, StoreError> {
        self.blocking(queries::count).await
    }

    /// What retention lets go now: traces older than `max_age`, and as many of the oldest as
    /// the store holds past `max_count` (None: no limit of that kind).
    pub async fn retention(&self, max_age: Option<Duration>, max_count: Option<u64>) -> Result<Retention, StoreError> {
        let started_before_us =
            max_age.map(|age| now_us().saturating_sub(i64::try_from(age.as_micros()).unwrap_or(i64::MAX)));
        let excess = match max_count {
            Some(max) => self.count().await?.saturating_sub(max),
            None => 0,
        };
        Ok(Retention { started_before_us, excess })
    }

    /// Remove every trace older than `max_age` or past the newest `max_count`, whole trees at
    /// a time, never one still running, a batch per writer transaction. `artifacts` is handed
    /// the ids of each batch once it is committed, to remove what those runs left in the
    /// uploads directory (which the store never touches), and says how many runs had some.
    pub async fn retire<F, Removing>(
        &self,
        max_age: Option<Duration>,
        max_count: Option<u64>,
        mut artifacts: F,
    ) -> Result<Swept, StoreError>
    where
        F: FnMut(Vec<TraceId>) -> Removing,
        Removing: Future<Output = usize>,
    {
        let mut swept = Swept::default();
        if max_age.is_none() && max_count.is_none() {
            return Ok(swept);
        }
        let mut retention = self.retention(max_age, max_count).await?;
        loop {
            let doomed = self.doomed(retention).await?;
            if doomed.ids.is_empty() {
                return Ok(swept);
            }
            let gone = self.remove(doomed.ids).await?;
            swept.add(&gone);
            // A batch that removed nothing (its traces changed under it) would come back as it was.
            let done = !doomed.more || gone.ids.is_empty();
            swept.artifact_runs += artifacts(gone.ids).await as u64;
            if done {
                return Ok(swept);
            }
            retention.excess = doomed.excess;
        }
    }

    /// The next batch of traces `retention` lets go: whole trees, oldest first, none with a
    /// trace still running; empty when none is left. Chosen on the reader connection, so the
    /// writer is not held while looking.
    pub async fn doomed(&self, retention: Retention) -> Result<Doomed, StoreError> {
        self.blocking(move |db| retention::doomed(db, &retention)).await
    }

    /// Record (or replace) what is known about an uploaded file.
    pub async fn put_file(&self, record: FileRecord) -> Result<(), StoreError> {
        self.blocking(move |db| files::put(db, &record)).await
    }

    /// Forget an uploaded file of `tenant` ("" on an open server) that was deleted.
    pub async fn remove_file(&self, tenant: &str, name: &str) -> Result<(), StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.blocking(move |db| files::remove(db, &tenant, &name)).await
    }

    /// What is recorded about the uploaded file `name` of `tenant`.
    pub async fn file(&self, tenant: &str, name: &str) -> Result<Option<FileRecord>, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.blocking(move |db| files::get(db, &tenant, &name)).await
    }

    /// Every uploaded file of `tenant` recorded, by name.
    pub async fn files(&self, tenant: &str) -> Result<Vec<FileRecord>, StoreError> {
        let tenant = tenant.to_owned();
        self.blocking(move |db| files::all(db, &tenant)).await
    }

    /// Record (or replace) a sandbox.
    pub async fn put_sandbox(&self, record: SandboxRecord) -> Result<(), StoreError> {
        self.blocking(move |db| sandboxes::put(db, &record)).await
    }

    /// One sandbox, whatever its status.
    pub async fn sandbox(&self, id: &str) -> Result<Option<SandboxRecord>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| sandboxes::get(db, &id)).await
    }

    /// The sandboxes not stopped, newest first; only those of `status` when given.
    pub async fn sandboxes(&self, status: Option<SandboxStatus>) -> Result<Vec<SandboxRecord>, StoreError> {
        self.blocking(move |db| sandboxes::list(db, status)).await
    }

    /// Forget a sandbox (its snapshots go first: [`TraceStore::remove_sandbox_snapshots`]).
    pub async fn remove_sandbox(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| sandboxes::remove(db, &id)).await
    }

    /// Forget a sandbox's snapshots; the hashes nothing else holds (their files may go).
    pub async fn remove_sandbox_snapshots(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| sandboxes::remove_snapshots(db, &id)).await
    }

    /// Forget these snapshots; the hashes nothing else holds (their files may go).
    pub async fn remove_snapshots(&self, ids: Vec<String>) -> Result<Vec<String>, StoreError> {
        self.blocking(move |db| sandboxes::remove_snapshot_ids(db, &ids)).await
    }

    /// Record a snapshot.
    pub async fn put_snapshot(&self, snapshot: SnapshotRecord) -> Result<(), StoreError> {
        self.blocking(move |db| sandboxes::put_snapshot(db, &snapshot)).await
    }

    /// A sandbox's snapshots, oldest first.
    pub async fn snapshots(&self, sandbox_id: &str) -> Result<Vec<SnapshotRecord>, StoreError> {
        let id = sandbox_id.to_owned();
        self.blocking(move |db| sandboxes::snapshots(db, &id)).await
    }

    /// Bytes of every snapshot kept.
    pub async fn snapshot_bytes(&self) -> Result<u64, StoreError> {
        self.blocking(sandboxes::snapshot_bytes).await
    }

    /// Add an API key; false when a key of that name (or id) exists already, revoked or not.
    pub fn add_key(&self, key: &KeyRecord) -> Result<bool, StoreError> {
        keys::insert(&self.keys(), key)
    }

    /// The key whose public id is `id`, revoked or not.
    pub fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        keys::by_id(&self.keys(), id)
    }

    /// Every key, oldest first, revoked ones too.
    pub fn keys_all(&self) -> Result<Vec<KeyRecord>, StoreError> {
        keys::all(&self.keys())
    }

    /// Was any key ever made (revoked ones count)? With none, a loopback server is open; once
    /// one was, it never opens again by itself: revoking every key locks everyone out.
    pub fn any_key(&self) -> Result<bool, StoreError> {
        keys::any(&self.keys())
    }

    /// Revoke the key `name` now; false when no such key is active.
    pub fn revoke_key(&self, name: &str) -> Result<bool, StoreError> {
        keys::revoke(&self.keys(), name, now_us())
    }

    /// End the token `jti` (which would expire at `expires_at`, Unix seconds) now; tokens past
    /// their expiry are forgotten on the way.
    pub fn revoke_token(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        keys::revoke_token(&self.keys(), jti, expires_at, now_us() / 1_000_000)
    }

    /// Was the token `jti` ended before its time?
    pub fn token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        keys::token_revoked(&self.keys(), jti)
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.inner.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop the writer after it committed everything queued.
    pub fn close(&self) {
        drop(self.inner.writes.lock().unwrap_or_else(|p| p.into_inner()).take());
        let thread = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the trace writer thread panicked");
        }
    }

    /// Run `query` on the second connection, off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let db = inner.reader.lock().unwrap_or_else(|p| p.into_inner());
            query(&db)
        })
        .await?
    }
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let db = Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.pragma_update(None, "foreign_keys", "ON")?;
    db.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(db)
}

fn migrate(db: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let applied: i64 = db.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::TooNew { path: path.to_owned(), found: applied, known: MIGRATIONS.len() });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = db.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(path = %path.display(), version = index + 1, "trace database migrated");
    }
    Ok(())
}

fn instance_id(db: &Connection) -> Result<String, StoreError> {
    db.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('instance_id', ?1)",
        params![uuid::Uuid::new_v4().simple().to_string()],
    )?;
    Ok(db.query_row("SELECT value FROM meta WHERE key = 'instance_id'", [], |row| row.get(0))?)
}

#[cfg(test)]
mod tests;
