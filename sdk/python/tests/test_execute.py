"""One-shot runs: ``tracebox.execute()``, ``Client.execute()`` and ``AsyncClient.execute()``,
over HTTP and streamed over the WebSocket."""

from __future__ import annotations

import asyncio
import time

import pytest

import tracebox


def test_module_level_execute_takes_url_and_key_from_the_environment(server):
    result = tracebox.execute("print(6 * 7)")
    assert isinstance(result, tracebox.Execution)
    assert (result.status, result.exit_code, result.stdout, result.stderr) == ("success", 0, "42\n", "")
    assert result.ok and result.trace_id
    assert not (result.timed_out or result.oom_killed or result.truncated)


def test_execute_sends_stdin_env_files_and_limits(client):
    uploaded = client.files.upload(b"a,b\n1,2\n3,4\n", name="exec-data.csv", overwrite=True)
    code = (
        "import csv, os\n"
        "rows = list(csv.reader(open('exec-data.csv')))\n"
        "print(len(rows), os.environ['GREETING'], input())\n"
    )
    result = client.execute(
        code,
        language="python",
        stdin="ada\n",
        env={"GREETING": "hi"},
        files=[uploaded.name],
        timeout=20,
        memory_mb=128,
    )
    assert result.stdout == "3 hi ada\n", result


def test_node_and_failures_are_results_not_exceptions(client):
    node = client.execute("console.log([1, 2, 3].map(x => x * 2).join(','))", language="node")
    assert node.stdout == "2,4,6\n"

    failed = client.execute("import sys\nprint('partial')\nsys.exit(3)")
    assert (failed.status, failed.exit_code, failed.stdout, failed.ok) == ("error", 3, "partial\n", False)

    slow = client.execute("import time\ntime.sleep(30)", timeout=1)
    assert slow.status == "timeout" and slow.timed_out


def test_artifacts_come_back_and_download(client):
    code = "import os\nos.makedirs('out', exist_ok=True)\nopen('out/result.txt', 'w').write('42\\n')"
    result = client.execute(code)
    assert [a.name for a in result.artifacts] == ["out/result.txt"]
    artifact = result.artifacts[0]
    assert artifact.size == 3 and artifact.url
    assert client.files.download_artifact(artifact) == b"42\n"


def test_streaming_hands_output_to_the_callbacks_as_it_comes(client):
    seen: list[tuple[float, str, str]] = []
    code = (
        "import sys, time\n"
        "print('first', flush=True)\n"
        "print('oops', file=sys.stderr, flush=True)\n"
        "time.sleep(0.6)\n"
        "print('second', flush=True)\n"
    )
    result = client.execute(
        code,
        on_stdout=lambda data: seen.append((time.monotonic(), "out", data)),
        on_stderr=lambda data: seen.append((time.monotonic(), "err", data)),
    )
    assert (result.status, result.stdout, result.stderr) == ("success", "first\nsecond\n", "oops\n")
    assert result.trace_id
    outs = [(t, d) for t, kind, d in seen if kind == "out"]
    assert [d for _, d in outs] == ["first\n", "second\n"]
    assert outs[1][0] - outs[0][0] > 0.4, "the first line came before the program ended"
    assert [d for _, kind, d in seen if kind == "err"] == ["oops\n"]


def test_streamed_run_with_stdin_and_a_timeout(client):
    chunks: list[str] = []
    result = client.execute("print(input()[::-1])", stdin="olleh\n", on_stdout=chunks.append)
    assert "".join(chunks) == result.stdout == "hello\n"
    slow = client.execute("import time\ntime.sleep(30)", timeout=1, on_stdout=chunks.append)
    assert slow.status == "timeout"


def test_blocked_code_raises_policy_blocked_with_its_rules(client):
    with pytest.raises(tracebox.PolicyBlocked) as caught:
        client.execute("import subprocess\nsubprocess.run(['ls'])")
    error = caught.value
    assert (error.status, error.code) == (403, "blocked_by_policy")
    assert error.rules == ["python.subprocess"] and error.trace_id
    assert isinstance(error, tracebox.Forbidden) and isinstance(error, tracebox.TraceboxError)
    assert client.traces.get(error.trace_id).status == "blocked"

    # The same refusal over the WebSocket: a `blocked` frame, the same exception.
    with pytest.raises(tracebox.PolicyBlocked) as streamed:
        client.execute("import subprocess", on_stdout=print)
    assert streamed.value.rules == ["python.subprocess"] and streamed.value.trace_id


def test_unknown_fields_are_sent_as_given(client):
    # `**fields` reaches the request body (the hook for fields this SDK does not name yet, such
    # as handler mode's `handler` and `event`): the server names the one it does not know.
    with pytest.raises(tracebox.InvalidRequest) as caught:
        client.execute("print(1)", not_a_field=True)
    assert caught.value.code == "invalid_json" and "not_a_field" in caught.value.message
    with pytest.raises(tracebox.InvalidRequest) as streamed:
        client.execute("print(1)", not_a_field=True, on_stdout=print)
    assert streamed.value.code == "invalid_message" and "not_a_field" in streamed.value.message


def test_refusals_of_a_request_name_the_field(client):
    with pytest.raises(tracebox.InvalidRequest) as caught:
        client.execute("print(1)", language="cobol")
    assert (caught.value.status, caught.value.code) == (400, "unknown_language")
    with pytest.raises(tracebox.PayloadTooLarge) as large:
        client.execute("#" * (300 * 1024))
    assert (large.value.status, large.value.code) == (413, "code_too_large")


async def test_async_execute_plain_and_streamed(aclient):
    result = await aclient.execute("print(sum(range(10)))")
    assert (result.status, result.stdout) == ("success", "45\n")

    seen: list[str] = []

    async def on_stdout(data: str) -> None:  # a coroutine callback is awaited
        await asyncio.sleep(0)
        seen.append(data)

    errors: list[str] = []
    streamed = await aclient.execute(
        "import sys\nprint('a')\nprint('b', file=sys.stderr)\nprint('c')",
        on_stdout=on_stdout,
        on_stderr=errors.append,  # a plain function works too
    )
    assert "".join(seen) == streamed.stdout == "a\nc\n"
    assert errors == ["b\n"]


async def test_async_execute_blocked_and_in_parallel(aclient):
    with pytest.raises(tracebox.PolicyBlocked) as caught:
        await aclient.execute("const cp = require('child_process')", language="node")
    assert caught.value.rules and caught.value.trace_id

    results = await asyncio.gather(*(aclient.execute(f"print({i} * 2)") for i in range(3)))
    assert [r.stdout for r in results] == ["0\n", "2\n", "4\n"]
