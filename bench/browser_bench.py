#!/usr/bin/env python3
"""The web UI on a 10-million-sample run: time to the CPU flame graph, cold
and warm, and the flame graph's zoom redraws, in headless Chromium.

  browser_bench.py [--samples N] [--depth D] [--paths K] [--repeat R]
                   [--warm W] [--zooms Z] [--profile FILE] [--web DIR] [--trace-cpu]

Writes (once; cached in $VMPV_BENCH_CACHE, default /tmp/vmpv-bench-cache) a
profile with bench/make_profile.py, stores it in a release vmpv-server
(POST /api/v1/upload), then R times: restart the server (its query cache is
then empty: the run's first query reads it from SQLite) and run
bench/browser_bench.mjs, which opens /runs/{id}#cpu 1 + W times, each in a
fresh browser context (empty browser cache): the first open is "cold", the
others "warm" (the server has the run in its cache), and zooms the flame
graph Z times in the last open. Prints medians over the repetitions.

Targets (issue): the CPU view of a 10M-sample run drawn within 1 s of
opening; a zoom redraws in under 16 ms per frame.

Needs: a release build (build-release/, or $VMPV_BUILD), web/dist
(npm run build in web/), web/node_modules (npm ci), node and
/usr/bin/chromium.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (ROOT, BenchError, machine, main_guard, median, percentile,  # noqa: E402
                     start_daemon, table, warn_if_sanitized)
from make_profile import write_profile  # noqa: E402


def cached_profile(args) -> Path:
    if args.profile:
        p = Path(args.profile)
        if not p.exists():
            raise BenchError(f"{p} does not exist")
        return p
    cache = Path(os.environ.get("VMPV_BENCH_CACHE", "/tmp/vmpv-bench-cache"))
    cache.mkdir(parents=True, exist_ok=True)
    name = f"browser-{args.samples}-d{args.depth}" + (f"-p{args.paths}" if args.paths else "") + ".prof"
    p = cache / name
    if not p.exists():
        print(f"# writing {p} (make_profile.py --samples {args.samples} --depth {args.depth}"
              f"{f' --paths {args.paths}' if args.paths else ''}) ...", flush=True)
        t0 = time.monotonic()
        tmp = p.with_suffix(".tmp")
        write_profile(str(tmp), args.samples, depth=args.depth, paths=args.paths)
        tmp.rename(p)
        print(f"# {p.stat().st_size / 1e6:.0f} MB in {time.monotonic() - t0:.0f} s", flush=True)
    return p


def server_url(d) -> str:
    return d.address if "://" in d.address else "http://" + d.address


def upload(url: str, path: Path) -> tuple[str, float]:
    u = urllib.parse.urlsplit(url)
    q = urllib.parse.urlencode({"project": "browser bench", "function": path.name})
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=1800)
    t0 = time.monotonic()
    with open(path, "rb") as f:
        conn.request("POST", f"/api/v1/upload?{q}", body=f,
                     headers={"Content-Type": "application/octet-stream",
                              "Content-Length": str(path.stat().st_size)})
        res = conn.getresponse()
        body = res.read()
    dt = time.monotonic() - t0
    if res.status != 201:
        raise BenchError(f"upload answered {res.status}: {body[:300]!r}")
    return json.loads(body)["id"], dt


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=600) as r:
        return json.load(r)


def browser(url: str, run: str, opens: int, zooms: int, trace_cpu: bool) -> dict:
    node = shutil.which("node")
    if not node:
        raise BenchError("node is not installed")
    res = subprocess.run([node, str(ROOT / "bench" / "browser_bench.mjs"), "--base", url, "--run", run,
                          "--opens", str(opens), "--zooms", str(zooms), "--trace-cpu", "1" if trace_cpu else "0"],
                         capture_output=True, text=True, timeout=1800, cwd=ROOT / "web")
    if res.returncode != 0:
        raise BenchError(f"browser_bench.mjs failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def fmt(v: float) -> str:
    return "-" if v != v else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")


def report(reps: list, info: dict, nodes: int) -> None:
    cold = [rep["opens"][0] for rep in reps]
    warm = [o for rep in reps for o in rep["opens"][1:]]

    def api(opens, suffix):
        out = []
        for o in opens:
            out += [a["ms"] for a in o["api"] if a["path"].endswith(suffix)]
        return out

    def api_start(opens, suffix):
        return [a["start"] for o in opens for a in o["api"] if a["path"].endswith(suffix)]

    rows = []
    for label, opens in (("cold", cold), ("warm", warm)):
        rows.append([label, len(opens),
                     fmt(median([o["flame_ms"] for o in opens])),
                     fmt(max(o["flame_ms"] for o in opens)),
                     fmt(median([o["table_ms"] for o in opens])),
                     fmt(median(api(opens, "/ID"))),
                     fmt(median(api_start(opens, "/tree"))),
                     fmt(median(api(opens, "/tree"))),
                     fmt(median(api(opens, "/functions"))),
                     fmt(median([o["first_layout_ms"] for o in opens]))])
    print()
    print(f"run: {info['samples']:,} samples, /tree {nodes:,} nodes; browser cache empty at every open")
    print(table(["open", "n", "flame drawn ms (median)", "max", "table shown ms", "GET run ms",
                 "/tree sent at ms", "/tree ms", "/functions ms", "first layout+paint ms"], rows))

    zs = [z for rep in reps for z in rep["opens"][-1].get("zoom", [])]
    if zs:
        rows = []
        for key, label in (("handler_ms", "click handler (hit test, layout, paint, hover)"),
                           ("handler_cpu_ms", "click handler, main-thread CPU (trace)"),
                           ("draw_ms", "layout + paint (data-draw-ms)"),
                           ("mirror_ms", "DOM mirror, after the frame")):
            xs = [z[key] for z in zs if z.get(key) is not None]
            if not xs:
                continue
            per_rep = [median([z[key] for z in rep["opens"][-1]["zoom"] if z.get(key) is not None] or [float("nan")])
                       for rep in reps]
            rows.append([label, len(xs), fmt(median(xs)), fmt(percentile(xs, 90)), fmt(percentile(xs, 99)),
                         fmt(max(xs)), sum(x >= 16 for x in xs), " ".join(fmt(v) for v in per_rep)])
        print()
        print(f"zoom redraws ({len(zs)}; frames drawn per redraw: median {median([z['frames'] for z in zs]):.0f}, "
              f"max {max(z['frames'] for z in zs)})")
        print(table(["ms per redraw", "n", "median", "p90", "p99", "max", ">= 16 ms", "medians per repetition"], rows))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--depth", type=int, default=8,
                    help="stack depth (default 8: 10M samples then fit the server's 1 GiB upload limit)")
    ap.add_argument("--paths", type=int, default=0,
                    help="make_profile.py --paths: K random call paths (a wide tree); 0 = its small cyclic tree")
    ap.add_argument("--repeat", type=int, default=5, help="server restarts (cold opens)")
    ap.add_argument("--warm", type=int, default=3, help="warm opens after each cold one")
    ap.add_argument("--zooms", type=int, default=60, help="zooms in the last open of each repetition")
    ap.add_argument("--profile", help="use this vmprof file instead of generating one")
    ap.add_argument("--web", action="append", metavar="[LABEL=]DIR",
                    help="built web UI the server serves (default web/dist); give several to compare "
                         "UIs: each repetition then runs each of them, in turn, on a freshly started server")
    ap.add_argument("--trace-cpu", action="store_true",
                    help="zoom under a Chrome trace and report the click handler's main-thread CPU time too "
                         "(wall times on a busy machine include time the renderer was not running)")
    ap.add_argument("--keep", action="store_true", help="keep the server's data directory")
    ap.add_argument("--json", metavar="FILE", help="also write every measurement to FILE")
    args = ap.parse_args()
    warn_if_sanitized()
    webs = []
    for w in args.web or [str(ROOT / "web" / "dist")]:
        label, _, d = w.rpartition("=")
        d = str(Path(d).resolve())  # the server runs in another directory
        if not (Path(d) / "index.html").exists():
            raise BenchError(f"{d}/index.html is missing: npm run build in web/")
        webs.append((label or ("web/dist" if len(args.web or []) < 2 else d), d))
    prof = cached_profile(args)
    tmp = Path(tempfile.mkdtemp(prefix="vmpv-bench-browser-"))

    def srv_args(web: str) -> list:
        return ["--listen", "127.0.0.1:0", "--data", str(tmp / "server"), "--web", web, "--log-level", "warn"]
    server = start_daemon("vmpv-server", srv_args(webs[0][1]), tmp / "server-run")
    try:
        url = server_url(server)
        run, up_s = upload(url, prof)
        info = get_json(f"{url}/api/runs/{run}")
        print(f"# stored {info['samples']:,} samples ({prof.stat().st_size / 1e6:.0f} MB) as run {run} "
              f"in {up_s:.1f} s; status {info['status']}", flush=True)
        tree = get_json(f"{url}/api/runs/{run}/tree")

        def count(n):
            return 1 + sum(count(c) for c in n.get("children", []))
        print(f"# /tree: {count(tree['root']):,} nodes{' (cut by max_nodes)' if tree.get('truncated') else ''}", flush=True)

        reps = {label: [] for label, _ in webs}
        for r in range(args.repeat):
            for label, web in webs:
                server.stop()
                server = start_daemon("vmpv-server", srv_args(web), tmp / "server-run")
                url = server_url(server)
                res = browser(url, run, 1 + args.warm, args.zooms, args.trace_cpu)
                reps[label].append(res)
                o = res["opens"]
                warm_ms = ", ".join(f"{x['flame_ms']:.0f}" for x in o[1:])
                print(f"# repetition {r + 1}{f' [{label}]' if len(webs) > 1 else ''}: flame drawn cold "
                      f"{o[0]['flame_ms']:.0f} ms, warm {warm_ms} ms; load {os.getloadavg()[0]:.2f}", flush=True)
                for x in o:
                    if x.get("errors"):
                        raise BenchError(f"page errors: {x['errors']}")
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        Path(args.json).write_text(json.dumps({"run": run, "samples": info["samples"], "reps": reps}))
    for label, _ in webs:
        if len(webs) > 1:
            print(f"\n== UI {label}")
        report(reps[label], info, count(tree["root"]))
    print()
    print(f"upload (POST /api/v1/upload, {prof.stat().st_size / 1e6:.0f} MB): {up_s:.1f} s")
    print(f"machine: {machine()}")
    return 0


if __name__ == "__main__":
    main_guard(main)
