// Unit tests for the collapsed-stack parser and call-tree builder.
// `npm test` first transpiles src/ into .test-build/ (tsconfig.test.json).

import assert from "node:assert/strict";
import { test } from "node:test";
import { buildTree, matchedSamples, parseCollapsed, pathOf, selfByFrame } from "../.test-build/tree.js";
import { percent, splitFrame, ticks } from "../.test-build/format.js";

const TEXT = [
  "<module> (/x/a b.py:1);main (/x/a b.py:10);fib (/x/a b.py:2) 5",
  "<module> (/x/a b.py:1);main (/x/a b.py:10);fib (/x/a b.py:2);fib (/x/a b.py:2) 3",
  "<module> (/x/a b.py:1);main (/x/a b.py:10) 2",
  "<module> (/x/a b.py:1);<unknown 0x7f00> 1",
  "",
  "garbage line without count",
].join("\r\n");

test("parseCollapsed splits at the last space and keeps spaces in frames", () => {
  const lines = parseCollapsed(TEXT);
  assert.equal(lines.length, 4);
  assert.deepEqual(lines[0].stack, ["<module> (/x/a b.py:1)", "main (/x/a b.py:10)", "fib (/x/a b.py:2)"]);
  assert.equal(lines[0].count, 5);
  assert.equal(lines[3].stack[1], "<unknown 0x7f00>");
});

test("buildTree sums totals and self counts, biggest children first", () => {
  const root = buildTree(parseCollapsed(TEXT));
  assert.equal(root.total, 11);
  assert.equal(root.self, 0);
  const mod = root.children[0];
  assert.equal(mod.total, 11);
  assert.equal(mod.self, 0);
  assert.deepEqual(
    mod.children.map((c) => [c.name, c.total]),
    [
      ["main (/x/a b.py:10)", 10],
      ["<unknown 0x7f00>", 1],
    ],
  );
  const main = mod.children[0];
  assert.equal(main.self, 2);
  const fib = main.children[0];
  assert.equal(fib.total, 8);
  assert.equal(fib.self, 5);
  assert.equal(fib.children[0].self, 3);
  assert.equal(fib.children[0].depth, 4);
  assert.deepEqual(
    pathOf(fib.children[0]).map((n) => n.depth),
    [0, 1, 2, 3, 4],
  );
});

test("selfByFrame merges recursive frames; matchedSamples counts recursion once", () => {
  const root = buildTree(parseCollapsed(TEXT));
  const heat = selfByFrame(root);
  assert.equal(heat.get("fib (/x/a b.py:2)"), 8);
  assert.equal(heat.get("main (/x/a b.py:10)"), 2);
  assert.equal(matchedSamples(root, (n) => n.startsWith("fib")), 8);
  assert.equal(matchedSamples(root, (n) => n.includes("a b.py")), 11);
});

test("empty input gives an empty root", () => {
  const root = buildTree(parseCollapsed(""));
  assert.equal(root.total, 0);
  assert.equal(root.children.length, 0);
});

test("splitFrame takes the first ' (' so odd file names survive", () => {
  assert.deepEqual(splitFrame("f (/tmp/we (ird).py:12)"), { fn: "f", file: "/tmp/we (ird).py", line: "12" });
  assert.deepEqual(splitFrame("<unknown 0x10>"), { fn: "<unknown 0x10>", file: "", line: "" });
});

test("format helpers", () => {
  assert.equal(percent(1, 3), "33.3%");
  assert.equal(percent(1, 1000), "0.10%");
  assert.deepEqual(ticks(0, 10, 5), [0, 2, 4, 6, 8, 10]);
});
