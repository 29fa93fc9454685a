#!/usr/bin/env node
// Development stand-in for the C server: serves web/dist/ and the JSON API of
// docs/API.md from synthetic, deterministic profiles, so the UI and
// e2e/check.mjs can be exercised without the real server. The real test runs
// check.mjs against the real server.
//
//   node e2e/fixture-server.mjs [--port 8000] [--dist DIR] [--write-expect FILE] [--max-page N]
//
// --write-expect writes check.mjs's expectation file for the main demo run and
// prints its id.

import { createReadStream, existsSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(args.dist ?? join(here, "..", "dist"));
const port = Number(args.port ?? 8000);

// ---------------------------------------------------------------- synthetic data

function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const F = (fn, file, line) => `${fn} (${file}:${line})`;

/** Simulate a run: samples of {t, stack, rss}. */
function simulate({ seed, n, period, file, memory = true, evil = false, deep = false }) {
  const r = rng(seed);
  const mod = F("<module>", file, 1);
  const main = F("main", file, 60);
  const samples = [];
  let rss = 24 * 1024;
  for (let i = 0; i < n; i++) {
    const phase = i / n;
    const stack = [mod, main];
    if (deep) {
      // Many distinct, deep stacks: exercises layout, hit-testing and the depth cap.
      const depth = 20 + Math.floor(r() * (r() < 0.01 ? 900 : 60));
      for (let d = 0; d < depth; d++) stack.push(F(`f${Math.floor(r() * 40)}`, `/srv/gen/m${d % 7}.py`, 10 + (d % 13)));
      rss += (r() - 0.49) * 200;
    } else if (evil) {
      stack.push(F('<img src=x onerror="alert(1)">', "/tmp/<script>alert(2)</script>.py", 3));
      if (r() < 0.5) stack.push(F("&amp; <b>bold</b>", "/tmp/x.py", 9));
    } else if (phase < 0.25) {
      stack.push(F("load_data", file, 12));
      stack.push(r() < 0.7 ? F("loads", "/usr/lib/python3.11/json/__init__.py", 299) : F("read", file, 20));
      if (stack.at(-1).startsWith("loads")) stack.push(F("decode", "/usr/lib/python3.11/json/decoder.py", 332));
      rss += 40 + r() * 60;
    } else if (phase < 0.75) {
      stack.push(F("compute", file, 30));
      const depth = 1 + Math.floor(r() * 12);
      for (let d = 0; d < depth; d++) stack.push(F("fib", file, 3));
      if (r() < 0.15) stack.push(F("helper_with_a_rather_long_name_that_does_not_fit", file, 8));
      rss += (r() - 0.5) * 8;
    } else if (phase < 0.9) {
      stack.push(F("alloc_buffers", file, 44));
      stack.push(F("__init__", "/usr/lib/python3.11/site-packages/numpy/core/numeric.py", 140));
      rss += 120 + r() * 80;
    } else {
      stack.push(F("cleanup", file, 52));
      if (r() < 0.3) stack.push(F("<unknown 0x7f3a12bc>", "", 0).replace(" (:0)", ""));
      rss -= 300 + r() * 100;
    }
    rss = Math.max(20 * 1024, rss);
    // Jitter within a bucket makes the min..max band visible.
    samples.push({ t: i * period, stack, rss: memory ? Math.round(rss + r() * 3000) : 0 });
  }
  return samples;
}

function makeRun(meta, opts) {
  const samples = simulate(opts);
  const tEnd = samples.length ? samples.at(-1).t : 0;
  const peak = samples.reduce((m, s) => Math.max(m, s.rss), 0);
  const run = {
    id: meta.id,
    project: meta.project,
    function: meta.function,
    samples: samples.length,
    peak_rss_kb: peak,
    duration_s: tEnd + opts.period + 0.05,
    period_s: opts.period,
    rate_hz: tEnd > 0 ? samples.length / tEnd : 0,
    start_time: meta.start_time,
    status: meta.status ?? "complete",
    host: "build-host-1",
    pid: 4242,
    tags: {},
    error: meta.error ?? null,
    memory: opts.memory !== false,
    lines: false,
    version: 4,
    threads: 1,
    bytes: samples.length * 60,
    t_end_s: tEnd,
  };
  return { run, samples };
}

const hex = (n) => n.toString(16).padStart(32, "0");
const ago = (s) => new Date(Date.now() - s * 1000).toISOString();
const RUNS = [
  makeRun(
    { id: "0123456789abcdef0123456789abcdef", project: "demo project", function: "demo.main", start_time: ago(95) },
    { seed: 1, n: 4000, period: 0.005, file: "/srv/app/demo.py" },
  ),
  makeRun(
    { id: hex(2), project: '<img src=x onerror="alert(1)">', function: "<b>not bold</b>", start_time: ago(3600 * 5), status: "failed", error: "ValueError: <script>alert(3)</script>" },
    { seed: 2, n: 300, period: 0.01, file: "/tmp/evil.py", evil: true },
  ),
  makeRun(
    { id: hex(3), project: "nightly etl", function: "etl.jobs.run_all", start_time: ago(86400 * 2), status: "incomplete" },
    { seed: 3, n: 1200, period: 0.1, file: "/srv/etl/jobs.py", memory: false },
  ),
  makeRun(
    { id: hex(4), project: "demo project", function: "demo.other", start_time: ago(20), status: "live" },
    { seed: 4, n: 500, period: 0.01, file: "/srv/app/other.py" },
  ),
  makeRun(
    { id: hex(5), project: "stress", function: "gen.deep", start_time: ago(86400 * 9) },
    { seed: 5, n: 60000, period: 0.001, file: "/srv/gen/main.py", deep: true },
  ),
];
const byId = new Map(RUNS.map((r) => [r.run.id, r]));

function collapsed(samples) {
  const counts = new Map();
  for (const s of samples) {
    const k = s.stack.map((f) => f.replace(/[;\n\r]/g, "_")).join(";");
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts.keys()]
    .sort()
    .map((k) => `${k} ${counts.get(k)}`)
    .join("\n") + "\n";
}

function functions(samples) {
  const m = new Map();
  const parse = (frame) => {
    const x = /^(.*) \((.*):(\d+)\)$/.exec(frame);
    return x ? { name: x[1], file: x[2], line: Number(x[3]) } : { name: frame, file: "", line: 0 };
  };
  for (const s of samples) {
    const seen = new Set(s.stack);
    for (const f of seen) {
      if (!m.has(f)) m.set(f, { ...parse(f), self: 0, total: 0 });
      m.get(f).total++;
    }
    if (s.stack.length) m.get(s.stack.at(-1)).self++;
  }
  return { samples: samples.length, functions: [...m.values()].sort((a, b) => b.total - a.total) };
}

function memory(run, samples, q) {
  const buckets = q.has("buckets") ? Number(q.get("buckets")) : 800;
  if (!Number.isInteger(buckets) || buckets < 1 || buckets > 5000) return [400, { error: "buckets must be 1..5000" }];
  const from = q.has("from") ? Number(q.get("from")) : 0;
  const to = q.has("to") ? Number(q.get("to")) : run.t_end_s;
  if (!(to >= from)) return [400, { error: "bad range" }];
  const width = Math.max(to - from, 1e-9);
  const bs = new Map();
  const stacks = [];
  const stackIdx = new Map();
  for (const s of samples) {
    if (s.t < from || s.t > to || !run.memory) continue;
    const b = Math.min(buckets - 1, Math.floor(((s.t - from) / width) * buckets));
    let e = bs.get(b);
    if (!e) bs.set(b, (e = { n: 0, min: Infinity, max: -1, sum: 0, top: null }));
    e.n++;
    e.sum += s.rss;
    e.min = Math.min(e.min, s.rss);
    if (s.rss > e.max) {
      e.max = s.rss;
      e.top = s.stack;
    }
  }
  const points = [...bs.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([b, e]) => {
      const key = e.top.join(";");
      if (!stackIdx.has(key)) {
        stackIdx.set(key, stacks.length);
        stacks.push(e.top);
      }
      return { t: from + (b * width) / buckets, n: e.n, min: e.min, mean: Math.round(e.sum / e.n), max: e.max, stack: stackIdx.get(key) };
    });
  return [200, { from, to, peak_rss_kb: points.reduce((m, p) => Math.max(m, p.max), 0), points, stacks }];
}

// ---------------------------------------------------------------- expectations

if (args["write-expect"]) {
  const { run, samples } = RUNS[0];
  const fns = functions(samples).functions.slice(0, 4);
  writeFileSync(
    args["write-expect"],
    JSON.stringify(
      {
        project: run.project,
        function: run.function,
        samples: run.samples,
        peak_rss_kb: run.peak_rss_kb,
        top_functions: fns.map((f) => ({ name: f.name, file: f.file, line: f.line, total: f.total, self: f.self })),
      },
      null,
      2,
    ),
  );
  console.log(run.id);
}

// ---------------------------------------------------------------- http

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png" };

function send(res, status, body, type = "application/json") {
  const data = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "Content-Type": type, "Cache-Control": "no-store" });
  res.end(data);
}

function file(res, path) {
  if (!existsSync(path) || !statSync(path).isFile()) return send(res, 404, "not found\n", "text/plain");
  res.writeHead(200, { "Content-Type": TYPES[extname(path)] ?? "application/octet-stream" });
  createReadStream(path).pipe(res);
}

const server = createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  const p = url.pathname;
  let m;
  if (p === "/api/runs") {
    const q = (url.searchParams.get("q") ?? "").toLowerCase();
    const runs = RUNS.map((r) => r.run)
      .filter((r) => !q || r.project.toLowerCase().includes(q) || r.function.toLowerCase().includes(q))
      .sort((a, b) => b.start_time.localeCompare(a.start_time));
    const list = runs.map(({ id, project, function: fn, samples, peak_rss_kb, duration_s, period_s, rate_hz, start_time, status, host }) => ({
      id, project, function: fn, samples, peak_rss_kb, duration_s, period_s, rate_hz, start_time, status, host,
    }));
    // --max-page N caps the page size, to exercise the UI's server-side search.
    const limit = Math.min(Number(url.searchParams.get("limit") ?? 100), Number(args["max-page"] ?? 1000));
    const offset = Number(url.searchParams.get("offset") ?? 0);
    return send(res, 200, { runs: list.slice(offset, offset + limit), total: list.length });
  }
  if ((m = /^\/api\/runs\/([^/]+)(\/[a-z]+)?$/.exec(p))) {
    const r = byId.get(m[1]);
    if (!r) return send(res, 404, { error: "no such run" });
    if (!m[2]) return send(res, 200, r.run);
    if (m[2] === "/collapsed") return send(res, 200, collapsed(r.samples), "text/plain; charset=utf-8");
    if (m[2] === "/functions") return send(res, 200, functions(r.samples));
    if (m[2] === "/memory") {
      const [status, body] = memory(r.run, r.samples, url.searchParams);
      return send(res, status, body);
    }
    return send(res, 404, { error: "not found" });
  }
  if (p.startsWith("/api/")) return send(res, 404, { error: "not found" });
  if (p.startsWith("/assets/")) {
    const target = normalize(join(dist, p));
    if (!target.startsWith(join(dist, "assets"))) return send(res, 404, "not found\n", "text/plain");
    return file(res, target);
  }
  // SPA fallback, as the real server does.
  if (p === "/" || /^\/runs\/[^/]+\/?$/.test(p)) return file(res, join(dist, "index.html"));
  return send(res, 404, "not found\n", "text/plain");
});

server.listen(port, "127.0.0.1", () => {
  console.log(`fixture server on http://127.0.0.1:${server.address().port} serving ${dist}`);
});
