//! Everything a run needs, opened once: the policy, the trace store, the sandbox and the
//! pipeline over them. The server and the CLI both start here, and both clean up after
//! earlier starts that died.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::access::{self, Access, AccessError};
use crate::boot::{self, Boot};
use crate::claude::{Claude, ClaudeError, MessagesClient, PriceError, PriceTable};
use crate::config::Config;
use crate::files::{FileError, Files};
use crate::policy::{Policy, PolicyError};
use crate::runner::Runner;
use crate::sandbox::{Sandbox, SandboxError, Sweep};
use crate::sandboxes::{Sandboxes, SnapshotFiles};
use crate::trace::{StoreError, TraceStore};

/// How often the server looks for containers and traces that dead or leaking runs left.
const SWEEP_PERIOD: Duration = Duration::from_secs(60);
/// How often idle sandboxes are looked for: a timeout fires at most this late.
const SANDBOX_REAP_PERIOD: Duration = Duration::from_secs(2);

/// tracebox could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Files(#[from] FileError),
    #[error(transparent)]
    Prices(#[from] PriceError),
    #[error(transparent)]
    Claude(#[from] ClaudeError),
    /// Another server holds the data directory.
    #[error(
        "another tracebox server already uses the data directory {dir} (it holds {lock}); stop it, or give this one its own TRACEBOX_DATA_DIR"
    )]
    DataDirInUse { dir: PathBuf, lock: PathBuf },
    /// A file of the data directory cannot be used.
    #[error("cannot use {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The async runtime cannot start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}; choose another TRACEBOX_ADDR")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    /// The HTTP server failed while running.
    #[error("the HTTP server failed: {0}")]
    Server(std::io::Error),
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Beyond loopback with no key, anyone who reaches the port could run code.
    #[error(
        "refusing to listen on {addr} with no API key: anyone who reaches it could run code and read every \
         trace. Make a key first (`tracebox keys create --name admin --role admin`), or listen on 127.0.0.1, \
         or pass --insecure-no-auth (TRACEBOX_INSECURE_NO_AUTH=true) to run it open on purpose"
    )]
    Unprotected { addr: std::net::SocketAddr },
    /// The MCP endpoint cannot make its client of the server's own API.
    #[error("cannot open the MCP endpoint: {0}")]
    Mcp(#[from] crate::mcp::ClientError),
}

/// The opened services. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    pub policy: Arc<Policy>,
    pub store: TraceStore,
    pub sandbox: Sandbox,
    pub runner: Runner,
    pub files: Files,
    /// Claude calls, their code run by `runner`.
    pub claude: Claude,
    /// Stateful sandboxes, their steps run by `runner`.
    pub sandboxes: Sandboxes,
    /// API keys and tokens: who a request is from, and their limits.
    pub access: Access,
    boot: Arc<Boot>,
}

impl Services {
    /// Load the policy, open the store, connect to Docker and make the pipeline; runs execute
    /// on `runtime`.
    pub fn open(config: Config, runtime: tokio::runtime::Handle) -> Result<Services, StartError> {
        let config = Arc::new(config);
        let policy = Arc::new(Policy::load(config.policy.as_deref())?);
        let store = TraceStore::open(&config.traces_dir())?;
        let traces_dir = config.traces_dir();
        let boot = Arc::new(Boot::start(&traces_dir).map_err(|source| StartError::Io { path: traces_dir, source })?);
        let sandbox = Sandbox::connect(&config.sandbox_settings(), store.instance_id(), boot.id())?;
        let files = Files::new(config.files_settings(), store.clone(), boot.id());
        let runner = Runner::new(
            config.runner_settings(),
            Arc::clone(&policy),
            sandbox.clone(),
            store.clone(),
            files.clone(),
            runtime,
        );
        let prices = PriceTable::load(config.claude_prices.as_deref())?;
        let claude_settings = config.claude_settings();
        let claude = Claude::new(
            MessagesClient::new(&claude_settings.client)?,
            prices,
            claude_settings.calls,
            runner.clone(),
            Arc::clone(&policy),
            store.clone(),
            boot.id(),
        );
        let sandboxes = Sandboxes::new(
            config.sandboxes_settings(),
            sandbox.clone(),
            Arc::clone(&policy),
            store.clone(),
            runner.clone(),
            files.clone(),
            SnapshotFiles::new(config.snapshots_dir()),
            boot.id(),
        );
        let token_secret = config.token_secret.as_ref().map(|secret| secret.expose());
        let signer = access::load_signer(&config.traces_dir(), token_secret)?;
        let access = Access::new(store.clone(), signer, config.access_settings());
        Ok(Services { config, policy, store, sandbox, runner, files, claude, sandboxes, access, boot })
    }

    /// The id of this start, on every container and trace it makes.
    pub fn boot_id(&self) -> &str {
        self.boot.id()
    }

    /// Note this boot, and clean up after boots that died: fail their unfinished traces and
    /// remove their containers.
    pub async fn recover(&self) -> Result<(), StartError> {
        self.store.record_boot(self.boot_id()).await?;
        self.sweep_dead_boots().await
    }

    async fn sweep_dead_boots(&self) -> Result<(), StartError> {
        let dir = self.config.traces_dir();
        let live = boot::live_boots(&dir).map_err(|source| StartError::Io { path: dir, source })?;
        let failed = self.store.fail_orphaned(&live).await?;
        if failed > 0 {
            tracing::warn!(traces = failed, "marked traces that a stopped tracebox left running as internal_error");
        }
        self.sandbox.sweep(Sweep::DeadBoots { live: &live }).await?;
        Ok(())
    }

    /// What a server does before it listens: claim the data directory, recover from earlier
    /// boots, and build the image. Returns the data-directory lock, held while the server runs.
    pub async fn prepare_server(&self) -> Result<File, StartError> {
        self.check_protected()?;
        let lock = self.claim_data_dir()?;
        self.recover().await?;
        let partials = self.files.prepare()?;
        if partials > 0 {
            tracing::warn!(partials, "removed partial uploads that a stopped tracebox left");
        }
        self.sandbox.check_runtime().await?;
        let ready =
            self.sandbox.ensure_image(false, &mut |line| tracing::info!(target: "tracebox::image", "{line}")).await?;
        let (status, base) = (ready.status, &ready.base);
        tracing::info!(image = %self.config.image, ?status, %base, boot_id = self.boot_id(), "sandbox image ready");
        if let Err(error) = self.sandboxes.adopt().await {
            tracing::warn!(%error, "could not find the sandboxes of earlier starts again; they are retried at the next start");
        }
        self.sandbox.warm_up(&|line| tracing::info!(target: "tracebox::pool", "{line}")).await;
        self.sandboxes.warm_up();
        Ok(lock)
    }

    /// A server beyond loopback needs a key, unless the operator said otherwise (then loudly).
    fn check_protected(&self) -> Result<(), StartError> {
        let addr = self.config.addr;
        if addr.ip().is_loopback() || self.store.any_key()? {
            return Ok(());
        }
        if !self.config.insecure_no_auth {
            return Err(StartError::Unprotected { addr });
        }
        tracing::warn!(
            %addr,
            "INSECURE: listening beyond loopback with no API key (--insecure-no-auth): anyone who reaches this \
             port can run code and read every trace"
        );
        Ok(())
    }

    fn claim_data_dir(&self) -> Result<File, StartError> {
        let path = self.config.traces_dir().join("server.lock");
        let file = File::create(&path).map_err(|source| StartError::Io { path: path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(StartError::DataDirInUse { dir: self.config.data_dir.clone(), lock: path })
            }
            Err(std::fs::TryLockError::Error(source)) => Err(StartError::Io { path, source }),
        }
    }

    /// Every minute: clean up after boots that died since, remove this boot's containers that
    /// outlived any possible run (leaks), expire old artifacts, and remove traces past their
    /// retention. Runs until the handle is aborted.
    pub fn spawn_sweeper(&self, runtime: &tokio::runtime::Handle) -> tokio::task::JoinHandle<()> {
        let services = self.clone();
        // A warm container is taken only while younger than the pool's max age (a recycled one
        // too, for each of its runs), and a run lasts at most the longest timeout.
        let longest = self.config.max_timeout_secs + self.config.pool_max_age_secs;
        let older_than = Duration::from_secs_f64(longest) + SWEEP_PERIOD;
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_PERIOD);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(error) = services.sweep_dead_boots().await {
                    tracing::warn!(%error, "sweeping after dead boots failed");
                }
                let stale = Sweep::Stale { boot: services.boot_id(), older_than };
                if let Err(error) = services.sandbox.sweep(stale).await {
                    tracing::warn!(%error, "sweeping leaked containers failed");
                }
                let expired = services.files.expire_artifacts().await;
                if expired > 0 {
                    tracing::info!(runs = expired, "removed expired artifacts (TRACEBOX_ARTIFACTS_RETENTION_HOURS)");
                }
                services.retire_traces().await;
            }
        })
    }

    /// Every few seconds: pause or kill the sandboxes idle past their timeout, remove those past
    /// their lifetime. Runs until the handle is aborted.
    pub fn spawn_sandbox_reaper(&self, runtime: &tokio::runtime::Handle) -> tokio::task::JoinHandle<()> {
        let sandboxes = self.sandboxes.clone();
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(SANDBOX_REAP_PERIOD);
            loop {
                ticks.tick().await;
                sandboxes.reap().await;
            }
        })
    }

    /// Remove the traces past TRACEBOX_TRACE_RETENTION_DAYS or TRACEBOX_TRACE_MAX_COUNT, a
    /// batch at a time, and the artifacts of each batch once it is gone; log what went.
    async fn retire_traces(&self) {
        let started = std::time::Instant::now();
        let retired = self.files.retire_traces(self.config.trace_retention(), self.config.trace_cap()).await;
        match retired {
            Ok(swept) if swept.traces > 0 => tracing::info!(
                traces = swept.traces,
                events = swept.events,
                search_rows = swept.search_rows,
                artifact_runs = swept.artifact_runs,
                batches = swept.batches,
                ms = started.elapsed().as_millis() as u64,
                "removed traces past their retention (TRACEBOX_TRACE_RETENTION_DAYS, TRACEBOX_TRACE_MAX_COUNT)"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "removing traces past their retention failed"),
        }
    }

    /// Remove every container of this boot and commit the last traces.
    pub async fn shutdown(&self) {
        self.sandboxes.close().await;
        self.sandbox.close().await;
        match self.sandbox.sweep(Sweep::Boot { boot: self.boot_id() }).await {
            Ok(removed) => tracing::info!(removed, "removed this boot's remaining containers"),
            Err(error) => tracing::warn!(%error, "could not sweep containers at shutdown; the next start will"),
        }
        let store = self.store.clone();
        if tokio::task::spawn_blocking(move || store.close()).await.is_err() {
            tracing::error!("closing the trace store failed");
        }
    }
}
