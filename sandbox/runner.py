"""tracebox's Python runner: the process a program runs in, started by the supervisor
(supervise.py) ahead of time; once loaded it says so on fd 3 and blocks on its stdin pipe until
the program comes.

Reads one program from stdin, framed as `TRACEBOX1 <code length> <env length>\n<env><code>`
(the environment as `NAME=value` pairs, each ended by a NUL byte), sets the environment, then
runs the code as `__main__`. Everything after the code on stdin is the program's own stdin, and
stdout/stderr are the program's own (unbuffered). It reads with os.read so not one byte of the
program's stdin is consumed here. It imports nothing before the program does but `_json`, the C
half of `json` that handler mode needs (loaded while the process waits, so that a handler run
starts as fast as a plain one): in a new interpreter each module costs milliseconds. It adds
nothing user code could not do itself: it runs as the same unprivileged user, inside the same
limits.

Handler mode (`TRACEBOX1 <code> <env> <call length>\n<env><code><call>`, the call being its
name, key, deadline, request id, memory limit and result limit, each ended by a NUL byte, then
the event's JSON): the code is imported as the module `main` (so an `if __name__ == "__main__":`
block does not run), then its function `handler(event, context)` is called, and awaited when it
returns an awaitable (`async def`). What it returns, as JSON, or what it raised, goes to the
supervisor on the result's channel: fd 4, which this process takes for itself when it loads (a
close-on-exec copy; fd 4 itself is closed, and a plain run closes the copy before its code runs).
The message is `<key><r|e><length>\n<JSON>`; see src/sandbox/handler.rs.
"""
import os
import sys

RUNNER = __file__
# The handler's result channel: a close-on-exec copy of fd 4, and which pipe it is.
RESULT = None
RESULT_ID = None
# An error's message and stack are cut to keep its JSON within this (tracebox allows 64 KiB).
ERROR_ROOM = 48 * 1024


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
    """The program's environment and code, and in handler mode its call (else None)."""
    header = b""
    while not header.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte or len(header) > 64:
            sys.exit("tracebox runner: malformed program frame")
        header += byte
    parts = header.split()
    if len(parts) not in (3, 4) or parts[0] != b"TRACEBOX1" or not all(part.isdigit() for part in parts[1:]):
        sys.exit("tracebox runner: malformed program frame")
    # `NAME=value` pairs, each ended by a NUL byte: no parser to import (json costs 6 ms).
    pairs = read_exact(int(parts[2])).split(b"\0")[:-1]
    env = dict(pair.decode().split("=", 1) for pair in pairs)
    code = read_exact(int(parts[1]))
    call = read_exact(int(parts[3])) if len(parts) == 4 else None
    return env, code, call


def main():
    env, source, call = read_frame()
    os.environ.update(env)
    # Run it as `python3 main.py` would in /workspace: a real file (tracebacks show source
    # lines, __file__ and inspect work), its directory first on sys.path, a fresh __main__.
    filename = "/workspace/main.py"
    with open(filename, "wb") as file:
        file.write(source)
    sys.argv = [filename]
    sys.path[0] = "/workspace"
    if call is not None:
        raise SystemExit(run_handler(source, filename, call))
    close_result_channel()
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


class Context:
    """A handler's `context`, with Lambda's names: `request_id` (also `aws_request_id`) is the
    run's trace id, `function_name` the handler's name, `memory_limit_in_mb` the run's memory
    limit, and `get_remaining_time_in_millis()` what is left of its timeout."""

    function_version = "$LATEST"

    def __init__(self, name, request_id, memory_mb, deadline_ns):
        self.function_name = name
        self.request_id = self.aws_request_id = request_id
        self.memory_limit_in_mb = memory_mb
        self._deadline_ns = deadline_ns

    def get_remaining_time_in_millis(self):
        import time  # built in: no file to load

        return max(0, (self._deadline_ns - time.monotonic_ns()) // 1_000_000)

    def __repr__(self):
        return "LambdaContext(request_id=%r, function_name=%r)" % (self.request_id, self.function_name)


def run_handler(source, filename, call):
    """Import the code as `main`, call its handler, hand over what it returned or raised; the
    exit status (0 when it returned a result)."""
    name, key, deadline_ns, request_id, memory_mb, limit, event = call.split(b"\0", 6)
    name = name.decode()
    loads, dumps = json_codec()
    module = type(sys)("main")
    module.__file__ = filename
    module.__builtins__ = __builtins__
    sys.modules["main"] = module
    try:
        exec(compile(source, filename, "exec"), module.__dict__)
        function = module.__dict__.get(name)
        if not callable(function):
            return send_error(key, dumps, *handler_not_found(name, function))
        context = Context(name, request_id.decode(), int(memory_mb), int(deadline_ns))
        value = function(loads(event.decode()), context)
        if hasattr(type(value), "__await__"):
            value = wait_for(value)
    except SystemExit as stopped:
        status = exit_code(stopped) or 1
        message = "the program called sys.exit(%r) before its handler returned" % (stopped.code,)
        send_error(key, dumps, "Runtime.ExitError", message, "")
        return status
    except BaseException as error:
        kind, message, stack = describe(error)
        sys.stderr.write(stack)
        return send_error(key, dumps, kind, message, stack)
    return send_result(key, dumps, value, int(limit))


def wait_for(awaitable):
    """An async handler's result, on a new event loop (asyncio is loaded only for one)."""
    import asyncio

    async def wait():
        return await awaitable

    return asyncio.run(wait())


def handler_not_found(name, found):
    if found is None:
        message = "main.py defines no `%s`: define `def %s(event, context):` (the request's `handler` names it)"
        return "Runtime.HandlerNotFound", message % (name, name), ""
    message = "`%s` in main.py is a %s, not a function" % (name, type(found).__name__)
    return "Runtime.HandlerNotFound", message, ""


def describe(error):
    """An exception as (type, message, stack), without this runner's frames or asyncio's."""
    import traceback

    caught = traceback.TracebackException(type(error), error, error.__traceback__)
    frames = [frame for frame in caught.stack if frame.filename != RUNNER and "/asyncio/" not in frame.filename]
    caught.stack = traceback.StackSummary.from_list(frames)
    try:
        message = str(error)
    except Exception:  # noqa: BLE001 - a __str__ that fails still names its exception
        message = "<exception str() failed>"
    return type(error).__name__, message, "".join(caught.format())


def send_result(key, dumps, value, limit):
    try:
        payload = dumps(value).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as error:
        message = "the handler returned a value that is not JSON: %s" % (error,)
        return send_error(key, dumps, "Runtime.MarshalError", message, "")
    except UnicodeEncodeError:
        message = "the handler returned a string that is not Unicode (it holds a lone surrogate)"
        return send_error(key, dumps, "Runtime.MarshalError", message, "")
    if len(payload) > limit:
        message = "the handler's result is %d bytes of JSON; the limit is %d bytes (TRACEBOX_MAX_RESULT_BYTES)"
        return send_error(key, dumps, "Runtime.ResultTooLarge", message % (len(payload), limit), "")
    return 0 if send(key, b"r", payload) else 1


def send_error(key, dumps, kind, message, stack):
    """Hand over an error, cut to fit; the exit status (1)."""
    message, stack = message[:8192], stack[-16384:]
    while True:
        error = {"type": kind[:256], "message": message, "stack": stack}
        payload = dumps(error).encode("utf-8", "replace")
        if len(payload) <= ERROR_ROOM:
            break
        message, stack = message[: len(message) // 2], stack[len(stack) // 2 :]
    send(key, b"e", payload)
    return 1


def send(key, kind, payload):
    """The one message on the result's channel, then its end; False when the program closed or
    replaced the channel (the result is then lost, and says so on stderr)."""
    global RESULT
    message = key + kind + b"%d\n" % len(payload) + payload
    try:
        st = os.fstat(RESULT)
        if (st.st_dev, st.st_ino) != RESULT_ID:
            raise OSError("the descriptor is another file now")
        view = memoryview(message)
        while view:
            view = view[os.write(RESULT, view) :]
        os.close(RESULT)
        return True
    except (OSError, TypeError) as error:
        sys.stderr.write("tracebox runner: the handler's result was lost: the program closed its channel (%s)\n" % error)
        return False
    finally:
        RESULT = None


def json_codec():
    """(loads, dumps) on CPython's C accelerator, without importing `json`, whose `re` costs
    milliseconds: compact, not ASCII-escaped, NaN refused; `json` itself where that is missing."""
    try:
        import _json  # loaded already, while the process waited (see the end of this file)

        class Decoding:
            strict = True
            object_hook = object_pairs_hook = None
            parse_float, parse_int = float, int

            @staticmethod
            def parse_constant(name):
                raise ValueError("%s is not JSON" % name)

        scan = _json.make_scanner(Decoding())

        def loads(text):
            value, end = scan(text, 0)
            if end != len(text):
                raise ValueError("extra data after the event's JSON")
            return value

        def not_json(value):
            raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)

        encode = _json.make_encoder({}, not_json, _json.encode_basestring, None, ":", ",", False, False, False)
        return loads, lambda value: "".join(encode(value, 0))
    except (ImportError, AttributeError, TypeError):
        import json

        return json.loads, lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


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


def take_result_channel():
    """fd 4, the handler's result channel, as a close-on-exec descriptor of the runner's own:
    nothing written to fd 4 reaches it, and no child process inherits it."""
    global RESULT, RESULT_ID
    try:
        RESULT = os.dup(4)  # Python's descriptors are close-on-exec
        os.close(4)
        st = os.fstat(RESULT)
        RESULT_ID = (st.st_dev, st.st_ino)
    except OSError:
        RESULT = None  # started by hand, without a supervisor


def close_result_channel():
    """A plain run has no result: its code never holds the channel."""
    global RESULT
    if RESULT is not None:
        os.close(RESULT)
        RESULT = None


def loaded():
    """Tell the supervisor this process is ready (fd 3, then closed so the program never holds
    it)."""
    try:
        os.write(3, b"r")
        os.close(3)
    except OSError:
        pass  # started by hand, without a supervisor


if __name__ == "__main__":
    try:
        import _json  # noqa: F401 - ahead of handler mode, off the path of the run
    except ImportError:
        pass
    take_result_channel()
    loaded()
    os._exit(run_and_exit())
