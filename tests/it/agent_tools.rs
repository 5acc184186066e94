//! Agent tools in a sandbox set up from a repository (docs/api.md, "Agent tools and
//! trajectories"): a local git repository made by the test with two commits; the sandbox holds
//! the first; each tool; the trajectory; replays that agree and replays that diverge; what the
//! tools refuse; repositories that cannot be set up.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::common::sandboxes::{SandboxServer, code, message};

/// A git repository of two commits: the first with README.md, src/app.py (100 lines) and a
/// secret in config.env; the second changes README.md. Its path and both commits' ids.
struct Repo {
    dir: tempfile::TempDir,
    first: String,
    second: String,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .expect("git runs on the test's machine");
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        git(path, &["init", "--quiet"]);
        std::fs::write(path.join("README.md"), "# demo\nfirst version\n").unwrap();
        std::fs::create_dir(path.join("src")).unwrap();
        let app: String = (1..=100).map(|n| format!("line_{n} = {n}\n")).collect();
        std::fs::write(path.join("src/app.py"), app).unwrap();
        std::fs::write(path.join("config.env"), "API_KEY=sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789\n").unwrap();
        git(path, &["add", "."]);
        git(path, &["commit", "--quiet", "-m", "first"]);
        let first = git(path, &["rev-parse", "HEAD"]);
        std::fs::write(path.join("README.md"), "# demo\nsecond version\n").unwrap();
        git(path, &["commit", "--quiet", "-am", "second"]);
        let second = git(path, &["rev-parse", "HEAD"]);
        Repo { dir, first, second }
    }

    fn url(&self) -> String {
        self.dir.path().display().to_string()
    }
}

impl SandboxServer {
    /// `POST /sandboxes/{id}/tools/{tool}` with `params`: the status and the reply.
    async fn tool(&self, id: &str, tool: &str, params: Value) -> (u16, Value) {
        self.post(&format!("/sandboxes/{id}/tools/{tool}"), params).await
    }

    /// A tool call that must succeed: its output.
    async fn ok(&self, id: &str, tool: &str, params: Value) -> String {
        let (status, reply) = self.tool(id, tool, params.clone()).await;
        assert_eq!((status, &reply["success"]), (200, &json!(true)), "{tool} {params}: {reply}");
        reply["output"].as_str().expect("an output").to_owned()
    }

    async fn trajectory(&self, id: &str) -> Value {
        let (status, trajectory) = self.get_json(&format!("/sandboxes/{id}/trajectory")).await;
        assert_eq!(status, 200, "{trajectory}");
        trajectory
    }

    async fn replay(&self, id: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/sandboxes/{id}/replay"), body).await
    }
}

fn tools_of(trajectory: &Value) -> Vec<&str> {
    trajectory["steps"].as_array().unwrap().iter().map(|s| s["tool_name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_sandbox_from_a_repository_holds_the_commit_with_its_history_and_resets_to_it_after_setup() {
    let repo = Repo::new();
    let server = SandboxServer::spawn().await;
    let made = server
        .create(
            json!({"repo": {"url": repo.url(), "commit": repo.first}, "setup": ["echo built > BUILD", "mkdir -p out"]}),
        )
        .await;
    let id = made["sandbox_id"].as_str().unwrap();

    assert_eq!(server.ok(id, "file_read", json!({"path": "README.md"})).await, "# demo\nfirst version\n");
    assert_eq!(server.ok(id, "git", json!({"args": ["rev-parse", "HEAD"]})).await.trim(), repo.first);
    let log = server.ok(id, "git", json!({"args": ["log", "--oneline"]})).await;
    assert_eq!(log.lines().count(), 1, "the history up to the commit, not past it: {log}");
    assert_eq!(server.ok(id, "file_read", json!({"path": "BUILD"})).await, "built\n", "setup ran");
    let status = server.ok(id, "git", json!({"args": ["status", "--porcelain"]})).await;
    assert_eq!(status, "?? BUILD\n", "the checkout is clean but for what setup made (out/ is empty)");

    // The setup commands are the sandbox's first steps, traced.
    let trace = server.trace(made["trace_id"].as_str().unwrap()).await;
    assert_eq!(trace["input"]["repo"]["commit"], json!(repo.first), "{trace}");
    let commands: Vec<&str> = trace["children"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "command")
        .map(|c| c["preview"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(commands, ["echo built > BUILD", "mkdir -p out"], "{trace}");

    // A reset goes back to the state after setup.
    server.ok(id, "file_write", json!({"path": "README.md", "content": "changed\n"})).await;
    server.ok(id, "shell", json!({"command": "rm BUILD"})).await;
    let (status, reset) = server.post(&format!("/sandboxes/{id}/reset"), json!({})).await;
    assert_eq!(status, 200, "{reset}");
    assert_eq!(server.ok(id, "file_read", json!({"path": "README.md"})).await, "# demo\nfirst version\n");
    assert_eq!(server.ok(id, "file_read", json!({"path": "BUILD"})).await, "built\n");
    server.delete(id).await;
}

#[tokio::test]
async fn each_tool_does_its_work_and_the_trajectory_lists_the_calls_in_order() {
    let repo = Repo::new();
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({"repo": {"url": repo.url(), "commit": repo.first}})).await;

    // file_read: lines 1-based and inclusive; past the end is a failure that says so.
    assert_eq!(
        server.ok(&id, "file_read", json!({"path": "src/app.py", "start_line": 2, "end_line": 3})).await,
        "line_2 = 2\nline_3 = 3\n"
    );
    assert_eq!(server.ok(&id, "file_read", json!({"path": "src/app.py", "start_line": 100})).await, "line_100 = 100\n");
    let (status, past) = server.tool(&id, "file_read", json!({"path": "src/app.py", "start_line": 101})).await;
    assert_eq!((status, &past["success"]), (200, &json!(false)), "{past}");
    assert!(past["error"].as_str().unwrap().contains("past the end"), "{past}");
    // …a secret in a file comes back redacted, and a missing file is a failure, not an error.
    let config = server.ok(&id, "file_read", json!({"path": "config.env"})).await;
    assert!(!config.contains("abcdefghijklmnop") && config.starts_with("API_KEY="), "{config}");
    let (status, missing) = server.tool(&id, "file_read", json!({"path": "nope.txt"})).await;
    assert_eq!((status, &missing["success"]), (200, &json!(false)), "{missing}");
    // …and a binary file says it has no lines.
    server.ok(&id, "shell", json!({"command": "printf 'a\\0b' > blob.bin"})).await;
    let (_, binary) = server.tool(&id, "file_read", json!({"path": "blob.bin"})).await;
    assert!(binary["error"].as_str().unwrap().contains("binary"), "{binary}");

    // file_write: parents made, the change kept as a diff.
    let (status, written) =
        server.tool(&id, "file_write", json!({"path": "README.md", "content": "# demo\nchanged by the agent\n"})).await;
    assert_eq!(status, 200, "{written}");
    let diff = written["diff"].as_str().unwrap();
    assert!(diff.contains("-first version") && diff.contains("+changed by the agent"), "{diff}");
    server.ok(&id, "file_write", json!({"path": "deep/er/new.txt", "content": "new\n"})).await;
    assert_eq!(server.ok(&id, "file_read", json!({"path": "deep/er/new.txt"})).await, "new\n");

    // shell: stdout and stderr as one stream in the order written; a failing command is
    // success false with its exit code.
    let merged = server.ok(&id, "shell", json!({"command": "echo one; echo two >&2; echo three"})).await;
    assert_eq!(merged, "one\ntwo\nthree\n");
    let (status, failed) = server.tool(&id, "shell", json!({"command": "echo nope >&2; exit 3"})).await;
    assert_eq!(
        (status, &failed["success"], &failed["exit_code"], &failed["output"]),
        (200, &json!(false), &json!(3), &json!("nope\n")),
        "{failed}"
    );
    let (_, slow) = server.tool(&id, "shell", json!({"command": "sleep 30", "timeout": 1})).await;
    assert_eq!(slow["success"], false, "{slow}");
    assert!(
        slow["error"].as_str().unwrap().contains("timed out") || slow["error"].as_str().unwrap().contains("timeout"),
        "{slow}"
    );

    // search: path:line:text, sorted, a glob and a path to narrow it.
    let found = server.ok(&id, "search", json!({"pattern": "line_4[0-2] ", "path": "src"})).await;
    assert_eq!(found, "src/app.py:40:line_40 = 40\nsrc/app.py:41:line_41 = 41\nsrc/app.py:42:line_42 = 42\n");
    assert_eq!(
        server.ok(&id, "search", json!({"pattern": "agent", "glob": "*.md"})).await,
        "README.md:2:changed by the agent\n"
    );
    assert_eq!(server.ok(&id, "search", json!({"pattern": "no such text anywhere"})).await, "", "no match is no line");

    // git: status, diff, add, commit, log.
    let status = server.ok(&id, "git", json!({"args": ["status", "--short"]})).await;
    assert!(status.contains(" M README.md") && status.contains("?? deep/"), "{status}");
    let diff = server.ok(&id, "git", json!({"args": ["diff"]})).await;
    assert!(diff.contains("+changed by the agent"), "{diff}");
    server.ok(&id, "git", json!({"args": ["add", "README.md"]})).await;
    let committed = server.ok(&id, "git", json!({"args": ["commit", "-m", "agent's change"]})).await;
    assert!(committed.contains("agent's change"), "{committed}");
    let log = server.ok(&id, "git", json!({"args": ["log", "--format=%an: %s"]})).await;
    assert_eq!(log, "tracebox agent: agent's change\ntest: first\n");

    let trajectory = server.trajectory(&id).await;
    assert_eq!(trajectory["sandbox_id"], id.as_str());
    let tools = tools_of(&trajectory);
    assert_eq!(tools.len(), 21, "every call that answered, failures included, in order: {tools:?}");
    assert_eq!(&tools[..3], ["file_read", "file_read", "file_read"]);
    assert_eq!(tools.last(), Some(&"git"));
    assert_eq!(trajectory["steps"][0]["params"], json!({"path": "src/app.py", "start_line": 2, "end_line": 3}));
    assert_eq!(trajectory["steps"][0]["output"], "line_2 = 2\nline_3 = 3\n");
    assert!(trajectory["steps"][0]["duration_ms"].as_f64().unwrap() > 0.0);

    let (status, traj) = server.get_json(&format!("/sandboxes/{id}/trajectory?format=swe-agent")).await;
    assert_eq!(status, 200, "{traj}");
    assert_eq!(traj["trajectory"].as_array().unwrap().len(), 21);
    assert_eq!(traj["trajectory"][10]["action"], "echo one; echo two >&2; echo three", "{traj}");
    let (status, bad) = server.get_json(&format!("/sandboxes/{id}/trajectory?format=yaml")).await;
    assert_eq!((status, code(&bad)), (400, "invalid_query"), "{bad}");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_replay_agrees_step_by_step_until_a_step_was_tampered_with_or_a_file_changed() {
    let repo = Repo::new();
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({"repo": {"url": repo.url(), "commit": repo.first}})).await;
    server.ok(&id, "file_write", json!({"path": "notes.txt", "content": "todo\n"})).await;
    server.ok(&id, "shell", json!({"command": "wc -l < src/app.py"})).await;
    server.ok(&id, "search", json!({"pattern": "todo"})).await;
    server.ok(&id, "shell", json!({"command": "date +%s%N"})).await;
    server.ok(&id, "git", json!({"args": ["status", "--short"]})).await;
    server.ok(&id, "file_read", json!({"path": "README.md"})).await;
    let mut trajectory = server.trajectory(&id).await;
    assert_eq!(trajectory["steps"].as_array().unwrap().len(), 6);
    // The clock differs at every run: that step opts out of the comparison.
    trajectory["steps"][3]["compare"] = json!(false);

    // Replayed as recorded (after a reset to the creation state): nothing diverges.
    let (status, same) = server.replay(&id, json!({"trajectory": trajectory})).await;
    assert_eq!(status, 200, "{same}");
    assert_eq!((&same["success"], &same["divergence_step"]), (&json!(true), &json!(-1)), "{same}");
    let steps = same["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6);
    assert!(steps.iter().all(|s| s["diverged"] == false), "{same}");
    assert_eq!(steps[1]["expected_output"], steps[1]["output"]);
    assert_ne!(steps[3]["expected_output"], steps[3]["output"], "the clock moved, and was not compared");
    assert_eq!(steps[3]["compare"], false);

    // A replay is traced under the sandbox, and its calls are not the sandbox's trajectory.
    let replay_trace = server.trace(same["trace_id"].as_str().unwrap()).await;
    assert_eq!(replay_trace["kind"], "replay", "{replay_trace}");
    assert_eq!(replay_trace["children"].as_array().unwrap().iter().filter(|c| c["kind"] == "tool").count(), 6);
    assert_eq!(server.trajectory(&id).await["steps"].as_array().unwrap().len(), 6, "a replay adds no step");

    // A tampered output diverges at that step.
    let mut tampered = trajectory.clone();
    tampered["steps"][1]["output"] = json!("99\n");
    let (_, report) = server.replay(&id, json!({"trajectory": tampered})).await;
    assert_eq!((&report["success"], &report["divergence_step"]), (&json!(false), &json!(1)), "{report}");
    assert_eq!(report["steps"][1]["expected_output"], "99\n");
    assert_eq!(report["steps"][1]["output"], "100\n");
    // Trailing whitespace is not a difference.
    let mut spaced = trajectory.clone();
    spaced["steps"][1]["output"] = json!("100   \n\n");
    let (_, report) = server.replay(&id, json!({"trajectory": spaced})).await;
    assert_eq!(report["divergence_step"], -1, "{report}");

    // A file changed before a replay without a reset makes the later step that reads it diverge.
    server.ok(&id, "file_write", json!({"path": "README.md", "content": "someone else's edit\n"})).await;
    let mut from_step_one = trajectory.clone();
    from_step_one["steps"].as_array_mut().unwrap().remove(0);
    let (_, report) = server.replay(&id, json!({"trajectory": from_step_one, "reset": false})).await;
    // (git status, step 3, is the first to see it; the README read, step 4, too.)
    assert_eq!(report["divergence_step"], 3, "{report}");
    let diverged: Vec<bool> = report["steps"].as_array().unwrap().iter().map(|s| s["diverged"] == true).collect();
    assert_eq!(diverged, [false, false, false, true, true], "{report}");

    // A trajectory that cannot be replayed is refused whole, naming the step, and runs nothing.
    let before = server.trajectory(&id).await["steps"].as_array().unwrap().len();
    let mut broken = trajectory.clone();
    broken["steps"][2]["tool_name"] = json!("rm_rf");
    let (status, refused) = server.replay(&id, json!({"trajectory": broken})).await;
    assert_eq!((status, code(&refused)), (400, "invalid_sandbox"), "{refused}");
    assert!(message(&refused).starts_with("`trajectory.steps[2]`: no tool `rm_rf`"), "{refused}");
    let (status, refused) = server.replay(&id, json!({"trajectory": {"steps": []}})).await;
    assert_eq!((status, code(&refused)), (400, "invalid_sandbox"), "{refused}");
    assert_eq!(server.trajectory(&id).await["steps"].as_array().unwrap().len(), before);
    server.delete(&id).await;
}

#[tokio::test]
async fn what_the_tools_refuse_is_a_clear_400_and_makes_no_step() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.ok(&id, "shell", json!({"command": "git init --quiet ."})).await;
    let refused_git = [
        json!(["-c", "core.pager=sh -c id", "log"]),
        json!(["log", "-c", "core.pager=id"]),
        json!(["diff", "--ext-diff"]),
        json!(["log", "--exec-path=/tmp"]),
        json!(["status", "--git-dir=/etc"]),
        json!(["diff", "--no-index", "/etc/passwd", "x"]),
        json!(["diff", "--output=/tmp/x"]),
        json!(["push", "origin"]),
        json!(["config", "core.pager", "id"]),
        json!(["clone", "--upload-pack=id", "x"]),
        json!([]),
    ];
    for args in refused_git {
        let (status, reply) = server.tool(&id, "git", json!({ "args": args })).await;
        assert_eq!((status, code(&reply)), (400, "invalid_sandbox"), "git {args}: {reply}");
    }
    for (tool, params) in [
        ("file_read", json!({"path": "../etc/passwd"})),
        ("file_read", json!({"path": "/etc/passwd"})),
        ("file_write", json!({"path": "/etc/x", "content": "x"})),
        ("file_write", json!({"path": "../x", "content": "x"})),
        ("search", json!({"pattern": "root", "path": "/etc"})),
        ("search", json!({"pattern": "root", "path": "../../etc"})),
    ] {
        let (status, reply) = server.tool(&id, tool, params.clone()).await;
        assert_eq!((status, code(&reply)), (400, "bad_path"), "{tool} {params}: {reply}");
    }
    for (tool, params, says) in [
        ("file_read", json!({"path": "a", "line": 1}), "unknown field `line`"),
        ("shell", json!({"cmd": "ls"}), "shell takes"),
        ("search", json!({"pattern": ""}), "empty"),
        ("file_read", json!({"path": "a", "start_line": 0}), "from 1"),
    ] {
        let (status, reply) = server.tool(&id, tool, params.clone()).await;
        assert_eq!((status, code(&reply)), (400, "invalid_sandbox"), "{tool} {params}: {reply}");
        assert!(message(&reply).contains(says), "{reply}");
    }
    let (status, reply) = server.tool(&id, "exec", json!({})).await;
    assert_eq!((status, code(&reply)), (404, "no_such_tool"), "{reply}");
    assert!(message(&reply).contains("file_read, file_write, shell, search and git"), "{reply}");
    // The shell tool is screened as commands are.
    let (status, reply) = server.tool(&id, "shell", json!({"command": ":(){ :|:& };:"})).await;
    assert_eq!((status, code(&reply)), (403, "blocked_by_policy"), "{reply}");

    let trajectory = server.trajectory(&id).await;
    assert_eq!(tools_of(&trajectory), ["shell"], "only the call that ran is a step: {trajectory}");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_search_stops_at_its_bound_and_says_it_was_cut() {
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.ok(&id, "shell", json!({"command": "for i in $(seq 1 200); do echo needle > f$i.txt; done"})).await;
    let (_, at) = server.tool(&id, "search", json!({"pattern": "needle"})).await;
    assert_eq!(
        (at["output"].as_str().unwrap().lines().count(), &at["truncated"]),
        (200, &Value::Null),
        "200 is within the bound"
    );
    server.ok(&id, "shell", json!({"command": "echo needle > f201.txt"})).await;
    let (_, over) = server.tool(&id, "search", json!({"pattern": "needle"})).await;
    assert_eq!((over["output"].as_str().unwrap().lines().count(), &over["truncated"]), (200, &json!(true)), "{over}");
    assert!(over["output"].as_str().unwrap().starts_with("f1.txt:1:needle\nf10.txt:1:needle\n"), "sorted by path");
    server.delete(&id).await;
}

#[tokio::test]
async fn a_repository_that_cannot_be_set_up_is_a_clear_error_and_leaves_nothing_behind() {
    let repo = Repo::new();
    let server = SandboxServer::spawn().await;
    let missing = repo.dir.path().join("missing");
    for (repository, status, error_code, says) in [
        (json!({"url": "ext::sh -c 'touch /tmp/pwned'", "commit": "main"}), 400, "invalid_repo", "ext::"),
        (json!({"url": "--upload-pack=touch /tmp/pwned", "commit": "main"}), 400, "invalid_repo", "option"),
        (json!({"url": "relative/repo", "commit": "main"}), 400, "invalid_repo", "absolute"),
        (json!({"url": repo.url(), "commit": "--orphan=x"}), 400, "invalid_repo", "option"),
        (json!({"url": missing.display().to_string(), "commit": "main"}), 422, "repo_failed", "cloning"),
        (
            json!({"url": repo.url(), "commit": "0123456789abcdef0123456789abcdef01234567"}),
            422,
            "repo_failed",
            "no commit",
        ),
    ] {
        let (got, reply) = server.post("/sandboxes", json!({ "repo": repository })).await;
        assert_eq!((got, code(&reply)), (status, error_code), "{repository}: {reply}");
        assert!(message(&reply).contains(says), "{reply}");
    }
    assert!(!Path::new("/tmp/pwned").exists());

    // Larger than the sandbox's disk: refused by size, the clone removed.
    let big = tempfile::tempdir().unwrap();
    git(big.path(), &["init", "--quiet"]);
    let noise: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(big.path().join("noise.bin"), noise).unwrap();
    git(big.path(), &["add", "."]);
    git(big.path(), &["commit", "--quiet", "-m", "big"]);
    let (status, reply) =
        server.post("/sandboxes", json!({"repo": {"url": big.path().display().to_string()}, "disk_mb": 1})).await;
    assert_eq!((status, code(&reply)), (422, "repo_failed"), "{reply}");
    assert!(message(&reply).contains("disk_mb (1)"), "{reply}");

    // A setup command that fails: 422 naming it, with its output and trace; no sandbox kept.
    let (status, reply) = server
        .post("/sandboxes", json!({"repo": {"url": repo.url(), "commit": repo.second}, "setup": ["true", "echo broken build >&2; exit 4"]}))
        .await;
    assert_eq!((status, code(&reply)), (422, "setup_failed"), "{reply}");
    assert!(message(&reply).contains("setup command 1") && message(&reply).contains("broken build"), "{reply}");
    assert!(reply["trace_id"].is_string(), "{reply}");
    let (status, too_many) = server.post("/sandboxes", json!({"setup": vec!["true"; 33]})).await;
    assert_eq!((status, code(&too_many)), (400, "invalid_sandbox"), "{too_many}");
    assert!(message(&too_many).contains("33 commands, more than the 32 allowed"), "{too_many}");
    let at_the_bound = server.sandbox(json!({"setup": vec!["true"; 32]})).await;
    server.delete(&at_the_bound).await;

    let (_, listed) = server.get_json("/sandboxes").await;
    assert_eq!(listed["sandboxes"], json!([]), "nothing is left: {listed}");
    server.no_sandbox_containers().await;
    assert_eq!(server.snapshot_files(), Vec::<String>::new());
    let clones: Vec<_> = std::fs::read_dir(server.data_dir.join("clones")).map(|d| d.collect()).unwrap_or_default();
    assert!(clones.is_empty(), "no clone left: {clones:?}");
}

#[tokio::test]
async fn a_repository_and_uploads_together_keep_long_symlink_targets_and_secrets_stay_out_of_the_trajectory() {
    let repo = Repo::new();
    let long_target = format!("{}/target.txt", "a-directory-with-a-long-name".repeat(5));
    std::os::unix::fs::symlink(&long_target, repo.dir.path().join("link")).unwrap();
    git(repo.dir.path(), &["add", "link"]);
    git(repo.dir.path(), &["commit", "--quiet", "-m", "a long link"]);
    let server = SandboxServer::spawn().await;
    let part = reqwest::multipart::Part::bytes(b"uploaded\n".to_vec()).file_name("extra.txt");
    let form = reqwest::multipart::Form::new().part("file", part);
    let response = server.client.post(server.url("/upload")).multipart(form).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());

    let id = server.sandbox(json!({"repo": {"url": repo.url()}, "files": ["extra.txt"]})).await;
    assert_eq!(server.ok(&id, "shell", json!({"command": "readlink link"})).await, format!("{long_target}\n"));
    assert_eq!(server.ok(&id, "file_read", json!({"path": "extra.txt"})).await, "uploaded\n");

    // A secret in a command, git's args or a pattern is redacted in what the trajectory keeps.
    let secret = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789";
    server.ok(&id, "shell", json!({"command": format!("echo {secret} > /dev/null")})).await;
    server.ok(&id, "search", json!({"pattern": secret})).await;
    let trajectory = server.trajectory(&id).await.to_string();
    assert!(!trajectory.contains("abcdefghijklmnop"), "{trajectory}");
    server.delete(&id).await;
}
