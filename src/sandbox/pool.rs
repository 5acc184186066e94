//! The warm pool: per profile, started containers whose supervisor is ready, so a run skips
//! creating and starting one. A fresh container serves one run and is removed; a recycled one
//! serves runs of its tenant until TRACEBOX_RECYCLE_MAX_RUNS, wiped by its supervisor between
//! them. Refills happen in the background, as many at once as TRACEBOX_POOL_REFILL_CONCURRENCY
//! allows; containers older than TRACEBOX_POOL_MAX_AGE_SECS, or dead (killed from outside), are
//! replaced. A run finds a container waiting, or waits for one up to the queue timeout.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use tracebox_model::Isolation;

use super::SandboxError;
use super::container::Container;
use super::docker::Engine;
use super::limits::{ContainerSettings, ContainerSpec, Profile, Purpose};

/// How long a failed start waits before the next try, so a missing image is no busy loop.
const RETRY_AFTER_FAILED_START: Duration = Duration::from_secs(1);

/// How long a run waiting for a container sleeps at most before it looks at its shelf again.
const LOOK_AGAIN: Duration = Duration::from_millis(50);
/// How long a recycled container may take to ready its next program process.
const RECYCLE_READY: Duration = Duration::from_secs(30);

/// How big the pool is, and how long its containers serve.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Idle containers kept per stocked profile (0: each run starts its own).
    pub size: usize,
    /// Containers started at once while the pool refills.
    pub refill_concurrency: usize,
    /// How long a warm container may wait before it is replaced.
    pub max_age: Duration,
    /// Runs of one recycled container.
    pub max_runs: u32,
    /// Idle containers of tenants' profiles, all together.
    pub max_idle_recycled: usize,
}

/// The pool. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    settings: Arc<ContainerSettings>,
    /// Idle containers kept per stocked profile.
    size: usize,
    max_age: Duration,
    max_runs: u32,
    /// Idle containers kept for tenants' profiles (not stocked), all together.
    max_idle_recycled: usize,
    /// The profiles kept warm from the start (the default limits of each language, fresh).
    stocked: Vec<Profile>,
    starts: Semaphore,
    /// Starts and recycles under way, so that shutdown can wait for each container they make
    /// and remove it.
    under_way: TaskTracker,
    shelves: Mutex<HashMap<Profile, Shelf>>,
    closed: AtomicBool,
    /// Its engine is down: no starts until it answers again (they would fail each second).
    suspended: AtomicBool,
    counters: Counters,
}

/// Containers of one profile.
#[derive(Default)]
struct Shelf {
    idle: VecDeque<Container>,
    /// Starts under way.
    starting: usize,
    /// Runs waiting for a container.
    waiting: usize,
    in_use: usize,
    /// Recycled containers readying their next program process.
    readying: usize,
    /// Told when a container is put on the shelf.
    arrived: Arc<Notify>,
    last_error: Option<String>,
    /// Starts that failed, ever: a run that may go elsewhere stops waiting at the next one.
    failures: u64,
}

impl Shelf {
    /// Nothing on it, coming to it or taken from it.
    fn unused(&self) -> bool {
        self.idle.is_empty() && self.starting == 0 && self.waiting == 0 && self.in_use == 0 && self.readying == 0
    }
}

/// A container taken for one run. Its shelf counts it in use until the lease is released, or
/// dropped (a run that panicked), which removes the container.
pub struct Lease {
    pool: Pool,
    container: Option<Container>,
    clean: bool,
}

impl Lease {
    pub fn container(&mut self) -> &mut Container {
        self.container.as_mut().expect("a lease holds its container until released")
    }

    /// The run is over: `clean` when its container may serve again (if its isolation allows).
    pub fn release(mut self, clean: bool) {
        self.clean = clean;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(container) = self.container.take() {
            self.pool.release(container, self.clean);
        }
    }
}

/// What a container on its way to a shelf was counted as.
#[derive(Clone, Copy)]
enum Coming {
    Started,
    Readied,
}

/// A run waiting for a container of a profile, counted on its shelf while it waits.
struct Waiting {
    pool: Pool,
    profile: Profile,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.pool.with_shelves(|shelves| {
            if let Some(shelf) = shelves.get_mut(&self.profile) {
                shelf.waiting = shelf.waiting.saturating_sub(1);
            }
        });
        self.pool.forget_if_unused(&self.profile);
    }
}

#[derive(Default)]
struct Counters {
    started: AtomicU64,
    taken: AtomicU64,
    recycled: AtomicU64,
    discarded: AtomicU64,
    failed_starts: AtomicU64,
    waits: AtomicU64,
    waited_us: AtomicU64,
}

/// The pool as `/health` and `/metrics` show it.
#[derive(Debug, Clone, Serialize)]
pub struct PoolState {
    pub size: usize,
    pub max_age_secs: f64,
    pub profiles: Vec<ProfileState>,
    /// Containers started for the pool since the server started.
    pub started: u64,
    /// Runs served by a container of the pool.
    pub taken: u64,
    /// Recycled containers readied for another run.
    pub recycled: u64,
    /// Containers removed unused: too old, dead, or past their runs.
    pub discarded: u64,
    pub failed_starts: u64,
    /// Runs that found no container waiting, and how long they waited in all.
    pub waits: u64,
    pub waited_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProfileState {
    pub profile: String,
    pub idle: usize,
    pub starting: usize,
    pub in_use: usize,
    pub waiting: usize,
    pub last_error: Option<String>,
}

/// No container came in time.
#[derive(Debug)]
pub struct Empty {
    pub waited: Duration,
    pub last_error: Option<String>,
}

impl Pool {
    pub fn new(engine: Engine, settings: Arc<ContainerSettings>, sizes: PoolSettings, stocked: Vec<Profile>) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                engine,
                settings,
                size: sizes.size,
                max_age: sizes.max_age,
                max_runs: sizes.max_runs,
                max_idle_recycled: sizes.max_idle_recycled.max(1),
                stocked,
                starts: Semaphore::new(sizes.refill_concurrency.max(1)),
                under_way: TaskTracker::new(),
                shelves: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
                suspended: AtomicBool::new(false),
                counters: Counters::default(),
            }),
        }
    }

    /// Does `profile` come from the pool? The stocked profiles (when the pool has a size), and
    /// every recycled one (its containers wait between the runs of their tenant).
    pub fn serves(&self, profile: &Profile) -> bool {
        profile.isolation == Isolation::Recycle || (self.inner.size > 0 && self.inner.stocked.contains(profile))
    }

    /// Fill the stocked profiles, waiting until each has its containers (or failed to start
    /// one); `progress` hears each.
    pub async fn warm_up(&self, progress: &(dyn Fn(&str) + Sync)) {
        if self.inner.size == 0 {
            return;
        }
        for profile in &self.inner.stocked {
            self.refill(profile);
        }
        let wanted = self.inner.size * self.inner.stocked.len();
        let began = Instant::now();
        let mut reported = usize::MAX;
        loop {
            let (ready, failing) = self.with_shelves(|shelves| {
                let ready = shelves.values().map(|s| s.idle.len()).sum::<usize>();
                let failing = shelves.values().find_map(|s| s.last_error.clone());
                (ready, failing)
            });
            if ready != reported {
                progress(&format!(
                    "warm pool: {ready} of {wanted} containers ready ({:.1} s)",
                    began.elapsed().as_secs_f64()
                ));
                reported = ready;
            }
            if ready >= wanted {
                return;
            }
            if let Some(error) = failing {
                progress(&format!("warm pool: a container failed to start ({error}); runs will start their own"));
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A ready container of `profile`: one waiting, or the next to start within `wait`; and how
    /// long the run waited for it, when it had to. With `fail_fast` (the run has other engines
    /// to go to), a start that fails while it waits ends the wait.
    pub async fn take(
        &self,
        profile: &Profile,
        wait: Duration,
        fail_fast: bool,
    ) -> Result<(Lease, Option<Duration>), Empty> {
        let began = Instant::now();
        let deadline = began + wait;
        let mut waiting: Option<Waiting> = None;
        let mut failures_before = None;
        loop {
            let (found, left, arrived, failed) = self.with_shelves(|shelves| {
                let shelf = shelves.entry(profile.clone()).or_default();
                let failed = *failures_before.get_or_insert(shelf.failures) < shelf.failures;
                let mut found = None;
                while let Some(mut container) = shelf.idle.pop_front() {
                    if container.alive() && container.created_at.elapsed() < self.inner.max_age {
                        found = Some(container);
                        break;
                    }
                    self.inner.counters.discarded.fetch_add(1, Ordering::Relaxed);
                    container.discard();
                }
                if found.is_some() {
                    shelf.in_use += 1;
                } else if waiting.is_none() {
                    // Counted under the same lock as the look: a shelf with a run waiting is
                    // never forgotten, so the container meant for it comes to this very shelf.
                    shelf.waiting += 1;
                    waiting = Some(Waiting { pool: self.clone(), profile: profile.clone() });
                }
                (found, shelf.idle.len(), Arc::clone(&shelf.arrived), failed)
            });
            if let Some(mut container) = found {
                let waited = waiting.take().map(|_waiting| began.elapsed());
                container.taken();
                self.inner.counters.taken.fetch_add(1, Ordering::Relaxed);
                // With a container still waiting, the replacement starts once this run is over
                // (`release`): a container start costs the engine tens of milliseconds of CPU,
                // which this run would otherwise compete with. An empty shelf refills now.
                if left == 0 {
                    self.refill(profile);
                }
                if let Some(waited) = waited {
                    self.inner.counters.waits.fetch_add(1, Ordering::Relaxed);
                    self.inner.counters.waited_us.fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
                }
                return Ok((Lease { pool: self.clone(), container: Some(container), clean: false }, waited));
            }
            self.refill(profile);
            if Instant::now() >= deadline || (fail_fast && failed) {
                // Read before the run stops waiting: that may forget the shelf, and its error.
                let last_error = self.with_shelves(|shelves| shelves.get(profile).and_then(|s| s.last_error.clone()));
                drop(waiting);
                self.inner.counters.waits.fetch_add(1, Ordering::Relaxed);
                return Err(Empty { waited: began.elapsed(), last_error });
            }
            // A notification holds one permit: two containers arriving for two runs between
            // their look and their wait would wake one. Each looks again after a while anyway,
            // and once more at the deadline.
            let _ = tokio::time::timeout_at(deadline.min(Instant::now() + LOOK_AGAIN), arrived.notified()).await;
        }
    }

    /// The run on `container` is over: a clean recycled one goes back on its shelf once its
    /// supervisor is ready again; every other is removed.
    fn release(&self, mut container: Container, clean: bool) {
        let profile = container.profile.clone();
        let again = clean
            && profile.isolation == Isolation::Recycle
            && container.runs < self.inner.max_runs
            && !self.inner.closed.load(Ordering::Relaxed)
            && tokio::runtime::Handle::try_current().is_ok(); // else shutting down
        // One lock for both counts: a refill between them would start one container too many.
        self.with_shelves(|shelves| {
            let shelf = shelves.entry(profile.clone()).or_default();
            shelf.in_use = shelf.in_use.saturating_sub(1);
            shelf.readying += usize::from(again);
        });
        if !again {
            container.discard();
            self.refill(&profile);
            self.forget_if_unused(&profile);
            return;
        }
        let pool = self.clone();
        self.inner.under_way.spawn(async move {
            match container.ready(RECYCLE_READY).await {
                Ok(()) => {
                    pool.inner.counters.recycled.fetch_add(1, Ordering::Relaxed);
                    pool.shelve(container, Coming::Readied);
                }
                Err(error) => {
                    pool.with_shelves(|shelves| {
                        let shelf = shelves.entry(profile.clone()).or_default();
                        shelf.readying = shelf.readying.saturating_sub(1);
                    });
                    tracing::warn!(container = %container.name, %error, "a recycled container did not ready its next program");
                    pool.inner.counters.discarded.fetch_add(1, Ordering::Relaxed);
                    container.discard();
                    pool.refill(&profile);
                    pool.forget_if_unused(&profile);
                }
            }
        });
    }

    /// Drop the shelf of a profile that is not stocked once nothing of it is left, so that
    /// tenants come and go without their shelves piling up.
    fn forget_if_unused(&self, profile: &Profile) {
        if self.inner.stocked.contains(profile) {
            return;
        }
        self.with_shelves(|shelves| {
            if shelves.get(profile).is_some_and(Shelf::unused) {
                shelves.remove(profile);
            }
        });
    }

    /// Remove every waiting container (shutdown); nothing is refilled after.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        let idle: Vec<Container> =
            self.with_shelves(|shelves| shelves.values_mut().flat_map(|shelf| shelf.idle.drain(..)).collect());
        for container in idle {
            container.discard();
        }
    }

    /// Wait, at most `within`, for the starts and recycles under way when the pool closed: each
    /// then removes its container rather than shelve it (a container still being created when
    /// the server exits would otherwise be left to the next start's sweep).
    pub async fn settle(&self, within: Duration) {
        self.inner.under_way.close();
        if tokio::time::timeout(within, self.inner.under_way.wait()).await.is_err() {
            tracing::warn!(?within, "pool starts still under way at shutdown; the sweep removes what they made");
        }
    }

    /// Stop (`true`) or resume starting containers: the engine went down, or came back.
    pub fn suspend(&self, suspended: bool) {
        self.inner.suspended.store(suspended, Ordering::Relaxed);
    }

    /// Replace the containers that waited too long or died; run every few seconds.
    pub fn tend(&self) {
        let max_age = self.inner.max_age;
        let stale: Vec<Container> = self.with_shelves(|shelves| {
            let mut stale = Vec::new();
            for shelf in shelves.values_mut() {
                let (keep, old): (VecDeque<Container>, VecDeque<Container>) =
                    shelf.idle.drain(..).partition(|c| c.created_at.elapsed() < max_age);
                shelf.idle = keep;
                stale.extend(old);
            }
            stale
        });
        let mut dead = Vec::new();
        self.with_shelves(|shelves| {
            for shelf in shelves.values_mut() {
                let mut alive = VecDeque::new();
                for mut container in shelf.idle.drain(..) {
                    if container.alive() { alive.push_back(container) } else { dead.push(container) }
                }
                shelf.idle = alive;
            }
        });
        let gone = stale.len() + dead.len();
        self.inner.counters.discarded.fetch_add(gone as u64, Ordering::Relaxed);
        let mut emptied = HashSet::new();
        for container in stale.into_iter().chain(dead) {
            emptied.insert(container.profile.clone());
            container.discard();
        }
        for profile in self.inner.stocked.clone() {
            self.refill(&profile);
        }
        for profile in emptied {
            self.forget_if_unused(&profile);
        }
    }

    /// The pool now.
    pub fn state(&self) -> PoolState {
        let counters = &self.inner.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut profiles = self.with_shelves(|shelves| {
            shelves
                .iter()
                .map(|(profile, shelf)| ProfileState {
                    profile: profile.name(),
                    idle: shelf.idle.len(),
                    starting: shelf.starting,
                    in_use: shelf.in_use,
                    waiting: shelf.waiting,
                    last_error: shelf.last_error.clone(),
                })
                .collect::<Vec<_>>()
        });
        profiles.sort_by(|a, b| a.profile.cmp(&b.profile));
        PoolState {
            size: self.inner.size,
            max_age_secs: self.inner.max_age.as_secs_f64(),
            profiles,
            started: load(&counters.started),
            taken: load(&counters.taken),
            recycled: load(&counters.recycled),
            discarded: load(&counters.discarded),
            failed_starts: load(&counters.failed_starts),
            waits: load(&counters.waits),
            waited_ms: load(&counters.waited_us) as f64 / 1000.0,
        }
    }

    /// Start containers of `profile` until it has what it should: its size (stocked) plus one
    /// for each run waiting, counting recycled ones in use (they come back).
    fn refill(&self, profile: &Profile) {
        if self.inner.closed.load(Ordering::Relaxed) || self.inner.suspended.load(Ordering::Relaxed) {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return; // shutting down
        }
        let stock = if self.inner.stocked.contains(profile) { self.inner.size } else { 0 };
        let recycled = profile.isolation == Isolation::Recycle;
        let starts = self.with_shelves(|shelves| {
            let shelf = shelves.entry(profile.clone()).or_default();
            let coming = shelf.idle.len() + shelf.starting + shelf.readying;
            // Runs waiting need containers now; one in use does not serve them. The stock also
            // counts recycled containers in use: they come back.
            let for_waiting = shelf.waiting.saturating_sub(coming);
            let for_stock = stock.saturating_sub(coming + if recycled { shelf.in_use } else { 0 });
            let starts = for_waiting.max(for_stock);
            shelf.starting += starts;
            starts
        });
        for _ in 0..starts {
            let pool = self.clone();
            let profile = profile.clone();
            self.inner.under_way.spawn(async move { pool.start_one(profile).await });
        }
    }

    async fn start_one(&self, profile: Profile) {
        let started = match self.inner.starts.acquire().await {
            Ok(_permit) if !self.inner.closed.load(Ordering::Relaxed) => self.start(&profile).await,
            // Shut down while this start waited its turn: it never begins.
            _ => {
                self.with_shelves(|shelves| {
                    let shelf = shelves.entry(profile.clone()).or_default();
                    shelf.starting = shelf.starting.saturating_sub(1);
                });
                return;
            }
        };
        match started {
            Ok(container) => {
                self.inner.counters.started.fetch_add(1, Ordering::Relaxed);
                self.shelve(container, Coming::Started);
            }
            Err(error) => {
                self.inner.counters.failed_starts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(profile = %profile.name(), %error, "a warm container failed to start");
                self.with_shelves(|shelves| {
                    let shelf = shelves.entry(profile.clone()).or_default();
                    shelf.last_error = Some(error.to_string());
                    shelf.failures += 1;
                    shelf.arrived.notify_waiters();
                });
                // Still counted as starting while it waits: runs waiting meanwhile must not
                // start another at once, which would fail the same way many times a second.
                tokio::time::sleep(RETRY_AFTER_FAILED_START).await;
                self.with_shelves(|shelves| {
                    let shelf = shelves.entry(profile.clone()).or_default();
                    shelf.starting = shelf.starting.saturating_sub(1);
                });
                self.refill(&profile);
                self.forget_if_unused(&profile);
            }
        }
    }

    /// Start one container for the pool.
    async fn start(&self, profile: &Profile) -> Result<Container, SandboxError> {
        let name = format!("tracebox-pool-{}-{}", profile.name(), uuid::Uuid::new_v4().simple());
        let max_runs = if profile.isolation == Isolation::Recycle { self.inner.max_runs } else { 1 };
        let pool_name = profile.name();
        let spec = ContainerSpec {
            profile,
            files: &[],
            max_runs,
            // A container tracebox forgot gives up by itself soon after it would be replaced.
            max_idle: self.inner.max_age + super::SUPERVISOR_IDLE_SLACK,
            purpose: Purpose::Pool(&pool_name),
        };
        Container::start(&self.inner.engine, &self.inner.settings, &spec, &name).await
    }

    /// Put a ready container on its shelf, and tell a waiting run; one more than the shelf
    /// keeps is removed. It stops counting as `coming` in the same lock, so that no refill
    /// sees it neither coming nor there.
    fn shelve(&self, container: Container, coming: Coming) {
        let profile = container.profile.clone();
        let uncount = |shelf: &mut Shelf| match coming {
            Coming::Started => shelf.starting = shelf.starting.saturating_sub(1),
            Coming::Readied => shelf.readying = shelf.readying.saturating_sub(1),
        };
        if self.inner.closed.load(Ordering::Relaxed) {
            self.with_shelves(|shelves| uncount(shelves.entry(profile).or_default()));
            container.discard();
            return;
        }
        let keep = self.inner.size.max(1);
        let tenant = !self.inner.stocked.contains(&profile);
        let mut extra = None;
        let arrived = self.with_shelves(|shelves| {
            let shelf = shelves.entry(profile.clone()).or_default();
            uncount(shelf);
            shelf.last_error = None;
            if shelf.idle.len() >= keep + shelf.waiting {
                extra = Some(container);
                return (None, None);
            }
            // Containers of named tenants wait within one budget: the longest-waiting goes.
            let evicted = tenant.then(|| self.evict_for_tenant(shelves)).flatten();
            let shelf = shelves.entry(profile).or_default();
            shelf.idle.push_back(container);
            (Some(Arc::clone(&shelf.arrived)), evicted)
        });
        let (arrived, evicted) = arrived;
        if let Some(arrived) = arrived {
            arrived.notify_one();
        }
        for gone in extra.into_iter().chain(evicted) {
            self.inner.counters.discarded.fetch_add(1, Ordering::Relaxed);
            gone.discard();
        }
    }

    /// With the named tenants' idle containers at their budget, take out the one that has
    /// waited longest (and forget its shelf if that leaves it unused).
    fn evict_for_tenant(&self, shelves: &mut HashMap<Profile, Shelf>) -> Option<Container> {
        let tenants = || shelves.iter().filter(|(profile, _)| !self.inner.stocked.contains(profile));
        let idle: usize = tenants().map(|(_, shelf)| shelf.idle.len()).sum();
        if idle < self.inner.max_idle_recycled {
            return None;
        }
        let oldest = tenants()
            .filter_map(|(profile, shelf)| shelf.idle.front().map(|c| (c.ready_at, profile.clone())))
            .min_by_key(|(ready_at, _)| *ready_at)?
            .1;
        let shelf = shelves.get_mut(&oldest)?;
        let container = shelf.idle.pop_front();
        if shelf.unused() {
            shelves.remove(&oldest);
        }
        container
    }

    fn with_shelves<T>(&self, f: impl FnOnce(&mut HashMap<Profile, Shelf>) -> T) -> T {
        let mut shelves = self.inner.shelves.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut shelves)
    }
}
