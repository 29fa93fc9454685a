// Call trees: built from the server's /tree JSON or from collapsed stacks, and
// the pure operations the views need (sandwich merge, zoom paths, search).
// No DOM here, so `npm test` can run it under node.

export interface FrameNode {
  /** Frame label, "function (file:line)" as in the collapsed format. */
  name: string;
  total: number;
  self: number;
  depth: number;
  parent: FrameNode | null;
  children: FrameNode[];
}

export const ROOT_NAME = "all";

/** The collapsed format's frame label for a function (same text as the server's). */
export function frameLabel(name: string, file: string, line: number): string {
  const s = file || line ? `${name} (${file}:${line})` : name;
  return s.replace(/[;\n\r]/g, "_");
}

export function makeNode(name: string, parent: FrameNode | null): FrameNode {
  return { name, total: 0, self: 0, depth: parent ? parent.depth + 1 : 0, parent, children: [] };
}

export interface CollapsedLine {
  stack: string[];
  count: number;
}

/**
 * Parse flamegraph.pl collapsed text. The count is after the LAST space,
 * because frames themselves contain spaces ("fn (file:1)").
 */
export function parseCollapsed(text: string): CollapsedLine[] {
  const out: CollapsedLine[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    const sp = line.lastIndexOf(" ");
    if (sp < 0) continue;
    const tail = line.slice(sp + 1);
    if (!/^\d+$/.test(tail)) continue;
    const head = line.slice(0, sp);
    out.push({ stack: head === "" ? [] : head.split(";"), count: Number(tail) });
  }
  return out;
}

/**
 * A child lookup that stays cheap for both narrow and very wide nodes: most
 * nodes have a handful of children, so those are scanned, and only wide ones
 * get an index (a Map per node costs seconds on trees with millions of frames).
 */
function childFinder(): (node: FrameNode, frame: string) => FrameNode {
  const index = new Map<FrameNode, Map<string, FrameNode>>();
  return (node, frame) => {
    const kids = node.children;
    if (kids.length <= 8) {
      for (const k of kids) if (k.name === frame) return k;
      const c = makeNode(frame, node);
      kids.push(c);
      return c;
    }
    let m = index.get(node);
    if (!m) index.set(node, (m = new Map(kids.map((k) => [k.name, k]))));
    let c = m.get(frame);
    if (!c) {
      c = makeNode(frame, node);
      m.set(frame, c);
      kids.push(c);
    }
    return c;
  };
}

const byTotal = (a: FrameNode, b: FrameNode) => b.total - a.total || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Sort every node's children biggest first, so the eye finds the hot path on the left. */
export function sortTree(root: FrameNode): FrameNode {
  const todo = [root];
  while (todo.length) {
    const n = todo.pop()!;
    const k = n.children;
    if (k.length > 1) {
      // The server's trees come sorted already: check (one pass) before sorting.
      let sorted = true;
      for (let i = 1; i < k.length && sorted; i++) sorted = byTotal(k[i - 1], k[i]) <= 0;
      if (!sorted) k.sort(byTotal);
    }
    for (const c of k) todo.push(c);
  }
  return root;
}

/** Merge collapsed stacks into a tree. */
export function buildTree(lines: CollapsedLine[]): FrameNode {
  const child = childFinder();
  const root = makeNode(ROOT_NAME, null);
  for (const { stack, count: n } of lines) {
    if (n <= 0) continue;
    root.total += n;
    let node = root;
    for (const frame of stack) {
      node = child(node, frame);
      node.total += n;
    }
    node.self += n;
  }
  return sortTree(root);
}

/** A node of the server's JSON trees (/tree, /growth, /api/diff). */
export interface ApiNode {
  name: string;
  file: string;
  line: number;
  children?: ApiNode[];
  [k: string]: unknown;
}

/**
 * Convert a JSON tree into FrameNodes. `total` and `self` pick the numbers
 * (samples, KiB grown, ...); `extra` copies more fields onto each node.
 * Iterative: recursion in the profiled program makes deep trees.
 */
export function fromApiTree<N extends FrameNode = FrameNode>(
  api: ApiNode,
  total: (a: ApiNode) => number,
  self: (a: ApiNode) => number,
  extra?: (a: ApiNode, n: N) => void,
): N {
  // The same few hundred functions recur in thousands of nodes: one label string each.
  const labels = new Map<string, Map<string, Map<number, string>>>();
  const label = (a: ApiNode): string => {
    let byFile = labels.get(a.name);
    if (!byFile) labels.set(a.name, (byFile = new Map()));
    let byLine = byFile.get(a.file);
    if (!byLine) byFile.set(a.file, (byLine = new Map()));
    let l = byLine.get(a.line);
    if (l === undefined) byLine.set(a.line, (l = frameLabel(a.name, a.file, a.line)));
    return l;
  };
  const mk = (a: ApiNode, parent: N | null): N => {
    const n = makeNode(parent ? label(a) : ROOT_NAME, parent) as N;
    n.total = Number(total(a)) || 0;
    n.self = Number(self(a)) || 0;
    if (extra) extra(a, n);
    return n;
  };
  const root = mk(api, null);
  // Two parallel stacks rather than a [api, node] pair per node (less garbage).
  const todoA: ApiNode[] = [api];
  const todoN: N[] = [root];
  while (todoA.length) {
    const a = todoA.pop()!;
    const n = todoN.pop()!;
    const kids = a.children;
    if (!kids) continue;
    for (let i = 0; i < kids.length; i++) {
      const c = kids[i];
      const k = mk(c, n);
      n.children.push(k);
      todoA.push(c);
      todoN.push(k);
    }
  }
  return sortTree(root) as N;
}

/** Self per distinct frame label over the whole tree: the "heat" of a function. */
export function selfByFrame(root: FrameNode): Map<string, number> {
  const m = new Map<string, number>();
  const todo = [root];
  while (todo.length) {
    const n = todo.pop()!;
    if (n.parent && n.self > 0) m.set(n.name, (m.get(n.name) ?? 0) + n.self);
    for (const c of n.children) todo.push(c);
  }
  return m;
}

/** The outermost nodes matching `pred` (a match nested in a match is skipped: recursion counts once). */
export function outermost(root: FrameNode, pred: (name: string) => boolean): FrameNode[] {
  const out: FrameNode[] = [];
  const todo = [...root.children];
  while (todo.length) {
    const n = todo.pop()!;
    if (pred(n.name)) out.push(n);
    else for (const c of n.children) todo.push(c);
  }
  return out;
}

/** Samples in which some frame matches `pred`, counting nested matches (recursion) once. */
export function matchedSamples(root: FrameNode, pred: (name: string) => boolean): number {
  return outermost(root, pred).reduce((s, n) => s + n.total, 0);
}

export function pathOf(n: FrameNode): FrameNode[] {
  const p: FrameNode[] = [];
  for (let c: FrameNode | null = n; c; c = c.parent) p.push(c);
  return p.reverse();
}

/** Labels from below the root down to `n`: what identifies a zoom across refreshes. */
export function labelPath(n: FrameNode): string[] {
  return pathOf(n)
    .slice(1)
    .map((x) => x.name);
}

/** Follow `labels` down from `root` as far as they exist; the deepest node reached. */
export function followPath(root: FrameNode, labels: string[]): FrameNode {
  let n = root;
  for (const l of labels) {
    const c = n.children.find((k) => k.name === l);
    if (!c) break;
    n = c;
  }
  return n;
}

const UNKNOWN = "<unknown 0x";

/**
 * Where a zoom on `old` (a node of the previous tree) is in `root`, the new
 * tree of the same run: followed by label as far as it goes. A live run's
 * frames are "<unknown 0x...>" until vmprof writes the function names at its
 * end; when such a label is gone, the frame is taken to be the one child that
 * is new at that level and at least as big as the old one (the closest such).
 */
export function followZoom(old: FrameNode, root: FrameNode): FrameNode {
  const path = pathOf(old).slice(1);
  let n = root;
  for (const o of path) {
    let c = n.children.find((k) => k.name === o.name);
    if (!c && o.name.startsWith(UNKNOWN) && o.parent) {
      const before = new Set(o.parent.children.map((k) => k.name));
      const fresh = n.children.filter((k) => !before.has(k.name) && k.total >= o.total);
      c = fresh.sort((a, b) => a.total - b.total)[0];
    }
    if (!c) break;
    n = c;
  }
  return n;
}

/** Share of the labels that are still unnamed addresses. */
export function unnamedShare(labels: string[]): number {
  if (!labels.length) return 0;
  return labels.filter((l) => l.startsWith(UNKNOWN)).length / labels.length;
}

export interface Sandwich {
  name: string;
  /** Samples with the function on the stack (recursion counted once). */
  total: number;
  /** Samples with the function as the leaf. */
  self: number;
  /** Inverted tree: the function at the root, its callers as children, their callers below them... */
  callers: FrameNode;
  /** The function at the root, everything it calls below (all its occurrences merged). */
  callees: FrameNode;
}

/**
 * The sandwich view of one function: all occurrences merged. Like speedscope,
 * only outermost occurrences are merged (an occurrence inside another one is
 * already part of the outer one's subtree), so recursion is counted once and
 * the root totals equal the samples that have the function on the stack.
 */
export function sandwich(root: FrameNode, name: string): Sandwich {
  const occ = outermost(root, (n) => n === name);
  const callers = makeNode(name, null);
  const callees = makeNode(name, null);
  const child = childFinder();
  let self = 0;
  const todo = [root];
  while (todo.length) {
    const n = todo.pop()!;
    if (n.name === name && n.parent) self += n.self;
    for (const c of n.children) todo.push(c);
  }
  for (const o of occ) {
    callers.total += o.total;
    // Up the stack, innermost caller first.
    let at = callers;
    for (let p = o.parent; p && p.parent; p = p.parent) {
      at = child(at, p.name);
      at.total += o.total;
    }
    at.self += o.total;
    // Down: merge the occurrence's subtree into the callee tree.
    callees.total += o.total;
    callees.self += o.self;
    const stack: [FrameNode, FrameNode][] = [[o, callees]];
    while (stack.length) {
      const [src, dst] = stack.pop()!;
      for (const c of src.children) {
        const d = child(dst, c.name);
        d.total += c.total;
        d.self += c.self;
        stack.push([c, d]);
      }
    }
  }
  sortTree(callers);
  sortTree(callees);
  return { name, total: callers.total, self, callers, callees };
}

/** Number of nodes below and including `root`. */
export function countNodes(root: FrameNode): number {
  let n = 0;
  const todo = [root];
  while (todo.length) {
    const x = todo.pop()!;
    n++;
    for (const c of x.children) todo.push(c);
  }
  return n;
}
