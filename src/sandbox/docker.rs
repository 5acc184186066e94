//! The Docker engine, through bollard: every call tracebox makes to Docker, with its errors
//! turned into [`SandboxError`]s that say what failed and what to do.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::container::{AttachContainerResults, LogOutput};
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CreateContainerOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    RenameContainerOptionsBuilder,
};
use bollard::{ClientVersion, Docker};
use futures_util::{Stream, StreamExt};

use super::SandboxError;

/// The Engine API version tracebox speaks: Docker 20.10 and every later engine understand it.
const API_VERSION: ClientVersion = ClientVersion { major_version: 1, minor_version: 41 };

/// Seconds any single Docker request may take before it is abandoned.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// A handle to one Docker engine. Cheap to clone; each call opens its own connection, so an
/// engine that restarts is simply reachable again.
#[derive(Clone)]
pub struct Engine {
    /// Its address without credentials, for messages.
    host: Arc<str>,
    address: Arc<Address>,
    docker: Arc<std::sync::OnceLock<Docker>>,
    /// Removals under way in the background, so a stopping tracebox can wait for them.
    removals: tokio_util::task::TaskTracker,
}

/// Where an engine is, as configured (credentials included).
struct Address {
    host: String,
    tls: Option<TlsFiles>,
}

/// `tcp://user:secret@host:2376` → `tcp://host:2376`: what messages and `/nodes` may show.
pub fn without_credentials(host: &str) -> String {
    match (host.find("://"), host.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}{}", &host[..scheme + 3], &host[at + 1..]),
        _ => host.to_owned(),
    }
}

/// The client certificates of an engine reached over TLS (as `docker --tlsverify` takes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// What an engine says of itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EngineInfo {
    pub version: String,
    pub cpus: u64,
    pub memory_bytes: u64,
}

/// A container's state after it stopped.
#[derive(Debug, Clone, Copy)]
pub struct ExitState {
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
}

/// One output chunk of a container, as its program wrote it.
#[derive(Debug)]
pub enum Chunk {
    Stdout(bytes::Bytes),
    Stderr(bytes::Bytes),
}

/// A container tracebox made, as listed by the engine.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub id: String,
    pub labels: HashMap<String, String>,
    /// Unix seconds.
    pub created: i64,
    pub running: bool,
}

impl Engine {
    /// The engine at `host` (`unix:///…`, `tcp://…`); `None` means `$DOCKER_HOST`, else the
    /// local socket. Nothing is asked of it yet: the client is made at the first call (so a node
    /// whose socket is not there yet is down, not a failed start). Fails only on an address
    /// tracebox cannot speak to.
    pub fn connect(host: Option<&str>, tls: Option<&TlsFiles>) -> Result<Engine, SandboxError> {
        let host = host
            .map(str::to_owned)
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let shown = without_credentials(&host);
        let refused = |why: &str| SandboxError::Unreachable { host: shown.clone(), source: why.to_owned().into() };
        if tls.is_some() && !host.starts_with("tcp://") {
            return Err(refused("TLS client certificates go with a tcp:// Docker host only"));
        }
        if !["tcp://", "http://", "unix://"].iter().any(|scheme| host.starts_with(scheme)) {
            return Err(refused("only unix:// and tcp:// Docker hosts are supported"));
        }
        let address = Address { host, tls: tls.cloned() };
        Ok(Engine {
            host: shown.into(),
            address: Arc::new(address),
            docker: Arc::new(std::sync::OnceLock::new()),
            removals: tokio_util::task::TaskTracker::new(),
        })
    }

    /// The client, made at the first call that needs it.
    fn docker(&self) -> Result<&Docker, SandboxError> {
        if let Some(docker) = self.docker.get() {
            return Ok(docker);
        }
        let Address { host, tls } = &*self.address;
        let made = match tls {
            Some(tls) => {
                // rustls needs its crypto provider chosen once per process (see http_client.rs).
                let _ = rustls::crypto::ring::default_provider().install_default();
                Docker::connect_with_ssl(host, &tls.key, &tls.cert, &tls.ca, REQUEST_TIMEOUT_SECS, &API_VERSION)
            }
            None if host.starts_with("unix://") => Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, &API_VERSION),
            None => Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, &API_VERSION),
        };
        let made = made.map_err(|source| self.unreachable(source))?;
        Ok(self.docker.get_or_init(|| made))
    }

    /// The address this engine was reached at, for messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn unreachable(&self, source: DockerError) -> SandboxError {
        SandboxError::Unreachable { host: self.host.to_string(), source: source.into() }
    }

    /// Classify a failed call: the engine answering with an error is a failed operation;
    /// anything else means the engine could not be reached.
    fn failed(&self, operation: &'static str, source: DockerError) -> SandboxError {
        match source {
            DockerError::DockerResponseServerError { .. } | DockerError::JsonDataError { .. } => {
                SandboxError::Docker { operation, source: source.into() }
            }
            other => self.unreachable(other),
        }
    }

    /// The engine's version, proving it answers.
    pub async fn version(&self) -> Result<String, SandboxError> {
        let version = self.docker()?.version().await.map_err(|e| self.failed("version", e))?;
        Ok(version.version.unwrap_or_else(|| "unknown".to_owned()))
    }

    /// What a heartbeat learns of the engine: its version, CPUs and memory.
    pub async fn info(&self) -> Result<EngineInfo, SandboxError> {
        let info = self.docker()?.info().await.map_err(|e| self.failed("info", e))?;
        Ok(EngineInfo {
            version: info.server_version.unwrap_or_else(|| "unknown".to_owned()),
            cpus: info.ncpu.unwrap_or(0).max(0) as u64,
            memory_bytes: info.mem_total.unwrap_or(0).max(0) as u64,
        })
    }

    /// `image` as a `docker save` tar, streamed.
    pub fn export_image(&self, image: &str) -> impl Stream<Item = Result<bytes::Bytes, SandboxError>> + use<'_> {
        match self.docker() {
            Ok(docker) => {
                docker.export_image(image).map(|chunk| chunk.map_err(|e| self.failed("export image", e))).left_stream()
            }
            Err(error) => futures_util::stream::once(async move { Err(error) }).right_stream(),
        }
    }

    /// Load a `docker save` tar (`docker load`), streamed in.
    pub async fn load_image<S>(&self, tar: S) -> Result<(), SandboxError>
    where
        S: Stream<Item = Result<bytes::Bytes, SandboxError>> + Send + 'static,
    {
        let options = bollard::query_parameters::ImportImageOptionsBuilder::default().quiet(true).build();
        let mut loading = std::pin::pin!(self.docker()?.import_image_stream(options, tar, None));
        while let Some(step) = loading.next().await {
            let step = step.map_err(|e| self.failed("load image", e))?;
            if let Some(error) = step.error_detail.and_then(|detail| detail.message) {
                return Err(SandboxError::Docker { operation: "load image", source: error.into() });
            }
        }
        Ok(())
    }

    /// The names of the runtimes the engine has registered (`runc`, and those of daemon.json's
    /// `runtimes`), sorted.
    pub async fn runtimes(&self) -> Result<Vec<String>, SandboxError> {
        let info = self.docker()?.info().await.map_err(|e| self.failed("info", e))?;
        let mut names: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
        names.sort();
        Ok(names)
    }

    /// The labels of `image`, or `None` when the engine has no such image.
    pub async fn image_labels(&self, image: &str) -> Result<Option<HashMap<String, String>>, SandboxError> {
        match self.docker()?.inspect_image(image).await {
            Ok(inspect) => Ok(Some(inspect.config.and_then(|c| c.labels).unwrap_or_default())),
            Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(self.failed("inspect image", e)),
        }
    }

    /// Build an image from a tar build context, reporting each line of build output.
    pub async fn build_image(
        &self,
        context: Vec<u8>,
        dockerfile: &str,
        tag: &str,
        build_args: &HashMap<String, String>,
        labels: &HashMap<String, String>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), SandboxError> {
        let docker = self.docker()?;
        let options = BuildImageOptionsBuilder::default()
            .dockerfile(dockerfile)
            .t(tag)
            .rm(true)
            .forcerm(true)
            .buildargs(build_args)
            .labels(labels)
            .build();
        let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| match e {
                DockerError::DockerStreamError { error } => SandboxError::Build(error),
                other => self.failed("build image", other),
            })?;
            if let Some(detail) = info.error_detail {
                return Err(SandboxError::Build(detail.message.unwrap_or_default()));
            }
            if let Some(line) = info.stream.as_deref().map(str::trim_end).filter(|l| !l.is_empty()) {
                progress(line);
            }
        }
        Ok(())
    }

    /// Create a container; `ImageMissing` when its image is not there, `RuntimeMissing` when
    /// the engine no longer knows its runtime (daemon.json changed since the start-up check).
    pub async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String, SandboxError> {
        let image = body.image.clone().unwrap_or_default();
        let runtime = body.host_config.as_ref().and_then(|host| host.runtime.clone()).unwrap_or_default();
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        match self.docker()?.create_container(Some(options), body).await {
            Ok(created) => Ok(created.id),
            Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => {
                Err(SandboxError::ImageMissing { image })
            }
            // Docker's words for it: "Unknown runtime specified NAME".
            Err(DockerError::DockerResponseServerError { status_code: 400, message })
                if message.to_ascii_lowercase().contains("unknown runtime") =>
            {
                Err(SandboxError::RuntimeMissing { host: self.host.to_string(), runtime, registered: Vec::new() })
            }
            Err(e) => Err(self.failed("create container", e)),
        }
    }

    /// Attach to stdin, stdout and stderr; done before start so no output is missed.
    pub async fn attach(
        &self,
        id: &str,
    ) -> Result<
        (impl Stream<Item = Result<Chunk, SandboxError>> + Send + use<>, impl tokio::io::AsyncWrite + Send + use<>),
        SandboxError,
    > {
        let options =
            AttachContainerOptionsBuilder::default().stdin(true).stdout(true).stderr(true).stream(true).build();
        let AttachContainerResults { output, input } =
            self.docker()?.attach_container(id, Some(options)).await.map_err(|e| self.failed("attach", e))?;
        let engine = self.clone();
        let chunks = output.filter_map(move |item| {
            let chunk = match item {
                Ok(LogOutput::StdOut { message }) => Some(Ok(Chunk::Stdout(message))),
                Ok(LogOutput::StdErr { message }) => Some(Ok(Chunk::Stderr(message))),
                Ok(LogOutput::StdIn { .. } | LogOutput::Console { .. }) => None,
                Err(e) => Some(Err(engine.failed("read output", e))),
            };
            std::future::ready(chunk)
        });
        Ok((chunks, input))
    }

    /// Start a created container.
    pub async fn start(&self, id: &str) -> Result<(), SandboxError> {
        self.docker()?.start_container(id, None).await.map_err(|e| self.failed("start container", e))
    }

    /// Wait until the container stops, then read how it ended.
    pub async fn wait(&self, id: &str) -> Result<ExitState, SandboxError> {
        match self.docker()?.wait_container(id, None).next().await {
            // bollard reports a non-zero exit as an error; the state below tells it anyway.
            Some(Ok(_) | Err(DockerError::DockerContainerWaitError { .. })) | None => {}
            Some(Err(e)) => return Err(self.failed("wait for container", e)),
        }
        let inspect =
            self.docker()?.inspect_container(id, None).await.map_err(|e| self.failed("inspect container", e))?;
        let state = inspect.state.unwrap_or_default();
        if state.running == Some(true) {
            let source = format!("container {id} still runs after its wait ended").into();
            return Err(SandboxError::Docker { operation: "wait for container", source });
        }
        Ok(ExitState { exit_code: state.exit_code, oom_killed: state.oom_killed.unwrap_or(false) })
    }

    /// Does the container run? False when it stopped or is gone.
    pub async fn running(&self, id: &str) -> Result<bool, SandboxError> {
        match self.docker()?.inspect_container(id, None).await {
            Ok(inspect) => Ok(inspect.state.and_then(|state| state.running).unwrap_or(false)),
            Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(self.failed("inspect container", e)),
        }
    }

    /// SIGKILL every process of the container at once (not only its leader). False when it
    /// had already stopped.
    pub async fn kill(&self, id: &str) -> Result<bool, SandboxError> {
        let options = KillContainerOptionsBuilder::default().signal("KILL").build();
        match self.docker()?.kill_container(id, Some(options)).await {
            Ok(()) => Ok(true),
            // 409: it already stopped; 404: it is already gone.
            Err(DockerError::DockerResponseServerError { status_code: 404 | 409, .. }) => Ok(false),
            Err(e) => Err(self.failed("kill container", e)),
        }
    }

    /// Remove a container, running or not; one that is already gone is fine.
    pub async fn remove(&self, id: &str) -> Result<(), SandboxError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match self.docker()?.remove_container(id, Some(options)).await {
            // 404: already gone; 409: its removal is already under way (a sweep and a run raced).
            Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 404 | 409, .. }) => Ok(()),
            Err(e) => Err(self.failed("remove container", e)),
        }
    }

    /// Give a container another name.
    pub async fn rename(&self, id: &str, name: &str) -> Result<(), SandboxError> {
        let options = RenameContainerOptionsBuilder::default().name(name).build();
        self.docker()?.rename_container(id, options).await.map_err(|e| self.failed("rename container", e))
    }

    /// Remove a container in the background (nobody waits for a removal but a stopping tracebox).
    pub fn remove_later(&self, id: String) {
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::warn!(container = %id, "no runtime to remove a container; the sweeper will");
            return;
        }
        let engine = self.clone();
        self.removals.spawn(async move {
            if let Err(error) = engine.remove(&id).await {
                tracing::warn!(container = %id, %error, "could not remove a container; the sweeper will retry");
            }
        });
    }

    /// Wait, at most `within`, for the background removals to finish.
    pub async fn removals_done(&self, within: std::time::Duration) {
        self.removals.close();
        if tokio::time::timeout(within, self.removals.wait()).await.is_err() {
            tracing::warn!("some containers were still being removed at exit; the next start sweeps them");
        }
        self.removals.reopen();
    }

    /// Every container, running or not, that carries all of `labels` (`key=value` or `key`).
    pub async fn list_labelled(&self, labels: &[String]) -> Result<Vec<Labelled>, SandboxError> {
        let filters = HashMap::from([("label".to_owned(), labels.to_vec())]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let containers =
            self.docker()?.list_containers(Some(options)).await.map_err(|e| self.failed("list containers", e))?;
        Ok(containers.into_iter().filter_map(labelled).collect())
    }
}

fn labelled(summary: ContainerSummary) -> Option<Labelled> {
    Some(Labelled {
        id: summary.id?,
        labels: summary.labels.unwrap_or_default(),
        created: summary.created.unwrap_or_default(),
        running: summary.state.is_some_and(|state| state == ContainerSummaryStateEnum::RUNNING),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_is_named_without_its_credentials_and_made_only_when_first_asked() {
        assert_eq!(without_credentials("tcp://ops:hunter2@10.0.0.7:2376"), "tcp://10.0.0.7:2376");
        assert_eq!(
            without_credentials("unix:///run/tracebox-nodes/node-a.sock"),
            "unix:///run/tracebox-nodes/node-a.sock"
        );
        let engine = Engine::connect(Some("tcp://ops:hunter2@127.0.0.1:1"), None).unwrap();
        assert_eq!(engine.host(), "tcp://127.0.0.1:1");
        // A socket that is not there (yet) is an engine that does not answer, not a failed start.
        let absent = Engine::connect(Some("unix:///nonexistent/docker.sock"), None).unwrap();
        let error = match absent.docker() {
            Ok(_) => panic!("no socket, no client"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("unix:///nonexistent/docker.sock") && error.contains("unreachable"), "{error}");
        assert!(Engine::connect(Some("ssh://host"), None).is_err());
    }
}
