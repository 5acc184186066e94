"""Every failure the SDK raises, as exceptions carrying what the API said.

The server answers every error with one shape::

    {"error": {"code": "snake_case_code", "message": "..."}, "trace_id": "... or null"}

and the SDK turns it into one of the classes below, chosen by ``code`` first and by the HTTP
status otherwise, so ``except tracebox.NotFound`` catches a missing sandbox, trace or file
alike. Every exception carries ``code``, ``message``, ``status`` (the HTTP status, or ``None``
when the failure happened on this side or on the WebSocket) and ``trace_id`` (the trace that
records the refusal, when there is one).

A program that ran and failed is **not** an exception: ``execute()``, ``run_code()`` and
``commands.run()`` return its result with ``status`` ``error``, ``timeout``, ``oom``…
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

__all__ = [
    "TraceboxError",
    "InvalidRequest",
    "PayloadTooLarge",
    "SetupFailed",
    "Unauthorized",
    "Forbidden",
    "PolicyBlocked",
    "NotFound",
    "Conflict",
    "RateLimited",
    "ServerError",
    "ServerUnavailable",
    "ProtocolError",
]


class TraceboxError(Exception):
    """Base class of every error the SDK raises.

    Attributes:
        code: the API's ``error.code`` (``no_such_sandbox``, ``blocked_by_policy``…), or a code
            of the SDK's own for failures on this side (``connect_failed``, ``read_timeout``,
            ``bad_reply``).
        message: the API's message (it names the field and the fix), or the SDK's.
        status: the HTTP status, or ``None`` (a WebSocket frame, a connection failure).
        trace_id: the trace that records the refusal, when the server made one.
        body: the whole JSON body of the error, when there was one.
        headers: the reply's headers, when there was a reply.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        trace_id: str | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.trace_id = trace_id
        self.body: dict[str, Any] = dict(body) if body else {}
        self.headers: dict[str, str] = dict(headers) if headers else {}

    def __str__(self) -> str:
        where = []
        if self.status is not None:
            where.append(str(self.status))
        if self.code:
            where.append(self.code)
        prefix = f"[{' '.join(where)}] " if where else ""
        suffix = f" (trace {self.trace_id})" if self.trace_id else ""
        return f"{prefix}{self.message}{suffix}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, "
            f"trace_id={self.trace_id!r}, message={self.message!r})"
        )


class InvalidRequest(TraceboxError):
    """400 (and 405, 415, 416, 422 ``no_node_matches``): the request as made cannot be taken;
    the message names the field. Also ``invalid_message`` and the like over the WebSocket."""


class PayloadTooLarge(InvalidRequest):
    """413: code, stdin, a body, an upload or a file over a limit (the message names it), a
    snapshot past its quota, an upload past the tenant's quota."""


class SetupFailed(InvalidRequest):
    """422 ``repo_failed`` or ``setup_failed``: the sandbox's repository could not be cloned,
    or one of its ``setup`` commands failed; no sandbox was kept. ``trace_id`` is the trace of
    the failed step."""


class Unauthorized(TraceboxError):
    """401: keys are on and the request had no key, or one that is unknown, revoked or
    expired. Pass ``api_key=`` or set ``TRACEBOX_API_KEY``."""


class Forbidden(TraceboxError):
    """403: a token used beyond what it was made for, an admin route with a user key, a
    browser request from another origin."""


class PolicyBlocked(Forbidden):
    """403 ``blocked_by_policy`` (or a WebSocket ``blocked`` frame): the policy's screen refused
    the code or command before it ran. Nothing ran.

    Attributes:
        rules: the names of the rules that matched (``["python.subprocess"]``).
        policy_hits: every hit, as the API reports them (dicts).
    """

    def __init__(
        self,
        message: str,
        *,
        rules: list[str] | None = None,
        policy_hits: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.rules: list[str] = list(rules or [])
        self.policy_hits: list[dict[str, Any]] = list(policy_hits or [])


class NotFound(TraceboxError):
    """404: no such sandbox, trace, file, snapshot, tool or route (another tenant's things
    answer exactly as missing ones)."""


class Conflict(TraceboxError):
    """409: the sandbox is not in a state for that (paused: resume it first), too many steps
    wait in it (``sandbox_busy``), or the server holds as many sandboxes as it may."""


class RateLimited(TraceboxError):
    """429: over the key's requests a second (``rate_limited``), its runs at once
    (``too_many_runs``), its sandboxes (``sandbox_limit``), or Anthropic's limit
    (``claude_rate_limited``).

    Attributes:
        retry_after: seconds to wait before trying again (the ``Retry-After`` header), or None.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class TimeoutError(TraceboxError, builtins.TimeoutError):  # noqa: A001 - tracebox.TimeoutError
    """The request took too long: the server's 408 (a body that paused or trickled), or no
    reply within the client's timeout (``code="read_timeout"``; the request may have run).

    It is also a built-in :class:`TimeoutError`. A *program* that runs past its own
    ``timeout`` is not an exception: its result has ``status == "timeout"``."""


class ServerError(TraceboxError):
    """500 or 502: tracebox failed (``internal_error``), or Claude's reply could not be read."""


class ServerUnavailable(TraceboxError):
    """503 (``sandbox_unavailable``: the Docker engine or the image is missing; ``busy``: every
    run slot stayed busy; ``claude_unavailable``, ``claude_not_configured``), or the server
    could not be reached at all (``code="connect_failed"``). ``retry_after`` as for
    :class:`RateLimited`."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ProtocolError(TraceboxError):
    """A reply the SDK could not read (not JSON where JSON was due, a WebSocket that closed
    before the run ended). ``code`` is ``bad_reply`` or ``connection_closed``."""


# The exception class of each code the API documents, where the HTTP status alone would not
# pick it (the WebSocket's frames carry a code and no status).
_BY_CODE: dict[str, type[TraceboxError]] = {
    "blocked_by_policy": PolicyBlocked,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "cross_origin": Forbidden,
    "no_such_trace": NotFound,
    "no_such_route": NotFound,
    "no_such_file": NotFound,
    "no_such_sandbox": NotFound,
    "no_such_tool": NotFound,
    "no_such_run": NotFound,
    "sandbox_conflict": Conflict,
    "sandbox_busy": Conflict,
    "too_many_sandboxes": Conflict,
    "rate_limited": RateLimited,
    "too_many_runs": RateLimited,
    "sandbox_limit": RateLimited,
    "claude_rate_limited": RateLimited,
    "repo_failed": SetupFailed,
    "setup_failed": SetupFailed,
    "request_timeout": TimeoutError,
    "sandbox_unavailable": ServerUnavailable,
    "busy": ServerUnavailable,
    "claude_unavailable": ServerUnavailable,
    "claude_not_configured": ServerUnavailable,
    "internal_error": ServerError,
    "claude_auth_failed": ServerError,
    "claude_bad_reply": ServerError,
    "code_too_large": PayloadTooLarge,
    "stdin_too_large": PayloadTooLarge,
    "env_too_large": PayloadTooLarge,
    "body_too_large": PayloadTooLarge,
    "file_too_large": PayloadTooLarge,
    "upload_too_large": PayloadTooLarge,
    "upload_quota_exceeded": PayloadTooLarge,
    "snapshot_quota": PayloadTooLarge,
    "message_too_large": PayloadTooLarge,
    "misdirected_request": Forbidden,
    "no_node_matches": InvalidRequest,
}
_BY_CODE.update(
    dict.fromkeys(
        [
            "invalid_json",
            "missing_code",
            "unknown_language",
            "invalid_limit",
            "invalid_env",
            "invalid_query",
            "invalid_message",
            "duplicate_run_id",
            "stdin_closed",
            "invalid_file_name",
            "invalid_upload",
            "missing_prompt",
            "invalid_prompt",
            "claude_rejected",
            "invalid_prompt_set",
            "invalid_isolation",
            "invalid_host",
            "invalid_sandbox",
            "bad_path",
            "invalid_repo",
            "method_not_allowed",
            "unsupported_encoding",
            "range_not_satisfiable",
            "upgrade_required",
        ],
        InvalidRequest,
    )
)

_BY_STATUS: dict[int, type[TraceboxError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: InvalidRequest,
    408: TimeoutError,
    409: Conflict,
    413: PayloadTooLarge,
    415: InvalidRequest,
    416: InvalidRequest,
    421: Forbidden,
    422: InvalidRequest,
    426: InvalidRequest,
    429: RateLimited,
    500: ServerError,
    502: ServerError,
    503: ServerUnavailable,
    504: ServerUnavailable,
}


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = None
    for key, v in headers.items():
        if key.lower() == "retry-after":
            value = v
            break
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: tracebox never sends one


def error_from(
    *,
    status: int | None,
    body: Any,
    headers: Mapping[str, str] | None = None,
    text: str | None = None,
) -> TraceboxError:
    """The exception for an error reply (``body`` the parsed JSON, or None when it was not
    JSON; ``text`` the raw body then)."""
    code: str | None = None
    message: str | None = None
    trace_id: str | None = None
    body_dict: dict[str, Any] = body if isinstance(body, dict) else {}
    error = body_dict.get("error")
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
    if isinstance(body_dict.get("trace_id"), str):
        trace_id = body_dict["trace_id"]
    if message is None:
        snippet = (text or "").strip()[:500]
        message = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status or 0)
    if cls is None:
        cls = ServerError if (status or 0) >= 500 else InvalidRequest if (status or 0) >= 400 else TraceboxError
    kwargs: dict[str, Any] = dict(code=code, status=status, trace_id=trace_id, body=body_dict, headers=headers)
    if issubclass(cls, PolicyBlocked):
        rules = body_dict.get("rules")
        hits = body_dict.get("policy_hits")
        return cls(
            message,
            rules=[str(r) for r in rules] if isinstance(rules, list) else [],
            policy_hits=[h for h in hits if isinstance(h, dict)] if isinstance(hits, list) else [],
            **kwargs,
        )
    if issubclass(cls, (RateLimited, ServerUnavailable)):
        return cls(message, retry_after=_retry_after(headers), **kwargs)
    return cls(message, **kwargs)


def error_from_frame(frame: Mapping[str, Any]) -> TraceboxError:
    """The exception for a WebSocket ``error``, ``rejected`` or ``blocked`` frame."""
    if frame.get("type") == "blocked":
        rules = [str(r) for r in frame.get("rules") or []]
        message = frame.get("message") or f"refused by the policy's screen: {', '.join(rules)}"
        return PolicyBlocked(
            str(message),
            code="blocked_by_policy",
            trace_id=frame.get("trace_id"),
            rules=rules,
            policy_hits=[h for h in frame.get("policy_hits") or [] if isinstance(h, dict)],
            body=dict(frame),
        )
    code = frame.get("code")
    body = {"error": {"code": code, "message": frame.get("message")}, "trace_id": frame.get("trace_id")}
    error = error_from(status=None, body=body)
    error.body = dict(frame)
    return error
