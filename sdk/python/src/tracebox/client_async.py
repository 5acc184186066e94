"""``AsyncClient``: :class:`tracebox.Client` with ``await`` (same methods, same replies).
Callbacks may be plain functions or coroutine functions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from . import _api, _ws
from ._api import FileSource, clean, seg
from ._transport import AsyncTransport, ConnectionConfig
from .models import (
    Artifact,
    ClaudeReply,
    Execution,
    FileInfo,
    Token,
    Trace,
    TracePage,
    TraceSummary,
    UploadedFile,
)

__all__ = ["AsyncClient", "AsyncTraces", "AsyncFiles"]


class AsyncTraces:
    """``client.traces``: every run, call, upload and sandbox step is a trace."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def list(
        self,
        *,
        q: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        language: str | None = None,
        since: str | None = None,
        until: str | None = None,
        batch: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> TracePage:
        """One page of traces, newest first. ``q`` finds text in code and output; ``kind``
        (``execution``, ``sandbox``, ``tool``, ``claude``…), ``status``, ``language``,
        ``since``/``until`` (RFC 3339) and ``batch`` filter; ``limit`` 1–500 (50); ``cursor``
        is the previous page's ``next_cursor``."""
        params = clean(
            dict(
                q=q,
                status=status,
                kind=kind,
                language=language,
                since=since,
                until=until,
                batch=batch,
                limit=limit,
                cursor=cursor,
                format="json",
            )
        )
        return TracePage.from_dict(await self._t.json("GET", "/traces", params=params))

    async def iter(self, **filters: Any) -> AsyncIterator[TraceSummary]:
        """Every trace the filters match, page after page (``async for``)."""
        cursor = filters.pop("cursor", None)
        while True:
            page = await self.list(cursor=cursor, **filters)
            for trace in page.traces:
                yield trace
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def get(self, trace_id: str, *, children_from: int | None = None, children_limit: int | None = None) -> Trace:
        """One trace with its input, output, events and (a window of) its children."""
        params = clean(dict(format="json", children_from=children_from, children_limit=children_limit))
        return Trace.from_dict(await self._t.json("GET", f"/trace/{seg(trace_id)}", params=params))

    async def output(self, trace_id: str, stream: str = "stdout") -> str:
        """One stream of a trace as text: ``stdout``, ``stderr`` (a tool call's ``output``
        and ``diff``)."""
        return (await self._t.request("GET", f"/trace/{seg(trace_id)}/output/{seg(stream)}")).text


class AsyncFiles:
    """``client.files``: files uploaded to the server, which runs name in ``files=`` (they
    appear read-only under ``/workspace/``) and sandboxes copy in at creation."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def upload(self, file: FileSource, *, name: str | None = None, overwrite: bool = False) -> UploadedFile:
        """Upload a local path, bytes (``name=`` required) or an open file. A taken name gets a
        number (``data-1.csv``) unless ``overwrite=True``; the reply says the stored name."""
        filename, data = _api.read_source(file, name)
        params = {"overwrite": "true"} if overwrite else None
        body = await self._t.json(
            "POST", "/upload", params=params, files=[("file", (filename, data, "application/octet-stream"))]
        )
        files = body.get("files") or []
        if not files:
            from .errors import ProtocolError

            raise ProtocolError("the upload's reply names no file", code="bad_reply")
        return UploadedFile.from_dict(files[0], trace_id=body.get("trace_id"))

    async def download(self, name: str, path: str | Path | None = None) -> bytes:
        """The bytes of an uploaded file (also written to ``path`` when given)."""
        data = (await self._t.request("GET", f"/download/{seg(name)}")).content
        if path is not None:
            Path(path).write_bytes(data)
        return data

    async def download_artifact(self, artifact: Artifact | str, path: str | Path | None = None) -> bytes:
        """The bytes of a run's artifact (an :class:`Artifact` of ``Execution.artifacts``, or
        its ``url``)."""
        url = artifact.url if isinstance(artifact, Artifact) else str(artifact)
        data = (await self._t.request("GET", url)).content
        if path is not None:
            Path(path).write_bytes(data)
        return data

    async def list(self) -> list[FileInfo]:
        """The uploaded files, by name."""
        body = await self._t.json("GET", "/files")
        return [FileInfo.from_dict(f) for f in body.get("files") or []]

    async def delete(self, name: str) -> None:
        """Remove an uploaded file (:class:`tracebox.NotFound` when there is none)."""
        await self._t.request("DELETE", f"/files/{seg(name)}")


class AsyncClient:
    """A connection to a tracebox server, for ``asyncio`` (see :class:`tracebox.Client`).

    ``url`` and ``api_key`` default to ``TRACEBOX_URL`` (else ``http://127.0.0.1:5000``) and
    ``TRACEBOX_API_KEY``. ``timeout`` bounds each request in seconds (a run's own timeout is
    added); ``retries`` is how often a request refused before anything ran is sent again (see
    the README: connect errors and 503 ``busy``/``sandbox_unavailable`` only). Close it, or
    use it as an async context manager.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = None,
        retries: int | None = None,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = ConnectionConfig.resolve(url, api_key, timeout=timeout, retries=retries, headers=headers)
        self._t = AsyncTransport(self.config, http_client)
        self.traces = AsyncTraces(self._t)
        self.files = AsyncFiles(self._t)

    @property
    def url(self) -> str:
        return self.config.url

    async def execute(
        self,
        code: str,
        *,
        language: str | None = None,
        stdin: str | None = None,
        files: Sequence[str] | None = None,
        timeout: float | None = None,
        memory_mb: int | None = None,
        env: Mapping[str, str] | None = None,
        envs: Mapping[str, str] | None = None,
        on_stdout: _ws.AsyncOutputCallback | None = None,
        on_stderr: _ws.AsyncOutputCallback | None = None,
        **fields: Any,
    ) -> Execution:
        """Run ``code`` once in a fresh container and return how it went.

        ``language`` is ``python`` (default) or ``node`` (and their aliases); ``files`` names
        uploaded files to mount read-only under ``/workspace/``; ``timeout`` (seconds),
        ``memory_mb`` and ``env`` are capped by the server. With ``on_stdout`` or
        ``on_stderr`` the run is streamed over the WebSocket and each callback gets the output
        as it comes; the result is the same either way. Any other keyword is sent as a field
        of the request (for fields this SDK does not name yet, e.g. handler mode's ``handler``
        and ``event``); the reply's extra fields are in ``Execution.extra``.

        A program that fails is a result (``status`` ``error``, ``timeout``…); code the policy
        refuses raises :class:`tracebox.PolicyBlocked`.
        """
        body = _api.execute_body(
            code,
            language=language,
            stdin=stdin,
            files=files,
            timeout=timeout,
            memory_mb=memory_mb,
            env=_api.env_of(env, envs),
            extra=fields,
        )
        if on_stdout is not None or on_stderr is not None:
            return await _ws.run_async(
                self.config,
                {**body, "stdin_open": False},
                Execution.from_dict,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
                run_timeout=timeout,
            )
        return Execution.from_dict(await self._t.json("POST", "/execute", json=body, run_timeout=timeout))

    async def claude(
        self,
        prompt: str | None = None,
        *,
        execute: bool = False,
        messages: Sequence[Mapping[str, Any]] | None = None,
        system: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop_sequences: Sequence[str] | None = None,
        language: str | None = None,
        timeout: float | None = None,
        memory_mb: int | None = None,
        files: Sequence[str] | None = None,
        **fields: Any,
    ) -> ClaudeReply:
        """Ask Claude (through the server, which holds the Anthropic key and records the call
        as a trace). With ``execute=True`` the fenced code blocks of the reply run in the
        sandbox, each a child trace, their results in ``ClaudeReply.executions``."""
        body = clean(
            dict(
                prompt=prompt,
                messages=list(messages) if messages is not None else None,
                system=system,
                model=model,
                max_tokens=max_tokens,
                temperature=temperature,
                stop_sequences=list(stop_sequences) if stop_sequences is not None else None,
                execute=execute,
                language=language,
                timeout=timeout,
                memory_mb=memory_mb,
                files=list(files) if files is not None else None,
            )
        )
        body.update(fields)
        # Claude's answer, then each block's run: no client-side bound beyond the server's own.
        return ClaudeReply.from_dict(
            await self._t.json("POST", "/claude", json=body, timeout=httpx.Timeout(None, connect=10))
        )

    async def token(
        self,
        *,
        expires_in: int | None = None,
        sandbox: Any = None,
        read_only: bool | None = None,
    ) -> Token:
        """A short-lived signed token for this key (``POST /auth/token``), optionally limited
        to one sandbox (an id or a :class:`~tracebox.Sandbox`) and to reads. Use it as
        ``api_key=`` elsewhere."""
        body = clean(
            dict(
                expires_in=expires_in,
                sandbox=_api.id_of(sandbox, "sandbox_id") if sandbox is not None else None,
                read_only=read_only,
            )
        )
        return Token.from_dict(await self._t.json("POST", "/auth/token", json=body))

    async def health(self) -> dict[str, Any]:
        """``GET /health``: the engine, the image, the pool, the auth mode."""
        response = await self._t.http.get(self.config.url + "/health", headers=self.config.request_headers())
        return _transport_json(response)

    async def aclose(self) -> None:
        await self._t.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient({self.config!r})"


def _transport_json(response: httpx.Response) -> dict[str, Any]:
    from ._transport import json_of

    body = json_of(response)
    return body if isinstance(body, dict) else {"value": body}
