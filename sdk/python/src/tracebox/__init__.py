"""tracebox: run untrusted Python and Node code in hardened sandboxes, every run traced.

    import tracebox

    result = tracebox.execute("print(6 * 7)")          # one-shot, in a fresh container
    print(result.stdout, result.status, result.trace_id)

    with tracebox.Sandbox.create() as sbx:               # stateful; killed when the block ends
        sbx.run_code("x = 41")
        print(sbx.run_code("x + 1").text)               # "42"
        sbx.commands.run("ls -la", on_stdout=print)      # streamed

The server is ``TRACEBOX_URL`` (default ``http://127.0.0.1:5000``), the key
``TRACEBOX_API_KEY``; both can be given as ``url=``/``api_key=`` instead.
See sdk/python/README.md for the whole surface.
"""

from ._transport import DEFAULT_URL, ConnectionConfig
from .client import Client, Files, Traces, execute
from .client_async import AsyncClient, AsyncFiles, AsyncTraces
from .errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PolicyBlocked,
    ProtocolError,
    RateLimited,
    ServerError,
    ServerUnavailable,
    SetupFailed,
    TraceboxError,
    Unauthorized,
)
from .errors import (
    TimeoutError as TimeoutError,  # re-exported, left out of __all__ (see below)
)
from .models import (
    Artifact,
    ClaudeReply,
    CodeResult,
    CommandResult,
    EntryInfo,
    Execution,
    ExecutionError,
    FileInfo,
    OmittedArtifact,
    Redaction,
    ReplayResult,
    ReplayStep,
    SandboxInfo,
    SnapshotInfo,
    Token,
    ToolResult,
    Trace,
    TracePage,
    TraceSummary,
    Trajectory,
    TrajectoryStep,
    UploadedFile,
)
from .sandbox import Commands, Filesystem, Sandbox, Tools
from .sandbox_async import AsyncCommands, AsyncFilesystem, AsyncSandbox, AsyncTools

__version__ = "0.1.0"

# `tracebox.TimeoutError` is left out of `from tracebox import *`, so that it never shadows
# the built-in there (it is a subclass of it).
__all__ = [
    "DEFAULT_URL",
    "ConnectionConfig",
    "execute",
    "Client",
    "AsyncClient",
    "Traces",
    "AsyncTraces",
    "Files",
    "AsyncFiles",
    "Sandbox",
    "AsyncSandbox",
    "Commands",
    "AsyncCommands",
    "Filesystem",
    "AsyncFilesystem",
    "Tools",
    "AsyncTools",
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
    "Execution",
    "CommandResult",
    "CodeResult",
    "ExecutionError",
    "Artifact",
    "OmittedArtifact",
    "Redaction",
    "SandboxInfo",
    "EntryInfo",
    "SnapshotInfo",
    "ToolResult",
    "Trajectory",
    "TrajectoryStep",
    "ReplayResult",
    "ReplayStep",
    "Trace",
    "TracePage",
    "TraceSummary",
    "UploadedFile",
    "FileInfo",
    "ClaudeReply",
    "Token",
]
