#!/usr/bin/env node
// Browser check of comparing two runs: select both on the list page, open the
// comparison, and check the differential flame graph and the function table
// against the caller's truth (vmprof's reader on both profiles).
//
//   node web/e2e/check-compare.mjs --base URL --a RUNID --b RUNID --expect FILE.json --out DIR
//
// A must be the older run (the list page puts the older one first: before).
// FILE.json: {"a": {"samples"}, "b": {"samples"},
//             "functions": [{"name", "file", "line", "a_total", "b_total", "a_self", "b_self"}, ...]}
// with the functions whose share changed most.

import { readFileSync } from "node:fs";
import { check, clickFrame, dataset, hoverFrame, fail, flameReady, near, ok, parseArgs, pixelAt, topFrames, usage, waitFor, withBrowser } from "./lib.mjs";

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
});
