"""tracebox's supervisor: the container's command, and its PID 1.

    python3 supervise.py python|node        (settings in TRACEBOX_* environment variables)

The supervisor keeps a program process ready (a new `python3 runner.py`, or `node` started from
the snapshot of runner.js), loaded and blocked on a pipe. tracebox sends, on the container's
stdin:

    P <n>\\n<n bytes of JSON {"code": <length>, "env": {...}, "timeout": <seconds>,
                               "handler": {...} (handler mode)}><code><event>
    D <n>\\n<n bytes of the program's stdin>       (any number)
    E\\n                                           (end of the program's stdin)

The container's stdout is the channel back to tracebox, and only this process writes to it:
every message is a frame, a kind byte, a 4-byte big-endian length, then that many bytes.

    R   ready for a program                 G   took the program (its output follows)
    o   the program's stdout bytes          e   the program's stderr bytes
    v   bytes of the handler's result channel (handler mode)
    X   the program ended: `<status> <OOM kills, or -1>`
    A   bytes of a tar of /workspace/out    Z   the tar is whole

A program writes to pipes of its own, which the supervisor relays as `o` and `e` frames: no
program holds the container's stdout, stderr or stdin, so nothing it writes or reads can be
taken for a frame or steal one (it can only read back its own output). The container's stderr
carries the supervisor's own trouble, for tracebox's log.

Handler mode: the program process also gets, as its fd 4, the write end of a pipe for the
handler's result, which the runner takes for itself before any user code runs (a plain run's
runner closes it). What comes on it is relayed as `v` frames, up to the channel's limit (one byte
more, so tracebox sees that more came), apart from the program's output: nothing a program
prints can pass for its result. tracebox checks what came (src/sandbox/handler.rs).

When the program ends, every other process is killed and reaped, the rest of its output is
relayed, and the X, A and Z frames follow. In `fresh` mode the supervisor then exits with the
program's status. In `recycle` mode it wipes /workspace, /tmp, /dev/shm and /dev/mqueue (and
ends the container instead when anything of the run would stay), readies a new program process,
and says R again, up to TRACEBOX_MAX_RUNS runs. With no program for TRACEBOX_MAX_IDLE_SECS it
exits, so no container outlives a tracebox that died; a program running
TRACEBOX_BACKSTOP_GRACE_SECS past its timeout is killed, for the same reason.

It adds nothing user code could not do itself: it runs as the same unprivileged user inside the
same limits. It is PID 1, so no program can stop or kill it with a signal, and every orphan
becomes its child (it reaps them). It is not dumpable, so a program can neither trace it nor
open its files through /proc. Before a recycled container serves again, every process of the
run has been reaped, and what a program of the same user can change in this process and a new
one would inherit (limits, priority, I/O priority, CPUs, scheduler), or in the folders runs
share (their mode), is checked: changed and not put back, the container ends instead.
"""
import json
import os
import platform
import resource
import selectors
import signal
import sys
import time

LANGUAGE = sys.argv[1] if len(sys.argv) > 1 else "python"
MODE = os.environ.pop("TRACEBOX_MODE", "fresh")
MAX_RUNS = int(os.environ.pop("TRACEBOX_MAX_RUNS", "1"))
MAX_IDLE = float(os.environ.pop("TRACEBOX_MAX_IDLE_SECS", "600"))
GRACE = float(os.environ.pop("TRACEBOX_BACKSTOP_GRACE_SECS", "5"))
WORKSPACE, TMP, OUT = "/workspace", "/tmp", "/workspace/out"
RUNNER_PY, RUNNER_JS = "/opt/tracebox/runner.py", "/opt/tracebox/runner.js"
# runner.js as a startup snapshot, when the image could build one (Node 18.20 and later).
RUNNER_BLOB = "/opt/tracebox/runner.blob"
# How long a new program process may take to load before the container is given up.
PROGRAM_READY_SECS = 30
# What a recycled container's runs may leave things in; all of it is emptied between runs.
WIPED = (WORKSPACE, TMP, "/dev/shm", "/dev/mqueue")
# How long the processes a run left may take to die once killed, before the container is given up.
REAP_SECS = 2
# The most bytes read from a program's pipe, or of the artifacts' tar, per frame.
CHUNK = 1 << 16
# ioprio_get(2) by architecture; IOPRIO_WHO_PROCESS.
IOPRIO_GET = {"x86_64": 252, "aarch64": 31, "arm64": 31}.get(platform.machine())
IOPRIO_WHO_PROCESS = 1

LIBC = None  # ctypes' libc, loaded once in main()
# Every signal PID 1 ignores: all whose default would stop or end it but SIGKILL and SIGSTOP,
# which cannot be ignored (and SIGCHLD, which it handles; SIGXFSZ, which Python ignores).
IGNORED = tuple(
    sig
    for sig in signal.valid_signals()
    if sig not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGXFSZ, signal.SIGCONT)
    and sig not in (signal.SIGWINCH, signal.SIGURG)  # ignored by default
)


def load_libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def not_dumpable():
    """PR_SET_DUMPABLE 0: keeps programs (the same user) from tracing this process or opening
    its /proc files (its memory, and its stdin and stdout: the channel to tracebox) with them;
    a supervisor that cannot make sure of it does not start (a program process, a new
    executable, is dumpable as any process is)."""
    import ctypes

    if LIBC.prctl(4, 0, 0, 0, 0) != 0 or LIBC.prctl(3, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE, PR_GET_DUMPABLE
        sys.exit("tracebox supervisor: cannot make itself undumpable (errno %d)" % ctypes.get_errno())


RLIMITS = sorted(getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_"))


def io_priority():
    """This process's I/O priority, or None when this machine's syscall is unknown (a recycled
    container then serves no second run: a changed priority could not be seen)."""
    if IOPRIO_GET is None:
        return None
    return LIBC.syscall(IOPRIO_GET, IOPRIO_WHO_PROCESS, 0)


def process_settings():
    """What a program of the same user can change in this process (prlimit, setpriority,
    ioprio_set, sched_setaffinity, sched_setscheduler) and the next program process would
    inherit."""
    limits = [resource.getrlimit(limit) for limit in RLIMITS]
    scheduler = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    return limits, nice, io_priority(), os.sched_getaffinity(0), scheduler


def folder_modes():
    """Mode and owner of each folder runs share: a program of the same user may chmod the ones
    it owns (/workspace), which the next run would inherit."""
    modes = {}
    for top in WIPED:
        try:
            st = os.lstat(top)
            modes[top] = (st.st_mode, st.st_uid, st.st_gid)
        except OSError:
            pass
    return modes


def kill(pid):
    """SIGKILL `pid`, which may have ended already."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def reap():
    """Collect every child that ended (as PID 1, orphans are children too): {pid: status}."""
    ended = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended[pid] = status


def end_the_rest():
    """Kill every process but this one and wait until all are reaped, so that none writes after
    the program's end; False when some outlived REAP_SECS."""
    try:
        os.kill(-1, signal.SIGKILL)  # from PID 1: every process of the container but itself
    except ProcessLookupError:
        return True  # the program left nothing
    deadline = time.monotonic() + REAP_SECS
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(0.001)
        except ChildProcessError:
            return True
    return False


def oom_kills():
    """The container's OOM kills so far (cgroup v2, then v1), or -1 when unknown."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as file:
                for line in file:
                    name, _, value = line.partition(" ")
                    if name == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return -1


def write_all(fd, data):
    """Write all of `data` to a blocking descriptor."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def send(kind, payload=b""):
    """One frame to tracebox on the channel (the container's stdout)."""
    write_all(1, kind + len(payload).to_bytes(4, "big") + payload)


def program_argv():
    """The program process's command line."""
    if LANGUAGE == "node":
        if os.path.exists(RUNNER_BLOB):
            return ["/usr/bin/node", "--snapshot-blob", RUNNER_BLOB]
        return ["/usr/bin/node", RUNNER_JS]
    return ["/usr/bin/python3", "-u", RUNNER_PY]


class NotReady(Exception):
    """A program process that did not load."""


class Program:
    """The process the next program runs in: started in advance, fed through a pipe, writing
    to pipes of its own that the supervisor relays."""

    def __init__(self):
        read_end, self.pipe = os.pipe()
        ready_read, ready_write = os.pipe()
        self.stdout, stdout_write = os.pipe()
        self.stderr, stderr_write = os.pipe()
        self.result, result_write = os.pipe()
        argv = program_argv()
        # Only what the file actions name reaches it: the container's stdin, stdout and
        # stderr are replaced, and every other descriptor here is close-on-exec.
        self.pid = os.posix_spawn(
            argv[0],
            argv,
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, read_end, 0),
                (os.POSIX_SPAWN_DUP2, stdout_write, 1),
                (os.POSIX_SPAWN_DUP2, stderr_write, 2),
                (os.POSIX_SPAWN_DUP2, ready_write, 3),
                (os.POSIX_SPAWN_DUP2, result_write, 4),
            ],
            # Ignored here (IGNORED) or by Python (SIGXFSZ): programs get the defaults.
            setsigdef=IGNORED + (signal.SIGXFSZ,),
        )
        for fd in (ready_write, stdout_write, stderr_write, read_end, result_write):
            os.close(fd)
        # The runner writes a byte on fd 3 once it is loaded (and closes it).
        selector = selectors.DefaultSelector()
        selector.register(ready_read, selectors.EVENT_READ)
        loaded = selector.select(PROGRAM_READY_SECS) and os.read(ready_read, 1) == b"r"
        selector.close()
        os.close(ready_read)
        if not loaded:
            os.kill(self.pid, signal.SIGKILL)
            raise NotReady("%s did not load within %d s" % (argv[0], PROGRAM_READY_SECS))
        for fd in (self.pipe, self.stdout, self.stderr, self.result):
            os.set_blocking(fd, False)
        # Bytes of the result's channel still relayed (set by the run: none in a plain run).
        self.result_room = 0
        self.pending = bytearray()
        self.closing = False
        self.status = None  # once it ended

    def outputs(self):
        """Its output pipes (and the result's) still open, with the frame kind each is relayed as."""
        pipes = ((self.stdout, b"o"), (self.stderr, b"e"), (self.result, b"v"))
        return [(fd, kind) for fd, kind in pipes if fd is not None]

    def relay(self, fd, drain=False):
        """Relay what one of its output pipes holds: one read (the loop stays fair to stdin
        and timers however fast it writes), or all of it with `drain`. False once that pipe
        has ended (every writer gone) and is closed."""
        kind = b"o" if fd == self.stdout else b"e" if fd == self.stderr else b"v"
        while True:
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                return True
            if not data:
                os.close(fd)
                if fd == self.stdout:
                    self.stdout = None
                elif fd == self.stderr:
                    self.stderr = None
                else:
                    self.result = None
                return False
            if kind == b"v":
                # Past its room the channel is read (its writer never blocks) and dropped.
                data, self.result_room = data[: self.result_room], max(0, self.result_room - len(data))
            if data:
                send(kind, data)
            if not drain:
                return True

    def send(self, data):
        if self.pipe is not None and not self.closing:
            self.pending += data  # else it closed its stdin, or its stdin ended: dropped

    def close_stdin(self):
        self.closing = True

    def flush(self):
        """Write what the pipe takes now; True while more is waiting."""
        while self.pending and self.pipe is not None:
            try:
                self.pending = self.pending[os.write(self.pipe, self.pending):]
            except BlockingIOError:
                return True
            except BrokenPipeError:
                self.pending.clear()
                self.closing = True
        if self.closing and self.pipe is not None:
            os.close(self.pipe)
            self.pipe = None
        return False

    def discard(self):
        """Close what is left of its pipes (it ended, or the container does)."""
        for fd in (self.pipe, self.stdout, self.stderr, self.result):
            if fd is not None:
                os.close(fd)
        self.pipe = self.stdout = self.stderr = self.result = None


def exit_status(status):
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def archive_entries():
    """What a ustar archive of /workspace/out holds: (tarinfo, path) per entry it can hold.
    Links are archived as links, never followed; tracebox keeps regular files only."""
    if not os.path.isdir(OUT) or os.path.islink(OUT):
        return []
    import stat
    import tarfile

    kinds = {
        stat.S_IFREG: tarfile.REGTYPE,
        stat.S_IFDIR: tarfile.DIRTYPE,
        stat.S_IFLNK: tarfile.SYMTYPE,
        stat.S_IFIFO: tarfile.FIFOTYPE,
    }
    entries = []
    for root, dirs, names in os.walk(OUT):
        dirs.sort()
        for path in [os.path.join(root, name) for name in dirs + sorted(names)]:
            try:
                st = os.lstat(path)
                kind = kinds.get(stat.S_IFMT(st.st_mode))
                if kind in (None, tarfile.DIRTYPE):
                    continue  # devices are left out; directories need no entry of their own
                info = tarfile.TarInfo(os.path.relpath(path, WORKSPACE))
                info.type, info.mode, info.mtime = kind, st.st_mode & 0o7777, int(st.st_mtime)
                info.uid, info.gid = st.st_uid, st.st_gid
                if kind == tarfile.REGTYPE:
                    info.size = st.st_size
                    if not os.access(path, os.R_OK):
                        continue
                elif kind == tarfile.SYMTYPE:
                    info.linkname = os.readlink(path)
                info.tobuf(tarfile.USTAR_FORMAT)
            except (OSError, ValueError):
                continue  # vanished, unreadable, or a path or size a ustar header cannot hold
            entries.append((info, path))
    return sorted(entries, key=lambda entry: entry[0].name)


class Frames:
    """A file-like writer that sends what it is given as A frames, CHUNK bytes at a time."""

    def __init__(self):
        self.buffer, self.written = bytearray(), 0

    def write(self, data):
        self.buffer += data
        self.written += len(data)
        while len(self.buffer) >= CHUNK:
            send(b"A", bytes(self.buffer[:CHUNK]))
            del self.buffer[:CHUNK]
        return len(data)

    def tell(self):
        return self.written

    def flush(self):
        if self.buffer:
            send(b"A", bytes(self.buffer))
            self.buffer.clear()


def send_artifacts():
    """The tar of /workspace/out as A frames, then Z. A file that fails half-way cuts the
    archive there: tracebox keeps the files that came whole."""
    entries = archive_entries()
    if entries:
        import tarfile

        out = Frames()
        try:
            with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for info, path in entries:
                    if info.isfile():
                        with open(path, "rb") as file:
                            tar.addfile(info, file)
                    else:
                        tar.addfile(info)
        except (OSError, ValueError):
            pass
        out.flush()
    send(b"Z")


def wipe(top, mode):
    """Remove everything under `top`, and say whether it is empty now, with the mode it had at
    the start. The program may have made directories (`top` itself included) unreadable or
    unwritable: every one is opened up before the removal."""
    try:
        if os.stat(top).st_uid == os.getuid():
            os.chmod(top, 0o700)
    except OSError:
        pass
    for root, dirs, _ in os.walk(top):
        for name in dirs:
            path = os.path.join(root, name)
            try:
                if not os.path.islink(path):
                    os.chmod(path, 0o700)  # before os.walk lists it
            except OSError:
                pass
    for root, dirs, names in os.walk(top, topdown=False):
        for name in names:
            try:
                os.unlink(os.path.join(root, name))
            except OSError:
                pass
        for name in dirs:
            path = os.path.join(root, name)
            try:
                if os.path.islink(path):
                    os.unlink(path)
                else:
                    os.rmdir(path)
            except OSError:
                pass
    try:
        if os.stat(top).st_uid == os.getuid():
            os.chmod(top, mode & 0o7777)
        return not os.listdir(top)
    except OSError:
        return False


# (call, its *_INFO command, where the count of objects in use is in the struct it fills): every
# field is a C int, so the offsets hold on every Linux architecture.
SYSV_COUNTS = (("shmctl", 14, 0), ("msgctl", 12, 0), ("semctl", 19, 28))  # used_ids, msgpool, semusz


def sysv_ipc_left():
    """Does any SysV shared memory, message queue or semaphore set exist? (They outlive the
    processes that made them, and only a syscall of their own removes them.) Asked of the kernel
    by the *_INFO commands rather than read from /proc/sysvipc, which gVisor does not have."""
    import ctypes

    for call, command, offset in SYSV_COUNTS:
        info = ctypes.create_string_buffer(128)
        args = (0, 0, command, info) if call == "semctl" else (0, command, info)
        if getattr(LIBC, call)(*args) < 0:
            return True  # unknown: as good as left
        if ctypes.c_int.from_buffer(info, offset).value != 0:
            return True
    return False


def channel_exposed():
    """Can another process of this user open this process's descriptors (the channel to
    tracebox) through /proc/1/fd? Not on Linux, for a process that is not dumpable; gVisor
    (runsc, as of its 2022 releases) lets it. A forked child asks, as a program would: it is
    another process of the same user, without capabilities."""
    pid = os.fork()
    if pid == 0:
        try:
            os.close(os.open("/proc/1/fd/0", os.O_RDONLY | os.O_NONBLOCK))
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def wipe_all(modes):
    """Empty everything a run may have written, and put back the mode of each folder; False
    when something would stay."""
    emptied = [wipe(top, modes[top][0]) for top in WIPED if top in modes and os.path.isdir(top)]
    return all(emptied) and folder_modes() == modes and not sysv_ipc_left()


class Requests:
    """tracebox's frames on stdin, parsed as they come."""

    def __init__(self):
        self.buffer = bytearray()

    def feed(self, data):
        self.buffer += data

    def next(self):
        """The next whole frame as (kind, payload), or None until more arrives."""
        newline = self.buffer.find(b"\n")
        if newline < 0:
            return None
        head = bytes(self.buffer[:newline]).split(b" ")
        if head == [b"E"]:
            del self.buffer[: newline + 1]
            return "E", None
        if head[0] not in (b"P", b"D") or len(head) != 2 or not head[1].isdigit():
            raise SystemExit("tracebox supervisor: malformed frame from tracebox")
        end = newline + 1 + int(head[1])
        if len(self.buffer) < end:
            return None
        payload = bytes(self.buffer[newline + 1 : end])
        if head[0] == b"D":
            del self.buffer[:end]
            return "D", payload
        header = json.loads(payload)
        code_end = end + int(header["code"])
        handler = header.get("handler")
        event_end = code_end + (int(handler["event"]) if handler else 0)
        if len(self.buffer) < event_end:
            return None
        header["code"] = bytes(self.buffer[end:code_end])
        if handler:
            handler["event"] = bytes(self.buffer[code_end:event_end])
        del self.buffer[:event_end]
        return "P", header


def program_frame(header, deadline_ns):
    """What the program process reads first: its code, and its environment as `NAME=value`
    pairs each ended by a NUL byte (names and values hold none; a runner needs no parser). In
    handler mode, the call follows: its name, key, deadline (CLOCK_MONOTONIC, in ns), request
    id, memory limit in MiB and result limit, each ended by a NUL byte, then the event's JSON."""
    env = b"".join(b"%s=%s\0" % (k.encode(), v.encode()) for k, v in (header.get("env") or {}).items())
    code = header["code"]
    handler = header.get("handler")
    if not handler:
        return b"TRACEBOX1 %d %d\n" % (len(code), len(env)) + env + code
    fields = (handler["name"], handler["key"], deadline_ns, handler["request_id"], handler["memory_mb"])
    call = b"".join(b"%s\0" % str(field).encode() for field in fields + (handler["result_limit"],))
    call += handler["event"]
    return b"TRACEBOX1 %d %d %d\n" % (len(code), len(env), len(call)) + env + code + call


class Supervisor:
    """The loop: programs in from tracebox, their output out, their end told."""

    def __init__(self):
        # A child that ends wakes the loop through this pipe (its handler does nothing itself).
        self.woken, wake = os.pipe()
        os.set_blocking(self.woken, False)
        os.set_blocking(wake, False)
        signal.set_wakeup_fd(wake, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.settings = process_settings()
        self.modes = folder_modes()
        os.set_blocking(0, False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(0, selectors.EVENT_READ)
        self.selector.register(self.woken, selectors.EVENT_READ)
        self.requests = Requests()
        self.runs = 0
        # A program that could open the channel could read the next run's program from it, or
        # end its run early with a frame of its own and go on into the next: such a container
        # serves one run, whatever its mode.
        self.max_runs = 1 if MODE == "recycle" and channel_exposed() else MAX_RUNS
        self.program = Program()
        self.running, self.deadline, self.idle_since, self.ooms_before = False, None, time.monotonic(), -1
        self.stdin_ended = False  # tracebox went away: the run in progress is the last
        self.watched = None  # the program's pipe, while stdin waits to go into it

    def serve(self):
        """Serve programs until the container should end; its exit status."""
        send(b"R")
        while True:
            now = time.monotonic()
            if self.running:
                timeout = None if self.deadline is None else max(0.0, self.deadline - now)
            else:
                timeout = max(0.0, self.idle_since + MAX_IDLE - now)
            events = self.selector.select(timeout)
            now = time.monotonic()
            if not self.running and now >= self.idle_since + MAX_IDLE:
                return 0
            if self.running and self.deadline is not None and now >= self.deadline:
                kill(self.program.pid)  # tracebox did not stop it: the backstop does
                self.deadline = None
            for key, _ in events:
                ended = self.on_event(key.fd, key.data)
                if ended is not None:
                    return ended
            if self.running and self.program.status is not None:
                ended = self.end_run()
                if ended is not None:
                    return ended
            elif self.running:
                self.feed_stdin()

    def on_event(self, fd, kind):
        """Handle one readable descriptor; an exit status when the container should end."""
        if kind is not None:  # one of the program's output pipes
            if not self.program.relay(fd):
                self.selector.unregister(fd)
        elif fd == self.woken:
            try:
                os.read(self.woken, 1 << 10)
            except BlockingIOError:
                pass
            if (status := reap().get(self.program.pid)) is not None:
                if not self.running:
                    return 0  # the waiting program process died: this container is lost
                self.program.status = status
        elif fd == 0:
            return self.on_stdin()
        return None

    def on_stdin(self):
        try:
            data = os.read(0, CHUNK)
        except BlockingIOError:
            return None
        if not data:
            # tracebox went away: end the program, and so this container.
            if not self.running:
                return 0
            kill(self.program.pid)
            self.selector.unregister(0)
            self.stdin_ended = True
            return None
        self.requests.feed(data)
        while (frame := self.requests.next()) is not None:
            kind, payload = frame
            if kind == "P" and self.running:
                # tracebox sends a program only after R: the stream is not whole.
                return 3
            if kind == "P":
                self.start_run(payload)
            elif kind == "D" and self.running:
                self.program.send(payload)
            elif kind == "E" and self.running:
                self.program.close_stdin()
            # Stdin for a program that has ended (or before one) is dropped.
        return None

    def start_run(self, header):
        self.running = True
        self.ooms_before = oom_kills()
        timeout = float(header.get("timeout", 60))
        deadline_ns = time.monotonic_ns() + int(timeout * 1e9)
        self.deadline = time.monotonic() + timeout + GRACE
        handler = header.get("handler")
        self.program.result_room = int(handler["channel_limit"]) + 1 if handler else 0
        # Before the program has its code: G comes before anything it writes.
        send(b"G")
        for fd, kind in self.program.outputs():
            self.selector.register(fd, selectors.EVENT_READ, kind)
        self.program.send(program_frame(header, deadline_ns))

    def feed_stdin(self):
        """Stdin goes into the program's pipe as fast as it takes it, never blocking this loop."""
        more = self.program.flush()
        if more and self.watched is None:
            self.watched = self.program.pipe
            self.selector.register(self.watched, selectors.EVENT_WRITE)
        elif not more and self.watched is not None:
            self.selector.unregister(self.watched)
            self.watched = None

    def end_run(self):
        """The program ended: end what it left, relay the rest of its output, tell how it ended,
        send its artifacts; then exit (fresh) or ready the next program (recycle)."""
        program = self.program
        if self.watched is not None:
            self.selector.unregister(self.watched)
            self.watched = None
        all_gone = end_the_rest()
        # Every writer of its pipes is gone now (unless one outlived the kill): what they hold
        # is the last of its output.
        for fd, _ in program.outputs():
            self.selector.unregister(fd)
            program.relay(fd, drain=True)
        program.discard()
        after = oom_kills()
        ooms = after - self.ooms_before if self.ooms_before >= 0 and after >= 0 else -1
        status = exit_status(program.status)
        send(b"X", b"%d %d" % (status, ooms))
        send_artifacts()
        self.runs += 1
        if MODE != "recycle":
            return status
        if self.runs >= self.max_runs or self.stdin_ended or not all_gone:
            return 0
        if not wipe_all(self.modes) or process_settings() != self.settings:
            return 0  # something of this run would stay: the container serves no other
        if self.settings[2] is None:
            return 0  # its I/O priority cannot be checked here
        self.running, self.deadline = False, None
        self.program = Program()
        self.idle_since = time.monotonic()
        send(b"R")
        return None


def main():
    global LIBC
    LIBC = load_libc()
    not_dumpable()
    # PID 1 gets only the signals it handles: programs can send it SIGCHLD (harmless) and
    # nothing else, not even Python's own SIGINT. Linux drops the rest for a namespace's init;
    # gVisor delivers them, so every signal that can be ignored is (SIGSTOP and SIGKILL cannot).
    for sig in IGNORED:
        signal.signal(sig, signal.SIG_IGN)
    if MODE == "sandbox":
        import sandboxd  # a stateful sandbox: operations rather than one program at a time

        return sandboxd.serve()
    return Supervisor().serve()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NotReady as error:
        sys.exit("tracebox supervisor: %s" % error)
