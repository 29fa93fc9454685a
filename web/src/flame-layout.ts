// The flame graph's geometry, kept apart from the canvas so that `npm test`
// can check it under node.
//
// A tree is flattened once (when it is set), in depth-first order, into typed
// arrays: every subtree is then one contiguous index range, and a frame's left
// edge in samples is fixed, whatever the zoom. A zoom is one scan of the
// focused subtree's range that jumps over everything too thin to draw, so its
// cost follows what is drawn (a few thousand frames at most on a 1,400 px
// canvas), not the size of the profile, and it allocates nothing.

import type { FrameNode } from "./tree.ts";

export class FlatTree<N extends FrameNode = FrameNode> {
  /** Depth-first, children in their order: a subtree is [i, end[i]). */
  readonly nodes: N[];
  /** Left edge in the root's units (samples): the sum of the totals of the earlier siblings of it and of its ancestors. */
  readonly start: Float64Array;
  readonly total: Float64Array;
  readonly depth: Int32Array;
  readonly end: Int32Array;
  readonly parent: Int32Array;
  /** Right edge of the node's last child in the root's units (start + the children's totals). */
  readonly kidsEnd: Float64Array;
  /**
   * 1 when the node's children come biggest first (as sortTree leaves them):
   * then the first child too thin to draw ends the scan of its siblings.
   */
  readonly sortedKids: Uint8Array;

  constructor(root: N) {
    const nodes: N[] = [];
    const parents: number[] = [];
    // Preorder with explicit stacks (recursion in profiled programs makes deep trees).
    const todo: N[] = [root];
    const todoParent: number[] = [-1];
    while (todo.length) {
      const n = todo.pop()!;
      const i = nodes.length;
      nodes.push(n);
      parents.push(todoParent.pop()!);
      const k = n.children as N[];
      for (let j = k.length - 1; j >= 0; j--) {
        todo.push(k[j]);
        todoParent.push(i);
      }
    }
    const len = nodes.length;
    this.nodes = nodes;
    const start = (this.start = new Float64Array(len));
    const total = (this.total = new Float64Array(len));
    const depth = (this.depth = new Int32Array(len));
    const end = (this.end = new Int32Array(len));
    const parent = (this.parent = Int32Array.from(parents));
    const sortedKids = (this.sortedKids = new Uint8Array(len));
    // Where the next child of each node starts: children come in order, after their parent.
    const next = (this.kidsEnd = new Float64Array(len));
    for (let i = 0; i < len; i++) {
      const n = nodes[i];
      total[i] = n.total;
      const p = parent[i];
      if (p >= 0) {
        depth[i] = depth[p] + 1;
        start[i] = next[p];
        next[p] += n.total;
      }
      next[i] = start[i];
      end[i] = i + 1;
      let sorted = 1;
      const kids = n.children;
      for (let j = 1; j < kids.length && sorted; j++) if (kids[j].total > kids[j - 1].total) sorted = 0;
      sortedKids[i] = sorted;
    }
    // Descendants have higher indices: one backward pass carries each subtree's end up.
    for (let i = len - 1; i > 0; i--) if (end[i] > end[parent[i]]) end[parent[i]] = end[i];
  }

  get size(): number {
    return this.nodes.length;
  }

  /**
   * The node's index, -1 if it is not in this tree. Found down its path from
   * the root, stepping over earlier siblings' subtrees (a node-to-index map
   * cost more to build with every new tree than all the zooms' look-ups).
   */
  indexOf(n: FrameNode): number {
    const path: FrameNode[] = [];
    for (let c: FrameNode | null = n; c; c = c.parent) path.push(c);
    if (path[path.length - 1] !== this.nodes[0]) return -1;
    let i = 0;
    for (let d = path.length - 2; d >= 0; d--) {
      const want = path[d];
      const kids = path[d + 1].children;
      let c = i + 1;
      let j = 0;
      while (j < kids.length && kids[j] !== want) {
        c = this.end[c];
        j++;
      }
      if (j === kids.length) return -1;
      i = c;
    }
    return i;
  }
}

/**
 * What one zoom draws: frame k is node idx[k] at x[k], w[k] (CSS px) in
 * row[k] (its depth). Tail t is the children of one parent too thin to draw
 * one by one, drawn as one block at tailX[t], tailW[t] in tailRow[t].
 */
export class Visible {
  n = 0;
  idx = new Int32Array(0);
  x = new Float64Array(0);
  w = new Float64Array(0);
  row = new Int32Array(0);
  tails = 0;
  tailX = new Float64Array(0);
  tailW = new Float64Array(0);
  tailRow = new Int32Array(0);
  nrows = 0;
  /** The frames of row r are rowItems[rowStart[r] .. rowStart[r + 1]), left to right. */
  rowStart = new Int32Array(0);
  rowItems = new Int32Array(0);

  private reserve(frames: number, rows: number): void {
    if (this.idx.length < frames) {
      this.idx = new Int32Array(frames);
      this.x = new Float64Array(frames);
      this.w = new Float64Array(frames);
      this.row = new Int32Array(frames);
      this.rowItems = new Int32Array(frames);
      // At most one tail per parent drawn.
      this.tailX = new Float64Array(frames);
      this.tailW = new Float64Array(frames);
      this.tailRow = new Int32Array(frames);
    }
    if (this.rowStart.length < rows + 1) this.rowStart = new Int32Array(rows + 1);
  }

  /**
   * Lay out the subtree of `focus` across `width` px: its ancestors (and it)
   * full width in the rows above, then every descendant at least `minW` px
   * wide and less than `maxRows` rows below the focus. Where a parent's
   * children come biggest first, those thinner than `minW` make one tail
   * block (when it is `minTail` px or wider); else they are left out.
   */
  layout(t: FlatTree, focus: number, width: number, minW: number, maxRows: number, minTail = Infinity): void {
    // Ancestors + a subtree never hold more nodes than the tree; sized once per tree.
    this.reserve(t.size, t.depth[focus] + maxRows + 1);
    const { start, total, depth, end, parent, sortedKids, kidsEnd } = t;
    const tailX = this.tailX;
    const tailW = this.tailW;
    const tailRow = this.tailRow;
    let tails = 0;
    const idx = this.idx;
    const xs = this.x;
    const ws = this.w;
    const rows = this.row;
    const fd = depth[focus];
    let n = 0;
    for (let a = focus, r = fd; a >= 0; a = parent[a], r--) {
      idx[r] = a;
      xs[r] = 0;
      ws[r] = width;
      rows[r] = r;
    }
    n = fd + 1;
    let maxRow = fd;
    const scale = total[focus] > 0 ? width / total[focus] : 0;
    const x0 = start[focus];
    const lastRow = fd + maxRows; // rows at or below this are cut (runaway recursion)
    const stop = end[focus];
    let i = focus + 1;
    while (i < stop) {
      const d = depth[i];
      if (d >= lastRow) {
        i = end[i];
        continue;
      }
      const w = total[i] * scale;
      if (!(w >= minW)) {
        const p = parent[i];
        if (!sortedKids[p]) {
          i = end[i];
          continue;
        }
        // This child and all its later siblings: one block.
        const tw = (kidsEnd[p] - start[i]) * scale;
        if (tw >= minTail) {
          tailX[tails] = (start[i] - x0) * scale;
          tailW[tails] = tw;
          tailRow[tails] = d;
          tails++;
          if (d > maxRow) maxRow = d;
        }
        i = end[p];
        continue;
      }
      idx[n] = i;
      xs[n] = (start[i] - x0) * scale;
      ws[n] = w;
      rows[n] = d;
      n++;
      if (d > maxRow) maxRow = d;
      i++;
    }
    this.n = n;
    this.tails = tails;
    this.nrows = maxRow + 1;
    // Rows by counting: depth-first order is left-to-right order within a row.
    const rs = this.rowStart;
    rs.fill(0, 0, this.nrows + 1);
    for (let k = 0; k < n; k++) rs[rows[k] + 1]++;
    for (let r = 0; r < this.nrows; r++) rs[r + 1] += rs[r];
    const items = this.rowItems;
    // Fill each row from its start; rowStart is restored afterwards by walking back.
    for (let k = 0; k < n; k++) items[rs[rows[k]]++] = k;
    for (let r = this.nrows; r > 0; r--) rs[r] = rs[r - 1];
    rs[0] = 0;
  }

  /** The frame under (x, row), -1 if none. */
  at(x: number, row: number): number {
    if (row < 0 || row >= this.nrows) return -1;
    const items = this.rowItems;
    let lo = this.rowStart[row];
    let hi = this.rowStart[row + 1] - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const k = items[mid];
      if (x < this.x[k]) hi = mid - 1;
      else if (x >= this.x[k] + this.w[k]) lo = mid + 1;
      else return k;
    }
    return -1;
  }

  /** The frame of node index `i`, -1 if it is not drawn. */
  find(i: number, row: number): number {
    if (row < 0 || row >= this.nrows) return -1;
    for (let j = this.rowStart[row]; j < this.rowStart[row + 1]; j++) if (this.idx[this.rowItems[j]] === i) return this.rowItems[j];
    return -1;
  }
}
