"""Runs streamed over the WebSocket ``/ws`` (docs/api.md, "WebSocket"): one socket per run,
the key sent as ``Authorization: Bearer`` at the upgrade, output handed to the callbacks as
its frames arrive, and the run's result built from its ``exit`` frame and the joined output.

A callback that raises ends the run: the socket is closed, which kills the program and
removes its container (its trace ends ``killed``), and the exception propagates.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from . import errors
from ._transport import ConnectionConfig, _backoff, _retryable
from .errors import ProtocolError, ServerUnavailable, TraceboxError

T = TypeVar("T")

OutputCallback = Callable[[str], Any]
"""Called with each piece of output as it arrives (text, released at line ends)."""

AsyncOutputCallback = Callable[[str], Any | Awaitable[Any]]
"""For the async API: a plain function or a coroutine function."""

MAX_FRAME_BYTES = 64 * 1024 * 1024


class _Run:
    """The frames of one run, as they come: output to the callbacks, the end as a result or
    an exception."""

    def __init__(self, run_id: str) -> None:
        self.id = run_id
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.trace_id: str | None = None

    def take(self, text: str | bytes) -> tuple[str, Any]:
        """What a frame means: ("stdout"|"stderr", data), ("exit", frame), ("other", None);
        raises for ``blocked``, ``error`` and ``rejected``."""
        try:
            frame = json.loads(text)
        except ValueError as e:
            raise ProtocolError(f"the server sent a frame that is not JSON: {text!r:.200}", code="bad_reply") from e
        if not isinstance(frame, dict):
            raise ProtocolError(f"the server sent a frame that is not an object: {frame!r:.200}", code="bad_reply")
        kind = frame.get("type")
        if frame.get("id") not in (self.id, None):
            return ("other", None)
        if kind == "started":
            self.trace_id = frame.get("trace_id")
            return ("other", None)
        if kind in ("stdout", "stderr"):
            data = str(frame.get("data") or "")
            (self.stdout if kind == "stdout" else self.stderr).append(data)
            return (kind, data)
        if kind == "exit":
            return ("exit", frame)
        if kind in ("blocked", "error", "rejected"):
            raise errors.error_from_frame(frame)
        return ("other", None)

    def result(self, frame: Mapping[str, Any], build: Callable[[Mapping[str, Any]], T]) -> T:
        data = {k: v for k, v in frame.items() if k not in ("type", "id")}
        data["stdout"] = "".join(self.stdout)
        data["stderr"] = "".join(self.stderr)
        return build(data)


def _message(run_id: str, fields: Mapping[str, Any]) -> str:
    body = {"type": "execute", "id": run_id}
    body.update({k: v for k, v in fields.items() if v is not None})
    return json.dumps(body)


def _upgrade_error(error: Exception, url: str) -> TraceboxError:
    if isinstance(error, InvalidStatus):
        response = error.response
        try:
            body = json.loads(response.body or b"")
        except ValueError:
            body = None
        headers = {k: v for k, v in response.headers.raw_items()}
        return errors.error_from(
            status=response.status_code,
            body=body,
            headers=headers,
            text=(response.body or b"").decode("utf-8", "replace"),
        )
    if isinstance(error, (OSError, asyncio.TimeoutError, TimeoutError)):
        return ServerUnavailable(
            f"could not open a WebSocket to {url}: {error!r}. Is the server running, and is TRACEBOX_URL right?",
            code="connect_failed",
        )
    return ProtocolError(f"the WebSocket upgrade at {url} failed: {error!r}", code="bad_reply")


def _deadline(run_timeout: float | None, config: ConnectionConfig) -> float | None:
    if config.timeout is None or config.timeout <= 0:
        return None
    bound = config.timeout if run_timeout is None else max(config.timeout, run_timeout + 30.0)
    return time.monotonic() + bound


def _timed_out(url: str) -> TraceboxError:
    return errors.TimeoutError(
        f"the run streamed from {url} did not end within the client's timeout; it was stopped "
        "(the socket closed). Raise timeout= on the Client for longer work.",
        code="read_timeout",
    )


def run_sync(
    config: ConnectionConfig,
    fields: Mapping[str, Any],
    build: Callable[[Mapping[str, Any]], T],
    *,
    on_stdout: OutputCallback | None = None,
    on_stderr: OutputCallback | None = None,
    run_timeout: float | None = None,
) -> T:
    from websockets.sync.client import connect

    url = config.ws_url
    run = _Run(uuid.uuid4().hex[:12])
    attempt = 0
    while True:
        try:
            try:
                socket = connect(
                    url,
                    additional_headers=config.request_headers(),
                    user_agent_header=None,
                    open_timeout=10,
                    max_size=MAX_FRAME_BYTES,
                )
            except (InvalidHandshake, OSError, TimeoutError) as e:
                raise _upgrade_error(e, url) from e
            break
        except TraceboxError as error:
            if attempt >= config.retries or not _retryable(error):
                raise
            time.sleep(_backoff(attempt, error))
            attempt += 1
    deadline = _deadline(run_timeout, config)
    with socket:
        try:
            socket.send(_message(run.id, fields))
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise _timed_out(url)
                try:
                    text = socket.recv(timeout=left)
                except TimeoutError:
                    raise _timed_out(url) from None
                kind, value = run.take(text)
                if kind == "stdout" and on_stdout is not None:
                    on_stdout(value)
                elif kind == "stderr" and on_stderr is not None:
                    on_stderr(value)
                elif kind == "exit":
                    return run.result(value, build)
        except ConnectionClosed as e:
            raise ProtocolError(
                f"the WebSocket closed before the run ended ({e}); its trace {run.trace_id or '(none yet)'} "
                "says how it ended",
                code="connection_closed",
                trace_id=run.trace_id,
            ) from e


async def _call(callback: AsyncOutputCallback, value: str) -> None:
    outcome = callback(value)
    if inspect.isawaitable(outcome):
        await outcome


async def run_async(
    config: ConnectionConfig,
    fields: Mapping[str, Any],
    build: Callable[[Mapping[str, Any]], T],
    *,
    on_stdout: AsyncOutputCallback | None = None,
    on_stderr: AsyncOutputCallback | None = None,
    run_timeout: float | None = None,
) -> T:
    from websockets.asyncio.client import connect

    url = config.ws_url
    run = _Run(uuid.uuid4().hex[:12])
    attempt = 0
    while True:
        try:
            try:
                socket = await connect(
                    url,
                    additional_headers=config.request_headers(),
                    user_agent_header=None,
                    open_timeout=10,
                    max_size=MAX_FRAME_BYTES,
                )
            except (InvalidHandshake, OSError, asyncio.TimeoutError, TimeoutError) as e:
                raise _upgrade_error(e, url) from e
            break
        except TraceboxError as error:
            if attempt >= config.retries or not _retryable(error):
                raise
            await asyncio.sleep(_backoff(attempt, error))
            attempt += 1
    deadline = _deadline(run_timeout, config)
    async with socket:
        try:
            await socket.send(_message(run.id, fields))
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise _timed_out(url)
                try:
                    text = await asyncio.wait_for(socket.recv(), timeout=left)
                except (asyncio.TimeoutError, TimeoutError):
                    raise _timed_out(url) from None
                kind, value = run.take(text)
                if kind == "stdout" and on_stdout is not None:
                    await _call(on_stdout, value)
                elif kind == "stderr" and on_stderr is not None:
                    await _call(on_stderr, value)
                elif kind == "exit":
                    return run.result(value, build)
        except ConnectionClosed as e:
            raise ProtocolError(
                f"the WebSocket closed before the run ended ({e}); its trace {run.trace_id or '(none yet)'} "
                "says how it ended",
                code="connection_closed",
                trace_id=run.trace_id,
            ) from e
