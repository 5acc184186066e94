//! The nodes: the Docker engines tracebox drives, each with a `Sandbox` of its own (its warm
//! pool, its containers, its janitor); heartbeats that say which are up; and placement of runs
//! and sandboxes over them. A run whose node fails before its program started goes on to
//! another node, each attempt recorded; one whose program started is never run twice.
//! Without `[[nodes]]` there is one node, `local`: the engine tracebox always used.

mod heartbeat;
mod placement;
mod settings;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};

use tracebox_model::{EventLog, NodeAttempt, Placement, Strategy};

use crate::sandbox::{
    EngineInfo, Handover, ImageReady, PoolState, RawOutcome, RunIo, RunSpec, Sandbox, SandboxError, SandboxHealth,
    Sweep,
};

pub use settings::{MISSES_TO_DOWN, NodeSettings, NodesSettings};

/// What can go wrong placing work on the nodes.
#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    /// The labels asked for are on no node (HTTP 422 `no_node_matches`).
    #[error("no node carries {wanted}{why}; the nodes carry: {known}")]
    NoNodeMatches { wanted: String, why: &'static str, known: String },
    /// Nodes fit, but none can take work now (HTTP 503 `node_down`).
    #[error("every node that fits is down or draining ({states}); see GET /nodes, and retry when one is up")]
    NoNodeUp { states: String },
    /// The node a sandbox lives on is down (HTTP 503 `node_down`).
    #[error(
        "node {name}, where this sandbox lives, is down: its engine missed {MISSES_TO_DOWN} heartbeats or does not \
         answer ({why}); the sandbox answers again when the engine is back (delete it to give it up)"
    )]
    NodeDown { name: String, why: String },
    /// A name no node has (HTTP 404).
    #[error("no node is named {0:?}; GET /nodes lists them")]
    NoSuchNode(String),
    /// Every node that fits failed the run before its program started.
    #[error("every node that fits failed this run before its program started ({attempts} attempts); the last: {last}")]
    AllFailed { attempts: usize, last: String },
    /// A run that failed on a node found the server's queue full, or its slots busy, when it was
    /// placed again (HTTP 503 `busy`).
    #[error("this run failed on a node before its program started, then could not be placed again: {0}")]
    Busy(String),
    /// Every node that fits stayed full for the queue timeout (HTTP 503 `busy`).
    #[error(
        "all {capacity} run slots of node {node} stayed busy for the queue timeout (its max_concurrent_runs, \
         TRACEBOX_MAX_CONCURRENT_RUNS unless [[nodes]] sets it; TRACEBOX_QUEUE_TIMEOUT_SECS)"
    )]
    Full { node: String, capacity: usize },
    /// The node's engine failed the run (after its attempts elsewhere, if any).
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// A node's state, as `/nodes` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Its engine answers; it takes work.
    Up,
    /// Its engine missed heartbeats (or never answered): no new work; its sandboxes wait.
    Down,
    /// Up, but an operator asked for no new work there; what runs finishes.
    Draining,
}

/// A node coming or going, for those who keep things on nodes (the sandboxes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    Up(String),
    Down(String),
}

/// One Docker engine.
pub struct Node {
    name: String,
    labels: BTreeMap<String, String>,
    capacity: usize,
    sandbox: Sandbox,
    /// One permit per run at once.
    slots: Arc<Semaphore>,
    /// On this machine (a unix socket): a run's uploaded files can be bind-mounted there.
    local: bool,
    draining: AtomicBool,
    /// Sandboxes whose containers it holds.
    sandboxes: AtomicUsize,
    beat: Mutex<Beat>,
}

/// What the heartbeats know of a node.
#[derive(Debug, Default)]
struct Beat {
    up: bool,
    /// Heartbeats missed in a row.
    misses: u32,
    last_answer: Option<SystemTime>,
    info: Option<EngineInfo>,
    error: Option<String>,
    /// A return is being prepared (the image copied): no second one meanwhile.
    returning: bool,
    /// After a failed return: when the next may be tried, and how long it waited this time.
    retry_at: Option<tokio::time::Instant>,
    retry_wait: Option<Duration>,
}

impl Node {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `text` with its engine's address replaced by its name: replies and traces are read by
    /// tenants, who need not learn where the engines are (GET /nodes tells admins).
    fn naming_itself(&self, text: &str) -> String {
        text.replace(self.sandbox.docker_host(), &format!("node {}", self.name))
    }

    /// Its engine's sandbox: where its containers are made and found.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    fn beat(&self) -> std::sync::MutexGuard<'_, Beat> {
        self.beat.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn state(&self) -> NodeState {
        self.state_with(&self.beat())
    }

    fn state_with(&self, beat: &Beat) -> NodeState {
        match (beat.up, self.draining.load(Ordering::Relaxed)) {
            (false, _) => NodeState::Down,
            (true, true) => NodeState::Draining,
            (true, false) => NodeState::Up,
        }
    }

    fn runs(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    /// Runs and sandboxes on it now: what `least_loaded` compares.
    fn load(&self) -> usize {
        self.runs() + self.sandboxes.load(Ordering::Relaxed)
    }

    /// Does it carry the labels `placement` asks for (and is it on this machine, when the work
    /// has files to mount)?
    fn fits(&self, placement: &Placement, local_only: bool) -> bool {
        placement::labels_fit(&placement.labels, &self.labels) && (self.local || !local_only)
    }

    /// A sandbox's container started (`true`) or went away here.
    pub fn count_sandbox(&self, started: bool) {
        if started {
            self.sandboxes.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self.sandboxes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Why it is down, in words.
    fn why_down(&self) -> String {
        self.beat().error.clone().unwrap_or_else(|| "it has not answered since tracebox started".to_owned())
    }

    /// The node as `GET /nodes` shows it.
    pub fn view(&self) -> NodeView {
        let beat = self.beat();
        let pool = self.sandbox.pool_state();
        NodeView {
            name: self.name.clone(),
            docker_host: Some(self.sandbox.docker_host().to_owned()),
            labels: self.labels.clone(),
            state: self.state_with(&beat),
            last_heartbeat: beat.last_answer.map(rfc3339),
            missed_heartbeats: beat.misses,
            engine_version: beat.info.as_ref().map(|info| info.version.clone()),
            error: if beat.up { None } else { beat.error.clone() },
            capacity: Capacity {
                runs: self.capacity,
                cpus: beat.info.as_ref().map(|info| info.cpus),
                memory_bytes: beat.info.as_ref().map(|info| info.memory_bytes),
            },
            running: Running { runs: self.runs(), sandboxes: self.sandboxes.load(Ordering::Relaxed) },
            pool: PoolSummary {
                idle: pool.profiles.iter().map(|p| p.idle).sum(),
                starting: pool.profiles.iter().map(|p| p.starting).sum(),
                in_use: pool.profiles.iter().map(|p| p.in_use).sum(),
                started: pool.started,
                failed_starts: pool.failed_starts,
            },
        }
    }
}

/// A node as `GET /nodes` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub name: String,
    /// Its address, without any credentials (for admins: see `redacted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_host: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub state: NodeState,
    /// When its engine last answered (RFC 3339), if ever.
    pub last_heartbeat: Option<String>,
    pub missed_heartbeats: u32,
    pub engine_version: Option<String>,
    /// Why it is down.
    pub error: Option<String>,
    pub capacity: Capacity,
    pub running: Running,
    pub pool: PoolSummary,
}

impl NodeView {
    /// The view a user key gets: where work can go and how busy it is, not where the engines
    /// are or what their errors say (addresses of root-equivalent endpoints are the operator's).
    pub fn redacted(self) -> NodeView {
        let error = self.error.as_ref().map(|_| "its engine does not answer heartbeats".to_owned());
        NodeView { docker_host: None, error, ..self }
    }
}

/// What a node can take.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    /// Its `max_concurrent_runs`.
    pub runs: usize,
    /// What its engine reports of its machine.
    pub cpus: Option<u64>,
    pub memory_bytes: Option<u64>,
}

/// What a node holds now.
#[derive(Debug, Clone, Serialize)]
pub struct Running {
    pub runs: usize,
    pub sandboxes: usize,
}

/// A node's warm pool, in short.
#[derive(Debug, Clone, Serialize)]
pub struct PoolSummary {
    pub idle: usize,
    pub starting: usize,
    pub in_use: usize,
    pub started: u64,
    pub failed_starts: u64,
}

/// A node chosen for a run, and a run slot held there until the run ends.
pub struct Reservation {
    node: Arc<Node>,
    // Held, never read: the run's slot on its node, given back when the run ends.
    _slot: OwnedSemaphorePermit,
}

impl Reservation {
    /// The run's next attempt goes to `node`: recorded in `log` with what placement cost it,
    /// the choice and the wait for a slot there.
    fn made(
        node: Arc<Node>,
        slot: OwnedSemaphorePermit,
        picking: Picking,
        placed: &Placed,
        log: &mut EventLog,
    ) -> Self {
        let (pick_us, total_us) = (picking.picked_us, picking.began.elapsed().as_micros() as u64);
        log.record(
            "node.placed",
            json!({
                "node": node.name,
                "attempt": placed.attempts.len() + 1,
                "pick_us": pick_us,
                "slot_wait_us": total_us.saturating_sub(pick_us),
            }),
        );
        Reservation { node, _slot: slot }
    }
}

/// When a placement began, and how long its choice took.
struct Picking {
    began: std::time::Instant,
    picked_us: u64,
}

/// What one attempt of a run on a node came to.
// Nearly every attempt is `Over`, returned once: boxing it would cost an allocation per run.
#[allow(clippy::large_enum_variant)]
pub enum Attempted {
    /// The run is over: its outcome, or what failed it.
    Over(Result<RawOutcome, NodesError>),
    /// The node failed it before its program started, and another node fits: the run's io,
    /// to go there.
    Again(RunIo),
}

/// Where a run went: its node, and the attempts that failed before it.
#[derive(Debug, Clone, Default)]
pub struct Placed {
    pub node: Option<String>,
    pub attempts: Vec<NodeAttempt>,
}

impl Placed {
    /// The nodes the run's attempts failed on, left out of its next placement.
    fn tried(&self) -> HashSet<String> {
        self.attempts.iter().map(|attempt| attempt.node.clone()).collect()
    }
}

/// The nodes. Cheap to clone.
#[derive(Clone)]
pub struct Nodes {
    inner: Arc<Inner>,
}

struct Inner {
    nodes: Vec<Arc<Node>>,
    strategy: Strategy,
    heartbeat: Duration,
    /// Placements so far, for round robin.
    turn: AtomicUsize,
    events: broadcast::Sender<NodeEvent>,
}

impl Nodes {
    /// The nodes `settings` list, their containers labelled with this data directory's
    /// `instance_id` and this start's `boot_id`. Nothing is asked of any engine yet: every
    /// node is down until [`Nodes::prepare`] or a heartbeat hears from it.
    pub fn connect(settings: &NodesSettings, instance_id: &str, boot_id: &str) -> Result<Nodes, SandboxError> {
        if settings.nodes.is_empty() {
            return Err(SandboxError::NotReady { why: "no node is configured".to_owned() });
        }
        let mut nodes = Vec::new();
        for node in &settings.nodes {
            let sandbox = Sandbox::connect(&node.sandbox, instance_id, boot_id)?;
            let local = node.mounts_files;
            nodes.push(Arc::new(Node {
                name: node.name.clone(),
                labels: node.labels.clone(),
                capacity: node.max_concurrent_runs,
                slots: Arc::new(Semaphore::new(node.max_concurrent_runs)),
                sandbox,
                local,
                draining: AtomicBool::new(false),
                sandboxes: AtomicUsize::new(0),
                beat: Mutex::new(Beat::default()),
            }));
        }
        let (events, _) = broadcast::channel(64);
        let inner = Inner {
            nodes,
            strategy: settings.strategy,
            heartbeat: settings.heartbeat,
            turn: AtomicUsize::new(0),
            events,
        };
        Ok(Nodes { inner: Arc::new(inner) })
    }

    /// Every node, in the configured order.
    pub fn all(&self) -> &[Arc<Node>] {
        &self.inner.nodes
    }

    /// The first node: where the sandbox image is built, whose engine `/health` reports.
    pub fn primary(&self) -> &Arc<Node> {
        &self.inner.nodes[0]
    }

    pub fn get(&self, name: &str) -> Result<&Arc<Node>, NodesError> {
        self.inner.nodes.iter().find(|node| node.name == name).ok_or_else(|| NodesError::NoSuchNode(name.to_owned()))
    }

    /// The id of this start of tracebox, on every container it makes.
    pub fn boot_id(&self) -> &str {
        self.primary().sandbox.boot_id()
    }

    /// Hear of nodes coming and going.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Ask each engine once whether it is there; build the sandbox image on the first that
    /// answers (unless up to date; always with `force`) and copy it to the others. Fails only
    /// when no engine answers, with the first node's error (it says how to start one).
    pub async fn prepare(&self, force: bool, progress: &(dyn Fn(&str) + Sync)) -> Result<ImageReady, SandboxError> {
        let answers =
            futures_util::future::join_all(self.all().iter().map(|node| heartbeat::probe(node, self.inner.heartbeat)))
                .await;
        let mut first_error = None;
        for (node, answer) in self.all().iter().zip(answers) {
            // An engine that answers but lacks the node's runtime cannot run anything there.
            let answer = match answer {
                Ok(info) => node.sandbox.check_runtime().await.map(|()| info),
                Err(error) => Err(error),
            };
            match answer {
                Ok(info) => heartbeat::answered(node, info),
                Err(error) => {
                    tracing::warn!(node = %node.name, %error, "node is down at start; it gets work once its engine answers");
                    node.sandbox.suspend_pool(true);
                    let mut beat = node.beat();
                    beat.error = Some(error.to_string());
                    first_error.get_or_insert(error);
                }
            }
        }
        let Some(builder) = self.all().iter().find(|node| node.beat().up) else {
            return Err(first_error.unwrap_or(SandboxError::NotReady { why: "no node is configured".to_owned() }));
        };
        let ready = builder.sandbox.ensure_image(force, &mut |line| progress(line)).await?;
        for node in self.all().iter().filter(|node| node.beat().up && node.name != builder.name) {
            if let Err(error) = node.sandbox.copy_image_from(&builder.sandbox, progress).await {
                tracing::warn!(node = %node.name, %error, "could not give the node the sandbox image; it stays down");
                let mut beat = node.beat();
                beat.up = false;
                beat.error = Some(format!("the sandbox image could not be copied to it: {error}"));
                node.sandbox.suspend_pool(true);
            }
        }
        Ok(ready)
    }

    /// Fill the warm pools of the nodes that are up.
    pub async fn warm_up(&self, progress: &(dyn Fn(&str) + Sync)) {
        let up = self.all().iter().filter(|node| node.beat().up);
        futures_util::future::join_all(up.map(|node| node.sandbox.warm_up(progress))).await;
    }

    /// Heartbeats and pool tending, one task each per node, until aborted.
    pub fn spawn_keepers(&self, runtime: &tokio::runtime::Handle) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = self.all().iter().map(|node| node.sandbox.spawn_pool_tender(runtime)).collect();
        tasks.extend(self.all().iter().map(|node| heartbeat::spawn(self.clone(), Arc::clone(node), runtime)));
        tasks
    }

    /// Remove the pools' containers and wait (a little) for their removal, on every node.
    pub async fn close(&self) {
        futures_util::future::join_all(self.all().iter().map(|node| node.sandbox.close())).await;
    }

    /// Remove this data directory's containers that `which` selects on every node; how many
    /// went. A node whose engine does not answer is skipped (its turn comes at the next sweep,
    /// or when it comes back).
    pub async fn sweep(&self, which: Sweep<'_>) -> Result<usize, SandboxError> {
        let mut removed = 0;
        for node in self.all() {
            let mut swept = node.sandbox.sweep(which).await;
            if swept.as_ref().is_err_and(SandboxError::is_unavailable) {
                // An engine restarted since the last call leaves the client a dead connection
                // or two to find out about: one more try is on a fresh one.
                swept = node.sandbox.sweep(which).await;
            }
            match swept {
                Ok(count) => removed += count,
                Err(error) if error.is_unavailable() => {
                    tracing::debug!(node = %node.name, %error, "not swept: its engine does not answer");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(removed)
    }

    /// The first node's engine and image, for `/health`.
    pub async fn health(&self) -> SandboxHealth {
        self.primary().sandbox.health().await
    }

    /// The first node's pool.
    pub fn pool_state(&self) -> PoolState {
        self.primary().sandbox.pool_state()
    }

    pub fn views(&self) -> Vec<NodeView> {
        self.all().iter().map(|node| node.view()).collect()
    }

    /// Stop (`true`) or resume placing new work on `name`; what runs there goes on.
    pub fn drain(&self, name: &str, draining: bool) -> Result<NodeView, NodesError> {
        let node = self.get(name)?;
        node.draining.store(draining, Ordering::Relaxed);
        tracing::info!(node = %name, draining, "node drain changed");
        Ok(node.view())
    }

    /// The node `name`, if it is up (or draining: what lives there goes on).
    pub fn reachable(&self, name: &str) -> Result<&Arc<Node>, NodesError> {
        let node = self.get(name)?;
        match node.state() {
            NodeState::Up | NodeState::Draining => Ok(node),
            NodeState::Down => Err(NodesError::NodeDown { name: name.to_owned(), why: node.why_down() }),
        }
    }

    /// Ask `name`'s engine now whether it answers (a sandbox's container stopped talking: is it
    /// the container, or the engine?). Only heartbeats mark a node down: requests do not.
    pub async fn answers(&self, name: &str) -> bool {
        let Ok(node) = self.get(name) else { return false };
        heartbeat::probe(node, self.inner.heartbeat).await.is_ok()
    }

    /// The node for new work that fits `placement` (only nodes on this machine when it has
    /// files to mount), not among `tried`.
    pub fn pick(
        &self,
        placement: &Placement,
        local_only: bool,
        tried: &HashSet<String>,
    ) -> Result<Arc<Node>, NodesError> {
        let fits: Vec<&Arc<Node>> = self.all().iter().filter(|node| node.fits(placement, local_only)).collect();
        if fits.is_empty() {
            let wanted = if placement.labels.is_empty() {
                "no labels".to_owned()
            } else {
                placement.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
            };
            let why = if local_only { " on this machine (a run with files goes to a unix:// engine)" } else { "" };
            let known = self
                .all()
                .iter()
                .map(|node| {
                    let labels = node.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
                    format!("{} [{labels}]", node.name)
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(NodesError::NoNodeMatches { wanted, why, known });
        }
        let ready: Vec<&Arc<Node>> =
            fits.iter().copied().filter(|node| node.state() == NodeState::Up && !tried.contains(&node.name)).collect();
        let candidates: Vec<placement::Candidate> = ready
            .iter()
            .map(|node| placement::Candidate {
                load: node.load(),
                capacity: node.capacity,
                free: node.slots.available_permits() > 0,
            })
            .collect();
        let turn = self.inner.turn.fetch_add(1, Ordering::Relaxed);
        let random = getrandom::u64().unwrap_or(turn as u64);
        let strategy = placement.strategy.unwrap_or(self.inner.strategy);
        match placement::choose(strategy, &candidates, turn, random) {
            Some(index) => Ok(Arc::clone(ready[index])),
            None => {
                let states = fits
                    .iter()
                    .map(|node| {
                        let state =
                            if tried.contains(&node.name) { "failed this run" } else { state_word(node.state()) };
                        format!("{}: {state}", node.name)
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(NodesError::NoNodeUp { states })
            }
        }
    }

    /// A node that fits `placement` (a unix:// one when the run brings `files`), other than
    /// those the run already `placed` its attempts on, and a free run slot there, now; `None`
    /// when every such node is full. Recorded in `log`.
    pub fn try_reserve(
        &self,
        placement: &Placement,
        with_files: bool,
        placed: &Placed,
        log: &mut EventLog,
    ) -> Result<Option<Reservation>, NodesError> {
        let (node, picking) = self.pick_for(placement, with_files, placed)?;
        let Ok(slot) = Arc::clone(&node.slots).try_acquire_owned() else { return Ok(None) };
        Ok(Some(Reservation::made(node, slot, picking, placed, log)))
    }

    /// As [`Nodes::try_reserve`], waiting for a slot at most `until`. The runner reserves
    /// before it takes a server slot, so that a run waiting for a full node holds none.
    pub async fn reserve(
        &self,
        placement: &Placement,
        with_files: bool,
        until: tokio::time::Instant,
        placed: &Placed,
        log: &mut EventLog,
    ) -> Result<Reservation, NodesError> {
        let (node, picking) = self.pick_for(placement, with_files, placed)?;
        let slot = tokio::time::timeout_at(until, Arc::clone(&node.slots).acquire_owned()).await;
        let Ok(Ok(slot)) = slot else {
            return Err(NodesError::Full { node: node.name.clone(), capacity: node.capacity });
        };
        Ok(Reservation::made(node, slot, picking, placed, log))
    }

    /// The node for a run's next attempt; once attempts failed, "no node left" is said by the
    /// last failure.
    fn pick_for(
        &self,
        placement: &Placement,
        local_only: bool,
        placed: &Placed,
    ) -> Result<(Arc<Node>, Picking), NodesError> {
        let began = std::time::Instant::now();
        match self.pick(placement, local_only, &placed.tried()) {
            Ok(node) => Ok((node, Picking { began, picked_us: began.elapsed().as_micros() as u64 })),
            Err(NodesError::NoNodeUp { .. }) if !placed.attempts.is_empty() => {
                let last = placed.attempts.last().map(|a| a.error.clone()).unwrap_or_default();
                Err(NodesError::AllFailed { attempts: placed.attempts.len(), last })
            }
            Err(error) => Err(error),
        }
    }

    /// One attempt of a run on the node `reserved` for it: a container there, then the run. A
    /// node that fails before the program started (its engine unreachable, no container, the
    /// container lost before it took the program) is recorded in `placed` and `log`, and when
    /// another node fits the run's io comes back for it: the runner gives back its server
    /// slot while the run waits for that node.
    pub async fn attempt(
        &self,
        reserved: Reservation,
        spec: &RunSpec<'_>,
        placement: &Placement,
        io: RunIo,
        placed: &mut Placed,
        log: &mut EventLog,
    ) -> Attempted {
        let Reservation { node, _slot } = reserved;
        let local_only = !spec.files.is_empty();
        let tried = placed.tried();
        // Elsewhere to go: a failing pool ends the wait at once rather than at the deadline.
        let elsewhere = self.all().iter().any(|other| {
            other.name != node.name
                && !tried.contains(&other.name)
                && other.state() == NodeState::Up
                && other.fits(placement, local_only)
        });
        // An engine that takes connections and answers nothing must not hold the run past its
        // queue deadline (bollard's own timeout is minutes).
        let acquired = tokio::time::timeout_at(spec.wait_until, node.sandbox.acquire(spec, elsewhere, log)).await;
        let acquired = acquired.unwrap_or_else(|_| {
            Err(SandboxError::NotReady { why: "no container within the run's queue timeout".to_owned() })
        });
        let (error, io) = match acquired {
            Ok(acquired) => match node.sandbox.run(acquired, spec, io, log).await {
                Handover::Ran(outcome) => {
                    placed.node = Some(node.name.clone());
                    return Attempted::Over(outcome.map_err(NodesError::from));
                }
                // Its container stopped before it took the program: nothing ran, and the
                // client's side of the run comes back whole for another node.
                Handover::NotTaken(unsent) => (SandboxError::Lost, unsent),
            },
            Err(error) => (error, io),
        };
        tracing::warn!(node = %node.name, %error, "a run's node failed before its program started");
        let said = node.naming_itself(&error.to_string());
        log.record("node.failed", json!({ "node": node.name, "error": said }));
        placed.attempts.push(NodeAttempt { node: node.name.clone(), error: said.clone() });
        let time_left = tokio::time::Instant::now() < spec.wait_until;
        if !elsewhere || !time_left {
            // After a failover the reply says the node's name, as the attempts do.
            let (attempts, last) = (placed.attempts.len(), said);
            return Attempted::Over(Err(if attempts > 1 {
                NodesError::AllFailed { attempts, last }
            } else {
                error.into()
            }));
        }
        Attempted::Again(io)
    }

    fn tell(&self, event: NodeEvent) {
        // Nobody listening (a CLI run) is fine.
        let _ = self.inner.events.send(event);
    }
}

fn state_word(state: NodeState) -> &'static str {
    match state {
        NodeState::Up => "up",
        NodeState::Down => "down",
        NodeState::Draining => "draining",
    }
}

fn rfc3339(at: SystemTime) -> String {
    let us = at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
    tracebox_model::format_us(us)
}
