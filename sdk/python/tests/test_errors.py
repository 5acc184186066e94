"""Errors as exceptions carrying the API's code, status and trace; keys; what is retried."""

from __future__ import annotations

import builtins
import http.server
import json
import threading
import time

import pytest

import tracebox


def test_a_wrong_or_missing_key_is_unauthorized(server):
    with tracebox.Client(api_key="tbx_0000000000000000_wrong") as wrong:
        with pytest.raises(tracebox.Unauthorized) as caught:
            wrong.execute("print(1)")
        assert (caught.value.status, caught.value.code) == (401, "unauthorized")
        # The WebSocket refuses it at the upgrade, with the same exception.
        with pytest.raises(tracebox.Unauthorized):
            wrong.execute("print(1)", on_stdout=print)
        with pytest.raises(tracebox.Unauthorized):
            tracebox.Sandbox.list(client=wrong)
    with tracebox.Client(api_key="") as anonymous:  # "" means no key, not TRACEBOX_API_KEY
        with pytest.raises(tracebox.Unauthorized):
            anonymous.traces.list()
    assert "tbx_" not in repr(tracebox.Client())  # the key is never shown


async def test_a_wrong_key_is_unauthorized_async(server):
    async with tracebox.AsyncClient(api_key="tbx_0000000000000000_wrong") as wrong:
        with pytest.raises(tracebox.Unauthorized):
            await wrong.execute("print(1)")
        with pytest.raises(tracebox.Unauthorized):
            await wrong.execute("print(1)", on_stdout=print)


def test_over_the_keys_rate_is_rate_limited_with_retry_after(server):
    with tracebox.Client(api_key=server.slow_key) as slow:
        with pytest.raises(tracebox.RateLimited) as caught:
            for _ in range(10):
                slow.files.list()
        error = caught.value
        assert (error.status, error.code) == (429, "rate_limited")
        assert error.retry_after is not None and error.retry_after >= 1
        time.sleep(error.retry_after)
        assert isinstance(slow.files.list(), list), "after Retry-After the key is served again"


async def test_over_the_keys_rate_is_rate_limited_async(server):
    async with tracebox.AsyncClient(api_key=server.slow_key) as slow:
        with pytest.raises(tracebox.RateLimited) as caught:
            for _ in range(10):
                await slow.traces.list(limit=1)
        assert caught.value.retry_after is not None and caught.value.retry_after >= 1


def test_unknown_things_are_not_found(client, server):
    with pytest.raises(tracebox.NotFound) as caught:
        tracebox.Sandbox.connect("sbx_doesnotexist")
    assert (caught.value.status, caught.value.code) == (404, "no_such_sandbox")
    with pytest.raises(tracebox.NotFound) as trace:
        client.traces.get("01a20000-0000-7000-8000-000000000000")
    assert trace.value.code == "no_such_trace"
    with pytest.raises(tracebox.NotFound) as file:
        client.files.download("never-uploaded.txt")
    assert file.value.code == "no_such_file"

    # Another tenant's sandbox answers exactly as a missing one.
    with tracebox.Sandbox.create() as sbx:
        with pytest.raises(tracebox.NotFound):
            tracebox.Sandbox.connect(sbx.sandbox_id, api_key=server.other_key)
        assert sbx.sandbox_id not in [s.sandbox_id for s in tracebox.Sandbox.list(api_key=server.other_key)]


def test_tokens_are_keys_with_less_reach(client):
    with tracebox.Sandbox.create(client=client) as sbx:
        token = client.token(expires_in=120, sandbox=sbx)
        assert token.token.startswith("tbt_") and token.sandbox == sbx.sandbox_id
        assert token.expires_in == 120 and token.expires_at is not None and token.tenant == "sdk"
        assert "tbt_" not in repr(token)
        # Enough for its sandbox...
        scoped = tracebox.Sandbox.connect(sbx.sandbox_id, api_key=token.token)
        try:
            assert scoped.commands.run("echo scoped").stdout == "scoped\n"
            # ...and nothing else.
            with pytest.raises(tracebox.Forbidden) as caught:
                scoped.client.traces.list()
            assert (caught.value.status, caught.value.code) == (403, "forbidden")
        finally:
            scoped.client.close()  # let go of the connection; the sandbox is the outer block's

        reader = client.token(read_only=True)
        assert reader.read_only and reader.sandbox is None
        with tracebox.Client(api_key=reader.token) as read_only:
            assert isinstance(read_only.traces.list(limit=1), tracebox.TracePage)
            with pytest.raises(tracebox.Forbidden):
                read_only.execute("print(1)")
        assert sbx.is_running()


def test_a_client_timeout_is_a_timeout_error(server):
    with tracebox.Client(timeout=0.5) as impatient:
        with pytest.raises(tracebox.TimeoutError) as caught:
            impatient.execute("import time\ntime.sleep(3)")
        assert caught.value.code == "read_timeout" and caught.value.status is None
        assert isinstance(caught.value, builtins.TimeoutError)
        with pytest.raises(tracebox.TimeoutError):
            impatient.execute("import time\ntime.sleep(3)", on_stdout=print)
        # A run given its own timeout gets that much more time from the client.
        assert impatient.execute("import time\ntime.sleep(1)\nprint('done')", timeout=5).stdout == "done\n"


def test_a_server_that_is_not_there_is_unavailable():
    with tracebox.Client(url="http://127.0.0.1:9", retries=1) as nowhere:
        started = time.monotonic()
        with pytest.raises(tracebox.ServerUnavailable) as caught:
            nowhere.execute("print(1)")
        assert caught.value.code == "connect_failed" and caught.value.status is None
        with pytest.raises(tracebox.ServerUnavailable):
            nowhere.execute("print(1)", on_stdout=print)
        assert time.monotonic() - started < 10


def test_a_failed_setup_is_setup_failed(client):
    with pytest.raises(tracebox.SetupFailed) as caught:
        tracebox.Sandbox.create(client=client, setup=["echo preparing", "exit 3"])
    assert (caught.value.status, caught.value.code) == (422, "setup_failed")
    assert caught.value.trace_id and "exit 3" in caught.value.message
    assert isinstance(caught.value, tracebox.InvalidRequest)


# -- what is retried, against a server scripted to refuse -------------------------------------


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers each request with the next (status, code, headers) of ``script``."""

    script: list[tuple[int, str, dict[str, str]]] = []
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).seen.append(self.path)
        status, code, headers = type(self).script.pop(0)
        if code == "html":  # a proxy's page, say: not the API
            data = b"<html>502 Bad Gateway</html>"
        elif status == 200:
            body = {"trace_id": "t1", "status": "success", "exit_code": 0, "stdout": "ok\n", "stderr": ""}
            data = json.dumps(body).encode()
        else:
            body = {"error": {"code": code, "message": f"scripted {code}"}, "trace_id": None}
            data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Scripted.seen = []
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("script", "attempts", "outcome"),
    [
        # Refused before anything ran: sent again (after Retry-After), then served.
        ([(503, "busy", {"retry-after": "0"}), (200, "", {})], 2, None),
        ([(503, "sandbox_unavailable", {}), (503, "busy", {}), (200, "", {})], 3, None),
        # ...but only `retries` times.
        ([(503, "busy", {})] * 3, 3, tracebox.ServerUnavailable),
        # Anything else is raised at once: the request may have run, or retrying would not help.
        ([(503, "claude_unavailable", {"retry-after": "1"})], 1, tracebox.ServerUnavailable),
        ([(500, "internal_error", {})], 1, tracebox.ServerError),
        ([(429, "rate_limited", {"retry-after": "2"})], 1, tracebox.RateLimited),
        ([(409, "sandbox_busy", {})], 1, tracebox.Conflict),
        # Something that is not tracebox's JSON.
        ([(200, "html", {})], 1, tracebox.ProtocolError),
        ([(502, "html", {})], 1, tracebox.ServerError),
    ],
)
def test_only_refusals_before_anything_ran_are_retried(scripted, script, attempts, outcome):
    _, url = scripted
    _Scripted.script = list(script)
    with tracebox.Client(url=url, api_key="k", retries=2) as client:
        if outcome is None:
            assert client.execute("print('ok')").stdout == "ok\n"
        else:
            with pytest.raises(outcome) as caught:
                client.execute("print('ok')")
            if outcome is tracebox.RateLimited:
                assert caught.value.retry_after == 2
    assert len(_Scripted.seen) == attempts
