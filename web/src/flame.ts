// Icicle graph (root at the top, or at the bottom when inverted) of a
// FrameNode tree on a canvas. Used for CPU samples, memory growth, the
// sandwich view's callers/callees and the differential graph of two runs.
//
// Cost model: a zoom does one layout (one pass over the frames wide enough to
// see, at most every node once) and one paint; hovering repaints only the two
// frames whose outline changes. What browser tests read (the mirrors of what
// is drawn) is written to the DOM after the frame is painted.

import { el, fitCanvas, onWidth, placeTooltip } from "./dom.ts";
import { count, percent, splitFrame } from "./format.ts";
import { followZoom, labelPath, matchedSamples, pathOf, ROOT_NAME, selfByFrame, type FrameNode } from "./tree.ts";

export { buildTree, parseCollapsed, ROOT_NAME, type FrameNode } from "./tree.ts";

const ROW = 20;
const FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const MIN_W = 0.4; // frames thinner than this (CSS px) are not drawn at all
// Browsers refuse very tall canvases; runaway recursion is cut off here (zoom in to see deeper).
const MAX_ROWS = 400;
const SEARCH_FILL = "hsl(280 65% 68%)";
const DIM_FILL = "#e4e6ea";
const ROOT_FILL = "#cfd6de";

export function heatColour(heat: number): string {
  // sqrt so that functions with a few % of self time are already warm.
  const t = Math.sqrt(Math.max(0, Math.min(1, heat)));
  const hue = 46 - 42 * t;
  const light = 82 - 22 * t;
  return `hsl(${hue.toFixed(1)} 88% ${light.toFixed(1)}%)`;
}

export interface TipRow {
  label: string;
  testid: string;
  value: number | string;
  text: string;
}

export interface FlameOptions<N extends FrameNode> {
  /** Prefix of the data-testids: `${id}-graph`, `${id}-tooltip`, `${id}-top-frames`, `${id}-drawn`. */
  id: string;
  label: string;
  /** Root at the bottom, children above (the sandwich's callers). */
  inverted?: boolean;
  /** Fill of a frame; default: heat = the function's self total over the tree. */
  colour?: (n: N) => string;
  /** Tooltip rows; default: Total and Self in samples with their share of `shareOf`. */
  tipRows?: (n: N) => TipRow[];
  /** Denominator of the shares in the default tooltip (default: the root's total). */
  shareOf?: () => number;
  /** Text on the root bar. */
  rootText?: (n: N) => string;
  /** Extra data-* on the mirrored top frames. */
  mirror?: (n: N, d: DOMStringMap) => void;
  onChange?: (focus: N, matched: number | null) => void;
}

interface Rect<N> {
  x: number;
  y: number;
  w: number;
  row: number;
  node: N;
}

export class FlameGraph<N extends FrameNode = FrameNode> {
  readonly element: HTMLElement;
  readonly canvas: HTMLCanvasElement;
  readonly tooltip: HTMLElement;
  private readonly topList: HTMLUListElement;
  private readonly drawnList: HTMLUListElement;
  private root!: N;
  private heat = new Map<string, number>();
  private maxHeat = 1;
  private focus!: N;
  private search = "";
  private hover: Rect<N> | null = null;
  private rects: Rect<N>[] = [];
  private rows: Rect<N>[][] = [];
  private width = 0;
  private dpr = 0;
  private height = 0;
  private ctx: CanvasRenderingContext2D | null = null;
  private mirrorTimer = 0;
  private readonly textW = new Map<string, number>();
  private readonly stopWidth: () => void;
  /** Milliseconds the last layout + paint took (what a zoom costs). */
  lastDrawMs = 0;

  constructor(
    root: N,
    private readonly opt: FlameOptions<N>,
  ) {
    const id = opt.id;
    this.canvas = el("canvas", {
      class: "flame-canvas",
      "data-testid": `${id}-graph`,
      tabindex: 0,
      role: "img",
      "aria-label": `${opt.label}. Arrow keys move between frames, Enter zooms, Escape resets.`,
    });
    this.tooltip = el("div", { class: "tooltip", "data-testid": `${id}-tooltip`, role: "tooltip", hidden: true });
    this.topList = el("ul", { class: "visually-hidden", "data-testid": `${id}-top-frames` });
    this.drawnList = el("ul", { class: "visually-hidden", "data-testid": `${id}-drawn` });
    this.element = el("div", { class: "flame-box" }, this.canvas, this.topList, this.drawnList, this.tooltip);
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => this.setHover(null));
    this.canvas.addEventListener("click", (e) => this.onClick(e));
    this.canvas.addEventListener("keydown", (e) => this.onKey(e));
    this.canvas.addEventListener("focus", () => {
      if (!this.hover) this.setHover(this.rects.find((r) => r.node === this.focus) ?? null, true);
    });
    this.canvas.addEventListener("blur", () => this.setHover(null));
    this.setTree(root);
    this.stopWidth = onWidth(this.element, (w) => this.resize(w));
  }

  /** Replace the tree (a live run grew): keeps the zoom on the same frames and the search. */
  setTree(root: N): void {
    const old = this.focus;
    this.root = root;
    // The default colouring's heat; a view with its own colours does not need it.
    this.heat = this.opt.colour ? new Map() : selfByFrame(root);
    this.maxHeat = Math.max(1, ...this.heat.values());
    this.canvas.dataset.rootTotal = String(root.total);
    this.focus = (old ? followZoom(old, root) : root) as N;
    this.hover = null;
    this.tooltip.hidden = true;
    this.layout();
  }

  get tree(): N {
    return this.root;
  }

  destroy(): void {
    this.stopWidth();
    window.clearTimeout(this.mirrorTimer);
  }

  resize(width: number): void {
    const dpr = window.devicePixelRatio || 1;
    // The first drawing may have been forced already (fitWidth): no second layout for the same size.
    if (width === this.width && dpr === this.dpr) return;
    this.width = width;
    this.dpr = dpr;
    this.layout();
  }

  /**
   * Measure the box and draw now, in this task, instead of at the next
   * resize observation (which waits for the whole page's layout). For the
   * first drawing of a graph just put in the page.
   */
  fitWidth(): void {
    const w = Math.floor(this.element.clientWidth);
    if (w > 0) this.resize(w);
  }

  zoom(node: N): void {
    this.focus = node;
    this.hover = null;
    this.tooltip.hidden = true;
    this.layout();
  }

  reset(): void {
    this.zoom(this.root);
  }

  get zoomed(): boolean {
    return this.focus !== this.root;
  }

  get focused(): N {
    return this.focus;
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
    this.opt.onChange?.(this.focus, this.search ? matchedSamples(this.root, (n) => this.matches(n)) : null);
  }

  /** Where every frame goes: depends only on width and zoom. */
  private layout(): void {
    if (this.width <= 0) return;
    const t0 = performance.now();
    const W = this.width;
    const rects: Rect<N>[] = [];
    const rows: Rect<N>[][] = [];
    const put = (r: Rect<N>) => {
      rects.push(r);
      (rows[r.row] ??= []).push(r);
    };
    pathOf(this.focus).forEach((n, i) => put({ x: 0, y: 0, w: W, row: i, node: n as N }));
    const scale = this.focus.total > 0 ? W / this.focus.total : 0;
    const fd = this.focus.depth;
    // Depth-first, left to right: each row's rects come out sorted by x (hit-testing bisects them).
    const stack: [N, number][] = [[this.focus, 0]];
    while (stack.length) {
      const [n, x] = stack.pop()!;
      let cx = x;
      const kids: [N, number][] = [];
      for (const c of n.children as N[]) {
        const w = c.total * scale;
        if (w >= MIN_W && c.depth - fd < MAX_ROWS) {
          put({ x: cx, y: 0, w, row: c.depth, node: c });
          kids.push([c, cx]);
        }
        cx += w;
      }
      for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]);
    }
    // The pushes above are preorder per parent, not per row: sort each row once.
    for (const r of rows) if (r && r.length > 1) r.sort((a, b) => a.x - b.x);
    const nrows = rows.length || 1;
    for (const r of rects) r.y = (this.opt.inverted ? nrows - 1 - r.row : r.row) * ROW;
    this.rects = rects;
    this.rows = rows;
    this.height = nrows * ROW;
    this.ctx = fitCanvas(this.canvas, W, this.height);
    this.hover = null;
    this.paint();
    this.lastDrawMs = performance.now() - t0;
    this.scheduleMirror();
    this.notify();
  }

  private scheduleMirror(): void {
    window.clearTimeout(this.mirrorTimer);
    this.mirrorTimer = window.setTimeout(() => this.mirror(), 0);
  }

  /** Mirror what is drawn into (visually hidden) lists so browser tests can read it. */
  private mirror(): void {
    const t0 = performance.now();
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
      d.fill = this.fill(r.node);
      this.opt.mirror?.(r.node, d);
      li.textContent = r.node.name;
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
    const d = this.canvas.dataset;
    d.drawMs = this.lastDrawMs.toFixed(2);
    d.mirrorMs = (performance.now() - t0).toFixed(2);
    d.frames = String(this.rects.length);
    d.zoomTotal = String(this.focus.total);
    // Last: tests wait for data-zoom to change, then read the lists.
    d.zoom = this.focus === this.root ? "" : labelPath(this.focus).join(";");
  }

  private fill(n: N): string {
    if (!n.parent) return ROOT_FILL;
    if (this.search) return this.matches(n.name) ? SEARCH_FILL : DIM_FILL;
    if (this.opt.colour) return this.opt.colour(n);
    return heatColour((this.heat.get(n.name) ?? 0) / this.maxHeat);
  }

  private paint(): void {
    const ctx = this.ctx;
    if (!ctx) return;
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    // Frames of one fill (and opacity) in one path: a few dozen fills for
    // thousands of frames, instead of a state change and a fill per frame.
    // Then the labels, all in one colour. paintRect draws the same thing
    // for one frame (hover outlines).
    const groups = new Map<string, Rect<N>[]>();
    for (const r of this.rects) {
      const key = (r.node.depth < this.focus.depth ? "a" : "b") + this.fill(r.node);
      let g = groups.get(key);
      if (!g) groups.set(key, (g = []));
      g.push(r);
    }
    for (const [key, rs] of groups) {
      ctx.globalAlpha = key[0] === "a" ? 0.55 : 1;
      ctx.fillStyle = key.slice(1);
      ctx.beginPath();
      for (const r of rs) ctx.rect(r.x, r.y, Math.max(r.w - (r.w > 3 ? 1 : 0), 0.5), ROW - 1);
      ctx.fill();
    }
    ctx.fillStyle = "#1b1f24";
    for (const r of this.rects) {
      if (r.w <= 20) continue;
      ctx.globalAlpha = r.node.depth < this.focus.depth ? 0.55 : 1;
      ctx.fillText(this.label(ctx, r.node, r.w - 8), r.x + 4, r.y + ROW / 2);
    }
    ctx.globalAlpha = 1;
    if (this.hover) this.paintRect(ctx, this.hover, true);
    ctx.globalAlpha = 1;
  }

  private paintRect(ctx: CanvasRenderingContext2D, r: Rect<N>, outlined: boolean): void {
    const n = r.node;
    ctx.globalAlpha = n.depth < this.focus.depth ? 0.55 : 1;
    // A 1px gap between neighbours keeps narrow frames distinguishable.
    const gap = r.w > 3 ? 1 : 0;
    const w = Math.max(r.w - gap, 0.5);
    ctx.clearRect(r.x, r.y, w, ROW - 1);
    ctx.fillStyle = this.fill(n);
    ctx.fillRect(r.x, r.y, w, ROW - 1);
    if (outlined) {
      ctx.globalAlpha = 1;
      ctx.strokeStyle = "#1b1f24";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(r.x + 0.75, r.y + 0.75, Math.max(w - 1.5, 0.5), ROW - 2.5);
    }
    if (r.w > 20) {
      ctx.fillStyle = "#1b1f24";
      ctx.fillText(this.label(ctx, n, r.w - 8), r.x + 4, r.y + ROW / 2);
    }
    ctx.globalAlpha = 1;
  }

  private measure(ctx: CanvasRenderingContext2D, s: string): number {
    let w = this.textW.get(s);
    if (w === undefined) {
      w = ctx.measureText(s).width;
      if (this.textW.size > 50000) this.textW.clear();
      this.textW.set(s, w);
    }
    return w;
  }

  /** The longest of "fn (file.py:3)", "fn", "f…" that fits. */
  private label(ctx: CanvasRenderingContext2D, n: N, max: number): string {
    if (!n.parent) return this.fit(ctx, this.rootText(n), max);
    const long = shortLabel(n.name);
    if (this.measure(ctx, long) <= max) return long;
    return this.fit(ctx, splitFrame(n.name).fn, max);
  }

  private rootText(n: N): string {
    if (this.opt.rootText) return this.opt.rootText(n);
    if (n.name === ROOT_NAME) return `all (${count(n.total)} samples)`;
    return `${shortLabel(n.name)} · ${count(n.total)} samples`;
  }

  private fit(ctx: CanvasRenderingContext2D, s: string, max: number): string {
    const full = this.measure(ctx, s);
    if (full <= max) return s;
    const ell = this.measure(ctx, "…");
    // Estimate from the average glyph width, then trim until it really fits.
    let n = Math.floor(((max - ell) * s.length) / full);
    while (n > 0 && ctx.measureText(s.slice(0, n)).width + ell > max) n--;
    return n > 0 ? s.slice(0, n) + "…" : "";
  }

  private rectAt(x: number, y: number): Rect<N> | null {
    const nrows = this.rows.length;
    let row = Math.floor(y / ROW);
    if (this.opt.inverted) row = nrows - 1 - row;
    const list = this.rows[row];
    if (!list) return null;
    let lo = 0;
    let hi = list.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = list[mid];
      if (x < r.x) hi = mid - 1;
      else if (x >= r.x + r.w) lo = mid + 1;
      else return r;
    }
    return null;
  }

  private hit(e: MouseEvent): Rect<N> | null {
    const b = this.canvas.getBoundingClientRect();
    return this.rectAt(e.clientX - b.left, e.clientY - b.top);
  }

  private onMove(e: MouseEvent): void {
    const r = this.hit(e);
    this.setHover(r);
    if (r) placeTooltip(this.tooltip, e.clientX, e.clientY);
  }

  /** Outline `r` (repainting only the old and the new frame) and fill the tooltip. */
  private setHover(r: Rect<N> | null, placeAtRect = false): void {
    if (r !== this.hover) {
      const old = this.hover;
      this.hover = r;
      this.canvas.style.cursor = r ? "pointer" : "default";
      const ctx = this.ctx;
      if (ctx) {
        ctx.font = FONT;
        ctx.textBaseline = "middle";
        if (old && this.rects.includes(old)) this.paintRect(ctx, old, false);
        if (r) this.paintRect(ctx, r, true);
      }
      if (r) this.fillTooltip(r.node);
    }
    if (!r) {
      this.tooltip.hidden = true;
      return;
    }
    if (placeAtRect) {
      const b = this.canvas.getBoundingClientRect();
      placeTooltip(this.tooltip, b.left + r.x + Math.min(r.w / 2, 40), b.top + r.y + ROW);
    }
  }

  private fillTooltip(n: N): void {
    const t = this.tooltip;
    t.replaceChildren();
    if (!n.parent && n.name === ROOT_NAME) {
      t.append(el("div", { class: "tip-title" }, this.opt.rootText ? this.opt.rootText(n) : "all samples"));
    } else {
      const f = splitFrame(n.name);
      t.append(el("div", { class: "tip-title" }, f.fn));
      if (f.file) t.append(el("div", { class: "tip-loc" }, `${f.file}:${f.line}`));
    }
    const rows = this.opt.tipRows ? this.opt.tipRows(n) : this.defaultRows(n);
    for (const r of rows) {
      t.append(
        el(
          "div",
          { class: "tip-stat" },
          el("span", { class: "tip-key" }, r.label),
          el("span", { "data-testid": r.testid, "data-value": r.value }, r.text),
        ),
      );
    }
    t.dataset.frame = n.name;
  }

  private defaultRows(n: N): TipRow[] {
    const all = this.opt.shareOf ? this.opt.shareOf() : this.root.total;
    const row = (label: string, testid: string, v: number): TipRow => ({
      label,
      testid,
      value: v,
      text: `${count(v)} samples (${percent(v, all)})`,
    });
    return [row("Total", `${this.opt.id}-tooltip-total`, n.total), row("Self", `${this.opt.id}-tooltip-self`, n.self)];
  }

  private onClick(e: MouseEvent): void {
    // One measurement of the canvas: a zoom changes its height, not its
    // position, and measuring again would force the page's layout right away.
    const b = this.canvas.getBoundingClientRect();
    const x = e.clientX - b.left;
    const y = e.clientY - b.top;
    const r = this.rectAt(x, y);
    if (!r) return;
    this.activate(r.node);
    const again = this.rectAt(x, y);
    this.setHover(again);
    if (again) placeTooltip(this.tooltip, e.clientX, e.clientY);
  }

  /** Click / Enter: the root bar goes back to the whole tree, any other frame zooms. */
  private activate(n: N): void {
    if (!n.parent) this.reset();
    else if (n !== this.focus) this.zoom(n);
  }

  private onKey(e: KeyboardEvent): void {
    const cur = this.hover;
    const k = e.key;
    if (k === "Escape") {
      if (this.zoomed) {
        this.reset();
        this.setHover(this.rects[0] ?? null, true);
        e.preventDefault();
        e.stopPropagation();
      }
      return;
    }
    if (k === "Enter" || k === " ") {
      if (cur) {
        const node = cur.node;
        this.activate(node);
        this.setHover(this.rects.find((r) => r.node === node) ?? null, true);
      }
      e.preventDefault();
      return;
    }
    const down = this.opt.inverted ? "ArrowUp" : "ArrowDown";
    const up = this.opt.inverted ? "ArrowDown" : "ArrowUp";
    if (![down, up, "ArrowLeft", "ArrowRight"].includes(k)) return;
    e.preventDefault();
    if (!cur) {
      this.setHover(this.rects[0] ?? null, true);
      return;
    }
    let next: Rect<N> | undefined;
    if (k === down) {
      const kids = this.rows[cur.row + 1] ?? [];
      next = kids.find((r) => r.node.parent === cur.node);
    } else if (k === up) {
      next = this.rects.find((r) => r.node === cur.node.parent);
    } else {
      const row = this.rows[cur.row] ?? [];
      const i = row.indexOf(cur);
      next = row[k === "ArrowLeft" ? i - 1 : i + 1];
    }
    if (next) this.setHover(next, true);
  }
}

/** "fn (/long/path/mod.py:3)" → "fn (mod.py:3)": the full path is in the tooltip. */
function shortLabel(frame: string): string {
  const f = splitFrame(frame);
  if (!f.file) return f.fn;
  return `${f.fn} (${f.file.slice(f.file.lastIndexOf("/") + 1)}:${f.line})`;
}
