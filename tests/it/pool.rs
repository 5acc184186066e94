//! The warm pool: started containers waiting for programs. Fresh ones serve one run each;
//! recycled ones serve runs of one tenant, wiped between them. The pool refills, replaces dead
//! containers, answers 503 when it has none in time, and leaves nothing behind.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::pool::{
    container_exists, container_of, eventually_ready, idle, pool, pooled, recycles, unscreened_recycler, wait_idle,
};
use crate::common::{TestServer, containers_labelled, containers_of, eventually, gvisor, patience, runtime};

#[tokio::test]
async fn a_warm_pool_is_ready_at_start_and_refills_after_each_run() {
    let server = pooled(&[]).await;
    let state = pool(&server).await;
    assert_eq!((idle(&state, "python"), idle(&state, "node")), (2, 2), "warmed before the server listens: {state}");
    for language in ["python", "node"] {
        let code = if language == "python" { "print(6 * 7)" } else { "console.log(6 * 7)" };
        let reply = server.run(language, code).await;
        assert_eq!(reply["stdout"], "42\n", "{reply}");
        container_of(&server, &reply).await;
        wait_idle(&server, language, 2).await;
    }
    let state = pool(&server).await;
    assert!(state["taken"].as_u64().unwrap() >= 2 && state["started"].as_u64().unwrap() >= 6, "{state}");
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tracebox_pool_idle{profile=\"python\"} 2"), "{metrics}");
    assert!(metrics.contains("# TYPE tracebox_pool_taken_total counter"), "{metrics}");
}

#[tokio::test]
async fn a_fresh_run_never_gets_a_container_another_run_used() {
    let server = pooled(&[]).await;
    let code = "import os\nseen = os.path.exists('/tmp/marker')\nopen('/tmp/marker', 'w').write('x')\nprint(seen)";
    let mut containers = Vec::new();
    for _ in 0..4 {
        let reply = server.run("python", code).await;
        assert_eq!(reply["stdout"], "False\n", "a marker of an earlier run is never there: {reply}");
        containers.push(container_of(&server, &reply).await);
    }
    containers.sort();
    containers.dedup();
    assert_eq!(containers.len(), 4, "four runs, four containers");
    for name in &containers {
        eventually("a used container is removed", || !container_exists(name)).await;
    }
}

#[tokio::test]
async fn a_recycled_container_keeps_no_process_or_file_of_the_run_before() {
    let server = unscreened_recycler().await;
    // Files where the wipe must work for them: in a directory locked shut, in a read-only one.
    let first = r#"
import os, subprocess
open('/workspace/left.txt', 'w').write('x')
open('/tmp/left', 'w').write('y')
open('/dev/shm/left', 'w').write('s')
for top, mode in (('/workspace/locked', 0o000), ('/tmp/readonly', 0o500)):
    os.makedirs(top + '/deep')
    open(top + '/deep/file', 'w').write('z')
    os.chmod(top + '/deep', mode)
    os.chmod(top, mode)
os.symlink('/etc/passwd', '/workspace/link')
subprocess.Popen(['sleep', '600'])
print('left things behind')
"#;
    let reply = server.run("python", first).await;
    assert_eq!(reply["stdout"], "left things behind\n", "{reply}");
    let container = container_of(&server, &reply).await;
    eventually_ready(&server, "python-recycle-default").await;
    let second = r#"
import os
names = sorted(os.listdir('/workspace')) + sorted(os.listdir('/tmp')) + sorted(os.listdir('/dev/shm'))
others = [open(f'/proc/{p}/cmdline').read().replace('\0', ' ').strip() for p in os.listdir('/proc')
          if p.isdigit() and int(p) not in (1, os.getpid(), os.getppid())]
print(names, [c for c in others if 'sleep' in c])
"#;
    let reply = server.run("python", second).await;
    assert_eq!(reply["stdout"], "['main.py'] []\n", "only its own program, and no sleeper: {reply}");
    let same = container_of(&server, &reply).await == container;
    assert_eq!(same, recycles(), "runtime {}: the same container served both (runsc: one run each)", runtime());
}

#[tokio::test]
async fn a_recycled_container_where_a_run_left_sysv_ipc_serves_no_other() {
    let server = unscreened_recycler().await;
    // A SysV shared memory segment outlives its process, and only shmctl removes it.
    let code = "import ctypes\nlibc = ctypes.CDLL(None)\nprint(libc.shmget(0, 4096, 0o1600) >= 0)";
    let reply = server.run("python", code).await;
    assert_eq!(reply["stdout"], "True\n", "{reply}");
    let first = container_of(&server, &reply).await;
    eventually_ready(&server, "python-recycle-default").await;
    // Counted by shmctl(SHM_INFO), as the supervisor counts them: gVisor has no /proc/sysvipc.
    let count = "import ctypes\ninfo = ctypes.create_string_buffer(128)\nassert ctypes.CDLL(None).shmctl(0, 14, info) >= 0\nprint(ctypes.c_int.from_buffer(info).value)";
    let reply = server.run("python", count).await;
    assert_eq!(reply["stdout"], "0\n", "no segment: {reply}");
    assert_ne!(container_of(&server, &reply).await, first, "the segment's container was not reused");
}

#[tokio::test]
async fn tenants_get_containers_of_their_own_and_recycle_is_asked_for_only_where_allowed() {
    let strict = pooled(&[]).await;
    let (status, reply) = strict.execute(json!({"code": "print(1)", "isolation": "recycle"})).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error"]["code"], "invalid_isolation");
    assert!(reply["error"]["message"].as_str().unwrap().contains("TRACEBOX_RECYCLE_ALLOWED"));

    let server = pooled(&[("TRACEBOX_RECYCLE_ALLOWED", "true")]).await;
    let run = |tenant: &'static str| {
        let server = &server;
        async move {
            let (status, reply) = server
                .execute(json!({"code": "import os\nprint(os.path.exists('/workspace/x'))\nopen('/workspace/x', 'w')", "isolation": "recycle", "tenant": tenant}))
                .await;
            assert_eq!(status, 200, "{reply}");
            assert_eq!(reply["stdout"], "False\n", "wiped between runs, whoever ran before: {reply}");
            container_of(server, &reply).await
        }
    };
    let acme = run("acme").await;
    if recycles() {
        eventually_ready(&server, "python-recycle-acme").await;
        assert_eq!(run("acme").await, acme, "acme's container served acme again");
    } else {
        assert_ne!(run("acme").await, acme, "runsc: a recycled container serves one run");
    }
    assert_ne!(run("globex").await, acme, "another tenant never gets it");
}

#[tokio::test]
async fn a_container_killed_from_outside_is_replaced_and_no_run_gets_it() {
    let server = pooled(&[]).await;
    let instance = server.instance_id().await;
    wait_idle(&server, "python", 2).await;
    let warm = containers_labelled(&format!("tracebox.instance={instance}"));
    let killed = Command::new("docker").args(["kill"]).args(&warm).output().unwrap();
    assert!(killed.status.success(), "{killed:?}");
    // Docker may not have closed a killed container's stream yet when a run takes it: then the
    // program never started, and the run says so with a 503 to send it again, never a result.
    let body = json!({"code": "print('still served')"});
    let (mut status, mut reply) = server.execute(body.clone()).await;
    for _ in 0..warm.len() {
        if status != 503 {
            break;
        }
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains("stopped before it took the program"), "{reply}");
        (status, reply) = server.execute(body.clone()).await;
    }
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        (reply["status"].as_str(), reply["stdout"].as_str()),
        (Some("success"), Some("still served\n")),
        "{reply}"
    );
    wait_idle(&server, "python", 2).await;
    wait_idle(&server, "node", 2).await;
    assert!(pool(&server).await["discarded"].as_u64().unwrap() >= 1, "the dead ones were noticed");
}

#[tokio::test]
async fn an_empty_pool_answers_503_with_retry_after_once_the_queue_timeout_passed() {
    // An image of this test's own: untagged once the pool is warm, so no refill can start.
    let image = format!("tracebox-pool-test-{}:latest", uuid::Uuid::new_v4().simple());
    let tagged = Command::new("docker").args(["tag", "tracebox-sandbox:latest", &image]).status().unwrap();
    assert!(tagged.success());
    let server = TestServer::spawn_with(&[
        ("TRACEBOX_POOL_SIZE", "1"),
        ("TRACEBOX_IMAGE", &image),
        ("TRACEBOX_QUEUE_TIMEOUT_SECS", "1"),
    ])
    .await;
    wait_idle(&server, "python", 1).await;
    assert!(Command::new("docker").args(["rmi", &image]).status().unwrap().success());
    let reply = server.run("python", "print('the warm one')").await;
    assert_eq!(reply["stdout"], "the warm one\n", "{reply}");
    let started = std::time::Instant::now();
    let response = server.client.post(server.url("/execute")).json(&json!({"code": "print(1)"})).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(started.elapsed() >= Duration::from_millis(900), "it waited the queue timeout first");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("TRACEBOX_QUEUE_TIMEOUT_SECS") && message.contains("the last start failed"), "{message}");
    let trace = server.trace(body["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["status"], "internal_error", "the refused run is traced");
}

#[tokio::test]
async fn runs_in_warm_containers_behave_as_in_containers_made_for_them() {
    let server = pooled(&[]).await;
    let (_, reply) = server
        .execute(json!({"code": "import os, sys\nprint(os.environ['GREETING'], sys.stdin.read())", "stdin": "ada", "env": {"GREETING": "hi"}}))
        .await;
    assert_eq!(reply["stdout"], "hi ada\n", "env and stdin reach a warm container's program: {reply}");
    let (_, reply) =
        server.execute(json!({"code": "import time\nprint('early', flush=True)\ntime.sleep(30)", "timeout": 1})).await;
    assert_eq!((reply["status"].as_str(), reply["stdout"].as_str()), (Some("timeout"), Some("early\n")), "{reply}");
    let (_, reply) = server.execute(json!({"code": "x = bytearray(512 * 1024 * 1024)", "memory_mb": 256})).await;
    crate::common::assert_ended_for_memory(&reply);
    let (_, reply) = server.execute(json!({"code": "print('x' * 2_000_000)"})).await;
    assert_eq!((reply["status"].as_str(), reply["truncated"].as_bool()), (Some("output_limit"), Some(true)));
    let (_, reply) = server
        .execute(json!({"language": "node", "code": "import fs from 'fs';\nfs.mkdirSync('out');\nfs.writeFileSync('out/a.txt', 'node');\nawait Promise.resolve();\nconsole.log('esm')"}))
        .await;
    assert_eq!(reply["artifacts"][0]["name"], "out/a.txt", "{reply}");
    let (_, reply) = server.execute(json!({"code": "import sys\nsys.exit(7)"})).await;
    assert_eq!((reply["status"].as_str(), reply["exit_code"].as_i64()), (Some("error"), Some(7)));
    // A run with limits of its own gets a container made for it.
    let (_, reply) = server.execute(json!({"code": "print('own')", "memory_mb": 128})).await;
    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    let events: Vec<&str> = trace["events"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(events.contains(&"container.started") && !events.contains(&"pool.took"), "{events:?}");
}

#[tokio::test]
async fn a_shutdown_and_a_crash_leave_no_warm_container() {
    let mut server = pooled(&[]).await;
    let instance = server.instance_id().await;
    wait_idle(&server, "python", 2).await;
    wait_idle(&server, "node", 2).await;
    server.crash();
    assert_eq!(containers_of(&instance).len(), 4, "a crash cannot clean up: its warm containers stay");
    server.restart().await;
    wait_idle(&server, "python", 2).await;
    wait_idle(&server, "node", 2).await;
    assert_eq!(containers_of(&instance).len(), 4, "the next start swept the dead boot's and warmed its own");
    server.stop();
    assert!(containers_of(&instance).is_empty(), "a shutdown removes every warm container");
}

#[tokio::test]
async fn a_shutdown_during_a_run_on_a_warm_container_lets_it_finish_in_either_mode() {
    for (isolation, profile) in [("fresh", "python"), ("recycle", "python-recycle-default")] {
        let mut server = pooled(&[("TRACEBOX_ISOLATION", isolation)]).await;
        let instance = server.instance_id().await;
        wait_idle(&server, profile, 2).await;
        let (client, url) = (server.client.clone(), server.url("/execute"));
        let running = tokio::spawn(async move {
            client.post(url).json(&json!({"code": "import time\ntime.sleep(1)\nprint('done')"})).send().await
        });
        let deadline = tokio::time::Instant::now() + patience();
        while pool(&server).await["profiles"].as_array().unwrap().iter().all(|p| p["in_use"] == 0) {
            assert!(tokio::time::Instant::now() < deadline, "{isolation}: the run never took a warm container");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.stop();
        let reply = running.await.unwrap().expect("the in-flight run was answered");
        let reply: Value = reply.json().await.unwrap();
        assert_eq!(reply["stdout"], "done\n", "{isolation}: {reply}");
        assert!(containers_of(&instance).is_empty(), "{isolation}: the shutdown removed the run's and the warm ones");
    }
}

/// A program that tries to trace, stop and kill its supervisor (PID 1) and leaves a process
/// behind, to be there for the tenant's next run; then it ends by itself.
const LINGERER: &str = r#"
import ctypes, os, signal, time
traced = ctypes.CDLL(None).ptrace(16, 1, 0, 0) == 0  # PTRACE_ATTACH
for sig in (signal.SIGSTOP, signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
    os.kill(1, sig)
if os.fork() == 0:
    os.setsid()
    time.sleep(600)
time.sleep(0.2)
print('traced', traced, 'pid 1', open('/proc/1/cmdline', 'rb').read().split(b'\0')[2].decode())
"#;

const OTHERS: &str = r#"
import os
others = [open(f'/proc/{p}/cmdline').read().replace('\0', ' ').strip() for p in os.listdir('/proc')
          if p.isdigit() and int(p) not in (1, os.getpid(), os.getppid())]
print(others)
"#;

/// Every signal a program might send its supervisor that a handler could catch.
const CATCHABLE: &str = r#"
import ctypes, os, signal, time
traced = ctypes.CDLL(None).ptrace(16, 1, 0, 0) == 0  # PTRACE_ATTACH
for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGALRM, signal.SIGIO):
    os.kill(1, sig)
time.sleep(0.2)
print('traced', traced, 'pid 1', open('/proc/1/cmdline', 'rb').read().split(b'\0')[2].decode())
"#;

#[tokio::test]
async fn no_program_can_stop_its_supervisor_or_outlive_its_run() {
    let server = unscreened_recycler().await;
    // Linux drops a namespace's init's signals but those it handles; under gVisor the
    // supervisor ignores every signal it can.
    let reply = server.run("python", CATCHABLE).await;
    assert_eq!(
        (reply["status"].as_str(), reply["stdout"].as_str()),
        (Some("success"), Some("traced False pid 1 /opt/tracebox/supervise.py\n")),
        "the supervisor cannot be traced, nor ended by a signal it could catch: {reply}"
    );
    eventually_ready(&server, "python-recycle-default").await;
    let reply = server.run("python", LINGERER).await;
    let lingered = container_of(&server, &reply).await;
    if gvisor() {
        // gVisor does not spare its PID 1 SIGSTOP and SIGKILL, which no process can ignore: the
        // supervisor stops, then dies, and the container, the run and the lingerer with it.
        assert_eq!(
            (reply["status"].as_str(), reply["exit_code"].as_i64()),
            (Some("error"), Some(137)),
            "runsc: SIGKILL ends PID 1 and the container: {reply}"
        );
    } else {
        assert_eq!(
            (reply["status"].as_str(), reply["stdout"].as_str()),
            (Some("success"), Some("traced False pid 1 /opt/tracebox/supervise.py\n")),
            "the supervisor cannot be traced, stopped or killed, and the run ended by itself: {reply}"
        );
    }
    eventually_ready(&server, "python-recycle-default").await;
    let reply = server.run("python", OTHERS).await;
    assert_eq!(reply["stdout"], "[]\n", "nothing of the earlier runs is there: {reply}");
    let same = container_of(&server, &reply).await == lingered;
    assert_eq!(same, recycles(), "runtime {}: in the very container they ran in (runsc: a new one)", runtime());
    let (_, reply) = server.execute(json!({"code": "import time\ntime.sleep(600)", "timeout": 1})).await;
    assert_eq!(reply["status"], "timeout", "{reply}");
    let timed_out = container_of(&server, &reply).await;
    eventually_ready(&server, "python-recycle-default").await;
    let reply = server.run("python", OTHERS).await;
    assert_ne!(container_of(&server, &reply).await, timed_out, "a run that timed out ends its container");
}

/// What a program of the sandbox user can change in its supervisor, and a new program process
/// would inherit.
const SETTINGS: &str = r#"
import ctypes, os, platform, resource
ioprio_get = {'x86_64': 252, 'aarch64': 31}[platform.machine()]
ioprio = ctypes.CDLL(None).syscall(ioprio_get, 1, 0)  # IOPRIO_WHO_PROCESS, this process
print(resource.getrlimit(resource.RLIMIT_NOFILE), os.getpriority(os.PRIO_PROCESS, 0), sorted(os.sched_getaffinity(0)), ioprio)
"#;

/// ioprio_set(IOPRIO_WHO_PROCESS, 1, IOPRIO_CLASS_IDLE): PID 1's I/O priority, which every
/// process it starts would inherit.
const IOPRIO_OF_PID_1: &str = r#"
import ctypes, platform
ioprio_set = {'x86_64': 251, 'aarch64': 30}[platform.machine()]
assert ctypes.CDLL(None).syscall(ioprio_set, 1, 1, 3 << 13) == 0
"#;

#[tokio::test]
async fn a_program_that_changes_its_supervisors_limits_priorities_or_cpus_leaves_nothing_to_the_next_run() {
    let server = unscreened_recycler().await;
    let defaults = server.run("python", SETTINGS).await["stdout"].as_str().unwrap().to_owned();
    let mut changes = vec![
        "import resource\nresource.prlimit(1, resource.RLIMIT_NOFILE, (16, 16))",
        "import os\nos.setpriority(os.PRIO_PROCESS, 1, 19)",
        "import os\nos.sched_setaffinity(1, {0})",
    ];
    if gvisor() {
        // gVisor has no I/O priorities: ioprio_set is refused (EPERM), so there is none to leave.
        let refused = "import ctypes, platform\nlibc = ctypes.CDLL(None, use_errno=True)\nioprio_set = {'x86_64': 251, 'aarch64': 30}[platform.machine()]\nprint(libc.syscall(ioprio_set, 1, 1, 3 << 13), ctypes.get_errno())";
        let reply = server.run("python", refused).await;
        assert_eq!(reply["stdout"], "-1 1\n", "runsc: ioprio_set fails with EPERM: {reply}");
    } else {
        changes.push(IOPRIO_OF_PID_1);
    }
    for change in changes {
        eventually_ready(&server, "python-recycle-default").await;
        let reply = server.run("python", change).await;
        assert_eq!(reply["status"], "success", "{change}: {reply}");
        let changed = container_of(&server, &reply).await;
        eventually_ready(&server, "python-recycle-default").await;
        let reply = server.run("python", SETTINGS).await;
        assert_eq!(reply["stdout"], defaults, "{change}: the next run has the defaults: {reply}");
        assert_ne!(container_of(&server, &reply).await, changed, "{change}: its container served no other run");
    }
}

#[tokio::test]
async fn a_program_that_locks_the_workspace_itself_leaves_the_next_run_a_usable_one() {
    let server = unscreened_recycler().await;
    let lock = "import os\nos.remove('/workspace/main.py')\nos.makedirs('/workspace/out/deep')\nos.chmod('/workspace/out', 0)\nos.chmod('/workspace', 0o555)\nprint('locked')";
    let reply = server.run("python", lock).await;
    assert_eq!((reply["status"].as_str(), reply["stdout"].as_str()), (Some("success"), Some("locked\n")), "{reply}");
    eventually_ready(&server, "python-recycle-default").await;
    let look =
        "import os, stat\nprint(oct(stat.S_IMODE(os.stat('/workspace').st_mode)), sorted(os.listdir('/workspace')))";
    let reply = server.run("python", look).await;
    assert_eq!(
        (reply["status"].as_str(), reply["stdout"].as_str()),
        (Some("success"), Some("0o755 ['main.py']\n")),
        "the next run finds /workspace as a new container has it: {reply}"
    );
}

#[tokio::test]
async fn a_program_that_changes_its_stdout_flags_still_ends_whole_and_harms_no_next_run() {
    let server = unscreened_recycler().await;
    // Non-blocking (the next writes would fail), and asynchronous with its process group as
    // owner (every read of the pipe would send SIGIO, deadly by default, to the next program).
    let code = r#"
import fcntl, os, signal
signal.signal(signal.SIGIO, signal.SIG_IGN)  # this program itself is spared
os.makedirs('/workspace/out')
open('/workspace/out/a.txt', 'w').write('a' * 100000)
for fd in (1, 2):
    os.set_blocking(fd, False)
    fcntl.fcntl(fd, fcntl.F_SETOWN, -os.getpgid(0))
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
print('set')
"#;
    let reply = server.run("python", code).await;
    assert_eq!((reply["status"].as_str(), reply["stdout"].as_str()), (Some("success"), Some("set\n")), "{reply}");
    assert_eq!(reply["artifacts"][0]["size"], 100_000, "its END line and artifacts came whole: {reply}");
    let first = container_of(&server, &reply).await;
    eventually_ready(&server, "python-recycle-default").await;
    let reply = server.run("python", "print('x' * 200000)").await;
    let (status, stderr) = (&reply["status"], &reply["stderr"]);
    assert_eq!(
        reply["stdout"].as_str().map(str::len),
        Some(200_001),
        "the next run writes as usual: {status} {stderr}"
    );
    let same = container_of(&server, &reply).await == first;
    assert_eq!(same, recycles(), "runtime {}: the same container (runsc: one run each)", runtime());
}

#[tokio::test]
async fn a_shutdown_while_replacements_start_leaves_no_container() {
    let mut server = pooled(&[]).await;
    let instance = server.instance_id().await;
    // Two runs empty the python shelf: their replacements are starting when the server stops.
    let (a, b) = tokio::join!(server.run("python", "print(1)"), server.run("python", "print(2)"));
    assert_eq!((a["stdout"].as_str(), b["stdout"].as_str()), (Some("1\n"), Some("2\n")));
    let state = pool(&server).await;
    let starting = state["profiles"].as_array().unwrap().iter().map(|p| p["starting"].as_u64().unwrap()).sum::<u64>();
    assert!(starting > 0, "replacements are under way: {state}");
    server.stop();
    assert!(containers_of(&instance).is_empty(), "every container the pool was starting was removed");
}

#[tokio::test]
async fn a_tenants_second_run_gets_a_container_of_its_own_while_the_first_runs() {
    let server = pooled(&[("TRACEBOX_RECYCLE_ALLOWED", "true")]).await;
    let run = |code: &'static str| {
        let server = &server;
        async move {
            let (_, reply) =
                server.execute(json!({"code": code, "isolation": "recycle", "tenant": "acme", "timeout": 30})).await;
            (reply, std::time::Instant::now())
        }
    };
    let slow = run("import time\ntime.sleep(8)\nprint('slow')");
    let quick = async {
        // Once the slow run holds the tenant's container, the quick one asks.
        let deadline = tokio::time::Instant::now() + patience();
        while !pool(&server).await["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["profile"] == "python-recycle-acme" && p["in_use"] == 1)
        {
            assert!(tokio::time::Instant::now() < deadline, "the slow run never took a container");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        run("print('quick')").await
    };
    let ((slow, slow_done), (quick, quick_done)) = tokio::join!(slow, quick);
    assert_eq!((slow["stdout"].as_str(), quick["stdout"].as_str()), (Some("slow\n"), Some("quick\n")));
    assert!(quick_done < slow_done, "the second run did not wait for the first one's container");
}

#[tokio::test]
async fn containers_kept_for_named_tenants_stay_within_one_budget() {
    let server = pooled(&[("TRACEBOX_RECYCLE_ALLOWED", "true"), ("TRACEBOX_RECYCLE_MAX_IDLE", "2")]).await;
    for tenant in ["t1", "t2", "t3", "t4"] {
        let (status, reply) =
            server.execute(json!({"code": "print(1)", "isolation": "recycle", "tenant": tenant})).await;
        assert_eq!(status, 200, "{reply}");
        if recycles() {
            eventually_ready(&server, &format!("python-recycle-{tenant}")).await;
        }
    }
    let instance = server.instance_id().await;
    if !recycles() {
        // runsc: a recycled container serves one run, so none is kept for a tenant at all.
        eventually("only the stocked containers are left", || containers_of(&instance).len() == 4).await;
        let state = pool(&server).await;
        let kept = state["profiles"].as_array().unwrap().iter().any(|p| p["profile"].as_str().unwrap().contains("-t"));
        assert!(!kept, "runsc: no tenant's shelf: {state}");
        return;
    }
    let state = pool(&server).await;
    let tenants: Vec<(&str, u64)> = state["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["profile"].as_str().unwrap().starts_with("python-recycle-t"))
        .map(|p| (p["profile"].as_str().unwrap(), p["idle"].as_u64().unwrap()))
        .collect();
    assert_eq!(tenants, [("python-recycle-t3", 1), ("python-recycle-t4", 1)], "the longest-waiting went: {state}");
    eventually("the evicted containers are removed", || containers_of(&instance).len() == 4 + 2).await;
}

#[tokio::test]
async fn a_tenants_shelf_goes_once_its_container_aged_out() {
    let server = pooled(&[("TRACEBOX_RECYCLE_ALLOWED", "true"), ("TRACEBOX_POOL_MAX_AGE_SECS", "1")]).await;
    let (status, reply) = server.execute(json!({"code": "print(1)", "isolation": "recycle", "tenant": "brief"})).await;
    assert_eq!(status, 200, "{reply}");
    let names = |state: &Value| -> Vec<String> {
        state["profiles"].as_array().unwrap().iter().map(|p| p["profile"].as_str().unwrap().to_owned()).collect()
    };
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let state = pool(&server).await;
        if !names(&state).contains(&"python-recycle-brief".to_owned()) {
            assert!(names(&state).contains(&"python".to_owned()), "the stocked shelves stay: {state}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tenant's shelf stayed after its container aged out: {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sandbox containers of `server` (warm ones and those of its sandboxes), running or not.
fn sandbox_containers(instance: &str) -> Vec<String> {
    let output = Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter", &format!("label=tracebox.instance={instance}")])
        .args(["--filter", "label=tracebox.sandbox"])
        .output()
        .expect("docker ps runs");
    let mut ids: Vec<String> = String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_owned).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_default_sandbox_adopts_a_container_started_ahead_and_one_with_its_own_env_does_not() {
    let server = TestServer::spawn_with(&[("TRACEBOX_SANDBOX_POOL_SIZE", "1")]).await;
    let instance = server.instance_id().await;
    let mut waited = 0;
    loop {
        let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let idle =
            |language: &str| metrics.contains(&format!("tracebox_sandbox_pool_idle{{language=\"{language}\"}} 1"));
        if idle("python") && idle("node") {
            break;
        }
        waited += 1;
        assert!(waited < patience().as_secs() * 10, "no warm sandbox container per language in time: {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warm = sandbox_containers(&instance);
    assert_eq!(warm.len(), 2, "one warm sandbox container per language");

    let (status, default) = server.post_json("/sandboxes", json!({"language": "python"})).await;
    assert_eq!(status, 201, "{default}");
    let after = sandbox_containers(&instance);
    assert!(warm.iter().all(|id| after.contains(id)), "the warm python container became the sandbox: {after:?}");
    eventually("the python shelf refills", || sandbox_containers(&instance).len() == 3).await;
    let id = default["sandbox_id"].as_str().unwrap();
    let named = || {
        let filter = format!("name=^tracebox-sandbox-{id}$");
        let found = Command::new("docker").args(["ps", "-q", "--no-trunc", "--filter", &filter]).output().unwrap();
        let found = String::from_utf8_lossy(&found.stdout).trim().to_owned();
        warm.contains(&found)
    };
    eventually("the adopted container is named after its sandbox", named).await;
    let (_, reply) = server.post_json(&format!("/sandboxes/{id}/code"), json!({"code": "x = 41\nx + 1"})).await;
    assert_eq!(reply["result"], "42", "a warm container's kernel serves the sandbox: {reply}");

    let (status, own) = server.post_json("/sandboxes", json!({"language": "python", "env": {"GREETING": "hi"}})).await;
    assert_eq!(status, 201, "{own}");
    assert_eq!(sandbox_containers(&instance).len(), 4, "a sandbox with an environment gets a container of its own");
    let own_id = own["sandbox_id"].as_str().unwrap();
    let (_, reply) = server.post_json(&format!("/sandboxes/{own_id}/commands"), json!({"cmd": "echo $GREETING"})).await;
    assert_eq!(reply["stdout"], "hi\n", "{reply}");

    for id in [id, own_id] {
        let response = server.client.delete(server.url(&format!("/sandboxes/{id}"))).send().await.unwrap();
        assert_eq!(response.status(), 204);
    }
    assert_eq!(sandbox_containers(&instance).len(), 2, "only the warm ones are left; they leave with the server");
}

#[tokio::test]
async fn a_server_stopping_while_warm_sandbox_containers_start_leaves_none_behind() {
    let mut server = TestServer::spawn_with(&[("TRACEBOX_SANDBOX_POOL_SIZE", "2")]).await;
    let instance = server.instance_id().await;
    // Taking warm containers starts their replacements; the server stops while they start.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, reply) = server.post_json("/sandboxes", json!({})).await;
        assert_eq!(status, 201, "{reply}");
        ids.push(reply["sandbox_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let response = server.client.delete(server.url(&format!("/sandboxes/{id}"))).send().await.unwrap();
        assert_eq!(response.status(), 204);
    }
    server.stop();
    assert_eq!(sandbox_containers(&instance), Vec::<String>::new(), "no warm container outlives its server");
}
