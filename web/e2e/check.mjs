#!/usr/bin/env node
// Browser check of the web UI against a running server.
//
//   node web/e2e/check.mjs --base http://127.0.0.1:PORT --run RUNID --expect FILE.json --out DIR
//
// FILE.json is the caller's independent truth (computed from vmprof's own reader):
//   {"project", "function", "samples", "peak_rss_kb",
//    "top_functions": [{"name", "total", "self", optional "file", "line"}, ...]}
// Prints one line per check; exits 1 on the first failure (2 on bad usage).

import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) usage(`unexpected argument ${a}`);
    const eq = a.indexOf("=");
    if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
    else out[a.slice(2)] = argv[++i];
  }
  for (const k of ["base", "run", "expect", "out"]) if (!out[k]) usage(`missing --${k}`);
  return out;
}

function usage(msg) {
  console.error(`check.mjs: ${msg}`);
  console.error("usage: node check.mjs --base http://127.0.0.1:PORT --run RUNID --expect FILE.json --out DIR");
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2));
const base = args.base.replace(/\/+$/, "");
const runId = args.run;
let expect;
try {
  expect = JSON.parse(readFileSync(args.expect, "utf8"));
} catch (e) {
  usage(`cannot read --expect ${args.expect}: ${e.message}`);
}
for (const k of ["project", "function", "samples", "peak_rss_kb", "top_functions"]) {
  if (!(k in expect)) usage(`--expect ${args.expect} has no "${k}"`);
}
const outDir = resolve(args.out);
mkdirSync(outDir, { recursive: true });
const TIMEOUT = Number(process.env.CHECK_TIMEOUT_MS ?? 15000);

class CheckFailed extends Error {}
let n = 0;
function ok(msg) {
  n++;
  console.log(`ok ${n} - ${msg}`);
}
function fail(msg) {
  throw new CheckFailed(msg);
}
function check(cond, okMsg, failMsg) {
  if (!cond) fail(failMsg ?? okMsg);
  ok(okMsg);
}

const userDataDir = mkdtempSync(join(tmpdir(), "vmpv-check-"));
let context;
const pageErrors = [];

try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1366, height: 850 },
    deviceScaleFactor: 1,
  });
  context.setDefaultTimeout(TIMEOUT);
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("dialog", (d) => {
    // An alert() would mean injected markup ran.
    pageErrors.push(`unexpected dialog: ${d.message()}`);
    void d.dismiss();
  });

  await listPage(page);
  await runPage(page);
  check(pageErrors.length === 0, "no JavaScript errors on the pages", `JavaScript errors: ${pageErrors.join(" | ")}`);
  console.log(`all ${n} checks passed`);
} catch (e) {
  const msg = e instanceof CheckFailed ? e.message : `unexpected error: ${e?.stack ?? e}`;
  console.log(`FAIL - ${msg}`);
  if (pageErrors.length) console.log(`page errors: ${pageErrors.join(" | ")}`);
  try {
    const p = context?.pages()[0];
    if (p) await p.screenshot({ path: join(outDir, "failure.png"), fullPage: true });
  } catch {
    // best effort
  }
  process.exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}

// ---------------------------------------------------------------- list page

async function listPage(page) {
  const resp = await page.goto(`${base}/`);
  check(resp && resp.ok(), `GET / answers ${resp?.status()}`, `GET / failed: ${resp?.status()}`);
  const row = page.locator(`[data-testid="run-row"][data-run-id="${runId}"]`);
  try {
    await row.waitFor({ state: "visible" });
  } catch {
    const err = await page.locator('[data-testid="error"]').allTextContents();
    fail(`run ${runId} is not listed on / ${err.length ? `(page says: ${err.join("; ")})` : ""}`);
  }
  ok(`run ${runId} is listed on /`);
  const project = await row.locator('[data-col="project"]').textContent();
  check(project === expect.project, `row shows project ${JSON.stringify(project)}`, `row project is ${JSON.stringify(project)}, expected ${JSON.stringify(expect.project)}`);
  const fn = await row.locator('[data-col="function"]').textContent();
  check(fn === expect.function, `row shows function ${JSON.stringify(fn)}`, `row function is ${JSON.stringify(fn)}, expected ${JSON.stringify(expect.function)}`);
  const peakKib = Number(await row.locator('[data-col="peak"]').getAttribute("data-kib"));
  check(peakKib === expect.peak_rss_kb, `row peak memory is ${peakKib} KiB`, `row peak memory is ${peakKib} KiB, expected ${expect.peak_rss_kb}`);
  const when = row.locator('[data-col="when"] time');
  check(Boolean(await when.getAttribute("title")), "row 'when' has an absolute time in its title", "row 'when' has no title");
  await page.screenshot({ path: join(outDir, "list.png"), fullPage: true });

  const search = page.locator('[data-testid="run-search"]');
  const source = expect.project || expect.function;
  const part = source.length > 3 ? source.slice(1, Math.max(3, Math.ceil(source.length / 2))) : source;
  await search.fill(part);
  check(await row.isVisible(), `typing ${JSON.stringify(part)} keeps the row`, `typing ${JSON.stringify(part)} into the search hid the run`);
  const q = new URL(page.url()).searchParams.get("q");
  check(q === part, `search text is mirrored in the URL (?q=${q})`, `URL ${page.url()} does not carry ?q=${part}`);
  const nonsense = "zz-no-such-run-\u00e6\u00f8-42";
  await search.fill(nonsense);
  await row.waitFor({ state: "hidden" }).catch(() => {});
  check(!(await row.isVisible()), "a nonsense search hides the row", `searching ${JSON.stringify(nonsense)} still shows the run`);
  // The filter must survive a reload from the shared link.
  await page.goto(`${base}/?q=${encodeURIComponent(part)}`);
  await row.waitFor({ state: "visible" });
  const value = await search.inputValue();
  check(value === part, "?q= in the URL fills the search box", `search box holds ${JSON.stringify(value)} after loading ?q=${part}`);
}

// ---------------------------------------------------------------- run page

async function runPage(page) {
  const resp = await page.goto(`${base}/runs/${runId}`);
  check(resp && resp.ok(), `GET /runs/${runId} answers ${resp?.status()}`, `GET /runs/${runId} failed: ${resp?.status()}`);
  try {
    await page.locator('[data-testid="run-meta"]').waitFor();
  } catch {
    const err = await page.locator('[data-testid="error"]').allTextContents();
    fail(`run page did not render its header ${err.length ? `(page says: ${err.join("; ")})` : ""}`);
  }
  const hProject = await page.locator('[data-testid="run-project"]').textContent();
  const hFunction = await page.locator('[data-testid="run-function"]').textContent();
  check(
    hProject === expect.project && hFunction === expect.function,
    "run header shows project and function",
    `run header shows ${JSON.stringify(hProject)} / ${JSON.stringify(hFunction)}, expected ${JSON.stringify(expect.project)} / ${JSON.stringify(expect.function)}`,
  );
  const samples = Number(await page.locator('[data-testid="run-meta"] [data-field="samples"]').getAttribute("data-value"));
  check(samples === expect.samples, `header shows ${samples} samples`, `header shows ${samples} samples, expected ${expect.samples}`);

  // Memory view.
  await page.locator('[data-testid="tab-memory"]').click();
  const peak = page.locator('[data-testid="peak-rss"]');
  await page.waitForFunction(() => document.querySelector('[data-testid="peak-rss"]')?.hasAttribute("data-kib"));
  const kib = Number(await peak.getAttribute("data-kib"));
  check(kib === expect.peak_rss_kb, `peak shown is ${kib} KiB (${(await peak.textContent()).trim()})`, `peak shown is ${kib} KiB, expected ${expect.peak_rss_kb}`);

  if (expect.peak_rss_kb > 0) {
    const chart = page.locator('[data-testid="memory-chart"]');
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="memory-chart"]')?.dataset.points) > 0);
    const box = await chart.boundingBox();
    const tip = page.locator('[data-testid="memory-tooltip"]');
    for (const f of [0.2, 0.5, 0.8]) {
      // The plot area starts after the y-axis labels: aim inside it. A sample
      // can legitimately have no Python stack, so try a few neighbours.
      let visible = false;
      let frames = [];
      let leaf = 0;
      for (const dx of [0, 12, -12, 30, -30]) {
        const x = box.x + 80 + (box.width - 100) * f + dx;
        const y = box.y + box.height / 2;
        await page.mouse.move(x, y);
        await tip.waitFor({ state: "visible", timeout: 3000 }).catch(() => {});
        visible = await tip.isVisible();
        frames = await tip.locator('[data-testid="tooltip-stack"] li').allTextContents();
        leaf = await tip.locator('[data-testid="tooltip-stack"] li.leaf').count();
        if (visible && frames.length > 0) break;
      }
      check(
        visible && frames.length > 0 && frames.every((t) => t.trim()) && leaf === 1,
        `memory tooltip at ${Math.round(f * 100)}% shows a ${frames.length}-frame stack (leaf: ${frames.at(-1)?.trim()})`,
        `memory tooltip at ${Math.round(f * 100)}% ${visible ? `shows no stack (${frames.length} frames, ${leaf} leaf)` : "did not appear"}`,
      );
    }
    await page.screenshot({ path: join(outDir, "memory.png"), fullPage: true });
    await page.mouse.move(0, 0);
  } else {
    ok("memory was not recorded: skipping the memory chart hover checks");
    await page.screenshot({ path: join(outDir, "memory.png"), fullPage: true });
  }

  // CPU view.
  await page.locator('[data-testid="tab-cpu"]').click();
  const canvas = page.locator('[data-testid="flame-graph"]');
  try {
    await page.waitForFunction(() => document.querySelector('[data-testid="flame-graph"]')?.hasAttribute("data-zoom"));
  } catch {
    const err = await page.locator('[data-testid="error"]').allTextContents();
    fail(`flame graph did not render ${err.length ? `(page says: ${err.join("; ")})` : ""}`);
  }
  const rootTotal = Number(await canvas.getAttribute("data-root-total"));
  // Samples without any Python frame cannot appear in a stack, so the graph
  // may hold fewer than all samples, but never fewer than its widest function.
  const floor = Math.max(0, ...expect.top_functions.map((f) => f.total));
  check(
    rootTotal === expect.samples || (rootTotal < expect.samples && rootTotal >= floor && rootTotal > 0),
    `flame graph root holds ${rootTotal} samples${rootTotal === expect.samples ? "" : ` (${expect.samples - rootTotal} samples have no stack)`}`,
    `flame graph root holds ${rootTotal} samples, expected ${expect.samples}`,
  );

  const drawn = await page.locator('[data-testid="flame-drawn"] li').evaluateAll((lis) => lis.map((li) => li.dataset.function));
  for (const f of expect.top_functions) {
    check(drawn.includes(f.name), `flame graph draws ${f.name}`, `flame graph does not draw ${f.name} (drawn: ${drawn.slice(0, 20).join(", ")}…)`);
  }

  const top = await topFrames(page);
  check(top.length > 0, `flame graph has ${top.length} frame(s) under root`, "flame graph has no frame under root");
  const widest = top.reduce((a, b) => (b.w > a.w ? b : a));
  const cbox = await canvas.boundingBox();
  await page.mouse.move(cbox.x + widest.x + widest.w / 2, cbox.y + widest.y + widest.h / 2);
  const ftip = page.locator('[data-testid="flame-tooltip"]');
  await ftip.waitFor({ state: "visible" }).catch(() => {});
  const tipTotal = Number(await ftip.locator('[data-testid="flame-tooltip-total"]').getAttribute("data-value").catch(() => NaN));
  const tipText = (await ftip.textContent().catch(() => "")) ?? "";
  check(
    (await ftip.isVisible()) && tipTotal === widest.total && tipText.includes(widest.total.toLocaleString("en-US")),
    `hovering ${widest.fn} shows a tooltip with ${widest.total} samples`,
    `hovering ${widest.fn} shows tooltip total ${tipTotal} (text ${JSON.stringify(tipText)}), expected ${widest.total}`,
  );
  await page.screenshot({ path: join(outDir, "cpu.png"), fullPage: true });

  // Function table.
  const rows = await page
    .locator('[data-testid="function-table"] [data-testid="function-row"]')
    .evaluateAll((trs) =>
      trs.map((tr) => ({
        name: tr.dataset.name,
        file: tr.dataset.file,
        line: Number(tr.dataset.line),
        self: Number(tr.dataset.self),
        total: Number(tr.dataset.total),
      })),
    );
  for (const f of expect.top_functions) {
    // The caller may pin the function down by file and line too.
    const same = rows.filter(
      (r) => r.name === f.name && (f.file === undefined || r.file === f.file) && (f.line === undefined || r.line === f.line),
    );
    const match = same.find((r) => r.self === f.self && r.total === f.total);
    check(
      Boolean(match),
      `function table: ${f.name} self ${f.self}, total ${f.total}`,
      same.length
        ? `function table: ${f.name} has ${same.map((r) => `self ${r.self}/total ${r.total}`).join(", ")}, expected self ${f.self}/total ${f.total}`
        : `function table does not list ${f.name}${f.file !== undefined ? ` (${f.file}:${f.line})` : ""}`,
    );
  }
  await sortCheck(page);

  // Zoom: click frames down the widest path until the view really narrows.
  const before = await canvas.getAttribute("data-zoom");
  let zoomedTotal = rootTotal;
  let target = null;
  for (let i = 0; i < 64; i++) {
    const frames = await topFrames(page);
    if (!frames.length) break;
    target = frames.reduce((a, b) => (b.w > a.w ? b : a));
    const prev = await canvas.getAttribute("data-zoom");
    const b = await canvas.boundingBox();
    await page.mouse.click(b.x + target.x + target.w / 2, b.y + target.y + target.h / 2);
    await page.waitForFunction((p) => document.querySelector('[data-testid="flame-graph"]').dataset.zoom !== p, prev);
    zoomedTotal = Number(await canvas.getAttribute("data-zoom-total"));
    if (zoomedTotal < rootTotal) break;
  }
  const after = await canvas.getAttribute("data-zoom");
  check(
    target !== null && after !== before && after.endsWith(target.name) && zoomedTotal === target.total,
    `clicking ${target?.fn} zooms to it (${zoomedTotal} of ${rootTotal} samples fill the width)`,
    `clicking a frame did not zoom (zoom ${JSON.stringify(before)} → ${JSON.stringify(after)}, total ${zoomedTotal})`,
  );
  const afterTop = await topFrames(page);
  const sumTop = afterTop.reduce((s, f) => s + f.total, 0);
  const widthTop = afterTop.reduce((s, f) => s + f.w, 0);
  check(
    sumTop <= zoomedTotal && (afterTop.length === 0 || widthTop > 0),
    `zoomed view shows ${afterTop.length} child frame(s) of the zoomed frame`,
    `zoomed view is inconsistent: children hold ${sumTop} samples > ${zoomedTotal}`,
  );
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(outDir, "cpu-zoom.png"), fullPage: true });
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => document.querySelector('[data-testid="flame-graph"]').dataset.zoom === "").catch(() => {});
  check((await canvas.getAttribute("data-zoom")) === "", "Escape resets the zoom", "Escape did not reset the zoom");

  // Search highlights.
  // The function with the most self time is the interesting one to look for.
  const hot = [...expect.top_functions].sort((a, b) => b.self - a.self)[0];
  if (hot) {
    const name = hot.name;
    await page.locator('[data-testid="flame-search"]').fill(name);
    const matched = Number(await page.locator('[data-testid="flame-search-result"]').getAttribute("data-value"));
    const want = hot.total;
    check(
      matched >= want && matched <= rootTotal,
      `searching ${JSON.stringify(name)} highlights frames in ${matched} samples`,
      `searching ${JSON.stringify(name)} matched ${matched} samples, expected at least ${want}`,
    );
    await page.screenshot({ path: join(outDir, "cpu-search.png"), fullPage: true });
  }
}

async function topFrames(page) {
  return page.locator('[data-testid="flame-top-frames"] li').evaluateAll((lis) =>
    lis.map((li) => ({
      name: li.dataset.name,
      fn: li.dataset.function,
      total: Number(li.dataset.total),
      x: Number(li.dataset.x),
      y: Number(li.dataset.y),
      w: Number(li.dataset.w),
      h: Number(li.dataset.h),
    })),
  );
}

async function sortCheck(page) {
  const header = page.locator('[data-testid="function-table"] th[data-sort="self"]').first();
  await header.click();
  const selfs = await page
    .locator('[data-testid="function-table"] [data-testid="function-row"]')
    .evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.self)));
  const sorted = selfs.every((v, i) => i === 0 || selfs[i - 1] >= v);
  check(sorted && (await header.getAttribute("aria-sort")) === "descending", "clicking the Self header sorts by self samples", `Self column not sorted descending: ${selfs.slice(0, 10)}`);
  await header.click();
  const asc = await page
    .locator('[data-testid="function-table"] [data-testid="function-row"]')
    .evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.self)));
  check(asc.every((v, i) => i === 0 || asc[i - 1] <= v), "clicking it again reverses the order", "second click on Self did not sort ascending");
}
