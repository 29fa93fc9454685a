// CPU view: parses the server's collapsed stacks into a call tree and draws it
// as an icicle graph (root at the top) on a canvas.

import { fitCanvas, placeTooltip } from "./dom.ts";
import { count, percent, splitFrame } from "./format.ts";

export interface CollapsedLine {
  stack: string[];
  count: number;
}

export interface FrameNode {
  name: string;
  total: number;
  self: number;
  depth: number;
  parent: FrameNode | null;
  children: FrameNode[];
}

export const ROOT_NAME = "all";

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

/** Merge stacks into a tree; children sorted biggest first so the eye finds the hot path on the left. */
export function buildTree(lines: CollapsedLine[]): FrameNode {
  const mk = (name: string, parent: FrameNode | null, depth: number): FrameNode => ({
    name,
    total: 0,
    self: 0,
    depth,
    parent,
    children: [],
  });
  // Most nodes have a handful of children: scan those, and only index the
  // wide ones (a per-node Map costs seconds on profiles with millions of frames).
  const index = new Map<FrameNode, Map<string, FrameNode>>();
  const child = (node: FrameNode, frame: string): FrameNode => {
    const kids = node.children;
    let c: FrameNode | undefined;
    if (kids.length <= 8) {
      for (const k of kids) if (k.name === frame) return k;
    } else {
      let m = index.get(node);
      if (!m) index.set(node, (m = new Map(kids.map((k) => [k.name, k]))));
      c = m.get(frame);
      if (c) return c;
      c = mk(frame, node, node.depth + 1);
      m.set(frame, c);
      kids.push(c);
      return c;
    }
    c = mk(frame, node, node.depth + 1);
    kids.push(c);
    return c;
  };
  const root = mk(ROOT_NAME, null, 0);
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
  const order = (a: FrameNode, b: FrameNode) => b.total - a.total || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const todo = [root];
  while (todo.length) {
    const n = todo.pop()!;
    if (n.children.length > 1) n.children.sort(order);
    for (const c of n.children) todo.push(c);
  }
  return root;
}

/** Self samples per distinct frame label over the whole tree: the "heat" of a function. */
export function selfByFrame(root: FrameNode): Map<string, number> {
  const m = new Map<string, number>();
  const walk = (n: FrameNode) => {
    if (n.parent && n.self > 0) m.set(n.name, (m.get(n.name) ?? 0) + n.self);
    n.children.forEach(walk);
  };
  walk(root);
  return m;
}

/** Samples in which some frame matches `pred`, counting nested matches (recursion) once. */
export function matchedSamples(root: FrameNode, pred: (name: string) => boolean): number {
  let sum = 0;
  const walk = (n: FrameNode) => {
    if (n.parent && pred(n.name)) sum += n.total;
    else n.children.forEach(walk);
  };
  walk(root);
  return sum;
}

export function pathOf(n: FrameNode): FrameNode[] {
  const p: FrameNode[] = [];
  for (let c: FrameNode | null = n; c; c = c.parent) p.unshift(c);
  return p;
}

// ---------------------------------------------------------------- drawing

const ROW = 20;
const FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const MIN_W = 0.4; // frames thinner than this (CSS px) are not drawn at all
// Browsers refuse very tall canvases; runaway recursion is cut off here (zoom in to see deeper).
const MAX_ROWS = 400;

interface Rect {
  x: number;
  y: number;
  w: number;
  node: FrameNode;
}

function heatColour(heat: number): string {
  // sqrt so that functions with a few % of self time are already warm.
  const t = Math.sqrt(Math.max(0, Math.min(1, heat)));
  const hue = 46 - 42 * t;
  const light = 82 - 22 * t;
  return `hsl(${hue.toFixed(1)} 88% ${light.toFixed(1)}%)`;
}

export class FlameGraph {
  readonly canvas: HTMLCanvasElement;
  private readonly root: FrameNode;
  private readonly heat: Map<string, number>;
  private readonly maxHeat: number;
  private focus: FrameNode;
  private search = "";
  private hover: FrameNode | null = null;
  private rects: Rect[] = [];
  private width = 0;
  private height = 0;
  private ctx: CanvasRenderingContext2D | null = null;

  constructor(
    root: FrameNode,
    private readonly tooltip: HTMLElement,
    private readonly topList: HTMLUListElement,
    private readonly drawnList: HTMLUListElement,
    private readonly onChange: (focus: FrameNode, matched: number | null) => void,
  ) {
    this.root = root;
    this.focus = root;
    this.heat = selfByFrame(root);
    this.maxHeat = Math.max(1, ...this.heat.values());
    this.canvas = document.createElement("canvas");
    this.canvas.className = "flame-canvas";
    this.canvas.dataset.testid = "flame-graph";
    this.canvas.dataset.rootTotal = String(root.total);
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => this.setHover(null, null));
    this.canvas.addEventListener("click", (e) => this.onClick(e));
  }

  resize(width: number): void {
    this.width = width;
    this.layout();
  }

  zoom(node: FrameNode): void {
    this.focus = node;
    this.setHover(null, null);
    this.layout();
  }

  reset(): void {
    this.zoom(this.root);
  }

  get zoomed(): boolean {
    return this.focus !== this.root;
  }

  setSearch(q: string): void {
    this.search = q.trim().toLowerCase();
    this.paint();
    this.notify();
  }

  private matches(name: string): boolean {
    return this.search !== "" && name.toLowerCase().includes(this.search);
  }

  private notify(): void {
    this.onChange(this.focus, this.search ? matchedSamples(this.root, (n) => this.matches(n)) : null);
  }

  /** Work out where every frame goes: depends only on width and zoom. */
  private layout(): void {
    if (this.width <= 0) return;
    const W = this.width;
    const rects: Rect[] = [];
    const ancestors = pathOf(this.focus);
    ancestors.forEach((n, i) => rects.push({ x: 0, y: i * ROW, w: W, node: n }));
    const scale = this.focus.total > 0 ? W / this.focus.total : 0;
    const place = (n: FrameNode, x: number) => {
      let cx = x;
      for (const c of n.children) {
        const w = c.total * scale;
        if (w >= MIN_W && c.depth - this.focus.depth < MAX_ROWS) {
          rects.push({ x: cx, y: c.depth * ROW, w, node: c });
          place(c, cx);
        }
        cx += w;
      }
    };
    place(this.focus, 0);
    this.rects = rects;
    const rows = rects.reduce((m, r) => Math.max(m, r.y / ROW + 1), 1);
    this.height = rows * ROW;
    this.ctx = fitCanvas(this.canvas, W, this.height);
    this.canvas.dataset.zoom = this.focus === this.root ? "" : pathOf(this.focus).slice(1).map((n) => n.name).join(";");
    this.canvas.dataset.zoomTotal = String(this.focus.total);
    this.exposeDom();
    this.paint();
    this.notify();
  }

  /** Mirror what is drawn into (visually hidden) lists so browser tests can read it. */
  private exposeDom(): void {
    const top = this.rects.filter((r) => r.node.parent === this.focus);
    const topItems = top.map((r) => {
      const li = document.createElement("li");
      const d = li.dataset;
      d.name = r.node.name;
      d.function = splitFrame(r.node.name).fn;
      d.total = String(r.node.total);
      d.self = String(r.node.self);
      d.x = r.x.toFixed(1);
      d.y = String(r.y);
      d.w = r.w.toFixed(1);
      d.h = String(ROW);
      li.textContent = `${r.node.name}: ${r.node.total} samples`;
      return li;
    });
    this.topList.replaceChildren(...topItems);
    const seen = new Set<string>();
    const drawnItems: HTMLLIElement[] = [];
    for (const r of this.rects) {
      if (!r.node.parent || seen.has(r.node.name)) continue;
      seen.add(r.node.name);
      const li = document.createElement("li");
      li.dataset.name = r.node.name;
      li.dataset.function = splitFrame(r.node.name).fn;
      li.textContent = r.node.name;
      drawnItems.push(li);
    }
    this.drawnList.replaceChildren(...drawnItems);
  }

  private paint(): void {
    const ctx = this.ctx;
    if (!ctx) return;
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    const searching = this.search !== "";
    const ellipsisW = ctx.measureText("…").width;
    for (const r of this.rects) {
      const n = r.node;
      const aboveFocus = n.depth < this.focus.depth;
      let fill: string;
      if (!n.parent) fill = "#cfd6de";
      else if (searching) fill = this.matches(n.name) ? "hsl(280 65% 68%)" : "#e4e6ea";
      else fill = heatColour((this.heat.get(n.name) ?? 0) / this.maxHeat);
      ctx.globalAlpha = aboveFocus ? 0.55 : 1;
      ctx.fillStyle = fill;
      // A 1px gap between neighbours keeps narrow frames distinguishable.
      const gap = r.w > 3 ? 1 : 0;
      ctx.fillRect(r.x, r.y, Math.max(r.w - gap, 0.5), ROW - 1);
      if (n === this.hover) {
        ctx.strokeStyle = "#1b1f24";
        ctx.lineWidth = 1.5;
        ctx.strokeRect(r.x + 0.75, r.y + 0.75, Math.max(r.w - gap - 1.5, 0.5), ROW - 2.5);
      }
      if (r.w > 20) {
        ctx.fillStyle = "#1b1f24";
        ctx.fillText(this.label(ctx, n, r.w - 8, ellipsisW), r.x + 4, r.y + ROW / 2);
      }
    }
    ctx.globalAlpha = 1;
  }

  /** The longest of "fn (file.py:3)", "fn", "f…" that fits. */
  private label(ctx: CanvasRenderingContext2D, n: FrameNode, max: number, ellipsisW: number): string {
    if (!n.parent) return fitText(ctx, `all (${count(n.total)} samples)`, max, ellipsisW);
    const long = shortLabel(n.name);
    if (ctx.measureText(long).width <= max) return long;
    return fitText(ctx, splitFrame(n.name).fn, max, ellipsisW);
  }

  private hit(e: MouseEvent): Rect | null {
    const b = this.canvas.getBoundingClientRect();
    const x = e.clientX - b.left;
    const y = e.clientY - b.top;
    const row = Math.floor(y / ROW);
    for (const r of this.rects) {
      if (r.y === row * ROW && x >= r.x && x < r.x + r.w) return r;
    }
    return null;
  }

  private onMove(e: MouseEvent): void {
    const r = this.hit(e);
    this.setHover(r ? r.node : null, e);
  }

  private setHover(node: FrameNode | null, e: MouseEvent | null): void {
    if (node !== this.hover) {
      this.hover = node;
      this.canvas.style.cursor = node ? "pointer" : "default";
      if (node) this.fillTooltip(node);
      this.paint();
    }
    if (!node || !e) {
      this.tooltip.hidden = true;
      return;
    }
    placeTooltip(this.tooltip, e.clientX, e.clientY);
  }

  private fillTooltip(n: FrameNode): void {
    const all = this.root.total;
    const t = this.tooltip;
    t.replaceChildren();
    const line = (cls: string, ...parts: (string | Node)[]) => {
      const d = document.createElement("div");
      d.className = cls;
      d.append(...parts);
      t.appendChild(d);
      return d;
    };
    if (!n.parent) {
      line("tip-title", "all samples");
    } else {
      const f = splitFrame(n.name);
      line("tip-title", f.fn);
      if (f.file) line("tip-loc", `${f.file}:${f.line}`);
    }
    const stat = (label: string, testid: string, v: number) => {
      const s = document.createElement("span");
      s.dataset.testid = testid;
      s.dataset.value = String(v);
      s.textContent = `${count(v)} samples (${percent(v, all)})`;
      const k = document.createElement("span");
      k.className = "tip-key";
      k.textContent = label;
      line("tip-stat", k, s);
    };
    stat("Total", "flame-tooltip-total", n.total);
    stat("Self", "flame-tooltip-self", n.self);
    t.dataset.frame = n.name;
  }

  private onClick(e: MouseEvent): void {
    const r = this.hit(e);
    if (!r) return;
    // Clicking the top bar always goes back to the whole profile.
    if (!r.node.parent) this.reset();
    else if (r.node !== this.focus) this.zoom(r.node);
    const again = this.hit(e);
    if (again) this.setHover(again.node, e);
  }
}

/** "fn (/long/path/mod.py:3)" → "fn (mod.py:3)": the full path is in the tooltip. */
function shortLabel(frame: string): string {
  const f = splitFrame(frame);
  if (!f.file) return f.fn;
  return `${f.fn} (${f.file.slice(f.file.lastIndexOf("/") + 1)}:${f.line})`;
}

function fitText(ctx: CanvasRenderingContext2D, s: string, max: number, ellipsisW: number): string {
  if (ctx.measureText(s).width <= max) return s;
  // Estimate from the average glyph width, then trim until it really fits.
  const avg = ctx.measureText(s).width / s.length;
  let n = Math.floor((max - ellipsisW) / avg);
  while (n > 0 && ctx.measureText(s.slice(0, n)).width + ellipsisW > max) n--;
  return n > 0 ? s.slice(0, n) + "…" : "";
}
