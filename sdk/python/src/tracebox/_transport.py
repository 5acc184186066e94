"""Where the SDK meets HTTP: the connection settings, and one request function per flavour
(sync, async) that maps errors to exceptions and retries what is safe to retry.

What is retried (``retries`` times, 2 by default), and nothing else:

* a connection that could not be made (``httpx.ConnectError``, ``httpx.ConnectTimeout``): the
  request never reached the server;
* ``503`` with code ``busy`` (every run slot stayed busy past the queue timeout) or
  ``sandbox_unavailable`` (the Docker engine unreachable or the image missing): the server
  refused before anything ran. The wait is the reply's ``Retry-After`` (at most 5 s), else a
  short backoff.

Never retried: a request that reached the server and then failed or timed out (it may have
run), ``429`` (raised as :class:`tracebox.RateLimited` with ``retry_after``: your loop decides),
and every other status.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import errors
from .errors import ProtocolError, ServerUnavailable, TraceboxError

__all__ = ["DEFAULT_URL", "ConnectionConfig"]

DEFAULT_URL = "http://127.0.0.1:5000"
DEFAULT_TIMEOUT = 120.0
USER_AGENT = "tracebox-python/0.1.0"

# 503 codes that mean "refused before anything ran": safe to send again.
_RETRYABLE_503 = frozenset({"busy", "sandbox_unavailable"})


@dataclass
class ConnectionConfig:
    """Where the server is and how to talk to it.

    ``url`` defaults to ``TRACEBOX_URL``, then ``http://127.0.0.1:5000``; ``api_key`` to
    ``TRACEBOX_API_KEY`` (a key ``tbx_…`` or a token ``tbt_…``; none for an open server).
    ``timeout`` bounds each request in seconds (a run's own ``timeout`` is added to it).
    """

    url: str = ""
    api_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    retries: int = 2
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = None,
        retries: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ConnectionConfig:
        url = url or os.environ.get("TRACEBOX_URL") or DEFAULT_URL
        if "://" not in url:
            url = "http://" + url
        key = api_key if api_key is not None else os.environ.get("TRACEBOX_API_KEY")
        return cls(
            url=url.rstrip("/"),
            api_key=key or None,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            retries=2 if retries is None else max(0, retries),
            headers=dict(headers or {}),
        )

    def request_headers(self) -> dict[str, str]:
        out = {"user-agent": USER_AGENT, "accept": "application/json", **self.headers}
        if self.api_key:
            out["authorization"] = f"Bearer {self.api_key}"
        return out

    @property
    def ws_url(self) -> str:
        if self.url.startswith("https://"):
            return "wss://" + self.url[len("https://") :] + "/ws"
        if self.url.startswith("http://"):
            return "ws://" + self.url[len("http://") :] + "/ws"
        return self.url + "/ws"

    def timeout_for(self, run_timeout: float | None = None) -> httpx.Timeout:
        """The client-side bound of a request that runs something for up to ``run_timeout``
        seconds; ``None`` for the read when ``timeout`` is 0 or negative (wait forever)."""
        read: float | None = self.timeout
        if read is not None and read <= 0:
            read = None
        elif run_timeout is not None and read is not None:
            read = max(read, run_timeout + 30.0)
        return httpx.Timeout(read, connect=min(10.0, read) if read else 10.0)

    def __repr__(self) -> str:  # never show the key
        shown = "…" + self.api_key[-4:] if self.api_key else None
        return f"ConnectionConfig(url={self.url!r}, api_key={shown!r}, timeout={self.timeout!r})"


def _backoff(attempt: int, error: TraceboxError | None) -> float:
    wait = 0.25 * (1 << attempt)
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        wait = float(retry_after)
    return min(max(wait, 0.05), 5.0)


def _error_of(response: httpx.Response) -> TraceboxError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return errors.error_from(status=response.status_code, body=body, headers=response.headers, text=response.text)


def _transport_error(error: httpx.TransportError, url: str) -> TraceboxError:
    if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout)):
        return ServerUnavailable(
            f"could not connect to tracebox at {url}: {error}. Is the server running (scripts/serve.sh), "
            "and is TRACEBOX_URL right?",
            code="connect_failed",
        )
    if isinstance(error, httpx.TimeoutException):
        return errors.TimeoutError(
            f"no reply from {url} within the client's timeout ({error}); the request may have run. "
            "Raise timeout= on the Client for longer work.",
            code="read_timeout",
        )
    return ProtocolError(f"the connection to {url} failed mid-request: {error!r}", code="connection_lost")


def _retryable(error: TraceboxError) -> bool:
    if error.code == "connect_failed":
        return True
    return error.status == 503 and error.code in _RETRYABLE_503


def json_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as e:
        raise ProtocolError(
            f"expected JSON from {response.request.method} {response.request.url.path}, got "
            f"{response.headers.get('content-type')!r}: {response.text[:200]!r}",
            code="bad_reply",
            status=response.status_code,
        ) from e


class SyncTransport:
    def __init__(self, config: ConnectionConfig, http: httpx.Client | None = None) -> None:
        self.config = config
        self._owns = http is None
        self.http = http or httpx.Client(timeout=config.timeout_for())

    def request(
        self,
        method: str,
        path: str,
        *,
        run_timeout: float | None = None,
        timeout: httpx.Timeout | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        url = self.config.url + path
        kwargs["headers"] = {**self.config.request_headers(), **(kwargs.get("headers") or {})}
        attempt = 0
        while True:
            try:
                try:
                    response = self.http.request(
                        method, url, timeout=timeout or self.config.timeout_for(run_timeout), **kwargs
                    )
                except httpx.TransportError as e:
                    raise _transport_error(e, self.config.url) from e
                if response.status_code >= 400:
                    raise _error_of(response)
                return response
            except TraceboxError as error:
                if attempt >= self.config.retries or not _retryable(error):
                    raise
                time.sleep(_backoff(attempt, error))
                attempt += 1

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return json_of(self.request(method, path, **kwargs))

    def close(self) -> None:
        if self._owns:
            self.http.close()


class AsyncTransport:
    def __init__(self, config: ConnectionConfig, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._owns = http is None
        self.http = http or httpx.AsyncClient(timeout=config.timeout_for())

    async def request(
        self,
        method: str,
        path: str,
        *,
        run_timeout: float | None = None,
        timeout: httpx.Timeout | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        url = self.config.url + path
        kwargs["headers"] = {**self.config.request_headers(), **(kwargs.get("headers") or {})}
        attempt = 0
        while True:
            try:
                try:
                    response = await self.http.request(
                        method, url, timeout=timeout or self.config.timeout_for(run_timeout), **kwargs
                    )
                except httpx.TransportError as e:
                    raise _transport_error(e, self.config.url) from e
                if response.status_code >= 400:
                    raise _error_of(response)
                return response
            except TraceboxError as error:
                if attempt >= self.config.retries or not _retryable(error):
                    raise
                await asyncio.sleep(_backoff(attempt, error))
                attempt += 1

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return json_of(await self.request(method, path, **kwargs))

    async def aclose(self) -> None:
        if self._owns:
            await self.http.aclose()
