"""``client.traces``, ``client.files``, ``client.claude()``, ``client.health()``: sync and async."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest

import tracebox


def test_traces_list_filter_page_get_and_output(client):
    marker = f"marker_{uuid.uuid4().hex[:10]}"
    ran = [client.execute(f"print('{marker}', {i})") for i in range(3)]
    failed = client.execute(f"import sys\nprint('{marker} failing')\nsys.exit(1)")

    page = client.traces.list(q=marker)
    assert isinstance(page, tracebox.TracePage)
    assert [t.id for t in page] == [failed.trace_id] + [r.trace_id for r in reversed(ran)], "newest first"
    assert all(t.kind == "execution" and t.language == "python" for t in page)
    first = page.traces[0]
    assert isinstance(first, tracebox.TraceSummary) and first.started_at is not None and first.tenant == "sdk"

    assert [t.id for t in client.traces.list(q=marker, status="error")] == [failed.trace_id]
    assert len(client.traces.list(q=marker, kind="execution", language="python")) == 4

    one = client.traces.list(q=marker, limit=1)
    assert len(one) == 1 and one.next_cursor
    two = client.traces.list(q=marker, limit=1, cursor=one.next_cursor)
    assert two.traces[0].id != one.traces[0].id
    assert [t.id for t in client.traces.iter(q=marker, limit=2)] == [t.id for t in page], "iter walks every page"

    trace = client.traces.get(ran[0].trace_id)
    assert isinstance(trace, tracebox.Trace)
    assert trace.id == ran[0].trace_id and trace.status == "success" and trace.exit_code == 0
    assert marker in trace.input["code"] and trace.events
    assert client.traces.output(ran[0].trace_id) == f"{marker} 0\n"


def test_a_sandbox_trace_has_its_steps_as_children(client):
    with tracebox.Sandbox.create(client=client) as sbx:
        sbx.commands.run("echo one")
        sbx.run_code("2")
    trace = client.traces.get(sbx.trace_id)
    assert trace.kind == "sandbox" and trace.children_total >= 2
    assert {"command", "cell"} <= {c.kind for c in trace.children}
    window = client.traces.get(sbx.trace_id, children_from=1, children_limit=1)
    assert len(window.children) == 1 and window.children_total == trace.children_total


def test_files_upload_list_download_delete(client, tmp_path: Path):
    name = f"up-{uuid.uuid4().hex[:8]}.txt"
    local = tmp_path / name
    local.write_text("from a path\n")
    first = client.files.upload(local)
    assert isinstance(first, tracebox.UploadedFile)
    assert (first.name, first.size, first.requested_name) == (name, 12, None)
    assert first.sha256 and first.trace_id

    # A taken name is numbered, unless overwrite=True.
    second = client.files.upload(b"from bytes\n", name=name)
    assert second.name != name and second.requested_name == name
    replaced = client.files.upload(io.BytesIO(b"from a file object\n"), name=name, overwrite=True)
    assert replaced.name == name

    listed = {f.name: f for f in client.files.list()}
    assert {name, second.name} <= set(listed)
    assert listed[name].size == len(b"from a file object\n") and listed[name].uploaded_at is not None

    target = tmp_path / "copy.txt"
    assert client.files.download(name, target) == b"from a file object\n"
    assert target.read_bytes() == b"from a file object\n"
    assert client.execute(f"print(open('{name}').read(), end='')", files=[name]).stdout == "from a file object\n"

    client.files.delete(name)
    client.files.delete(second.name)
    assert name not in {f.name for f in client.files.list()}
    with pytest.raises(tracebox.NotFound) as caught:
        client.files.delete(name)
    assert caught.value.code == "no_such_file"
    with pytest.raises(tracebox.InvalidRequest) as bad:
        client.files.upload(b"x", name="../escape.txt")
    assert bad.value.code == "invalid_file_name"


def test_claude_with_execute_runs_the_code_of_the_reply(client):
    reply = client.claude("Write Python that prints the 10th prime", execute=True)
    assert isinstance(reply, tracebox.ClaudeReply)
    assert "```python" in reply.text and reply.stop_reason == "end_turn" and reply.trace_id
    assert reply.usage["input_tokens"] == 12 and reply.model
    assert [e.stdout for e in reply.executions] == ["29\n"]
    assert isinstance(reply.executions[0], tracebox.Execution) and reply.executions[0].ok
    call = client.traces.get(reply.trace_id)
    assert call.kind == "claude" and [c.id for c in call.children] == [reply.executions[0].trace_id]

    without = client.claude("Same again", system="Be brief.", max_tokens=200)
    assert without.executions == [] and "print(29)" in without.text


def test_health_says_auth_is_on(client):
    health = client.health()
    assert health["status"] == "ok" and health["auth"]["mode"] == "keys"


async def test_async_traces_files_claude_token_health(aclient, tmp_path: Path):
    marker = f"amarker_{uuid.uuid4().hex[:10]}"
    ran = await aclient.execute(f"print('{marker}')")
    page = await aclient.traces.list(q=marker)
    assert [t.id for t in page] == [ran.trace_id]
    assert [t.id async for t in aclient.traces.iter(q=marker)] == [ran.trace_id]
    trace = await aclient.traces.get(ran.trace_id)
    assert trace.kind == "execution" and marker in trace.input["code"]
    assert await aclient.traces.output(ran.trace_id) == f"{marker}\n"

    name = f"async-{uuid.uuid4().hex[:8]}.bin"
    uploaded = await aclient.files.upload(b"\x00\x01", name=name)
    assert uploaded.name == name and uploaded.size == 2
    assert name in [f.name for f in await aclient.files.list()]
    assert await aclient.files.download(name) == b"\x00\x01"
    await aclient.files.delete(name)
    with pytest.raises(tracebox.NotFound):
        await aclient.files.download(name)

    artifact_run = await aclient.execute("import os\nos.makedirs('out')\nopen('out/a.txt','w').write('A')")
    assert await aclient.files.download_artifact(artifact_run.artifacts[0], tmp_path / "a.txt") == b"A"

    reply = await aclient.claude("print the 10th prime", execute=True)
    assert [e.stdout for e in reply.executions] == ["29\n"]

    token = await aclient.token(expires_in=60, read_only=True)
    assert token.read_only and token.expires_in == 60
    async with tracebox.AsyncClient(api_key=token.token) as reader:
        assert len(await reader.traces.list(q=marker)) == 1
        with pytest.raises(tracebox.Forbidden):
            await reader.files.upload(b"x", name="nope.txt")

    assert (await aclient.health())["status"] == "ok"
