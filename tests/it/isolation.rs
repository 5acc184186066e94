//! The container's guarantees, each proved against the real engine with the policy switched
//! off, so that nothing but the container stands between the code and the host.

use std::process::Command;

use tokio::io::AsyncReadExt;

use crate::common::{TestServer, unscreened_server};

async fn stdout_of(server: &TestServer, code: &str) -> String {
    let reply = server.run("python", code).await;
    assert_eq!(reply["status"], "success", "{reply}");
    reply["stdout"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn code_runs_as_an_unprivileged_user_with_no_capabilities() {
    let server = unscreened_server().await;
    let out = stdout_of(
        &server,
        // no_new_privs asked of the kernel (PR_GET_NO_NEW_PRIVS): gVisor's /proc/self/status has
        // no NoNewPrivs line.
        "import ctypes, os\nfields = dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\nprint(os.getuid(), os.getgid(), fields['CapEff'].strip(), fields['CapPrm'].strip(), ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))",
    )
    .await;
    assert_eq!(out, "1000 1000 0000000000000000 0000000000000000 1\n");
}

#[tokio::test]
async fn the_root_filesystem_is_read_only_and_only_tmp_and_workspace_are_writable() {
    let server = unscreened_server().await;
    let out = stdout_of(
        &server,
        r#"
import os
def writable(path):
    try:
        with open(os.path.join(path, 'probe'), 'w') as f:
            f.write('x')
        return 'writable'
    except OSError as e:
        return f'errno {e.errno}'
for path in ['/', '/etc', '/usr', '/opt/tracebox', '/var/tmp', '/tmp', '/workspace']:
    print(path, writable(path))
print('root mounted', [l.split()[3].split(',')[0] for l in open('/proc/self/mounts') if l.split()[1] == '/'])
"#,
    )
    .await;
    // /var/tmp is the image's own world-writable folder: only the read-only root stops a write
    // there, whatever the runtime. In the folders root owns, Linux reports the read-only mount
    // (EROFS, 30) first; gVisor checks the permission first (EACCES, 13): refused either way.
    let root_owned = if crate::common::gvisor() { 13 } else { 30 };
    let expected = format!(
        "/ errno {root_owned}\n/etc errno {root_owned}\n/usr errno {root_owned}\n/opt/tracebox errno {root_owned}\n\
         /var/tmp errno 30\n/tmp writable\n/workspace writable\nroot mounted ['ro']\n"
    );
    assert_eq!(out, expected, "errno 30 is EROFS, 13 EACCES (runtime {})", crate::common::runtime());
}

#[tokio::test]
async fn tmp_and_dev_shm_are_size_capped_and_not_executable() {
    let server =
        TestServer::spawn_with(&[("TRACEBOX_POLICY", &crate::common::empty_policy()), ("TRACEBOX_TMP_SIZE_MB", "8")])
            .await;
    for dir in ["/tmp", "/dev/shm"] {
        let code = r#"
import os, stat
written = 0
try:
    with open('DIR/fill', 'wb') as f:
        for _ in range(64):
            f.write(b'\0' * (1 << 20)); f.flush(); written += 1
except OSError as e:
    print('full after', written, 'MiB, errno', e.errno)
os.remove('DIR/fill')
with open('DIR/run.sh', 'w') as f:
    f.write('#!/bin/sh\necho ran\n')
os.chmod('DIR/run.sh', 0o755)
try:
    os.execv('DIR/run.sh', ['DIR/run.sh'])
except PermissionError as e:
    print('exec refused, errno', e.errno)
"#;
        let out = stdout_of(&server, &code.replace("DIR", dir)).await;
        assert!(out.starts_with("full after ") && out.contains("errno 28"), "{dir}: ENOSPC near 8 MiB: {out}");
        let mib: u32 = out.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!(mib <= 8, "{dir}: {out}");
        assert!(out.ends_with("exec refused, errno 13\n"), "{dir}: {out}");
    }
}

/// The host's address on Docker's default bridge, where an ordinary container reaches the host.
fn bridge_gateway() -> String {
    let output = Command::new("ip").args(["-4", "-o", "addr", "show", "docker0"]).output().expect("ip runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let cidr = text.split_whitespace().skip_while(|w| *w != "inet").nth(1).expect("docker0 has an IPv4 address");
    cidr.split('/').next().unwrap().to_owned()
}

/// A probe that tries a TCP connection and a DNS query to listeners of this test on the host.
fn network_probe(host: &str, tcp_port: u16, dns_port: u16) -> String {
    format!(
        r#"
import os, socket
print('interfaces', sorted(os.listdir('/sys/class/net')))
print('routes', len(open('/proc/net/route').read().strip().splitlines()) - 1)
try:
    socket.create_connection(('{host}', {tcp_port}), timeout=3)
    print('tcp connected')
except OSError as e:
    print('tcp failed', e.errno)
query = b'\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07tracebox\x04test\x00\x00\x01\x00\x01'
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.settimeout(3)
try:
    udp.sendto(query, ('{host}', {dns_port}))
    udp.recvfrom(512)
    print('dns answered')
except OSError as e:
    print('dns failed', e.errno)
"#
    )
}

#[tokio::test]
async fn there_is_no_network_tcp_and_dns_fail() {
    let server = unscreened_server().await;
    let host = bridge_gateway();
    let tcp = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let dns = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
    let (tcp_port, dns_port) = (tcp.local_addr().unwrap().port(), dns.local_addr().unwrap().port());
    let probe = network_probe(&host, tcp_port, dns_port);

    // Control: an ordinary container reaches both listeners, so the probe can tell.
    let image = std::env::var("TRACEBOX_IMAGE").unwrap_or_else(|_| "tracebox-sandbox:latest".into());
    let answer = tokio::spawn(async move {
        let mut buffer = [0u8; 512];
        let (_, from) = dns.recv_from(&mut buffer).await.unwrap();
        dns.send_to(b"\x12\x34\x81\x80", from).await.unwrap();
        dns
    });
    let accept = tokio::spawn(async move {
        let (mut socket, _) = tcp.accept().await.unwrap();
        let _ = socket.read(&mut [0u8; 1]).await;
        tcp
    });
    let control = tokio::process::Command::new("docker")
        .args(["run", "--rm", "--entrypoint", "python3", &image, "-c", &probe])
        .output()
        .await
        .expect("docker run");
    let control = String::from_utf8_lossy(&control.stdout);
    assert!(control.contains("tcp connected") && control.contains("dns answered"), "control run: {control}");
    let (tcp, dns) = (accept.await.unwrap(), answer.await.unwrap());

    // The sandbox: only loopback, no route, and both attempts fail at once.
    let out = stdout_of(&server, &probe).await;
    assert!(out.starts_with("interfaces ['lo']\nroutes 0\n"), "{out}");
    // Linux finds no route (ENETUNREACH, 101); gVisor's netstack, turned off by --network=none,
    // no host (EHOSTUNREACH, 113). Either fails at once.
    let errno = if crate::common::gvisor() { 113 } else { 101 };
    assert!(
        out.contains(&format!("tcp failed {errno}")) && out.contains(&format!("dns failed {errno}")),
        "runtime {}: errno {errno} (101 ENETUNREACH, 113 EHOSTUNREACH): {out}",
        crate::common::runtime()
    );
    // And nothing arrived at the listeners.
    let mut buffer = [0u8; 512];
    assert!(dns.try_recv_from(&mut buffer).is_err(), "the DNS listener got a packet from the sandbox");
    let accepted = tokio::time::timeout(std::time::Duration::from_millis(200), tcp.accept()).await;
    assert!(accepted.is_err(), "the TCP listener got a connection from the sandbox");
}

#[tokio::test]
async fn processes_and_open_files_are_limited() {
    // Under gVisor the host's pids limit counts gVisor's own threads too (about 50 for the
    // sandbox at rest), so tracebox refuses a limit under 64 there (src/config.rs).
    let limit = if crate::common::gvisor() { "64" } else { "32" };
    let server =
        TestServer::spawn_with(&[("TRACEBOX_POLICY", &crate::common::empty_policy()), ("TRACEBOX_PIDS_LIMIT", limit)])
            .await;
    let out = stdout_of(
        &server,
        "import resource, threading, time\nprint(resource.getrlimit(resource.RLIMIT_NOFILE))\nn = 0\ntry:\n    while n < 500:\n        threading.Thread(target=time.sleep, args=(5,), daemon=True).start(); n += 1\nexcept RuntimeError:\n    pass\nprint(n)",
    )
    .await;
    let (nofile, threads) = out.split_once('\n').unwrap();
    assert_eq!(nofile, "(256, 256)");
    let threads: u32 = threads.trim().parse().unwrap();
    if crate::common::gvisor() {
        // gVisor runs a program's threads in its own kernel, not as host tasks: the pids limit
        // does not count them (memory bounds them); processes it does (a_fork_bomb_is_contained…).
        assert_eq!(threads, 500, "runsc: threads are not host tasks: {out}");
    } else {
        assert!(threads < 32, "runc: the pids limit bounds threads: {out}");
    }
}

#[tokio::test]
async fn the_docker_socket_and_host_files_are_not_reachable() {
    let server = unscreened_server().await;
    let out = stdout_of(
        &server,
        "import os\nprint(os.path.exists('/var/run/docker.sock'), os.path.exists('/run/docker.sock'))\nmounts = open('/proc/self/mounts').read()\nprint('docker.sock' in mounts, sorted(l.split()[1] for l in mounts.splitlines() if l.split()[2] == 'tmpfs' and l.split()[1] in ('/tmp', '/workspace')))",
    )
    .await;
    assert_eq!(out, "False False\nFalse ['/tmp', '/workspace']\n");
}

#[tokio::test]
async fn orphans_are_reaped_by_the_supervisor_as_pid_1() {
    let server = unscreened_server().await;
    let out = stdout_of(
        &server,
        r#"
import os, time
print(open('/proc/1/cmdline').read().split('\0')[2])
for _ in range(5):
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:
            time.sleep(0.2)
            os._exit(0)
        os._exit(0)
    os.waitpid(pid, 0)
time.sleep(0.8)
states = [open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0] for p in os.listdir('/proc') if p.isdigit()]
print('zombies', states.count('Z'))
"#,
    )
    .await;
    let (init, zombies) = out.split_once('\n').unwrap();
    assert_eq!(init, "/opt/tracebox/supervise.py", "PID 1 is the supervisor, no init of the sandbox user: {out}");
    assert_eq!(zombies, "zombies 0\n");
}

#[tokio::test]
async fn cpu_and_memory_are_capped_by_the_kernel_with_no_swap() {
    let server = TestServer::spawn_with(&[("TRACEBOX_CPUS", "0.5")]).await;
    let (status, reply) = server
        .execute(serde_json::json!({"code": r#"
import os
def read(*paths):
    for path in paths:
        if os.path.exists(path):
            return open(path).read().split()
v2 = os.path.exists('/sys/fs/cgroup/cgroup.controllers')
if v2:
    quota, period = read('/sys/fs/cgroup/cpu.max')
    memory = read('/sys/fs/cgroup/memory.max')[0]
    swap = read('/sys/fs/cgroup/memory.swap.max')
    swap = '0' if swap is None else swap[0]
else:
    quota = read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us', '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us')[0]
    period = read('/sys/fs/cgroup/cpu/cpu.cfs_period_us', '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us')[0]
    memory = read('/sys/fs/cgroup/memory/memory.limit_in_bytes')[0]
    memsw = read('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes')
    # memory+swap equal to memory means no swap; no swap accounting means the host has none to give.
    swap = '0' if memsw is None else str(int(memsw[0]) - int(memory))
print(int(quota) / int(period), int(memory) // (1024 * 1024), swap)
"#, "memory_mb": 96}))
        .await;
    assert_eq!(status, 200, "{reply}");
    if crate::common::gvisor() {
        // gVisor shows its programs no cgroup files (the limits are on the host's cgroup of the
        // whole sandbox, read below), and the memory limit as the machine's memory.
        let out = stdout_of(
            &server,
            "import os\nprint(os.listdir('/sys/fs/cgroup'), open('/proc/meminfo').readline().split()[1])",
        )
        .await;
        assert_eq!(out, format!("[] {}\n", 256 * 1024), "runsc: the default 256 MiB as MemTotal, in KiB");
    } else {
        assert_eq!(reply["stdout"], "0.5 96 0\n", "{reply}");
    }
    // From the host, under every runtime: the cgroup the container's processes are in.
    let instance = server.instance_id().await;
    let sleeper =
        server.execute(serde_json::json!({"code": "import time\ntime.sleep(30)", "memory_mb": 96, "timeout": 30}));
    let look = async {
        let mut containers = Vec::new();
        crate::common::eventually("the sleeper's container runs", || {
            containers = crate::common::containers_of(&instance);
            !containers.is_empty() && host_cgroup_limits(&containers[0]).is_some()
        })
        .await;
        let limits = host_cgroup_limits(&containers[0]).unwrap();
        Command::new("docker").args(["kill", &containers[0]]).output().unwrap();
        limits
    };
    let (_, limits) = tokio::join!(sleeper, look);
    assert_eq!(limits, (0.5, 96 * 1024 * 1024, 96 * 1024 * 1024), "runtime {}", crate::common::runtime());
}

/// The CPU quota (in CPUs), memory limit and memory+swap limit of `container`'s cgroup on the
/// host, as the kernel enforces them; None until its process runs.
fn host_cgroup_limits(container: &str) -> Option<(f64, u64, u64)> {
    let pid = Command::new("docker").args(["inspect", "-f", "{{.State.Pid}}", container]).output().ok()?;
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_owned();
    if pid.is_empty() || pid == "0" {
        return None;
    }
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let read = |path: String| std::fs::read_to_string(path).ok().map(|text| text.trim().to_owned());
    let number = |text: Option<String>| text.and_then(|t| t.parse::<u64>().ok());
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let path = cgroups.lines().find_map(|line| line.strip_prefix("0::"))?;
        let dir = format!("/sys/fs/cgroup{path}");
        let cpu = read(format!("{dir}/cpu.max"))?;
        let (quota, period) = cpu.split_once(' ')?;
        let memory = number(read(format!("{dir}/memory.max")))?;
        let swap = number(read(format!("{dir}/memory.swap.max"))).unwrap_or(0);
        return Some((quota.parse::<f64>().ok()? / period.parse::<f64>().ok()?, memory, memory + swap));
    }
    let dir = |controller: &str| {
        cgroups.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            controllers.split(',').any(|c| c == controller).then(|| format!("/sys/fs/cgroup/{controllers}{path}"))
        })
    };
    let (cpu, memory) = (dir("cpu")?, dir("memory")?);
    let quota = number(read(format!("{cpu}/cpu.cfs_quota_us")))? as f64;
    let period = number(read(format!("{cpu}/cpu.cfs_period_us")))? as f64;
    let limit = number(read(format!("{memory}/memory.limit_in_bytes")))?;
    // Without swap accounting the host has no swap to give: memory+swap is memory.
    let with_swap = number(read(format!("{memory}/memory.memsw.limit_in_bytes"))).unwrap_or(limit);
    Some((quota / period, limit, with_swap))
}
