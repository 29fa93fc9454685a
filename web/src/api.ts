// Typed access to the server's JSON API (docs/API.md, version 1).

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

const enc = encodeURIComponent;

export function listRuns(q = "", limit = 1000): Promise<{ runs: Run[]; total: number }> {
  const params = new URLSearchParams({ limit: String(limit) });
  if (q) params.set("q", q);
  return json(`/api/runs?${params}`);
}

export function getRun(id: string): Promise<RunDetail> {
  return json(`/api/runs/${enc(id)}`);
}

export async function getCollapsed(id: string): Promise<string> {
  return (await get(`/api/runs/${enc(id)}/collapsed`)).text();
}

export function getFunctions(id: string): Promise<Functions> {
  return json(`/api/runs/${enc(id)}/functions`);
}

export function getMemory(id: string, buckets: number, from?: number, to?: number): Promise<Memory> {
  const q = new URLSearchParams({ buckets: String(Math.max(1, Math.min(5000, Math.round(buckets)))) });
  if (from !== undefined) q.set("from", String(from));
  if (to !== undefined) q.set("to", String(to));
  return json(`/api/runs/${enc(id)}/memory?${q}`);
}
