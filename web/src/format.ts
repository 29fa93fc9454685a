// Number/time formatting shared by the views. Pure functions so they can be
// unit-tested without a DOM.

export function mib(kib: number, digits = 1): string {
  return `${(kib / 1024).toFixed(digits)} MiB`;
}

export function count(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

export function percent(part: number, whole: number): string {
  if (whole <= 0) return "0%";
  const p = (100 * part) / whole;
  // Small shares still matter in a profile: keep two significant digits.
  return `${p >= 10 || p === 0 ? p.toFixed(1) : p.toPrecision(2)}%`;
}

export function duration(s: number): string {
  if (!isFinite(s) || s < 0) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${m - h * 60} min`;
}

export function seconds(s: number): string {
  return `${s.toFixed(s < 10 ? 2 : 1)} s`;
}

export function hz(r: number): string {
  return `${r.toFixed(r < 10 ? 2 : 1)} Hz`;
}

export function ago(iso: string, now = Date.now()): string {
  const t = Date.parse(iso);
  if (isNaN(t)) return "–";
  const s = Math.round((now - t) / 1000);
  if (s < 0) return "just now";
  if (s < 45) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 36) return `${h} h ago`;
  const d = Math.round(h / 24);
  if (d < 60) return `${d} days ago`;
  return new Date(t).toISOString().slice(0, 10);
}

export function absoluteTime(iso: string): string {
  const t = Date.parse(iso);
  if (isNaN(t)) return iso;
  const d = new Date(t);
  return `${d.toLocaleString()} (${d.toISOString()})`;
}

/** "Nice" axis ticks (1, 2, 5 × 10^k) covering [lo, hi] with about `n` steps. */
export function ticks(lo: number, hi: number, n: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, n);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

/** Split a collapsed frame "function (file:line)" into its parts. */
export function splitFrame(frame: string): { fn: string; file: string; line: string } {
  // Python names never contain " (" but file paths may, so take the first one.
  const open = frame.indexOf(" (");
  if (open > 0 && frame.endsWith(")")) {
    const loc = frame.slice(open + 2, -1);
    const colon = loc.lastIndexOf(":");
    if (colon >= 0 && /^\d+$/.test(loc.slice(colon + 1))) {
      return { fn: frame.slice(0, open), file: loc.slice(0, colon), line: loc.slice(colon + 1) };
    }
  }
  return { fn: frame, file: "", line: "" };
}
