"""tracebox's Python runner: the process a program runs in, started by the supervisor
(supervise.py) ahead of time; once loaded it says so on fd 3 and blocks on its stdin pipe until
the program comes.

Reads one program from stdin, framed as `TRACEBOX1 <code length> <env length>\n<env><code>`
(the environment as `NAME=value` pairs, each ended by a NUL byte), sets the environment, then
runs the code as `__main__`. Everything after the code on stdin is the program's own stdin, and
stdout/stderr are the program's own (unbuffered). It reads with os.read so not one byte of the
program's stdin is consumed here. It imports nothing before the program does: in a new
interpreter each module costs milliseconds. It adds nothing user code could not do itself: it
runs as the same unprivileged user, inside the same limits.
"""
import os
import sys


def read_exact(length):
    remaining, chunks = length, []
    while remaining:
        chunk = os.read(0, min(remaining, 1 << 16))
        if not chunk:
            sys.exit("tracebox runner: program ended early")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame():
    """The program's environment and code."""
    header = b""
    while not header.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte or len(header) > 64:
            sys.exit("tracebox runner: malformed program frame")
        header += byte
    parts = header.split()
    if len(parts) != 3 or parts[0] != b"TRACEBOX1" or not (parts[1].isdigit() and parts[2].isdigit()):
        sys.exit("tracebox runner: malformed program frame")
    # `NAME=value` pairs, each ended by a NUL byte: no parser to import (json costs 6 ms).
    pairs = read_exact(int(parts[2])).split(b"\0")[:-1]
    env = dict(pair.decode().split("=", 1) for pair in pairs)
    return env, read_exact(int(parts[1]))


def main():
    env, source = read_frame()
    os.environ.update(env)
    # Run it as `python3 main.py` would in /workspace: a real file (tracebacks show source
    # lines, __file__ and inspect work), its directory first on sys.path, a fresh __main__.
    filename = "/workspace/main.py"
    with open(filename, "wb") as file:
        file.write(source)
    sys.argv = [filename]
    sys.path[0] = "/workspace"
    module = type(sys)("__main__")
    module.__file__ = filename
    module.__builtins__ = __builtins__
    sys.modules["__main__"] = module
    try:
        exec(compile(source, filename, "exec"), module.__dict__)
    except SystemExit:
        raise
    except BaseException as error:  # print it as Python would, without this runner's frame
        import traceback

        tb = error.__traceback__
        if tb is not None and tb.tb_frame.f_code is main.__code__:
            tb = tb.tb_next
        traceback.print_exception(type(error), error, tb)
        sys.exit(1)


def exit_code(error):
    """The status `sys.exit(error.code)` gives, as the interpreter computes it."""
    code = error.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def run_and_exit():
    """Run the program, then end as the interpreter would, but without tearing it down:
    non-daemon threads and atexit handlers are waited for and output flushed, and the status
    is returned for os._exit. (The interpreter's own teardown costs milliseconds after the
    program's end, and frees nothing that the end of the process does not.)"""
    try:
        main()
        status = 0
    except SystemExit as error:
        status = exit_code(error)
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream has nothing to flush
            pass
    return status


def loaded():
    """Tell the supervisor this process is ready (fd 3, then closed so the program never holds
    it)."""
    try:
        os.write(3, b"r")
        os.close(3)
    except OSError:
        pass  # started by hand, without a supervisor


if __name__ == "__main__":
    loaded()
    os._exit(run_and_exit())
