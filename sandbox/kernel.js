// tracebox's Node kernel: the interpreter of a sandbox, whose variables, functions and classes
// persist from one code cell to the next, like a notebook's. The supervisor (supervise.py) starts
// it as `node /opt/tracebox/kernel.js` in /workspace, as the sandbox user, with:
//
//   fd 0   requests, one at a time: `CELL <n>\n` then n bytes of UTF-8 source
//   fd 1   the cells' stdout, fd 2 their stderr (written synchronously, so before the result)
//   fd 3   results: `<n>\n` then n bytes of JSON
//          {"status": "ok"|"error", "result": <util.inspect of the completion value, or null>,
//           "error": null | {"name", "value" (the message), "traceback" (the stack)}}
//          and first, once loaded, {"status": "ready", "result": null, "error": null}
//
// It exits when fd 0 ends. Cells run in the global scope in V8's REPL mode (the one Chrome's
// console uses), reached through the inspector protocol: top-level `await`, and `let`, `const`
// and `class` declarations that stay visible in later cells and may be declared again when a cell
// is run again. (Node's own `repl` module rejects that redeclaration, and would cost 24 ms to
// load.) `require`, `module`, `exports` and the built-in modules by name are globals, as in
// `node -e`; `import()` is not available (Node 18 cannot give REPL-mode code a module loader).
//
// SIGINT interrupts a cell (error `Interrupted`) while its synchronous code runs (the evaluation
// runs under vm's breakOnSigint watchdog) or while it awaits; not code that runs later in a
// promise job or timer (a busy loop after an `await`): the supervisor kills the kernel then. One
// that comes just as a cell's synchronous code ends, when the cell then awaits, can be lost (the
// watchdog takes it, and its script has ended): a supervisor should send SIGINT again before it
// gives up. Interrupting code in the middle of a built-in (a `require`, a stream) can leave that
// built-in's state half-updated, as in Node's REPL; process.stdout and process.stderr write
// synchronously to fd 1 and fd 2 so that they at least are not affected (see defineStdio).
// Timers, promise jobs and rejections that come after a cell has ended write their output when
// they run, into whatever cell runs then; an uncaught exception or unhandled rejection is printed
// on stderr (`Uncaught ...`, as the REPL does) and ends nothing. `process.exit()` ends the kernel.
//
// The kernel takes fd 0 and fd 3 for itself (close-on-exec descriptors of the same pipes; fd 0
// becomes /dev/null), so neither process.stdin nor a child process can read the next cell or
// write a result.
'use strict';
const fs = require('fs');
const inspector = require('inspector');
const vm = require('vm');

// The kernel's own functions, reachable from code that the inspector and vm run.
const KERNEL = Symbol.for('tracebox.kernel');
const kernel = {};
Object.defineProperty(globalThis, KERNEL, { value: kernel });
// Runs kernel.evaluate() under a watchdog that turns SIGINT into an exception.
const underWatchdog = new vm.Script('globalThis[Symbol.for("tracebox.kernel")].evaluate()');

// A close-on-exec descriptor of the pipe at `fd` (opened anew through /proc), with `fd` closed.
function takeDescriptor(fd, flags) {
  try {
    const copy = fs.openSync(`/proc/self/fd/${fd}`, flags);
    fs.closeSync(fd);
    return copy;
  } catch {
    return fd; // no /proc, or the pipe is another user's: keep the inherited descriptor
  }
}

const results = takeDescriptor(3, fs.constants.O_WRONLY);
const requests = takeDescriptor(0, fs.constants.O_RDONLY);
if (requests !== 0) fs.openSync('/dev/null', 'r'); // the lowest free descriptor: 0

const session = new inspector.Session();
session.connect();

// The globals `node -e` gives: require (relative to the cwd), module, exports, and each built-in
// module under its name, loaded on first use.
function defineGlobals() {
  const Module = require('module');
  const path = require('path');
  const cellRequire = Module.createRequire(path.join(process.cwd(), '[cell]'));
  const cellModule = { exports: {}, require: cellRequire, id: '[cell]' };
  Object.assign(globalThis, { require: cellRequire, module: cellModule, exports: cellModule.exports });
  for (const name of Module.builtinModules) {
    if (name.startsWith('_') || name.includes('/') || name in globalThis) continue;
    const define = (value) => Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });
    Object.defineProperty(globalThis, name, {
      get: () => define(cellRequire(name))[name],
      set: define,
      configurable: true,
    });
  }
}

// Write all of `data`, waiting while a non-blocking descriptor's pipe is full.
const pause = new Int32Array(new SharedArrayBuffer(4));
function writeAll(fd, data) {
  for (let written = 0; written < data.length; ) {
    try {
      written += fs.writeSync(fd, data, written);
    } catch (error) {
      if (error.code !== 'EAGAIN') throw error;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

function writeRecord(status, result = null, error = null) {
  const body = Buffer.from(JSON.stringify({ status, result, error }));
  writeAll(results, Buffer.concat([Buffer.from(`${body.length}\n`), body]));
}

// process.stdout and process.stderr write straight to fd 1 and fd 2, where node would make a pipe
// a net.Socket: (1) a write is done when it returns, so all of a cell's output is in the pipe
// before its result (a net.Socket keeps what a full pipe does not take, and writes it later);
// (2) a SIGINT that stops a cell in the middle of a write leaves no stream state half-updated (a
// net.Socket's can stay "writing" for good, and print nothing more). Writable for the rest (pipe,
// end, events); `write` itself bypasses its bookkeeping for that second reason.
function defineStdio() {
  const { Writable } = require('stream');
  for (const [name, fd] of [['stdout', 1], ['stderr', 2]]) {
    const stream = new Writable({
      write(chunk, encoding, callback) {
        writeAll(fd, chunk);
        callback();
      },
    });
    stream.fd = fd;
    stream.write = (chunk, encoding, callback) => {
      if (typeof encoding === 'function') [encoding, callback] = [undefined, encoding];
      writeAll(fd, typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk);
      if (callback) process.nextTick(callback);
      return true;
    };
    Object.defineProperty(process, name, { get: () => stream, configurable: true, enumerable: true });
  }
}

let util; // loaded with the first result that needs it
function inspect(value) {
  util ??= require('util');
  return util.inspect(value);
}

// A value the inspector describes by a RemoteObject, as the value itself.
let taken;
kernel.take = (value) => {
  taken = value;
};
function valueOf(remote) {
  if (remote.objectId !== undefined) {
    session.post('Runtime.callFunctionOn', {
      objectId: remote.objectId,
      functionDeclaration: 'function () { "use strict"; globalThis[Symbol.for("tracebox.kernel")].take(this); }',
    });
    const value = taken; // callFunctionOn answers synchronously
    taken = undefined;
    return value;
  }
  const special = remote.unserializableValue; // NaN, -0, Infinity, -Infinity, 12n
  if (special !== undefined) return special.endsWith('n') ? BigInt(special.slice(0, -1)) : Number(special);
  return remote.value;
}

const INTERRUPTED = { name: 'Interrupted', value: 'interrupted by SIGINT', traceback: 'Interrupted: interrupted by SIGINT' };

// The error record of what a cell threw, its stack cut where the kernel's frames begin.
function describe(thrown, details, source, number) {
  if (thrown === null || typeof thrown !== 'object' || typeof thrown.stack !== 'string') {
    const text = inspect(thrown);
    return { name: 'Uncaught', value: text, traceback: `Uncaught ${text}` };
  }
  const name = String(thrown.name);
  let value = String(thrown.message);
  let traceback = thrown.stack.split('\n    at Session.post (node:inspector')[0];
  if (name === 'SyntaxError' && details && !traceback.includes('\n    at ')) {
    // Thrown while compiling: show where, as node does for a script (the end of the input is
    // the end of its last line, not the kernel's sourceURL line after it).
    const lines = source.split('\n');
    const past = details.lineNumber >= lines.length;
    const row = past ? lines.length - 1 : details.lineNumber;
    const column = past ? lines[row].length : details.columnNumber;
    traceback = `cell-${number}:${row + 1}\n${lines[row]}\n${' '.repeat(column)}^\n\n${traceback}`;
  }
  if (value === 'Invalid host defined options') value += ' (no import() in a cell: use require())';
  return { name, value, traceback };
}

// `{ a: 1 }` is an object, not a block holding the label `a` (as in Node's REPL).
function asExpression(source) {
  if (!/^\s*{/.test(source) || /;\s*$/.test(source)) return source;
  try {
    new vm.Script(`(${source}\n)`);
    return `(${source}\n)`;
  } catch {
    return source;
  }
}

let current = null; // the running cell's settle(), until it settles

// Run one cell; settle(error, value) once: the error record, or the completion value.
function evaluate(source, number, settle) {
  let done = false;
  current = (error, value) => {
    if (done) return;
    done = true;
    current = null;
    settle(error, value);
  };
  const cell = current;
  const expression = `${asExpression(source)}\n//# sourceURL=cell-${number}`;
  const internal = (error) => cell({ name: 'InternalError', value: String(error?.message), traceback: String(error?.stack) });
  kernel.evaluate = () =>
    session.post('Runtime.evaluate', { expression, replMode: true, objectGroup: 'cell' }, (failure, reply) => {
      try {
        if (failure) return internal(failure);
        if (reply.exceptionDetails) return cell(describe(valueOf(reply.result), reply.exceptionDetails, source, number));
        cell(null, valueOf(reply.result));
      } catch (error) {
        internal(error);
      }
    });
  try {
    underWatchdog.runInThisContext({ breakOnSigint: true });
  } catch (error) {
    if (error.code !== 'ERR_SCRIPT_EXECUTION_INTERRUPTED') throw error;
    cell(INTERRUPTED);
  }
}

// Out of the watchdog (the cell awaits, or no cell runs): end the awaiting cell, if any.
process.on('SIGINT', () => current?.(INTERRUPTED));
process.on('uncaughtException', (error) => process.stderr.write(`Uncaught ${inspect(error)}\n`));
process.on('unhandledRejection', (reason) => process.stderr.write(`Uncaught (in promise) ${inspect(reason)}\n`));

async function runCell(source, number) {
  const [error, value] = await new Promise((resolve) => evaluate(source, number, (...outcome) => resolve(outcome)));
  let record = ['error', null, error];
  if (!error) {
    try {
      record = ['ok', value === undefined ? null : inspect(value), null];
    } catch (thrown) {
      record = ['error', null, describe(thrown, null, source, number)];
    }
  }
  session.post('Runtime.releaseObjectGroup', { objectGroup: 'cell' });
  writeRecord(...record);
}

// The requests: frames parsed from the chunks, one cell run at a time; exit at their end.
function serve(stream) {
  let pending = Buffer.alloc(0);
  let chunks = []; // read, and not yet joined to pending (a large cell comes in many)
  let queued = 0; // their length
  let needed = 0; // the length pending must reach for the frame at its head to be whole
  let number = 0;
  let running = false;
  let ended = false;
  async function next() {
    if (running) return;
    running = true;
    for (;;) {
      if (chunks.length) [pending, chunks, queued] = [Buffer.concat([pending, ...chunks]), [], 0];
      const newline = pending.indexOf(10);
      if (newline < 0) {
        if (pending.length > 64) fail('malformed request');
        break;
      }
      const match = /^CELL (\d+)$/.exec(pending.subarray(0, newline).toString('latin1'));
      if (!match) fail('malformed request');
      const end = newline + 1 + Number(match[1]);
      needed = end;
      if (pending.length < end) break;
      const source = pending.subarray(newline + 1, end).toString('utf8');
      [pending, needed] = [pending.subarray(end), 0];
      await runCell(source, ++number);
    }
    running = false;
    if (ended) {
      if (pending.length) fail('request ended early');
      process.exit(0);
    }
  }
  stream.on('data', (chunk) => {
    chunks.push(chunk);
    queued += chunk.length;
    if (pending.length + queued >= needed) next();
  });
  stream.on('end', () => {
    ended = true;
    next();
  });
}

function fail(message) {
  process.stderr.write(`tracebox kernel: ${message}\n`);
  process.exit(2);
}

function requestStream() {
  // A pipe is read by the event loop; anything else (a file, by hand) through the thread pool.
  try {
    return new (require('net').Socket)({ fd: requests, readable: true, writable: false });
  } catch {
    return fs.createReadStream(null, { fd: requests });
  }
}

defineStdio();
defineGlobals();
serve(requestStream());
writeRecord('ready');
