// Memory view: RSS over time on a canvas. Each point carries the Python stack
// of its highest-RSS sample, shown on hover. Drag to zoom into a time range.

import { getMemory, type Memory, type MemoryPoint } from "./api.ts";
import { el, fitCanvas, onWidth, placeTooltip } from "./dom.ts";
import { mib, seconds, splitFrame, ticks } from "./format.ts";

const HEIGHT = 320;
const M = { left: 70, right: 18, top: 16, bottom: 40 };
const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const MAX_STACK_LINES = 16;

export interface MemoryView {
  element: HTMLElement;
  destroy(): void;
}

export function memoryView(runId: string): MemoryView {
  const peak = el("span", { class: "peak", "data-testid": "peak-rss" }, "Peak …");
  const peakAt = el("span", { class: "muted", "data-testid": "peak-time" });
  const range = el("span", { class: "muted", "data-testid": "memory-range" });
  const reset = el("button", { type: "button", class: "btn", "data-testid": "memory-reset", hidden: true }, "Reset zoom");
  const hint = el("span", { class: "hint" }, "Hover for the stack · drag to zoom into a time range");
  const toolbar = el("div", { class: "toolbar" }, peak, peakAt, el("span", { class: "spacer" }), range, reset);
  const canvas = el("canvas", { class: "memory-canvas", "data-testid": "memory-chart" });
  const box = el("div", { class: "chart-box" }, canvas);
  const tooltip = el("div", { class: "tooltip", "data-testid": "memory-tooltip", role: "tooltip", hidden: true });
  const status = el("div", { class: "muted chart-status" });
  const legend = el(
    "div",
    { class: "legend" },
    el("span", { class: "swatch swatch-line" }),
    "max RSS per time bucket",
    el("span", { class: "swatch swatch-band" }),
    "min … max range",
    hint,
  );
  const element = el("section", { class: "panel", "data-testid": "memory-view" }, toolbar, box, legend, status, tooltip);

  let data: Memory | null = null;
  let width = 0;
  let zoom: { from: number; to: number } | null = null;
  let seq = 0;
  let hoverIdx = -1;
  let drag: { x0: number; x1: number } | null = null;
  let refetchTimer = 0;
  let dataBuckets = 1;

  const plotW = () => Math.max(10, width - M.left - M.right);
  const plotH = HEIGHT - M.top - M.bottom;
  const span = () => (data ? Math.max(data.to - data.from, 1e-9) : 1);
  const xOfT = (t: number) => M.left + ((t - data!.from) / span()) * plotW();
  const tOfX = (x: number) => data!.from + ((x - M.left) / plotW()) * span();
  let yMax = 1;
  const yOf = (kib: number) => M.top + plotH - (kib / yMax) * plotH;
  // Points sit at the middle of their bucket so the last one reaches the end.
  const pointT = (p: MemoryPoint) => p.t + span() / dataBuckets / 2;
  const buckets = () => Math.max(1, Math.min(5000, Math.round(plotW())));

  async function load(): Promise<void> {
    const my = ++seq;
    status.textContent = data ? "" : "Loading…";
    try {
      const n = buckets();
      const m = await getMemory(runId, n, zoom?.from, zoom?.to);
      if (my !== seq) return;
      data = m;
      dataBuckets = n;
      if (!zoom) {
        peak.textContent = `Peak ${mib(m.peak_rss_kb)}`;
        peak.dataset.kib = String(m.peak_rss_kb);
        const top = m.points.reduce<MemoryPoint | null>((a, p) => (!a || p.max > a.max ? p : a), null);
        peakAt.textContent = top ? `at ${seconds(top.t)}` : "";
      }
      status.textContent = m.points.length ? "" : "No memory samples in this range.";
      range.textContent = zoom ? `${seconds(m.from)} – ${seconds(m.to)}` : "";
      reset.hidden = !zoom;
      draw();
    } catch (e) {
      if (my === seq) status.textContent = `Could not load memory: ${(e as Error).message}`;
    }
  }

  function draw(): void {
    if (!width) return;
    const ctx = fitCanvas(canvas, width, HEIGHT);
    ctx.clearRect(0, 0, width, HEIGHT);
    ctx.font = FONT;
    const pts = data?.points ?? [];
    const maxKib = pts.reduce((a, p) => Math.max(a, p.max), 0);
    canvas.dataset.points = String(pts.length);
    canvas.dataset.maxKib = String(maxKib);
    if (data) {
      canvas.dataset.from = String(data.from);
      canvas.dataset.to = String(data.to);
    }
    // Top of the y axis: the first "nice" tick above the highest point, so the
    // chart always ends on a labelled grid line.
    const want = Math.max(maxKib / 1024, 1) * 1.04;
    const t0 = ticks(0, want, 5);
    const last = t0[t0.length - 1];
    const maxMiB = last >= want ? last : last + (t0.length > 1 ? t0[1] - t0[0] : want);
    yMax = maxMiB * 1024;

    // Grid and axes.
    ctx.strokeStyle = "#e6e9ee";
    ctx.fillStyle = "#5b6570";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const v of ticks(0, maxMiB, 5)) {
      const y = Math.round(yOf(v * 1024)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(M.left, y);
      ctx.lineTo(M.left + plotW(), y);
      ctx.stroke();
      ctx.fillText(`${trimNum(v)} MiB`, M.left - 8, y);
    }
    if (data) {
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      const xt = ticks(data.from, data.to, Math.max(2, Math.floor(plotW() / 90)));
      for (const t of xt) {
        const x = Math.round(xOfT(t)) + 0.5;
        ctx.beginPath();
        ctx.moveTo(x, M.top + plotH);
        ctx.lineTo(x, M.top + plotH + 4);
        ctx.strokeStyle = "#9aa4ae";
        ctx.stroke();
        ctx.fillText(`${trimNum(t)} s`, x, M.top + plotH + 7);
      }
      ctx.textAlign = "right";
      ctx.fillText("time (s)", M.left + plotW(), M.top + plotH + 22);
    }
    ctx.strokeStyle = "#9aa4ae";
    ctx.beginPath();
    ctx.moveTo(M.left + 0.5, M.top);
    ctx.lineTo(M.left + 0.5, M.top + plotH + 0.5);
    ctx.lineTo(M.left + plotW(), M.top + plotH + 0.5);
    ctx.stroke();

    if (pts.length) {
      // Band min..max, then the max line on top.
      ctx.beginPath();
      pts.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, xOfT(pointT(p)), yOf(p.max)));
      for (let i = pts.length - 1; i >= 0; i--) ctx.lineTo(xOfT(pointT(pts[i])), yOf(pts[i].min));
      ctx.closePath();
      ctx.fillStyle = "rgba(37, 99, 235, 0.16)";
      ctx.fill();
      ctx.beginPath();
      pts.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, xOfT(pointT(p)), yOf(p.max)));
      ctx.strokeStyle = "#2563eb";
      ctx.lineWidth = 1.6;
      ctx.lineJoin = "round";
      ctx.stroke();
      if (pts.length === 1) dot(ctx, xOfT(pointT(pts[0])), yOf(pts[0].max), "#2563eb");
    }

    if (hoverIdx >= 0 && hoverIdx < pts.length) {
      const p = pts[hoverIdx];
      const x = Math.round(xOfT(pointT(p))) + 0.5;
      ctx.strokeStyle = "rgba(27, 31, 36, 0.45)";
      ctx.lineWidth = 1;
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(x, M.top);
      ctx.lineTo(x, M.top + plotH);
      ctx.stroke();
      ctx.setLineDash([]);
      dot(ctx, x, yOf(p.max), "#1d4ed8");
    }

    if (drag) {
      const a = Math.max(M.left, Math.min(drag.x0, drag.x1));
      const b = Math.min(M.left + plotW(), Math.max(drag.x0, drag.x1));
      ctx.fillStyle = "rgba(37, 99, 235, 0.12)";
      ctx.fillRect(a, M.top, b - a, plotH);
      ctx.strokeStyle = "rgba(37, 99, 235, 0.6)";
      ctx.strokeRect(a + 0.5, M.top + 0.5, b - a - 1, plotH - 1);
    }
  }

  function nearest(x: number): number {
    const pts = data?.points ?? [];
    if (!pts.length) return -1;
    const t = tOfX(x);
    let lo = 0;
    let hi = pts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (pointT(pts[mid]) < t) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && Math.abs(pointT(pts[lo - 1]) - t) <= Math.abs(pointT(pts[lo]) - t)) lo--;
    return lo;
  }

  function fillTooltip(p: MemoryPoint): void {
    const stack = data?.stacks[p.stack] ?? [];
    // Recursion repeats a frame many times: show it once with a count.
    const runs: { frame: string; times: number }[] = [];
    for (const frame of stack) {
      const last = runs[runs.length - 1];
      if (last && last.frame === frame) last.times++;
      else runs.push({ frame, times: 1 });
    }
    // Root first, leaf last; very deep stacks keep their two outermost frames
    // and the innermost ones, which is where the memory was allocated.
    const keepHead = 2;
    const shown =
      runs.length > MAX_STACK_LINES
        ? [...runs.slice(0, keepHead), null, ...runs.slice(runs.length - (MAX_STACK_LINES - keepHead - 1))]
        : runs;
    const list = el("ol", { class: "stack", "data-testid": "tooltip-stack" });
    shown.forEach((r, i) => {
      if (r === null) {
        list.append(el("li", { class: "elided" }, `… ${runs.length - MAX_STACK_LINES + 1} more frames …`));
        return;
      }
      const f = splitFrame(r.frame);
      const leaf = i === shown.length - 1;
      list.append(
        el(
          "li",
          { class: leaf ? "leaf" : undefined, "data-frame": r.frame, "data-times": r.times },
          leaf ? el("strong", {}, f.fn) : el("span", { class: "fn" }, f.fn),
          r.times > 1 ? el("span", { class: "times" }, ` ×${r.times}`) : null,
          f.file ? el("span", { class: "loc" }, ` ${f.file}:${f.line}`) : null,
        ),
      );
    });
    tooltip.replaceChildren(
      el("div", { class: "tip-title" }, `${mib(p.max)}`, el("span", { class: "muted" }, ` at ${seconds(p.t)}`)),
      el(
        "div",
        { class: "tip-stat muted" },
        `${p.n} sample${p.n === 1 ? "" : "s"} · min ${mib(p.min)} · mean ${mib(p.mean)}`,
      ),
      stack.length ? list : el("div", { class: "muted" }, "(no Python stack)"),
    );
    tooltip.dataset.t = String(p.t);
    tooltip.dataset.kib = String(p.max);
  }

  const localX = (e: MouseEvent) => e.clientX - canvas.getBoundingClientRect().left;

  canvas.addEventListener("mousemove", (e) => {
    const x = localX(e);
    if (drag) {
      drag.x1 = x;
      tooltip.hidden = true;
      draw();
      return;
    }
    const inside = x >= M.left - 4 && x <= M.left + plotW() + 4;
    const i = inside ? nearest(x) : -1;
    if (i !== hoverIdx) {
      hoverIdx = i;
      if (i >= 0) fillTooltip(data!.points[i]);
      draw();
    }
    if (i < 0) tooltip.hidden = true;
    else placeTooltip(tooltip, e.clientX, e.clientY);
  });
  canvas.addEventListener("mouseleave", () => {
    hoverIdx = -1;
    tooltip.hidden = true;
    draw();
  });
  canvas.addEventListener("mousedown", (e) => {
    if (e.button !== 0 || !data) return;
    drag = { x0: localX(e), x1: localX(e) };
    e.preventDefault();
  });
  window.addEventListener("mouseup", onMouseUp);
  function onMouseUp(): void {
    if (!drag || !data) return;
    const d = drag;
    drag = null;
    // A click (tiny movement) is not a zoom.
    if (Math.abs(d.x1 - d.x0) < 6) {
      draw();
      return;
    }
    const a = Math.max(M.left, Math.min(d.x0, d.x1));
    const b = Math.min(M.left + plotW(), Math.max(d.x0, d.x1));
    zoom = { from: Math.max(0, tOfX(a)), to: tOfX(b) };
    hoverIdx = -1;
    void load();
  }
  reset.addEventListener("click", () => {
    zoom = null;
    hoverIdx = -1;
    void load();
  });
  canvas.addEventListener("dblclick", () => {
    if (zoom) reset.click();
  });

  const stop = onWidth(box, (w) => {
    const first = width === 0;
    width = w;
    draw();
    // More pixels deserve more buckets; wait for the resize to settle.
    window.clearTimeout(refetchTimer);
    if (first) void load();
    else refetchTimer = window.setTimeout(() => void load(), 200);
  });

  return {
    element,
    destroy() {
      stop();
      window.removeEventListener("mouseup", onMouseUp);
    },
  };
}

function dot(ctx: CanvasRenderingContext2D, x: number, y: number, colour: string): void {
  ctx.beginPath();
  ctx.arc(x, y, 3.5, 0, Math.PI * 2);
  ctx.fillStyle = colour;
  ctx.fill();
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 1.5;
  ctx.stroke();
}

function trimNum(v: number): string {
  // Tick values are multiples of 1/2/2.5/5 × 10^k: a few decimals at most.
  return String(Number(v.toPrecision(6)));
}
