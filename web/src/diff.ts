// Differential flame graph: the server's merged tree of two runs (/api/diff)
// turned into FrameNodes whose width is the frame's average share of both runs
// and whose colour is the change of its share (grew: red, shrank: blue).

import { fromApiTree, type ApiNode, type FrameNode } from "./tree.ts";

export interface DiffNode extends FrameNode {
  aTotal: number;
  bTotal: number;
  aSelf: number;
  bSelf: number;
  /** b share − a share of the frame's total, in percentage points. */
  delta: number;
  /** The same for self. */
  deltaSelf: number;
}

/**
 * Width unit: the sum of both shares (so a frame that vanished in b, or is new
 * in b, is still drawn). Shares are fractions of each run's sample count.
 */
export function buildDiffTree(root: ApiNode, aSamples: number, bSamples: number): DiffNode {
  const sa = aSamples > 0 ? 1 / aSamples : 0;
  const sb = bSamples > 0 ? 1 / bSamples : 0;
  const num = (v: unknown) => Number(v) || 0;
  return fromApiTree<DiffNode>(
    root,
    (a) => num(a.a_total) * sa + num(a.b_total) * sb,
    (a) => num(a.a_self) * sa + num(a.b_self) * sb,
    (a, n) => {
      n.aTotal = num(a.a_total);
      n.bTotal = num(a.b_total);
      n.aSelf = num(a.a_self);
      n.bSelf = num(a.b_self);
      n.delta = 100 * (n.bTotal * sb - n.aTotal * sa);
      n.deltaSelf = 100 * (n.bSelf * sb - n.aSelf * sa);
    },
  );
}

/** Largest |delta| below the root: the colour scale's end. */
export function maxAbsDelta(root: DiffNode): number {
  let m = 0;
  const todo: DiffNode[] = [...(root.children as DiffNode[])];
  while (todo.length) {
    const n = todo.pop()!;
    m = Math.max(m, Math.abs(n.delta));
    for (const c of n.children) todo.push(c as DiffNode);
  }
  return m;
}

/** Changes smaller than this (percentage points) are drawn neutral. */
export const NEUTRAL_PP = 0.1;

/**
 * Colour of a change: neutral grey near 0, red for growth, blue for shrinking,
 * saturating at `maxAbs` (but at least 1 pp, so noise never looks dramatic).
 */
export function diffColour(deltaPp: number, maxAbs: number): string {
  if (!isFinite(deltaPp) || Math.abs(deltaPp) < NEUTRAL_PP) return "hsl(220 10% 88%)";
  const scale = Math.max(1, maxAbs);
  const t = Math.sqrt(Math.min(1, Math.abs(deltaPp) / scale));
  const light = 86 - 34 * t;
  const sat = 55 + 30 * t;
  return deltaPp > 0 ? `hsl(0 ${sat.toFixed(0)}% ${light.toFixed(1)}%)` : `hsl(215 ${sat.toFixed(0)}% ${light.toFixed(1)}%)`;
}

/** "+1.2 pp" / "−0.35 pp" / "0 pp". */
export function formatPp(d: number): string {
  if (!isFinite(d)) return "–";
  const a = Math.abs(d);
  if (a < 0.005) return "0 pp";
  const s = a >= 10 ? a.toFixed(1) : a >= 0.1 ? a.toFixed(2) : a.toPrecision(2);
  return `${d > 0 ? "+" : "\u2212"}${s} pp`;
}

// ---------------------------------------------------------------- windows

/** A run's time window on the compare page: either end may be open (the run's start / end). */
export interface PartialWindow {
  from?: number;
  to?: number;
}

export interface CompareWindows {
  a: PartialWindow | null;
  b: PartialWindow | null;
}

/** Seconds as the URL writes them: microseconds are finer than any sampling period. */
export function roundT(t: number): string {
  return String(Math.round(t * 1e6) / 1e6);
}

/** One run's window from `?a_from=&a_to=` (prefix "a") or `b_...`; null when there is none or it is not valid. */
export function windowFromParams(q: URLSearchParams, which: "a" | "b"): PartialWindow | null {
  const num = (k: string): number | undefined | null => {
    const v = q.get(`${which}_${k}`);
    if (v === null || v.trim() === "") return undefined;
    const n = Number(v);
    return isFinite(n) && n >= 0 ? n : null;
  };
  const from = num("from");
  const to = num("to");
  if (from === null || to === null) return null;
  if (from === undefined && to === undefined) return null;
  if (from !== undefined && to !== undefined && !(to > from)) return null;
  const w: PartialWindow = {};
  if (from !== undefined) w.from = from;
  if (to !== undefined) w.to = to;
  return w;
}

export function compareWindows(search: string): CompareWindows {
  const q = new URLSearchParams(search);
  return { a: windowFromParams(q, "a"), b: windowFromParams(q, "b") };
}

/** The query of a comparison (`a_from=...`), without "?"; "" for two whole runs. */
export function compareQuery(w: CompareWindows): string {
  const q = new URLSearchParams();
  for (const which of ["a", "b"] as const) {
    const x = w[which];
    if (x?.from !== undefined) q.set(`${which}_from`, roundT(x.from));
    if (x?.to !== undefined) q.set(`${which}_to`, roundT(x.to));
  }
  return q.toString();
}

/** Before and after trade places: so do their windows. */
export function swapWindows(w: CompareWindows): CompareWindows {
  return { a: w.b, b: w.a };
}

export function sameWindow(x: PartialWindow | null, y: PartialWindow | null): boolean {
  return (x?.from ?? null) === (y?.from ?? null) && (x?.to ?? null) === (y?.to ?? null);
}
