//! The warm pool: per profile, started containers whose supervisor is ready, so a run skips
//! creating and starting one. A fresh container serves one run and is removed; a recycled one
//! serves runs of its tenant until TRACEBOX_RECYCLE_MAX_RUNS, wiped by its supervisor between
//! them. Refills happen in the background, as many at once as TRACEBOX_POOL_REFILL_CONCURRENCY
//! allows; containers older than TRACEBOX_POOL_MAX_AGE_SECS, or dead (killed from outside), are
//! replaced. A run finds a container waiting, or waits for one up to the queue timeout.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::SandboxError;
use super::container::Container;
use super::docker::Engine;
use super::limits::{ContainerSettings, ContainerSpec, Profile, Purpose};
use super::protocol::new_marker;
use crate::execution::Isolation;

/// How long a failed start waits before the next try, so a missing image is no busy loop.
const RETRY_AFTER_FAILED_START: Duration = Duration::from_secs(1);
/// How long a recycled container may take to ready its next program process.
const RECYCLE_READY: Duration = Duration::from_secs(30);

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
    /// The profiles kept warm from the start (the default limits of each language, fresh).
    stocked: Vec<Profile>,
    starts: Semaphore,
    /// Starts and recycles under way, so that shutdown can wait for each container they make
    /// and remove it.
    under_way: TaskTracker,
    shelves: Mutex<HashMap<Profile, Shelf>>,
    closed: AtomicBool,
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
    /// Told when a container is put on the shelf.
    arrived: Arc<Notify>,
    last_error: Option<String>,
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
    pub fn new(
        engine: Engine,
        settings: Arc<ContainerSettings>,
        size: usize,
        refill_concurrency: usize,
        max_age: Duration,
        max_runs: u32,
        stocked: Vec<Profile>,
    ) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                engine,
                settings,
                size,
                max_age,
                max_runs,
                stocked,
                starts: Semaphore::new(refill_concurrency.max(1)),
                under_way: TaskTracker::new(),
                shelves: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
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

    /// A ready container of `profile`: one waiting, or the next to start within `wait`.
    pub async fn take(&self, profile: &Profile, wait: Duration) -> Result<(Container, Option<Duration>), Empty> {
        let began = Instant::now();
        let deadline = began + wait;
        let mut waited = false;
        loop {
            let (found, left, arrived) = self.with_shelves(|shelves| {
                let shelf = shelves.entry(profile.clone()).or_default();
                let mut found = None;
                while let Some(mut container) = shelf.idle.pop_front() {
                    if container.alive() && container.created_at.elapsed() < self.inner.max_age {
                        found = Some(container);
                        break;
                    }
                    self.inner.counters.discarded.fetch_add(1, Ordering::Relaxed);
                    container.discard();
                }
                match &found {
                    Some(_) => shelf.in_use += 1,
                    None if !waited => shelf.waiting += 1,
                    None => {}
                }
                (found, shelf.idle.len(), Arc::clone(&shelf.arrived))
            });
            if let Some(mut container) = found {
                if waited {
                    self.with_shelves(|shelves| shelves.entry(profile.clone()).or_default().waiting -= 1);
                }
                container.taken();
                self.inner.counters.taken.fetch_add(1, Ordering::Relaxed);
                // With a container still waiting, the replacement starts once this run is over
                // (`release`): a container start costs the engine tens of milliseconds of CPU,
                // which this run would otherwise compete with. An empty shelf refills now.
                if left == 0 {
                    self.refill(profile);
                }
                let wait = waited.then(|| began.elapsed());
                if let Some(wait) = wait {
                    self.inner.counters.waits.fetch_add(1, Ordering::Relaxed);
                    self.inner.counters.waited_us.fetch_add(wait.as_micros() as u64, Ordering::Relaxed);
                }
                return Ok((container, wait));
            }
            waited = true;
            self.refill(profile);
            if tokio::time::timeout_at(deadline, arrived.notified()).await.is_err() {
                let last_error = self.with_shelves(|shelves| {
                    let shelf = shelves.entry(profile.clone()).or_default();
                    shelf.waiting -= 1;
                    shelf.last_error.clone()
                });
                self.inner.counters.waits.fetch_add(1, Ordering::Relaxed);
                return Err(Empty { waited: began.elapsed(), last_error });
            }
        }
    }

    /// The run on `container` is over: a clean recycled one goes back on its shelf once its
    /// supervisor is ready again; every other is removed.
    pub fn release(&self, mut container: Container, clean: bool) {
        let profile = container.profile.clone();
        self.with_shelves(|shelves| {
            let shelf = shelves.entry(profile.clone()).or_default();
            shelf.in_use = shelf.in_use.saturating_sub(1);
        });
        let again = clean && profile.isolation == Isolation::Recycle && container.runs < self.inner.max_runs;
        if !again || self.inner.closed.load(Ordering::Relaxed) {
            container.discard();
            self.refill(&profile);
            return;
        }
        let pool = self.clone();
        self.inner.under_way.spawn(async move {
            match container.ready(RECYCLE_READY).await {
                Ok(()) => {
                    pool.inner.counters.recycled.fetch_add(1, Ordering::Relaxed);
                    pool.shelve(container);
                }
                Err(error) => {
                    tracing::warn!(container = %container.name, %error, "a recycled container did not ready its next program");
                    pool.inner.counters.discarded.fetch_add(1, Ordering::Relaxed);
                    container.discard();
                    pool.refill(&profile);
                }
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
        for container in stale.into_iter().chain(dead) {
            container.discard();
        }
        for profile in self.inner.stocked.clone() {
            self.refill(&profile);
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
        if self.inner.closed.load(Ordering::Relaxed) {
            return;
        }
        let stocked = self.inner.size > 0 && self.inner.stocked.contains(profile);
        // A recycled container in use comes back: it counts as one the profile has.
        let returns = profile.isolation == Isolation::Recycle;
        let starts = self.with_shelves(|shelves| {
            let shelf = shelves.entry(profile.clone()).or_default();
            let target = if stocked { self.inner.size + shelf.waiting } else { shelf.waiting };
            let have = shelf.idle.len() + shelf.starting + if returns { shelf.in_use } else { 0 };
            let starts = target.saturating_sub(have);
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
        let failed = started.is_err();
        self.with_shelves(|shelves| {
            let shelf = shelves.entry(profile.clone()).or_default();
            shelf.starting = shelf.starting.saturating_sub(1);
            if let Err(error) = &started {
                shelf.last_error = Some(error.to_string());
            }
        });
        match started {
            Ok(container) => {
                self.inner.counters.started.fetch_add(1, Ordering::Relaxed);
                self.shelve(container);
            }
            Err(error) => {
                self.inner.counters.failed_starts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(profile = %profile.name(), %error, "a warm container failed to start");
            }
        }
        if failed {
            tokio::time::sleep(RETRY_AFTER_FAILED_START).await;
            self.refill(&profile);
        }
    }

    /// Start one container for the pool.
    async fn start(&self, profile: &Profile) -> Result<Container, SandboxError> {
        let name = format!("tracebox-pool-{}-{}", profile.name(), uuid::Uuid::new_v4().simple());
        let max_runs = if profile.isolation == Isolation::Recycle { self.inner.max_runs } else { 1 };
        let pool_name = profile.name();
        let marker = new_marker();
        let spec = ContainerSpec {
            profile,
            files: &[],
            marker: &marker,
            max_runs,
            // A container tracebox forgot gives up by itself soon after it would be replaced.
            max_idle: self.inner.max_age + Duration::from_secs(60),
            purpose: Purpose::Pool(&pool_name),
        };
        Container::start(&self.inner.engine, &self.inner.settings, &spec, &name).await
    }

    /// Put a ready container on its shelf, and tell a waiting run; one more than the shelf
    /// keeps is removed.
    fn shelve(&self, container: Container) {
        if self.inner.closed.load(Ordering::Relaxed) {
            container.discard();
            return;
        }
        let profile = container.profile.clone();
        let keep = self.inner.size.max(1);
        let mut extra = None;
        let arrived = self.with_shelves(|shelves| {
            let shelf = shelves.entry(profile).or_default();
            shelf.last_error = None;
            if shelf.idle.len() >= keep + shelf.waiting {
                extra = Some(container);
                return None;
            }
            shelf.idle.push_back(container);
            Some(Arc::clone(&shelf.arrived))
        });
        match (arrived, extra) {
            (Some(arrived), _) => arrived.notify_one(),
            (None, extra) => {
                self.inner.counters.discarded.fetch_add(1, Ordering::Relaxed);
                drop(extra);
            }
        }
    }

    fn with_shelves<T>(&self, f: impl FnOnce(&mut HashMap<Profile, Shelf>) -> T) -> T {
        let mut shelves = self.inner.shelves.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut shelves)
    }
}
