"""tracebox's sandbox supervisor: PID 1 of a stateful sandbox (TRACEBOX_MODE=sandbox).

supervise.py hands over to it (same hardening: PID 1, not dumpable, reaps orphans). A sandbox
lives across requests, so it serves operations, several at once, each named by an id tracebox
chose. Requests arrive on the container's stdin:

    Q <n>\\n<n bytes of a JSON header>[<header["body"] bytes>]

    {"op": "exec", "id", "cmd", "cwd", "env", "timeout"}  run `bash -c cmd`; body: its first stdin
        ("argv": [...] instead of "cmd" runs that program; "merge": true sends stderr as stdout,
        in the order it was written)
    {"op": "code", "id", "timeout"}                      a cell for the kernel; body: its source
    {"op": "stdin", "id"} · {"op": "eof", "id"}          more stdin for an exec (body), or its end
    {"op": "kill", "id"}                                 end an exec (its whole session) or a cell
    {"op": "restart", "id"}                              a new kernel (its state is gone)
    {"op": "list", "id", "path"} · {"op": "stat", "id", "path"} · {"op": "remove", "id", "path"}
    {"op": "read", "id", "path", "offset", "length"}     the bytes come as D frames
    {"op": "write", "id", "path"}                        body: the bytes; parents are made
    {"op": "tar", "id"}                                  /workspace as a tar, in A frames
    {"op": "untar", "id"}                                body: a tar; /workspace is emptied first
    {"op": "usage", "id"}                                bytes /workspace holds

Frames on stdout, as in one-shot mode a kind byte and a 4-byte length, and here the payload
starts with the 4-byte id of the operation it belongs to (0: the sandbox itself):

    R ready · G an exec's process started · o / e its (or a cell's) stdout / stderr
    D bytes read · A bytes of a tar · Y the operation's end: JSON {"ok": true, ...} or
    {"ok": false, "error": {"code", "message"}}

Paths are resolved here, inside the container, and must stay within /workspace once symlinks
are followed: no path a program made can lead tracebox outside it (`bad_path` otherwise).
"""
import errno
import json
import os
import selectors
import signal
import stat
import sys
import time

WORKSPACE = "/workspace"
CHUNK = 1 << 16
# How long past its timeout an operation is ended here, should tracebox not end it.
GRACE = float(os.environ.pop("TRACEBOX_BACKSTOP_GRACE_SECS", "5"))
LANGUAGE = sys.argv[1] if len(sys.argv) > 1 else "python"
KERNELS = {
    "python": ["/usr/bin/python3", "-u", "/opt/tracebox/kernel.py"],
    "node": ["/usr/bin/node", "/opt/tracebox/kernel.js"],
}
# How long a kernel may take to load, and to end a cell once interrupted.
KERNEL_READY_SECS = 30
INTERRUPT_SECS = 2
# How long the output a command's session wrote may still come once its process ended.
DRAIN_SECS = 0.5


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def send(kind, op, payload=b""):
    """One frame to tracebox: the operation's id first in its payload."""
    body = op.to_bytes(4, "big") + payload
    write_all(1, kind + len(body).to_bytes(4, "big") + body)


def reply(op, **fields):
    send(b"Y", op, json.dumps(dict(ok=True, **fields)).encode())


def fail(op, code, message):
    send(b"Y", op, json.dumps({"ok": False, "error": {"code": code, "message": message}}).encode())


class Refused(Exception):
    """An operation that cannot be done as asked: (code, message) for its reply."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


def resolve(path, allow_missing=False):
    """The real path of `path` (relative to /workspace, or absolute within it), symlinks
    followed; refused when it leads outside /workspace."""
    if not isinstance(path, str) or "\0" in path:
        raise Refused("bad_path", "a path is a string without NUL bytes")
    full = os.path.join(WORKSPACE, path)  # an absolute path replaces WORKSPACE
    try:
        real = os.path.realpath(full)
    except OSError as error:  # a component changed from a symlink to something else meanwhile
        raise Refused("bad_path", "%r changed while it was resolved (%s); try again" % (path, error)) from None
    if real != WORKSPACE and not real.startswith(WORKSPACE + "/"):
        raise Refused("bad_path", "%r resolves to %r, outside /workspace" % (path, real))
    if not allow_missing and not os.path.lexists(real):
        raise Refused("not_found", "no file or directory %r in /workspace" % path)
    return real


def within(real):
    return real == WORKSPACE or real.startswith(WORKSPACE + "/")


def open_inside(path, flags, real=None):
    """A descriptor of `path` (or of its already resolved `real` path), and where it really
    is. A path is checked, then opened: a symlink swapped in between would lead the open
    elsewhere, so what was opened is checked again, by its descriptor, which no later swap
    can move. Never blocks (a FIFO opens at once)."""
    if real is None:
        real = resolve(path)
    try:
        fd = os.open(real, flags | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise Refused("not_found", "no file or directory %r in /workspace" % path) from None
    except NotADirectoryError:
        raise Refused("not_a_directory", "%r is not a directory" % path) from None
    where = os.readlink("/proc/self/fd/%d" % fd)
    if not within(where):
        os.close(fd)
        raise Refused("bad_path", "%r resolves to %r, outside /workspace" % (path, where))
    return fd, where


def inside(real):
    """`real` as the API names it: relative to /workspace."""
    return os.path.relpath(real, WORKSPACE)


def entry(real, name=None, dir_fd=None):
    """What the API shows of a file: by its real path, or by `name` in the directory `dir_fd`
    (whose real path is `real`)."""
    if dir_fd is None:
        st, path = os.lstat(real), real
    else:
        st, path = os.lstat(name, dir_fd=dir_fd), os.path.join(real, name)
    kind = "symlink" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "file"
    return {
        "name": name if name is not None else os.path.basename(real),
        "path": inside(path),
        "type": kind,
        "size": st.st_size,
        "modified": st.st_mtime,
    }


def no_room(error, what):
    """Refuse, saying why, a write that found no room: /workspace full (its disk_mb), or a file
    over the sandbox's largest (its fsize limit)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        st = os.statvfs(WORKSPACE)
        total = st.f_blocks * st.f_frsize >> 20
        raise Refused("no_space", "no room left for %r: /workspace is full (disk_mb: %d MiB)" % (what, total)) from None
    if error.errno == errno.EFBIG:
        raise Refused("too_large", "%r is larger than a file in the sandbox may be (TRACEBOX_FILE_SIZE_LIMIT_MB)" % what) from None


def last_part(path):
    """A path as its directory's real path (resolved, within /workspace) and its last name, not
    followed: removing a symlink removes the link, wherever it points."""
    if not isinstance(path, str) or "\0" in path:
        raise Refused("bad_path", "a path is a string without NUL bytes")
    head, name = os.path.split(os.path.join(WORKSPACE, path).rstrip("/") or "/")
    if name in ("", ".", ".."):
        head, name = os.path.split(resolve(path))  # it names a directory by where it leads
    parent = resolve(head)
    if os.path.join(parent, name) == WORKSPACE:
        raise Refused("bad_path", "/workspace itself cannot be removed")
    return parent, name


def default_signals():
    """In a child before it executes: every signal back to its default (PID 1 ignores most, and
    an ignored signal stays ignored across exec)."""
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass


def kernel_child(results_w):
    """In the kernel's process before it executes: its results' pipe as fd 3, default signals."""
    os.dup2(results_w, 3)
    default_signals()


class Exec:
    """A command: `bash -c` (or an argv), in a session of its own, with pipes of its own."""

    def __init__(self, op, header, stdin):
        import subprocess

        # The sandbox's environment (the container's, which supervise.py cleared of its own
        # settings), then the command's.
        env = dict(os.environ)
        env.update(header.get("env") or {})
        cwd = resolve(header.get("cwd") or WORKSPACE)
        argv = header.get("argv")
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) and "\0" not in a for a in argv)):
            argv = ["/bin/bash", "-c", header["cmd"]]
        merge = bool(header.get("merge"))
        self.op = op
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            preexec_fn=default_signals,
        )
        self.deadline = time.monotonic() + float(header.get("timeout", 60)) + GRACE
        self.input = self.process.stdin.fileno()
        self.outputs = {self.process.stdout.fileno(): b"o"}
        if not merge:
            self.outputs[self.process.stderr.fileno()] = b"e"
        for fd in [self.input, *self.outputs]:
            os.set_blocking(fd, False)
        self.pending = bytearray(stdin)
        self.closing = False
        self.status = None
        self.killed = False

    def kill(self):
        self.killed = True
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Kernel:
    """The persistent interpreter: cells on its stdin, results on its fd 3 (kernel.py)."""

    def __init__(self):
        import subprocess

        self.results, results_w = os.pipe()
        self.process = subprocess.Popen(
            KERNELS[LANGUAGE],
            cwd=WORKSPACE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # The kernel writes its results on fd 3: the pipe is put there before it starts, and
            # fd 3 is kept when every other descriptor is closed.
            pass_fds=(3,),
            preexec_fn=lambda: kernel_child(results_w),
            start_new_session=True,
        )
        os.close(results_w)
        self.input = self.process.stdin.fileno()
        self.outputs = {self.process.stdout.fileno(): b"o", self.process.stderr.fileno(): b"e"}
        for fd in [self.results, *self.outputs]:
            os.set_blocking(fd, False)
        self.buffer = bytearray()
        self.ready = False
        self.cell = None  # the op id of the cell it runs
        self.deadline = None
        self.interrupted_at = None

    def records(self, data):
        """Whole result records (`<n>\\n<json>`) in what came on fd 3."""
        self.buffer += data
        while b"\n" in self.buffer:
            head, _, rest = bytes(self.buffer).partition(b"\n")
            if not head.isdigit() or len(rest) < int(head):
                return
            yield json.loads(rest[: int(head)])
            del self.buffer[: len(head) + 1 + int(head)]

    def end(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for fd in (self.results, self.input, *self.outputs):
            try:
                os.close(fd)
            except OSError:
                pass


class Sandbox:
    """The loop: requests in, frames out, several operations at once."""

    def __init__(self):
        self.woken, wake = os.pipe()
        os.set_blocking(self.woken, False)
        os.set_blocking(wake, False)
        signal.set_wakeup_fd(wake, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        os.set_blocking(0, False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(0, selectors.EVENT_READ, ("stdin", None))
        self.selector.register(self.woken, selectors.EVENT_READ, ("wake", None))
        self.buffer = bytearray()
        self.execs = {}  # op id → Exec
        self.kernel = None
        self.cells = []  # (op, source, timeout) waiting for the kernel

    def serve(self):
        send(b"R", 0)
        while True:
            events = self.selector.select(self.next_deadline())
            for key, _ in events:
                if self.selector.get_map().get(key.fd) is not key:
                    # An earlier event of this batch ended its owner (a command's end closes
                    # its pipes): its descriptor is closed, or already another's.
                    continue
                what, owner = key.data
                if what == "stdin":
                    if not self.on_stdin():
                        return 0
                elif what == "wake":
                    self.on_children()
                elif what == "out":
                    self.relay(key.fd, owner)
                elif what == "in":
                    self.feed(owner)
                elif what == "results":
                    self.on_results()
            self.on_deadlines()

    def next_deadline(self):
        deadlines = [e.deadline for e in self.execs.values()]
        if self.kernel is not None and self.kernel.deadline is not None:
            deadlines.append(self.kernel.deadline)
        return None if not deadlines else max(0.0, min(deadlines) - time.monotonic())

    # -- requests

    def on_stdin(self):
        try:
            data = os.read(0, CHUNK)
        except BlockingIOError:
            return True
        if not data:
            return False  # tracebox closed the sandbox's stdin: it is being removed
        self.buffer += data
        while (request := self.next_request()) is not None:
            header, body = request
            op = int(header.get("id", 0))
            try:
                self.handle(op, header, body)
            except Refused as refused:
                fail(op, refused.code, refused.message)
            except OSError as error:
                fail(op, "os_error", "%s: %s" % (type(error).__name__, error))
            except (KeyError, TypeError, ValueError) as error:
                fail(op, "bad_request", "%s: %s" % (type(error).__name__, error))
        return True

    def next_request(self):
        newline = self.buffer.find(b"\n")
        if newline < 0:
            return None
        kind, _, length = bytes(self.buffer[:newline]).partition(b" ")
        if kind != b"Q" or not length.isdigit():
            raise SystemExit("tracebox sandbox: malformed request from tracebox")
        end = newline + 1 + int(length)
        if len(self.buffer) < end:
            return None
        header = json.loads(bytes(self.buffer[newline + 1 : end]))
        body_end = end + int(header.get("body", 0))
        if len(self.buffer) < body_end:
            return None
        body = bytes(self.buffer[end:body_end])
        del self.buffer[:body_end]
        return header, body

    def handle(self, op, header, body):
        kind = header["op"]
        if kind == "exec":
            self.start_exec(op, header, body)
        elif kind == "code":
            self.cells.append((op, body, float(header.get("timeout", 60))))
            self.next_cell()
        elif kind == "stdin":
            self.exec_of(header).pending += body
            self.feed(self.exec_of(header))
        elif kind == "eof":
            running = self.exec_of(header)
            running.closing = True
            self.feed(running)
        elif kind == "kill":
            self.kill(int(header["target"]))
            reply(op)
        elif kind == "restart":
            self.restart_kernel("restarted")
            reply(op)
        elif kind in ("list", "stat", "read", "write", "remove", "usage"):
            getattr(self, "file_" + kind)(op, header, body)
        elif kind == "tar":
            self.tar(op)
        elif kind == "untar":
            self.untar(op, body)
        else:
            raise Refused("bad_request", "unknown operation %r" % kind)

    def exec_of(self, header):
        running = self.execs.get(int(header["target"]))
        if running is None:
            raise Refused("not_running", "no command %s is running" % header["target"])
        return running

    # -- commands

    def start_exec(self, op, header, stdin):
        running = Exec(op, header, stdin)
        self.execs[op] = running
        for fd in running.outputs:
            self.selector.register(fd, selectors.EVENT_READ, ("out", running))
        send(b"G", op)
        self.feed(running)

    def feed(self, running):
        """Stdin into an exec's pipe as fast as it takes it, never blocking the loop."""
        fd = running.input
        if fd is None:
            return
        while running.pending:
            try:
                del running.pending[: os.write(fd, running.pending)]
            except BlockingIOError:
                break
            except BrokenPipeError:
                running.pending.clear()
                running.closing = True
        watched = self.selector.get_map().get(fd) is not None
        if running.pending and not watched:
            self.selector.register(fd, selectors.EVENT_WRITE, ("in", running))
        elif not running.pending:
            if watched:
                self.selector.unregister(fd)
            if running.closing:
                running.process.stdin.close()
                running.input = None

    def relay(self, fd, owner):
        """One read of an output pipe (of an exec, or of the kernel) as an o/e frame."""
        kind = owner.outputs[fd]
        op = owner.op if isinstance(owner, Exec) else owner.cell
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        if not data:
            self.selector.unregister(fd)
            return
        if op is not None:
            send(kind, op, data)  # a kernel's output between cells has no cell to go to

    def on_children(self):
        """Reap every child that ended (as PID 1, orphans of commands are children too) and end
        the operations whose process it was."""
        try:
            os.read(self.woken, 1 << 10)
        except BlockingIOError:
            pass
        ended = {}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            ended[pid] = os.waitstatus_to_exitcode(status)
        for running in list(self.execs.values()):
            if running.process.pid in ended:
                running.process.returncode = ended[running.process.pid]
                self.end_exec(running, ended[running.process.pid])
        if self.kernel is not None and self.kernel.process.pid in ended:
            self.kernel.process.returncode = ended[self.kernel.process.pid]
            self.restart_kernel("the kernel ended (%s)" % self.kernel.process.returncode, lost=True)

    def end_exec(self, running, status):
        """The command's own process ended: the rest of its output, then its end. What it left
        running in its session is ended with it (nothing outlives the command it came from)."""
        running.kill()
        deadline = time.monotonic() + DRAIN_SECS
        for fd in list(running.outputs):
            if self.selector.get_map().get(fd) is not None:
                self.selector.unregister(fd)
            drain(fd, deadline, lambda data, kind=running.outputs[fd]: send(kind, running.op, data))
        if running.input is not None and self.selector.get_map().get(running.input) is not None:
            self.selector.unregister(running.input)
        for stream in (running.process.stdin, running.process.stdout, running.process.stderr):
            if stream is None:  # a merged command has no stderr pipe of its own
                continue
            try:
                stream.close()
            except OSError:
                pass
        del self.execs[running.op]
        signaled = status < 0
        reply(
            running.op,
            exit_code=128 - status if signaled else status,
            signal=-status if signaled else None,
            killed=running.killed and signaled,
        )

    def kill(self, target):
        if target in self.execs:
            self.execs[target].kill()
        elif self.kernel is not None and self.kernel.cell == target:
            self.interrupt()
        else:
            self.cells = [cell for cell in self.cells if cell[0] != target]

    def on_deadlines(self):
        now = time.monotonic()
        for running in list(self.execs.values()):
            if now >= running.deadline:
                running.kill()  # tracebox did not end it: the backstop does
                running.deadline = float("inf")
        kernel = self.kernel
        if kernel is not None and kernel.deadline is not None and now >= kernel.deadline:
            if kernel.interrupted_at is None:
                self.interrupt()
            else:
                self.restart_kernel("it did not stop within %d s of an interrupt" % INTERRUPT_SECS, lost=True)

    # -- the kernel

    def start_kernel(self):
        kernel = Kernel()
        deadline = time.monotonic() + KERNEL_READY_SECS
        os.set_blocking(kernel.results, True)
        selector = selectors.DefaultSelector()
        selector.register(kernel.results, selectors.EVENT_READ)
        while not kernel.ready and time.monotonic() < deadline:
            if not selector.select(max(0.0, deadline - time.monotonic())):
                break
            data = os.read(kernel.results, CHUNK)
            if not data:
                break
            for record in kernel.records(data):
                kernel.ready = record.get("status") == "ready"
        selector.close()
        os.set_blocking(kernel.results, False)
        if not kernel.ready:
            kernel.end()
            raise Refused("kernel_failed", "the %s kernel did not start within %d s" % (LANGUAGE, KERNEL_READY_SECS))
        self.selector.register(kernel.results, selectors.EVENT_READ, ("results", kernel))
        for fd in kernel.outputs:
            self.selector.register(fd, selectors.EVENT_READ, ("out", kernel))
        self.kernel = kernel

    def next_cell(self):
        if not self.cells or (self.kernel is not None and self.kernel.cell is not None):
            return
        op, source, timeout = self.cells.pop(0)
        try:
            if self.kernel is None:
                self.start_kernel()
        except Refused as refused:
            fail(op, refused.code, refused.message)
            return self.next_cell()
        kernel = self.kernel
        kernel.cell = op
        # tracebox ends a cell at its timeout (a kill, so the reply says timeout); this is the
        # backstop, should it not, as for a command.
        kernel.deadline = time.monotonic() + timeout + GRACE
        kernel.interrupted_at = None
        os.set_blocking(kernel.input, True)
        write_all(kernel.input, b"CELL %d\n" % len(source) + source)

    def interrupt(self):
        """SIGINT for the cell the kernel runs, once: a second one could come after the cell
        ended, when the kernel is between cells (Node's then ends)."""
        kernel = self.kernel
        if kernel.interrupted_at is not None:
            return
        kernel.interrupted_at = time.monotonic()
        kernel.deadline = kernel.interrupted_at + INTERRUPT_SECS
        try:
            os.kill(kernel.process.pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    def on_results(self):
        kernel = self.kernel
        try:
            data = os.read(kernel.results, CHUNK)
        except BlockingIOError:
            return
        for record in kernel.records(data):
            if kernel.cell is None:
                continue
            op, kernel.cell, kernel.deadline = kernel.cell, None, None
            self.drain(kernel, op)
            record.update(interrupted=kernel.interrupted_at is not None, restarted=False)
            reply(op, **record)
        self.next_cell()

    def drain(self, kernel, op):
        """What the kernel wrote before its result (it flushes first) goes with its cell."""
        for fd, kind in kernel.outputs.items():
            drain(fd, time.monotonic(), lambda data, kind=kind: send(kind, op, data))

    def restart_kernel(self, why, lost=False):
        """End the kernel; the cell it ran (if any) ends as an error, and the next cell starts a
        new one."""
        kernel, self.kernel = self.kernel, None
        if kernel is None:
            return
        for fd in (kernel.results, *kernel.outputs):
            if self.selector.get_map().get(fd) is not None:
                self.selector.unregister(fd)
        if kernel.cell is not None:
            self.drain(kernel, kernel.cell)
        kernel.end()
        if kernel.cell is not None and lost:
            error = {"name": "KernelRestarted", "value": why, "traceback": ""}
            reply(kernel.cell, status="error", result=None, error=error, interrupted=True, restarted=True)
        self.next_cell()

    # -- files

    def file_list(self, op, header, body):
        path = header.get("path") or "."
        fd, real = open_inside(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            entries = []
            for name in sorted(os.listdir(fd)):
                try:
                    entries.append(entry(real, name, dir_fd=fd))
                except OSError:
                    continue  # removed meanwhile
        finally:
            os.close(fd)
        reply(op, entries=entries)

    def file_stat(self, op, header, body):
        reply(op, entry=entry(resolve(header["path"])))

    def file_read(self, op, header, body):
        path = header["path"]
        fd, _ = open_inside(path, os.O_RDONLY)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            if stat.S_ISDIR(st.st_mode):
                raise Refused("is_a_directory", "%r is a directory; list it instead" % path)
            raise Refused("not_a_file", "%r is not a regular file (a FIFO or a socket)" % path)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as file:
            size = st.st_size
            offset = min(int(header.get("offset") or 0), size)
            left = size - offset if header.get("length") is None else min(int(header["length"]), size - offset)
            file.seek(offset)
            sent = 0
            while left > 0:
                data = file.read(min(CHUNK, left))
                if not data:
                    break
                send(b"D", op, data)
                left -= len(data)
                sent += len(data)
        reply(op, size=size, offset=offset, length=sent)

    def file_write(self, op, header, body):
        path = header["path"]
        real = resolve(path, allow_missing=True)
        if real == WORKSPACE or os.path.isdir(real):
            raise Refused("is_a_directory", "%r is a directory" % path)
        parent, name = os.path.split(real)
        os.makedirs(parent, exist_ok=True)
        # The file is made in its directory as opened (checked by descriptor), by its name
        # alone and never through a symlink: no swap can move the write elsewhere.
        dir_fd, where = open_inside(path, os.O_RDONLY | os.O_DIRECTORY, real=parent)
        try:
            try:
                mode = stat.S_IMODE(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
            except FileNotFoundError:
                mode = 0o644
            # Written aside, then renamed over it: a write that fails (no room left in
            # disk_mb) leaves the file as it was, and no part of the new one.
            aside = ".tracebox-write-%s" % os.urandom(8).hex()
            fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
            try:
                try:
                    write_all(fd, body)
                    os.fchmod(fd, mode)
                finally:
                    os.close(fd)
                os.rename(aside, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                os.unlink(aside, dir_fd=dir_fd)
                raise
            shown = entry(where, name, dir_fd=dir_fd)
        except IsADirectoryError:
            raise Refused("is_a_directory", "%r is a directory" % path) from None
        except OSError as error:
            no_room(error, path)
            raise
        finally:
            os.close(dir_fd)
        reply(op, entry=shown)

    def file_remove(self, op, header, body):
        parent, name = last_part(header["path"])
        dir_fd, _ = open_inside(header["path"], os.O_RDONLY | os.O_DIRECTORY, real=parent)
        try:
            try:
                st = os.lstat(name, dir_fd=dir_fd)
            except FileNotFoundError:
                raise Refused("not_found", "no file or directory %r in /workspace" % header["path"]) from None
            if stat.S_ISDIR(st.st_mode):
                import shutil

                shutil.rmtree(name, dir_fd=dir_fd)  # by descriptors: it never follows a symlink
            else:
                os.unlink(name, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        reply(op)

    def file_usage(self, op, header, body):
        st = os.statvfs(WORKSPACE)
        reply(op, used=(st.f_blocks - st.f_bfree) * st.f_frsize, total=st.f_blocks * st.f_frsize)

    # -- the whole workspace

    def tar(self, op):
        import tarfile

        class Frames:
            def __init__(self):
                self.buffer, self.written = bytearray(), 0

            def write(self, data):
                self.buffer += data
                self.written += len(data)
                while len(self.buffer) >= CHUNK:
                    send(b"A", op, bytes(self.buffer[:CHUNK]))
                    del self.buffer[:CHUNK]
                return len(data)

            def tell(self):
                return self.written

            def flush(self):
                if self.buffer:
                    send(b"A", op, bytes(self.buffer))
                    self.buffer.clear()

        def as_it_was(info):
            """The mode a file had before `opened_up` changed it."""
            info.mode = changed.get(os.path.join(WORKSPACE, info.name), info.mode)
            return info

        out = Frames()
        changed = opened_up()
        try:
            with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
                for name in sorted(os.listdir(WORKSPACE)):
                    archive.add(os.path.join(WORKSPACE, name), arcname=name, recursive=True, filter=as_it_was)
        finally:
            put_back(changed)
        out.flush()
        reply(op, bytes=out.written)

    def untar(self, op, body):
        import io
        import tarfile

        opened_up()
        empty_workspace()
        os.chmod(WORKSPACE, 0o755)
        count = 0
        modes = {}  # directories' own modes, set once all they hold is in
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as archive:
            for member in archive:
                try:
                    extract(archive, member, modes)
                except OSError as error:
                    no_room(error, member.name)
                    raise
                count += 1
        put_back(modes)
        reply(op, entries=count)


def drain(fd, deadline, take):
    """Hand `take` what pipe `fd` holds, until its writers are gone or `deadline` passes (a
    process that left the command's session may hold it open for ever)."""
    import select

    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            continue
        except OSError:
            return
        if not data:
            return
        take(data)


def opened_up():
    """Make /workspace, and every directory in it, open to its owner (rwx), and every file in it
    readable: a program may have locked them, and the supervisor is the same user. Returns the
    modes it changed ({path: mode}), to be put back."""
    changed = {}

    def open_up(path, needed):
        try:
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if not stat.S_ISLNK(st.st_mode) and mode & needed != needed:
                os.chmod(path, mode | needed)
                changed[path] = mode
        except OSError:
            pass  # removed meanwhile

    open_up(WORKSPACE, 0o700)
    for root, dirs, files in os.walk(WORKSPACE):  # each directory opened before it is listed
        for name in dirs:
            open_up(os.path.join(root, name), 0o700)
        for name in files:
            open_up(os.path.join(root, name), 0o400)
    return changed


def put_back(modes):
    """The modes `opened_up` (or an extraction) left aside, deepest first."""
    for path in sorted(modes, reverse=True):
        try:
            os.chmod(path, modes[path])
        except OSError:
            pass


def empty_workspace():
    import shutil

    for name in os.listdir(WORKSPACE):
        path = os.path.join(WORKSPACE, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def extract(archive, member, modes):
    """One member into /workspace: regular files, hard links, directories and symlinks only,
    never through a link, never outside. A directory is made open to its owner; its own mode
    goes into `modes`, to be set once everything it holds is in."""
    name = os.path.normpath(member.name)
    if name.startswith(("/", "..")) or "\0" in name:
        raise Refused("bad_archive", "the archive names %r, outside /workspace" % member.name)
    target = os.path.join(WORKSPACE, name)
    parent = resolve(os.path.dirname(target), allow_missing=True)
    os.makedirs(parent, exist_ok=True)
    if member.isdir():
        os.makedirs(target, exist_ok=True)
        os.chmod(target, 0o700)
        modes[target] = member.mode & 0o777
    elif member.issym():
        os.symlink(member.linkname, target)
    elif member.islnk():
        source = os.path.normpath(member.linkname)
        if source.startswith(("/", "..")) or "\0" in source:
            raise Refused("bad_archive", "the archive links to %r, outside /workspace" % member.linkname)
        os.link(os.path.join(resolve(os.path.dirname(os.path.join(WORKSPACE, source))), os.path.basename(source)), target, follow_symlinks=False)
    elif member.isfile():
        source = archive.extractfile(member)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, member.mode & 0o777)
        try:
            while data := source.read(CHUNK):
                write_all(fd, data)
        finally:
            os.close(fd)
        os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


def serve():
    """Serve the sandbox until tracebox closes its stdin; the exit status."""
    return Sandbox().serve()
