"""The request bodies and paths the sync and async APIs share, so both send the same thing."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Union
from urllib.parse import quote

FileSource = Union[str, "os.PathLike[str]", bytes, IO[bytes], IO[str]]
"""What an upload takes: a local path, the bytes themselves, or an open file."""


def seg(value: str) -> str:
    """One path segment, escaped (an id or a name never adds a segment)."""
    return quote(str(value), safe="")


def clean(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that were given (None means "the server's default")."""
    return {k: v for k, v in fields.items() if v is not None}


def env_of(env: Mapping[str, str] | None, envs: Mapping[str, str] | None) -> dict[str, str] | None:
    """``env`` (tracebox's name) or ``envs`` (E2B's), not both."""
    if env is not None and envs is not None:
        raise TypeError("pass env= or envs= (the same thing), not both")
    chosen = env if env is not None else envs
    return dict(chosen) if chosen is not None else None


def execute_body(
    code: str,
    *,
    language: str | None,
    stdin: str | None,
    files: Sequence[str] | None,
    timeout: float | None,
    memory_mb: int | None,
    env: Mapping[str, str] | None,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """``POST /execute``'s body. ``extra`` holds fields this SDK does not name yet (handler
    mode's ``handler`` and ``event``, ``isolation``, ``tenant``…): they are sent as given."""
    body = clean(
        dict(
            code=code,
            language=language,
            stdin=stdin,
            files=list(files) if files is not None else None,
            timeout=timeout,
            memory_mb=memory_mb,
            env=dict(env) if env is not None else None,
        )
    )
    body.update(extra)
    return body


def repo_of(repo: str | Mapping[str, Any] | None, commit: str | None) -> dict[str, Any] | None:
    if repo is None:
        if commit is not None:
            raise TypeError("commit= needs repo=")
        return None
    if isinstance(repo, str):
        return clean({"url": repo, "commit": commit})
    out = dict(repo)
    if commit is not None:
        out["commit"] = commit
    return out


def create_body(
    *,
    language: str | None,
    timeout: float | None,
    on_timeout: str | None,
    memory_mb: int | None,
    cpus: float | None,
    disk_mb: int | None,
    env: Mapping[str, str] | None,
    files: Sequence[str] | None,
    metadata: Mapping[str, str] | None,
    repo: dict[str, Any] | None,
    setup: Sequence[str] | None,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    body = clean(
        dict(
            language=language,
            timeout=timeout,
            on_timeout=on_timeout,
            memory_mb=memory_mb,
            cpus=cpus,
            disk_mb=disk_mb,
            env=dict(env) if env is not None else None,
            files=list(files) if files is not None else None,
            metadata=dict(metadata) if metadata is not None else None,
            repo=repo,
            setup=list(setup) if setup is not None else None,
        )
    )
    body.update(extra)
    return body


def streamed_command(cmd: str, cwd: str | None) -> str:
    """A command for the WebSocket, which takes no ``cwd``: ``cd`` first."""
    if cwd is None:
        return cmd
    return f"cd -- {shlex.quote(cwd)} && {cmd}"


def read_source(source: FileSource, name: str | None) -> tuple[str, bytes]:
    """The name and bytes of an upload. Files are read whole, so that a retry sends them again."""
    if isinstance(source, bytes):
        if not name:
            raise TypeError("name= is required when uploading bytes")
        return name, source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return name or path.name, path.read_bytes()
    data = source.read()
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not name:
        given = getattr(source, "name", None)
        if not isinstance(given, str) or not given:
            raise TypeError("name= is required when uploading a file object without a name")
        name = os.path.basename(given)
    return name, data


def as_bytes(data: str | bytes | IO[bytes] | IO[str]) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    read = data.read()
    return read.encode("utf-8") if isinstance(read, str) else read


def git_args(args: tuple[Any, ...]) -> list[str]:
    """``git("diff", "--stat")`` or ``git(["diff", "--stat"])``."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return [str(a) for a in args[0]]
    return [str(a) for a in args]


def trajectory_body(trajectory: Any) -> dict[str, Any]:
    if hasattr(trajectory, "to_dict"):
        body: dict[str, Any] = trajectory.to_dict()
        return body
    if isinstance(trajectory, Mapping):
        return dict(trajectory)
    raise TypeError("trajectory must be a Trajectory or its dict (sbx.trajectory(), or json.load of a saved one)")


def id_of(value: Any, attr: str) -> str:
    """An id given as itself or as the object that has it (a Sandbox, a SnapshotInfo…)."""
    return str(getattr(value, attr, value))
