//! What runs in a stateful sandbox: commands (`bash -c`, with stdin, env, cwd and a timeout)
//! and code cells for its persistent interpreter (Python and Node). Each ends alone; the
//! sandbox, its files and its interpreter's variables stay.

use serde_json::json;

use crate::common::sandboxes::SandboxServer;

#[tokio::test]
async fn a_sandbox_survives_many_commands_that_write_to_stdout_and_stderr_as_they_end() {
    // Each command's end (its pipes closing, SIGCHLD) comes in one wake-up of the supervisor;
    // whatever order it handles them in, the sandbox goes on.
    let server = SandboxServer::spawn().await;
    let id = server.sandbox(json!({})).await;
    server.sh(&id, "echo kept > marker").await;
    for n in 0..60 {
        let reply = server.command(&id, &format!("echo out {n}; echo err {n} >&2")).await;
        assert_eq!(reply["status"], "success", "command {n}: {reply}");
        assert_eq!(
            (reply["stdout"].as_str(), reply["stderr"].as_str()),
            (Some(&*format!("out {n}\n")), Some(&*format!("err {n}\n"))),
            "command {n}: {reply}"
        );
    }
    assert_eq!(server.sh(&id, "cat marker").await, "kept\n");
    server.delete(&id).await;
}
