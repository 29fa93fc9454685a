// Icicle graph (root at the top, or at the bottom when inverted) of a
// FrameNode tree on a canvas. Used for CPU samples, memory growth, the
// sandwich view's callers/callees and the differential graph of two runs.
//
// Cost model: setting a tree flattens it once (flame-layout.ts); a zoom is one
// scan over the frames wide enough to see (FlatTree/Visible: typed arrays, no
// allocation per frame) and one paint whose fill colours and label texts are
// cached per node; hovering repaints only the two frames whose outline
// changes. Nothing in a zoom walks the whole tree (the search's matched share
// is kept per search). What browser tests read (the mirrors of what is drawn)
// is written to the DOM after the frame is painted.

import { el, fitCanvas, onWidth, placeTooltip } from "./dom.ts";
import { count, percent, splitFrame } from "./format.ts";
import { FlatTree, Visible } from "./flame-layout.ts";
import { followZoom, labelPath, matchedSamples, ROOT_NAME, selfByFrame, type FrameNode } from "./tree.ts";

export { buildTree, parseCollapsed, ROOT_NAME, type FrameNode } from "./tree.ts";

const ROW = 20;
const FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
// Frames thinner than MIN_W (CSS px) are not drawn one by one: a parent's
// thin children make one grey block (if at least MIN_TAIL wide). Half the
// frames of a 20,000-node tree's root view are under 1 px (thin, antialiased
// slivers nobody can point at); drawing them one by one doubled a zoom's
// layout and paint.
const MIN_W = 1;
const MIN_TAIL = 0.4;
const TAIL_FILL = "#c9ced6";
// Browsers refuse very tall canvases; runaway recursion is cut off here (zoom in to see deeper).
const MAX_ROWS = 400;
const SEARCH_FILL = "hsl(280 65% 68%)";
const DIM_FILL = "#e4e6ea";
const ROOT_FILL = "#cfd6de";

/** The legend under a flame graph: what its colour (swatch) and width say,
 * then the grey blocks every flame graph draws, then any extra items. */
export function flameLegend(swatch: string, meaning: string, ...extra: Node[]): HTMLElement {
  return el(
    "div",
    { class: "legend" },
    el("span", { class: `swatch ${swatch}` }),
    meaning,
    el("span", { class: "swatch swatch-thin" }),
    "calls under 1 px wide, together",
    ...extra,
  );
}

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

/** A frame's label texts and their widths, per distinct frame name (names recur in thousands of nodes). */
interface Label {
  long: string;
  longW: number;
  fn: string;
  fnW: number;
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
  private flat!: FlatTree<N>;
  private focus!: N;
  private focusIdx = 0;
  private search = "";
  /** Samples matching the search over the whole tree: depends on the search and the tree, not the zoom. */
  private matched: number | null = null;
  /** Index into `vis` of the outlined frame, -1 for none. */
  private hover = -1;
  private readonly vis = new Visible();
  /** Per node (flat index): index into `palette` of its fill, -1 until first painted. */
  private fillOf = new Int32Array(0);
  private palette: string[] = [];
  private paletteIdx = new Map<string, number>();
  /** Scratch for grouping the frames of a paint by fill (counting sort), reused. */
  private groupStart = new Int32Array(0);
  private groupItems = new Int32Array(0);
  private readonly labels = new Map<string, Label>();
  private width = 0;
  private dpr = 0;
  private height = 0;
  private ctx: CanvasRenderingContext2D | null = null;
  private mirrorTimer = 0;
  private warmJob = 0;
  private warmFrom = 0;
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
    this.canvas.addEventListener("mouseleave", () => this.setHover(-1));
    this.canvas.addEventListener("click", (e) => this.onClick(e));
    this.canvas.addEventListener("keydown", (e) => this.onKey(e));
    this.canvas.addEventListener("focus", () => {
      if (this.hover < 0) this.setHover(this.frameOf(this.focus), true);
    });
    this.canvas.addEventListener("blur", () => this.setHover(-1));
    this.setTree(root);
    this.stopWidth = onWidth(this.element, (w) => this.resize(w));
  }

  /** Replace the tree (a live run grew): keeps the zoom on the same frames and the search. */
  setTree(root: N): void {
    const old = this.focus;
    this.root = root;
    this.flat = new FlatTree(root);
    // The default colouring's heat; a view with its own colours does not need it.
    this.heat = this.opt.colour ? new Map() : selfByFrame(root);
    this.maxHeat = Math.max(1, ...this.heat.values());
    this.forgetFills();
    this.matched = this.countMatched();
    this.canvas.dataset.rootTotal = String(root.total);
    this.focus = (old ? followZoom(old, root) : root) as N;
    this.focusIdx = Math.max(0, this.flat.indexOf(this.focus));
    this.hover = -1;
    this.tooltip.hidden = true;
    this.layout();
  }

  get tree(): N {
    return this.root;
  }

  destroy(): void {
    this.stopWidth();
    window.clearTimeout(this.mirrorTimer);
    this.stopWarm();
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
    const i = this.flat.indexOf(node);
    if (i < 0) return;
    this.focus = node;
    this.focusIdx = i;
    this.hover = -1;
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

  /** Also what a view calls after its colours changed: every fill is looked up again. */
  setSearch(q: string): void {
    this.search = q.trim().toLowerCase();
    this.forgetFills();
    this.matched = this.countMatched();
    this.paint();
    this.notify();
  }

  private matches(name: string): boolean {
    return this.search !== "" && name.toLowerCase().includes(this.search);
  }

  private countMatched(): number | null {
    return this.search ? matchedSamples(this.root, (n) => this.matches(n)) : null;
  }

  private notify(): void {
    this.opt.onChange?.(this.focus, this.matched);
  }

  private forgetFills(): void {
    if (this.fillOf.length !== this.flat.size) this.fillOf = new Int32Array(this.flat.size);
    this.fillOf.fill(-1);
    this.palette = [];
    this.paletteIdx.clear();
    this.startWarm();
  }

  /**
   * Fill the per-node caches (fill colour, label texts and widths) for the
   * whole tree in idle slices after the drawing, so that a zoom finds them
   * ready: computed during a zoom, they made the first zooms into each part
   * of a big tree the slowest redraws (a colour string and a map lookup or a
   * measureText per newly shown frame, in code the JIT has not warmed up yet).
   */
  private startWarm(): void {
    this.stopWarm();
    this.warmFrom = 0;
    this.warmJob = idle(() => this.warm());
  }

  private stopWarm(): void {
    if (this.warmJob) cancelIdle(this.warmJob);
    this.warmJob = 0;
  }

  private warm(): void {
    this.warmJob = 0;
    const t0 = performance.now();
    const nodes = this.flat.nodes;
    const fillOf = this.fillOf;
    const ctx = this.ctx;
    if (ctx) ctx.font = FONT;
    let i = this.warmFrom;
    // Slices of a few ms: a click waiting behind one is not delayed by more.
    while (i < nodes.length && performance.now() - t0 < 4) {
      const stop = Math.min(nodes.length, i + 256);
      for (; i < stop; i++) {
        if (fillOf[i] < 0) this.fillIndex(i);
        if (ctx && i > 0 && !this.labels.has(nodes[i].name)) this.labelOf(ctx, nodes[i].name);
      }
    }
    this.warmFrom = i;
    if (i < nodes.length) this.warmJob = idle(() => this.warm());
  }

  /** The frame drawn for `n`, -1 if it is not drawn. */
  private frameOf(n: FrameNode | null): number {
    if (!n) return -1;
    const i = this.flat.indexOf(n);
    return i < 0 ? -1 : this.vis.find(i, this.flat.depth[i]);
  }

  private y(k: number): number {
    const v = this.vis;
    return (this.opt.inverted ? v.nrows - 1 - v.row[k] : v.row[k]) * ROW;
  }

  private node(k: number): N {
    return this.flat.nodes[this.vis.idx[k]];
  }

  /** Where every frame goes: depends only on width and zoom. */
  private layout(): void {
    if (this.width <= 0) return;
    const t0 = performance.now();
    const v = this.vis;
    v.layout(this.flat, this.focusIdx, this.width, MIN_W, MAX_ROWS, MIN_TAIL);
    this.height = (v.nrows || 1) * ROW;
    this.ctx = fitCanvas(this.canvas, this.width, this.height);
    this.hover = -1;
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
    const v = this.vis;
    const topItems: HTMLLIElement[] = [];
    const drawnItems: HTMLLIElement[] = [];
    const seen = new Set<string>();
    for (let k = 0; k < v.n; k++) {
      const n = this.node(k);
      if (n.parent === this.focus) {
        const li = document.createElement("li");
        const d = li.dataset;
        d.name = n.name;
        d.function = splitFrame(n.name).fn;
        d.total = String(n.total);
        d.self = String(n.self);
        d.x = v.x[k].toFixed(1);
        d.y = String(this.y(k));
        d.w = v.w[k].toFixed(1);
        d.h = String(ROW);
        d.fill = this.palette[this.fillIndex(v.idx[k])];
        this.opt.mirror?.(n, d);
        li.textContent = n.name;
        topItems.push(li);
      }
      if (!n.parent || seen.has(n.name)) continue;
      seen.add(n.name);
      const li = document.createElement("li");
      li.dataset.name = n.name;
      li.dataset.function = splitFrame(n.name).fn;
      li.textContent = n.name;
      drawnItems.push(li);
    }
    this.topList.replaceChildren(...topItems);
    this.drawnList.replaceChildren(...drawnItems);
    const d = this.canvas.dataset;
    d.drawMs = this.lastDrawMs.toFixed(2);
    d.mirrorMs = (performance.now() - t0).toFixed(2);
    d.frames = String(v.n);
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

  /** The palette index of node `i`'s fill: computed once per node until the colours or the search change. */
  private fillIndex(i: number): number {
    let f = this.fillOf[i];
    if (f < 0) {
      const s = this.fill(this.flat.nodes[i]);
      const known = this.paletteIdx.get(s);
      if (known === undefined) {
        f = this.palette.length;
        this.palette.push(s);
        this.paletteIdx.set(s, f);
      } else f = known;
      this.fillOf[i] = f;
    }
    return f;
  }

  private paint(): void {
    const ctx = this.ctx;
    if (!ctx) return;
    const v = this.vis;
    const n = v.n;
    const fd = this.flat.depth[this.focusIdx];
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    // The focus's ancestors (the first fd frames, translucent) one by one;
    // below them the frames of one fill in one path: a few dozen fills for
    // thousands of frames instead of a state change and a fill per frame.
    // Grouped by a counting sort over palette indices into reused arrays.
    for (let k = 0; k < fd && k < n; k++) this.paintRect(ctx, k, false);
    if (this.groupItems.length < n) this.groupItems = new Int32Array(this.flat.size);
    const fillOf = this.fillOf;
    const idx = v.idx;
    for (let k = fd; k < n; k++) if (fillOf[idx[k]] < 0) this.fillIndex(idx[k]);
    const np = this.palette.length;
    if (this.groupStart.length < np + 1) this.groupStart = new Int32Array(Math.max(np + 1, 2 * this.groupStart.length));
    const gs = this.groupStart;
    const items = this.groupItems;
    gs.fill(0, 0, np + 1);
    for (let k = fd; k < n; k++) gs[fillOf[idx[k]] + 1]++;
    for (let p = 0; p < np; p++) gs[p + 1] += gs[p];
    for (let k = fd; k < n; k++) items[gs[fillOf[idx[k]]]++] = k;
    // gs[p] is now the end of group p; its start is gs[p - 1] (0 for p = 0).
    const xs = v.x;
    const ws = v.w;
    const rows = v.row;
    // y inline (this.y(k) per frame costs a call per frame until the JIT has warmed up: the first zooms).
    const flip = this.opt.inverted ? v.nrows - 1 : -1;
    ctx.globalAlpha = 1;
    for (let p = 0, from = 0; p < np; from = gs[p], p++) {
      if (gs[p] === from) continue;
      ctx.fillStyle = this.palette[p];
      ctx.beginPath();
      for (let j = from; j < gs[p]; j++) {
        const k = items[j];
        const w = ws[k];
        ctx.rect(xs[k], (flip >= 0 ? flip - rows[k] : rows[k]) * ROW, w > 3 ? w - 1 : w > 0.5 ? w : 0.5, ROW - 1);
      }
      ctx.fill();
    }
    if (v.tails) {
      ctx.fillStyle = TAIL_FILL;
      ctx.beginPath();
      for (let t = 0; t < v.tails; t++) {
        const w = v.tailW[t];
        ctx.rect(v.tailX[t], (flip >= 0 ? flip - v.tailRow[t] : v.tailRow[t]) * ROW, w > 3 ? w - 1 : w > 0.5 ? w : 0.5, ROW - 1);
      }
      ctx.fill();
    }
    ctx.fillStyle = "#1b1f24";
    for (let k = fd; k < n; k++) {
      const w = ws[k];
      if (w <= 20) continue;
      ctx.fillText(this.label(ctx, this.node(k), w - 8), xs[k] + 4, (flip >= 0 ? flip - rows[k] : rows[k]) * ROW + ROW / 2);
    }
    ctx.globalAlpha = 1;
    if (this.hover >= 0) this.paintRect(ctx, this.hover, true);
  }

  private paintRect(ctx: CanvasRenderingContext2D, k: number, outlined: boolean): void {
    const v = this.vis;
    const i = v.idx[k];
    const x = v.x[k];
    const y = this.y(k);
    ctx.globalAlpha = this.flat.depth[i] < this.flat.depth[this.focusIdx] ? 0.55 : 1;
    // A 1px gap between neighbours keeps narrow frames distinguishable.
    const gap = v.w[k] > 3 ? 1 : 0;
    const w = Math.max(v.w[k] - gap, 0.5);
    ctx.clearRect(x, y, w, ROW - 1);
    ctx.fillStyle = this.palette[this.fillIndex(i)];
    ctx.fillRect(x, y, w, ROW - 1);
    if (outlined) {
      ctx.globalAlpha = 1;
      ctx.strokeStyle = "#1b1f24";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(x + 0.75, y + 0.75, Math.max(w - 1.5, 0.5), ROW - 2.5);
    }
    if (v.w[k] > 20) {
      ctx.fillStyle = "#1b1f24";
      ctx.fillText(this.label(ctx, this.flat.nodes[i], v.w[k] - 8), x + 4, y + ROW / 2);
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
    const l = this.labels.get(n.name) ?? this.labelOf(ctx, n.name);
    if (l.longW <= max) return l.long;
    if (l.fnW <= max) return l.fn;
    return this.fit(ctx, l.fn, max);
  }

  private labelOf(ctx: CanvasRenderingContext2D, name: string): Label {
    const long = shortLabel(name);
    const fn = splitFrame(name).fn;
    const l = { long, longW: this.measure(ctx, long), fn, fnW: this.measure(ctx, fn) };
    this.labels.set(name, l);
    return l;
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
    // Cached: the same frames come back at the same widths when zooming in and out again.
    while (n > 0 && this.measure(ctx, s.slice(0, n)) + ell > max) n--;
    return n > 0 ? s.slice(0, n) + "…" : "";
  }

  private rectAt(x: number, y: number): number {
    const v = this.vis;
    let row = Math.floor(y / ROW);
    if (this.opt.inverted) row = v.nrows - 1 - row;
    return v.at(x, row);
  }

  private hit(e: MouseEvent): number {
    const b = this.canvas.getBoundingClientRect();
    return this.rectAt(e.clientX - b.left, e.clientY - b.top);
  }

  private onMove(e: MouseEvent): void {
    const k = this.hit(e);
    this.setHover(k);
    if (k >= 0) placeTooltip(this.tooltip, e.clientX, e.clientY);
  }

  /** Outline frame `k` (repainting only the old and the new frame) and fill the tooltip. */
  private setHover(k: number, placeAtRect = false): void {
    if (k !== this.hover) {
      const old = this.hover;
      this.hover = k;
      this.canvas.style.cursor = k >= 0 ? "pointer" : "default";
      const ctx = this.ctx;
      if (ctx) {
        ctx.font = FONT;
        ctx.textBaseline = "middle";
        if (old >= 0 && old < this.vis.n) this.paintRect(ctx, old, false);
        if (k >= 0) this.paintRect(ctx, k, true);
      }
      if (k >= 0) this.fillTooltip(this.node(k));
    }
    if (k < 0) {
      this.tooltip.hidden = true;
      return;
    }
    if (placeAtRect) {
      const b = this.canvas.getBoundingClientRect();
      placeTooltip(this.tooltip, b.left + this.vis.x[k] + Math.min(this.vis.w[k] / 2, 40), b.top + this.y(k) + ROW);
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
    const k = this.rectAt(x, y);
    if (k < 0) return;
    this.activate(this.node(k));
    const again = this.rectAt(x, y);
    this.setHover(again);
    if (again >= 0) placeTooltip(this.tooltip, e.clientX, e.clientY);
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
        this.setHover(this.vis.n ? 0 : -1, true);
        e.preventDefault();
        e.stopPropagation();
      }
      return;
    }
    if (k === "Enter" || k === " ") {
      if (cur >= 0) {
        const node = this.node(cur);
        this.activate(node);
        this.setHover(this.frameOf(node), true);
      }
      e.preventDefault();
      return;
    }
    const down = this.opt.inverted ? "ArrowUp" : "ArrowDown";
    const up = this.opt.inverted ? "ArrowDown" : "ArrowUp";
    if (![down, up, "ArrowLeft", "ArrowRight"].includes(k)) return;
    e.preventDefault();
    if (cur < 0) {
      this.setHover(this.vis.n ? 0 : -1, true);
      return;
    }
    const v = this.vis;
    const row = v.row[cur];
    let next = -1;
    if (k === down) {
      // The first drawn child: the leftmost frame of the next row whose parent is this one.
      const i = v.idx[cur];
      for (let j = row + 1 < v.nrows ? v.rowStart[row + 1] : 0, e2 = row + 1 < v.nrows ? v.rowStart[row + 2] : 0; j < e2; j++) {
        if (this.flat.parent[v.idx[v.rowItems[j]]] === i) {
          next = v.rowItems[j];
          break;
        }
      }
    } else if (k === up) {
      next = this.frameOf(this.node(cur).parent);
    } else {
      let j = v.rowStart[row];
      while (v.rowItems[j] !== cur) j++;
      j += k === "ArrowLeft" ? -1 : 1;
      if (j >= v.rowStart[row] && j < v.rowStart[row + 1]) next = v.rowItems[j];
    }
    if (next >= 0) this.setHover(next, true);
  }
}

// Idle callbacks where the browser has them (not Safari), else a timer.
const idle = (f: () => void): number =>
  typeof window.requestIdleCallback === "function" ? window.requestIdleCallback(f, { timeout: 100 }) : window.setTimeout(f, 1);
const cancelIdle = (id: number): void =>
  typeof window.cancelIdleCallback === "function" ? window.cancelIdleCallback(id) : window.clearTimeout(id);

/** "fn (/long/path/mod.py:3)" → "fn (mod.py:3)": the full path is in the tooltip. */
function shortLabel(frame: string): string {
  const f = splitFrame(frame);
  if (!f.file) return f.fn;
  return `${f.fn} (${f.file.slice(f.file.lastIndexOf("/") + 1)}:${f.line})`;
}
