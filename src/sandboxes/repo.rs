//! A sandbox's task setup from a repository: the server clones it (the sandbox never gets a
//! network), checks out the commit and packs the tree, `.git` included, as the tar that becomes
//! `/workspace`. The URL and commit are checked so that git can never read them as an option
//! or a command, git is held to a few transports, and the clone is bounded in time and size;
//! its scratch directory goes whatever happens.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;
use tracebox_model::sandbox::RepoSource;
use tracebox_model::text::head;

/// Where clones are made and how far they may go.
#[derive(Debug, Clone)]
pub struct RepoSettings {
    /// Scratch space for clones (under the data directory); emptied at start.
    pub dir: PathBuf,
    /// The most a repository may hold, `.git` included.
    pub max_bytes: u64,
    pub clone_timeout: Duration,
}

/// A repository that cannot be set up; the first two are the caller's to fix (400), the next
/// the repository's (422), the last the server's (500).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(
        "`repo.url` {url:?}: {why}; give an absolute local path, or a file://, https:// or ssh:// URL the server reaches"
    )]
    BadUrl { url: String, why: &'static str },
    #[error("`repo.commit` {commit:?}: {why}; give a commit id (or a branch or tag name)")]
    BadCommit { commit: String, why: &'static str },
    #[error("cloning {url} failed: {stderr}")]
    CloneFailed { url: String, stderr: String },
    #[error(
        "cloning {url} took more than {secs} s (TRACEBOX_REPO_CLONE_TIMEOUT_SECS); nothing was kept: raise the setting, or use a smaller repository"
    )]
    CloneTimeout { url: String, secs: u64 },
    #[error("no commit {commit:?} in {url}: {stderr}")]
    UnknownCommit { url: String, commit: String, stderr: String },
    #[error("{url} holds more than {limit} bytes with its .git, over {why}; nothing was kept")]
    TooLarge { url: String, limit: u64, why: String },
    #[error("git could not be run on the server ({0}): install it (apt-get install git)")]
    NoGit(std::io::Error),
    #[error("the server could not prepare the repository: {0}")]
    Io(#[from] std::io::Error),
}

impl RepoError {
    /// The caller's request was wrong (as opposed to the repository or the server).
    pub fn is_request(&self) -> bool {
        matches!(self, RepoError::BadUrl { .. } | RepoError::BadCommit { .. })
    }

    /// The repository could not be set up as asked (the caller's to look at, not the server's).
    pub fn is_repository(&self) -> bool {
        matches!(
            self,
            RepoError::CloneFailed { .. }
                | RepoError::CloneTimeout { .. }
                | RepoError::UnknownCommit { .. }
                | RepoError::TooLarge { .. }
        )
    }
}

/// Does a clone of `url` act as the server itself: a path on its disk or `file://` (read with
/// the server user's rights) or `ssh://` (with the server's SSH identity)? With keys on, only
/// admin keys may ask for one; `https://` is for everyone.
pub fn acts_as_server(url: &str) -> bool {
    url.starts_with('/') || url.starts_with("file://") || url.starts_with("ssh://")
}

/// Refuse a `repo` whose URL or commit git could take for something else.
pub fn check(source: &RepoSource) -> Result<(), RepoError> {
    let url = |why| Err(RepoError::BadUrl { url: source.without_credentials().url, why });
    let commit = |why| Err(RepoError::BadCommit { commit: source.commit.clone(), why });
    let address = source.url.as_str();
    if address.is_empty() {
        return url("it is empty");
    }
    if address.len() > 4096 {
        return url("it is longer than 4096 bytes");
    }
    if address.chars().any(char::is_control) {
        return url("it holds a control character");
    }
    if address.starts_with('-') {
        return url("it starts with '-', which git would read as an option");
    }
    if address.contains("::") {
        return url("git reads `transport::` as a remote helper (ext:: runs a command)");
    }
    if let Some(path) = address.strip_prefix("file://") {
        if !path.starts_with('/') {
            return url("a file:// URL names an absolute path (file:///srv/repo)");
        }
    } else if let Some(rest) = address.strip_prefix("https://").or_else(|| address.strip_prefix("ssh://")) {
        // `ssh://-oProxyCommand=…` would be an option to ssh.
        if rest.is_empty() || rest.starts_with('-') || rest.contains("@-") {
            return url("its host is missing or starts with '-'");
        }
        if rest.chars().any(char::is_whitespace) {
            return url("a URL holds no whitespace");
        }
    } else if address.contains("://") {
        return url("this transport is not one tracebox clones");
    } else if !address.starts_with('/') {
        return url("a local path must be absolute");
    }
    let name = source.commit.as_str();
    if name.is_empty() {
        return commit("it is empty");
    }
    if name.len() > 256 {
        return commit("it is longer than 256 bytes");
    }
    if name.starts_with('-') {
        return commit("it starts with '-', which git would read as an option");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c)) || name.contains("..") {
        return commit("only letters, digits, '.', '_', '/' and '-' make a commit or ref name");
    }
    Ok(())
}

/// Clone `source` and pack it as `/workspace`'s tar, left open for the uploads to join it: at
/// most `limit` bytes (the smaller of
/// TRACEBOX_REPO_MAX_BYTES and the sandbox's disk, `limit_why` saying which).
pub async fn fetch(
    source: &RepoSource,
    settings: &RepoSettings,
    limit: u64,
    limit_why: &str,
) -> Result<tar::Builder<Vec<u8>>, RepoError> {
    check(source)?;
    // What messages and logs name: never the credentials the URL may carry.
    let shown = source.without_credentials();
    let scrub = |text: String| text.replace(&source.url, &shown.url);
    std::fs::create_dir_all(&settings.dir)?;
    let scratch = tempfile::Builder::new().prefix("clone-").tempdir_in(&settings.dir)?;
    let tree = scratch.path().join("tree");
    let started = Instant::now();
    tracing::info!(url = %shown.url, commit = %source.commit, "cloning a sandbox's repository");
    let too_large = || RepoError::TooLarge { url: shown.url.clone(), limit, why: limit_why.to_owned() };

    let mut clone = git(None);
    clone.args(["clone", "--quiet", "--no-checkout"]);
    // A local path is cloned by copying (hard-linking) its objects, seconds faster than packing
    // them as `--no-local` (and a file:// URL) does. That is safe from git 2.38.1 on, which
    // refuses a source whose objects are symbolic links (they could read the server's files).
    if !local_clone_is_safe() {
        clone.arg("--no-local");
    }
    clone.arg("--").arg(&source.url).arg(&tree);
    // Clone, resolve and checkout share one budget of time, and the tree its size: a small
    // pack can check out into an enormous tree (a "git bomb"), so the checkout is watched too.
    let deadline = tokio::time::Instant::now() + settings.clone_timeout;
    let bounded = |command: &mut Command| {
        let spawned = command.spawn().map_err(RepoError::NoGit);
        let tree = &tree;
        let (shown, too_large) = (&shown, &too_large);
        async move {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match watch(spawned?, tree, limit, remaining).await? {
                Watched::Ended(output) => Ok(output),
                Watched::TimedOut => {
                    Err(RepoError::CloneTimeout { url: shown.url.clone(), secs: settings.clone_timeout.as_secs() })
                }
                Watched::TooLarge => Err(too_large()),
            }
        }
    };
    let cloned = bounded(&mut clone).await?;
    if !cloned.status.success() {
        return Err(RepoError::CloneFailed { url: shown.url.clone(), stderr: scrub(stderr_of(&cloned)) });
    }
    tracing::info!(url = %shown.url, secs = started.elapsed().as_secs_f64(), "cloned; checking out");

    let resolved = bounded(
        git(Some(&tree))
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{}^{{commit}}", source.commit)),
    )
    .await?;
    if !resolved.status.success() {
        return Err(RepoError::UnknownCommit {
            url: shown.url.clone(),
            commit: source.commit.clone(),
            stderr: "git rev-parse found no such commit".to_owned(),
        });
    }
    let sha = String::from_utf8_lossy(&resolved.stdout).trim().to_owned();
    tracing::debug!(secs = started.elapsed().as_secs_f64(), "commit resolved");
    let checkout = bounded(git(Some(&tree)).args(["checkout", "--quiet", "--detach", &sha])).await?;
    if !checkout.status.success() {
        return Err(RepoError::UnknownCommit {
            url: shown.url.clone(),
            commit: source.commit.clone(),
            stderr: scrub(stderr_of(&checkout)),
        });
    }

    // The clone's `origin` names the URL it came from: without its credentials, as the agent
    // reads `.git/config`.
    if shown.url != source.url {
        let renamed = git(Some(&tree)).args(["remote", "set-url", "origin", "--", &shown.url]).output().await?;
        if !renamed.status.success() {
            return Err(RepoError::Io(std::io::Error::other(format!(
                "could not take the credentials out of the clone's origin: {}",
                scrub(stderr_of(&renamed))
            ))));
        }
    }

    let packing = tree.clone();
    let tar = tokio::task::spawn_blocking(move || -> Result<Option<tar::Builder<Vec<u8>>>, std::io::Error> {
        if size_of(&packing)? > limit {
            return Ok(None);
        }
        pack(&packing).map(Some)
    })
    .await
    .map_err(|error| std::io::Error::other(error.to_string()))??
    .ok_or_else(too_large)?;
    tracing::info!(
        url = %shown.url,
        commit = %sha,
        bytes = tar.get_ref().len(),
        secs = started.elapsed().as_secs_f64(),
        "repository ready for the sandbox"
    );
    Ok(tar)
}

/// git, as tracebox runs it on the server: no prompt, no pager, only the transports tracebox
/// allows (for submodules and redirects too), no terminal; no hook, and no LFS filter (whose
/// `lfs.url` a repository's `.lfsconfig` names: a request to an address of its choosing).
fn git(dir: Option<&Path>) -> Command {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        command.arg("-C").arg(dir);
    }
    for setting in
        ["core.hooksPath=/dev/null", "filter.lfs.smudge=", "filter.lfs.process=", "filter.lfs.required=false"]
    {
        command.arg("-c").arg(setting);
    }
    command.env("GIT_LFS_SKIP_SMUDGE", "1");
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", "file:https:ssh")
        .env("GIT_PAGER", "cat")
        .env("GIT_ADVICE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        // Never ask for a password or a host key on a terminal the server does not have.
        command.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    command
}

/// Is the host's git one whose local clone refuses symlinked objects (2.38.1 or later)?
fn local_clone_is_safe() -> bool {
    static SAFE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SAFE.get_or_init(|| {
        let output = std::process::Command::new("git").arg("version").output();
        let text = output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        git_at_least(&text, (2, 38, 1))
    })
}

/// Does `git version X.Y.Z…` name at least `wanted`?
fn git_at_least(version: &str, wanted: (u64, u64, u64)) -> bool {
    let numbers: Vec<u64> = version
        .trim()
        .trim_start_matches("git version ")
        .split(['.', ' ', '-'])
        .map_while(|part| part.parse().ok())
        .collect();
    match numbers[..] {
        [major, minor, patch, ..] => (major, minor, patch) >= wanted,
        [major, minor] => (major, minor, 0) >= wanted,
        _ => false,
    }
}

enum Watched {
    Ended(std::process::Output),
    TimedOut,
    TooLarge,
}

/// Wait for `child`, killing it when it runs past `timeout` or `dir` grows past `limit` (an
/// early return drops the child, and kill_on_drop ends it).
async fn watch(child: tokio::process::Child, dir: &Path, limit: u64, timeout: Duration) -> Result<Watched, RepoError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut output = std::pin::pin!(child.wait_with_output());
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            ended = &mut output => return Ok(Watched::Ended(ended?)),
            () = tokio::time::sleep_until(deadline) => return Ok(Watched::TimedOut),
            _ = tick.tick() => {
                let dir = dir.to_owned();
                let size = tokio::task::spawn_blocking(move || size_of(&dir).unwrap_or(0)).await.unwrap_or(0);
                if size > limit {
                    return Ok(Watched::TooLarge);
                }
            }
        }
    }
}

/// Bytes of the files under `dir` (symbolic links counted as themselves, never followed).
fn size_of(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

/// The tree as a tar of its top-level entries (no `.` entry), links kept as links; unfinished.
fn pack(tree: &Path) -> std::io::Result<tar::Builder<Vec<u8>>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut entries: Vec<_> = std::fs::read_dir(tree)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        if entry.file_type()?.is_dir() {
            builder.append_dir_all(&name, entry.path())?;
        } else {
            builder.append_path_with_name(entry.path(), &name)?;
        }
    }
    Ok(builder)
}

fn stderr_of(output: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let text = text.trim();
    if text.is_empty() { format!("git ended with {}", output.status) } else { head(text, 2000).to_owned() }
}

/// Empty the scratch directory of clones a crash left.
pub fn clear(settings: &RepoSettings) {
    if let Err(error) = std::fs::remove_dir_all(&settings.dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(%error, dir = %settings.dir.display(), "could not empty the clones' scratch directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str, commit: &str) -> RepoSource {
        RepoSource { url: url.into(), commit: commit.into() }
    }

    #[test]
    fn urls_of_the_allowed_transports_and_absolute_paths_pass() {
        for url in [
            "/srv/repo",
            "/srv/my repo",
            "file:///srv/repo",
            "https://example.com/a.git",
            "ssh://git@example.com/a.git",
        ] {
            assert!(check(&source(url, "main")).is_ok(), "{url}");
        }
    }

    #[test]
    fn a_url_git_could_read_as_an_option_or_a_command_is_refused_saying_why() {
        let refused = |url: &str| match check(&source(url, "main")) {
            Err(error @ RepoError::BadUrl { .. }) => error.to_string(),
            other => panic!("{url} passed: {other:?}"),
        };
        assert!(refused("ext::sh -c touch% /tmp/pwned").contains("ext::"));
        assert!(refused("--upload-pack=touch /tmp/x").contains("option"));
        assert!(refused("ssh://-oProxyCommand=touch /tmp/x/a").contains("'-'"));
        assert!(refused("http://example.com/a.git").contains("transport"));
        assert!(refused("git://example.com/a.git").contains("transport"));
        assert!(refused("relative/path").contains("absolute"));
        assert!(refused("file://relative").contains("absolute"));
        assert!(refused("").contains("empty"));
        assert!(refused("/srv/a\nb").contains("control"));
        assert!(refused("https://example.com/a b").contains("whitespace"));
    }

    #[test]
    fn only_a_git_that_refuses_symlinked_objects_clones_local_paths_by_copying() {
        assert!(git_at_least("git version 2.39.5\n", (2, 38, 1)));
        assert!(git_at_least("git version 2.38.1", (2, 38, 1)));
        assert!(!git_at_least("git version 2.38.0", (2, 38, 1)));
        assert!(!git_at_least("git version 2.30.2", (2, 38, 1)));
        assert!(git_at_least("git version 3.0", (2, 38, 1)));
        assert!(!git_at_least("", (2, 38, 1)), "no git, or an unreadable version: the safe way");
    }

    #[test]
    fn a_commit_that_is_no_name_is_refused() {
        for commit in ["", "-b", "--orphan=x", "HEAD@{1}", "a..b", "main;rm", "a b"] {
            assert!(matches!(check(&source("/srv/r", commit)), Err(RepoError::BadCommit { .. })), "{commit:?}");
        }
        for commit in ["0123abcd", "main", "v1.2.3", "feature/x-y_z"] {
            assert!(check(&source("/srv/r", commit)).is_ok(), "{commit}");
        }
    }
}
