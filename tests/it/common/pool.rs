//! Helpers for tests of the warm pool: servers with one, what `/health` says of it, and which
//! container a run took.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{TestServer, empty_policy, patience};

/// A server whose pool keeps two warm containers per language, with `extra` settings.
pub async fn pooled(extra: &[(&str, &str)]) -> TestServer {
    let mut env = vec![("TRACEBOX_POOL_SIZE", "2")];
    env.extend_from_slice(extra);
    TestServer::spawn_with(&env).await
}

/// A server in recycle mode with one warm container per language, whose policy lets every
/// program through: what a recycled container must withstand by itself.
pub async fn unscreened_recycler() -> TestServer {
    let policy = empty_policy();
    pooled(&[("TRACEBOX_ISOLATION", "recycle"), ("TRACEBOX_POOL_SIZE", "1"), ("TRACEBOX_POLICY", &policy)]).await
}

/// Does a recycled container serve another run? Under runc it does. Under gVisor (runsc) a
/// program can open its supervisor's descriptors through /proc/1/fd, the channel to tracebox,
/// so the supervisor serves one run and ends (`channel_exposed` in sandbox/supervise.py).
pub fn recycles() -> bool {
    !super::gvisor()
}

/// The pool as `/health` reports it.
pub async fn pool(server: &TestServer) -> Value {
    let (_, health) = server.get_json("/health").await;
    health["docker"]["pool"].clone()
}

/// Idle containers of `profile` in a pool state.
pub fn idle(pool: &Value, profile: &str) -> u64 {
    let profiles = pool["profiles"].as_array().unwrap();
    profiles.iter().find(|p| p["profile"] == profile).map_or(0, |p| p["idle"].as_u64().unwrap())
}

/// Wait until `profile` has `wanted` idle containers.
pub async fn wait_idle(server: &TestServer, profile: &str, wanted: u64) {
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let state = pool(server).await;
        if idle(&state, profile) >= wanted {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the pool never had {wanted} idle {profile}: {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Does a container of that exact name exist, running or not?
pub fn container_exists(name: &str) -> bool {
    let output = Command::new("docker").args(["ps", "-aq", "--filter", &format!("name=^{name}$")]).output().unwrap();
    !output.stdout.is_empty()
}

/// The container a run took from the pool, from its trace.
pub async fn container_of(server: &TestServer, reply: &Value) -> String {
    let trace = server.trace(reply["trace_id"].as_str().unwrap()).await;
    let took = trace["events"].as_array().unwrap().iter().find(|e| e["name"] == "pool.took");
    let took = took.unwrap_or_else(|| panic!("the run took no warm container: {trace}"));
    took["detail"]["container"].as_str().unwrap().to_owned()
}

/// Wait until a recycled container is back on its shelf.
pub async fn eventually_ready(server: &TestServer, profile: &str) {
    wait_idle(server, profile, 1).await;
}
