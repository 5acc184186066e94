// The trace list: rows of runs still going update in place, about once a second, until none
// is left running. Only ids travel in URLs; the page works the same without this script.
"use strict";

(() => {
  const POLL_MS = 1000;

  const runningRows = () => Array.from(document.querySelectorAll("tr[data-status='running']"));

  // The same wording as the server's: `0.4 ms`, `85 ms`, `1.24 s`, `2 min 05 s`.
  function humanDuration(ms) {
    if (ms < 10) return `${ms.toFixed(1)} ms`;
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(2)} s`;
    const secs = Math.round(ms / 1000);
    return `${Math.floor(secs / 60)} min ${String(secs % 60).padStart(2, "0")} s`;
  }

  function setStatus(row, status) {
    row.dataset.status = status;
    const badge = row.querySelector(".col-status .status");
    if (badge) {
      badge.className = `status status-${status}`;
      badge.textContent = status;
    }
  }

  function setCell(row, selector, text) {
    const cell = row.querySelector(selector);
    if (cell) cell.textContent = text;
  }

  function show(row, trace) {
    setStatus(row, trace.status);
    if (trace.status === "running") {
      const started = Date.parse(row.dataset.started);
      if (!Number.isNaN(started)) setCell(row, ".col-duration", humanDuration(Math.max(0, Date.now() - started)));
      return;
    }
    setCell(row, ".col-duration", trace.duration_ms == null ? "" : humanDuration(trace.duration_ms));
    setCell(row, ".col-exit", trace.exit_code == null ? "" : String(trace.exit_code));
  }

  async function refresh(row) {
    const url = `/trace/${encodeURIComponent(row.dataset.traceId)}?format=json`;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (response.ok) show(row, await response.json());
    } catch (_) {
      // The server is restarting or the network blinked: the next round tries again.
    }
  }

  async function poll() {
    const rows = runningRows();
    if (rows.length === 0) return;
    await Promise.all(rows.map(refresh));
    if (runningRows().length > 0) setTimeout(poll, POLL_MS);
  }

  // At once, so a running row shows its elapsed time from the start.
  poll();
})();
