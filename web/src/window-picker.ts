// A run's time window for the compare page: a small chart of the run (RSS over
// time, or samples per time bucket when memory was not recorded) where a drag
// selects the window, plus numeric from / to inputs and "Whole run". The
// chart also takes keys: ← → move the window, + − narrow / widen it, Escape
// goes back to the whole run. Every change is reported through `onChange`.

import { getMemory, type Memory, type RunDetail } from "./api.ts";
import type { PartialWindow } from "./diff.ts";
import { el, fitCanvas, onWidth } from "./dom.ts";
import { relLabel, seconds } from "./format.ts";

const HEIGHT = 72;
const AXIS = 14; // px under the plot for the two end labels
const PAD = 6;
const MIN_SPAN = 0.001;
const KEY_COMMIT_MS = 300;

export interface WindowPicker {
  element: HTMLElement;
  /** Show `w` (the URL changed under us): no onChange. */
  set(w: PartialWindow | null): void;
  destroy(): void;
}

export interface WindowPickerOptions {
  which: "a" | "b";
  run: RunDetail;
  initial: PartialWindow | null;
  onChange: (w: PartialWindow | null) => void;
}

export function windowPicker(o: WindowPickerOptions): WindowPicker {
  const id = `compare-${o.which}`;
  const name = o.which === "a" ? "A (before)" : "B (after)";
  const hasMemory = o.run.memory !== false && o.run.peak_rss_kb > 0;
  let end = Math.max(o.run.t_end_s ?? 0, 0);
  let win: PartialWindow | null = o.initial;
  let data: Memory | null = null;
  let width = 0;
  let drag: { x0: number; x1: number } | null = null;
  let keyTimer = 0;

  const canvas = el("canvas", {
    class: "window-canvas",
    "data-testid": `${id}-chart`,
    tabindex: 0,
    role: "img",
    "aria-label": `${hasMemory ? "RSS" : "Samples"} over time of run ${name}. Drag to choose the time window to compare; left and right arrows move it, + and − narrow or widen it, Escape selects the whole run.`,
  });
  const num = (k: "from" | "to", label: string) =>
    el("input", {
      type: "number",
      class: "num-input",
      min: 0,
      step: "any",
      inputmode: "decimal",
      "aria-label": `${label} of run ${name}'s window, seconds from its first sample`,
      "data-testid": `${id}-${k}`,
    });
  const fromIn = num("from", "Start");
  const toIn = num("to", "End");
  const whole = el("button", { type: "button", class: "btn btn-small", "data-testid": `${id}-whole` }, "Whole run");
  const text = el("span", { class: "muted small", "data-testid": `${id}-window-text`, "aria-live": "polite" });
  const problem = el("span", { class: "error-text small", "data-testid": `${id}-window-error`, role: "alert" });
  const form = el(
    "form",
    { class: "window-form", "aria-label": `Time window of run ${name}` },
    el("label", {}, "from ", fromIn, " s"),
    el("label", {}, "to ", toIn, " s"),
    el("button", { type: "submit", class: "btn btn-small" }, "Apply"),
    whole,
  );
  const element = el(
    "div",
    { class: "window-picker", "data-testid": `${id}-window` },
    el("div", { class: "window-chart" }, canvas),
    form,
    el("div", {}, text, " ", problem),
  );

  const plotW = () => Math.max(10, width - 2 * PAD);
  const plotH = HEIGHT - AXIS - 4;
  const span = () => Math.max(end, 1e-9);
  const xOf = (t: number) => PAD + (t / span()) * plotW();
  const tOf = (x: number) => Math.max(0, Math.min(end, ((x - PAD) / plotW()) * span()));
  const lo = () => win?.from ?? 0;
  const hi = () => win?.to ?? end;

  function mirror(): void {
    const d = element.dataset;
    d.from = win?.from !== undefined ? String(win.from) : "";
    d.to = win?.to !== undefined ? String(win.to) : "";
    d.end = String(end);
    fromIn.value = win?.from !== undefined ? String(win.from) : "";
    toIn.value = win?.to !== undefined ? String(win.to) : "";
    fromIn.placeholder = "0";
    toIn.placeholder = end ? String(Number(end.toPrecision(6))) : "end";
    toIn.max = end ? String(end) : "";
    fromIn.removeAttribute("aria-invalid");
    toIn.removeAttribute("aria-invalid");
    problem.textContent = "";
    whole.disabled = !win;
    text.textContent = win
      ? `Window ${seconds(lo())} – ${seconds(hi())} (${seconds(Math.max(0, hi() - lo()))} of the run's ${seconds(end)})`
      : `Whole run (${seconds(end)})`;
  }

  function draw(): void {
    if (!width) return;
    const ctx = fitCanvas(canvas, width, HEIGHT);
    ctx.clearRect(0, 0, width, HEIGHT);
    const pts = data?.points ?? [];
    const value = (p: Memory["points"][number]) => (hasMemory ? p.max : p.n);
    const top = Math.max(1, ...pts.map(value));
    const bw = data && pts.length ? Math.max(data.to - data.from, 1e-9) / Math.max(1, Math.round(plotW())) : 0;
    ctx.fillStyle = "#f3f5f8";
    ctx.fillRect(PAD, 2, plotW(), plotH);
    if (pts.length) {
      ctx.beginPath();
      ctx.moveTo(xOf(pts[0].t), 2 + plotH);
      for (const p of pts) ctx.lineTo(xOf(p.t + bw / 2), 2 + plotH - (value(p) / top) * (plotH - 2));
      ctx.lineTo(xOf(pts[pts.length - 1].t + bw), 2 + plotH);
      ctx.closePath();
      ctx.fillStyle = o.which === "a" ? "hsl(215 70% 80%)" : "hsl(0 70% 84%)";
      ctx.fill();
      ctx.strokeStyle = o.which === "a" ? "hsl(215 70% 45%)" : "hsl(0 70% 48%)";
      ctx.lineWidth = 1.2;
      ctx.stroke();
    }
    // The window: everything outside it greyed out, its edges marked.
    const a = drag ? Math.max(PAD, Math.min(drag.x0, drag.x1)) : xOf(lo());
    const b = drag ? Math.min(PAD + plotW(), Math.max(drag.x0, drag.x1)) : xOf(hi());
    if (drag || win) {
      ctx.fillStyle = "rgba(245, 247, 250, 0.78)";
      ctx.fillRect(PAD, 2, a - PAD, plotH);
      ctx.fillRect(b, 2, PAD + plotW() - b, plotH);
      ctx.strokeStyle = "#1b1f24";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(a + 0.75, 2.75, Math.max(b - a - 1.5, 0.5), plotH - 1.5);
    }
    ctx.fillStyle = "#5b6570";
    ctx.font = '10px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
    ctx.textBaseline = "top";
    ctx.textAlign = "left";
    ctx.fillText(relLabel(0), PAD, HEIGHT - AXIS + 2);
    ctx.textAlign = "right";
    ctx.fillText(relLabel(Number(end.toPrecision(4))), PAD + plotW(), HEIGHT - AXIS + 2);
    canvas.dataset.points = String(pts.length);
  }

  /** Normalise and report a new window (null: the whole run). */
  function commit(w: PartialWindow | null): void {
    window.clearTimeout(keyTimer);
    if (w) {
      const f = w.from !== undefined && w.from > 0 ? w.from : undefined;
      const t = w.to !== undefined && (end <= 0 || w.to < end) ? w.to : undefined;
      w = f === undefined && t === undefined ? null : { ...(f !== undefined ? { from: f } : {}), ...(t !== undefined ? { to: t } : {}) };
    }
    win = w;
    mirror();
    draw();
    o.onChange(win);
  }

  const localX = (e: MouseEvent) => e.clientX - canvas.getBoundingClientRect().left;
  canvas.addEventListener("mousedown", (e) => {
    if (e.button !== 0 || end <= 0) return;
    drag = { x0: localX(e), x1: localX(e) };
    e.preventDefault();
    canvas.focus({ preventScroll: true });
    window.addEventListener("mousemove", onDragMove);
    window.addEventListener("mouseup", onDragEnd);
  });
  function onDragMove(e: MouseEvent): void {
    if (!drag) return;
    drag.x1 = localX(e);
    draw();
  }
  function onDragEnd(): void {
    window.removeEventListener("mousemove", onDragMove);
    window.removeEventListener("mouseup", onDragEnd);
    const d = drag;
    drag = null;
    if (!d || Math.abs(d.x1 - d.x0) < 4) {
      draw(); // a click is not a selection
      return;
    }
    const f = tOf(Math.min(d.x0, d.x1));
    const t = Math.max(tOf(Math.max(d.x0, d.x1)), f + MIN_SPAN);
    commit({ from: round(f), to: round(t) });
  }

  canvas.addEventListener("keydown", (e) => {
    if (end <= 0) return;
    let f = lo();
    let t = hi();
    const w = t - f;
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      if (!win) return;
      const step = (e.key === "ArrowLeft" ? -1 : 1) * w * (e.shiftKey ? 0.5 : 0.1);
      f = Math.max(0, Math.min(end - w, f + step));
      t = f + w;
    } else if (e.key === "+" || e.key === "=") {
      const c = (f + t) / 2;
      f = c - w / 4;
      t = c + w / 4;
    } else if (e.key === "-" || e.key === "_") {
      const c = (f + t) / 2;
      f = Math.max(0, c - w);
      t = Math.min(end, c + w);
    } else if (e.key === "Escape") {
      if (!win) return;
      e.preventDefault();
      e.stopPropagation();
      commit(null);
      return;
    } else return;
    e.preventDefault();
    win = { from: round(f), to: round(Math.max(t, f + MIN_SPAN)) };
    mirror();
    draw();
    // Keys repeat: ask the server once the window stops moving.
    window.clearTimeout(keyTimer);
    keyTimer = window.setTimeout(() => commit(win), KEY_COMMIT_MS);
  });

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const read = (input: HTMLInputElement): number | undefined | null => {
      const s = input.value.trim();
      if (s === "") return undefined;
      const v = Number(s);
      return isFinite(v) && v >= 0 ? v : null;
    };
    const f = read(fromIn);
    const t = read(toIn);
    const bad = (input: HTMLInputElement, msg: string) => {
      input.setAttribute("aria-invalid", "true");
      problem.textContent = msg;
      input.focus();
    };
    if (f === null) return bad(fromIn, "The start must be a number of seconds, 0 or more.");
    if (t === null) return bad(toIn, "The end must be a number of seconds, 0 or more.");
    if (f !== undefined && t !== undefined && !(t > f)) return bad(toIn, "The end must be after the start.");
    if (f !== undefined && end > 0 && f >= end) return bad(fromIn, `The run ends at ${seconds(end)}.`);
    commit(f === undefined && t === undefined ? null : { from: f, to: t });
  });
  whole.addEventListener("click", () => commit(null));

  let loaded = false;
  const stop = onWidth(canvas.parentElement!, (w) => {
    width = w;
    draw();
    if (loaded) return;
    loaded = true;
    getMemory(o.run.id, Math.max(1, Math.min(5000, Math.round(plotW()))))
      .then((m) => {
        data = m;
        if (!(end > 0)) end = Math.max(m.to, 0);
        mirror();
        draw();
        canvas.dataset.loaded = "1";
      })
      .catch(() => {
        canvas.dataset.loaded = "error";
      });
  });
  mirror();

  return {
    element,
    set(w) {
      window.clearTimeout(keyTimer);
      win = w;
      mirror();
      draw();
    },
    destroy() {
      stop();
      window.clearTimeout(keyTimer);
      window.removeEventListener("mousemove", onDragMove);
      window.removeEventListener("mouseup", onDragEnd);
    },
  };
}

/** Microseconds: finer than any sampling period, and short in a link. */
function round(t: number): number {
  return Math.round(t * 1e6) / 1e6;
}
