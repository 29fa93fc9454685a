// Shared pieces of the browser checks: arguments, the browser, check output,
// and readers for the DOM hooks the UI exposes (see web/README.md).

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

export class CheckFailed extends Error {}

export function parseArgs(argv, required, usageLine) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) usage(`unexpected argument ${a}`, usageLine);
    const eq = a.indexOf("=");
    if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
    else out[a.slice(2)] = argv[++i];
  }
  for (const k of required) if (!out[k]) usage(`missing --${k}`, usageLine);
  return out;
}

export function usage(msg, line) {
  console.error(`${process.argv[1]}: ${msg}`);
  if (line) console.error(`usage: ${line}`);
  process.exit(2);
}

let n = 0;
export function ok(msg) {
  n++;
  console.log(`ok ${n} - ${msg}`);
}
export function fail(msg) {
  throw new CheckFailed(msg);
}
export function check(cond, okMsg, failMsg) {
  if (!cond) fail(failMsg ?? okMsg);
  ok(okMsg);
}
export const near = (a, b, tol) => Math.abs(a - b) <= tol;

export const TIMEOUT = Number(process.env.CHECK_TIMEOUT_MS ?? 15000);

/**
 * Run `body(page, ctx)` in a fresh headless Chromium; prints the summary,
 * saves failure.png on failure and sets the exit status.
 */
export async function withBrowser(outDir, body, { viewport = { width: 1366, height: 768 } } = {}) {
  outDir = resolve(outDir);
  mkdirSync(outDir, { recursive: true });
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
      viewport,
      deviceScaleFactor: 1,
      acceptDownloads: true,
    });
    context.setDefaultTimeout(TIMEOUT);
    const page = context.pages()[0] ?? (await context.newPage());
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    page.on("dialog", (d) => {
      // An alert() would mean injected markup ran.
      pageErrors.push(`unexpected dialog: ${d.message()}`);
      void d.dismiss();
    });
    await body(page, { outDir, shot: (name, fullPage = true) => page.screenshot({ path: join(outDir, name), fullPage }) });
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
}

/** GET from the server under test, as JSON (or text). */
export async function api(base, path, text = false) {
  const res = await fetch(base + path);
  if (!res.ok) fail(`GET ${path} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
  return text ? res.text() : res.json();
}

/** Wait for `fn(arg)` to be truthy in the page, failing with `what` (and any error the page shows). */
export async function waitFor(page, fn, arg, what, timeout = TIMEOUT) {
  try {
    await page.waitForFunction(fn, arg, { timeout });
  } catch {
    const err = await page.locator('[data-testid="error"]').allTextContents();
    fail(`${what} ${err.length ? `(page says: ${err.join("; ")})` : "(timed out)"}`);
  }
}

export async function dataset(loc) {
  return loc.evaluate((e) => ({ ...e.dataset }));
}

/** The mirrored children of the frame filling a flame graph's width. */
export async function topFrames(page, id = "flame") {
  return page.locator(`[data-testid="${id}-top-frames"] li`).evaluateAll((lis) =>
    lis.map((li) => ({
      ...li.dataset,
      fn: li.dataset.function,
      total: Number(li.dataset.total),
      self: Number(li.dataset.self),
      x: Number(li.dataset.x),
      y: Number(li.dataset.y),
      w: Number(li.dataset.w),
      h: Number(li.dataset.h),
    })),
  );
}

/** Wait until a flame graph has rendered (its mirror wrote data-zoom). */
export async function flameReady(page, id = "flame") {
  await waitFor(page, (i) => document.querySelector(`[data-testid="${i}-graph"]`)?.hasAttribute("data-zoom"), id, `${id} graph did not render`);
}

/** Counts of canvas pixels near each of the given [r, g, b] colours. */
export async function pixelCounts(locator, colours, tol = 40) {
  return locator.evaluate(
    (c, [cols, t]) => {
      const ctx = c.getContext("2d");
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      const out = cols.map(() => 0);
      for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] < 200) continue;
        cols.forEach(([r, g, b], k) => {
          if (Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < t) out[k]++;
        });
      }
      return out;
    },
    [colours, tol],
  );
}

/** The colour of the canvas pixel at (x, y) in CSS px. */
export async function pixelAt(locator, x, y) {
  return locator.evaluate(
    (c, [px, py]) => {
      const r = c.width / c.getBoundingClientRect().width;
      return [...c.getContext("2d").getImageData(Math.round(px * r), Math.round(py * r), 1, 1).data];
    },
    [x, y],
  );
}

/** Collapsed frame label of a function, as the UI and /collapsed write it. */
export function frameLabel(name, file, line) {
  const s = file || line ? `${name} (${file}:${line})` : name;
  return s.replace(/[;\n\r]/g, "_");
}

/** Click the middle of a mirrored frame, scrolling the page so that its row is in view. */
export async function clickFrame(page, canvas, f, opts = {}) {
  await canvas.evaluate((c, y) => {
    const top = window.scrollY + c.getBoundingClientRect().top + y;
    if (top < window.scrollY + 60 || top > window.scrollY + window.innerHeight - 60) window.scrollTo(0, Math.max(0, top - window.innerHeight / 2));
  }, f.y);
  const b = await canvas.boundingBox();
  await page.mouse.click(b.x + f.x + f.w / 2, b.y + f.y + f.h / 2, opts);
}

/** Move the pointer to the middle of a mirrored frame (scrolling it into view). */
export async function hoverFrame(page, canvas, f) {
  await canvas.evaluate((c, y) => {
    const top = window.scrollY + c.getBoundingClientRect().top + y;
    if (top < window.scrollY + 60 || top > window.scrollY + window.innerHeight - 60) window.scrollTo(0, Math.max(0, top - window.innerHeight / 2));
  }, f.y);
  const b = await canvas.boundingBox();
  await page.mouse.move(b.x + f.x + f.w / 2, b.y + f.y + f.h / 2);
}
