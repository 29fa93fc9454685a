#!/usr/bin/env node
// Browser check of the web UI against a running server: the list page and one
// run's Memory, Memory growth and CPU views.
//
//   node web/e2e/check.mjs --base http://127.0.0.1:PORT --run RUNID --expect FILE.json --out DIR
//
// FILE.json is the caller's independent truth (computed from vmprof's own reader):
//   {"project", "function", "samples", "peak_rss_kb",
//    "top_functions": [{"name", "total", "self", optional "file", "line"}, ...],
//    optional "growth": {"grown_kb", "released_kb",
//                        "top": [{"name", "file", "line", "total_grown_kb", "self_grown_kb", "total_released_kb"}]}}
// What has no independent truth here (time windows, memory buckets) is
// compared with the server's own API answer for the same request.
// Prints one line per check; exits 1 on the first failure (2 on bad usage).

import { readFileSync } from "node:fs";
import {
  api,
  check,
  clickFrame,
  hoverFrame,
  dataset,
  fail,
  flameReady,
  frameLabel,
  near,
  ok,
  parseArgs,
  pixelCounts,
  topFrames,
  usage,
  waitFor,
  withBrowser,
} from "./lib.mjs";

const USAGE = "node check.mjs --base http://127.0.0.1:PORT --run RUNID --expect FILE.json --out DIR";
const args = parseArgs(process.argv.slice(2), ["base", "run", "expect", "out"], USAGE);
const base = args.base.replace(/\/+$/, "");
const runId = args.run;
let expect;
try {
  expect = JSON.parse(readFileSync(args.expect, "utf8"));
} catch (e) {
  usage(`cannot read --expect ${args.expect}: ${e.message}`, USAGE);
}
for (const k of ["project", "function", "samples", "peak_rss_kb", "top_functions"]) {
  if (!(k in expect)) usage(`--expect ${args.expect} has no "${k}"`, USAGE);
}
const M_LEFT = 70; // memory chart margins (memory.ts)
const M_RIGHT = 18;
const MAX_RGB = [37, 99, 235];
const MEAN_RGB = [194, 65, 12];


// ---------------------------------------------------------------- list page

async function rowsOf(page) {
  return page.locator('[data-testid="run-row"]:visible').evaluateAll((trs) =>
    trs.map((tr) => ({
      id: tr.dataset.runId,
      samples: Number(tr.querySelector('[data-col="samples"]').dataset.value),
      peak: Number(tr.querySelector('[data-col="peak"]').dataset.kib),
      duration: Number(tr.querySelector('[data-col="duration"]').dataset.value),
    })),
  );
}

const sortedBy = (list, key, desc) => list.every((r, i) => i === 0 || (desc ? list[i - 1][key] >= r[key] : list[i - 1][key] <= r[key]));

async function listPage(page, shot) {
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
  const rowSamples = Number(await row.locator('[data-col="samples"]').getAttribute("data-value"));
  check(rowSamples === expect.samples, `row shows ${rowSamples} samples`, `row shows ${rowSamples} samples, expected ${expect.samples}`);
  const when = row.locator('[data-col="when"] time');
  check(Boolean(await when.getAttribute("title")), "row 'when' has an absolute time in its title", "row 'when' has no title");
  await shot("list.png");

  // Search, mirrored in the URL and the share link.
  const search = page.locator('[data-testid="run-search"]');
  const source = expect.project || expect.function;
  const part = source.length > 3 ? source.slice(1, Math.max(3, Math.ceil(source.length / 2))) : source;
  await search.fill(part);
  check(await row.isVisible(), `typing ${JSON.stringify(part)} keeps the row`, `typing ${JSON.stringify(part)} into the search hid the run`);
  const q = new URL(page.url()).searchParams.get("q");
  check(q === part, `search text is mirrored in the URL (?q=${q})`, `URL ${page.url()} does not carry ?q=${part}`);
  const shareHref = await page.locator('[data-testid="share-link"]').getAttribute("href");
  check(new URL(shareHref, base).searchParams.get("q") === part, "the share link carries the search", `share link ${shareHref} lacks q=${part}`);
  const nonsense = "zz-no-such-run-\u00e6\u00f8-42";
  await search.fill(nonsense);
  await row.waitFor({ state: "hidden" }).catch(() => {});
  check(!(await row.isVisible()), "a nonsense search hides the row", `searching ${JSON.stringify(nonsense)} still shows the run`);
  check(await page.locator('[data-testid="no-runs"]').isVisible(), "and says that no run matches", "no 'no runs match' message");
  await page.goto(`${base}/?q=${encodeURIComponent(part)}`);
  await row.waitFor({ state: "visible" });
  const value = await search.inputValue();
  check(value === part, "?q= in the URL fills the search box", `search box holds ${JSON.stringify(value)} after loading ?q=${part}`);

  // Date range filter.
  await page.goto(`${base}/`);
  await row.waitFor({ state: "visible" });
  const day = await row.locator("time").evaluate((t) => {
    const d = new Date(t.getAttribute("datetime"));
    const p = (v) => String(v).padStart(2, "0");
    const next = new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1);
    return {
      today: `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`,
      tomorrow: `${next.getFullYear()}-${p(next.getMonth() + 1)}-${p(next.getDate())}`,
    };
  });
  await page.locator('[data-testid="run-since"]').fill(day.tomorrow);
  await row.waitFor({ state: "hidden" }).catch(() => {});
  check(!(await row.isVisible()), `"started after ${day.tomorrow}" hides the run`, `the run is still listed with since=${day.tomorrow}`);
  await page.locator('[data-testid="run-since"]').fill(day.today);
  await page.locator('[data-testid="run-until"]').fill(day.today);
  await row.waitFor({ state: "visible" }).catch(() => {});
  check(await row.isVisible(), `"started on ${day.today}" shows it`, `the run is hidden with since=until=${day.today}`);
  check(new URL(page.url()).searchParams.get("since") === day.today, "the date filter is mirrored in the URL", `URL ${page.url()} lacks since`);
  await page.locator('[data-testid="run-dates-clear"]').click();

  // Sorting: locally when everything fits in one page.
  const all = await api(base, "/api/runs?limit=1000");
  const header = (s) => page.locator(`[data-testid="runs-table"] th[data-sort="${s}"] button`);
  await header("samples").click();
  let rows = await rowsOf(page);
  check(
    sortedBy(rows, "samples", true) && (await page.locator('th[data-sort="samples"]').getAttribute("aria-sort")) === "descending",
    `clicking "Samples" sorts ${rows.length} runs by samples, most first`,
    `rows are not sorted by samples: ${rows.map((r) => r.samples)}`,
  );
  await header("samples").click();
  rows = await rowsOf(page);
  check(sortedBy(rows, "samples", false), "clicking it again reverses the order", `not ascending: ${rows.map((r) => r.samples)}`);
  const u = new URL(page.url()).searchParams;
  check(u.get("sort") === "samples" && u.get("order") === "asc", "the sort is mirrored in the URL", `URL ${page.url()}`);
  await header("peak_rss").click();
  rows = await rowsOf(page);
  check(sortedBy(rows, "peak", true), "clicking \"Peak memory\" sorts by peak RSS", `not sorted by peak: ${rows.map((r) => r.peak)}`);

  // Server side when the list is larger than a page (?limit=1 makes the page one run).
  if (all.total >= 2) {
    await page.goto(`${base}/?limit=1`);
    await page.locator('[data-testid="run-row"]').first().waitFor();
    check((await page.locator('[data-testid="runs-table"]').getAttribute("data-mode")) === "server", "with more runs than a page, the list asks the server", "list did not switch to server mode");
    const req = page.waitForRequest((r) => r.url().includes("/api/runs?") && r.url().includes("sort=samples"));
    await header("samples").click();
    const sent = new URL((await req).url()).searchParams;
    await waitFor(page, () => document.querySelector('th[data-sort="samples"]')?.getAttribute("aria-sort") === "descending", null, "sort header did not update");
    const want = await api(base, "/api/runs?limit=2&sort=samples&order=desc");
    await waitFor(page, (id) => document.querySelector('[data-testid="run-row"]')?.dataset.runId === id, want.runs[0].id, "server-sorted first row did not appear");
    ok(`sorting asks the server (sort=${sent.get("sort")}, order=${sent.get("order") ?? "desc"}) and shows its first run`);
    await page.locator('[data-testid="runs-more"]').click();
    await waitFor(page, () => document.querySelectorAll('[data-testid="run-row"]').length >= 2, null, '"Show more" did not load the next page');
    rows = await rowsOf(page);
    check(sortedBy(rows, "samples", true) && rows[1].id === want.runs[1].id, '"Show more" appends the next page in the same order', `rows after "Show more": ${JSON.stringify(rows)}`);
    await shot("list-server-sorted.png");
  } else ok("only one run stored: server-side sorting not exercised");
}

// ---------------------------------------------------------------- run page header

async function runHeader(page) {
  const resp = await page.goto(`${base}/runs/${runId}`);
  check(resp && resp.ok(), `GET /runs/${runId} answers ${resp?.status()}`, `GET /runs/${runId} failed: ${resp?.status()}`);
  await waitFor(page, () => document.querySelector('[data-testid="run-meta"]'), null, "run page did not render its header");
  const hProject = await page.locator('[data-testid="run-project"]').textContent();
  const hFunction = await page.locator('[data-testid="run-function"]').textContent();
  check(
    hProject === expect.project && hFunction === expect.function,
    "run header shows project and function",
    `run header shows ${JSON.stringify(hProject)} / ${JSON.stringify(hFunction)}, expected ${JSON.stringify(expect.project)} / ${JSON.stringify(expect.function)}`,
  );
  const samples = Number(await page.locator('[data-testid="run-meta"] [data-field="samples"]').getAttribute("data-value"));
  check(samples === expect.samples, `header shows ${samples} samples`, `header shows ${samples} samples, expected ${expect.samples}`);

  // Thinning by the relay: shown exactly when GET /api/runs/{id} reports it.
  const runJson = await api(base, `/api/runs/${runId}`);
  const dec = runJson.decimation;
  const decEl = page.locator('[data-testid="run-decimation"]');
  if (dec) {
    const text = (await decEl.textContent()) ?? "";
    const d = await dataset(decEl);
    const r = dec.samples_before / dec.samples_after;
    const keptOne = Math.abs(r - Math.round(r)) < 0.05 ? Math.round(r).toLocaleString("en-US") : "";
    check(
      Number(d.samplesBefore) === dec.samples_before && Number(d.samplesAfter) === dec.samples_after &&
        text.includes("thinned") && text.includes(dec.samples_after.toLocaleString("en-US")) &&
        text.includes(dec.samples_before.toLocaleString("en-US")) && text.includes(`1 in ${keptOne}`),
      `the header says the run was thinned: "${text}"`,
      `decimation ${JSON.stringify(dec)} shown as ${JSON.stringify(text)} (${JSON.stringify(d)})`,
    );
  } else {
    check((await decEl.count()) === 0, "no thinning reported by the API, none shown", "the header shows thinning the API does not report");
  }

  // Export links.
  const ss = await page.locator('[data-testid="export-speedscope"]').getAttribute("href");
  const res = await fetch(new URL(ss, base));
  const body = res.ok ? await res.json() : null;
  const prof = body?.profiles?.[0];
  const nSamples = prof?.samples?.length ?? -1;
  check(
    res.ok && /attachment/.test(res.headers.get("content-disposition") ?? "") && body.$schema?.includes("speedscope") && prof.type === "sampled",
    `"speedscope JSON" link (${ss}) downloads a speedscope file`,
    `speedscope link ${ss}: ${res.status} ${res.headers.get("content-disposition")} ${JSON.stringify(body)?.slice(0, 200)}`,
  );
  const floor = Math.max(0, ...expect.top_functions.map((f) => f.total));
  check(
    nSamples <= expect.samples && nSamples >= floor && prof.weights.length === nSamples && body.shared.frames.length > 0,
    `it holds ${nSamples} weighted samples over ${body.shared.frames.length} frames`,
    `speedscope file has ${nSamples} samples, expected about ${expect.samples}`,
  );
  const col = await page.locator('[data-testid="export-collapsed"]').getAttribute("href");
  const text = await (await fetch(new URL(col, base))).text();
  const sum = text.split("\n").filter(Boolean).reduce((s, l) => s + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
  check(sum <= expect.samples && sum >= floor && sum > 0, `"collapsed stacks" link downloads ${sum} samples of stacks`, `collapsed link ${col} sums to ${sum}`);
}

// ---------------------------------------------------------------- memory view

/** The expected folded frames of `stack` after skipping `skip` frames. */
function folded(stack, skip) {
  const out = [];
  for (const f of stack.slice(skip)) {
    const last = out[out.length - 1];
    if (last && last.frame === f) last.times++;
    else out.push({ frame: f, times: 1 });
  }
  return out;
}

/** Does a tooltip list show `stack` (minus its first data-skip frames)? Deep lists elide the middle. */
async function listMatches(list, stack) {
  const skip = Number(await list.getAttribute("data-skip"));
  const shown = await list.locator("li[data-frame]").evaluateAll((lis) => lis.map((li) => ({ frame: li.dataset.frame, times: Number(li.dataset.times) })));
  const want = folded(stack, skip);
  if (!want.length) return shown.length === 0;
  if (!shown.length || shown[0].frame !== want[0].frame || shown.at(-1).frame !== want.at(-1).frame) return false;
  let j = 0;
  for (const s of shown) {
    while (j < want.length && !(want[j].frame === s.frame && want[j].times === s.times)) j++;
    if (j++ >= want.length) return false;
  }
  return true;
}

async function plotGeometry(chart) {
  const b = await chart.boundingBox();
  return { ...b, left: b.x + M_LEFT, width: b.width - M_LEFT - M_RIGHT };
}

async function memoryView(page, shot) {
  await page.locator('[data-testid="tab-memory"]').click();
  await waitFor(page, () => document.querySelector('[data-testid="peak-rss"]')?.hasAttribute("data-kib"), null, "memory view did not load");
  const peak = page.locator('[data-testid="peak-rss"]');
  const kib = Number(await peak.getAttribute("data-kib"));
  check(kib === expect.peak_rss_kb, `peak shown is ${kib} KiB (${(await peak.textContent()).trim()})`, `peak shown is ${kib} KiB, expected ${expect.peak_rss_kb}`);
  if (expect.peak_rss_kb === 0) {
    ok("memory was not recorded: skipping the memory chart checks");
    await shot("memory.png");
    return;
  }
  const chart = page.locator('[data-testid="memory-chart"]');
  await waitFor(page, () => {
    const c = document.querySelector('[data-testid="memory-chart"]');
    return Number(c?.dataset.points) > 0 && !c.dataset.loading;
  }, null, "memory chart has no points");
  const d0 = await dataset(chart);
  const mem = await api(base, `/api/runs/${runId}/memory?buckets=${d0.buckets}`);
  check(Number(d0.maxKib) === expect.peak_rss_kb, `chart's highest point is the peak (${d0.maxKib} KiB)`, `chart max ${d0.maxKib} KiB, expected ${expect.peak_rss_kb}`);
  check(Number(d0.samples) === mem.points.reduce((s, p) => s + p.n, 0), `chart covers all ${d0.samples} memory samples`, `chart holds ${d0.samples} samples`);

  // Hover: the bucket's stacks (common prefix, most frequent, at the highest RSS), as the API says.
  const g = await plotGeometry(chart);
  const tip = page.locator('[data-testid="memory-tooltip"]');
  for (const f of [0.2, 0.5, 0.8]) {
    await page.mouse.move(g.left + g.width * f, g.y + g.height / 2);
    await tip.waitFor({ state: "visible", timeout: 3000 }).catch(() => {});
    const t = Number(await tip.getAttribute("data-t"));
    const pt = mem.points.find((p) => p.t === t);
    if (!(await tip.isVisible()) || !pt) fail(`memory tooltip at ${Math.round(f * 100)}% ${pt ? "did not appear" : `shows t=${t}, not a point of the API's answer`}`);
    if (typeof pt.prefix !== "number" || typeof pt.frequent !== "number") fail(`the server's /memory points lack prefix/frequent: ${JSON.stringify(pt)}`);
    const prefix = mem.stacks[pt.prefix];
    const stack = mem.stacks[pt.stack];
    const frequent = mem.stacks[pt.frequent];
    const isPrefix = (p, s) => p.every((x, i) => s[i] === x);
    check(
      isPrefix(prefix, stack) && isPrefix(prefix, frequent) && pt.frequent_n >= 1 && pt.frequent_n <= pt.n,
      `API point at ${t.toFixed(3)} s: prefix of ${prefix.length} frames, most frequent stack ${pt.frequent_n} of ${pt.n}`,
      `API point is inconsistent: ${JSON.stringify(pt)}`,
    );
    const lists = {
      prefix: tip.locator('[data-testid="tooltip-prefix"]'),
      frequent: tip.locator('[data-testid="tooltip-frequent"]'),
      stack: tip.locator('[data-testid="tooltip-stack"]'),
    };
    const okPrefix = await listMatches(lists.prefix, prefix);
    const okFreq = await listMatches(lists.frequent, frequent);
    const okStack = await listMatches(lists.stack, stack);
    const shownN = Number(await lists.frequent.getAttribute("data-n"));
    const leaf = await tip.locator("ol:visible li.leaf").count();
    check(
      okPrefix && okFreq && okStack && shownN === pt.frequent_n && leaf >= 1,
      `tooltip at ${Math.round(f * 100)}% shows the common prefix, the most frequent stack (${shownN}×) and the stack at ${pt.max} KiB`,
      `tooltip at ${Math.round(f * 100)}%: prefix ${okPrefix}, frequent ${okFreq} (n ${shownN} vs ${pt.frequent_n}), max stack ${okStack}, leaves ${leaf}: ${await tip.innerText()}`,
    );
    if (f === 0.5) await shot("memory.png");
  }
  await page.mouse.move(0, 0);

  // Mean / max / both.
  const seriesBtn = (v) => page.locator(`[data-testid="memory-series"] button[data-value="${v}"]`);
  const counts = async () => pixelCounts(chart, [MAX_RGB, MEAN_RGB], 30);
  const [maxPx] = await counts();
  await seriesBtn("mean").click();
  const [maxPx2, meanPx2] = await counts();
  await seriesBtn("both").click();
  const [maxPx3, meanPx3] = await counts();
  // With one sample per bucket mean and max coincide and the mean line (drawn last) covers the max line.
  const differ = mem.points.filter((p) => Math.abs(p.mean - p.max) > 0.02 * expect.peak_rss_kb).length;
  check(
    (await chart.getAttribute("data-series")) === "both" && maxPx > 50 && maxPx2 < maxPx / 5 && meanPx2 > 50 && meanPx3 > 20 &&
      (differ < 10 || maxPx3 > 20) && (await seriesBtn("both").getAttribute("aria-pressed")) === "true",
    `the Max / Mean / Both toggle draws the max line (${maxPx} px), the mean line (${meanPx2} px), or both`,
    `series toggle: max-only ${maxPx} px; mean-only max ${maxPx2} / mean ${meanPx2}; both ${maxPx3}/${meanPx3}`,
  );
  await shot("memory-both.png");
  await seriesBtn("max").click();

  // Relative seconds vs wall clock.
  const tickTexts = () => page.locator('[data-testid="memory-x-ticks"] li').allTextContents();
  const rel = await tickTexts();
  await page.locator('[data-testid="memory-axis"] button[data-value="clock"]').click();
  const abs = await tickTexts();
  const run = await api(base, `/api/runs/${runId}`);
  const clockOk = abs.length >= 2 && abs.every((s) => /^\d\d:\d\d(:\d\d(\.\d{1,3})?)?$/.test(s));
  // The first tick is a wall-clock time within the run's first minutes, in the browser's zone.
  const startLocal = await page.evaluate((iso) => {
    const d = new Date(iso);
    return d.getHours() * 3600 + d.getMinutes() * 60 + d.getSeconds() + d.getMilliseconds() / 1000;
  }, run.start_time);
  const [h, m, s] = abs[0].split(":").map(Number);
  const firstS = h * 3600 + m * 60 + (s || 0);
  const delta = (((firstS - startLocal) % 86400) + 86400) % 86400;
  check(
    rel.every((x) => / s$/.test(x)) && clockOk && delta <= Number(d0.to) + 60,
    `the time axis switches from seconds (${rel[0]}, ${rel[1]} …) to wall clock (${abs[0]}, ${abs[1]} …)`,
    `axis labels: relative ${rel.join(", ")} / clock ${abs.join(", ")} (start ${run.start_time}, delta ${delta} s)`,
  );
  await shot("memory-clock.png");
  await page.locator('[data-testid="memory-axis"] button[data-value="relative"]').click();

  // Wheel zoom around the pointer; the server resamples the visible window.
  const spanOf = (d) => Number(d.to) - Number(d.from);
  const px = g.left + g.width * 0.6;
  const tAt = (d) => Number(d.from) + ((px - g.left) / g.width) * spanOf(d);
  const before = await dataset(chart);
  await page.mouse.move(px, g.y + g.height / 2);
  const req = page.waitForRequest((r) => r.url().includes(`/api/runs/${runId}/memory?`) && r.url().includes("from="));
  for (let i = 0; i < 4; i++) await page.mouse.wheel(0, -240);
  const sent = new URL((await req).url()).searchParams;
  await waitFor(page, () => !document.querySelector('[data-testid="memory-chart"]').dataset.loading, null, "wheel zoom never finished loading");
  const after = await dataset(chart);
  const density = (d) => Number(d.samples) / Math.max(1, Number(d.points));
  check(
    spanOf(after) < spanOf(before) * 0.6 && near(tAt(after), tAt(before), spanOf(before) * 0.02),
    `wheel zooms around the pointer: ${spanOf(before).toFixed(2)} s → ${spanOf(after).toFixed(2)} s, ${tAt(before).toFixed(2)} s stays under it`,
    `wheel zoom: span ${spanOf(before)} → ${spanOf(after)}, time under the pointer ${tAt(before)} → ${tAt(after)}`,
  );
  check(
    near(Number(sent.get("from")), Number(after.from), 1e-6) && near(Number(sent.get("to")), Number(after.to), 1e-6) && Number(after.points) > 0 &&
      (density(before) < 1.5 || density(after) < density(before)),
    `the server resampled the window (from=${Number(sent.get("from")).toFixed(3)}, to=${Number(sent.get("to")).toFixed(3)}, buckets=${sent.get("buckets")}): ${density(before).toFixed(2)} → ${density(after).toFixed(2)} samples per point`,
    `after the wheel: request ${sent} vs chart ${JSON.stringify(after)}`,
  );
  await page.mouse.move(0, 0);
  await shot("memory-wheel.png");

  // Keyboard: arrows move the hover point, + zooms, Escape resets.
  await chart.focus();
  await page.keyboard.press("ArrowRight");
  await tip.waitFor({ state: "visible", timeout: 3000 }).catch(() => {});
  check(await tip.isVisible(), "with the chart focused, arrow keys show the tooltip", "arrow key did not show the memory tooltip");
  await page.keyboard.press("Escape");
  await waitFor(page, () => document.querySelector('[data-testid="memory-reset"]')?.hidden, null, "Escape did not reset the memory zoom");
  const reset = await dataset(chart);
  check(near(spanOf(reset), spanOf(before), spanOf(before) * 0.01), "Escape resets the zoom to the whole run", `span after Escape ${spanOf(reset)}`);
  await page.keyboard.press("+");
  await waitFor(page, (s) => {
    const c = document.querySelector('[data-testid="memory-chart"]').dataset;
    return Number(c.to) - Number(c.from) < s * 0.6 && !c.loading;
  }, spanOf(before), '"+" did not zoom in');
  ok('"+" zooms in on the focused chart');
  await page.locator('[data-testid="memory-reset"]').click();
  await waitFor(page, () => document.querySelector('[data-testid="memory-reset"]')?.hidden, null, "Reset zoom did not reset");
}

// ---------------------------------------------------------------- growth view

async function growthView(page, shot) {
  if (expect.peak_rss_kb === 0) return;
  await page.locator('[data-testid="tab-growth"]').click();
  await waitFor(page, () => document.querySelector('[data-testid="growth-grown"]')?.dataset.kib, null, "growth view did not load");
  const grown = Number(await page.locator('[data-testid="growth-grown"]').getAttribute("data-kib"));
  const released = Number(await page.locator('[data-testid="growth-released"]').getAttribute("data-kib"));
  const truth = expect.growth ?? (await api(base, `/api/runs/${runId}/growth`));
  const src = expect.growth ? "vmprof's samples" : "the API";
  check(
    grown === truth.grown_kb && released === truth.released_kb,
    `growth: ${grown} KiB grown, ${released} KiB released, as ${src} say`,
    `growth shows ${grown}/${released} KiB, ${src} say ${truth.grown_kb}/${truth.released_kb}`,
  );
  const rows = await page.locator('[data-testid="growth-row"]').evaluateAll((trs) => trs.map((tr) => ({ ...tr.dataset })));
  const top = expect.growth?.top ?? truth.functions.slice(0, 4);
  for (const f of top) {
    const r = rows.find((x) => x.name === f.name && x.file === f.file && Number(x.line) === f.line);
    check(
      r && Number(r.totalGrown) === f.total_grown_kb && Number(r.selfGrown) === f.self_grown_kb && Number(r.totalReleased) === f.total_released_kb,
      `growth table: ${f.name} grew ${f.total_grown_kb} KiB (self ${f.self_grown_kb}), released ${f.total_released_kb}`,
      `growth table row for ${f.name}: ${JSON.stringify(r)}, expected ${JSON.stringify(f)}`,
    );
  }
  const sortedDesc = rows.every((r, i) => i === 0 || Number(rows[i - 1].totalGrown) >= Number(r.totalGrown));
  check(sortedDesc, "growth table is sorted by total growth", "growth table is not sorted by total grown");
  await flameReady(page, "growth");
  const graph = page.locator('[data-testid="growth-graph"]');
  const rootTotal = Number(await graph.getAttribute("data-root-total"));
  const frames = await topFrames(page, "growth");
  check(
    rootTotal === grown && frames.length > 0 && frames.every((f) => f.total <= rootTotal),
    `growth flame graph: the root holds the ${rootTotal} KiB grown, ${frames.length} frame(s) below it`,
    `growth flame graph root ${rootTotal}, frames ${JSON.stringify(frames)}`,
  );
  const widest = frames.reduce((a, b) => (b.w > a.w ? b : a));
  await hoverFrame(page, graph, widest);
  const gtip = page.locator('[data-testid="growth-tooltip"]');
  await gtip.waitFor({ state: "visible" }).catch(() => {});
  const tipGrown = Number(await gtip.locator('[data-testid="growth-tooltip-grown"]').getAttribute("data-value").catch(() => NaN));
  check(tipGrown === widest.total, `hovering ${widest.fn} shows ${tipGrown} KiB grown`, `growth tooltip shows ${tipGrown}, expected ${widest.total}`);
  await shot("growth.png");
  await page.mouse.move(0, 0);
  await page.locator('[data-testid="growth-metric"] button[data-value="released"]').click();
  await waitFor(page, (r) => Number(document.querySelector('[data-testid="growth-graph"]').dataset.rootTotal) === r, released, "the Released toggle did not switch the graph");
  ok(`"Where it was released" shows the ${released} KiB released`);
  await page.locator('[data-testid="growth-metric"] button[data-value="grown"]').click();
}

// ---------------------------------------------------------------- CPU view

async function cpuView(page, shot) {
  await page.locator('[data-testid="tab-cpu"]').click();
  const canvas = page.locator('[data-testid="flame-graph"]');
  await flameReady(page);
  const source = await page.locator('[data-testid="cpu-view"]').getAttribute("data-source");
  check(source === "tree", "the CPU view reads the server's /tree", `CPU view source is ${source}`);
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
  await hoverFrame(page, canvas, widest);
  const ftip = page.locator('[data-testid="flame-tooltip"]');
  await ftip.waitFor({ state: "visible" }).catch(() => {});
  const tipTotal = Number(await ftip.locator('[data-testid="flame-tooltip-total"]').getAttribute("data-value").catch(() => NaN));
  const tipSelf = Number(await ftip.locator('[data-testid="flame-tooltip-self"]').getAttribute("data-value").catch(() => NaN));
  const tipText = (await ftip.textContent().catch(() => "")) ?? "";
  check(
    (await ftip.isVisible()) && tipTotal === widest.total && tipSelf === widest.self && tipText.includes(widest.total.toLocaleString("en-US")),
    `hovering ${widest.fn} shows a tooltip with ${widest.total} samples total, ${widest.self} self`,
    `hovering ${widest.fn} shows tooltip total ${tipTotal} self ${tipSelf} (text ${JSON.stringify(tipText)}), expected ${widest.total}/${widest.self}`,
  );
  await shot("cpu.png");
  await page.mouse.move(0, 0);

  // Function table against vmprof's counts.
  const rows = await page
    .locator('[data-testid="function-table"] [data-testid="function-row"]')
    .evaluateAll((trs) =>
      trs.map((tr) => ({ name: tr.dataset.name, file: tr.dataset.file, line: Number(tr.dataset.line), self: Number(tr.dataset.self), total: Number(tr.dataset.total) })),
    );
  for (const f of expect.top_functions) {
    const same = rows.filter((r) => r.name === f.name && (f.file === undefined || r.file === f.file) && (f.line === undefined || r.line === f.line));
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
  const drawMs = [];
  for (let i = 0; i < 64; i++) {
    const frames = await topFrames(page);
    if (!frames.length) break;
    target = frames.reduce((a, b) => (b.w > a.w ? b : a));
    const prev = await canvas.getAttribute("data-zoom");
    await clickFrame(page, canvas, target);
    await page.waitForFunction((p) => document.querySelector('[data-testid="flame-graph"]').dataset.zoom !== p, prev);
    drawMs.push(Number(await canvas.getAttribute("data-draw-ms")));
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
  check(
    sumTop <= zoomedTotal && (afterTop.length === 0 || afterTop.reduce((s, f) => s + f.w, 0) > 0),
    `zoomed view shows ${afterTop.length} child frame(s) of the zoomed frame`,
    `zoomed view is inconsistent: children hold ${sumTop} samples > ${zoomedTotal}`,
  );
  // check-perf.mjs measures this on a big tree; here a sanity bound that a busy machine's preemption cannot break.
  const worst = Math.max(...drawMs);
  const median = [...drawMs].sort((a, b) => a - b)[Math.floor(drawMs.length / 2)];
  check(
    median < 16 && worst < 48,
    `zoom redraws take ${median.toFixed(2)} ms (median; worst ${worst.toFixed(2)} ms over ${drawMs.length})`,
    `zoom redraws took ${drawMs.join(", ")} ms`,
  );
  await page.mouse.move(0, 0);
  await shot("cpu-zoom.png");
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => document.querySelector('[data-testid="flame-graph"]').dataset.zoom === "").catch(() => {});
  check((await canvas.getAttribute("data-zoom")) === "", "Escape resets the zoom", "Escape did not reset the zoom");

  // Keyboard: Tab from the search box reaches the graph; arrows + Enter zoom.
  await page.locator('[data-testid="flame-search"]').focus();
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement?.dataset?.testid);
  check(focused === "flame-graph", "Tab from the search box focuses the flame graph", `Tab went to ${focused}`);
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("ArrowDown");
  const kbTip = await ftip.getAttribute("data-frame");
  await page.keyboard.press("Enter");
  await waitFor(page, () => document.querySelector('[data-testid="flame-graph"]').dataset.zoom !== "", null, "Enter on a frame did not zoom");
  const kbZoom = await canvas.getAttribute("data-zoom");
  check(kbZoom.endsWith(kbTip), `arrow keys pick a frame and Enter zooms to it (${kbTip})`, `keyboard zoom went to ${kbZoom}, the cursor was on ${kbTip}`);
  await page.keyboard.press("Escape");
  await waitFor(page, () => document.querySelector('[data-testid="flame-graph"]').dataset.zoom === "", null, "Escape did not reset the keyboard zoom");

  // Search highlights, with the matched share.
  const hot = [...expect.top_functions].sort((a, b) => b.self - a.self)[0];
  const search = page.locator('[data-testid="flame-search"]');
  await search.fill(hot.name);
  const res = page.locator('[data-testid="flame-search-result"]');
  const matched = Number(await res.getAttribute("data-value"));
  const share = Number(await res.getAttribute("data-share"));
  const resText = await res.textContent();
  check(
    matched >= hot.total && matched <= rootTotal && near(share, (100 * matched) / rootTotal, 0.01) && resText.includes("%"),
    `searching ${JSON.stringify(hot.name)} highlights frames in ${matched} samples (${share}% of the total: "${resText}")`,
    `searching ${JSON.stringify(hot.name)} matched ${matched} samples (${share}%), expected at least ${hot.total}`,
  );
  const purple = await pixelCounts(canvas, [[190, 120, 225]], 40);
  check(purple[0] > 100, `matching frames are drawn highlighted (${purple[0]} px)`, "no highlighted frame on the canvas");
  await shot("cpu-search.png");
  await search.fill("");

  // Sandwich of the hottest function: all its occurrences merged.
  const label = frameLabel(hot.name, hot.file ?? "", hot.line ?? 0);
  const hotRow = page.locator(`[data-testid="function-row"][data-name="${cssEscape(hot.name)}"]${hot.file !== undefined ? `[data-file="${cssEscape(hot.file)}"]` : ""}`).first();
  await hotRow.locator('[data-testid="function-sandwich"]').click();
  const sw = page.locator('[data-testid="sandwich"]');
  await sw.waitFor({ state: "visible" });
  await flameReady(page, "callers");
  await flameReady(page, "callees");
  const sd = await dataset(sw);
  const callersTotal = Number(await page.locator('[data-testid="callers-graph"]').getAttribute("data-root-total"));
  const calleesTotal = Number(await page.locator('[data-testid="callees-graph"]').getAttribute("data-root-total"));
  check(
    sd.frame === label && Number(sd.total) === hot.total && Number(sd.self) === hot.self && callersTotal === hot.total && calleesTotal === hot.total,
    `sandwich of ${hot.name}: on the stack in ${hot.total} samples, leaf in ${hot.self}; callers and callees both hold ${hot.total}`,
    `sandwich of ${hot.name}: ${JSON.stringify(sd)}, callers ${callersTotal}, callees ${calleesTotal}; vmprof says total ${hot.total}, self ${hot.self}`,
  );
  const callers = await topFrames(page, "callers");
  const callees = await topFrames(page, "callees");
  const sumCallers = callers.reduce((s, f) => s + f.total, 0);
  // Callers grow upwards from the function's bar at the bottom; callees downwards from the top.
  const callersBox = await page.locator('[data-testid="callers-graph"]').boundingBox();
  check(
    (callers.length > 0 || hot.total === 0) &&
      sumCallers <= hot.total &&
      callees.every((f) => f.total <= hot.total && f.y === 20) &&
      callers.every((f) => f.y + 2 * f.h <= callersBox.height + 0.5 && f.y + 2 * f.h > callersBox.height - 0.5),
    `callers above (${callers.map((f) => f.fn).join(", ")}), callees below (${callees.map((f) => f.fn).join(", ") || "none"})`,
    `sandwich trees: callers ${JSON.stringify(callers)}, callees ${JSON.stringify(callees)}`,
  );
  await sw.scrollIntoViewIfNeeded();
  await shot("cpu-sandwich.png");
  await page.keyboard.press("Escape");
  await sw.waitFor({ state: "hidden" }).catch(() => {});
  check(!(await sw.isVisible()), "Escape closes the sandwich view", "the sandwich view is still open after Escape");

  // An older server without /tree: the UI falls back to the collapsed stacks.
  await page.route(`**/api/runs/${runId}/tree**`, (r) => r.fulfill({ status: 404, contentType: "application/json", body: '{"error": "not found"}' }));
  await page.reload();
  await flameReady(page);
  const src2 = await page.locator('[data-testid="cpu-view"]').getAttribute("data-source");
  const total2 = Number(await canvas.getAttribute("data-root-total"));
  check(src2 === "collapsed" && total2 === rootTotal, `without /tree the CPU view falls back to /collapsed (${total2} samples)`, `fallback: source ${src2}, root ${total2} (expected ${rootTotal})`);
  await page.unroute(`**/api/runs/${runId}/tree**`);
}

function cssEscape(s) {
  return s.replace(/["\\]/g, "\\$&");
}

async function sortCheck(page) {
  const header = page.locator('[data-testid="function-table"] th[data-sort="self"]').first();
  await header.locator("button").click();
  const selfs = await page.locator('[data-testid="function-table"] [data-testid="function-row"]').evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.self)));
  const sorted = selfs.every((v, i) => i === 0 || selfs[i - 1] >= v);
  check(sorted && (await header.getAttribute("aria-sort")) === "descending", "clicking the Self header sorts by self samples", `Self column not sorted descending: ${selfs.slice(0, 10)}`);
  await header.locator("button").click();
  const asc = await page.locator('[data-testid="function-table"] [data-testid="function-row"]').evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.self)));
  check(asc.every((v, i) => i === 0 || asc[i - 1] <= v), "clicking it again reverses the order", "second click on Self did not sort ascending");
  // Keyboard: the header buttons are reachable and Enter sorts.
  const totalHeader = page.locator('[data-testid="function-table"] th[data-sort="total"]').first();
  await totalHeader.locator("button").focus();
  await page.keyboard.press("Enter");
  check((await totalHeader.getAttribute("aria-sort")) !== "none", "Enter on a focused header sorts", "Enter on the Total header did nothing");
}

// ---------------------------------------------------------------- time ranges

async function rangeViews(page, shot) {
  if (expect.peak_rss_kb === 0) return;
  await page.goto(`${base}/runs/${runId}#memory`);
  const chart = page.locator('[data-testid="memory-chart"]');
  await waitFor(page, () => Number(document.querySelector('[data-testid="memory-chart"]')?.dataset.points) > 0, null, "memory chart did not load");
  const g = await plotGeometry(chart);
  // Drag across the middle of the run: that selects (and zooms to) a range.
  await page.mouse.move(g.left + g.width * 0.3, g.y + g.height / 2);
  await page.mouse.down();
  await page.mouse.move(g.left + g.width * 0.65, g.y + g.height / 2, { steps: 8 });
  await page.mouse.up();
  const cpuBtn = page.locator('[data-testid="range-cpu"]');
  await cpuBtn.waitFor({ state: "visible" });
  const sel = await dataset(page.locator('[data-testid="memory-range"]'));
  const from = Number(sel.from);
  const to = Number(sel.to);
  check(to > from, `dragging selects ${from.toFixed(3)} s – ${to.toFixed(3)} s and offers "CPU view of this range"`, `selection ${JSON.stringify(sel)}`);
  await page.mouse.move(0, 0);
  await shot("memory-range.png");
  await cpuBtn.click();
  await flameReady(page);
  const banner = page.locator('[data-testid="range-banner"]');
  await banner.waitFor({ state: "visible" });
  const bd = await dataset(banner);
  const url = new URL(page.url());
  check(
    near(Number(bd.from), from, 1e-5) && near(Number(bd.to), to, 1e-5) && url.hash === "#cpu" && near(Number(url.searchParams.get("from")), from, 1e-5),
    `the CPU view opens for that range, shown above it (${bd.from} – ${bd.to}) and in the URL`,
    `range banner ${JSON.stringify(bd)}, URL ${page.url()}, selection ${from}–${to}`,
  );
  const q = `from=${url.searchParams.get("from")}&to=${url.searchParams.get("to")}`;
  const tree = await api(base, `/api/runs/${runId}/tree?${q}`);
  const fns = await api(base, `/api/runs/${runId}/functions?${q}`);
  const canvas = page.locator('[data-testid="flame-graph"]');
  const rangeTotal = Number(await canvas.getAttribute("data-root-total"));
  check(
    rangeTotal === tree.root.total && rangeTotal < expect.samples && rangeTotal > 0,
    `the range's flame graph holds ${rangeTotal} samples (the API's /tree for the window; the run has ${expect.samples})`,
    `range flame graph holds ${rangeTotal}, /tree?${q} says ${tree.root.total}`,
  );
  const rows = await page.locator('[data-testid="function-row"]').evaluateAll((trs) => trs.map((tr) => `${tr.dataset.name}|${tr.dataset.total}|${tr.dataset.self}`));
  const want = fns.functions.slice(0, 5).map((f) => `${f.name}|${f.total}|${f.self}`);
  check(want.every((w) => rows.includes(w)), `the function table is the range's (${want.slice(0, 2).join(", ")} …)`, `function rows ${rows.slice(0, 5)} vs /functions?${q} ${want}`);
  await shot("cpu-range.png");
  await page.locator('[data-testid="range-clear"]').click();
  await waitFor(page, (n) => Number(document.querySelector('[data-testid="flame-graph"]')?.dataset.rootTotal) > n, rangeTotal, '"Whole run" did not go back to the whole run');
  check(!(await banner.isVisible()) && !new URL(page.url()).searchParams.has("from"), '"Whole run" goes back to the whole run', "range banner still shown");

  // Growth of the same range, from the Memory view (which kept the selection).
  await page.goBack();
  await page.locator('[data-testid="tab-memory"]').click();
  await page.locator('[data-testid="range-growth"]').click();
  await waitFor(page, () => document.querySelector('[data-testid="growth-grown"]')?.dataset.kib, null, "growth of the range did not load");
  const u2 = new URL(page.url());
  const g2 = await api(base, `/api/runs/${runId}/growth?from=${u2.searchParams.get("from")}&to=${u2.searchParams.get("to")}`);
  const shown = Number(await page.locator('[data-testid="growth-grown"]').getAttribute("data-kib"));
  check(
    u2.hash === "#growth" && shown === g2.grown_kb && (await page.locator('[data-testid="range-banner"]').isVisible()),
    `"Memory growth in this range" shows the range's ${shown} KiB grown`,
    `growth of the range shows ${shown}, the API says ${g2.grown_kb} (URL ${page.url()})`,
  );
  await shot("growth-range.png");
}

// ---------------------------------------------------------------- main

await withBrowser(args.out, async (page, { shot }) => {
  await listPage(page, shot);
  await runHeader(page);
  await memoryView(page, shot);
  await growthView(page, shot);
  await cpuView(page, shot);
  await rangeViews(page, shot);
});
