#!/usr/bin/env node
// Browser check of a run that is still being profiled: the run page polls
// while the run is live, its views grow in place (keeping the zoom), and the
// polling stops once the run is complete.
//
//   node web/e2e/check-live.mjs --base URL --project NAME --expect FILE.json --out DIR [--wait S]
//
// Waits up to --wait seconds (default 60) for a live run of project NAME to be
// listed. FILE.json may appear later: it is read after the run completed
// ({"samples", "peak_rss_kb"}, from vmprof's reader on the finished profile).

import { existsSync, readFileSync } from "node:fs";
import { api, check, clickFrame, dataset, fail, flameReady, ok, parseArgs, topFrames, waitFor, withBrowser } from "./lib.mjs";

const USAGE = "node check-live.mjs --base URL --project NAME --expect FILE.json --out DIR [--wait S]";
const args = parseArgs(process.argv.slice(2), ["base", "project", "expect", "out"], USAGE);
const base = args.base.replace(/\/+$/, "");
const waitS = Number(args.wait ?? 60);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

await withBrowser(args.out, async (page, { shot }) => {
  // The list shows the live run.
  let id = null;
  const deadline = Date.now() + waitS * 1000;
  while (!id && Date.now() < deadline) {
    await page.goto(`${base}/`);
    await page.locator('[data-testid="run-count"]').waitFor();
    await sleep(200);
    id = await page
      .locator('[data-testid="run-row"]')
      .evaluateAll(
        (trs, p) =>
          trs.find((tr) => tr.querySelector('[data-col="project"]').textContent === p && tr.querySelector('[data-testid="run-status"]').dataset.status === "live")
            ?.dataset.runId ?? null,
        args.project,
      );
    if (!id) await sleep(500);
  }
  if (!id) fail(`no live run of project ${JSON.stringify(args.project)} appeared on / within ${waitS} s`);
  ok(`the list shows run ${id} of ${JSON.stringify(args.project)} as live`);
  await shot("live-list.png");

  // Count the page's polls of the run.
  const polls = [];
  page.on("request", (r) => {
    if (new URL(r.url()).pathname === `/api/runs/${id}`) polls.push(Date.now());
  });
  await page.locator(`[data-testid="run-row"][data-run-id="${id}"] [data-col="project"] a`).click();
  await page.locator('[data-testid="run-meta"]').waitFor();
  const status = page.locator('[data-testid="run-status"]');
  const samplesEl = page.locator('[data-testid="run-meta"] [data-field="samples"]');
  check(
    (await status.getAttribute("data-status")) === "live" && (await page.locator('[data-testid="live-indicator"]').isVisible()),
    "the run page says live and that it updates",
    `run page status ${await status.getAttribute("data-status")}, indicator visible: ${await page.locator('[data-testid="live-indicator"]').isVisible()}`,
  );

  // Open the CPU view and zoom one level below the root's widest child.
  await page.locator('[data-testid="tab-cpu"]').click();
  await flameReady(page);
  const flame = page.locator('[data-testid="flame-graph"]');
  const cpu0 = await dataset(flame);
  const top = await topFrames(page);
  if (!top.length) fail("the live run's flame graph has no frames yet");
  // Two levels down the widest path.
  let level = top;
  for (let i = 0; i < 2 && level.length; i++) {
    const t = level.reduce((a, b) => (b.w > a.w ? b : a));
    const prev = await flame.getAttribute("data-zoom");
    await clickFrame(page, flame, t);
    await waitFor(page, (p) => document.querySelector('[data-testid="flame-graph"]').dataset.zoom !== p, prev, "could not zoom the live flame graph");
    level = await topFrames(page);
  }
  await page.mouse.move(0, 0);
  await shot("live-cpu.png");
  const zoom = await flame.getAttribute("data-zoom");
  const zoomTotal0 = Number(await flame.getAttribute("data-zoom-total"));
  await page.mouse.move(0, 0);
  // And the Memory view (each view refreshes once it has been opened).
  await page.locator('[data-testid="tab-memory"]').click();
  await waitFor(page, () => Number(document.querySelector('[data-testid="memory-chart"]')?.dataset.points) > 0, null, "live memory chart is empty");
  const mem0 = await dataset(page.locator('[data-testid="memory-chart"]'));

  // Watch the header grow while the run is live.
  const seen = [Number(await samplesEl.getAttribute("data-value"))];
  while ((await status.getAttribute("data-status")) === "live" && Date.now() < deadline + 120000) {
    await sleep(250);
    const v = Number(await samplesEl.getAttribute("data-value"));
    if (v !== seen.at(-1)) seen.push(v);
    if (seen.length === 3) await shot("live-memory.png");
  }
  const growing = seen.every((v, i) => i === 0 || v > seen[i - 1]);
  check(
    seen.length >= 3 && growing,
    `while live, the page updated itself ${seen.length - 1} times: ${seen.join(" → ")} samples`,
    `samples shown while live: ${seen.join(" → ")} (want at least two increases)`,
  );
  const iv = polls.slice(1).map((p, i) => p - polls[i]);
  check(
    polls.length >= 2 && iv.every((d) => d > 1200 && d < 5000),
    `it polled /api/runs/${id.slice(0, 8)}… every ~2 s (${iv.map((d) => (d / 1000).toFixed(1)).join(", ")} s)`,
    `poll intervals: ${iv.join(", ")} ms`,
  );

  // Complete: the views caught up, the zoom was kept, polling stopped.
  await waitFor(page, () => document.querySelector('[data-testid="run-status"]')?.dataset.status === "complete", null, "the run never showed as complete", 120000);
  ok("the status turned to complete without a reload");
  await waitFor(page, () => document.querySelector('[data-testid="live-indicator"]')?.dataset.stopped === "1", null, "live indicator did not stop");
  const pollsAtEnd = polls.length;
  await sleep(5000);
  check(polls.length === pollsAtEnd, "polling stopped once the run was no longer live", `${polls.length - pollsAtEnd} more polls after completion`);

  let expect = null;
  for (let i = 0; i < 240 && !expect; i++) {
    if (existsSync(args.expect)) {
      try {
        expect = JSON.parse(readFileSync(args.expect, "utf8"));
      } catch {
        // being written
      }
    }
    if (!expect) await sleep(250);
  }
  if (!expect) fail(`${args.expect} never appeared`);
  const final = Number(await samplesEl.getAttribute("data-value"));
  check(final === expect.samples, `the header ends at the run's ${final} samples`, `header shows ${final} samples, vmprof says ${expect.samples}`);
  const mem1 = await dataset(page.locator('[data-testid="memory-chart"]'));
  const peak = Number(await page.locator('[data-testid="peak-rss"]').getAttribute("data-kib"));
  check(
    Number(mem1.to) > Number(mem0.to) && Number(mem1.samples) > Number(mem0.samples) && peak === expect.peak_rss_kb,
    `the memory chart grew from ${Number(mem0.to).toFixed(2)} s to ${Number(mem1.to).toFixed(2)} s (${mem0.samples} → ${mem1.samples} samples), peak ${peak} KiB`,
    `memory chart ${JSON.stringify(mem0)} → ${JSON.stringify(mem1)}, peak ${peak} vs ${expect.peak_rss_kb}`,
  );
  await page.locator('[data-testid="tab-cpu"]').click();
  const cpu1 = await dataset(flame);
  const tree = await api(base, `/api/runs/${id}/tree`);
  check(
    Number(cpu1.rootTotal) === tree.root.total && Number(cpu1.rootTotal) > Number(cpu0.rootTotal),
    `the flame graph grew from ${cpu0.rootTotal} to ${cpu1.rootTotal} samples`,
    `flame graph root ${cpu0.rootTotal} → ${cpu1.rootTotal}, /tree says ${tree.root.total}`,
  );
  // While live, frames can be unnamed addresses (vmprof writes the names at the end):
  // then the zoom must stay on the frame at the same depth, now named.
  const depth = (z) => z.split(";").length;
  const sameFrames = zoom.split(";").every((f, i) => f.startsWith("<unknown 0x") || f === cpu1.zoom.split(";")[i]);
  check(
    depth(cpu1.zoom) === depth(zoom) && sameFrames && Number(cpu1.zoomTotal) >= zoomTotal0 && Number(cpu1.zoomTotal) > 0,
    `the zoom on ${zoom.split(";").at(-1)} was kept across updates (${cpu1.zoom.split(";").at(-1)}: ${zoomTotal0} → ${cpu1.zoomTotal} samples)`,
    `zoom ${JSON.stringify(zoom)} → ${JSON.stringify(cpu1.zoom)}, total ${zoomTotal0} → ${cpu1.zoomTotal}`,
  );
  await shot("live-done.png");
});
