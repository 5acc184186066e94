//! Stateful sandboxes: what the store keeps of each, and the typed records of its traces (the
//! sandbox itself, and its steps: commands, code cells, file and lifecycle operations).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Language, PolicyHit, RunLimits, TraceId, UnknownName};

/// Where a sandbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxStatus {
    /// Its container runs: commands and code are served.
    Running,
    /// Its `/workspace` is kept on the server's disk and its container is gone; resume it.
    Paused,
    /// Deleted, or killed at its timeout or lifetime: nothing of it is left but its trace.
    Stopped,
}

impl SandboxStatus {
    pub const ALL: [SandboxStatus; 3] = [SandboxStatus::Running, SandboxStatus::Paused, SandboxStatus::Stopped];

    pub fn as_str(self) -> &'static str {
        match self {
            SandboxStatus::Running => "running",
            SandboxStatus::Paused => "paused",
            SandboxStatus::Stopped => "stopped",
        }
    }
}

impl fmt::Display for SandboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SandboxStatus {
    type Err = UnknownName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        SandboxStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == name)
            .ok_or_else(|| UnknownName { what: "sandbox status", name: name.to_owned() })
    }
}

/// What happens to a sandbox idle past its timeout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Keep its files on the server's disk; it can be resumed.
    #[default]
    Pause,
    /// Remove it.
    Kill,
}

/// A sandbox as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// `sbx_` and 26 random characters.
    pub id: String,
    pub status: SandboxStatus,
    pub language: Language,
    pub memory_mb: u64,
    pub cpus: f64,
    pub disk_mb: u64,
    /// The environment of its commands and kernel: kept, as a resumed sandbox needs it again.
    pub env: BTreeMap<String, String>,
    /// The client's labels, to find it by.
    pub metadata: BTreeMap<String, String>,
    /// Its container while it runs.
    pub container: Option<String>,
    /// The sandbox's trace; its steps are its children.
    pub trace_id: TraceId,
    pub created_at_us: i64,
    pub last_activity_at_us: i64,
    /// Idle seconds before it is paused or killed.
    pub timeout_secs: f64,
    pub on_timeout: OnTimeout,
    /// When its maximum lifetime ends (Unix microseconds).
    pub lifetime_ends_at_us: i64,
    /// `/workspace` right after creation: what a reset goes back to by default.
    pub creation_snapshot: Option<String>,
    /// `/workspace` as the pause kept it.
    pub paused_snapshot: Option<String>,
    /// Steps so far.
    pub steps: u64,
    /// The repository `/workspace` was cloned from, at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<RepoSource>,
    /// Whose it is: the tenant of the key that made it (None on an open server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The node (Docker engine) its container runs on; records made before nodes existed were
    /// on the one local engine.
    #[serde(default = "local_node")]
    pub node: String,
    /// The labels its node must carry (kept: a resume elsewhere honours them too).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn local_node() -> String {
    "local".to_owned()
}

/// A repository at a commit: what a sandbox's `/workspace` starts as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoSource {
    /// A local path, or a `file://`, `https://` or `ssh://` URL the server's host reaches.
    pub url: String,
    /// A commit (or a branch or tag, resolved at the clone); HEAD when not given.
    #[serde(default = "head")]
    pub commit: String,
}

fn head() -> String {
    "HEAD".to_owned()
}

impl RepoSource {
    /// The same repository as it may be kept and shown: a password or token in the URL
    /// (`https://user:token@host/…`) is left out, as is an `https` user; an `ssh` user stays
    /// (it is the login, `git@…`), its password not.
    pub fn without_credentials(&self) -> RepoSource {
        RepoSource { url: url_without_credentials(&self.url), commit: self.commit.clone() }
    }
}

fn url_without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let host_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..host_end].rfind('@') else { return url.to_owned() };
    let (userinfo, after) = (&rest[..at], &rest[at + 1..]);
    match (scheme, userinfo.split_once(':')) {
        ("ssh", Some((user, _password))) => format!("{scheme}://{user}@{after}"),
        ("ssh", None) => url.to_owned(),
        _ => format!("{scheme}://{after}"),
    }
}

impl SandboxRecord {
    /// When its idle timeout fires if nothing else happens.
    pub fn expires_at_us(&self) -> i64 {
        self.last_activity_at_us + (self.timeout_secs * 1e6) as i64
    }
}

/// A saved `/workspace`: a compressed tar, content-addressed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// `snap_` and 26 random characters.
    pub id: String,
    pub sandbox_id: String,
    pub label: Option<String>,
    /// Of the compressed tar: its file's name in the store of snapshots.
    pub sha256: String,
    /// Compressed.
    pub bytes: u64,
    pub created_at_us: i64,
}

/// A sandbox's trace as it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxInput {
    pub sandbox_id: String,
    pub language: Language,
    pub memory_mb: u64,
    pub cpus: f64,
    pub disk_mb: u64,
    /// Only the names: values are how people pass credentials.
    pub env_names: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// Uploads copied into `/workspace` at creation.
    pub files: Vec<String>,
    pub timeout_secs: f64,
    pub on_timeout: OnTimeout,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<RepoSource>,
    /// Commands run in it after the copy, before its creation state is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
}

/// A sandbox's trace as it ends: why, and how many steps it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxOutput {
    pub ended: String,
    pub steps: u64,
}

/// A command's request, as kept (secrets redacted; of the environment only the names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandInput {
    pub sandbox_id: String,
    pub cmd: String,
    pub cwd: Option<String>,
    pub env_names: Vec<String>,
    pub stdin: String,
    pub limits: RunLimits,
    #[serde(default)]
    pub policy_hits: Vec<PolicyHit>,
    /// Bytes left out of this record (a request refused before it ran keeps only the start).
    #[serde(default)]
    pub omitted_bytes: u64,
}

/// A code cell, as kept (secrets redacted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellInput {
    pub sandbox_id: String,
    pub language: Language,
    pub code: String,
    pub limits: RunLimits,
    #[serde(default)]
    pub policy_hits: Vec<PolicyHit>,
    /// Bytes left out of this record (a request refused before it ran keeps only the start).
    #[serde(default)]
    pub omitted_bytes: u64,
}

/// An operation on a sandbox's files or on the sandbox itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxOp {
    Read,
    Write,
    Delete,
    Upload,
    Pause,
    Resume,
    Snapshot,
    Reset,
}

impl SandboxOp {
    pub const ALL: [SandboxOp; 8] = [
        SandboxOp::Read,
        SandboxOp::Write,
        SandboxOp::Delete,
        SandboxOp::Upload,
        SandboxOp::Pause,
        SandboxOp::Resume,
        SandboxOp::Snapshot,
        SandboxOp::Reset,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SandboxOp::Read => "read",
            SandboxOp::Write => "write",
            SandboxOp::Delete => "delete",
            SandboxOp::Upload => "upload",
            SandboxOp::Pause => "pause",
            SandboxOp::Resume => "resume",
            SandboxOp::Snapshot => "snapshot",
            SandboxOp::Reset => "reset",
        }
    }
}

impl FromStr for SandboxOp {
    type Err = UnknownName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        SandboxOp::ALL
            .into_iter()
            .find(|op| op.as_str() == name)
            .ok_or_else(|| UnknownName { what: "sandbox operation", name: name.to_owned() })
    }
}

/// A sandbox operation's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpInput {
    pub sandbox_id: String,
    pub op: SandboxOp,
    /// The file or directory, for file operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The snapshot a reset goes back to, or a snapshot's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// How a sandbox operation ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpOutput {
    /// Bytes moved (read, written, uploaded, kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The snapshot made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::record::ErrorReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_is_kept_without_the_credentials_of_its_url() {
        let kept = |url: &str| RepoSource { url: url.into(), commit: "main".into() }.without_credentials().url;
        assert_eq!(kept("https://user:ghp_secret@github.com/a/b.git"), "https://github.com/a/b.git");
        assert_eq!(kept("https://token@example.com/a.git"), "https://example.com/a.git");
        assert_eq!(kept("ssh://git:pw@example.com/a.git"), "ssh://git@example.com/a.git");
        assert_eq!(kept("ssh://git@example.com/a.git"), "ssh://git@example.com/a.git");
        assert_eq!(kept("https://example.com/a@b.git"), "https://example.com/a@b.git", "an @ in the path is no user");
        assert_eq!(kept("/srv/repo"), "/srv/repo");
    }

    #[test]
    fn an_operation_reads_back_from_the_name_it_is_stored_under() {
        for op in SandboxOp::ALL {
            let stored = serde_json::to_value(op).unwrap();
            assert_eq!(stored.as_str(), Some(op.as_str()));
            assert_eq!(op.as_str().parse::<SandboxOp>().unwrap(), op);
        }
        assert!("rename".parse::<SandboxOp>().is_err());
    }
}
