//! Everything a run needs, opened once: the policy, the trace store, the sandbox and the
//! pipeline over them. The server and the CLI both start here.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::policy::{Policy, PolicyError};
use crate::runner::Runner;
use crate::sandbox::{ImageStatus, Sandbox, SandboxError, Sweep};
use crate::trace::{StoreError, TraceStore};

/// How often the server looks for containers that runs leaked.
const SWEEP_PERIOD: Duration = Duration::from_secs(60);

/// tracebox could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(
        "another tracebox server already uses the data directory {dir} (it holds {lock}); stop it, or give this one its own TRACEBOX_DATA_DIR"
    )]
    DataDirInUse { dir: PathBuf, lock: PathBuf },
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}; choose another TRACEBOX_ADDR")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// The opened services. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    pub policy: Arc<Policy>,
    pub store: TraceStore,
    pub sandbox: Sandbox,
    pub runner: Runner,
}

impl Services {
    /// Load the policy, open the store and make the pipeline; runs execute on `runtime`.
    pub fn open(config: Config, runtime: tokio::runtime::Handle) -> Result<Services, StartError> {
        let config = Arc::new(config);
        let policy = Arc::new(Policy::load(config.policy.as_deref())?);
        let store = TraceStore::open(&config.traces_dir())?;
        let boot_id = uuid::Uuid::now_v7().simple().to_string();
        let sandbox = Sandbox::new(&config, store.instance_id(), &boot_id);
        let runner = Runner::new(
            Arc::clone(&config),
            Arc::clone(&policy),
            sandbox.clone(),
            store.clone(),
            runtime,
        );
        Ok(Services {
            config,
            policy,
            store,
            sandbox,
            runner,
        })
    }

    /// Make sure the sandbox image is there, reporting build progress as it goes.
    pub async fn ensure_image(
        &self,
        force: bool,
        progress: &mut dyn FnMut(&str),
    ) -> Result<ImageStatus, StartError> {
        Ok(self.sandbox.ensure_image(force, progress).await?)
    }

    /// What a server does before it listens: claim the data directory, note the boot, clean
    /// up after a crashed predecessor, and build the image. Returns the data-directory lock,
    /// held for as long as the server runs.
    pub async fn prepare_server(&self) -> Result<File, StartError> {
        let lock = self.claim_data_dir()?;
        let unfinished = self.store.record_boot(self.sandbox.boot_id()).await?;
        if unfinished > 0 {
            tracing::warn!(
                traces = unfinished,
                "marked traces left running by an earlier server as internal_error"
            );
        }
        let swept = self
            .sandbox
            .sweep(Sweep::EarlierBoots {
                current_boot: self.sandbox.boot_id(),
            })
            .await?;
        tracing::info!(
            swept,
            boot_id = self.sandbox.boot_id(),
            "removed containers of earlier boots"
        );
        let status = self
            .ensure_image(
                false,
                &mut |line| tracing::info!(target: "tracebox::image", "{line}"),
            )
            .await?;
        tracing::info!(image = %self.config.image, ?status, "sandbox image ready");
        Ok(lock)
    }

    fn claim_data_dir(&self) -> Result<File, StartError> {
        let dir = self.config.traces_dir();
        let path = dir.join("server.lock");
        let file = File::create(&path).map_err(|source| StartError::Io {
            path: path.clone(),
            source,
        })?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(StartError::DataDirInUse {
                dir: self.config.data_dir.clone(),
                lock: path,
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(StartError::Io { path, source }),
        }
    }

    /// Sweep this boot's leaked containers in the background until the handle is aborted.
    pub fn spawn_sweeper(&self, runtime: &tokio::runtime::Handle) -> tokio::task::JoinHandle<()> {
        let older_than = Duration::from_secs_f64(self.config.max_timeout_secs) + SWEEP_PERIOD;
        runtime.spawn(
            self.sandbox
                .clone()
                .sweep_periodically(SWEEP_PERIOD, older_than),
        )
    }

    /// Remove every container of this boot and commit the last traces.
    pub async fn shutdown(&self) {
        let sweep = Sweep::Boot {
            boot: self.sandbox.boot_id(),
        };
        match self.sandbox.sweep(sweep).await {
            Ok(removed) => tracing::info!(removed, "removed this server's remaining containers"),
            Err(error) => {
                tracing::warn!(%error, "could not sweep containers at shutdown; the next start will")
            }
        }
        let store = self.store.clone();
        if tokio::task::spawn_blocking(move || store.close())
            .await
            .is_err()
        {
            tracing::error!("closing the trace store failed");
        }
    }
}
