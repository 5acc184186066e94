"""tracebox's supervisor: the container's command, and its PID 1.

    python3 supervise.py python|node        (settings in TRACEBOX_* environment variables)

tracebox first sends the container's marker on its stdin (`M <marker>\\n`; it is in no
environment, so no program can learn it). The supervisor then keeps a program process ready (a
new `python3 runner.py`, or `node` started from the snapshot of runner.js), loaded and blocked on
a pipe, and says so on stdout. tracebox then sends, on the container's stdin:

    P <n>\\n<n bytes of JSON {"code": <length>, "env": {...}, "timeout": <seconds>}><code>
    D <n>\\n<n bytes of the program's stdin>       (any number)
    E\\n                                           (end of the program's stdin)

On a program it says `\\0TRACEBOX-GO <marker>` on stdout (what follows is the program's; a
container gone before GO never ran it), and the program gets its code, environment and stdin
through its pipe (see runner.py, runner.js) and writes to the container's stdout and stderr
itself: its output is its own, unbuffered. When it ends, every other process is killed and
reaped, and the supervisor writes

    stderr: \\0TRACEBOX-END <marker>\\n
    stdout: \\0TRACEBOX-END <marker> <status> <OOM kills, or -1> <n>\\n<n bytes: a tar of /workspace/out>

so tracebox knows the program ended, how, and that it has all of its output. In `fresh` mode
the supervisor then exits with the program's status. In `recycle` mode it wipes /workspace,
/tmp, /dev/shm and /dev/mqueue (and ends the container instead when anything of the run would
stay, SysV IPC objects included), readies a new program process, and says
`\\0TRACEBOX-READY <marker>` again, up to TRACEBOX_MAX_RUNS runs. With no program for TRACEBOX_MAX_IDLE_SECS it exits, so no container
outlives a tracebox that died; a program running TRACEBOX_BACKSTOP_GRACE_SECS past its timeout
is killed, for the same reason.

It adds nothing user code could not do itself: it runs as the same unprivileged user inside the
same limits. It is PID 1, so no program can stop or kill it with a signal, and every orphan becomes its child
(it reaps them). It is not dumpable, so a program can neither trace it nor read its memory or
its stdin, and a program process is a new executable, never a fork of it: no program holds the
marker. Before a recycled container serves again, every process of the run has been reaped, and
what a program of the same user can change in this process and a new one would inherit (limits,
priority, CPUs, scheduler) is checked: changed, the container ends instead; the flags and owner
of the stdout and stderr it shares with programs are put back.
"""
import fcntl
import json
import os
import resource
import selectors
import signal
import sys
import time

LANGUAGE = sys.argv[1] if len(sys.argv) > 1 else "python"
MARKER = b""  # read from stdin first thing (see read_marker)
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
BLOCK, RECORD = 512, 20 * 512  # what tarfile writes: 512-byte blocks, 10 KiB records


def not_dumpable():
    """PR_SET_DUMPABLE 0: keeps programs (the same user) from tracing this process or reading
    its /proc files, its memory and stdin with them: the marker's secrecy rests on it, so a
    supervisor that cannot make sure of it does not start (a program process, a new
    executable, is dumpable as any process is)."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    if prctl(4, 0, 0, 0, 0) != 0 or prctl(3, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE, PR_GET_DUMPABLE
        sys.exit("tracebox supervisor: cannot make itself undumpable (errno %d)" % ctypes.get_errno())


RLIMITS = sorted(getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_"))


def process_settings():
    """What a program of the same user can change in this process (prlimit, setpriority,
    sched_setaffinity, sched_setscheduler) and the next program process would inherit."""
    limits = [resource.getrlimit(limit) for limit in RLIMITS]
    scheduler = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
    return limits, os.getpriority(os.PRIO_PROCESS, 0), os.sched_getaffinity(0), scheduler


def kill(pid):
    """SIGKILL `pid`, which may have ended already."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def restore_stdio(flags):
    """Undo what a program did to the container's stdout and stderr, open files it shares with
    this process and every program after it: their flags (O_NONBLOCK would make the next writes
    fail; O_ASYNC with an owner would send SIGIO, deadly by default, to the next program)."""
    for fd, saved in flags.items():
        fcntl.fcntl(fd, fcntl.F_SETOWN, 0)
        fcntl.fcntl(fd, fcntl.F_SETFL, saved)


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
    the END line; False when some outlived REAP_SECS."""
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
    """The process the next program runs in: started in advance, fed through a pipe."""

    def __init__(self):
        read_end, self.pipe = os.pipe()
        ready_read, ready_write = os.pipe()
        argv = program_argv()
        self.pid = os.posix_spawn(
            argv[0],
            argv,
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, read_end, 0),
                (os.POSIX_SPAWN_DUP2, ready_write, 3),
            ],
            # Ignored here (SIGINT, SIGPIPE) or by Python (SIGXFSZ): programs get the defaults.
            setsigdef=(signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ),
        )
        os.close(ready_write)
        # The runner writes a byte on fd 3 once it is loaded (and closes it).
        selector = selectors.DefaultSelector()
        selector.register(ready_read, selectors.EVENT_READ)
        loaded = selector.select(PROGRAM_READY_SECS) and os.read(ready_read, 1) == b"r"
        os.close(ready_read)
        if not loaded:
            os.kill(self.pid, signal.SIGKILL)
            raise NotReady("%s did not load within %d s" % (argv[0], PROGRAM_READY_SECS))
        os.close(read_end)
        os.set_blocking(self.pipe, False)
        self.pending = bytearray()
        self.closing = False
        self.status = None  # once it ended

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


def archive_size(entries):
    body = sum(BLOCK + (-(-info.size // BLOCK) * BLOCK if info.isfile() else 0) for info, _ in entries)
    return 0 if not entries else -(-(body + 2 * BLOCK) // RECORD) * RECORD


class Exactly:
    """A writer that sends exactly `size` bytes to stdout, whatever the archive turns out to be,
    so the frame stays whole."""

    def __init__(self, size):
        self.left, self.written = size, 0

    def write(self, data):
        taken = bytes(data[: self.left])
        write_all(1, taken)
        self.left -= len(taken)
        self.written += len(data)
        return len(data)

    def tell(self):
        return self.written

    def finish(self):
        while self.left:
            self.write(b"\0" * min(self.left, 1 << 16))


def send_artifacts(entries, size):
    if not entries:
        return
    import tarfile

    out = Exactly(size)
    try:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for info, path in entries:
                if info.isfile():
                    with open(path, "rb") as file:
                        tar.addfile(info, file)
                else:
                    tar.addfile(info)
    except (OSError, ValueError):
        pass  # the archive is cut here; tracebox keeps the files that came whole
    out.finish()


def wipe(top):
    """Remove everything under `top`, and say whether it is empty now. The program may have
    made directories unreadable or unwritable: every one is opened up before the removal."""
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
        return not os.listdir(top)
    except OSError:
        return False


def sysv_ipc_left():
    """Does any SysV shared memory, message queue or semaphore set exist? (They outlive the
    processes that made them, and only a syscall of their own removes them.)"""
    for kind in ("shm", "msg", "sem"):
        try:
            with open("/proc/sysvipc/" + kind) as table:
                if len(table.readlines()) > 1:  # a header, then a line per object
                    return True
        except OSError:
            return True  # unknown: as good as left
    return False


def wipe_all():
    """Empty everything a run may have written; False when something would stay."""
    emptied = [wipe(top) for top in WIPED if os.path.isdir(top)]
    return all(emptied) and not sysv_ipc_left()


def read_marker():
    """The first line tracebox sends: `M <marker>`."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte or len(line) > 128:
            sys.exit("tracebox supervisor: no marker on stdin")
        line += byte
    kind, _, marker = line.strip().partition(b" ")
    if kind != b"M" or not marker:
        sys.exit("tracebox supervisor: no marker on stdin")
    return marker


class Frames:
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
        if len(self.buffer) < code_end:
            return None
        header["code"] = bytes(self.buffer[end:code_end])
        del self.buffer[:code_end]
        return "P", header


def program_frame(header):
    """What the program process reads first: its code, and its environment as `NAME=value`
    pairs each ended by a NUL byte (names and values hold none; a runner needs no parser)."""
    env = b"".join(b"%s=%s\0" % (k.encode(), v.encode()) for k, v in (header.get("env") or {}).items())
    code = header["code"]
    return b"TRACEBOX1 %d %d\n" % (len(code), len(env)) + env + code


def main():
    global MARKER
    not_dumpable()
    # PID 1 gets only the signals it handles: programs can send it SIGCHLD (harmless) and
    # nothing else, not even Python's own SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # A child that ends wakes the loop through this pipe (its handler does nothing itself).
    woken, wake = os.pipe()
    os.set_blocking(woken, False)
    os.set_blocking(wake, False)
    signal.set_wakeup_fd(wake, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    settings = process_settings()
    stdio_flags = {fd: fcntl.fcntl(fd, fcntl.F_GETFL) for fd in (1, 2)}
    MARKER = read_marker()
    os.set_blocking(0, False)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(woken, selectors.EVENT_READ)
    frames = Frames()
    runs = 0
    program = Program()
    write_all(1, b"\0TRACEBOX-READY " + MARKER + b"\n")
    running, deadline, idle_since, ooms_before = False, None, time.monotonic(), -1
    stdin_ended = False  # tracebox went away: the run in progress is the last
    watched = None  # the program's pipe, while stdin waits to go into it
    while True:
        now = time.monotonic()
        if running:
            timeout = None if deadline is None else max(0.0, deadline - now)
        else:
            timeout = max(0.0, idle_since + MAX_IDLE - now)
        events = selector.select(timeout)
        now = time.monotonic()
        if not running and now >= idle_since + MAX_IDLE:
            return 0
        if running and deadline is not None and now >= deadline:
            kill(program.pid)  # tracebox did not stop it: the backstop does
            deadline = None
        for key, _ in events:
            if key.fd == woken:
                try:
                    os.read(woken, 1 << 10)
                except BlockingIOError:
                    pass
                if (status := reap().get(program.pid)) is not None:
                    if not running:
                        return 0  # the waiting program process died: this container is lost
                    program.status = status
            elif key.fd == 0:
                try:
                    data = os.read(0, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    # tracebox went away: end the program, and so this container.
                    if not running:
                        return 0
                    kill(program.pid)
                    selector.unregister(0)
                    stdin_ended = True
                    continue
                frames.feed(data)
                while (frame := frames.next()) is not None:
                    kind, payload = frame
                    if kind == "P" and running:
                        # tracebox sends a program only after READY: the stream is not whole.
                        return 3
                    if kind == "P":
                        running = True
                        ooms_before = oom_kills()
                        deadline = time.monotonic() + float(payload.get("timeout", 60)) + GRACE
                        # Before the program has its code: GO comes before anything it writes.
                        write_all(1, b"\0TRACEBOX-GO " + MARKER + b"\n")
                        program.send(program_frame(payload))
                    elif kind == "D" and running:
                        program.send(payload)
                    elif kind == "E" and running:
                        program.close_stdin()
                    # Stdin for a program that has ended (or before one) is dropped.
        if running and program.status is not None:
            if watched is not None:
                selector.unregister(watched)
                watched = None
            program.pending.clear()
            program.close_stdin()
            program.flush()
            all_gone = end_the_rest()
            restore_stdio(stdio_flags)
            after = oom_kills()
            ooms = after - ooms_before if ooms_before >= 0 and after >= 0 else -1
            entries = archive_entries()
            size = archive_size(entries)
            status = exit_status(program.status)
            write_all(2, b"\0TRACEBOX-END " + MARKER + b"\n")
            write_all(1, b"\0TRACEBOX-END %s %d %d %d\n" % (MARKER, status, ooms, size))
            send_artifacts(entries, size)
            runs += 1
            if MODE != "recycle":
                return status
            if runs >= MAX_RUNS or stdin_ended or not all_gone:
                return 0
            if not wipe_all() or process_settings() != settings:
                return 0  # something of this run would stay: the container serves no other
            running, deadline = False, None
            program = Program()
            idle_since = time.monotonic()
            write_all(1, b"\0TRACEBOX-READY " + MARKER + b"\n")
        elif running:
            # Stdin goes into the program's pipe as fast as it takes it, never blocking this loop.
            more = program.flush()
            if more and watched is None:
                watched = program.pipe
                selector.register(watched, selectors.EVENT_WRITE)
            elif not more and watched is not None:
                selector.unregister(watched)
                watched = None


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NotReady as error:
        sys.exit("tracebox supervisor: %s" % error)
