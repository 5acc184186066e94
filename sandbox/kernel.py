"""tracebox's Python kernel: the interpreter of a sandbox, whose variables, imports and functions
persist from one code cell to the next, like a notebook's. The supervisor (supervise.py) starts it
as `python3 -u /opt/tracebox/kernel.py` in /workspace, as the sandbox user, with:

    fd 0   requests, one at a time: `CELL <n>\\n` then n bytes of UTF-8 source
    fd 1   the cells' stdout, fd 2 their stderr (flushed before each result)
    fd 3   results: `<n>\\n` then n bytes of JSON
           {"status": "ok"|"error", "result": <repr of the last expression, or null>,
            "error": null | {"name", "value", "traceback"}}
           and first, once loaded, {"status": "ready", "result": null, "error": null}

It exits when fd 0 ends (running atexit handlers, not waiting for the cells' threads). The cells
run in one fresh `__main__` namespace, as typed at `python3`'s prompt: the result is also `_`,
and the source lines show in tracebacks. `SystemExit` ends the cell with an error (SystemExit,
its code as the value), not the kernel; os._exit() ends the kernel.

SIGINT during a cell raises KeyboardInterrupt in it: the cell ends with that error and the kernel
goes on. Python code, sleeps and blocking reads are interruptible; one long call into C that does
not check for signals (`sum(range(10**12))`, a catastrophic regex) is not until it returns: the
supervisor kills the kernel then. Between cells SIGINT is ignored.

The kernel takes fd 0 and fd 3 for itself (close-on-exec copies; fd 0 becomes /dev/null), so
neither `input()` nor a child process can read the next cell or write a result. It imports nothing
a cell does not need before it needs it: in a new interpreter each module costs milliseconds.
"""
import _ast
import _signal
import builtins
import os
import sys

KERNEL = globals()  # frames running these globals are the kernel's own, not a cell's
CELLS = {}  # "<cell n>" -> the cell's source lines, for tracebacks (see register_cells)
UNREGISTERED = []  # the cells not yet in linecache
busy = False  # a cell's code is running: SIGINT interrupts it


def take_descriptors():
    """fd 0 and fd 3 as close-on-exec descriptors of the kernel's own; /dev/null as fd 0."""
    try:
        results = os.dup(3)
    except OSError:
        sys.exit("tracebox kernel: fd 3 (results) is not open")
    os.close(3)
    requests = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return requests, results


REQUESTS, RESULTS = take_descriptors()
pending = bytearray()  # bytes read from REQUESTS and not yet taken


def read_more():
    chunk = os.read(REQUESTS, 1 << 16)
    pending.extend(chunk)
    return chunk


def read_cell():
    """The next cell's source (bytes), or None once the requests end."""
    global pending
    while b"\n" not in pending:
        if len(pending) > 64:
            sys.exit("tracebox kernel: malformed request")
        if not read_more():
            if pending:
                sys.exit("tracebox kernel: request ended early")
            return None
    header, _, rest = bytes(pending).partition(b"\n")
    parts = header.split(b" ")
    if len(parts) != 2 or parts[0] != b"CELL" or not parts[1].isdigit():
        sys.exit("tracebox kernel: malformed request")
    length = int(parts[1])
    pending = bytearray(rest)
    while len(pending) < length:
        if not read_more():
            sys.exit("tracebox kernel: request ended early")
    source = bytes(pending[:length])
    del pending[:length]
    return source


# JSON without the json module (6 ms to import): strings escape `"`, `\` and control characters.
ESCAPES = {code: f"\\u{code:04x}" for code in range(32)}
ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\"})


def quote(text):
    return "null" if text is None else '"' + text.translate(ESCAPES) + '"'


def write_result(status, result=None, error=None):
    """One record on fd 3, after everything the cell wrote to stdout and stderr."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a stream the cell closed or replaced has nothing to flush
            pass
    if error is not None:
        error = "{" + ", ".join(f'"{key}": {quote(error[key])}' for key in ("name", "value", "traceback")) + "}"
    text = f'{{"status": "{status}", "result": {quote(result)}, "error": {error or "null"}}}'
    # A lone surrogate (from a str(exc), say) is no UTF-8: it becomes "?".
    body = text.encode("utf-8", "replace")
    data = memoryview(b"%d\n%s" % (len(body), body))
    while data:
        data = data[os.write(RESULTS, data) :]


def register_cells():
    """Give linecache the cells' source, for tracebacks, inspect and warnings, once something has
    imported it (it costs ~7 ms: no cell pays for it unless it needs it). Entries without an
    mtime are never dropped by linecache.checkcache."""
    linecache = sys.modules.get("linecache")
    if linecache is not None:
        for filename in UNREGISTERED:
            lines = CELLS[filename]
            linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
        UNREGISTERED.clear()


def interrupt(signum, frame):
    """SIGINT: KeyboardInterrupt in the cell's code, and nothing while the kernel's own code runs
    (reading a request, writing a result), so that a late signal never breaks the protocol."""
    if busy and frame is not None and frame.f_globals is not KERNEL:
        raise KeyboardInterrupt


def compile_cell(source, filename):
    """The cell's statements, and its last one apart when it is an expression (or None)."""
    tree = compile(source, filename, "exec", _ast.PyCF_ONLY_AST, dont_inherit=True)
    last = None
    if tree.body and isinstance(tree.body[-1], _ast.Expr):
        last = compile(_ast.Expression(tree.body.pop().value), filename, "eval", dont_inherit=True)
    return compile(tree, filename, "exec", dont_inherit=True), last


def run_cell(source, number, namespace):
    global busy
    filename = f"<cell {number}>"
    CELLS[filename] = source.decode("utf-8", "replace").splitlines(keepends=True)
    UNREGISTERED.append(filename)
    register_cells()
    try:
        statements, last = compile_cell(source, filename)
        busy = True
        exec(statements, namespace)
        value = None if last is None else eval(last, namespace)
        result = None if value is None else repr(value)
        busy = False
    except BaseException as error:  # SystemExit and KeyboardInterrupt included: the cell's end
        busy = False
        write_result("error", error=describe(error))
        return
    if value is not None:
        builtins._ = value  # as the interactive interpreter does (a cell's own `_` shadows it)
    write_result("ok", result)


def describe(error):
    """The error record: the exception's class name, str() and traceback (without the kernel's
    frames: a SyntaxError has none of the cell's, so just its location)."""
    import traceback

    register_cells()
    try:
        value = str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ is the cell's, not the kernel's
        value = f"<unprintable {type(error).__name__} object>"
    text = "".join(traceback.format_exception(type(error), error, cell_frames(error.__traceback__)))
    return {"name": type(error).__name__, "value": value, "traceback": text}


def cell_frames(tb):
    """The traceback less the kernel's own frames: its exec() at the top and, at the bottom of a
    KeyboardInterrupt, the signal handler that raised it."""
    entries = []
    while tb is not None:
        if tb.tb_frame.f_globals is not KERNEL:
            entries.append(tb)
        tb = tb.tb_next
    for entry, after in zip(entries, entries[1:] + [None]):
        entry.tb_next = after
    return entries[0] if entries else None


def main():
    # A namespace like `python3`'s interactive one: a fresh __main__, sys.path[0] the cwd.
    module = type(sys)("__main__")
    module.__builtins__ = builtins
    sys.modules["__main__"] = module
    sys.argv = [""]
    sys.path[0] = ""
    _signal.signal(_signal.SIGINT, interrupt)
    write_result("ready")
    number = 0
    while (source := read_cell()) is not None:
        number += 1
        run_cell(source, number, module.__dict__)
    # The requests ended: end as the interpreter would, without waiting for the cells' threads.
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream has nothing to flush
            pass
    os._exit(0)


if __name__ == "__main__":
    main()
