// Unit tests for the issue-6 logic: /tree parsing, sandwich merge, zoom paths,
// the differential tree and its colours, and the time-axis formatting.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  buildTree,
  countNodes,
  followPath,
  followZoom,
  frameLabel,
  fromApiTree,
  labelPath,
  matchedSamples,
  parseCollapsed,
  sandwich,
  unnamedShare,
} from "../.test-build/tree.js";
import { buildDiffTree, diffColour, formatPp, maxAbsDelta } from "../.test-build/diff.js";
import { clockLabel, clockStep, clockTicks, relLabel, size } from "../.test-build/format.js";

// The same profile twice: as the server's /tree JSON and as collapsed text.
const F = (name, line) => ({ name, file: "/x/a.py", line });
const API = {
  samples: 10,
  root: {
    name: "all", file: "", line: 0, total: 10, self: 0,
    children: [
      {
        ...F("main", 1), total: 10, self: 1,
        children: [
          {
            ...F("fib", 5), total: 6, self: 2,
            children: [{ ...F("fib", 5), total: 4, self: 3, children: [{ ...F("leaf", 9), total: 1, self: 1, children: [] }] }],
          },
          { ...F("helper", 7), total: 3, self: 0, children: [{ ...F("fib", 5), total: 3, self: 3, children: [] }] },
        ],
      },
    ],
  },
};
const COLLAPSED = [
  "main (/x/a.py:1) 1",
  "main (/x/a.py:1);fib (/x/a.py:5) 2",
  "main (/x/a.py:1);fib (/x/a.py:5);fib (/x/a.py:5) 3",
  "main (/x/a.py:1);fib (/x/a.py:5);fib (/x/a.py:5);leaf (/x/a.py:9) 1",
  "main (/x/a.py:1);helper (/x/a.py:7);fib (/x/a.py:5) 3",
].join("\n");

const shape = (n) => ({ name: n.name, total: n.total, self: n.self, children: n.children.map(shape) });
const fromApi = () => fromApiTree(API.root, (a) => a.total, (a) => a.self);

test("frameLabel matches the collapsed format (and its ; escaping)", () => {
  assert.equal(frameLabel("f", "/x/a b.py", 3), "f (/x/a b.py:3)");
  assert.equal(frameLabel("<unknown 0x10>", "", 0), "<unknown 0x10>");
  assert.equal(frameLabel("a;b", "/x\n.py", 1), "a_b (/x_.py:1)");
});

test("/tree JSON and collapsed text give the same tree", () => {
  const a = fromApi();
  const b = buildTree(parseCollapsed(COLLAPSED));
  assert.deepEqual(shape(a), shape(b));
  assert.equal(a.children[0].children[0].depth, 2);
  assert.equal(a.children[0].children[0].parent, a.children[0]);
  assert.equal(countNodes(a), 7);
});

test("fromApiTree sorts children biggest first and survives deep recursion", () => {
  const t = fromApiTree(
    { name: "all", file: "", line: 0, total: 3, self: 0, children: [F("small", 1), F("big", 2)].map((c, i) => ({ ...c, total: i + 1, self: i + 1 })) },
    (a) => a.total,
    (a) => a.self,
  );
  assert.deepEqual(t.children.map((c) => c.name), ["big (/x/a.py:2)", "small (/x/a.py:1)"]);
  // 20000 levels: would overflow the stack if converted recursively.
  let deep = { ...F("r", 1), total: 1, self: 1, children: [] };
  for (let i = 0; i < 20000; i++) deep = { ...F("r", 1), total: 1, self: 0, children: [deep] };
  const d = fromApiTree({ name: "all", file: "", line: 0, total: 1, self: 0, children: [deep] }, (a) => a.total, (a) => a.self);
  assert.equal(countNodes(d), 20002);
});

test("sandwich merges every occurrence, recursion counted once", () => {
  const root = fromApi();
  const s = sandwich(root, "fib (/x/a.py:5)");
  // fib is on the stack in 6 (under main) + 3 (under helper) samples.
  assert.equal(s.total, 9);
  // fib is the leaf in 2 + 3 + 3 samples.
  assert.equal(s.self, 8);
  assert.equal(s.total, matchedSamples(root, (n) => n === "fib (/x/a.py:5)"));
  // Callers: main directly (6), and helper (3) called by main.
  assert.deepEqual(shape(s.callers), {
    name: "fib (/x/a.py:5)", total: 9, self: 0,
    children: [
      { name: "main (/x/a.py:1)", total: 6, self: 6, children: [] },
      { name: "helper (/x/a.py:7)", total: 3, self: 0, children: [{ name: "main (/x/a.py:1)", total: 3, self: 3, children: [] }] },
    ],
  });
  // Callees: the two outermost occurrences merged (self 2 + 3 at the top).
  assert.deepEqual(shape(s.callees), {
    name: "fib (/x/a.py:5)", total: 9, self: 5,
    children: [{ name: "fib (/x/a.py:5)", total: 4, self: 3, children: [{ name: "leaf (/x/a.py:9)", total: 1, self: 1, children: [] }] }],
  });
});

test("sandwich of a function that is absent is empty", () => {
  const s = sandwich(fromApi(), "nope");
  assert.equal(s.total, 0);
  assert.equal(s.callers.children.length, 0);
  assert.equal(s.callees.children.length, 0);
});

test("a zoom path survives a refreshed tree, and stops where frames vanished", () => {
  const a = fromApi();
  const deep = a.children[0].children[0].children[0];
  const path = labelPath(deep);
  assert.deepEqual(path, ["main (/x/a.py:1)", "fib (/x/a.py:5)", "fib (/x/a.py:5)"]);
  const b = buildTree(parseCollapsed(COLLAPSED + "\nmain (/x/a.py:1);fib (/x/a.py:5);fib (/x/a.py:5) 5"));
  const found = followPath(b, path);
  assert.equal(found.total, 9);
  const c = buildTree(parseCollapsed("main (/x/a.py:1);other (/x/a.py:2) 4"));
  assert.equal(followPath(c, path).name, "main (/x/a.py:1)");
});

test("diff tree: width by both shares, delta in percentage points", () => {
  const api = {
    name: "all", file: "", line: 0, a_total: 100, b_total: 200, a_self: 0, b_self: 0,
    children: [
      { ...F("grew", 1), a_total: 10, b_total: 60, a_self: 10, b_self: 60, children: [] },
      { ...F("shrank", 2), a_total: 90, b_total: 140, a_self: 90, b_self: 140, children: [] },
      { ...F("gone", 3), a_total: 0, b_total: 0, a_self: 0, b_self: 0, children: [] },
    ],
  };
  const t = buildDiffTree(api, 100, 200);
  assert.ok(Math.abs(t.total - 2) < 1e-12);
  const [shr, grew] = t.children; // 0.9+0.7 > 0.1+0.3
  assert.equal(shr.name, "shrank (/x/a.py:2)");
  assert.ok(Math.abs(grew.delta - 20) < 1e-9); // 30% - 10%
  assert.ok(Math.abs(shr.delta + 20) < 1e-9); // 70% - 90%
  assert.equal(grew.aTotal, 10);
  assert.equal(grew.bTotal, 60);
  assert.ok(Math.abs(maxAbsDelta(t) - 20) < 1e-9);
  assert.ok(Math.abs(grew.total - 0.4) < 1e-12);
});

test("diff colours: red grew, blue shrank, grey near zero, stronger with size", () => {
  const hue = (c) => Number(/^hsl\((\d+)/.exec(c)[1]);
  const light = (c) => Number(/ ([\d.]+)%\)$/.exec(c)[1]);
  assert.equal(hue(diffColour(5, 10)), 0);
  assert.equal(hue(diffColour(-5, 10)), 215);
  assert.equal(diffColour(0.01, 10), diffColour(-0.01, 10));
  assert.ok(light(diffColour(10, 10)) < light(diffColour(1, 10)));
  assert.equal(formatPp(1.234), "+1.23 pp");
  assert.equal(formatPp(-12.34), "\u221212.3 pp");
  assert.equal(formatPp(0), "0 pp");
});

test("wall-clock axis: round local times, decimals as the step needs", () => {
  process.env.TZ = "UTC";
  const start = Date.UTC(2026, 10, 25, 15, 27, 0, 438);
  const { ticks, step } = clockTicks(start, start + 10_000, 5);
  assert.equal(step, 2);
  assert.deepEqual(ticks.map((t) => clockLabel(t, step)), ["15:27:02", "15:27:04", "15:27:06", "15:27:08", "15:27:10"]);
  const fine = clockTicks(start, start + 500, 5);
  assert.equal(fine.step, 0.1);
  assert.deepEqual(fine.ticks.map((t) => clockLabel(t, fine.step)), ["15:27:00.5", "15:27:00.6", "15:27:00.7", "15:27:00.8", "15:27:00.9"]);
  assert.equal(clockLabel(start, 0.001), "15:27:00.438");
  const long = clockTicks(start, start + 3 * 3600_000, 6);
  assert.equal(long.step, 1800);
  assert.equal(clockLabel(long.ticks[0], long.step), "15:30");
  assert.equal(clockStep(100, 4), 30);
  assert.equal(relLabel(2.5), "2.5 s");
  assert.equal(relLabel(0.30000000000000004), "0.3 s");
});

test("size picks a readable unit", () => {
  assert.equal(size(512), "512 KiB");
  assert.equal(size(2048), "2.00 MiB");
  assert.equal(size(51200), "50.0 MiB");
  assert.equal(size(3 * 1024 * 1024), "3.00 GiB");
});

test("a live run's zoom survives its frames getting their names", () => {
  // While live, vmprof has not written the names yet: frames are addresses.
  const live = buildTree(parseCollapsed(["<unknown 0x1>;<unknown 0x2> 5", "<unknown 0x1>;<unknown 0x3> 2"].join("\n")));
  const zoom = live.children[0].children[0]; // 0x2, 5 samples
  const done = buildTree(
    parseCollapsed(["main (/x.py:1);work (/x.py:5) 9", "main (/x.py:1);idle (/x.py:9) 3", "main (/x.py:1);<unknown 0x9> 1"].join("\n")),
  );
  const found = followZoom(zoom, done);
  assert.deepEqual(labelPath(found), ["main (/x.py:1)", "work (/x.py:5)"]);
  // Named frames are followed by name; a vanished named frame stops the walk.
  const named = buildTree(parseCollapsed("main (/x.py:1);work (/x.py:5) 4"));
  assert.equal(followZoom(named.children[0].children[0], done).name, "work (/x.py:5)");
  const gone = buildTree(parseCollapsed("main (/x.py:1);other (/x.py:7) 4"));
  assert.equal(followZoom(gone.children[0].children[0], done).name, "main (/x.py:1)");
  assert.equal(unnamedShare(["<unknown 0x1>", "<unknown 0x2>", "f"]), 2 / 3);
});

test("compare windows: read from the URL, written back, swapped", async () => {
  const { compareWindows, compareQuery, swapWindows, sameWindow, windowFromParams } = await import("../.test-build/diff.js");
  const w = compareWindows("?a_from=1.5&a_to=3&b_to=2");
  assert.deepEqual(w, { a: { from: 1.5, to: 3 }, b: { to: 2 } });
  assert.equal(compareQuery(w), "a_from=1.5&a_to=3&b_to=2");
  assert.equal(compareQuery(swapWindows(w)), "a_to=2&b_from=1.5&b_to=3");
  assert.equal(compareQuery({ a: null, b: null }), "");
  // Microseconds at most in a link.
  assert.equal(compareQuery({ a: { from: 0.1234567891, to: 1 / 3 }, b: null }), "a_from=0.123457&a_to=0.333333");
  // Not a window: empty, negative, not a number, or ends before it starts.
  assert.deepEqual(compareWindows("?a_from=&a_to=&b_from=x&b_to=2"), { a: null, b: null });
  assert.equal(windowFromParams(new URLSearchParams("a_from=-1&a_to=2"), "a"), null);
  assert.equal(windowFromParams(new URLSearchParams("a_from=3&a_to=2"), "a"), null);
  assert.equal(windowFromParams(new URLSearchParams("a_from=2&a_to=2"), "a"), null);
  assert.ok(sameWindow(null, {}));
  assert.ok(sameWindow({ from: 1, to: 2 }, { from: 1, to: 2 }));
  assert.ok(!sameWindow({ from: 1 }, { from: 1, to: 2 }));
});

test("fromApiTree labels: one string per distinct frame, escaped, distinct by file and line", () => {
  const N = (name, file, line, total, children = []) => ({ name, file, line, total, self: 0, children });
  const api = N("all", "", 0, 6, [
    N("f;g", "/a.py", 1, 3, [N("h", "/a.py", 2, 2), N("h", "/b.py", 2, 1)]),
    N("h", "/a.py", 3, 3, [N("f;g", "/a.py", 1, 3, [N("h", "/a.py", 2, 3)])]),
  ]);
  const root = fromApiTree(api, (a) => a.total, (a) => a.self);
  const names = [];
  const walk = (n) => {
    names.push(n.name);
    n.children.forEach(walk);
  };
  walk(root);
  assert.deepEqual(names, ["all", "f_g (/a.py:1)", "h (/a.py:2)", "h (/b.py:2)", "h (/a.py:3)", "f_g (/a.py:1)", "h (/a.py:2)"]);
});
