// Unit tests for the flame graph's flat layout (src/flame-layout.ts): every
// zoom of random trees against a plain recursive layout (what the graph drew
// before the tree was flattened, plus the blocks of thin children), sorted
// and unsorted children alike.

import assert from "node:assert/strict";
import { test } from "node:test";
import { FlatTree, Visible } from "../.test-build/flame-layout.js";
import { buildTree, makeNode } from "../.test-build/tree.js";

/**
 * The reference: depth-first from the focus, each child at its parent's x
 * plus its earlier siblings' widths; where children are sorted, the thin ones
 * (all after the first thin one) make one tail block.
 */
function naive(root, focus, W, minW, maxRows, minTail) {
  const out = [];
  const tails = [];
  const path = [];
  for (let n = focus; n; n = n.parent) path.unshift(n);
  path.forEach((n, i) => out.push({ node: n, x: 0, w: W, row: i }));
  const scale = focus.total > 0 ? W / focus.total : 0;
  const walk = (n, x) => {
    let cx = x;
    const sorted = n.children.every((c, i) => i === 0 || c.total <= n.children[i - 1].total);
    let tail = null;
    for (const c of n.children) {
      const w = c.total * scale;
      if (c.depth - focus.depth >= maxRows) break;
      if (sorted && (tail || w < minW)) {
        tail ??= { x: cx, w: 0, row: c.depth };
        tail.w += w;
      } else if (w >= minW) {
        out.push({ node: c, x: cx, w, row: c.depth });
        walk(c, cx);
      }
      cx += w;
    }
    if (tail && tail.w >= minTail) tails.push(tail);
  };
  walk(focus, 0);
  return { out, tails };
}

function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function randomTree(r, sorted) {
  const lines = [];
  for (let i = 0; i < 400; i++) {
    const depth = 1 + Math.floor(r() * 9);
    const stack = [];
    for (let d = 0; d < depth; d++) stack.push(`f${Math.floor(r() ** 2 * 12)}`);
    lines.push({ stack, count: 1 + Math.floor(1000 * r() ** 6) });
  }
  const root = buildTree(lines); // children sorted biggest first
  if (!sorted) {
    const todo = [root];
    while (todo.length) {
      const n = todo.pop();
      n.children.reverse();
      todo.push(...n.children);
    }
  }
  return root;
}

function allNodes(root) {
  const out = [];
  const todo = [root];
  while (todo.length) {
    const n = todo.pop();
    out.push(n);
    todo.push(...n.children);
  }
  return out;
}

function check(root, W, minW, maxRows, minTail = Infinity) {
  const flat = new FlatTree(root);
  const v = new Visible();
  for (const focus of allNodes(root)) {
    v.layout(flat, flat.indexOf(focus), W, minW, maxRows, minTail);
    const { out: want, tails } = naive(root, focus, W, minW, maxRows, minTail);
    const got = [];
    for (let k = 0; k < v.n; k++) got.push({ node: flat.nodes[v.idx[k]], x: v.x[k], w: v.w[k], row: v.row[k] });
    const key = (a) => `${a.row}:${a.x.toFixed(6)}`;
    const sortBy = (xs) => [...xs].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    const g = sortBy(got);
    const w = sortBy(want);
    assert.equal(g.length, w.length, `frames drawn when zoomed on ${focus.name}`);
    for (let i = 0; i < g.length; i++) {
      assert.equal(g[i].node, w[i].node);
      assert.equal(g[i].row, w[i].row);
      assert.ok(Math.abs(g[i].x - w[i].x) < 1e-6 && Math.abs(g[i].w - w[i].w) < 1e-9, `x/w of ${g[i].node.name}`);
    }
    const gotTails = [];
    for (let t = 0; t < v.tails; t++) gotTails.push({ x: v.tailX[t], w: v.tailW[t], row: v.tailRow[t] });
    const gt = sortBy(gotTails);
    const wt = sortBy(tails);
    assert.equal(gt.length, wt.length, `tail blocks when zoomed on ${focus.name}`);
    for (let i = 0; i < gt.length; i++) {
      assert.equal(gt[i].row, wt[i].row);
      assert.ok(Math.abs(gt[i].x - wt[i].x) < 1e-6 && Math.abs(gt[i].w - wt[i].w) < 1e-6, "tail x/w");
    }
    assert.equal(v.nrows, Math.max(...want.map((a) => a.row), ...tails.map((a) => a.row)) + 1);
    // Rows list their frames left to right, and hit-testing finds each frame at its middle.
    for (let r = 0; r < v.nrows; r++) {
      for (let j = v.rowStart[r]; j < v.rowStart[r + 1]; j++) {
        const k = v.rowItems[j];
        assert.equal(v.row[k], r);
        if (j > v.rowStart[r]) assert.ok(v.x[v.rowItems[j - 1]] <= v.x[k]);
        assert.equal(v.at(v.x[k] + v.w[k] / 2, r), k);
        assert.equal(v.find(v.idx[k], r), k);
      }
    }
  }
}

test("flat layout draws what the recursive layout drew, at every zoom (sorted children)", () => {
  for (const seed of [1, 2, 3]) check(randomTree(rng(seed), true), 1000, 0.4, 400);
});

test("flat layout with unsorted children (a thin child does not end its siblings)", () => {
  for (const seed of [4, 5]) check(randomTree(rng(seed), false), 1000, 0.4, 400);
});

test("flat layout with tail blocks for thin children (what the graph draws)", () => {
  for (const seed of [7, 8, 9]) check(randomTree(rng(seed), true), 1000, 1, 400, 0.4);
  check(randomTree(rng(10), false), 1000, 1, 400, 0.4);
  check(randomTree(rng(11), true), 300, 3, 4, 0.4);
});

test("flat layout cuts rows more than maxRows below the focus", () => {
  check(randomTree(rng(6), true), 800, 0.4, 3);
});

test("flat layout of a deep chain (runaway recursion) needs no recursion", () => {
  const root = makeNode("all", null);
  let n = root;
  for (let i = 0; i < 100000; i++) {
    const c = makeNode("f (a.py:1)", n);
    n.children.push(c);
    n = c;
  }
  for (let c = n; c; c = c.parent) c.total = 7;
  const flat = new FlatTree(root);
  assert.equal(flat.size, 100001);
  assert.equal(flat.end[0], 100001);
  const v = new Visible();
  v.layout(flat, 50000, 1000, 0.4, 400);
  assert.equal(v.n, 50001 + 399);
  assert.equal(v.nrows, 50400);
});
