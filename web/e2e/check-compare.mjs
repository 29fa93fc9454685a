#!/usr/bin/env node
// Browser check of comparing two runs: select both on the list page, open the
// comparison, and check the differential flame graph and the function table
// against the caller's truth (vmprof's reader on both profiles).
//
//   node web/e2e/check-compare.mjs --base URL --a RUNID --b RUNID --expect FILE.json --out DIR
//
// A must be the older run (the list page puts the older one first: before).
// Then time windows: one dragged on A's chart, one typed for B, the arrow keys,
// a bad window, "Whole run", Back and Swap; each time the URL holds the
// windows and what the page shows is /api/diff's answer for them (and the
// window's sample count is /functions' for the same window).
// FILE.json: {"a": {"samples"}, "b": {"samples"},
//             "functions": [{"name", "file", "line", "a_total", "b_total", "a_self", "b_self"}, ...]}
// with the functions whose share changed most.

import { readFileSync } from "node:fs";
import { api, check, clickFrame, dataset, hoverFrame, fail, flameReady, near, ok, parseArgs, pixelAt, topFrames, usage, waitFor, withBrowser } from "./lib.mjs";

const USAGE = "node check-compare.mjs --base URL --a RUNID --b RUNID --expect FILE.json --out DIR";
const args = parseArgs(process.argv.slice(2), ["base", "a", "b", "expect", "out"], USAGE);
const base = args.base.replace(/\/+$/, "");
let expect;
try {
  expect = JSON.parse(readFileSync(args.expect, "utf8"));
} catch (e) {
  usage(`cannot read --expect ${args.expect}: ${e.message}`, USAGE);
}
const aN = expect.a.samples;
const bN = expect.b.samples;
const deltaOf = (f) => (100 * f.b_total) / bN - (100 * f.a_total) / aN;

async function diffRows(page) {
  return page.locator('[data-testid="diff-row"]').evaluateAll((trs) =>
    trs.map((tr) => ({
      name: tr.dataset.name,
      file: tr.dataset.file,
      line: Number(tr.dataset.line),
      a_total: Number(tr.dataset.aTotal),
      b_total: Number(tr.dataset.bTotal),
      a_self: Number(tr.dataset.aSelf),
      b_self: Number(tr.dataset.bSelf),
      delta: Number(tr.dataset.deltaTotal),
    })),
  );
}

await withBrowser(args.out, async (page, { shot }) => {
  // Pick both runs on the list page.
  await page.goto(`${base}/`);
  const box = (id) => page.locator(`[data-testid="run-row"][data-run-id="${id}"] [data-testid="run-select"]`);
  await box(args.a).waitFor();
  const button = page.locator('[data-testid="compare-button"]');
  check(await button.isDisabled(), '"Compare" is disabled with no run ticked', '"Compare" is enabled with nothing selected');
  await box(args.b).check();
  check(await button.isDisabled(), "and with one", '"Compare" is enabled with one run selected');
  await box(args.a).check();
  check(await button.isEnabled(), "ticking a second run enables it", '"Compare" stays disabled with two runs ticked');
  await shot("compare-select.png");
  await button.click();
  await page.waitForURL(/\/compare\//);
  const path = new URL(page.url()).pathname;
  check(path === `/runs/${args.a}/compare/${args.b}`, `it opens ${path} (the older run is "before")`, `compare opened ${path}`);

  // Both runs named.
  await waitFor(page, () => document.querySelector('[data-testid="compare-a"]'), null, "compare page did not render");
  const ca = await dataset(page.locator('[data-testid="compare-a"]'));
  const cb = await dataset(page.locator('[data-testid="compare-b"]'));
  check(
    ca.runId === args.a && cb.runId === args.b && Number(ca.samples) === aN && Number(cb.samples) === bN,
    `before: ${ca.samples} samples, after: ${cb.samples} samples`,
    `compare cards: ${JSON.stringify(ca)} / ${JSON.stringify(cb)}, expected ${aN} / ${bN} samples`,
  );

  // Function table: counts and changes as vmprof says, biggest change first.
  const rows = await diffRows(page);
  for (const f of expect.functions) {
    const r = rows.find((x) => x.name === f.name && x.file === f.file && x.line === f.line);
    check(
      r && r.a_total === f.a_total && r.b_total === f.b_total && r.a_self === f.a_self && r.b_self === f.b_self && near(r.delta, deltaOf(f), 0.01),
      `${f.name}: ${f.a_total} → ${f.b_total} samples, ${deltaOf(f) >= 0 ? "+" : ""}${deltaOf(f).toFixed(2)} pp`,
      `diff row for ${f.name}: ${JSON.stringify(r)}, expected ${JSON.stringify(f)} (Δ ${deltaOf(f)})`,
    );
  }
  check(
    rows.every((r, i) => i === 0 || Math.abs(rows[i - 1].delta) >= Math.abs(r.delta) - 1e-9) &&
      (await page.locator('[data-testid="diff-table"] th[data-sort="delta_total"]').getAttribute("aria-sort")) === "descending",
    `the ${rows.length} functions are sorted by the size of the change`,
    `diff table not sorted by |Δ|: ${rows.map((r) => r.delta.toFixed(2)).join(", ")}`,
  );
  const cells = await page.locator('[data-testid="diff-row"]').first().locator("td").allTextContents();
  check(cells.some((c) => / pp$/.test(c)), `rows show the change in percentage points (${cells.filter((c) => / pp$/.test(c)).join(", ")})`, `first row cells: ${cells}`);

  // Differential flame graph: zoom down the widest path until changed frames show; red grew, blue shrank.
  await flameReady(page, "diff");
  const canvas = page.locator('[data-testid="diff-graph"]');
  await shot("compare.png");
  let frames = await topFrames(page, "diff");
  let changed = [];
  for (let i = 0; i < 12 && frames.length; i++) {
    changed = frames.filter((f) => Math.abs(Number(f.delta)) >= 1 && f.w > 6);
    if (changed.some((f) => Number(f.delta) > 0) && changed.some((f) => Number(f.delta) < 0)) break;
    const widest = frames.reduce((x, y) => (y.w > x.w ? y : x));
    const prev = await canvas.getAttribute("data-zoom");
    await clickFrame(page, canvas, widest);
    await page.waitForFunction((p) => document.querySelector('[data-testid="diff-graph"]').dataset.zoom !== p, prev);
    frames = await topFrames(page, "diff");
  }
  if (!changed.length) fail(`no frame changed by 1 pp or more along the widest path (frames: ${JSON.stringify(frames)})`);
  for (const f of changed) {
    const [r, , b] = await pixelAt(canvas, f.x + Math.min(f.w / 2, 3), f.y + 15);
    const d = Number(f.delta);
    check(
      d > 0 ? r > b + 40 : b > r + 40,
      `${f.fn} ${d > 0 ? "grew" : "shrank"} ${d.toFixed(2)} pp and is drawn ${d > 0 ? "red" : "blue"} (rgb ${r}, …, ${b})`,
      `${f.fn} changed ${d} pp but is drawn rgb(${r}, …, ${b})`,
    );
    const t = deltaOf({ a_total: Number(f.aTotal), b_total: Number(f.bTotal) });
    check(near(d, t, 0.01), `its change is its share in B minus its share in A`, `frame ${f.fn} delta ${d}, shares give ${t}`);
  }
  // Tooltip: before / after counts of the hovered frame.
  const f0 = changed[0];
  await hoverFrame(page, canvas, f0);
  const tip = page.locator('[data-testid="diff-tooltip"]');
  await tip.waitFor({ state: "visible" });
  const ta = Number(await tip.locator('[data-testid="diff-tooltip-a"]').getAttribute("data-value"));
  const tb = Number(await tip.locator('[data-testid="diff-tooltip-b"]').getAttribute("data-value"));
  check(ta === Number(f0.aTotal) && tb === Number(f0.bTotal), `hovering ${f0.fn} shows ${ta} samples before, ${tb} after`, `diff tooltip ${ta}/${tb}, frame ${f0.aTotal}/${f0.bTotal}`);
  await shot("compare-zoom.png");
  await page.mouse.move(0, 0);

  // Swap: before and after trade places, changes flip sign.
  const first = expect.functions[0];
  await page.locator('[data-testid="compare-swap"]').click();
  await page.waitForURL(new RegExp(`/runs/${args.b}/compare/${args.a}$`));
  await waitFor(page, () => document.querySelector('[data-testid="diff-row"]'), null, "swapped comparison did not render");
  const swapped = (await diffRows(page)).find((x) => x.name === first.name && x.file === first.file && x.line === first.line);
  check(
    swapped && swapped.a_total === first.b_total && near(swapped.delta, -deltaOf(first), 0.01),
    `"Swap" compares the other way round (${first.name}: ${swapped?.delta.toFixed(2)} pp)`,
    `after swap, ${first.name}: ${JSON.stringify(swapped)}`,
  );
  ok("comparison done");

  await timeWindows(page, shot);
});

/** The URL's windows, as /api/diff's query. */
function urlWindows(page) {
  const q = new URL(page.url()).searchParams;
  const out = new URLSearchParams();
  for (const k of ["a_from", "a_to", "b_from", "b_to"]) if (q.has(k)) out.set(k, q.get(k));
  return out;
}

/** Wait until the page shows the diff of the URL's windows, then compare it with the API's answer. */
async function diffMatchesApi(page, what) {
  const q = urlWindows(page).toString();
  await waitFor(
    page,
    (want) => {
      const v = document.querySelector('[data-testid="diff-view"]');
      return v && v.dataset.query === want && !v.hasAttribute("data-loading");
    },
    q,
    `the comparison of ${q || "the whole runs"} did not show`,
  );
  const d = await api(base, `/api/diff?a=${args.a}&b=${args.b}${q ? `&${q}` : ""}`);
  const ca = await dataset(page.locator('[data-testid="compare-a"]'));
  const cb = await dataset(page.locator('[data-testid="compare-b"]'));
  check(
    Number(ca.samples) === d.a.samples && Number(cb.samples) === d.b.samples,
    `${what}: A ${d.a.samples} samples, B ${d.b.samples} (as /api/diff?${q || "…"} says)`,
    `${what}: cards say ${ca.samples} / ${cb.samples} samples, the API ${d.a.samples} / ${d.b.samples}`,
  );
  // Independent of the diff: the same windows' sample counts from /functions.
  const fq = (k) => {
    const o = new URLSearchParams();
    for (const e of ["from", "to"]) if (urlWindows(page).has(`${k}_${e}`)) o.set(e, urlWindows(page).get(`${k}_${e}`));
    return o.toString();
  };
  const fa = await api(base, `/api/runs/${args.a}/functions${fq("a") ? `?${fq("a")}` : ""}`);
  const fb = await api(base, `/api/runs/${args.b}/functions${fq("b") ? `?${fq("b")}` : ""}`);
  check(
    fa.samples === d.a.samples && fb.samples === d.b.samples,
    `${what}: /functions of the same windows counts the same samples`,
    `${what}: /functions counts ${fa.samples} / ${fb.samples}, /api/diff ${d.a.samples} / ${d.b.samples}`,
  );
  const rows = await diffRows(page);
  const key = (f) => `${f.name}\0${f.file}\0${f.line}`;
  const shown = new Map(rows.map((r) => [key(r), r]));
  const bad = d.functions.filter((f) => {
    const r = shown.get(key(f));
    return !r || r.a_total !== f.a_total || r.b_total !== f.b_total || r.a_self !== f.a_self || r.b_self !== f.b_self || !near(r.delta, f.delta_total_pct, 0.001);
  });
  check(
    rows.length === d.functions.length && bad.length === 0,
    `${what}: the table's ${rows.length} functions are the API's (biggest change ${d.functions[0] ? `${d.functions[0].name} ${d.functions[0].delta_total_pct.toFixed(2)} pp` : "none"})`,
    `${what}: ${rows.length} rows shown, ${d.functions.length} in the API; differing: ${JSON.stringify(bad.slice(0, 3))}`,
  );
  // The graph's first level is the API tree's.
  await flameReady(page, "diff");
  const top = await topFrames(page, "diff");
  const kids = (d.root.children ?? []).filter((c) => c.a_total + c.b_total > 0);
  const sameTop = kids.every((c) => top.some((t) => t.fn === c.name && Number(t.aTotal) === c.a_total && Number(t.bTotal) === c.b_total));
  check(
    sameTop && top.length <= kids.length,
    `${what}: the graph's top frames have the API tree's counts (${top.map((t) => `${t.fn} ${t.aTotal}→${t.bTotal}`).join(", ")})`,
    `${what}: graph top frames ${JSON.stringify(top.map((t) => [t.fn, t.aTotal, t.bTotal]))}, API ${JSON.stringify(kids.map((c) => [c.name, c.a_total, c.b_total]))}`,
  );
  return d;
}

async function timeWindows(page, shot) {
  await page.goto(`${base}/runs/${args.a}/compare/${args.b}`);
  await waitFor(page, () => document.querySelector('[data-testid="compare-a-chart"]')?.dataset.loaded === "1", null, "A's window chart did not load");
  const picker = (w) => page.locator(`[data-testid="compare-${w}-window"]`);
  const pa0 = await dataset(picker("a"));
  const endA = Number(pa0.end);
  check(pa0.from === "" && pa0.to === "" && endA > 0, `each run starts as a whole run (A: 0 – ${endA} s)`, `A's window at start: ${JSON.stringify(pa0)}`);

  // Drag across the middle of A's chart.
  const chart = page.locator('[data-testid="compare-a-chart"]');
  await chart.scrollIntoViewIfNeeded();
  const box = await chart.boundingBox();
  const y = box.y + box.height / 3;
  await page.mouse.move(box.x + box.width * 0.25, y);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.45, y, { steps: 4 });
  await page.mouse.move(box.x + box.width * 0.7, y, { steps: 4 });
  await page.mouse.up();
  await page.waitForURL(/a_from=.*a_to=/);
  const pa = await dataset(picker("a"));
  const ua = urlWindows(page);
  const fromA = Number(pa.from);
  const toA = Number(pa.to);
  check(
    Number(ua.get("a_from")) === fromA && Number(ua.get("a_to")) === toA && near(fromA, endA * 0.25, endA * 0.03) && near(toA, endA * 0.7, endA * 0.03),
    `dragging over A's chart picks ${fromA} – ${toA} s (about 25% – 70% of ${endA} s) and puts it in the URL (${ua})`,
    `after the drag: picker ${JSON.stringify(pa)}, URL ${ua}, run end ${endA}`,
  );
  const fromVal = await page.locator('[data-testid="compare-a-from"]').inputValue();
  const toVal = await page.locator('[data-testid="compare-a-to"]').inputValue();
  check(Number(fromVal) === fromA && Number(toVal) === toA, `and in A's from / to fields (${fromVal}, ${toVal})`, `A's fields say ${fromVal} / ${toVal}`);
  const dA = await diffMatchesApi(page, "A's window");
  check(dA.a.samples < aN && dA.b.samples === bN, `A's window holds ${dA.a.samples} of its ${aN} samples; B is whole`, `A's window: ${dA.a.samples} of ${aN}, B ${dA.b.samples} of ${bN}`);

  // B's window typed, from the keyboard only.
  const pb0 = await dataset(picker("b"));
  const endB = Number(pb0.end);
  const bFrom = Number((endB * 0.1).toFixed(3));
  const bTo = Number((endB * 0.5).toFixed(3));
  await page.locator('[data-testid="compare-b-from"]').focus();
  await page.keyboard.type(String(bFrom));
  await page.keyboard.press("Tab");
  check(
    (await page.evaluate(() => document.activeElement?.dataset?.testid)) === "compare-b-to",
    "Tab goes from B's start field to its end field",
    "Tab from B's start field went elsewhere",
  );
  await page.keyboard.type(String(bTo));
  await page.keyboard.press("Enter");
  await page.waitForURL(/b_from=.*b_to=/);
  const ub = urlWindows(page);
  check(
    Number(ub.get("b_from")) === bFrom && Number(ub.get("b_to")) === bTo && Number(ub.get("a_from")) === fromA,
    `typing ${bFrom} and ${bTo} s for B (Enter) adds them to the URL, A's window kept (${ub})`,
    `after typing B's window the URL has ${ub}`,
  );
  const dB = await diffMatchesApi(page, "both windows");
  await shot("compare-window.png");

  // A bad window is refused where it was typed; nothing changes.
  const before = page.url();
  await page.locator('[data-testid="compare-b-to"]').fill(String(bFrom / 2));
  await page.locator('[data-testid="compare-b-to"]').press("Enter");
  const err = page.locator('[data-testid="compare-b-window-error"]');
  await waitFor(page, () => document.querySelector('[data-testid="compare-b-window-error"]')?.textContent, null, "an end before the start was not refused");
  check(
    page.url() === before && (await page.locator('[data-testid="compare-b-to"]').getAttribute("aria-invalid")) === "true",
    `an end before the start is refused: "${await err.textContent()}"`,
    `a bad window changed the URL to ${page.url()}`,
  );

  // The link is shareable: a fresh load shows the same windows and the same diff.
  const link = page.url();
  await page.goto(link);
  await waitFor(page, () => document.querySelector('[data-testid="compare-b-window"]'), null, "the shared link did not render");
  const sa = await dataset(picker("a"));
  const sb = await dataset(picker("b"));
  check(
    Number(sa.from) === fromA && Number(sa.to) === toA && Number(sb.from) === bFrom && Number(sb.to) === bTo,
    "opening the link again shows both windows",
    `reloaded windows: A ${JSON.stringify(sa)}, B ${JSON.stringify(sb)}`,
  );
  const dLink = await diffMatchesApi(page, "the shared link");
  check(dLink.a.samples === dB.a.samples && dLink.b.samples === dB.b.samples, "and the same comparison", "the shared link compares other samples");

  // Keys on A's chart move its window (by a tenth of its width).
  await waitFor(page, () => document.querySelector('[data-testid="compare-a-chart"]')?.dataset.loaded === "1", null, "A's chart did not load");
  await page.locator('[data-testid="compare-a-chart"]').focus();
  await page.keyboard.press("ArrowRight");
  await page.waitForURL((u) => Number(new URL(u).searchParams.get("a_from")) > fromA);
  const moved = urlWindows(page);
  const step = (toA - fromA) / 10;
  check(
    near(Number(moved.get("a_from")), fromA + step, 1e-5) && near(Number(moved.get("a_to")), toA + step, 1e-5),
    `→ on A's chart moves its window by a tenth (${moved.get("a_from")} – ${moved.get("a_to")} s)`,
    `→ moved A's window to ${moved}, expected ${fromA + step} – ${toA + step}`,
  );
  await diffMatchesApi(page, "A's window moved by the keyboard");

  // Back: the previous windows again.
  await page.goBack();
  await page.waitForURL((u) => Number(new URL(u).searchParams.get("a_from")) === fromA);
  await diffMatchesApi(page, "Back");

  // "Whole run" for A: its window leaves the URL, its count is the run's.
  await page.locator('[data-testid="compare-a-whole"]').click();
  await page.waitForURL((u) => !new URL(u).searchParams.has("a_from"));
  const dWhole = await diffMatchesApi(page, "A whole again");
  check(dWhole.a.samples === aN, `"Whole run" compares all of A's ${aN} samples again`, `"Whole run": A has ${dWhole.a.samples} samples, expected ${aN}`);

  // Swap carries the windows over: B's window becomes A's.
  await page.locator('[data-testid="compare-swap"]').click();
  await page.waitForURL(new RegExp(`/runs/${args.b}/compare/${args.a}\\?`));
  const us = new URL(page.url()).searchParams;
  check(
    Number(us.get("a_from")) === bFrom && Number(us.get("a_to")) === bTo && !us.has("b_from"),
    `"Swap" keeps each run's window (${us})`,
    `after swap the URL has ${us}`,
  );
  await waitFor(page, () => document.querySelector('[data-testid="diff-view"]')?.dataset.query !== undefined, null, "the swapped comparison did not render");
  const ds = await api(base, `/api/diff?a=${args.b}&b=${args.a}&${us}`);
  const cs = await dataset(page.locator('[data-testid="compare-a"]'));
  check(Number(cs.samples) === ds.a.samples && ds.a.samples === dB.b.samples, `and compares the same ${ds.a.samples} samples of that run`, `swapped: card ${cs.samples}, API ${ds.a.samples}, before ${dB.b.samples}`);
  await shot("compare-window-swapped.png");
}
