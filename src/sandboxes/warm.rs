//! Sandbox containers started ahead, for the default sandbox of each language (default memory,
//! CPUs and disk, no environment of its own): creating one adopts a container that is already
//! running, in milliseconds, and a replacement starts in the background. A warm container that
//! no sandbox took is removed at shutdown, or by the next start's sweep.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tracebox_model::Language;

use crate::sandbox::{NewSession, Sandbox, Session};

/// How long a close waits for the starts under way (a container start takes about a second).
const CLOSE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// The warm containers. Cheap to clone.
#[derive(Clone)]
pub struct Warm {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Sandbox,
    /// Where the starts run: the server's runtime, which outlives any request that took a
    /// container (a task spawned from a request's worker would die with that worker).
    tasks: tokio::runtime::Handle,
    /// Kept per language.
    size: usize,
    profile: Profile,
    shelves: Mutex<HashMap<Language, Shelf>>,
    closed: AtomicBool,
}

/// What a warm container is made with: the default sandbox.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids: i64,
    pub disk_mb: u64,
}

#[derive(Default)]
struct Shelf {
    ready: VecDeque<Session>,
    starting: usize,
}

impl Warm {
    pub fn new(runtime: Sandbox, tasks: tokio::runtime::Handle, size: usize, profile: Profile) -> Warm {
        Warm {
            inner: Arc::new(Inner {
                runtime,
                tasks,
                size,
                profile,
                shelves: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
            }),
        }
    }

    fn shelves(&self) -> std::sync::MutexGuard<'_, HashMap<Language, Shelf>> {
        self.inner.shelves.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A running container for a sandbox of `language` made as `profile` says, when one waits;
    /// a replacement starts in the background either way.
    pub fn take(&self, language: Language, profile: Profile) -> Option<Session> {
        if profile != self.inner.profile || self.inner.size == 0 {
            return None;
        }
        let taken = loop {
            let mut shelves = self.shelves();
            let Some(session) = shelves.entry(language).or_default().ready.pop_front() else { break None };
            drop(shelves);
            // One killed from outside meanwhile is let go; the next may do.
            if !session.is_gone() {
                break Some(session);
            }
        };
        self.fill(language);
        taken
    }

    /// Start as many containers as `language`'s shelf lacks.
    pub fn fill(&self, language: Language) {
        if self.inner.closed.load(Ordering::Relaxed) {
            return;
        }
        let wanted = {
            let mut shelves = self.shelves();
            let shelf = shelves.entry(language).or_default();
            let wanted = self.inner.size.saturating_sub(shelf.ready.len() + shelf.starting);
            shelf.starting += wanted;
            wanted
        };
        for _ in 0..wanted {
            let warm = self.clone();
            self.inner.tasks.spawn(async move { warm.start(language).await });
        }
    }

    async fn start(&self, language: Language) {
        let id = format!("warm-{}", uuid::Uuid::new_v4().simple());
        let profile = self.inner.profile;
        let env = std::collections::BTreeMap::new();
        let new = NewSession {
            id: &id,
            language,
            memory_bytes: (profile.memory_mb + profile.disk_mb) << 20,
            cpus: profile.cpus,
            pids: profile.pids,
            disk_mb: profile.disk_mb,
            env: &env,
        };
        let started = self.inner.runtime.start_session(new).await;
        // Decided under the lock, so that a close meanwhile either sees this container on the
        // shelf or this start sees the close; a start counts as under way until its unwanted
        // container is removed, so that a close can wait for it.
        let unwanted = {
            let mut shelves = self.shelves();
            let shelf = shelves.entry(language).or_default();
            match started {
                Ok(session) if !self.inner.closed.load(Ordering::Relaxed) => {
                    shelf.ready.push_back(session);
                    shelf.starting = shelf.starting.saturating_sub(1);
                    None
                }
                Ok(session) => Some(session),
                Err(error) => {
                    tracing::warn!(%error, %language, "a warm sandbox container did not start");
                    shelf.starting = shelf.starting.saturating_sub(1);
                    None
                }
            }
        };
        if let Some(session) = unwanted {
            let _ = session.remove().await;
            let mut shelves = self.shelves();
            let shelf = shelves.entry(language).or_default();
            shelf.starting = shelf.starting.saturating_sub(1);
        }
    }

    /// Start no more, and remove those waiting (shutdown).
    pub async fn close(&self) {
        let waiting: Vec<Session> = {
            let mut shelves = self.shelves();
            self.inner.closed.store(true, Ordering::Relaxed);
            shelves.values_mut().flat_map(|shelf| shelf.ready.drain(..)).collect()
        };
        for session in waiting {
            let _ = session.remove().await;
        }
        // Starts under way remove what they started; a stopping server waits for them, so that
        // it leaves no container behind.
        let deadline = tokio::time::Instant::now() + CLOSE_PATIENCE;
        while self.shelves().values().any(|shelf| shelf.starting > 0) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Containers waiting, per language.
    pub fn idle(&self) -> HashMap<Language, usize> {
        self.shelves().iter().map(|(language, shelf)| (*language, shelf.ready.len())).collect()
    }

    /// The containers waiting on the shelves: a sweep of unowned containers spares them.
    pub fn containers(&self) -> Vec<String> {
        self.shelves().values().flat_map(|shelf| shelf.ready.iter().map(|s| s.container().to_owned())).collect()
    }
}
