//! `[[nodes]]`: the Docker engines one server drives (docs/scaling.md), as the TOML file lists
//! them, and their checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The name of the one node when none is configured.
pub const LOCAL_NODE: &str = "local";

/// One `[[nodes]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Its name in `/nodes`, traces and metrics: letters, digits, `-`, `_`.
    pub name: String,
    /// `unix:///…` (an engine on this machine) or `tcp://host:port` (with TLS below).
    pub docker_host: String,
    /// The CA that signed the engine's certificate, and the client certificate and key
    /// tracebox presents (as `docker --tlsverify` takes them); all three or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// What a request's `labels` match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Runs it takes at once; unset: max_concurrent_runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_runs: Option<usize>,
    /// The Docker runtime of its containers (`runsc` for gVisor); unset: the server's `runtime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

/// Check the `[[nodes]]` tables: unique plain names, an address tracebox can speak to, TLS
/// files all given and present, a capacity of at least one.
pub fn check(nodes: &[NodeConfig]) -> Result<(), ConfigError> {
    let invalid = |message: String| Err(ConfigError::Invalid { key: "nodes", message });
    let mut names = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for node in nodes {
        let name = &node.name;
        if !tracebox_model::access::is_valid_name(name) {
            return invalid(format!("node name {name:?} must be 1 to 64 letters, digits, '-' or '_'"));
        }
        if !names.insert(name) {
            return invalid(format!("two nodes are named {name:?}; each needs a name of its own"));
        }
        let host = &node.docker_host;
        if !(host.starts_with("unix://") || host.starts_with("tcp://")) {
            return invalid(format!("node {name}: docker_host {host:?} must start with unix:// or tcp://"));
        }
        if !hosts.insert(host.trim_end_matches('/')) {
            return invalid(format!(
                "node {name}: docker_host {host:?} is another node's too; one engine is one node (give it the labels of both)"
            ));
        }
        let tls = [&node.tls_ca, &node.tls_cert, &node.tls_key];
        let given = tls.iter().filter(|path| path.is_some()).count();
        if given != 0 && given != 3 {
            return invalid(format!("node {name}: give tls_ca, tls_cert and tls_key together, or none"));
        }
        if given == 3 && !host.starts_with("tcp://") {
            return invalid(format!("node {name}: TLS files go with a tcp:// docker_host"));
        }
        if given == 0 && host.starts_with("tcp://") && !is_loopback(host) {
            return invalid(format!(
                "node {name}: {host} without TLS would give anyone on the network root on that engine; give \
                 tls_ca, tls_cert and tls_key (docs/scaling.md, \"TLS between tracebox and a node\")"
            ));
        }
        for path in tls.into_iter().flatten() {
            if !path.is_file() {
                return invalid(format!("node {name}: {} is not a readable file", path.display()));
            }
        }
        if let Some(runtime) = &node.runtime
            && !super::is_runtime_name(runtime)
        {
            return invalid(format!("node {name}: runtime {runtime:?} is not a runtime name (e.g. runc, runsc)"));
        }
        if node.max_concurrent_runs == Some(0) {
            return invalid(format!("node {name}: max_concurrent_runs must be at least 1"));
        }
    }
    Ok(())
}

/// `tcp://127.0.0.1:…`, `tcp://localhost:…`, `tcp://[::1]:…`: a plain TCP engine of this
/// machine, reachable by nobody else.
fn is_loopback(host: &str) -> bool {
    let authority = host.trim_start_matches("tcp://").rsplit('@').next().unwrap_or_default();
    ["127.0.0.1:", "localhost:", "[::1]:"].iter().any(|local| authority.starts_with(local))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, host: &str) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            docker_host: host.into(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            labels: BTreeMap::new(),
            max_concurrent_runs: None,
            runtime: None,
        }
    }

    fn refusal(nodes: &[NodeConfig]) -> String {
        check(nodes).unwrap_err().to_string()
    }

    #[test]
    fn plain_unique_names_and_known_schemes_pass() {
        assert!(check(&[node("a", "unix:///run/a.sock"), node("b-2", "tcp://127.0.0.1:2375")]).is_ok());
        assert!(check(&[]).is_ok());
    }

    #[test]
    fn each_mistake_is_named_with_its_fix() {
        assert!(refusal(&[node("a b", "unix:///x")]).contains("letters, digits"));
        assert!(refusal(&[node("a", "unix:///x"), node("a", "unix:///y")]).contains("two nodes are named \"a\""));
        assert!(refusal(&[node("a", "ssh://host")]).contains("unix:// or tcp://"));
        let half_tls = NodeConfig { tls_ca: Some("/etc/hostname".into()), ..node("a", "tcp://h:2376") };
        assert!(refusal(&[half_tls]).contains("together"));
        let tls = |host: &str, file: &str| NodeConfig {
            tls_ca: Some(file.into()),
            tls_cert: Some(file.into()),
            tls_key: Some(file.into()),
            ..node("a", host)
        };
        assert!(refusal(&[tls("unix:///x", "/etc/hostname")]).contains("tcp://"));
        assert!(refusal(&[tls("tcp://h:2376", "/nonexistent/ca.pem")]).contains("not a readable file"));
        assert!(check(&[tls("tcp://h:2376", "/etc/hostname")]).is_ok());
        let twice = refusal(&[node("a", "unix:///run/d.sock"), node("b", "unix:///run/d.sock/")]);
        assert!(twice.contains("another node's too"), "{twice}");
        let plain = refusal(&[node("a", "tcp://10.0.0.7:2375")]);
        assert!(plain.contains("without TLS") && plain.contains("tls_ca"), "{plain}");
        assert!(refusal(&[node("a", "tcp://127.0.0.1.evil:2375")]).contains("without TLS"));
        let runtime = NodeConfig { runtime: Some("run sc".into()), ..node("a", "unix:///x") };
        assert!(refusal(&[runtime]).contains("runtime"));
        let none = NodeConfig { max_concurrent_runs: Some(0), ..node("a", "unix:///x") };
        assert!(refusal(&[none]).contains("at least 1"));
    }
}
