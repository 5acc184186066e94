// The tracebox playground: an editor, a Run button, and output streamed over /ws.
// Everything here is plain DOM: no framework, no CDN, no inline script (the CSP forbids it).
'use strict';

const SAMPLES = {
  python: [
    'import time',
    '',
    'name = input("What is your name? ")',
    'for i in range(3):',
    '    print(f"hello {name}, tick {i}", flush=True)',
    '    time.sleep(0.5)',
    'print("done")',
    '',
  ].join('\n'),
  node: [
    "const readline = require('readline');",
    'const rl = readline.createInterface({ input: process.stdin });',
    "process.stdout.write('What is your name? ');",
    "rl.once('line', (name) => {",
    '  let i = 0;',
    '  const timer = setInterval(() => {',
    '    console.log(`hello ${name}, tick ${i}`);',
    '    if (++i === 3) { clearInterval(timer); rl.close(); }',
    '  }, 500);',
    '});',
    '',
  ].join('\n'),
};
const INDENT = { python: '    ', node: '  ' };

const $ = (id) => document.getElementById(id);
const ui = {
  language: $('language'), timeout: $('timeout'), run: $('run'), kill: $('kill'),
  connection: $('connection'), code: $('code'), gutter: $('gutter'), stdin: $('stdin'),
  status: $('status'), exitCode: $('exit-code'), duration: $('duration'), traceLink: $('trace-link'),
  output: $('output'), message: $('message'), inputForm: $('input-form'), input: $('input'), eof: $('eof'),
};

let socket = null;
let current = null; // { id, started } of the run on screen, while it runs
let runCount = 0;
let edited = false;

// ---- the editor: line numbers, tab indentation, Ctrl+Enter --------------------------------

function renderGutter() {
  const lines = ui.code.value.split('\n').length;
  let text = '';
  for (let i = 1; i <= lines; i++) text += i + '\n';
  ui.gutter.textContent = text;
  ui.gutter.scrollTop = ui.code.scrollTop;
}

function indentUnit() {
  return INDENT[ui.language.value] || '    ';
}

function replaceSelection(text, selectStart, selectEnd) {
  const area = ui.code;
  area.setRangeText(text, area.selectionStart, area.selectionEnd, 'end');
  if (selectStart !== undefined) area.setSelectionRange(selectStart, selectEnd);
  renderGutter();
  edited = true;
}

function lineStart(value, index) {
  return value.lastIndexOf('\n', index - 1) + 1;
}

function indentLines(outdent) {
  const area = ui.code;
  const value = area.value;
  const unit = indentUnit();
  const start = lineStart(value, area.selectionStart);
  const end = area.selectionEnd;
  const block = value.slice(start, end);
  const lines = block.split('\n');
  const changed = lines.map((line) => {
    if (!outdent) return unit + line;
    let strip = 0;
    while (strip < unit.length && line[strip] === ' ') strip++;
    return line.slice(strip);
  }).join('\n');
  area.setSelectionRange(start, end);
  area.setRangeText(changed, start, end, 'select');
  renderGutter();
  edited = true;
}

ui.code.addEventListener('keydown', (event) => {
  const area = ui.code;
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    startRun();
  } else if (event.key === 'Tab' && !event.ctrlKey && !event.altKey && area.dataset.escaped !== 'yes') {
    event.preventDefault();
    const multiline = area.value.slice(area.selectionStart, area.selectionEnd).includes('\n');
    if (event.shiftKey || multiline) indentLines(event.shiftKey);
    else replaceSelection(indentUnit());
  } else if (event.key === 'Enter' && !event.shiftKey) {
    // Keep the indentation of the line, one level more after a ':' or '{'.
    event.preventDefault();
    const value = area.value;
    const start = lineStart(value, area.selectionStart);
    const line = value.slice(start, area.selectionStart);
    let indent = line.match(/^[ \t]*/)[0];
    if (/[:{[(]\s*$/.test(line)) indent += indentUnit();
    replaceSelection('\n' + indent);
  } else if (event.key === 'Escape') {
    // Let the next Tab leave the editor, as keyboard users expect.
    area.dataset.escaped = 'yes';
  }
});
ui.code.addEventListener('blur', () => { ui.code.dataset.escaped = ''; });
ui.code.addEventListener('input', () => { edited = true; renderGutter(); });
ui.code.addEventListener('scroll', () => { ui.gutter.scrollTop = ui.code.scrollTop; });
document.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey) && event.target !== ui.code) {
    event.preventDefault();
    startRun();
  }
});

ui.language.addEventListener('change', () => {
  if (!edited || ui.code.value.trim() === '') {
    ui.code.value = SAMPLES[ui.language.value];
    edited = false;
    renderGutter();
  }
});

// ---- the socket -----------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  socket = new WebSocket(`${scheme}//${location.host}/ws`);
  setConnection('connecting…', 'pending');
  socket.addEventListener('open', () => setConnection('connected', 'ok'));
  socket.addEventListener('message', (event) => {
    let frame;
    try { frame = JSON.parse(event.data); } catch { return; }
    receive(frame);
  });
  socket.addEventListener('close', () => {
    setConnection('disconnected, reconnecting…', 'bad');
    if (current) finishRun({ status: 'error', message: 'the connection to the server was lost' });
    setTimeout(connect, 1000);
  });
}

function setConnection(text, state) {
  ui.connection.textContent = text;
  ui.connection.dataset.state = state;
}

function send(message) {
  if (!socket || socket.readyState !== WebSocket.OPEN) return false;
  socket.send(JSON.stringify(message));
  return true;
}

// ---- runs -----------------------------------------------------------------------------------

function startRun() {
  if (current) return;
  const timeout = parseFloat(ui.timeout.value);
  const message = {
    type: 'execute',
    id: `run-${++runCount}`,
    language: ui.language.value,
    code: ui.code.value,
    stdin: ui.stdin.value,
  };
  if (!Number.isNaN(timeout)) message.timeout = timeout;
  if (!send(message)) {
    showMessage('Not connected to the server yet; try again in a moment.');
    return;
  }
  current = { id: message.id, began: performance.now() };
  ui.output.textContent = '';
  ui.message.hidden = true;
  ui.exitCode.textContent = '';
  ui.duration.textContent = '';
  ui.traceLink.hidden = true;
  setStatus('queued', 'running');
  ui.run.disabled = true;
  ui.kill.disabled = false;
}

function receive(frame) {
  if (!current || frame.id !== current.id) {
    if (frame.type === 'error' && frame.id == null) showMessage(frame.message);
    return;
  }
  switch (frame.type) {
    case 'started':
      setStatus('running', 'running');
      linkTrace(frame.trace_id);
      ui.inputForm.hidden = false;
      ui.input.focus();
      break;
    case 'stdout':
    case 'stderr':
      appendOutput(frame.type, frame.data);
      break;
    case 'exit':
      finishRun(frame);
      break;
    case 'blocked':
      finishRun({ ...frame, status: 'blocked' });
      break;
    case 'rejected':
      // A message about this run was refused; the run goes on.
      showMessage(frame.message);
      break;
    case 'error':
      finishRun({ ...frame, status: 'error' });
      break;
  }
}

function appendOutput(stream, text) {
  const atBottom = ui.output.scrollHeight - ui.output.scrollTop - ui.output.clientHeight < 8;
  const last = ui.output.lastElementChild;
  if (last && last.dataset.stream === stream) {
    last.textContent += text;
  } else {
    const span = document.createElement('span');
    span.className = `out-${stream}`;
    span.dataset.stream = stream;
    span.textContent = text;
    ui.output.appendChild(span);
  }
  if (atBottom) ui.output.scrollTop = ui.output.scrollHeight;
}

function finishRun(frame) {
  setStatus(frame.status || 'error', frame.status || 'error');
  if (frame.exit_code !== undefined && frame.exit_code !== null) ui.exitCode.textContent = `exit code ${frame.exit_code}`;
  if (frame.duration_ms !== undefined) ui.duration.textContent = `${frame.duration_ms} ms`;
  if (frame.trace_id) linkTrace(frame.trace_id);
  if (frame.message) showMessage(frame.message);
  current = null;
  ui.run.disabled = false;
  ui.kill.disabled = true;
  ui.inputForm.hidden = true;
}

function setStatus(text, kind) {
  ui.status.textContent = text;
  ui.status.className = `status status-${kind}`;
}

function linkTrace(id) {
  ui.traceLink.href = `/trace/${encodeURIComponent(id)}`;
  ui.traceLink.textContent = 'open trace →';
  ui.traceLink.hidden = false;
}

function showMessage(text) {
  ui.message.textContent = text;
  ui.message.hidden = false;
}

ui.run.addEventListener('click', startRun);
ui.kill.addEventListener('click', () => {
  if (current) send({ type: 'kill', id: current.id });
});
ui.inputForm.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!current) return;
  const line = ui.input.value + '\n';
  send({ type: 'stdin', id: current.id, data: line });
  appendOutput('stdin', line);
  ui.input.value = '';
});
ui.eof.addEventListener('click', () => {
  if (current) send({ type: 'stdin', id: current.id, eof: true });
  ui.inputForm.hidden = true;
});

ui.code.value = SAMPLES.python;
renderGutter();
connect();
