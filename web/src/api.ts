// Typed access to the server's JSON API (docs/API.md, version 1).

import type { DecimationInfo } from "./format.ts";

export type Status = "live" | "complete" | "failed" | "incomplete";

export interface Run {
  id: string;
  project: string;
  function: string;
  samples: number;
  peak_rss_kb: number;
  duration_s: number;
  period_s: number;
  rate_hz: number;
  start_time: string;
  status: Status | string;
  host: string;
}

export interface RunDetail extends Run {
  pid?: number;
  tags?: Record<string, unknown>;
  error?: string | null;
  memory?: boolean;
  lines?: boolean;
  version?: number;
  threads?: number;
  bytes?: number;
  t_end_s?: number;
  /** Set when the relay thinned the run (older servers: absent). */
  decimation?: DecimationInfo | null;
}

export interface FunctionRow {
  name: string;
  file: string;
  line: number;
  self: number;
  total: number;
}

export interface Functions {
  samples: number;
  functions: FunctionRow[];
}

export interface MemoryPoint {
  t: number;
  n: number;
  min: number;
  mean: number;
  max: number;
  stack: number;
  /** Index into `stacks`: frames common to every sample of the bucket (issue 6; absent on older servers). */
  prefix?: number;
  /** Index into `stacks`: the bucket's most frequent stack, seen `frequent_n` times. */
  frequent?: number;
  frequent_n?: number;
}

export interface Memory {
  from: number;
  to: number;
  peak_rss_kb: number;
  points: MemoryPoint[];
  stacks: string[][];
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

async function get(path: string): Promise<Response> {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try {
      const body = (await res.json()) as { error?: string };
      if (body && typeof body.error === "string") msg = body.error;
    } catch {
      // Not JSON: keep the status line.
    }
    throw new ApiError(msg, res.status);
  }
  return res;
}

async function json<T>(path: string): Promise<T> {
  return (await (await get(path)).json()) as T;
}

export interface ApiTreeNode {
  name: string;
  file: string;
  line: number;
  children?: ApiTreeNode[];
  [k: string]: unknown;
}

export interface Tree {
  samples: number;
  from?: number;
  to?: number;
  truncated?: boolean;
  root: ApiTreeNode;
}

export interface GrowthRow {
  name: string;
  file: string;
  line: number;
  self_grown_kb: number;
  total_grown_kb: number;
  self_released_kb: number;
  total_released_kb: number;
}

export interface Growth {
  grown_kb: number;
  released_kb: number;
  functions: GrowthRow[];
  root: ApiTreeNode;
  truncated?: boolean;
}

export interface DiffRow {
  name: string;
  file: string;
  line: number;
  a_self: number;
  a_total: number;
  b_self: number;
  b_total: number;
  delta_self_pct: number;
  delta_total_pct: number;
}

export interface Diff {
  a: { id: string; samples: number };
  b: { id: string; samples: number };
  functions: DiffRow[];
  root: ApiTreeNode;
}

/** A time window on the profile's clock, seconds from its first sample. */
export interface Window {
  from: number;
  to: number;
}

export type RunSort = "start_time" | "duration" | "peak_rss" | "samples" | "project" | "function";

export interface ListQuery {
  q?: string;
  since?: number; // Unix seconds
  until?: number;
  sort?: RunSort;
  order?: "asc" | "desc";
  limit?: number;
  offset?: number;
}

const enc = encodeURIComponent;

export function listRuns(query: ListQuery = {}): Promise<{ runs: Run[]; total: number }> {
  const params = new URLSearchParams({ limit: String(query.limit ?? 1000) });
  if (query.offset) params.set("offset", String(query.offset));
  if (query.q) params.set("q", query.q);
  if (query.since !== undefined) params.set("since", String(query.since));
  if (query.until !== undefined) params.set("until", String(query.until));
  if (query.sort && query.sort !== "start_time") params.set("sort", query.sort);
  if (query.order && query.order !== "desc") params.set("order", query.order);
  return json(`/api/runs?${params}`);
}

function windowParams(w: Window | null | undefined, q = new URLSearchParams()): URLSearchParams {
  if (w) {
    q.set("from", String(w.from));
    q.set("to", String(w.to));
  }
  return q;
}

function qs(q: URLSearchParams): string {
  const s = q.toString();
  return s ? `?${s}` : "";
}

export function getTree(id: string, w?: Window | null): Promise<Tree> {
  return json(`/api/runs/${enc(id)}/tree${qs(windowParams(w))}`);
}

export function getGrowth(id: string, w?: Window | null): Promise<Growth> {
  return json(`/api/runs/${enc(id)}/growth${qs(windowParams(w))}`);
}

export function getDiff(a: string, b: string, extra?: URLSearchParams): Promise<Diff> {
  const q = new URLSearchParams({ a, b });
  for (const k of ["a_from", "a_to", "b_from", "b_to"]) {
    const v = extra?.get(k);
    if (v) q.set(k, v);
  }
  return json(`/api/diff?${q}`);
}

export function speedscopeUrl(id: string): string {
  return `/api/runs/${enc(id)}/speedscope`;
}

export function collapsedUrl(id: string): string {
  return `/api/runs/${enc(id)}/collapsed`;
}

export function getRun(id: string): Promise<RunDetail> {
  return json(`/api/runs/${enc(id)}`);
}

export async function getCollapsed(id: string): Promise<string> {
  return (await get(`/api/runs/${enc(id)}/collapsed`)).text();
}

export function getFunctions(id: string, w?: Window | null): Promise<Functions> {
  return json(`/api/runs/${enc(id)}/functions${qs(windowParams(w))}`);
}

export function getMemory(id: string, buckets: number, from?: number, to?: number): Promise<Memory> {
  const q = new URLSearchParams({ buckets: String(Math.max(1, Math.min(5000, Math.round(buckets)))) });
  if (from !== undefined) q.set("from", String(from));
  if (to !== undefined) q.set("to", String(to));
  return json(`/api/runs/${enc(id)}/memory?${q}`);
}
