// Tiny DOM builder. Every string child becomes a text node, so names coming
// from the profiled program (attacker-controlled) can never become markup.

type Child = Node | string | number | null | undefined | false;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k === "class") e.className = String(v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  append(e, ...children);
  return e;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
}

export function clear(e: Element): void {
  while (e.firstChild) e.removeChild(e.firstChild);
}

/** Place a fixed-position tooltip near the pointer but inside the viewport. */
export function placeTooltip(tip: HTMLElement, clientX: number, clientY: number): void {
  tip.hidden = false;
  const pad = 14;
  const r = tip.getBoundingClientRect();
  let x = clientX + pad;
  let y = clientY + pad;
  if (x + r.width > window.innerWidth - 4) x = Math.max(4, clientX - pad - r.width);
  if (y + r.height > window.innerHeight - 4) y = Math.max(4, clientY - pad - r.height);
  tip.style.left = `${x}px`;
  tip.style.top = `${y}px`;
}

/**
 * Size a canvas for its CSS box and the device pixel ratio, so drawing stays
 * crisp on HiDPI screens. Returns a context already scaled to CSS pixels.
 */
export function fitCanvas(canvas: HTMLCanvasElement, cssWidth: number, cssHeight: number): CanvasRenderingContext2D {
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = `${cssWidth}px`;
  canvas.style.height = `${cssHeight}px`;
  const w = Math.max(1, Math.round(cssWidth * dpr));
  const h = Math.max(1, Math.round(cssHeight * dpr));
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const ctx = canvas.getContext("2d")!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

/**
 * Call `fn` with the element's content width now and whenever it, or the
 * device pixel ratio (browser zoom, moving to another screen), changes.
 */
export function onWidth(e: Element, fn: (width: number) => void): () => void {
  let last = "";
  const check = () => {
    const w = Math.floor(e.clientWidth);
    const key = `${w}@${window.devicePixelRatio}`;
    if (key !== last && w > 0) {
      last = key;
      fn(w);
    }
  };
  const ro = new ResizeObserver(check);
  ro.observe(e);
  window.addEventListener("resize", check);
  return () => {
    ro.disconnect();
    window.removeEventListener("resize", check);
  };
}

export function statusBadge(status: string): HTMLElement {
  const known = ["live", "complete", "failed", "incomplete"].includes(status) ? status : "unknown";
  return el("span", { class: `badge badge-${known}`, "data-testid": "run-status", "data-status": status }, status);
}
