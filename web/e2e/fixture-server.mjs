#!/usr/bin/env node
// Development stand-in for the C server: serves web/dist/ and the JSON API of
// docs/API.md from synthetic, deterministic profiles, so the UI and
// e2e/check.mjs can be exercised without the real server. The real test runs
// check.mjs against the real server.
//
//   node e2e/fixture-server.mjs [--port 8000] [--dist DIR] [--write-expect FILE] [--max-page N]
//                               [--no-tree] [--live-seconds S] [--write-compare-expect FILE]
//                               [--write-live-expect FILE]
//
// --write-expect writes check.mjs's expectation file for the main demo run and
// prints its id. --no-tree answers 404 for the issue-6 endpoints (an older
// server: the UI falls back to /collapsed). The "live" run grows for
// --live-seconds (default 20) after the server starts, then completes.

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
function simulate({ seed, n, period, file, memory = true, evil = false, deep = false, mix = "before" }) {
  // The "after" mix spends longer in compute (and in a new function), less in loading.
  const [p1, p2, p3] = mix === "after" ? [0.1, 0.8, 0.9] : [0.25, 0.75, 0.9];
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
      for (let d = 0; d < depth; d++) stack.push(F(`f${Math.floor(r() ** 3 * 40)}`, `/srv/gen/m${d % 7}.py`, 10 + (d % 13)));
      rss += (r() - 0.49) * 200;
    } else if (evil) {
      stack.push(F('<img src=x onerror="alert(1)">', "/tmp/<script>alert(2)</script>.py", 3));
      if (r() < 0.5) stack.push(F("&amp; <b>bold</b>", "/tmp/x.py", 9));
    } else if (phase < p1) {
      stack.push(F("load_data", file, 12));
      stack.push(r() < 0.7 ? F("loads", "/usr/lib/python3.11/json/__init__.py", 299) : F("read", file, 20));
      if (stack.at(-1).startsWith("loads")) stack.push(F("decode", "/usr/lib/python3.11/json/decoder.py", 332));
      rss += 40 + r() * 60;
    } else if (phase < p2) {
      stack.push(F("compute", file, 30));
      const depth = 1 + Math.floor(r() * 12);
      for (let d = 0; d < depth; d++) stack.push(F("fib", file, 3));
      if (r() < 0.15) stack.push(F("helper_with_a_rather_long_name_that_does_not_fit", file, 8));
      else if (mix === "after" && r() < 0.3) stack.push(F("validate", file, 80));
      rss += (r() - 0.5) * 8;
    } else if (phase < p3) {
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
  if (meta.decimation) run.decimation = meta.decimation;
  return { run, samples };
}

const hex = (n) => n.toString(16).padStart(32, "0");
const ago = (s) => new Date(Date.now() - s * 1000).toISOString();
const RUNS = [
  makeRun(
    {
      id: "0123456789abcdef0123456789abcdef", project: "demo project", function: "demo.main", start_time: ago(95),
      // As if the relay had kept 1 in 4 samples of a 1.25 ms profile.
      decimation: { original_period_s: 0.00125, period_s: 0.005, samples_before: 16000, samples_after: 4000 },
    },
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
    { seed: 5, n: 12000, period: 0.001, file: "/srv/gen/main.py", deep: true },
  ),
  makeRun(
    { id: hex(6), project: "demo project", function: "demo.main", start_time: ago(40) },
    { seed: 6, n: 5000, period: 0.005, file: "/srv/app/demo.py", mix: "after" },
  ),
];
const started = Date.now();
const liveSeconds = Number(args["live-seconds"] ?? 20);
const noTree = "no-tree" in args;
const byId = new Map(RUNS.map((r) => [r.run.id, r]));

/** What a run looks like now: the live run reveals its samples over --live-seconds. */
function view(entry) {
  if (entry.run.status !== "live" && !entry.growing) return entry;
  entry.growing = true;
  const frac = Math.min(1, (Date.now() - started) / 1000 / liveSeconds);
  const k = Math.max(1, Math.floor(entry.all.length * frac));
  const samples = entry.all.slice(0, k);
  const tEnd = samples.at(-1).t;
  const run = {
    ...entry.run,
    samples: samples.length,
    status: frac >= 1 ? "complete" : "live",
    t_end_s: tEnd,
    duration_s: tEnd + entry.run.period_s,
    peak_rss_kb: samples.reduce((m, x) => Math.max(m, x.rss), 0),
  };
  return { run, samples };
}
for (const e of RUNS) e.all = e.samples;

const parseFrame = (frame) => {
  const x = /^(.*) \((.*):(\d+)\)$/.exec(frame);
  return x ? { name: x[1], file: x[2], line: Number(x[3]) } : { name: frame, file: "", line: 0 };
};

/** ?from=&to= as a sample filter (both optional); null and an error message if malformed. */
function windowOf(q) {
  const num = (k) => (q.has(k) && q.get(k) !== "" ? Number(q.get(k)) : undefined);
  const from = num("from");
  const to = num("to");
  if ((from !== undefined && !isFinite(from)) || (to !== undefined && !isFinite(to))) return [null, "from/to must be numbers"];
  if (from !== undefined && to !== undefined && to < from) return [null, "to < from"];
  return [{ from, to, keep: (s) => (from === undefined || s.t >= from) && (to === undefined || s.t <= to) }, null];
}

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
  for (const s of samples) {
    const seen = new Set(s.stack);
    for (const f of seen) {
      if (!m.has(f)) m.set(f, { ...parseFrame(f), self: 0, total: 0 });
      m.get(f).total++;
    }
    if (s.stack.length) m.get(s.stack.at(-1)).self++;
  }
  return { samples: samples.length, functions: [...m.values()].sort((a, b) => b.total - a.total) };
}

/** A call tree; `add(node, sample, isLeaf)` accumulates whatever the endpoint counts. */
function tree(samples, init, add) {
  const root = { frame: null, ...init(), kids: new Map() };
  for (const s of samples) {
    add(root, s, s.stack.length === 0);
    let n = root;
    const last = s.stack.length - 1;
    for (let i = 0; i <= last; i++) {
      const f = s.stack[i];
      let c = n.kids.get(f);
      if (!c) {
        c = init();
        c.frame = f;
        c.kids = new Map();
        n.kids.set(f, c);
      }
      add(c, s, i === last);
      n = c;
    }
  }
  return root;
}

/** Keep the `max` biggest nodes (parents before children on ties), JSON-shaped, children by `key` desc. */
function finish(root, key, max) {
  // Breadth first, so that on ties a parent is kept before its children.
  const order = [root];
  for (let i = 0; i < order.length; i++) for (const c of order[i].kids.values()) order.push(c);
  let keep = null;
  if (order.length > max) {
    const totals = Float64Array.from(order, (n) => n[key]).sort();
    const thr = totals[totals.length - max];
    let budget = max - order.filter((n) => n[key] > thr).length;
    keep = new Set(order.filter((n) => n[key] > thr || (n[key] === thr && budget-- > 0)));
  }
  const out = (n) => {
    const { kids, frame, ...rest } = n;
    const children = [...kids.values()].filter((c) => !keep || keep.has(c)).sort((a, b) => b[key] - a[key]).map(out);
    const id = frame === null ? { name: "all", file: "", line: 0 } : parseFrame(frame);
    return { ...id, ...rest, children };
  };
  return { root: out(root), truncated: keep !== null };
}

function cpuTree(samples, q) {
  const max = Math.min(200000, Number(q.get("max_nodes") ?? 20000));
  const root = tree(
    samples,
    () => ({ total: 0, self: 0 }),
    (n, _s, leaf) => {
      n.total++;
      if (leaf) n.self++;
    },
  );
  return finish(root, "total", max);
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
  const intern = (st) => {
    const key = st.join(";");
    if (!stackIdx.has(key)) {
      stackIdx.set(key, stacks.length);
      stacks.push(st);
    }
    return stackIdx.get(key);
  };
  for (const s of samples) {
    if (s.t < from || s.t > to || !run.memory) continue;
    const b = Math.min(buckets - 1, Math.floor(((s.t - from) / width) * buckets));
    let e = bs.get(b);
    if (!e) bs.set(b, (e = { n: 0, min: Infinity, max: -1, sum: 0, top: null, prefix: null, freq: new Map() }));
    e.n++;
    e.sum += s.rss;
    e.min = Math.min(e.min, s.rss);
    if (s.rss > e.max) {
      e.max = s.rss;
      e.top = s.stack;
    }
    if (e.prefix === null) e.prefix = s.stack.slice();
    else {
      let k = 0;
      while (k < e.prefix.length && k < s.stack.length && e.prefix[k] === s.stack[k]) k++;
      e.prefix.length = k;
    }
    const key = s.stack.join(";");
    const f = e.freq.get(key);
    if (f) f.n++;
    else e.freq.set(key, { n: 1, stack: s.stack });
  }
  const points = [...bs.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([b, e]) => {
      const best = [...e.freq.values()].reduce((a, x) => (x.n > a.n ? x : a));
      return {
        t: from + (b * width) / buckets,
        n: e.n,
        min: e.min,
        mean: Math.round(e.sum / e.n),
        max: e.max,
        stack: intern(e.top),
        prefix: intern(e.prefix),
        frequent: intern(best.stack),
        frequent_n: best.n,
      };
    });
  return [200, { from, to, peak_rss_kb: points.reduce((m, p) => Math.max(m, p.max), 0), points, stacks }];
}

function growth(samples) {
  // Charge each RSS change to the stack of the later sample.
  const deltas = new Map();
  for (let i = 1; i < samples.length; i++) deltas.set(samples[i], samples[i].rss - samples[i - 1].rss);
  const root = tree(
    samples,
    () => ({ grown_kb: 0, released_kb: 0, self_grown_kb: 0, self_released_kb: 0 }),
    (n, s, leaf) => {
      const d = deltas.get(s) ?? 0;
      if (d > 0) n.grown_kb += d;
      else n.released_kb -= d;
      if (leaf && d > 0) n.self_grown_kb += d;
      if (leaf && d < 0) n.self_released_kb -= d;
    },
  );
  const fns = new Map();
  for (const s of samples) {
    const d = deltas.get(s) ?? 0;
    if (!d) continue;
    for (const f of new Set(s.stack)) {
      if (!fns.has(f)) fns.set(f, { ...parseFrame(f), self_grown_kb: 0, total_grown_kb: 0, self_released_kb: 0, total_released_kb: 0 });
      const e = fns.get(f);
      if (d > 0) e.total_grown_kb += d;
      else e.total_released_kb -= d;
    }
    const leaf = fns.get(s.stack.at(-1));
    if (leaf && d > 0) leaf.self_grown_kb += d;
    if (leaf && d < 0) leaf.self_released_kb -= d;
  }
  const { root: r, truncated } = finish(root, "grown_kb", 20000);
  return {
    grown_kb: root.grown_kb,
    released_kb: root.released_kb,
    functions: [...fns.values()].sort((a, b) => b.total_grown_kb - a.total_grown_kb),
    root: r,
    truncated,
  };
}

function diff(A, B) {
  const fa = new Map(functions(A.samples).functions.map((f) => [`${f.name}\0${f.file}\0${f.line}`, f]));
  const fb = new Map(functions(B.samples).functions.map((f) => [`${f.name}\0${f.file}\0${f.line}`, f]));
  const na = A.samples.length;
  const nb = B.samples.length;
  const pct = (v, n) => (n ? (100 * v) / n : 0);
  const fns = [...new Set([...fa.keys(), ...fb.keys()])].map((k) => {
    const a = fa.get(k) ?? { self: 0, total: 0 };
    const b = fb.get(k) ?? { self: 0, total: 0 };
    const { name, file, line } = fa.get(k) ?? fb.get(k);
    return {
      name, file, line,
      a_self: a.self, a_total: a.total, b_self: b.self, b_total: b.total,
      delta_self_pct: pct(b.self, nb) - pct(a.self, na),
      delta_total_pct: pct(b.total, nb) - pct(a.total, na),
    };
  });
  fns.sort((x, y) => Math.abs(y.delta_total_pct) - Math.abs(x.delta_total_pct));
  const ta = tree(A.samples, () => ({ total: 0, self: 0 }), (n, _s, leaf) => { n.total++; if (leaf) n.self++; });
  const tb = tree(B.samples, () => ({ total: 0, self: 0 }), (n, _s, leaf) => { n.total++; if (leaf) n.self++; });
  const merge = (a, b) => {
    const x = (a ?? b).frame === null ? { name: "all", file: "", line: 0 } : parseFrame((a ?? b).frame);
    const keys = new Set([...(a?.kids.keys() ?? []), ...(b?.kids.keys() ?? [])]);
    const children = [...keys].map((k) => merge(a?.kids.get(k), b?.kids.get(k)));
    children.sort((p, q) => q.a_total + q.b_total - (p.a_total + p.b_total));
    return {
      name: x.name, file: x.file, line: x.line,
      a_total: a?.total ?? 0, b_total: b?.total ?? 0, a_self: a?.self ?? 0, b_self: b?.self ?? 0,
      children,
    };
  };
  return { a: { id: A.run.id, samples: na }, b: { id: B.run.id, samples: nb }, functions: fns, root: merge(ta, tb) };
}

function speedscope(run, samples) {
  const frames = [];
  const idx = new Map();
  const out = samples.map((s) =>
    s.stack.map((f) => {
      if (!idx.has(f)) {
        idx.set(f, frames.length);
        frames.push(parseFrame(f));
      }
      return idx.get(f);
    }),
  );
  return {
    $schema: "https://www.speedscope.app/file-format-schema.json",
    shared: { frames },
    profiles: [{ type: "sampled", name: run.function, unit: "none", startValue: 0, endValue: out.length, samples: out, weights: out.map(() => 1) }],
    name: run.function,
    exporter: "vmprof-viewer fixture",
  };
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

if (args["write-compare-expect"]) {
  // check-compare.mjs's truth: the demo run (older, "before") against its "after" twin.
  const d = diff(RUNS[0], RUNS[5]);
  writeFileSync(
    args["write-compare-expect"],
    JSON.stringify({
      a: { id: RUNS[0].run.id, samples: d.a.samples },
      b: { id: RUNS[5].run.id, samples: d.b.samples },
      functions: d.functions.slice(0, 6).map(({ name, file, line, a_total, b_total, a_self, b_self }) => ({ name, file, line, a_total, b_total, a_self, b_self })),
    }),
  );
}

if (args["write-live-expect"]) {
  const e = RUNS[3];
  writeFileSync(args["write-live-expect"], JSON.stringify({ samples: e.all.length, peak_rss_kb: e.all.reduce((m, x) => Math.max(m, x.rss), 0) }));
}

// ---------------------------------------------------------------- http

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png" };

function send(res, status, body, type = "application/json", extra = {}) {
  const data = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "Content-Type": type, "Cache-Control": "no-store", ...extra });
  res.end(data);
}

function file(res, path) {
  if (!existsSync(path) || !statSync(path).isFile()) return send(res, 404, "not found\n", "text/plain");
  res.writeHead(200, { "Content-Type": TYPES[extname(path)] ?? "application/octet-stream" });
  createReadStream(path).pipe(res);
}

/** since/until: ISO 8601 or Unix seconds, as ms; NaN if malformed. */
const instant = (v) => (/^-?\d+(\.\d+)?$/.test(v) ? Number(v) * 1000 : Date.parse(v));

const treeCache = new Map();

const SORT_KEYS = {
  start_time: (r) => Date.parse(r.start_time),
  duration: (r) => r.duration_s,
  peak_rss: (r) => r.peak_rss_kb,
  samples: (r) => r.samples,
  project: (r) => r.project,
  function: (r) => r.function,
};

const server = createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  const p = url.pathname;
  const qp = url.searchParams;
  let m;
  if (p === "/api/runs") {
    const q = (qp.get("q") ?? "").toLowerCase();
    const fn = (qp.get("function") ?? "").toLowerCase();
    const since = qp.has("since") ? instant(qp.get("since")) : -Infinity;
    const until = qp.has("until") ? instant(qp.get("until")) : Infinity;
    if (isNaN(since) || isNaN(until)) return send(res, 400, { error: "since/until: ISO 8601 or Unix seconds" });
    const sort = qp.get("sort") ?? "start_time";
    const order = qp.get("order") ?? "desc";
    if (!SORT_KEYS[sort] || !["asc", "desc"].includes(order)) return send(res, 400, { error: "bad sort/order" });
    const key = SORT_KEYS[sort];
    const dir = order === "asc" ? 1 : -1;
    const runs = RUNS.map((r) => view(r).run)
      .filter((r) => !q || r.project.toLowerCase().includes(q) || r.function.toLowerCase().includes(q))
      .filter((r) => !fn || r.function.toLowerCase().includes(fn))
      .filter((r) => Date.parse(r.start_time) >= since && Date.parse(r.start_time) <= until)
      .sort((a, b) => (key(a) < key(b) ? -dir : key(a) > key(b) ? dir : a.id < b.id ? -1 : 1));
    const list = runs.map(({ id, project, function: f, samples, peak_rss_kb, duration_s, period_s, rate_hz, start_time, status, host }) => ({
      id, project, function: f, samples, peak_rss_kb, duration_s, period_s, rate_hz, start_time, status, host,
    }));
    // --max-page N caps the page size, to exercise the UI's server-side search.
    const limit = Math.min(Number(qp.get("limit") ?? 100), Number(args["max-page"] ?? 1000));
    const offset = Number(qp.get("offset") ?? 0);
    return send(res, 200, { runs: list.slice(offset, offset + limit), total: list.length });
  }
  if (p === "/api/diff") {
    if (noTree) return send(res, 404, { error: "not found" });
    const A = byId.get(qp.get("a") ?? "");
    const B = byId.get(qp.get("b") ?? "");
    if (!A || !B) return send(res, 404, { error: "no such run" });
    // Each run's window: a_from/a_to, b_from/b_to, as ?from=&to= elsewhere.
    const side = (entry, k) => {
      const q = new URLSearchParams();
      for (const e of ["from", "to"]) if (qp.has(`${k}_${e}`)) q.set(e, qp.get(`${k}_${e}`));
      const [w, err] = windowOf(q);
      if (err) return [null, `${k}_${err}`];
      const v = view(entry);
      return [{ run: v.run, samples: v.samples.filter(w.keep), from: w.from ?? 0, to: w.to ?? v.run.t_end_s }, null];
    };
    const [va, ea] = side(A, "a");
    const [vb, eb] = side(B, "b");
    if (ea || eb) return send(res, 400, { error: ea ?? eb });
    const body = diff(va, vb);
    Object.assign(body.a, { from: va.from, to: va.to });
    Object.assign(body.b, { from: vb.from, to: vb.to });
    return send(res, 200, body);
  }
  if ((m = /^\/api\/runs\/([^/]+)(\/[a-z]+)?$/.exec(p))) {
    const entry = byId.get(m[1]);
    if (!entry) return send(res, 404, { error: "no such run" });
    const r = view(entry);
    if (!m[2]) return send(res, 200, r.run);
    const [w, err] = windowOf(qp);
    if (err) return send(res, 400, { error: err });
    const inWin = r.samples.filter(w.keep);
    if (m[2] === "/collapsed") return send(res, 200, collapsed(r.samples), "text/plain; charset=utf-8");
    if (m[2] === "/functions") return send(res, 200, functions(inWin));
    if (m[2] === "/memory") {
      const [status, body] = memory(r.run, r.samples, qp);
      return send(res, status, body);
    }
    if (noTree) return send(res, 404, { error: "not found" });
    if (m[2] === "/tree") {
      // Whole-run trees of finished runs are cached: the stress run's takes seconds.
      const ck = `${r.run.id}:${qp.get("max_nodes")}`;
      const whole = w.from === undefined && w.to === undefined && r.run.status !== "live";
      const { root, truncated } = (whole && treeCache.get(ck)) || cpuTree(inWin, qp);
      if (whole) treeCache.set(ck, { root, truncated });
      const body = { samples: inWin.length, from: w.from ?? 0, to: w.to ?? r.run.t_end_s, root };
      if (truncated) body.truncated = true;
      return send(res, 200, body);
    }
    if (m[2] === "/growth") return send(res, 200, growth(r.run.memory ? inWin : []));
    if (m[2] === "/speedscope")
      return send(res, 200, speedscope(r.run, r.samples), "application/json", {
        "Content-Disposition": `attachment; filename="${r.run.id}.speedscope.json"`,
      });
    return send(res, 404, { error: "not found" });
  }
  if (p.startsWith("/api/")) return send(res, 404, { error: "not found" });
  if (p.startsWith("/assets/")) {
    const target = normalize(join(dist, p));
    if (!target.startsWith(join(dist, "assets"))) return send(res, 404, "not found\n", "text/plain");
    return file(res, target);
  }
  // SPA fallback, as the real server does ("/" and everything under "/runs/").
  if (p === "/" || p === "/runs" || p.startsWith("/runs/")) return file(res, join(dist, "index.html"));
  return send(res, 404, "not found\n", "text/plain");
});

server.listen(port, "127.0.0.1", () => {
  console.log(`fixture server on http://127.0.0.1:${server.address().port} serving ${dist}`);
});
