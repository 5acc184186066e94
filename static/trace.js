// The trace page: highlighted code, copy buttons, folded output that unfolds, and a page that
// reloads itself once a running trace has finished. Everything here is an enhancement; the
// page reads fine without it.
import hljs from "./vendor/highlight/core.min.js";
import python from "./vendor/highlight/python.min.js";
import javascript from "./vendor/highlight/javascript.min.js";

hljs.registerLanguage("python", python);
hljs.registerLanguage("javascript", javascript);

// highlight.js escapes the text it reads; the code never goes through innerHTML unescaped.
for (const block of document.querySelectorAll("pre code[class*='language-']")) {
  hljs.highlightElement(block);
}

// navigator.clipboard needs a secure context (https or localhost); elsewhere a hidden
// textarea and execCommand still copy.
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.appendChild(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) throw new Error("copy refused");
}

function flash(button, text) {
  const label = button.dataset.label || button.textContent;
  button.dataset.label = label;
  button.textContent = text;
  setTimeout(() => { button.textContent = label; }, 1500);
}

for (const button of document.querySelectorAll("button.copy")) {
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    try {
      await copyText(source.textContent);
      flash(button, "Copied");
    } catch (_) {
      flash(button, "Copy failed");
    }
  });
}

for (const button of document.querySelectorAll("button.unfold")) {
  const pane = document.getElementById(button.dataset.target);
  if (!pane) continue;
  const label = button.textContent;
  button.addEventListener("click", () => {
    const folded = pane.classList.toggle("folded");
    button.setAttribute("aria-expanded", String(!folded));
    button.textContent = folded ? label : "Show less";
  });
}

// A running trace: check once a second, and reload when it has ended to show everything.
const head = document.getElementById("trace");
if (head && head.dataset.status === "running") {
  // Only the trace's head: a sandbox or a batch may have thousands of children.
  const url = `/trace/${encodeURIComponent(head.dataset.traceId)}?format=json&children_limit=0`;
  const timer = setInterval(async () => {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const trace = await response.json();
      if (trace.status !== "running") {
        clearInterval(timer);
        window.location.reload();
      }
    } catch (_) {
      // Try again on the next tick.
    }
  }, 1000);
}
