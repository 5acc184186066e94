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
// The image builds a startup snapshot of this file (`node --build-snapshot`, see
// Dockerfile.sandbox): Debian's Node is built without its own, and starting from one takes
// ~40 ms instead of ~70. Run directly (`node runner.js`), it behaves the same.
'use strict';
const fs = require('fs');
const v8 = require('v8');

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
  const match = /^TRACEBOX1 (\d+) (\d+)\n$/.exec(header);
  if (!match) fail('malformed program frame');
  // `NAME=value` pairs, each ended by a NUL byte.
  const pairs = readExact(Number(match[2])).toString('utf8').split('\0').slice(0, -1);
  const env = Object.fromEntries(pairs.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]));
  return { env, source: readExact(Number(match[1])) };
}

function main() {
  const [Module, vm] = loadQuietly(() => [require('module'), require('vm')]);
  // Loaded: tell the supervisor (fd 3, then closed so the program never holds it).
  try {
    fs.writeSync(3, 'r');
    fs.closeSync(3);
  } catch {
    // Started by hand, without a supervisor.
  }
  const { env, source } = readFrame();
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
  // From a fresh tick, so the program's stack traces do not pass through this runner.
  setImmediate(() => Module.runMain(filename));
}

if (v8.startupSnapshot && v8.startupSnapshot.isBuildingSnapshot()) {
  v8.startupSnapshot.setDeserializeMainFunction(main);
} else {
  main();
}
