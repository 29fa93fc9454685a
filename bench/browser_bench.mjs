#!/usr/bin/env node
// Browser side of bench/browser_bench.py (usable alone against any server):
// opens a run's CPU view in headless Chromium `--opens` times, each in a
// fresh browser context (empty cache), and measures
//   - navigation start -> the flame graph's first drawing (the task that
//     sized and painted its canvas; seen by a MutationObserver installed
//     before the page's scripts, so no help from the UI is needed),
//   - navigation start -> the function table shown,
//   - every /api/ request's start and duration (Resource Timing),
// then, in the last open, zooms the flame graph `--zooms` times (down the
// widest frame, six levels, then back to the root, again and again) and
// records per redraw: the click handler's synchronous time (what blocks the
// frame: hit test, layout, paint, hover), the graph's own layout + paint
// (data-draw-ms) and the DOM mirror written after it (data-mirror-ms).
// With --trace-cpu the zooms run under a Chrome trace, which adds per redraw
// the click handler's main-thread CPU time (the click's EventDispatch tdur):
// on a shared machine the wall time also counts the time the renderer was
// not running at all.
//
//   node bench/browser_bench.mjs --base URL --run ID [--opens N] [--zooms Z] [--trace-cpu 1]
//
// Prints one JSON object on stdout. Needs web/node_modules (npm ci in web/)
// and Debian's /usr/bin/chromium (CHROMIUM overrides).

import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const WEB = resolve(dirname(fileURLToPath(import.meta.url)), "..", "web");
const { chromium } = createRequire(join(WEB, "package.json"))("playwright-core");

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf("=");
    if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
    else out[a.slice(2)] = argv[++i];
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
if (!args.base || !args.run) {
  console.error("usage: node bench/browser_bench.mjs --base URL --run ID [--opens N] [--zooms Z]");
  process.exit(2);
}
const base = args.base.replace(/\/+$/, "");
const opens = Number(args.opens ?? 3);
const zooms = Number(args.zooms ?? 60);
const traceCpu = Boolean(Number(args["trace-cpu"] ?? 0));
const TIMEOUT = Number(process.env.BENCH_TIMEOUT_MS ?? 120000);

// Runs in the page before its own scripts.
function observeFirstDraw() {
  const t = (window.__bench = { flame: null, table: null });
  new MutationObserver(() => {
    if (t.flame === null) {
      const c = document.querySelector('[data-testid="flame-graph"]');
      // The graph sizes its canvas (style width/height) in the task that paints it.
      if (c && c.style.height) t.flame = performance.now();
    }
    if (t.table === null && document.querySelector('[data-testid="function-row"]')) t.table = performance.now();
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["style", "width", "height"] });
}

async function openOnce(browser, zoom) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, deviceScaleFactor: 1 });
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.addInitScript(observeFirstDraw);
    await page.goto(`${base}/runs/${args.run}#cpu`);
    await page.waitForFunction(() => window.__bench.flame !== null && window.__bench.table !== null, null, { timeout: TIMEOUT });
    const r = await page.evaluate(() => {
      const api = performance
        .getEntriesByType("resource")
        .filter((e) => e.name.includes("/api/"))
        .map((e) => ({ path: new URL(e.name).pathname.replace(/^\/api\/runs\/[0-9a-f]+/, "/api/runs/ID"), start: e.startTime, ms: e.responseEnd - e.startTime, bytes: e.encodedBodySize }));
      const c = document.querySelector('[data-testid="flame-graph"]');
      return { flame_ms: window.__bench.flame, table_ms: window.__bench.table, api, frames: Number(c.dataset.frames), first_layout_ms: Number(c.dataset.drawMs) };
    });
    if (zoom) r.zoom = await zoomMany(browser, page);
    if (errors.length) r.errors = errors;
    return r;
  } finally {
    await context.close();
  }
}

async function zoomMany(browser, page) {
  await page.waitForFunction(() => document.querySelector('[data-testid="flame-graph"]')?.hasAttribute("data-zoom"));
  await page.locator('[data-testid="flame-graph"]').scrollIntoViewIfNeeded();
  if (traceCpu) await browser.startTracing(page, { categories: ["devtools.timeline", "blink.user_timing"] });
  const out = await page.evaluate(async (n) => {
    const c = document.querySelector('[data-testid="flame-graph"]');
    const tick = () => new Promise((r) => setTimeout(r, 0));
    const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
    const click = (x, y) => {
      const b = c.getBoundingClientRect();
      const o = { clientX: b.left + x, clientY: b.top + y, bubbles: true };
      c.dispatchEvent(new MouseEvent("mousemove", o));
      performance.mark(`bench-click-${out.length}`);
      const t0 = performance.now();
      c.dispatchEvent(new MouseEvent("click", o));
      const dt = performance.now() - t0;
      performance.mark(`bench-click-end-${out.length}`);
      return dt;
    };
    const out = [];
    let depth = 0;
    while (out.length < n) {
      const lis = [...document.querySelectorAll('[data-testid="flame-top-frames"] li')];
      let handler;
      let what;
      if (depth >= 6 || !lis.length) {
        handler = click(5, 5); // the root bar: back to the whole tree
        what = "reset";
        depth = 0;
      } else {
        const w = lis.reduce((a, b) => (Number(b.dataset.w) > Number(a.dataset.w) ? b : a));
        handler = click(Number(w.dataset.x) + Number(w.dataset.w) / 2, Number(w.dataset.y) + 10);
        what = w.dataset.function;
        depth++;
      }
      const zoomBefore = c.dataset.zoom;
      // The mirror is written in a task after the paint; then let a frame go by.
      for (let i = 0; i < 50 && c.dataset.zoom === zoomBefore; i++) await tick();
      await frame();
      out.push({ what, handler_ms: handler, draw_ms: Number(c.dataset.drawMs), mirror_ms: Number(c.dataset.mirrorMs), frames: Number(c.dataset.frames) });
    }
    return out;
  }, zooms);
  if (traceCpu) {
    const events = JSON.parse((await browser.stopTracing()).toString()).traceEvents;
    const marks = new Map();
    for (const e of events) if (e.cat?.includes("blink.user_timing") && e.name.startsWith("bench-click")) marks.set(e.name, e.ts);
    const clicks = events.filter((e) => e.ph === "X" && e.name === "EventDispatch" && e.args?.data?.type === "click");
    out.forEach((z, i) => {
      const t0 = marks.get(`bench-click-${i}`);
      const t1 = marks.get(`bench-click-end-${i}`);
      const ev = clicks.find((e) => e.ts >= t0 && e.ts <= t1);
      z.handler_cpu_ms = ev && ev.tdur !== undefined ? ev.tdur / 1000 : null;
    });
  }
  return out;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const results = [];
  for (let i = 0; i < opens; i++) results.push(await openOnce(browser, i === opens - 1 && zooms > 0));
  console.log(JSON.stringify({ run: args.run, opens: results }));
} finally {
  await browser.close();
}
