//! The one function that owns every security setting of a sandbox container.
//!
//! Each line here is a guarantee written in the README's security table and proved by a test
//! against the real engine; change them together.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountBindOptions, MountBindOptionsPropagationEnum,
    MountType, ResourcesUlimits,
};

use crate::config::Config;
use crate::execution::{InputFile, Language, RunLimits};

const MIB: u64 = 1024 * 1024;

/// The uid and gid user code runs as: the image's `sandbox` user, never root.
pub const SANDBOX_USER: &str = "1000:1000";

/// Labels that mark a container as tracebox's, for the sweeper.
pub const LABEL: &str = "tracebox";
pub const LABEL_INSTANCE: &str = "tracebox.instance";
pub const LABEL_BOOT: &str = "tracebox.boot";
pub const LABEL_TRACE: &str = "tracebox.trace";

/// Container settings that come from the server's configuration, the same for every run.
#[derive(Debug, Clone)]
pub struct ContainerSettings {
    pub image: String,
    pub nofile: u64,
    pub file_size_bytes: u64,
    pub tmp_size_mb: u64,
    pub workspace_size_mb: u64,
    /// Which data directory's server made the container (see `TraceStore::instance_id`).
    pub instance_id: String,
    /// Which start of that server made it.
    pub boot_id: String,
}

impl ContainerSettings {
    pub fn from_config(config: &Config, instance_id: &str, boot_id: &str) -> ContainerSettings {
        ContainerSettings {
            image: config.image.clone(),
            nofile: config.nofile_limit,
            file_size_bytes: config.file_size_limit_mb * MIB,
            tmp_size_mb: config.tmp_size_mb,
            workspace_size_mb: config.workspace_size_mb,
            instance_id: instance_id.to_owned(),
            boot_id: boot_id.to_owned(),
        }
    }
}

/// What one container is for.
pub struct ContainerJob<'a> {
    pub trace_id: &'a str,
    pub language: Language,
    pub env: &'a BTreeMap<String, String>,
    pub limits: &'a RunLimits,
    pub files: &'a [InputFile],
    /// Random per container: the supervisor's end line carries it (see `end::EndScanner`).
    pub marker: &'a str,
}

/// How long after its timeout a container kills itself, should tracebox not be there to do it
/// (a crash, a killed `tracebox run`).
const BACKSTOP_GRACE_SECS: u64 = 5;

/// The command of a container: the supervisor (`sandbox/supervise.sh`), which runs the runner
/// under a `timeout` of its own, then reports the end behind `marker` with the artifacts.
/// Interpreters by absolute path, so a request's `PATH` cannot break it.
fn command(language: Language, limits: &RunLimits, marker: &str) -> Vec<String> {
    let backstop = format!("{}s", limits.timeout.as_secs() + 1 + BACKSTOP_GRACE_SECS);
    let runner: &[&str] = match language {
        Language::Python => &["/usr/bin/python3", "-u", "/opt/tracebox/runner.py"],
        Language::Node => &["/usr/bin/node", "/opt/tracebox/runner.js"],
    };
    ["/bin/sh", "/opt/tracebox/supervise.sh", marker, backstop.as_str()]
        .iter()
        .chain(runner)
        .map(|s| (*s).to_owned())
        .collect()
}

/// The hardened container for one job.
pub fn container_body(settings: &ContainerSettings, job: &ContainerJob) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(settings.image.clone()),
        cmd: Some(command(job.language, job.limits, job.marker)),
        user: Some(SANDBOX_USER.to_owned()),
        working_dir: Some("/workspace".to_owned()),
        hostname: Some("sandbox".to_owned()),
        env: Some(job.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        // The program arrives on stdin, which closes when the whole program was sent.
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        // No network at all: no interface but loopback, no route out (and a faster start
        // than network mode `none` alone).
        network_disabled: Some(true),
        labels: Some(HashMap::from([
            (LABEL.to_owned(), "1".to_owned()),
            (LABEL_INSTANCE.to_owned(), settings.instance_id.clone()),
            (LABEL_BOOT.to_owned(), settings.boot_id.clone()),
            (LABEL_TRACE.to_owned(), job.trace_id.to_owned()),
        ])),
        host_config: Some(host_config(settings, job.limits, job.files)),
        ..ContainerCreateBody::default()
    }
}

fn host_config(settings: &ContainerSettings, limits: &RunLimits, files: &[InputFile]) -> HostConfig {
    let memory = i64::try_from(limits.memory_bytes).unwrap_or(i64::MAX);
    let ulimit = |name: &str, value: u64| {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        ResourcesUlimits { name: Some(name.to_owned()), soft: Some(value), hard: Some(value) }
    };
    HostConfig {
        network_mode: Some("none".to_owned()),
        // No way to gain privileges: no capabilities, no setuid escalation, no privileged mode.
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        privileged: Some(false),
        // Nothing of the image can be changed; only the two size-capped tmpfs are writable.
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([
            ("/tmp".to_owned(), format!("rw,nosuid,nodev,noexec,size={}m,mode=1777", settings.tmp_size_mb)),
            (
                "/workspace".to_owned(),
                format!("rw,nosuid,nodev,size={}m,uid=1000,gid=1000,mode=0755", settings.workspace_size_mb),
            ),
        ])),
        // An init as PID 1 reaps zombies and forwards signals.
        init: Some(true),
        // Resources: memory with no swap on top, CPU quota, process count, files.
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some((limits.cpus * 1e9) as i64),
        pids_limit: Some(limits.pids),
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
    use std::time::Duration;

    fn body() -> ContainerCreateBody {
        body_with(&[])
    }

    fn body_with(files: &[InputFile]) -> ContainerCreateBody {
        let settings = ContainerSettings {
            image: "tracebox-sandbox:test".into(),
            nofile: 256,
            file_size_bytes: 32 * MIB,
            tmp_size_mb: 64,
            workspace_size_mb: 16,
            instance_id: "inst".into(),
            boot_id: "boot".into(),
        };
        let limits = RunLimits {
            timeout: Duration::from_secs(10),
            memory_bytes: 256 * MIB,
            cpus: 0.5,
            pids: 64,
            output_bytes: MIB,
        };
        let env = BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]);
        let job = ContainerJob {
            trace_id: "trace-1",
            language: Language::Python,
            env: &env,
            limits: &limits,
            files,
            marker: "m4rk3r",
        };
        container_body(&settings, &job)
    }

    fn host() -> HostConfig {
        body().host_config.unwrap()
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
    fn an_init_reaps_zombies() {
        assert_eq!(host().init, Some(true));
    }

    #[test]
    fn the_program_arrives_on_stdin_and_output_is_not_logged_to_disk() {
        let body = body();
        assert_eq!((body.open_stdin, body.stdin_once, body.tty), (Some(true), Some(true), Some(false)));
        assert_eq!(body.cmd.unwrap()[6], "/opt/tracebox/runner.py");
        assert_eq!(host().log_config.unwrap().typ.as_deref(), Some("none"));
    }

    #[test]
    fn the_supervisor_kills_the_program_soon_after_its_timeout_and_finds_its_interpreter_by_path() {
        let cmd = body().cmd.unwrap();
        assert_eq!(cmd[..5], ["/bin/sh", "/opt/tracebox/supervise.sh", "m4rk3r", "16s", "/usr/bin/python3"]);
    }

    #[test]
    fn containers_are_labelled_for_the_sweeper() {
        let labels = body().labels.unwrap();
        assert_eq!(labels[LABEL_INSTANCE], "inst");
        assert_eq!(labels[LABEL_BOOT], "boot");
        assert_eq!(labels[LABEL_TRACE], "trace-1");
        assert!(body().env.unwrap().contains(&"GREETING=hi".to_owned()));
    }
}
