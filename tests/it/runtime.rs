//! The Docker runtime (`TRACEBOX_RUNTIME`): named on every container, reported by `/health` and
//! `/metrics`, and checked at start, where a runtime the engine lacks stops the server with the
//! lines that register it.

use std::process::{Command, Stdio};

use crate::common::{TestServer, containers_of, gvisor, require_docker, runtime};

#[tokio::test]
async fn health_and_metrics_report_the_runtime_every_container_runs_under() {
    let server = TestServer::spawn().await;
    let (status, health) = server.get_json("/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["docker"]["runtime"], runtime().as_str(), "{health}");
    assert_eq!(health["docker"]["runtime_registered"], true, "{health}");
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = format!("tracebox_sandbox_runtime_info{{node=\"local\",runtime=\"{}\"}} 1", runtime());
    assert!(metrics.contains(&line), "{metrics}");

    // The container is made under it, and the program sees its kernel: gVisor's reports 4.4.0.
    let instance = server.instance_id().await;
    let (sleeper, named) =
        tokio::join!(server.run("python", "import os, time\ntime.sleep(3)\nprint(os.uname().release)"), async {
            let mut containers = Vec::new();
            crate::common::eventually("the run's container exists", || {
                containers = containers_of(&instance);
                !containers.is_empty()
            })
            .await;
            let output = Command::new("docker")
                .args(["inspect", "-f", "{{.HostConfig.Runtime}}", &containers[0]])
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        });
    assert_eq!(named, runtime());
    let release = sleeper["stdout"].as_str().unwrap().trim().to_owned();
    assert_eq!(release == "4.4.0", gvisor(), "runtime {}: the kernel the program sees is {release}", runtime());
}

#[test]
fn a_runtime_the_engine_lacks_stops_the_start_with_the_daemon_json_lines() {
    require_docker();
    let temp = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tracebox"))
        .arg("serve")
        .env("TRACEBOX_RUNTIME", "nonexistent-rt")
        .env("TRACEBOX_DATA_DIR", temp.path())
        .env("TRACEBOX_ADDR", "127.0.0.1:0")
        .env("TRACEBOX_POOL_SIZE", "0")
        .env("TRACEBOX_SANDBOX_POOL_SIZE", "0")
        .stdin(Stdio::null())
        .output()
        .expect("tracebox runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it must not start: {stderr}");
    for part in [
        "has no runtime named nonexistent-rt (TRACEBOX_RUNTIME)",
        "/etc/docker/daemon.json",
        r#"{"runtimes": {"nonexistent-rt": {"path": "/path/to/nonexistent-rt"}}}"#,
        "kill -HUP $(cat /var/run/docker.pid)",
        "scripts/ensure-runsc.sh",
    ] {
        assert!(stderr.contains(part), "{part:?} is not in what it said: {stderr}");
    }
    assert!(!stderr.contains("listening"), "{stderr}");
}
