//! The one function that owns every security setting of a sandbox container.
//!
//! Each line here is a guarantee written in docs/security.md's table and proved by a test
//! against the real engine; change them together.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountBindOptions, MountBindOptionsPropagationEnum,
    MountType, ResourcesUlimits,
};

use tracebox_model::{InputFile, Isolation, Language, RunLimits};

use super::SandboxSettings;
use std::time::Duration;

/// The uid and gid user code runs as: the image's `sandbox` user, never root.
pub const SANDBOX_USER: &str = "1000:1000";

/// Labels that mark a container as tracebox's, for the sweeper.
pub const LABEL: &str = "tracebox";
pub const LABEL_INSTANCE: &str = "tracebox.instance";
pub const LABEL_BOOT: &str = "tracebox.boot";
/// The node (configured engine) that made it: one engine named twice in `[[nodes]]`, or a
/// node renamed, must not sweep another node's containers.
pub const LABEL_NODE: &str = "tracebox.node";
pub const LABEL_TRACE: &str = "tracebox.trace";
/// On a container of a warm pool: the pool's profile.
pub const LABEL_POOL: &str = "tracebox.pool";
/// On a stateful sandbox's container: the sandbox's id. It outlives the boot that made it, so
/// boot sweeps spare it; the store says whether a sandbox still owns it.
pub const LABEL_SANDBOX: &str = "tracebox.sandbox";

/// Container settings that come from the sandbox's settings, the same for every run.
#[derive(Debug, Clone)]
pub struct ContainerSettings {
    pub image: String,
    /// The Docker runtime (`runc`, `runsc`…): every container names it, so none runs under
    /// another by the engine's default.
    pub runtime: String,
    pub nofile: u64,
    pub file_size_bytes: u64,
    pub tmp_size_mb: u64,
    pub workspace_size_mb: u64,
    /// Which data directory's server made the container (see `TraceStore::instance_id`).
    pub instance_id: String,
    /// Which start of that server made it.
    pub boot_id: String,
    /// Which node made it, and the names of the other nodes (whose containers it leaves alone).
    pub node: String,
    pub other_nodes: Vec<String>,
}

impl ContainerSettings {
    /// What `settings` say of every container, and whose it is: this data directory's
    /// `instance_id`, this start's `boot_id`.
    pub fn new(settings: &SandboxSettings, instance_id: &str, boot_id: &str) -> ContainerSettings {
        ContainerSettings {
            image: settings.image.clone(),
            runtime: settings.runtime.clone(),
            nofile: settings.nofile_limit,
            file_size_bytes: settings.file_size_limit_bytes,
            tmp_size_mb: settings.tmp_size_mb,
            workspace_size_mb: settings.workspace_size_mb,
            instance_id: instance_id.to_owned(),
            boot_id: boot_id.to_owned(),
            node: settings.node.clone(),
            other_nodes: settings.other_nodes.clone(),
        }
    }
}

/// What a container is made for: all that is fixed when it is created. Runs with the same
/// profile can take a warm container of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Profile {
    pub language: Language,
    pub memory_bytes: u64,
    /// CPU quota in thousandths of a CPU (a float is no key).
    pub millicpus: u64,
    pub pids: i64,
    pub isolation: Isolation,
    /// Whose runs a recycled container serves; None for fresh ones.
    pub tenant: Option<String>,
}

impl Profile {
    /// The profile a run with `limits` needs.
    pub fn of(language: Language, limits: &RunLimits, isolation: Isolation, tenant: Option<&str>) -> Profile {
        Profile {
            language,
            memory_bytes: limits.memory_bytes,
            millicpus: (limits.cpus * 1000.0).round() as u64,
            pids: limits.pids,
            isolation,
            tenant: (isolation == Isolation::Recycle).then(|| tenant.unwrap_or(DEFAULT_TENANT).to_owned()),
        }
    }

    /// A short name for labels and logs: `python`, `node-recycle-acme`.
    pub fn name(&self) -> String {
        match &self.tenant {
            Some(tenant) => format!("{}-recycle-{tenant}", self.language),
            None => self.language.as_str().to_owned(),
        }
    }
}

/// The tenant of recycled runs that name none.
pub const DEFAULT_TENANT: &str = "default";

/// One container to create.
pub struct ContainerSpec<'a> {
    pub profile: &'a Profile,
    /// Uploaded files, mounted read-only under `/workspace/` (a container with files serves
    /// only the run that named them).
    pub files: &'a [InputFile],
    /// Runs it may serve (1 for fresh ones).
    pub max_runs: u32,
    /// How long it may wait for a program before it gives up by itself (should tracebox die).
    pub max_idle: Duration,
    /// What it is for, on its labels: a pool (`tracebox.pool`) or one run (`tracebox.trace`).
    pub purpose: Purpose<'a>,
}

/// What a container is for.
#[derive(Debug, Clone, Copy)]
pub enum Purpose<'a> {
    Pool(&'a str),
    Run(&'a str),
    /// A stateful sandbox: its id, the size of its `/workspace`, and its environment (every
    /// command and the kernel get it).
    Sandbox {
        id: &'a str,
        disk_mb: u64,
        env: &'a BTreeMap<String, String>,
    },
}

/// How long past its own timeout a program is killed by its supervisor, should tracebox not be
/// there to kill its container (a crash, a killed `tracebox run`).
const BACKSTOP_GRACE_SECS: u64 = 5;

/// The command of a container: the supervisor (`sandbox/supervise.py`), which keeps a program
/// process ready and reports each program's end. Interpreters by absolute path, so a request's
/// `PATH` cannot break it.
fn command(language: Language) -> Vec<String> {
    ["/usr/bin/python3", "-u", "/opt/tracebox/supervise.py", language.as_str()]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// The supervisor's settings. A program's own environment comes with it, in its frame.
fn supervisor_env(spec: &ContainerSpec) -> Vec<String> {
    let mode = match (spec.purpose, spec.profile.isolation) {
        (Purpose::Sandbox { .. }, _) => "sandbox",
        (_, Isolation::Fresh) => "fresh",
        (_, Isolation::Recycle) => "recycle",
    };
    let mut env = vec![
        format!("TRACEBOX_MODE={mode}"),
        format!("TRACEBOX_MAX_RUNS={}", spec.max_runs),
        format!("TRACEBOX_MAX_IDLE_SECS={}", spec.max_idle.as_secs_f64()),
        format!("TRACEBOX_BACKSTOP_GRACE_SECS={BACKSTOP_GRACE_SECS}"),
    ];
    // A sandbox's own environment is the container's: its commands and kernel inherit it (the
    // supervisor removes its own TRACEBOX_ settings from what it hands on).
    if let Purpose::Sandbox { env: own, .. } = spec.purpose {
        env.extend(own.iter().map(|(name, value)| format!("{name}={value}")));
    }
    env
}

/// The hardened container of `spec`.
pub fn container_body(settings: &ContainerSettings, spec: &ContainerSpec) -> ContainerCreateBody {
    let (purpose_label, purpose) = match spec.purpose {
        Purpose::Pool(name) => (LABEL_POOL, name),
        Purpose::Run(trace_id) => (LABEL_TRACE, trace_id),
        Purpose::Sandbox { id, .. } => (LABEL_SANDBOX, id),
    };
    let sandbox = matches!(spec.purpose, Purpose::Sandbox { .. });
    ContainerCreateBody {
        image: Some(settings.image.clone()),
        cmd: Some(command(spec.profile.language)),
        user: Some(SANDBOX_USER.to_owned()),
        working_dir: Some("/workspace".to_owned()),
        hostname: Some("sandbox".to_owned()),
        env: Some(supervisor_env(spec)),
        // Programs arrive on stdin, framed; stdin stays open while the container serves.
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        // A sandbox's supervisor keeps its stdin when tracebox detaches (a restart re-attaches).
        stdin_once: Some(!sandbox),
        tty: Some(false),
        // No network at all: no interface but loopback, no route out (and a faster start
        // than network mode `none` alone).
        network_disabled: Some(true),
        labels: Some(HashMap::from([
            (LABEL.to_owned(), "1".to_owned()),
            (LABEL_INSTANCE.to_owned(), settings.instance_id.clone()),
            (LABEL_BOOT.to_owned(), settings.boot_id.clone()),
            (LABEL_NODE.to_owned(), settings.node.clone()),
            (purpose_label.to_owned(), purpose.to_owned()),
        ])),
        host_config: Some(host_config(settings, spec)),
        ..ContainerCreateBody::default()
    }
}

fn host_config(settings: &ContainerSettings, spec: &ContainerSpec) -> HostConfig {
    let (profile, files) = (spec.profile, spec.files);
    // A sandbox's /workspace is where an agent builds and runs what it wrote (`./configure`,
    // a compiled test): Docker mounts a tmpfs noexec unless told `exec`. A run's stays noexec.
    let (workspace_mb, exec) = match spec.purpose {
        Purpose::Sandbox { disk_mb, .. } => (disk_mb, ",exec"),
        Purpose::Pool(_) | Purpose::Run(_) => (settings.workspace_size_mb, ""),
    };
    let memory = i64::try_from(profile.memory_bytes).unwrap_or(i64::MAX);
    let ulimit = |name: &str, value: u64| {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        ResourcesUlimits { name: Some(name.to_owned()), soft: Some(value), hard: Some(value) }
    };
    HostConfig {
        // The runtime is named whatever the engine's default: runsc (gVisor) puts a kernel of
        // its own between the code and the host's, a second wall behind everything below.
        runtime: Some(settings.runtime.clone()),
        network_mode: Some("none".to_owned()),
        // No way to gain privileges: no capabilities, no setuid escalation, no privileged mode.
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        privileged: Some(false),
        // Nothing of the image can be changed; only size-capped tmpfs are writable: these two,
        // Docker's /dev/shm (noexec), sized like /tmp, and the kernel's /dev/mqueue (bounded by
        // its own per-user limits).
        readonly_rootfs: Some(true),
        shm_size: Some(i64::try_from(settings.tmp_size_mb.saturating_mul(1 << 20)).unwrap_or(i64::MAX)),
        tmpfs: Some(HashMap::from([
            ("/tmp".to_owned(), format!("rw,nosuid,nodev,noexec,size={}m,mode=1777", settings.tmp_size_mb)),
            (
                "/workspace".to_owned(),
                format!("rw,nosuid,nodev{exec},size={workspace_mb}m,uid=1000,gid=1000,mode=0755"),
            ),
        ])),
        // No docker-init: the supervisor is PID 1 and reaps orphans itself. An init of the
        // sandbox user would be a process every program could trace (it is dumpable) and that
        // outlives every run of a recycled container.
        init: Some(false),
        // Resources: memory with no swap on top, CPU quota, process count, files.
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some(i64::try_from(profile.millicpus).unwrap_or(i64::MAX).saturating_mul(1_000_000)),
        pids_limit: Some(profile.pids),
        ulimits: Some(vec![
            ulimit("nofile", settings.nofile),
            ulimit("fsize", settings.file_size_bytes),
            ulimit("core", 0),
        ]),
        // Output reaches tracebox through the attach stream only; nothing is logged to disk.
        log_config: Some(HostConfigLogConfig { typ: Some("none".to_owned()), config: None }),
        // Nothing of the host is mounted but the files the request names, each read-only, and
        // the container is never restarted.
        binds: Some(Vec::new()),
        mounts: (!files.is_empty()).then(|| files.iter().map(input_mount).collect()),
        auto_remove: Some(false),
        ..HostConfig::default()
    }
}

/// One input file at `/workspace/<name>`, read-only, not shared with other mounts.
fn input_mount(file: &InputFile) -> Mount {
    Mount {
        target: Some(format!("/workspace/{}", file.name)),
        source: Some(file.host_path.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        bind_options: Some(MountBindOptions {
            propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
            ..MountBindOptions::default()
        }),
        ..Mount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn body() -> ContainerCreateBody {
        body_with(&[])
    }

    fn profile() -> Profile {
        let limits = RunLimits {
            timeout: Duration::from_secs(10),
            memory_bytes: 256 * MIB,
            cpus: 0.5,
            pids: 64,
            output_bytes: MIB,
        };
        Profile::of(Language::Python, &limits, Isolation::Fresh, None)
    }

    fn body_with(files: &[InputFile]) -> ContainerCreateBody {
        let settings = ContainerSettings {
            image: "tracebox-sandbox:test".into(),
            runtime: "runsc".into(),
            nofile: 256,
            file_size_bytes: 32 * MIB,
            tmp_size_mb: 64,
            workspace_size_mb: 16,
            instance_id: "inst".into(),
            boot_id: "boot".into(),
            node: "local".into(),
            other_nodes: Vec::new(),
        };
        let profile = profile();
        let spec = ContainerSpec {
            profile: &profile,
            files,
            max_runs: 1,
            max_idle: Duration::from_secs(300),
            purpose: Purpose::Run("trace-1"),
        };
        container_body(&settings, &spec)
    }

    fn host() -> HostConfig {
        body().host_config.unwrap()
    }

    #[test]
    fn every_container_names_its_runtime() {
        assert_eq!(host().runtime.as_deref(), Some("runsc"));
    }

    #[test]
    fn the_network_is_off() {
        assert_eq!(host().network_mode.as_deref(), Some("none"));
        assert_eq!(body().network_disabled, Some(true));
    }

    #[test]
    fn no_privilege_can_be_gained() {
        let host = host();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.cap_add, None);
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_owned()]));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(body().user.as_deref(), Some(SANDBOX_USER));
    }

    #[test]
    fn only_size_capped_tmpfs_are_writable() {
        let host = host();
        assert_eq!(host.readonly_rootfs, Some(true));
        let tmpfs = host.tmpfs.unwrap();
        assert!(tmpfs["/tmp"].contains("size=64m") && tmpfs["/tmp"].contains("noexec"));
        assert!(tmpfs["/workspace"].contains("size=16m") && tmpfs["/workspace"].contains("uid=1000"));
        assert_eq!(tmpfs.len(), 2);
        assert_eq!(host.shm_size, Some(64 << 20), "/dev/shm is sized like /tmp");
    }

    #[test]
    fn nothing_of_the_host_is_mounted() {
        let host = host();
        assert_eq!(host.binds, Some(Vec::new()));
        assert_eq!(host.mounts, None);
        assert_eq!(host.volumes_from, None);
    }

    #[test]
    fn input_files_are_the_only_mounts_each_read_only_in_the_workspace() {
        let file = InputFile { name: "data.csv".into(), host_path: "/srv/uploads/data.csv".into(), size: 3 };
        let host = body_with(&[file]).host_config.unwrap();
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].target.as_deref(), Some("/workspace/data.csv"));
        assert_eq!(mounts[0].source.as_deref(), Some("/srv/uploads/data.csv"));
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(host.binds, Some(Vec::new()));
    }

    #[test]
    fn resources_are_limited_with_no_swap() {
        let host = host();
        assert_eq!(host.memory, Some(256 * MIB as i64));
        assert_eq!(host.memory_swap, host.memory);
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.pids_limit, Some(64));
        let ulimits: Vec<_> =
            host.ulimits.unwrap().into_iter().map(|u| (u.name.unwrap(), u.soft.unwrap(), u.hard.unwrap())).collect();
        assert_eq!(
            ulimits,
            [("nofile".into(), 256, 256), ("fsize".into(), 32 * MIB as i64, 32 * MIB as i64), ("core".into(), 0, 0)]
        );
    }

    #[test]
    fn the_supervisor_is_pid_1_with_no_init_beside_it() {
        assert_eq!(host().init, Some(false));
    }

    #[test]
    fn programs_arrive_on_stdin_and_output_is_not_logged_to_disk() {
        let body = body();
        assert_eq!((body.open_stdin, body.stdin_once, body.tty), (Some(true), Some(true), Some(false)));
        assert_eq!(body.cmd.unwrap(), ["/usr/bin/python3", "-u", "/opt/tracebox/supervise.py", "python"]);
        assert_eq!(host().log_config.unwrap().typ.as_deref(), Some("none"));
    }

    #[test]
    fn the_supervisor_gets_its_settings_and_no_program_environment() {
        let env = body().env.unwrap();
        assert!(env.contains(&"TRACEBOX_MODE=fresh".to_owned()));
        assert!(env.contains(&"TRACEBOX_MAX_RUNS=1".to_owned()));
        assert!(env.iter().all(|v| v.starts_with("TRACEBOX_")), "{env:?}");
    }

    #[test]
    fn containers_are_labelled_for_the_sweeper() {
        let labels = body().labels.unwrap();
        assert_eq!(labels[LABEL_INSTANCE], "inst");
        assert_eq!(labels[LABEL_BOOT], "boot");
        assert_eq!(labels[LABEL_TRACE], "trace-1");
    }

    #[test]
    fn a_profile_is_what_a_container_is_made_for() {
        let recycled = Profile { isolation: Isolation::Recycle, tenant: Some("acme".into()), ..profile() };
        assert_eq!(recycled.name(), "python-recycle-acme");
        assert_eq!(profile().name(), "python");
        assert_eq!(profile().millicpus, 500);
        let limits =
            RunLimits { timeout: Duration::from_secs(1), memory_bytes: 1, cpus: 1.0, pids: 8, output_bytes: 1 };
        assert_eq!(
            Profile::of(Language::Node, &limits, Isolation::Recycle, None).tenant.as_deref(),
            Some(DEFAULT_TENANT)
        );
    }
}
