"""Typed replies: one dataclass per shape the API answers (docs/api.md is the authority on the
field names, which these keep).

Every model keeps the whole JSON it was read from in ``raw``, so a field the server adds later
is there before the SDK names it. Times are timezone-aware :class:`datetime.datetime` objects.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

__all__ = [
    "Redaction",
    "Artifact",
    "OmittedArtifact",
    "Execution",
    "CommandResult",
    "ExecutionError",
    "CodeResult",
    "SandboxInfo",
    "EntryInfo",
    "SnapshotInfo",
    "ToolResult",
    "TrajectoryStep",
    "Trajectory",
    "ReplayStep",
    "ReplayResult",
    "TraceSummary",
    "TracePage",
    "Trace",
    "UploadedFile",
    "FileInfo",
    "ClaudeReply",
    "Token",
]

T = TypeVar("T")


def _time(value: Any) -> datetime | None:
    """RFC 3339 text (or Unix seconds) as an aware datetime; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    text = str(value)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python 3.10's fromisoformat takes 3 or 6 digits of a second's fraction only.
    text = re.sub(r"\.(\d+)", lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    return datetime.fromisoformat(text)


def _build(cls: type[T], data: Mapping[str, Any] | None, **converted: Any) -> T:
    """An instance of dataclass ``cls`` from the fields of ``data`` it names (others stay in
    ``raw``); ``converted`` replaces the fields that need converting."""
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs = {k: v for k, v in data.items() if k in names and k != "raw"}
    kwargs.update(converted)
    if "raw" in names:
        kwargs["raw"] = data
    return cls(**kwargs)


@dataclass
class Redaction:
    """A secret the output filter replaced: which rule, in which stream, how many times."""

    rule: str = ""
    stream: str = ""
    count: int = 0


@dataclass
class Artifact:
    """A file the program left under ``/workspace/out/``; ``url`` downloads it
    (``client.files.download_artifact(artifact)``)."""

    name: str = ""
    size: int = 0
    sha256: str | None = None
    url: str = ""


@dataclass
class OmittedArtifact:
    """A file of ``/workspace/out/`` that did not come back, and why."""

    name: str = ""
    reason: str = ""


@dataclass
class Execution:
    """One run: ``tracebox.execute()``'s reply, as ``POST /execute`` gives it.

    ``status`` is ``success`` (exit 0), ``error`` (non-zero exit), ``timeout``, ``oom``,
    ``output_limit``, ``killed`` or ``internal_error``; a program the policy refused raises
    :class:`tracebox.PolicyBlocked` instead.
    """

    trace_id: str = ""
    status: str = ""
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration_ms: float = 0
    timed_out: bool = False
    oom_killed: bool = False
    truncated: bool = False
    invalid_utf8: bool = False
    redactions: list[Redaction] = field(default_factory=list)
    policy_hits: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    artifacts_omitted: list[OmittedArtifact] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """The program ended by itself with exit code 0."""
        return self.status == "success"

    @property
    def extra(self) -> dict[str, Any]:
        """Fields of the reply this class does not name (e.g. a future handler mode's
        ``result``)."""
        names = {f.name for f in dataclasses.fields(self)}
        return {k: v for k, v in self.raw.items() if k not in names}

    @classmethod
    def _fields_of(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return dict(
            stdout=data.get("stdout") or "",
            stderr=data.get("stderr") or "",
            redactions=[_build(Redaction, r) for r in data.get("redactions") or []],
            policy_hits=list(data.get("policy_hits") or []),
            artifacts=[_build(Artifact, a) for a in data.get("artifacts") or []],
            artifacts_omitted=[_build(OmittedArtifact, a) for a in data.get("artifacts_omitted") or []],
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Execution:
        return _build(cls, data, **cls._fields_of(data))


@dataclass
class CommandResult(Execution):
    """A sandbox command's reply (``sbx.commands.run()``): the fields of a run, ``artifacts``
    always empty. A non-zero exit is a result, not an exception (unlike E2B's
    ``CommandExitException``): look at ``exit_code`` or ``ok``."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CommandResult:
        return _build(cls, data, **cls._fields_of(data))


@dataclass
class ExecutionError:
    """What a code cell raised (the interpreter survives it)."""

    name: str = ""
    value: str = ""
    traceback: str = ""


@dataclass
class CodeResult(Execution):
    """A code cell's reply (``sbx.run_code()``): the fields of a run, plus ``result`` (the text
    of the last expression's value: Python's ``repr``, Node's ``util.inspect``; or None) and
    ``error`` (what the cell raised, with ``status == "error"``)."""

    result: str | None = None
    error: ExecutionError | None = None
    interrupted: bool = False
    restarted: bool = False

    @property
    def text(self) -> str | None:
        """The last expression's value as text (E2B's ``execution.text``)."""
        return self.result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CodeResult:
        error = data.get("error")
        return _build(
            cls,
            data,
            **cls._fields_of(data),
            error=_build(ExecutionError, error) if isinstance(error, dict) else None,
        )


@dataclass
class SandboxInfo:
    """A sandbox as the API shows it (``GET /sandboxes/{id}``)."""

    sandbox_id: str = ""
    status: str = ""
    language: str = ""
    memory_mb: int | None = None
    cpus: float | None = None
    disk_mb: int | None = None
    disk_used_bytes: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    last_activity_at: datetime | None = None
    expires_at: datetime | None = None
    timeout: float | None = None
    on_timeout: str | None = None
    lifetime_ends_at: datetime | None = None
    steps: int = 0
    trace_id: str = ""
    note: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SandboxInfo:
        return _build(
            cls,
            data,
            metadata=dict(data.get("metadata") or {}),
            created_at=_time(data.get("created_at")),
            last_activity_at=_time(data.get("last_activity_at")),
            expires_at=_time(data.get("expires_at")),
            lifetime_ends_at=_time(data.get("lifetime_ends_at")),
        )


@dataclass
class EntryInfo:
    """A file or directory in a sandbox's ``/workspace``."""

    name: str = ""
    path: str = ""
    type: str = ""
    """``file``, ``dir`` or ``symlink``."""
    size: int = 0
    modified: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_dir(self) -> bool:
        return self.type == "dir"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EntryInfo:
        return _build(cls, data, modified=_time(data.get("modified")))


@dataclass
class SnapshotInfo:
    """A snapshot of a sandbox's ``/workspace`` (``bytes`` compressed)."""

    snapshot_id: str = ""
    label: str | None = None
    bytes: int | None = None
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SnapshotInfo:
        return _build(cls, data, created_at=_time(data.get("created_at")))


@dataclass
class ToolResult:
    """An agent tool's reply: ``output`` (stdout and stderr in the order written), ``success``
    (false when the tool ran and failed, ``error`` saying why), ``diff`` for a ``file_write``."""

    output: str = ""
    exit_code: int | None = None
    error: str | None = None
    success: bool = False
    trace_id: str | None = None
    truncated: bool = False
    diff: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolResult:
        return _build(cls, data, output=data.get("output") or "")


@dataclass
class TrajectoryStep:
    """One tool call of a trajectory. ``compare=False`` marks a step whose output differs from
    run to run: a replay runs it but never counts it as diverged."""

    tool_name: str = ""
    params: Any = None
    output: str = ""
    exit_code: int | None = None
    duration_ms: float | None = None
    compare: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tool_name": self.tool_name,
            "params": self.params if self.params is not None else {},
            "output": self.output,
            "exit_code": self.exit_code,
            "duration_ms": self.duration_ms,
        }
        if not self.compare:
            out["compare"] = False
        return out


@dataclass
class Trajectory:
    """A sandbox's tool calls in order (``sbx.trajectory()``); ``sbx.replay(trajectory)``
    takes it back, and ``to_dict()`` is the JSON the API uses (save it with ``json.dump``)."""

    sandbox_id: str = ""
    steps: list[TrajectoryStep] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sandbox_id": self.sandbox_id,
            "steps": [s.to_dict() for s in self.steps],
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trajectory:
        return cls(
            sandbox_id=data.get("sandbox_id") or "",
            steps=[_build(TrajectoryStep, s) for s in data.get("steps") or []],
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass
class ReplayStep:
    """One step of a replay: what the trajectory said and what the call gave this time."""

    tool_name: str = ""
    params: Any = None
    expected_output: str = ""
    output: str = ""
    expected_exit_code: int | None = None
    exit_code: int | None = None
    error: str | None = None
    compare: bool = True
    diverged: bool = False
    duration_ms: float | None = None
    trace_id: str | None = None


@dataclass
class ReplayResult:
    """A replay's report: ``divergence_step`` is the index of the first step whose output or
    exit code differed, -1 when none did (then ``success``)."""

    success: bool = False
    divergence_step: int = -1
    trace_id: str | None = None
    steps: list[ReplayStep] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplayResult:
        return _build(cls, data, steps=[_build(ReplayStep, s) for s in data.get("steps") or []])


@dataclass
class TraceSummary:
    """One row of the trace list."""

    id: str = ""
    parent_id: str | None = None
    kind: str = ""
    status: str = ""
    source: str = ""
    language: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: float | None = None
    exit_code: int | None = None
    preview: str = ""
    tenant: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TraceSummary:
        return _build(cls, data, started_at=_time(data.get("started_at")), ended_at=_time(data.get("ended_at")))


@dataclass
class TracePage:
    """A page of ``client.traces.list()``; iterate it for its traces, and pass ``next_cursor``
    as ``cursor=`` for the next page (None on the last)."""

    traces: list[TraceSummary] = field(default_factory=list)
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[TraceSummary]:
        return iter(self.traces)

    def __len__(self) -> int:
        return len(self.traces)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TracePage:
        return cls(
            traces=[TraceSummary.from_dict(t) for t in data.get("traces") or []],
            next_cursor=data.get("next_cursor"),
        )


@dataclass
class Trace(TraceSummary):
    """One trace with what it recorded: ``input`` and ``output`` (their shape depends on its
    ``kind``), ``events`` (its timeline) and ``children`` (a window of them; ``children_total``
    counts all)."""

    input: Any = None
    output: Any = None
    events: list[dict[str, Any]] = field(default_factory=list)
    children: list[TraceSummary] = field(default_factory=list)
    children_total: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trace:
        return _build(
            cls,
            data,
            started_at=_time(data.get("started_at")),
            ended_at=_time(data.get("ended_at")),
            events=list(data.get("events") or []),
            children=[TraceSummary.from_dict(c) for c in data.get("children") or []],
        )


@dataclass
class UploadedFile:
    """A file stored by ``client.files.upload()``: ``name`` is the stored name (a taken name
    is numbered unless ``overwrite=True``; ``requested_name`` is then the one asked for)."""

    name: str = ""
    size: int = 0
    sha256: str | None = None
    requested_name: str | None = None
    trace_id: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], trace_id: str | None = None) -> UploadedFile:
        return _build(cls, data, trace_id=trace_id)


@dataclass
class FileInfo:
    """An uploaded file, as ``client.files.list()`` shows it."""

    name: str = ""
    size: int = 0
    sha256: str | None = None
    uploaded_at: datetime | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileInfo:
        return _build(cls, data, uploaded_at=_time(data.get("uploaded_at")))


@dataclass
class ClaudeReply:
    """``client.claude()``'s reply: Claude's ``text``, and with ``execute=True`` the runs of
    its code blocks in ``executions`` (each an :class:`Execution`; a block the policy refused
    is there with status ``blocked``)."""

    trace_id: str = ""
    text: str = ""
    content: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    cost_usd: float | None = None
    request_id: str | None = None
    retries: int = 0
    latency_ms: float | None = None
    ttft_ms: float | None = None
    executions: list[Execution] = field(default_factory=list)
    skipped_blocks: list[Any] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClaudeReply:
        return _build(
            cls,
            data,
            executions=[Execution.from_dict(e) for e in data.get("executions") or []],
            usage=dict(data.get("usage") or {}),
        )


@dataclass
class Token:
    """A short-lived signed token (``client.token()``), used like a key: hand it to a browser
    or an agent that should not hold the key."""

    token: str = field(default="", repr=False)
    expires_at: datetime | None = None
    expires_in: int = 0
    tenant: str | None = None
    sandbox: str | None = None
    read_only: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Token:
        return _build(cls, data, expires_at=_time(data.get("expires_at")))
