"""One real tracebox server for the whole test session: the release binary (``TRACEBOX_BIN``,
else ``$CARGO_TARGET_DIR/release/tracebox``, else ``target/release/tracebox``) serving a
temporary data directory on a free port, with API keys made before it starts (so auth is on),
the real Docker engine, and a small fake of Anthropic's Messages API for ``client.claude()``.

The tests fail, never skip, when Docker or the binary is missing: a green run must mean the
SDK was tested against a real server.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
PATIENCE = float(os.environ.get("TRACEBOX_TEST_PATIENCE_SECS", "60"))


def _binary() -> Path:
    given = os.environ.get("TRACEBOX_BIN")
    if given:
        candidates = [Path(given)]
    else:
        target = os.environ.get("CARGO_TARGET_DIR")
        candidates = [Path(target) / "release" / "tracebox"] if target else []
        candidates.append(REPO / "target" / "release" / "tracebox")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        f"no tracebox binary at {', '.join(map(str, candidates))}: build it (cargo build --release --bin tracebox) "
        "or set TRACEBOX_BIN; scripts/sdk-test.sh does both",
        pytrace=False,
    )


def _require_docker() -> None:
    try:
        ok = subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        pytest.fail(
            "these tests need a running Docker engine: run scripts/ensure-docker.sh (scripts/sdk-test.sh does)",
            pytrace=False,
        )


def pytest_report_header(config: pytest.Config) -> list[str]:
    import tracebox

    where = os.environ.get("TRACEBOX_BIN") or "(release build)"
    return [f"tracebox SDK {tracebox.__version__} from {Path(tracebox.__file__).parent}", f"server binary: {where}"]


_SERVER_LOG: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A failing test's report ends with what the server logged last: the server's side of it."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _SERVER_LOG:
        report.sections.append(("tracebox serve: the last 40 lines of its log", "\n".join(_SERVER_LOG[-40:])))


# -- a fake of Anthropic's Messages API ----------------------------------------------------


class _FakeAnthropic(http.server.BaseHTTPRequestHandler):
    """Answers every ``POST /v1/messages`` with a reply holding one Python block that prints
    29, as Claude would answer "print the 10th prime"."""

    REPLY = "Here it is:\n\n```python\nprint(29)\n```\n"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("content-length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        if self.headers.get("x-api-key") != "test-key":
            return self._send(401, {"type": "error", "error": {"type": "authentication_error", "message": "bad key"}})
        reply = {
            "id": "msg_sdk_test",
            "type": "message",
            "role": "assistant",
            "model": request.get("model") or "claude-test",
            "content": [{"type": "text", "text": self.REPLY}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 9},
        }
        self._send(200, reply)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("request-id", "req_sdk_test")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


# -- the server ------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    key: str
    """The key of tenant ``sdk``: what the tests use (and TRACEBOX_API_KEY holds)."""
    slow_key: str
    """A key allowed one request a second (``--rate 1``)."""
    other_key: str
    """Another tenant's key: it must not see ``sdk``'s things."""
    admin_key: str
    """An admin key, for the session's own checks."""
    data_dir: Path
    log: list[str] = field(default_factory=list)


def _make_key(binary: Path, env: dict[str, str], name: str, *extra: str) -> str:
    made = subprocess.run(
        [str(binary), "keys", "create", "--name", name, *extra], env=env, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, f"tracebox keys create failed: {made.stderr}"
    key = made.stdout.strip()
    assert key.startswith("tbx_"), made.stdout
    return key


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    _require_docker()
    binary = _binary()
    temp = Path(tempfile.mkdtemp(prefix="tracebox-sdk-"))
    data_dir = temp / "data"
    data_dir.mkdir()

    fake = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeAnthropic)
    threading.Thread(target=fake.serve_forever, daemon=True).start()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEBOX_", "ANTHROPIC_"))}
    env.update(
        TRACEBOX_DATA_DIR=str(data_dir),
        TRACEBOX_ADDR="127.0.0.1:0",
        TRACEBOX_LOG_FORMAT="json",
        TRACEBOX_LOG="info",
        TRACEBOX_POOL_SIZE="1",
        TRACEBOX_SANDBOX_POOL_SIZE="1",
        ANTHROPIC_API_KEY="test-key",
        ANTHROPIC_BASE_URL=f"http://127.0.0.1:{fake.server_address[1]}",
    )
    for name in ("TRACEBOX_IMAGE", "TRACEBOX_BASE_IMAGE"):  # which image to run stays the caller's choice
        if name in os.environ:
            env[name] = os.environ[name]
    key = _make_key(binary, env, "sdk")
    slow_key = _make_key(binary, env, "slow", "--rate", "1")
    other_key = _make_key(binary, env, "other")
    admin_key = _make_key(binary, env, "admin", "--role", "admin")

    process = subprocess.Popen(
        [str(binary), "serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = _SERVER_LOG
    log.clear()
    found: list[str] = []
    instance = ""
    ready = threading.Event()

    def read_log() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line.rstrip("\n"))
            if not found:
                try:
                    url = json.loads(line).get("fields", {}).get("url")
                except ValueError:
                    url = None
                if isinstance(url, str):
                    found.append(url)
                    ready.set()
        ready.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        if not ready.wait(PATIENCE) or not found:
            pytest.fail(
                "tracebox did not start listening within TRACEBOX_TEST_PATIENCE_SECS; its log:\n" + "\n".join(log),
                pytrace=False,
            )
        url = found[0]
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("tracebox never became healthy; its log:\n" + "\n".join(log), pytrace=False)
            time.sleep(0.1)
        instance = httpx.get(url + "/health", timeout=30).json()["docker"]["instance_id"]

        saved = {k: os.environ.get(k) for k in ("TRACEBOX_URL", "TRACEBOX_API_KEY")}
        os.environ["TRACEBOX_URL"] = url
        os.environ["TRACEBOX_API_KEY"] = key
        try:
            yield Server(
                url=url,
                key=key,
                slow_key=slow_key,
                other_key=other_key,
                admin_key=admin_key,
                data_dir=data_dir,
                log=log,
            )
            # Every sandbox a test made must be gone by now (the context managers close them).
            admin = {"authorization": f"Bearer {admin_key}"}
            left = httpx.get(url + "/sandboxes", headers=admin, timeout=30).json()["sandboxes"]
            httpx.post(url + "/sandboxes/cleanup", headers=admin, timeout=120)
            assert not left, f"the tests left sandboxes behind: {[s['sandbox_id'] for s in left]}"
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=10)
        if process.stderr is not None:
            process.stderr.close()
        fake.shutdown()
        fake.server_close()
        shutil.rmtree(temp, ignore_errors=True)
    if instance:
        containers = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=tracebox.instance={instance}"], capture_output=True, text=True
        ).stdout.split()
        assert not containers, f"the server left containers behind after it stopped: {containers}"


@pytest.fixture(autouse=True)
def _served(server: Server) -> None:
    """Every test runs with the session's server up and TRACEBOX_URL / TRACEBOX_API_KEY set."""


@pytest.fixture
def client(server: Server):
    import tracebox

    with tracebox.Client() as c:  # from TRACEBOX_URL / TRACEBOX_API_KEY
        yield c


@pytest.fixture
async def aclient(server: Server):
    import tracebox

    async with tracebox.AsyncClient() as c:
        yield c


@pytest.fixture
def git_repo(tmp_path: Path) -> tuple[Path, str]:
    """A git repository with two commits (``calc.py`` with a bug, its test; then
    ``later.txt``), and the first commit's id: a task for an agent."""
    path = tmp_path / "repo"
    path.mkdir()
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
    }

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(path), *args], check=True, capture_output=True, text=True, env=env
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    (path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (path / "test_calc.py").write_text("from calc import add\nassert add(2, 3) == 5, 'add is wrong'\nprint('ok')\n")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    first = git("rev-parse", "HEAD")
    (path / "later.txt").write_text("after the commit we want\n")
    git("add", ".")
    git("commit", "-q", "-m", "second")
    return path, first
