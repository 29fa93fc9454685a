// Number/time formatting shared by the views. Pure functions so they can be
// unit-tested without a DOM.

export function mib(kib: number, digits = 1): string {
  return `${(kib / 1024).toFixed(digits)} MiB`;
}

/** KiB as the most readable unit: "512 KiB", "12.3 MiB", "1.50 GiB". */
export function size(kib: number): string {
  const a = Math.abs(kib);
  if (a < 1024) return `${Math.round(kib)} KiB`;
  if (a < 1024 * 1024) return `${(kib / 1024).toFixed(a < 10 * 1024 ? 2 : 1)} MiB`;
  return `${(kib / 1024 / 1024).toFixed(2)} GiB`;
}

/**
 * "1,234,567". Not toLocaleString: its first call in a page loads ICU's
 * locale data, 50-80 ms before the first thing a view can show.
 */
export function count(n: number): string {
  const r = Math.round(n);
  if (!isFinite(r)) return String(r);
  const s = String(Math.abs(r));
  let out = s.slice(0, ((s.length - 1) % 3) + 1);
  for (let i = out.length; i < s.length; i += 3) out += `,${s.slice(i, i + 3)}`;
  return r < 0 ? `-${out}` : out;
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
  // Local time written out by hand: the first Intl call of a page costs 50-80 ms.
  const d = new Date(t);
  const off = -d.getTimezoneOffset();
  const zone = `UTC${off >= 0 ? "+" : "-"}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  return `${localDate(t)} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zone} (${d.toISOString()})`;
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

// ---------------------------------------------------------------- time axis

/** Tick steps for a wall-clock axis, in seconds: decimal below a second, clock-like above. */
const CLOCK_STEPS = [
  0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600,
  7200, 10800, 21600, 43200, 86400,
];

export function clockStep(spanS: number, n: number): number {
  const raw = spanS / Math.max(1, n);
  return CLOCK_STEPS.find((s) => s >= raw) ?? Math.ceil(raw / 86400) * 86400;
}

/**
 * Ticks for a wall-clock axis between two instants (ms since the epoch), at
 * round local times (whole seconds, minutes, hours...), about `n` of them.
 */
export function clockTicks(fromMs: number, toMs: number, n: number): { ticks: number[]; step: number } {
  if (!(toMs > fromMs)) return { ticks: [fromMs], step: 1 };
  const step = clockStep((toMs - fromMs) / 1000, n);
  const stepMs = step * 1000;
  // Align in local time so that hour ticks fall on the hour where the zone is not whole hours off UTC.
  const off = -new Date(fromMs).getTimezoneOffset() * 60000;
  const out: number[] = [];
  for (let v = Math.ceil((fromMs + off) / stepMs) * stepMs - off; v <= toMs + 1e-6; v += stepMs) {
    out.push(Math.round(v));
  }
  return { ticks: out, step };
}

const pad = (v: number, w = 2) => String(v).padStart(w, "0");

/** Local wall-clock label with as many decimals of the second as the tick step needs. */
export function clockLabel(ms: number, stepS: number): string {
  const d = new Date(ms);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (stepS >= 60) return hm;
  const s = `${hm}:${pad(d.getSeconds())}`;
  if (stepS >= 1) return s;
  const digits = stepS >= 0.1 ? 1 : stepS >= 0.01 ? 2 : 3;
  return `${s}.${pad(d.getMilliseconds(), 3).slice(0, digits)}`;
}

/** Seconds on the profile clock as an axis label: "1.5 s". */
export function relLabel(t: number): string {
  return `${Number(t.toPrecision(6))} s`;
}

/** The date part for an absolute axis: "2026-11-25" (local). */
export function localDate(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

// ---------------------------------------------------------------- decimation

/** What the relay reports when it thinned a run (GET /api/runs/{id} `decimation`). */
export interface DecimationInfo {
  original_period_s: number;
  period_s: number;
  samples_before: number;
  samples_after: number;
}

/** A sampling period: "500 µs", "5 ms", "12.5 ms", "2 s". */
export function period(s: number): string {
  if (!isFinite(s) || s <= 0) return "–";
  const sig = (v: number) => String(Number(v.toPrecision(3)));
  if (s < 1e-3) return `${sig(s * 1e6)} µs`;
  if (s < 1) return `${sig(s * 1e3)} ms`;
  return `${sig(s)} s`;
}

/** "4", "2.5", "1,000": how many samples there were for each one kept. */
function ratio(r: number): string {
  if (r >= 100 || Math.abs(r - Math.round(r)) < 0.05) return count(r);
  return String(Number(r.toPrecision(r >= 10 ? 3 : 2)));
}

/**
 * "thinned: 1 in 4 samples kept, period 5 ms → 20 ms", or null when there is
 * nothing (valid) to say: no decimation object, or numbers that make no sense.
 */
export function decimationText(d: DecimationInfo | null | undefined): string | null {
  if (!d || typeof d !== "object") return null;
  const before = Number(d.samples_before);
  const after = Number(d.samples_after);
  if (!isFinite(before) || !isFinite(after) || before < 0 || after < 0) return null;
  const parts: string[] = [];
  if (after === 0) parts.push(before > 0 ? `none of ${count(before)} samples kept` : "no samples");
  else if (before >= after) parts.push(`1 in ${ratio(before / after)} samples kept (${count(after)} of ${count(before)})`);
  else return null;
  const p0 = Number(d.original_period_s);
  const p1 = Number(d.period_s);
  if (isFinite(p0) && isFinite(p1) && p0 > 0 && p1 > 0) parts.push(`period ${period(p0)} → ${period(p1)}`);
  return `thinned: ${parts.join(", ")}`;
}
