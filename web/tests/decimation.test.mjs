// Unit tests of the run page's "thinned" line: GET /api/runs/{id} reports
// `decimation` when the relay kept fewer samples of a run.

import assert from "node:assert/strict";
import { test } from "node:test";
import { decimationText, period } from "../.test-build/format.js";

const D = (before, after, p0, p1) => ({ samples_before: before, samples_after: after, original_period_s: p0, period_s: p1 });

test("the issue's example: 1 in 4 kept, 5 ms -> 20 ms", () => {
  assert.equal(decimationText(D(160000, 40000, 0.005, 0.02)), "thinned: 1 in 4 samples kept (40,000 of 160,000), period 5 ms → 20 ms");
});

test("absent, null or nonsense decimation shows nothing", () => {
  assert.equal(decimationText(undefined), null);
  assert.equal(decimationText(null), null);
  assert.equal(decimationText(D(Number.NaN, 10, 0.001, 0.002)), null);
  assert.equal(decimationText(D(10, -1, 0.001, 0.002)), null);
  // More samples after than before is not thinning.
  assert.equal(decimationText(D(10, 20, 0.001, 0.002)), null);
  assert.equal(decimationText("1 in 4"), null);
});

test("ratios that are not whole numbers keep two or three digits", () => {
  assert.equal(decimationText(D(1000, 400, 0.004, 0.01)), "thinned: 1 in 2.5 samples kept (400 of 1,000), period 4 ms → 10 ms");
  assert.equal(decimationText(D(300000, 20000, 0.005, 0.1)), "thinned: 1 in 15 samples kept (20,000 of 300,000), period 5 ms → 100 ms");
  assert.equal(decimationText(D(1000, 3, 0.001, 0.333)), "thinned: 1 in 333 samples kept (3 of 1,000), period 1 ms → 333 ms");
  assert.equal(decimationText(D(10000, 7, 0.001, 1.5)), "thinned: 1 in 1,429 samples kept (7 of 10,000), period 1 ms → 1.5 s");
  // Close to a whole number: shown as one.
  assert.equal(decimationText(D(4001, 1000, 0.005, 0.02)), "thinned: 1 in 4 samples kept (1,000 of 4,001), period 5 ms → 20 ms");
});

test("periods missing or zero: the counts alone", () => {
  assert.equal(decimationText(D(800, 200, 0, 0)), "thinned: 1 in 4 samples kept (200 of 800)");
  assert.equal(decimationText({ samples_before: 800, samples_after: 200 }), "thinned: 1 in 4 samples kept (200 of 800)");
});

test("nothing kept", () => {
  assert.equal(decimationText(D(50, 0, 0.001, 0.01)), "thinned: none of 50 samples kept, period 1 ms → 10 ms");
});

test("period units", () => {
  assert.equal(period(0.0005), "500 µs");
  assert.equal(period(0.000125), "125 µs");
  assert.equal(period(0.001), "1 ms");
  assert.equal(period(0.0125), "12.5 ms");
  assert.equal(period(0.02), "20 ms");
  assert.equal(period(2), "2 s");
  assert.equal(period(0), "–");
  assert.equal(period(Number.POSITIVE_INFINITY), "–");
});

test("count groups thousands as en-US does (without Intl)", async () => {
  const { count } = await import("../.test-build/format.js");
  for (const v of [0, 1, 12, 123, 999, 1000, 1234, 12345, 123456, 1234567, 10000000, 987654321012, -1, -1234, -999999, 2.5, 1234.4, 1e15]) {
    assert.equal(count(v), Math.round(v).toLocaleString("en-US"), String(v));
  }
});

test("absolute times: local, with the offset, and the ISO instant", async () => {
  const { absoluteTime } = await import("../.test-build/format.js");
  const iso = "2026-11-25T15:27:00.438Z";
  const s = absoluteTime(iso);
  const d = new Date(iso);
  const p = (v) => String(v).padStart(2, "0");
  assert.ok(s.startsWith(`${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} UTC`), s);
  assert.ok(s.endsWith(`(${iso})`), s);
  assert.equal(absoluteTime("not a date"), "not a date");
});
