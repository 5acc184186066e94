// tracebox's Node runner: the process a program runs in, started by the supervisor
// (supervise.py) ahead of time; once loaded it says so on fd 3 and blocks on its stdin pipe.
//
// Reads one program from stdin, framed as `TRACEBOX1 <code length> <env length>\n<env><code>`
// (the environment as `NAME=value` pairs, each ended by a NUL byte), sets the environment, then
// runs the code as the main CommonJS module `/workspace/main.js`. Everything after the code on
// stdin is the program's own stdin, and stdout/stderr are the program's own. It reads with
// fs.readSync so not one byte of the program's stdin is consumed here. It adds nothing user code
// could not do itself: it runs as the same unprivileged user, inside the same limits.
//
// Handler mode (`TRACEBOX1 <code> <env> <call length>\n<env><code><call>`, the call being its
// name, key, deadline, request id, memory limit and result limit, each ended by a NUL byte, then
// the event's JSON): the code is loaded as a module that is not the main one (so an
// `if (require.main === module)` block does not run), then its export `handler(event, context)`
// is called: an async function, a function returning a promise or a value, or a callback-style
// `(event, context, callback)`. What it gives, as JSON, or what it threw, goes to the supervisor
// on the result's channel: fd 4, which this process reopens for itself when it loads (a
// close-on-exec descriptor; fd 4 itself is closed, and a plain run closes the copy before its
// code runs). The message is `<key><r|e><length>\n<JSON>`; see src/sandbox/handler.rs.
//
// The image builds a startup snapshot of this file (`node --build-snapshot`, see
// Dockerfile.sandbox): Debian's Node is built without its own, and starting from one takes
// ~40 ms instead of ~70. Run directly (`node runner.js`), it behaves the same.
'use strict';
const fs = require('fs');
const v8 = require('v8');

// The handler's result channel (a close-on-exec descriptor of fd 4's pipe), and which pipe it is.
let result = null;
let resultId = null;
// An error's message and stack are cut to keep its JSON within this (tracebox allows 64 KiB).
const ERROR_ROOM = 48 * 1024;

// `module` and `vm` cannot be part of a snapshot, so they are loaded once it is running;
// Node's notice about that is not the program's, and is kept off its stderr.
function loadQuietly(load) {
  const listeners = process.listeners('warning');
  process.removeAllListeners('warning');
  try {
    return load();
  } finally {
    // The notice is emitted on the next tick: the program's own warnings come after it.
    process.nextTick(() => listeners.forEach((listener) => process.on('warning', listener)));
  }
}

function fail(message) {
  process.stderr.write(`tracebox runner: ${message}\n`);
  process.exit(2);
}

function readExact(length) {
  const buffer = Buffer.alloc(length);
  let filled = 0;
  while (filled < length) {
    const n = fs.readSync(0, buffer, filled, length - filled, null);
    if (n === 0) fail('program ended early');
    filled += n;
  }
  return buffer;
}

function readFrame() {
  let header = '';
  while (!header.endsWith('\n')) {
    if (header.length > 64) fail('malformed program frame');
    const byte = Buffer.alloc(1);
    if (fs.readSync(0, byte, 0, 1, null) === 0) fail('malformed program frame');
    header += byte.toString('latin1');
  }
  const match = /^TRACEBOX1 (\d+) (\d+)(?: (\d+))?\n$/.exec(header);
  if (!match) fail('malformed program frame');
  // `NAME=value` pairs, each ended by a NUL byte.
  const pairs = readExact(Number(match[2])).toString('utf8').split('\0').slice(0, -1);
  const env = Object.fromEntries(pairs.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]));
  const source = readExact(Number(match[1]));
  const call = match[3] === undefined ? null : readExact(Number(match[3]));
  return { env, source, call };
}

// fd 4, the handler's result channel, reopened as a close-on-exec descriptor of the runner's
// own (Node has no dup): nothing written to fd 4 reaches it, and no child process inherits it.
function takeResultChannel() {
  try {
    result = fs.openSync('/proc/self/fd/4', fs.constants.O_WRONLY);
    fs.closeSync(4);
    const stat = fs.fstatSync(result);
    resultId = `${stat.dev}:${stat.ino}`;
  } catch {
    result = null; // started by hand, without a supervisor
  }
}

// A plain run has no result: its code never holds the channel.
function closeResultChannel() {
  if (result !== null) fs.closeSync(result);
  result = null;
}

// The one message on the result's channel, then its end; false when the program closed or
// replaced the channel (the result is then lost, and says so on stderr).
function send(key, kind, payload) {
  const message = Buffer.concat([Buffer.from(`${key}${kind}${payload.length}\n`), payload]);
  try {
    if (result === null) throw new Error('it was closed');
    const stat = fs.fstatSync(result);
    if (`${stat.dev}:${stat.ino}` !== resultId) throw new Error('the descriptor is another file now');
    for (let written = 0; written < message.length; ) written += fs.writeSync(result, message, written);
    fs.closeSync(result);
    return true;
  } catch (error) {
    process.stderr.write(`tracebox runner: the handler's result was lost: the program closed its channel (${error.message})\n`);
    return false;
  } finally {
    result = null;
  }
}

// `value` as JSON, or a TypeError naming what JSON cannot hold (JSON.stringify would drop a
// function, and write a Map as {} and NaN as null, without a word).
function toJson(value) {
  return JSON.stringify(value === undefined ? null : value, function check(key, item) {
    const where = key === '' ? '' : Array.isArray(this) ? ` (at index ${key})` : ` (at key ${JSON.stringify(key)})`;
    const type = typeof item;
    if (type === 'function' || type === 'symbol' || type === 'bigint') throw new TypeError(`a ${type}${where}`);
    if (type === 'number' && !Number.isFinite(item)) throw new TypeError(`the number ${item}${where}`);
    const opaque = [Map, Set, WeakMap, WeakSet, Promise].find((kind) => item instanceof kind);
    if (opaque) throw new TypeError(`a ${opaque.name}${where}`);
    return item;
  });
}

// A thrown value as {type, message, stack}, without this runner's frames or Node's own.
function describe(error) {
  if (error instanceof Error || (error !== null && typeof error === 'object' && 'message' in error)) {
    const stack = String(error.stack ?? '')
      .split('\n')
      .filter((line) => !/\/opt\/tracebox\/|node:internal\/|at new Promise \(<anonymous>\)/.test(line))
      .join('\n');
    return { type: String(error.name ?? error.constructor?.name ?? 'Error'), message: String(error.message), stack };
  }
  let message;
  try {
    message = typeof error === 'string' ? error : JSON.stringify(error) ?? String(error);
  } catch {
    message = String(error);
  }
  return { type: typeof error, message, stack: '' };
}

// Call the exported handler of `filename` as `call` says, and hand over what it gives.
function runHandler(Module, filename, call) {
  const fields = [];
  let at = 0;
  for (let i = 0; i < 6; i++) {
    const end = call.indexOf(0, at);
    fields.push(call.toString('utf8', at, end));
    at = end + 1;
  }
  const [name, key, deadlineNs, requestId, memoryMb, limit] = fields;
  const event = call.toString('utf8', at);
  let sent = false;
  const sendError = (type, message, stack) => {
    if (sent) return;
    sent = true;
    process.exitCode = 1;
    let error = { type: type.slice(0, 256), message: message.slice(0, 8192), stack: stack.slice(-16384) };
    let payload = Buffer.from(JSON.stringify(error));
    while (payload.length > ERROR_ROOM) {
      error = { ...error, message: error.message.slice(0, error.message.length >> 1), stack: error.stack.slice(error.stack.length >> 1) };
      payload = Buffer.from(JSON.stringify(error));
    }
    send(key, 'e', payload);
  };
  const sendResult = (value) => {
    if (sent) return;
    let payload;
    try {
      payload = Buffer.from(toJson(value));
    } catch (error) {
      return sendError('Runtime.MarshalError', `the handler returned a value that is not JSON: ${error.message}`, '');
    }
    if (payload.length > Number(limit)) {
      const message = `the handler's result is ${payload.length} bytes of JSON; the limit is ${limit} bytes (TRACEBOX_MAX_RESULT_BYTES)`;
      return sendError('Runtime.ResultTooLarge', message, '');
    }
    sent = true;
    if (!send(key, 'r', payload)) process.exitCode = 1;
  };
  const raised = (error) => {
    if (sent) return;
    const { type, message, stack } = describe(error);
    process.stderr.write(`${stack || `${type}: ${message}`}\n`);
    sendError(type, message, stack);
  };
  process.on('exit', (code) => {
    const why = "it called process.exit(), or the handler's promise never settled and nothing was left to wait for";
    sendError('Runtime.ExitError', `the program ended (exit code ${code}) before its handler returned: ${why}`, '');
  });
  const deadline = BigInt(deadlineNs);
  const memory = Number(memoryMb);
  const context = {
    functionName: name,
    functionVersion: '$LATEST',
    memoryLimitInMB: memory,
    awsRequestId: requestId,
    // The contract's names too (API.md): the same values.
    request_id: requestId,
    function_name: name,
    memory_limit_in_mb: memory,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, Number((deadline - process.hrtime.bigint()) / 1000000n)),
  };
  const loading = filename.endsWith('.mjs')
    ? importer(Module)(`file://${filename}`)
    : new Promise((resolve) => resolve(Module._load(filename, null, false)));
  loading
    .then((exported) => {
      const handler = exported == null ? undefined : exported[name];
      if (typeof handler !== 'function') {
        const found = handler === undefined ? 'does not export' : `exports a ${typeof handler} as`;
        const message = `${filename.slice(11)} ${found} \`${name}\`: export it, e.g. \`exports.${name} = async (event, context) => …\` (the request's \`handler\` names it)`;
        return sendError('Runtime.HandlerNotFound', message, '');
      }
      return new Promise((resolve, reject) => {
        const callback = (error, value) => (error == null ? resolve(value) : reject(error));
        const out = handler(JSON.parse(event), context, callback);
        if (out !== null && typeof out === 'object' && typeof out.then === 'function') out.then(resolve, reject);
        else if (handler.length < 3) resolve(out);
        // else: a callback-style handler answers through its callback.
      }).then(sendResult, raised);
    })
    .catch(raised);
}

// `import()` for the runner: a function compiled by Node's CommonJS loader, which gives dynamic
// imports their loader (code of a startup snapshot has none).
function importer(Module) {
  const shim = new Module('/opt/tracebox/import.js', null);
  shim._compile('module.exports = (url) => import(url);', '/opt/tracebox/import.js');
  return shim.exports;
}

function main() {
  const [Module, vm] = loadQuietly(() => [require('module'), require('vm')]);
  takeResultChannel();
  // Loaded: tell the supervisor (fd 3, then closed so the program never holds it).
  try {
    fs.writeSync(3, 'r');
    fs.closeSync(3);
  } catch {
    // Started by hand, without a supervisor.
  }
  const { env, source, call } = readFrame();
  Object.assign(process.env, env);
  // Run it as `node main.js` would in /workspace: a real file, loaded as the main module. Code
  // that only compiles as an ES module (top-level import, export or await) gets the .mjs
  // extension Node needs; everything else stays CommonJS, as `node main.js` would treat it.
  function isModule(text) {
    try {
      new vm.Script(Module.wrap(text));
      return false;
    } catch (error) {
      return error instanceof SyntaxError && /\b(import|export|await)\b/.test(error.message);
    }
  }
  const filename = isModule(source.toString('utf8')) ? '/workspace/main.mjs' : '/workspace/main.js';
  fs.writeFileSync(filename, source);
  process.argv = [process.argv[0], filename];
  if (call !== null) {
    setImmediate(() => runHandler(Module, filename, call));
    return;
  }
  closeResultChannel();
  // From a fresh tick, so the program's stack traces do not pass through this runner.
  setImmediate(() => Module.runMain(filename));
}

if (v8.startupSnapshot && v8.startupSnapshot.isBuildingSnapshot()) {
  v8.startupSnapshot.setDeserializeMainFunction(main);
} else {
  main();
}
