"""``Sandbox``: a stateful, long-lived, hardened container (docs/api.md, "Sandboxes"), with its
commands, code cells, files, agent tools, snapshots and trajectory, synchronously.
(:mod:`tracebox.sandbox_async` has :class:`AsyncSandbox`, the same with ``await``.)"""

from __future__ import annotations

import builtins
import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal, overload

import httpx

from . import _api, _ws
from ._api import FileSource, clean, seg
from .client import Client
from .errors import NotFound, TraceboxError
from .models import (
    CodeResult,
    CommandResult,
    EntryInfo,
    ReplayResult,
    SandboxInfo,
    SnapshotInfo,
    ToolResult,
    Trajectory,
)

__all__ = ["Sandbox", "Commands", "Filesystem", "Tools"]


class Commands:
    """``sbx.commands``: shell commands in the sandbox (``bash -c``, in ``/workspace``)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sbx = sandbox

    def run(
        self,
        cmd: str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float | None = None,
        stdin: str | None = None,
        on_stdout: _ws.OutputCallback | None = None,
        on_stderr: _ws.OutputCallback | None = None,
    ) -> CommandResult:
        """Run ``cmd`` and wait for it. A non-zero exit is a result (``exit_code``,
        ``status == "error"``), not an exception; a command the policy refuses raises
        :class:`tracebox.PolicyBlocked`. With ``on_stdout``/``on_stderr`` it is streamed over
        the WebSocket (a ``cwd`` is then a ``cd`` in front of the command). Nothing a command
        starts outlives it."""
        env_ = _api.env_of(env, envs)
        sbx = self._sbx
        if on_stdout is not None or on_stderr is not None:
            fields = clean(
                dict(
                    sandbox_id=sbx.sandbox_id,
                    cmd=_api.streamed_command(cmd, cwd),
                    env=env_,
                    timeout=timeout,
                    stdin=stdin,
                    stdin_open=False,
                )
            )
            return _ws.run_sync(
                sbx._client.config,
                fields,
                CommandResult.from_dict,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
                run_timeout=timeout,
            )
        body = clean(dict(cmd=cmd, cwd=cwd, env=env_, timeout=timeout, stdin=stdin))
        return CommandResult.from_dict(sbx._json("POST", "/commands", json=body, run_timeout=timeout))


class Filesystem:
    """``sbx.files``: the sandbox's ``/workspace``. Paths are relative to it or absolute inside
    it; one that resolves outside raises :class:`tracebox.InvalidRequest` (``bad_path``)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sbx = sandbox

    @overload
    def read(self, path: str, format: Literal["text"] = "text") -> str: ...

    @overload
    def read(self, path: str, format: Literal["bytes"]) -> bytes: ...

    def read(self, path: str, format: Literal["text", "bytes"] = "text") -> str | bytes:
        """The file's content, as text (UTF-8) or bytes. Text is redacted as output is."""
        data = self._sbx._request("GET", "/files/content", params={"path": path}).content
        if format == "bytes":
            return data
        if format != "text":
            raise ValueError("format must be 'text' or 'bytes'")
        return data.decode("utf-8", errors="replace")

    def write(self, path: str, data: str | bytes | IO[bytes] | IO[str]) -> EntryInfo:
        """Write the whole file (parents made, a file there replaced)."""
        body = self._sbx._json("PUT", "/files/content", params={"path": path}, content=_api.as_bytes(data))
        return EntryInfo.from_dict(body.get("entry") or {})

    def list(self, path: str = ".") -> list[EntryInfo]:
        """The entries of a directory (``name``, ``path``, ``type``, ``size``, ``modified``)."""
        body = self._sbx._json("GET", "/files", params={"path": path})
        return [EntryInfo.from_dict(e) for e in body.get("entries") or []]

    def remove(self, path: str) -> None:
        """Remove a file, or a directory with what it holds."""
        self._sbx._request("DELETE", "/files/content", params={"path": path})

    def exists(self, path: str) -> bool:
        """Whether something is at ``path``."""
        parent, name = posixpath.split(posixpath.normpath(path))
        if not name or name == ".":
            return True
        try:
            return any(e.name == name for e in self.list(parent or "."))
        except NotFound:
            return False
        except TraceboxError as e:
            if e.code == "bad_path":  # the parent is a file, or is not there
                return False
            raise

    def upload(self, file: FileSource, *, path: str = ".", name: str | None = None) -> builtins.list[EntryInfo]:
        """Upload a local file (a path, bytes with ``name=``, or an open file) into directory
        ``path`` of the sandbox (made when missing), under its own name."""
        filename, data = _api.read_source(file, name)
        body = self._sbx._json(
            "POST",
            "/files",
            params={"path": path},
            files=[("file", (filename, data, "application/octet-stream"))],
        )
        return [EntryInfo.from_dict(e) for e in body.get("entries") or []]

    def download(self, path: str, dest: str | Path | None = None) -> bytes:
        """The file's bytes (also written to local ``dest`` when given)."""
        data = self.read(path, format="bytes")
        if dest is not None:
            Path(dest).write_bytes(data)
        return data


class Tools:
    """``sbx.tools``: the agent tools. Each call is a step of the sandbox's trajectory; a tool
    that ran and failed is a result with ``success=False``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sbx = sandbox

    def call(self, name: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> ToolResult:
        """Call tool ``name`` with ``params`` (a dict, or keywords)."""
        body = {**(params or {}), **kwargs}
        timeout = body.get("timeout") if isinstance(body.get("timeout"), (int, float)) else None
        return ToolResult.from_dict(self._sbx._json("POST", f"/tools/{seg(name)}", json=body, run_timeout=timeout))

    def file_read(self, path: str, start_line: int | None = None, end_line: int | None = None) -> ToolResult:
        """The file's lines (1-based, inclusive, both optional)."""
        return self.call("file_read", clean(dict(path=path, start_line=start_line, end_line=end_line)))

    def file_write(self, path: str, content: str) -> ToolResult:
        """Write the whole file; ``diff`` is the change."""
        return self.call("file_write", dict(path=path, content=content))

    def shell(self, command: str, timeout: float | None = None) -> ToolResult:
        """``bash -c`` in ``/workspace``; ``output`` is stdout and stderr as written."""
        return self.call("shell", clean(dict(command=command, timeout=timeout)))

    def search(self, pattern: str, path: str | None = None, glob: str | None = None) -> ToolResult:
        """ripgrep ``pattern`` under ``path``, in files matching ``glob``: ``path:line:text``."""
        return self.call("search", clean(dict(pattern=pattern, path=path, glob=glob)))

    def git(self, *args: str | Sequence[str]) -> ToolResult:
        """git with ``args``: ``git("diff", "--stat")`` or ``git(["diff", "--stat"])``
        (``status``, ``diff``, ``log``, ``show``, ``add``, ``commit``, ``checkout``,
        ``reset``, ``branch``, ``rev-parse``)."""
        return self.call("git", dict(args=_api.git_args(args)))


def _client_for(url: str | None, api_key: str | None, client: Client | None) -> tuple[Client, bool]:
    if client is not None:
        if url is not None or api_key is not None:
            raise TypeError("pass client= or url=/api_key=, not both")
        return client, False
    return Client(url, api_key), True


class Sandbox:
    """A stateful sandbox. Make one with :meth:`create` (a context manager: it is killed when
    the ``with`` block ends, also on an exception), find one with :meth:`connect` or
    :meth:`list`.

    ``sbx.commands``, ``sbx.files`` and ``sbx.tools`` reach into it; ``sbx.run_code()`` runs a
    cell in its persistent interpreter.
    """

    def __init__(self, info: SandboxInfo, client: Client, *, owns_client: bool = False) -> None:
        self._info = info
        self._client = client
        self._owns_client = owns_client
        self._closed = False
        self.commands = Commands(self)
        self.files = Filesystem(self)
        self.tools = Tools(self)

    # -- making and finding ------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        language: str | None = None,
        *,
        timeout: float | None = None,
        on_timeout: Literal["pause", "kill"] | None = None,
        memory_mb: int | None = None,
        cpus: float | None = None,
        disk_mb: int | None = None,
        env: Mapping[str, str] | None = None,
        envs: Mapping[str, str] | None = None,
        files: Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        repo: str | Mapping[str, Any] | None = None,
        commit: str | None = None,
        setup: Sequence[str] | None = None,
        url: str | None = None,
        api_key: str | None = None,
        client: Client | None = None,
        **fields: Any,
    ) -> Sandbox:
        """Make a sandbox and wait until it is ready.

        ``language`` (``python`` or ``node``) is its interpreter's; ``timeout`` its idle
        seconds before it is paused (``on_timeout="pause"``, the default) or killed;
        ``memory_mb``, ``cpus``, ``disk_mb`` its limits; ``env`` (or E2B's ``envs``) its
        environment; ``files`` uploaded files copied into ``/workspace``; ``metadata`` labels
        (filter :meth:`list` by them); ``repo`` a git URL or server path (``commit`` its
        commit) cloned into ``/workspace``; ``setup`` commands run after, as its first steps.
        Every field is optional. Connection: ``client=`` or ``url=``/``api_key=`` (else the
        environment)."""
        owner, owns = _client_for(url, api_key, client)
        try:
            body = _api.create_body(
                language=language,
                timeout=timeout,
                on_timeout=on_timeout,
                memory_mb=memory_mb,
                cpus=cpus,
                disk_mb=disk_mb,
                env=_api.env_of(env, envs),
                files=files,
                metadata=metadata,
                repo=_api.repo_of(repo, commit),
                setup=setup,
                extra=fields,
            )
            # Cloning and setup may take long: the server bounds them.
            slow = "repo" in body or "setup" in body
            data = owner._t.json("POST", "/sandboxes", json=body, run_timeout=600.0 if slow else None)
        except BaseException:
            if owns:
                owner.close()
            raise
        return cls(SandboxInfo.from_dict(data), owner, owns_client=owns)

    @classmethod
    def connect(
        cls,
        sandbox_id: str,
        *,
        resume: bool = True,
        url: str | None = None,
        api_key: str | None = None,
        client: Client | None = None,
    ) -> Sandbox:
        """The sandbox ``sandbox_id`` (:class:`tracebox.NotFound` when there is none, or it is
        another tenant's). A paused one is resumed, as E2B's ``connect`` does, unless
        ``resume=False``."""
        owner, owns = _client_for(url, api_key, client)
        try:
            info = SandboxInfo.from_dict(owner._t.json("GET", f"/sandboxes/{seg(sandbox_id)}"))
            sandbox = cls(info, owner, owns_client=owns)
            if resume and info.status == "paused":
                sandbox.resume()
        except BaseException:
            if owns:
                owner.close()
            raise
        return sandbox

    @classmethod
    def list(
        cls,
        *,
        status: Literal["running", "paused"] | None = None,
        metadata: Mapping[str, str] | None = None,
        url: str | None = None,
        api_key: str | None = None,
        client: Client | None = None,
    ) -> list[SandboxInfo]:
        """The sandboxes this key sees, newest first; ``status`` and ``metadata`` (every
        label must match) filter them."""
        owner, owns = _client_for(url, api_key, client)
        try:
            params: dict[str, str] = {}
            if status is not None:
                params["status"] = status
            for key, value in (metadata or {}).items():
                params[f"metadata.{key}"] = value
            body = owner._t.json("GET", "/sandboxes", params=params)
            return [SandboxInfo.from_dict(s) for s in body.get("sandboxes") or []]
        finally:
            if owns:
                owner.close()

    # -- what it is -------------------------------------------------------------------------

    @property
    def sandbox_id(self) -> str:
        return self._info.sandbox_id

    @property
    def info(self) -> SandboxInfo:
        """What the server said about it last (:meth:`get_info` asks again)."""
        return self._info

    @property
    def client(self) -> Client:
        return self._client

    @property
    def trace_id(self) -> str:
        """The sandbox's trace: its steps are the trace's children."""
        return self._info.trace_id

    def get_info(self) -> SandboxInfo:
        """Its state now (``status``, ``expires_at``, ``disk_used_bytes``, ``steps``…)."""
        self._info = SandboxInfo.from_dict(self._json("GET", ""))
        return self._info

    def is_running(self) -> bool:
        """True while it runs; False when it is paused or gone."""
        try:
            return self.get_info().status == "running"
        except NotFound:
            return False

    # -- running code -----------------------------------------------------------------------

    def run_code(
        self,
        code: str,
        *,
        language: str | None = None,
        timeout: float | None = None,
        on_stdout: _ws.OutputCallback | None = None,
        on_stderr: _ws.OutputCallback | None = None,
    ) -> CodeResult:
        """Run ``code`` as a cell of the sandbox's persistent interpreter: variables, imports
        and functions stay between calls. ``result`` is the last expression's value as text,
        ``error`` what the cell raised (``status == "error"``). With ``on_stdout`` /
        ``on_stderr`` the output is streamed over the WebSocket as it comes."""
        if on_stdout is not None or on_stderr is not None:
            fields = clean(dict(sandbox_id=self.sandbox_id, code=code, language=language, timeout=timeout))
            return _ws.run_sync(
                self._client.config,
                fields,
                CodeResult.from_dict,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
                run_timeout=timeout,
            )
        body = clean(dict(code=code, language=language, timeout=timeout))
        return CodeResult.from_dict(self._json("POST", "/code", json=body, run_timeout=timeout))

    def restart_code(self) -> None:
        """A new interpreter: the variables of the old one are gone."""
        self._request("POST", "/code/restart")

    # -- life -------------------------------------------------------------------------------

    def set_timeout(self, timeout: float, on_timeout: Literal["pause", "kill"] | None = None) -> SandboxInfo:
        """Idle seconds from now before it is paused (or killed, ``on_timeout="kill"``)."""
        body = clean(dict(timeout=timeout, on_timeout=on_timeout))
        self._info = SandboxInfo.from_dict(self._json("POST", "/timeout", json=body))
        return self._info

    def pause(self) -> SandboxInfo:
        """Free its CPU and memory; ``/workspace`` is kept on the server's disk. Interpreter
        state does not survive a pause."""
        self._info = SandboxInfo.from_dict(self._json("POST", "/pause"))
        return self._info

    def resume(self) -> SandboxInfo:
        """Run it again with the files the pause kept (``info.note`` says the interpreter's
        variables are gone)."""
        self._info = SandboxInfo.from_dict(self._json("POST", "/resume"))
        return self._info

    def snapshot(self, label: str | None = None) -> SnapshotInfo:
        """Keep ``/workspace`` as it is now; :meth:`reset` goes back to it."""
        return SnapshotInfo.from_dict(self._json("POST", "/snapshots", json=clean(dict(label=label))))

    def snapshots(self) -> builtins.list[SnapshotInfo]:
        """Its snapshots, oldest first (the server's own are labelled ``creation``, ``pause``)."""
        return [SnapshotInfo.from_dict(s) for s in self._json("GET", "/snapshots").get("snapshots") or []]

    def reset(self, snapshot: SnapshotInfo | str | None = None) -> SandboxInfo:
        """``/workspace`` as it was at ``snapshot`` (by default right after creation), and a
        new interpreter."""
        body = clean(dict(snapshot_id=_api.id_of(snapshot, "snapshot_id") if snapshot is not None else None))
        self._info = SandboxInfo.from_dict(self._json("POST", "/reset", json=body))
        return self._info

    # -- the agent's record -----------------------------------------------------------------

    @overload
    def trajectory(self) -> Trajectory: ...

    @overload
    def trajectory(self, format: Literal["tracebox"]) -> Trajectory: ...

    @overload
    def trajectory(self, format: Literal["swe-agent"]) -> dict[str, Any]: ...

    def trajectory(self, format: str = "tracebox") -> Trajectory | dict[str, Any]:
        """Its tool calls in order. ``format="swe-agent"`` gives SWE-agent's ``.traj`` (a dict)."""
        if format == "tracebox":
            return Trajectory.from_dict(self._json("GET", "/trajectory"))
        swe_agent: dict[str, Any] = self._json("GET", "/trajectory", params={"format": format})
        return swe_agent

    def replay(self, trajectory: Trajectory | Mapping[str, Any], *, reset: bool = True) -> ReplayResult:
        """Call a trajectory's steps again (after a reset to the creation state unless
        ``reset=False``) and compare: ``divergence_step`` is the first that differed, -1 none."""
        body = {"trajectory": _api.trajectory_body(trajectory), "reset": reset}
        return ReplayResult.from_dict(self._json("POST", "/replay", json=body, run_timeout=600.0))

    # -- the end ----------------------------------------------------------------------------

    def kill(self) -> bool:
        """Kill and remove it (its trace stays). False when it was already gone."""
        if self._closed:
            return False
        try:
            self._request("DELETE", "")
        except NotFound:
            return False
        return True

    def close(self) -> None:
        """Kill it (if not yet gone) and let go of the connection it made."""
        if self._closed:
            return
        try:
            self.kill()
        finally:
            self._closed = True
            if self._owns_client:
                self._client.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except Exception as cleanup:  # never hide the body's own exception
            if hasattr(exc, "add_note"):  # Python 3.11+
                exc.add_note(f"tracebox: killing sandbox {self.sandbox_id} failed too: {cleanup!r}")

    def __repr__(self) -> str:
        return f"Sandbox(sandbox_id={self.sandbox_id!r}, status={self._info.status!r})"

    # -- plumbing ---------------------------------------------------------------------------

    def _path(self, tail: str) -> str:
        if self._closed:
            raise NotFound(
                f"sandbox {self.sandbox_id} was killed when it was closed (its trace {self.trace_id} stays)",
                code="no_such_sandbox",
            )
        return f"/sandboxes/{seg(self.sandbox_id)}{tail}"

    def _request(self, method: str, tail: str, **kwargs: Any) -> httpx.Response:
        return self._client._t.request(method, self._path(tail), **kwargs)

    def _json(self, method: str, tail: str, **kwargs: Any) -> Any:
        return self._client._t.json(method, self._path(tail), **kwargs)
