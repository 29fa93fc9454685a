"""The analysis API of vmpv-server (docs/API.md "Analysis (issue 6)" and
"The seed's original intake"), against the real binary.

Every answer is compared with a truth computed here from vmprof's own
reader (vmprof.reader) on real profiles recorded by vmprof, and on
synthetic files whose every byte is known: CPU trees as counts of samples
per stack prefix, windows from the sample clock in the file, memory growth
from the RSS values, diffs from two truths, the speedscope file sample by
sample, and /submit/ bodies built here the way the old client built them.

Run: VMPV_BUILD=/path/to/build /tmp/venv/bin/python -m pytest tests/test_server_api.py
"""
import collections
import concurrent.futures
import gzip
import json
import os
import pathlib
import random
import signal
import struct
import subprocess
import sys
import urllib.request
import zlib

import pytest

vmprof = pytest.importorskip("vmprof")

from harness import vmprof_truth  # noqa: E402
from test_server import (HOSTILE, SERVER_BIN, TOKEN, batch, chunks,  # noqa: E402
                         get_json, http, label_of, post_batch, record, sample_ends,
                         split_name, synthetic, upload)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "bench"))
from make_profile import write_profile  # noqa: E402

ADMIN = "admin-sekret"
READ = "read sekret;=%"


class ApiServer:
    """vmpv-server on a free port, with the tokens in its environment."""

    def __init__(self, tmp, admin=None, read=None, cache_mb=None, kind="", args=()):
        self.kind = kind
        self.args = list(args)
        if not os.path.exists(SERVER_BIN):
            pytest.skip("no server binary at %s (set VMPV_BUILD)" % SERVER_BIN)
        env = dict(os.environ)
        env.pop("VMPV_ADMIN_TOKEN", None)
        env.pop("VMPV_READ_TOKEN", None)
        if admin is not None:
            env["VMPV_ADMIN_TOKEN"] = admin
        if read is not None:
            env["VMPV_READ_TOKEN"] = read
        env.pop("VMPV_QUERY_CACHE_MB", None)
        if cache_mb is not None:
            env["VMPV_QUERY_CACHE_MB"] = str(cache_mb)
        self.cached = cache_mb != 0
        tmp.mkdir(parents=True, exist_ok=True)
        self.log = tmp / "server.log"
        self.data = tmp / "data"
        self.env = env
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [SERVER_BIN, "--listen", "127.0.0.1:0", "--data", str(self.data), "--web",
             str(self.data.parent / "no-web"), "--log-level", "info", *self.args],
            stdout=subprocess.PIPE, stderr=open(self.log, "ab"), text=True, env=self.env)
        line = self.proc.stdout.readline()
        if "listening on http://127.0.0.1:" not in line:
            self.proc.kill()
            raise AssertionError("no ready line: %r %s" % (line, self.log.read_text()))
        self.base = line.split("listening on ", 1)[1].strip()

    def stop(self):
        early = self.proc.poll()
        if early is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        err = self.log.read_text()
        assert early is None and rc == 0, err
        return err


# ---- the truth ------------------------------------------------------------

Sample = collections.namedtuple("Sample", "t rss keys labels")


def samples_of(path):
    """Every sample in file order: its clock (ns), RSS, and stack as
    function keys (name, file, line) and collapsed labels, root first."""
    data = path.read_bytes()
    ends, state = sample_ends(path)
    names = dict(state.virtual_ips)  # sorted: the greatest name wins
    out = []
    for i, prof in enumerate(state.profiles):
        trace = list(prof[0])
        if state.profile_lines:
            d = len(trace)
            trace = [a for j, a in enumerate(trace) if (d - 1 - j) % 2 == 1]
        keys, labels = [], []
        for a in trace:
            name = names.get(a)
            if name is None:
                key, fields = ("<unknown 0x%x>" % (a & 0xFFFFFFFFFFFFFFFF), "", 0), 1
            else:
                sym, file, line, fields = split_name(name)
                key = (sym, file, line)
            keys.append(key)
            labels.append(label_of((key, fields)))
        if state.version >= 7:
            t = struct.unpack("<q", data[ends[i] - 8:ends[i]])[0]
        else:
            t = i * state.period * 1000
        out.append(Sample(t, prof[3], tuple(keys), tuple(labels)))
    return out


def in_window(samples, frm=None, to=None):
    """Indices of the samples with from <= t <= to (seconds after the first
    sample; a bound in seconds means the nearest nanosecond)."""
    if not samples:
        return []
    first = min(s.t for s in samples)  # the run's clock starts at its earliest sample
    lo = first + round(frm * 1e9) if frm is not None else -2**63
    hi = first + round(to * 1e9) if to is not None else 2**63
    return [i for i, s in enumerate(samples) if lo <= s.t <= hi]


def cpu_truth(samples, idx):
    """Per stack prefix: samples whose stack starts with it (total) and
    whose stack is it (self); per function: self and total (once per
    sample however often it recurses)."""
    tot, selfc = collections.Counter(), collections.Counter()
    fself, ftot = collections.Counter(), collections.Counter()
    for i in idx:
        keys = samples[i].keys
        for d in range(len(keys) + 1):
            tot[keys[:d]] += 1
        selfc[keys] += 1
        if keys:
            fself[keys[-1]] += 1
            for k in set(keys):
                ftot[k] += 1
    return tot, selfc, fself, ftot


def flatten(root, fields):
    """The API's tree as {path: (field values)}; sibling keys are unique."""
    out = {}
    todo = [((), root)]
    while todo:
        path, node = todo.pop()
        assert path not in out
        out[path] = tuple(node[f] for f in fields)
        keys = [(c["name"], c["file"], c["line"]) for c in node["children"]]
        assert len(keys) == len(set(keys)), "siblings merge by function"
        for k, c in zip(keys, node["children"]):
            todo.append((path + (k,), c))
    return out


def funcs_of(doc, fields):
    return {(f["name"], f["file"], f["line"]): tuple(f[x] for x in fields)
            for f in doc["functions"]}


def nonzero(d):
    return {k: v for k, v in d.items() if v}


# ---- fixtures ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="module", params=["cached", "streamed", "summary"])
def server(tmp, request):
    """Every analysis answer three times: from the in-memory cache, with the
    cache off (VMPV_QUERY_CACHE_MB=0), streamed from the store per query,
    and from summary files: the runs fixture restarts this server once its
    runs are stored, so each run's first query maps DATA/rundata/ID.rd."""
    s = ApiServer(tmp / request.param, admin=ADMIN,
                  cache_mb=0 if request.param == "streamed" else None, kind=request.param)
    yield s
    s.stop()


def summary_file(server, rid):
    return server.data / "rundata" / (rid + ".rd")


def wait_summaries(server, ids, timeout=60):
    """Until the server wrote every run's summary file (after the upload's
    reply, by its cache warm-up)."""
    import time
    deadline = time.monotonic() + timeout
    while not all(summary_file(server, r).exists() for r in ids):
        assert time.monotonic() < deadline, server.log.read_text()[-2000:]
        time.sleep(0.05)


@pytest.fixture(scope="module")
def plain(tmp):
    return record(tmp, "plain.dat", lines=False)


@pytest.fixture(scope="module")
def plain2(tmp):
    return record(tmp, "plain2.dat", lines=False)


@pytest.fixture(scope="module")
def lined(tmp):
    return record(tmp, "lines.dat", lines=True)


def put(server, path, **query):
    status, _, body = upload(server.base, path.read_bytes(), **query)
    assert status == 201, body
    return json.loads(body)["id"]


@pytest.fixture(scope="module")
def runs(server, plain, plain2, lined, tmp):
    syn = synthetic(tmp / "syn.dat", 4000)
    syn6 = synthetic(tmp / "syn6.dat", 1500, version=6, seed=5)
    blocky = tmp / "blocky.dat"
    if not blocky.exists():
        # Few distinct stacks over many samples: the cache's block summaries.
        write_profile(str(blocky), 30000, depth=6, functions=12, period_us=1000)
    jumpy = tmp / "jumpy.dat"
    if not jumpy.exists():
        write_jumpy(jumpy)
    out = {
        "blocky": (put(server, blocky, project="api-syn"), blocky),
        "jumpy": (put(server, jumpy, project="api-syn"), jumpy),
        "plain": (put(server, plain, project="api"), plain),
        "plain2": (put(server, plain2, project="api"), plain2),
        "lined": (put(server, lined, project="api"), lined),
        "syn": (put(server, syn, project="api-syn"), syn),
        "syn6": (put(server, syn6, project="api-syn"), syn6),
    }
    if server.kind == "summary":
        wait_summaries(server, [rid for rid, _ in out.values()])
        server.stop()
        server.start()
    return out


def write_vmprof(path, samples, names, version=7, period_us=1000):
    """A vmprof file (vmprof-format.md section 4) from (stack root first,
    rss, t_ns) triples and {address: name}."""
    out = bytearray(struct.pack("<5q", 0, 3, 0, period_us, 0))
    out += b"\x05" + struct.pack(">h", version) + bytes([1, 7]) + b"cpython"
    for stack, rss, t in samples:
        ents = list(reversed(stack))  # leaf first in the file
        out += b"\x01" + struct.pack("<qq%dQ" % len(ents), 1, len(ents), *ents)
        out += struct.pack("<QQ", 0x7000, rss)
        if version >= 7:
            out += struct.pack("<q", t)
    for a, name in names.items():
        out += b"\x02" + struct.pack("<Qq", a, len(name)) + name
    out += b"\x03" + struct.pack("<qq", 1764000100, 0) + b"\0" * 8
    path.write_bytes(bytes(out))


def write_jumpy(path):
    """A sample clock that goes backwards now and then (threads with their
    own clocks can do that), recursion, and a stack that is empty."""
    rnd = random.Random(7)
    addrs = [0x5000 + 0x10 * i for i in range(9)]
    names = {a: ("py:j%d:%d:/src/j.py" % (i, 10 + i)).encode() for i, a in enumerate(addrs)}
    stacks = [[addrs[0]] + [rnd.choice(addrs[:5]) for _ in range(rnd.randint(0, 6))]
              for _ in range(40)] + [[]]
    samples, t, rss = [], 10**9, 20000
    for i in range(6000):
        t += 1000000
        rss = max(1000, rss + rnd.randint(-300, 320))
        jump = -rnd.randint(1, 40) * 1000000 if i % 97 == 50 else 0
        samples.append((rnd.choice(stacks), rss, t + jump))
    write_vmprof(path, samples, names)


ALL = ("plain", "plain2", "lined", "syn", "syn6", "blocky", "jumpy")


def span_s(samples):
    return (max(s.t for s in samples) - min(s.t for s in samples)) / 1e9


# ---- /tree and /functions -----------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_tree_whole_run(server, runs, name):
    rid, path = runs[name]
    samples = samples_of(path)
    tot, selfc, _, _ = cpu_truth(samples, range(len(samples)))
    doc = get_json(server.base + "/api/runs/%s/tree?max_nodes=200000" % rid)
    assert doc["samples"] == len(samples) and doc["truncated"] is False
    assert doc["from"] == 0 and doc["to"] == pytest.approx(span_s(samples))
    root = doc["root"]
    assert (root["name"], root["file"], root["line"]) == ("all", "", 0)
    got = flatten(root, ("total", "self"))
    assert got == {p: (tot[p], selfc[p]) for p in tot}
    # Children by total, biggest first.
    todo = [root]
    while todo:
        node = todo.pop()
        totals = [c["total"] for c in node["children"]]
        assert totals == sorted(totals, reverse=True)
        todo.extend(node["children"])


@pytest.mark.parametrize("name", ("plain", "syn", "syn6", "blocky", "jumpy"))
def test_tree_and_functions_of_a_window(server, runs, name):
    rid, path = runs[name]
    samples = samples_of(path)
    first = min(s.t for s in samples)
    # Bounds exactly at sample times: both ends are inclusive.
    a, b = len(samples) // 4, len(samples) // 2
    frm, to = (samples[a].t - first) / 1e9, (samples[b].t - first) / 1e9
    idx = in_window(samples, frm, to)
    assert a in idx and b in idx and 0 < len(idx) < len(samples)
    tot, selfc, fself, ftot = cpu_truth(samples, idx)
    q = "from=%r&to=%r" % (frm, to)
    doc = get_json(server.base + "/api/runs/%s/tree?%s" % (rid, q))
    assert doc["samples"] == len(idx)
    assert doc["from"] == pytest.approx(frm) and doc["to"] == pytest.approx(to)
    assert flatten(doc["root"], ("total", "self")) == {p: (tot[p], selfc[p]) for p in tot}
    funcs = get_json(server.base + "/api/runs/%s/functions?%s" % (rid, q))
    assert funcs["samples"] == len(idx)
    assert funcs_of(funcs, ("self", "total")) == {k: (fself[k], ftot[k]) for k in ftot}
    totals = [f["total"] for f in funcs["functions"]]
    assert totals == sorted(totals, reverse=True)
    # Only one bound: the window runs to the end, or from the start.
    for q, want in (("from=%r" % frm, in_window(samples, frm, None)),
                    ("to=%r" % to, in_window(samples, None, to))):
        assert get_json(server.base + "/api/runs/%s/functions?%s" % (rid, q))["samples"] == \
            len(want)
    # An empty window and a reversed one.
    empty = get_json(server.base + "/api/runs/%s/tree?from=1e6&to=2e6" % rid)
    assert empty["samples"] == 0 and empty["root"]["children"] == []
    status, _, body = http("GET", server.base + "/api/runs/%s/tree?from=2&to=1" % rid)
    assert status == 400 and "error" in json.loads(body)


def test_functions_whole_run_unchanged(server, runs):
    rid, path = runs["plain"]
    t = vmprof_truth(path)
    doc = get_json(server.base + "/api/runs/%s/functions" % rid)
    assert set(doc) == {"samples", "functions"}  # no window, no window fields
    assert doc["samples"] == t["samples"]
    assert nonzero({k: v[0] for k, v in funcs_of(doc, ("self",)).items()}) == t["self"]


def test_tree_max_nodes_cuts_smallest(server, runs):
    rid, path = runs["syn"]
    samples = samples_of(path)
    tot, selfc, _, _ = cpu_truth(samples, range(len(samples)))
    assert len(tot) > 60
    for n in (1, 2, 7, 60):
        doc = get_json(server.base + "/api/runs/%s/tree?max_nodes=%d" % (rid, n))
        got = flatten(doc["root"], ("total", "self"))
        assert len(got) <= n and doc["truncated"] is True
        # What is kept is exact (totals include the cut children), and the
        # kept nodes are the biggest.
        for p, (total, s) in got.items():
            assert total == tot[p] and s == selfc[p]
        cut = [tot[p] for p in tot if p not in got]
        assert max(cut) <= min(v[0] for v in got.values())
    for bad in ("max_nodes=0", "max_nodes=200001", "max_nodes=x"):
        status, _, _ = http("GET", server.base + "/api/runs/%s/tree?%s" % (rid, bad))
        assert status == 400, bad


# ---- /memory: prefix and most frequent stack ---------------------------------

def memory_truth(samples, nb):
    first, last = min(s.t for s in samples), max(s.t for s in samples)
    span = last - first
    buckets = collections.defaultdict(list)
    for i, s in enumerate(samples):
        b = 0 if span <= 0 else min(nb - 1, max(0, (s.t - first) * nb // span))
        buckets[b].append(i)
    out = []
    for b in sorted(buckets):
        idx = buckets[b]
        rss = [samples[i].rss for i in idx]
        best = max(idx, key=lambda i: (samples[i].rss, -i))
        prefix = samples[idx[0]].labels
        for i in idx:
            labels = samples[i].labels
            k = 0
            while k < min(len(prefix), len(labels)) and prefix[k] == labels[k]:
                k += 1
            prefix = prefix[:k]
        # Stacks as shown: labels, after the server's merging by function.
        counts = collections.Counter(samples[i].keys for i in idx)
        top = max(counts.values())
        out.append({"n": len(idx), "min": min(rss), "max": max(rss),
                    "mean": (sum(rss) + len(idx) // 2) // len(idx),
                    "stack": samples[best].labels, "prefix": prefix, "frequent_n": top,
                    "frequent": {k for k, v in counts.items() if v == top}})
    return out


@pytest.mark.parametrize("name,nb", [("plain", 1), ("plain", 7), ("syn", 1), ("syn", 40),
                                     ("syn6", 13), ("lined", 5), ("blocky", 1), ("blocky", 3),
                                     ("blocky", 17), ("blocky", 800), ("jumpy", 1),
                                     ("jumpy", 9), ("jumpy", 300)])
def test_memory_prefix_and_frequent(server, runs, name, nb):
    rid, path = runs[name]
    samples = samples_of(path)
    doc = get_json(server.base + "/api/runs/%s/memory?buckets=%d" % (rid, nb))
    want = memory_truth(samples, nb)
    assert len(doc["points"]) == len(want)
    stacks = [tuple(s) for s in doc["stacks"]]
    key_of = {s.labels: s.keys for s in samples}
    for p, w in zip(doc["points"], want):
        for f in ("n", "min", "max", "mean", "frequent_n"):
            assert p[f] == w[f], (f, p, w)
        assert stacks[p["stack"]] == w["stack"]
        assert stacks[p["prefix"]] == w["prefix"]
        assert key_of[stacks[p["frequent"]]] in w["frequent"]
    if nb == 1:
        assert doc["points"][0]["n"] == len(samples)


@pytest.mark.parametrize("name,a,b", [("syn", 100, 130), ("blocky", 1500, 27000),
                                      ("blocky", 2047, 4097), ("jumpy", 500, 4000)])
def test_memory_window_prefix(server, runs, name, a, b):
    rid, path = runs[name]
    samples = samples_of(path)
    first = min(s.t for s in samples)
    frm, to = (samples[a].t - first) / 1e9, (samples[b].t - first) / 1e9
    doc = get_json(server.base + "/api/runs/%s/memory?buckets=1&from=%r&to=%r" % (rid, frm, to))
    idx = in_window(samples, frm, to)
    w = memory_truth([samples[i] for i in idx], 1)[0]
    p = doc["points"][0]
    assert (p["n"], p["max"], p["min"], p["mean"], p["frequent_n"]) == \
        (w["n"], w["max"], w["min"], w["mean"], w["frequent_n"])
    assert tuple(doc["stacks"][p["prefix"]]) == w["prefix"]
    assert tuple(doc["stacks"][p["stack"]]) == w["stack"]


# ---- /growth --------------------------------------------------------------------

def growth_truth(samples, idx):
    sel = set(idx)
    g, r = collections.Counter(), collections.Counter()  # per prefix, subtree sums
    sg, sr = collections.Counter(), collections.Counter()  # per exact stack
    fg, fr, fsg, fsr = (collections.Counter() for _ in range(4))
    for i in idx:
        if i - 1 not in sel:
            continue
        d = samples[i].rss - samples[i - 1].rss
        keys = samples[i].keys
        up, down = max(d, 0), max(-d, 0)
        for k in range(len(keys) + 1):
            g[keys[:k]] += up
            r[keys[:k]] += down
        sg[keys] += up
        sr[keys] += down
        if keys:
            fsg[keys[-1]] += up
            fsr[keys[-1]] += down
            for k in set(keys):
                fg[k] += up
                fr[k] += down
    return g, r, sg, sr, fg, fr, fsg, fsr


@pytest.mark.parametrize("name,window", [("plain", None), ("plain2", None), ("syn", None),
                                         ("syn", (0.2, 0.6)), ("lined", (0.1, 0.9)),
                                         ("blocky", (0.3, 0.7)), ("jumpy", None),
                                         ("jumpy", (0.25, 0.5))])
def test_growth_matches_rss_deltas(server, runs, name, window):
    rid, path = runs[name]
    samples = samples_of(path)
    q = "max_nodes=200000"
    idx = list(range(len(samples)))
    if window:
        first = min(s.t for s in samples)
        a, b = int(len(samples) * window[0]), int(len(samples) * window[1])
        frm, to = (samples[a].t - first) / 1e9, (samples[b].t - first) / 1e9
        idx = in_window(samples, frm, to)
        q += "&from=%r&to=%r" % (frm, to)
    g, r, sg, sr, fg, fr, fsg, fsr = growth_truth(samples, idx)
    doc = get_json(server.base + "/api/runs/%s/growth?%s" % (rid, q))
    assert doc["grown_kb"] == g[()] and doc["released_kb"] == r[()]
    if name.startswith("plain"):
        assert g[()] > 0 and r[()] > 0, "the workload both grows and frees memory"
    funcs = funcs_of(doc, ("self_grown_kb", "total_grown_kb", "self_released_kb",
                           "total_released_kb"))
    want = {k: (fsg[k], fg[k], fsr[k], fr[k]) for k in set(fg) | set(fr) if fg[k] or fr[k]}
    assert funcs == want
    order = [(f["total_grown_kb"]) for f in doc["functions"]]
    assert order == sorted(order, reverse=True)
    tree = flatten(doc["root"], ("grown_kb", "released_kb", "self_grown_kb",
                                 "self_released_kb"))
    assert tree == {p: (g[p], r[p], sg[p], sr[p]) for p in set(g) | set(r)
                    if g[p] or r[p] or p == ()}


# ---- /api/diff --------------------------------------------------------------------

def test_diff_of_two_runs(server, runs):
    (ida, pa), (idb, pb) = runs["plain"], runs["plain2"]
    sa, sb = samples_of(pa), samples_of(pb)
    ta, sa_self, fsa, fta = cpu_truth(sa, range(len(sa)))
    tb, sb_self, fsb, ftb = cpu_truth(sb, range(len(sb)))
    doc = get_json(server.base + "/api/diff?a=%s&b=%s&max_nodes=200000" % (ida, idb))
    assert doc["a"]["id"] == ida and doc["b"]["id"] == idb
    assert doc["a"]["samples"] == len(sa) and doc["b"]["samples"] == len(sb)
    na, nb = len(sa), len(sb)
    got = {(f["name"], f["file"], f["line"]): f for f in doc["functions"]}
    assert set(got) == set(fta) | set(ftb)
    for k, f in got.items():
        assert (f["a_self"], f["a_total"], f["b_self"], f["b_total"]) == \
            (fsa[k], fta[k], fsb[k], ftb[k])
        assert f["delta_self_pct"] == pytest.approx(100 * (fsb[k] / nb - fsa[k] / na))
        assert f["delta_total_pct"] == pytest.approx(100 * (ftb[k] / nb - fta[k] / na))
    deltas = [abs(f["delta_total_pct"]) for f in doc["functions"]]
    assert deltas == sorted(deltas, reverse=True)
    tree = flatten(doc["root"], ("a_total", "b_total", "a_self", "b_self"))
    paths = set(ta) | set(tb)
    assert tree == {p: (ta[p], tb[p], sa_self[p], sb_self[p]) for p in paths}
    assert any(f["name"] == HOSTILE for f in doc["functions"])


def test_diff_windows_and_errors(server, runs):
    (ida, pa), (idb, pb) = runs["syn"], runs["syn6"]
    sa, sb = samples_of(pa), samples_of(pb)
    first = min(s.t for s in sa)
    frm, to = (sa[500].t - first) / 1e9, (sa[900].t - first) / 1e9
    doc = get_json(server.base + "/api/diff?a=%s&b=%s&a_from=%r&a_to=%r&b_to=0.5"
                   % (ida, idb, frm, to))
    ia, ib = in_window(sa, frm, to), in_window(sb, None, 0.5)
    assert doc["a"]["samples"] == len(ia) and doc["b"]["samples"] == len(ib)
    _, _, fsa, fta = cpu_truth(sa, ia)
    _, _, fsb, ftb = cpu_truth(sb, ib)
    got = funcs_of(doc, ("a_self", "a_total", "b_self", "b_total"))
    assert got == {k: (fsa[k], fta[k], fsb[k], ftb[k]) for k in set(fta) | set(ftb)}
    # A run against itself: no deltas.
    same = get_json(server.base + "/api/diff?a=%s&b=%s" % (ida, ida))
    assert all(f["delta_total_pct"] == 0 and f["delta_self_pct"] == 0
               for f in same["functions"])
    for q, code in (("a=%s" % ida, 400), ("a=%s&b=nothex" % ida, 400),
                    ("a=%s&b=%s" % (ida, "0" * 32), 404),
                    ("a=%s&b=%s&a_from=3&a_to=1" % (ida, idb), 400)):
        status, _, body = http("GET", server.base + "/api/diff?" + q)
        assert status == code, (q, body)
        assert "error" in json.loads(body)


# ---- speedscope ------------------------------------------------------------------

@pytest.mark.parametrize("name", ("plain", "lined", "syn6", "jumpy"))
def test_speedscope_export(server, runs, name):
    rid, path = runs[name]
    samples = samples_of(path)
    status, headers, body = http("GET", server.base + "/api/runs/%s/speedscope" % rid)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Content-Disposition"].startswith("attachment")
    doc = json.loads(body)
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = doc["shared"]["frames"]
    (prof,) = doc["profiles"]
    assert prof["type"] == "sampled" and prof["unit"] == "none"
    assert prof["startValue"] == 0 and prof["endValue"] == len(samples)
    assert prof["weights"] == [1] * len(samples)
    key = [(f["name"], f.get("file", ""), f.get("line", 0)) for f in frames]
    assert len(set(key)) == len(key)
    got = [tuple(key[i] for i in stack) for stack in prof["samples"]]
    assert got == [s.keys for s in samples]  # every sample, in order, root first


# ---- hostile names ---------------------------------------------------------------

def test_hostile_name_is_data_everywhere(server, runs):
    rid, _ = runs["plain"]
    base = server.base + "/api/runs/" + rid
    tree = get_json(base + "/tree")
    seen = []
    todo = [tree["root"]]
    while todo:
        n = todo.pop()
        seen.append(n["name"])
        todo.extend(n["children"])
    assert HOSTILE in seen
    assert any(f["name"] == HOSTILE for f in get_json(base + "/growth")["functions"] +
               get_json(base + "/functions")["functions"])
    scope = get_json(base + "/speedscope")
    assert any(f["name"] == HOSTILE for f in scope["shared"]["frames"])
    mem = get_json(base + "/memory?buckets=200")
    assert all(isinstance(x, str) for s in mem["stacks"] for x in s)


# ---- /api/runs filters and sorting ------------------------------------------------

def test_runs_filters_and_sorting(server, plain, tmp):
    data = plain.read_bytes()
    ids = {}
    for proj, fn in (("sort-x", "zeta.main"), ("sort-x", "alpha.job"), ("sort-y", "Beta.Job")):
        status, _, body = upload(server.base, data, project=proj, function=fn)
        assert status == 201
        ids[fn] = json.loads(body)["id"]
    base = server.base + "/api/runs?limit=1000"
    every = get_json(base)["runs"]
    assert len(every) == get_json(base)["total"]
    got = get_json(base + "&function=job")
    assert {r["id"] for r in got["runs"]} == {ids["alpha.job"], ids["Beta.Job"]}
    assert got["total"] == 2
    got = get_json(base + "&function=JOB&project=sort-y")
    assert [r["id"] for r in got["runs"]] == [ids["Beta.Job"]]
    # since/until: start times, ISO 8601 or Unix seconds, inclusive.
    starts = sorted({r["start_time"] for r in every})
    mid = starts[len(starts) // 2]
    since = get_json(base + "&since=" + mid)["runs"]
    assert {r["id"] for r in since} == {r["id"] for r in every if r["start_time"] >= mid}
    # start_time shows milliseconds; the bound is exact to the microsecond.
    until = {r["id"] for r in get_json(base + "&until=" + mid)["runs"]}
    assert {r["id"] for r in every if r["start_time"] < mid} <= until
    assert until <= {r["id"] for r in every if r["start_time"] <= mid}
    assert get_json(base + "&since=4102444800")["total"] == 0  # 2100-01-01
    assert get_json(base + "&until=1")["total"] == 0
    assert get_json(base + "&since=2000-01-01T00:00:00%2B02:00")["total"] == len(every)
    # Every sort, both orders, and paging through a sorted list.
    keys = {"start_time": lambda r: r["start_time"], "duration": lambda r: r["duration_s"],
            "peak_rss": lambda r: r["peak_rss_kb"], "samples": lambda r: r["samples"],
            "project": lambda r: r["project"], "function": lambda r: r["function"]}
    for sort, key in keys.items():
        for order in ("asc", "desc"):
            got = get_json(base + "&sort=%s&order=%s" % (sort, order))["runs"]
            assert len(got) == len(every)
            vals = [key(r) for r in got]
            assert vals == sorted(vals, reverse=order == "desc"), (sort, order)
            page = get_json(server.base + "/api/runs?sort=%s&order=%s&limit=2&offset=1"
                            % (sort, order))
            assert [r["id"] for r in page["runs"]] == [r["id"] for r in got[1:3]]
            assert page["total"] == len(every)
    for bad in ("sort=size", "order=up", "since=yesterday", "until=2026-13-01"):
        status, _, body = http("GET", server.base + "/api/runs?" + bad)
        assert status == 400 and "error" in json.loads(body), bad


# ---- DELETE and the tokens -------------------------------------------------------

def test_delete_needs_admin_token(server, plain):
    rid = put(server, plain, project="doomed")
    url = server.base + "/api/runs/" + rid
    get_json(url + "/tree")  # cached now
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN}):
        status, _, body = http("DELETE", url, headers=headers)
        assert status == 403 and "error" in json.loads(body)
    auth = {"Authorization": "Bearer " + ADMIN}
    status, _, body = http("DELETE", server.base + "/api/runs/" + "0" * 32, headers=auth)
    assert status == 404
    status, _, body = http("DELETE", url, headers=auth)
    assert (status, body) == (204, b"")
    for path in ("", "/tree", "/functions", "/memory", "/speedscope"):
        assert http("GET", url + path)[0] == 404, path
    assert rid not in {r["id"] for r in get_json(server.base + "/api/runs?limit=1000")["runs"]}
    assert http("DELETE", url, headers=auth)[0] == 404


def test_delete_is_off_without_admin_token(tmp, plain):
    s = ApiServer(tmp / "noadmin")
    try:
        rid = put(s, plain)
        status, _, body = http("DELETE", s.base + "/api/runs/" + rid,
                               headers={"Authorization": "Bearer "})
        assert status == 403 and "admin token" in json.loads(body)["error"]
        assert http("GET", s.base + "/api/runs/" + rid)[0] == 200
    finally:
        s.stop()


def test_read_token(tmp, plain):
    s = ApiServer(tmp / "reader", admin=ADMIN, read=READ)
    try:
        rid = put(s, plain)  # intake is not a read
        for path in ("/api/runs", "/api/runs/" + rid, "/api/runs/%s/tree" % rid,
                     "/api/diff?a=%s&b=%s" % (rid, rid), "/api/nope"):
            status, _, body = http("GET", s.base + path)
            assert status == 401 and "error" in json.loads(body), path
            status, _, _ = http("GET", s.base + path,
                                headers={"Authorization": "Bearer " + READ})
            assert status in (200, 404), path
        assert http("GET", s.base + "/api/runs", headers={"Authorization": "Bearer no"})[0] == 401
        # Pages and health stay public.
        assert http("GET", s.base + "/")[0] == 200
        assert http("GET", s.base + "/healthz")[0] == 200
        # /login sets the cookie and goes to /; the cookie then reads.
        import urllib.request
        q = urllib.request.quote(READ, safe="")

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k):
                return None
        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(s.base + "/login?token=" + q)
            raise AssertionError("no redirect")
        except urllib.error.HTTPError as e:
            assert e.code == 302 and e.headers["Location"] == "/"
            cookie = e.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and cookie.startswith("vmpv_token=")
        value = cookie.split(";", 1)[0]
        status, _, _ = http("GET", s.base + "/api/runs", headers={"Cookie": "a=b; " + value})
        assert status == 200
        assert http("GET", s.base + "/api/runs", headers={"Cookie": "vmpv_token=x"})[0] == 401
        status, _, body = http("GET", s.base + "/login?token=wrong")
        assert status == 403
        # The admin token reads too, and deletes.
        auth = {"Authorization": "Bearer " + ADMIN}
        assert http("GET", s.base + "/api/runs", headers=auth)[0] == 200
        assert http("DELETE", s.base + "/api/runs/" + rid, headers=auth)[0] == 204
    finally:
        s.stop()


# ---- POST /submit/: the old client ---------------------------------------------------

def mp(o):
    """msgpack as the old client's msgpack-python 0.4 wrote it under Python
    2: str values as raw (str type), and int keys, lists, dicts as usual."""
    if o is None:
        return b"\xc0"
    if o is True or o is False:
        return b"\xc3" if o else b"\xc2"
    if isinstance(o, int):
        if 0 <= o < 128:
            return bytes([o])
        if -32 <= o < 0:
            return struct.pack("b", o)
        if o >= 0:
            for code, fmt in ((0xcc, ">B"), (0xcd, ">H"), (0xce, ">I"), (0xcf, ">Q")):
                if o < 1 << (8 * struct.calcsize(fmt)):
                    return bytes([code]) + struct.pack(fmt, o)
        for code, fmt in ((0xd0, ">b"), (0xd1, ">h"), (0xd2, ">i"), (0xd3, ">q")):
            if o >= -(1 << (8 * struct.calcsize(fmt) - 1)):
                return bytes([code]) + struct.pack(fmt, o)
    if isinstance(o, float):
        return b"\xcb" + struct.pack(">d", o)
    if isinstance(o, str):
        o = o.encode()
    if isinstance(o, (bytes, bytearray)):
        n = len(o)
        if n < 32:
            return bytes([0xa0 | n]) + o
        if n < 1 << 8:
            return b"\xd9" + struct.pack(">B", n) + o
        if n < 1 << 16:
            return b"\xda" + struct.pack(">H", n) + o
        return b"\xdb" + struct.pack(">I", n) + o
    if isinstance(o, (list, tuple)):
        n = len(o)
        head = bytes([0x90 | n]) if n < 16 else (
            b"\xdc" + struct.pack(">H", n) if n < 1 << 16 else b"\xdd" + struct.pack(">I", n))
        return head + b"".join(mp(x) for x in o)
    if isinstance(o, dict):
        n = len(o)
        head = bytes([0x80 | n]) if n < 16 else (
            b"\xde" + struct.pack(">H", n) if n < 1 << 16 else b"\xdf" + struct.pack(">I", n))
        return head + b"".join(mp(k) + mp(v) for k, v in o.items())
    raise TypeError(type(o))


def old_client_body(path, int_keys=False, **meta):
    """What vmprof_viewer_client.protocol.upload sent for this profile."""
    stats = vmprof.read_profile(str(path))
    mem_profile = [(list(p[0]), p[3]) for p in stats.profiles]
    names = {(k if int_keys else str(k)): v for k, v in stats.adr_dict.items()}
    data = {
        "version": 2,
        "cpu_profile": gzip.compress(mp([b"1", len(mem_profile), {}, []])),
        "mem_profile": gzip.compress(mp(mem_profile)),
        "addr_name_map": gzip.compress(mp(names)),
        "project": "old-client",
        "max_mem": max(p[1] for p in mem_profile),
        "period": 0.005 * 10 ** 6,
        "duration": len(mem_profile) * 0.005 * 10 ** 6,
    }
    data.update(meta)
    return mp(data), stats


def submit(server, body):
    return http("POST", server.base + "/submit/", body,
                {"Content-Type": "application/x-msgpack"})


@pytest.mark.parametrize("int_keys", [False, True])
def test_submit_matches_vmprof(server, plain, int_keys):
    body, stats = old_client_body(plain, int_keys, start_date="2017-03-01T12:34:56.250000+00:00",
                                  top_level_function="demo.main")
    status, headers, text = submit(server, body)
    assert status == 200, text
    assert headers["Content-Type"].startswith("text/plain")
    path = text.decode()
    assert path.startswith("/runs/") and len(path) == 6 + 32
    rid = path[6:]
    t = vmprof_truth(plain)
    run = get_json(server.base + "/api/runs/" + rid)
    assert run["samples"] == t["samples"] == len(stats.profiles)
    assert run["peak_rss_kb"] == t["peak_rss_kb"]
    assert run["status"] == "complete" and run["memory"] is True
    assert run["project"] == "old-client" and run["function"] == "demo.main"
    assert run["start_time"] == "2017-03-01T12:34:56.250Z"
    assert run["period_s"] == pytest.approx(0.005)
    assert run["duration_s"] == pytest.approx(t["samples"] * 0.005)
    funcs = get_json(server.base + "/api/runs/%s/functions" % rid)
    got = funcs_of(funcs, ("self", "total"))
    assert nonzero({k: v[0] for k, v in got.items()}) == t["self"]
    assert {k: v[1] for k, v in got.items()} == t["total"]
    assert any(k[0] == HOSTILE for k in got)
    mem = get_json(server.base + "/api/runs/%s/memory?buckets=1" % rid)
    assert mem["points"][0]["n"] == t["samples"] and mem["peak_rss_kb"] == t["peak_rss_kb"]
    # Sample i is at i x period: a window of the first half second.
    half = get_json(server.base + "/api/runs/%s/tree?to=0.5" % rid)
    assert half["samples"] == min(t["samples"], 101)


def test_submit_refuses_malformed(server, plain):
    body, _ = old_client_body(plain)
    good = gzip.compress(mp([[[1, 2], 10]]))
    names = gzip.compress(mp({"1": "py:f:1:x.py"}))

    def body_with(**fields):
        data = {"version": 2, "project": "bad", "period": 5000, "mem_profile": good,
                "addr_name_map": names}
        data.update(fields)
        return mp({k: v for k, v in data.items() if v is not None})

    before = get_json(server.base + "/api/runs")["total"]
    cases = [
        (b"", 400), (b"\x91\x01", 400), (body[:-10], 400), (body + b"\x00", 400),
        (body_with(version=3), 400), (body_with(version=None), 400),
        (body_with(project=None), 400), (body_with(project="x" * 2000), 400),
        (body_with(period=-1), 400), (body_with(period="fast"), 400),
        (body_with(mem_profile=None), 400), (body_with(mem_profile=12), 400),
        (body_with(start_date="tomorrow"), 400),
        # Blobs that are not gzip, are cut short, or hold the wrong shapes.
        (body_with(mem_profile=b"not gzip at all"), 400),
        (body_with(mem_profile=good[:-12]), 400),
        (body_with(mem_profile=gzip.compress(mp({"a": 1}))), 400),
        (body_with(mem_profile=gzip.compress(mp([[[1, "x"], 10]]))), 400),
        (body_with(mem_profile=gzip.compress(mp([[[1, 2], -10]]))), 400),
        (body_with(mem_profile=gzip.compress(mp([[[1, 2]]]))), 400),
        (body_with(mem_profile=gzip.compress(mp([[[1], 1]]) + b"junk")), 400),
        (body_with(addr_name_map=gzip.compress(mp({"12ab": "py:f:1:x"}))), 400),
        (body_with(addr_name_map=gzip.compress(mp({"1": 5}))), 400),
        (body_with(addr_name_map=gzip.compress(mp({"1": "n" * 70000}))), 400),
        # Counts and lengths that claim more than any bound: refused before
        # anything is allocated for them.
        (body_with(mem_profile=gzip.compress(b"\xdd\xff\xff\xff\xff")), 413),
        (body_with(mem_profile=gzip.compress(b"\x91\x92\xdd\xff\xff\xff\xff")), 413),
        (body_with(addr_name_map=gzip.compress(b"\xdf\xff\xff\xff\xff")), 413),
        (body_with(addr_name_map=gzip.compress(b"\x81\xa11\xdb\x00\x10\x00\x00" + b"n" * 64)),
         413),
        (b"\x81\xa3abc\xdb\xff\xff\xff\xf0", 400),
        (b"\xdd\xff\xff\xff\xff", 400),
        # 64 MiB of zeros in 64 KiB: inflated only as far as the first item.
        (body_with(mem_profile=zlib.compress(b"\0" * (64 << 20))), 400),
    ]
    for data, code in cases:
        status, _, resp = submit(server, data)
        assert status == code, (data[:40], resp)
        assert json.loads(resp)["error"]
    assert get_json(server.base + "/api/runs")["total"] == before
    assert http("GET", server.base + "/submit/")[0] == 405


def test_submit_decompressed_bound(server):
    """A blob that stays valid msgpack as it inflates stops at
    VP_MAX_SUBMIT_RAW (1 GiB), and nothing of it is kept."""
    if not server.cached:
        pytest.skip("the cache plays no part; once is enough")
    entry = mp([[0x7F0000000000 + 8 * i for i in range(65536)], 1])  # ~590 KB each
    count = (1 << 30) // len(entry) + 200
    z = zlib.compressobj(1)
    blob = bytearray(z.compress(b"\xdd" + struct.pack(">I", count)))
    for _ in range(count):
        blob += z.compress(entry)
    blob += z.flush()
    names = gzip.compress(mp({}))
    body = mp({"version": 2, "project": "bomb", "period": 1000, "mem_profile": bytes(blob),
               "addr_name_map": names})
    before = get_json(server.base + "/api/runs")["total"]
    status, _, resp = submit(server, body)
    assert status == 413, resp
    assert get_json(server.base + "/api/runs")["total"] == before


# ---- the cache: live runs, concurrent queries ---------------------------------------

def test_live_run_is_reread_as_it_grows(server, plain):
    rid = os.urandom(16)
    base = server.base + "/api/runs/" + rid.hex()
    opened = json.dumps({"project": "live", "function": "grow"}).encode()
    assert post_batch(server.base, batch(1, rid, 0, opened, token=""))[0] == 200
    samples = samples_of(plain)
    seen = 0
    for seq, (payload, n) in enumerate(chunks(plain, 3), start=1):
        assert post_batch(server.base, batch(2, rid, seq, payload, n, token=""))[0] == 200
        seen += n
        tree = get_json(base + "/tree")
        assert tree["samples"] == seen
        mem = get_json(base + "/memory?buckets=1")
        assert mem["points"][0]["n"] == seen
    tot, selfc, _, _ = cpu_truth(samples, range(len(samples)))
    assert flatten(get_json(base + "/tree")["root"], ("total", "self")) == \
        {p: (tot[p], selfc[p]) for p in tot}
    assert TOKEN  # the main suite's token is not needed: this server has none


def test_concurrent_first_queries(server, tmp):
    path = tmp / "concurrent.dat"
    if not path.exists():
        write_profile(str(path), 20000, depth=5, functions=9, period_us=1000)
    rid = put(server, path, project="concurrent")
    urls = [server.base + "/api/runs/%s/%s" % (rid, v)
            for v in ("tree", "memory", "functions", "growth", "tree?from=1", "speedscope")] * 4
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda u: http("GET", u), urls))
    assert all(g[0] == 200 for g in got)
    first = {}
    for u, g in zip(urls, got):
        assert first.setdefault(u, g[2]) == g[2]  # every answer the same
    samples = samples_of(path)
    tot, selfc, _, _ = cpu_truth(samples, range(len(samples)))
    tree = json.loads(first[urls[0]])
    assert flatten(tree["root"], ("total", "self")) == {p: (tot[p], selfc[p]) for p in tot}


# ---- summary files ------------------------------------------------------------

def summary_profile(tmp, name, n):
    """A generated profile of n samples, its samples, and its whole-run tree
    as {path: (total, self)} from the generator's own samples."""
    path = tmp / name
    if not path.exists():
        write_profile(str(path), n, depth=5, functions=9, period_us=1000)
    samples = samples_of(path)
    tot, selfc, _, _ = cpu_truth(samples, range(len(samples)))
    return path, samples, {p: (tot[p], selfc[p]) for p in tot}


def test_summary_files_are_used_and_damaged_ones_rebuilt(tmp):
    """A restarted server answers a run's first query from its summary file;
    a cut file and one overwritten with garbage are refused, and the run is
    read from the store again: the answers stay the truth's."""
    path, samples, want = summary_profile(tmp, "summary.dat", 20000)
    peak = max(s.rss for s in samples)
    s = ApiServer(tmp / "summary-files")
    try:
        rid = put(s, path, project="summary")
        wait_summaries(s, [rid])
        f = summary_file(s, rid)
        size = f.stat().st_size
        for damage in (None, "cut", "garbage", "nodes"):
            s.stop()
            if damage == "nodes":
                # Only the per-sample call-path indices: the head and the
                # trie load fine, a query finds the damage when it first
                # reads a block, and the answer comes from the store.
                head = f.read_bytes()[:512]
                # The head (rundata.c, sum_head): off[10] at byte 104, then
                # len[10]; sections NODES ADDRS WHOLE T RSS NODE ...
                assert head[:8] == b"VPRDSUM2"
                sec_node, nsec = 5, 10
                off = struct.unpack_from("<Q", head, 104 + 8 * sec_node)[0]
                length = struct.unpack_from("<Q", head, 104 + 8 * (nsec + sec_node))[0]
                assert 0 < off and length == 4 * len(samples)
                with open(f, "r+b") as fh:
                    fh.seek(off)
                    fh.write(b"\xff" * length)
            elif damage == "cut":
                with open(f, "r+b") as fh:
                    fh.truncate(size // 2)
            elif damage == "garbage":
                with open(f, "r+b") as fh:
                    fh.seek(512)  # past the head: the sections
                    fh.write(b"\xff" * (size - 512))
            before = len(s.log.read_text())
            s.start()
            base = s.base + "/api/runs/" + rid
            assert flatten(get_json(base + "/tree")["root"], ("total", "self")) == want
            mem = get_json(base + "/memory?buckets=7")
            assert max(p["max"] for p in mem["points"]) == peak
            assert sum(p["n"] for p in mem["points"]) == len(samples)
            log = s.log.read_text()[before:]
            from_file = "from its summary file" in log
            assert from_file == (damage in (None, "nodes")), log
            assert ("is damaged" in log) == (damage in ("garbage", "nodes")), log
            # Rebuilt from the store, the file is written again, whole.
            wait_summaries(s, [rid])
            assert f.stat().st_size == size
    finally:
        s.stop()


def test_summary_files_stay_under_their_bound(tmp):
    """--summary-max-mb bounds the summary files: past it the least
    recently used go (a load from its file counts as a use), counted in
    /metrics, and a run whose file went is answered from the store and
    gets its file back."""
    path, samples, want = summary_profile(tmp, "bound.dat", 40000)
    bound = 2 << 20
    s = ApiServer(tmp / "summary-bound", args=("--summary-max-mb", "2"))

    def files():
        return {p.stem: p.stat().st_size for p in (s.data / "rundata").glob("*.rd")}

    def removed():
        text = urllib.request.urlopen(s.base + "/metrics", timeout=10).read().decode()
        line = [x for x in text.splitlines()
                if x.startswith("vmpv_server_summary_files_removed_total")]
        return int(line[0].split()[-1])

    try:
        ids = []
        for i in range(3):
            ids.append(put(s, path, project="bound%d" % i))
            wait_summaries(s, [ids[-1]])
        size = files()[ids[0]]
        assert 3 * size <= bound < 4 * size, size  # three fit, a fourth does not
        assert set(files()) == set(ids) and removed() == 0
        # A restart empties the memory cache: this query maps run 0's file,
        # which makes it the most recently used.
        s.stop()
        s.start()
        assert flatten(get_json(s.base + "/api/runs/%s/tree" % ids[0])["root"],
                       ("total", "self")) == want
        ids.append(put(s, path, project="bound3"))
        wait_summaries(s, [ids[3]])
        assert set(files()) == {ids[0], ids[2], ids[3]}, (ids, files())
        assert sum(files().values()) <= bound and removed() == 1
        # Run 1 lost its file: answered from the store, written again, and
        # the least recently used other file (run 2's) makes room.
        assert flatten(get_json(s.base + "/api/runs/%s/tree" % ids[1])["root"],
                       ("total", "self")) == want
        wait_summaries(s, [ids[1]])
        assert set(files()) == {ids[0], ids[1], ids[3]}, (ids, files())
        assert sum(files().values()) <= bound and removed() == 2
    finally:
        s.stop()


def test_schema_1_database_is_upgraded(tmp):
    """A SQLite store written by a server of schema version 1 (no thinning
    columns) is upgraded in place: its run keeps every sample, reads as
    never thinned, and new uploads work."""
    import sqlite3
    data = tmp / "schema1" / "data"
    data.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(data / "vmpv.sqlite"))
    db.executescript("""
        CREATE TABLE runs(rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
          project TEXT NOT NULL, function TEXT NOT NULL, host TEXT NOT NULL,
          source TEXT NOT NULL, interp TEXT NOT NULL, tags TEXT NOT NULL, error TEXT,
          status TEXT NOT NULL, pid INTEGER NOT NULL, period_us INTEGER NOT NULL,
          version INTEGER NOT NULL, mode INTEGER NOT NULL, samples INTEGER NOT NULL,
          peak_rss_kb INTEGER NOT NULL, threads INTEGER NOT NULL, start_us INTEGER NOT NULL,
          end_us INTEGER NOT NULL, first_t_ns INTEGER NOT NULL, last_t_ns INTEGER NOT NULL,
          next_seq INTEGER NOT NULL, bytes INTEGER NOT NULL, trailer INTEGER NOT NULL,
          created_us INTEGER NOT NULL, updated_us INTEGER NOT NULL);
        CREATE INDEX runs_by_start ON runs(start_us DESC, rid DESC);
        CREATE INDEX runs_by_project ON runs(project, start_us DESC);
        CREATE TABLE names(rid INTEGER NOT NULL, addr INTEGER NOT NULL,
          name BLOB NOT NULL, PRIMARY KEY(rid, addr)) WITHOUT ROWID;
        CREATE TABLE stacks(rid INTEGER NOT NULL, stack_id INTEGER NOT NULL,
          frames BLOB NOT NULL, PRIMARY KEY(rid, stack_id));
        CREATE TABLE samples(rid INTEGER NOT NULL, idx INTEGER NOT NULL,
          t_ns INTEGER NOT NULL, rss_kb INTEGER NOT NULL, thread INTEGER NOT NULL,
          stack_id INTEGER NOT NULL, PRIMARY KEY(rid, idx)) WITHOUT ROWID;
        CREATE TABLE threads(rid INTEGER NOT NULL, thread INTEGER NOT NULL,
          PRIMARY KEY(rid, thread)) WITHOUT ROWID;
        PRAGMA user_version = 1;
    """)
    rid = "ab" * 16
    db.execute("INSERT INTO runs VALUES(1, ?, 'old', 'main', 'h', 'upload', 'cpython', '{}',"
               " NULL, 'complete', 1, 1000, 7, 1, 3, 300, 1, 1764000000000000,"
               " 1764000001000000, 0, 2000000, 0, 0, 1, 1764000000000000, 1764000000000000)",
               (rid,))
    db.execute("INSERT INTO names VALUES(1, 4096, ?)", (b"py:outer:1:/x.py",))
    db.execute("INSERT INTO names VALUES(1, 8192, ?)", (b"py:inner:5:/x.py",))
    db.execute("INSERT INTO stacks VALUES(1, 11, ?)", (struct.pack("<Q", 4096),))
    db.execute("INSERT INTO stacks VALUES(1, 12, ?)", (struct.pack("<QQ", 4096, 8192),))
    for idx, (t, rss, stack) in enumerate([(0, 100, 11), (1000000, 300, 12), (2000000, 200, 12)]):
        db.execute("INSERT INTO samples VALUES(1, ?, ?, ?, 7, ?)", (idx, t, rss, stack))
    db.execute("INSERT INTO threads VALUES(1, 7)")
    db.commit()
    db.close()
    s = ApiServer(tmp / "schema1")
    try:
        run = get_json(s.base + "/api/runs/" + rid)
        assert run["samples"] == 3 and run["peak_rss_kb"] == 300
        assert run["decimation"] is None
        fn = funcs_of(get_json(s.base + "/api/runs/%s/functions" % rid), ("self", "total"))
        assert fn == {("outer", "/x.py", 1): (1, 3), ("inner", "/x.py", 5): (2, 2)}
        status, _, body = upload(s.base, (tmp / "summary.dat").read_bytes()
                                 if (tmp / "summary.dat").exists()
                                 else synthetic(tmp / "s1.dat", 100).read_bytes())
        assert status == 201, body
    finally:
        s.stop()
    db = sqlite3.connect(str(data / "vmpv.sqlite"))
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'samples'").fetchone()[0] == 0
    db.close()


# ---- decimation notes in uploads ------------------------------------------------

def test_thinning_notes_make_the_decimation_object(tmp):
    """vmpv.thinned META records (proto/PROTOCOL.md) in a profile become the
    run's "decimation": the header's period, the coarsest period x factor,
    and the whole run's samples before and after; a malformed record and
    other META keys are ignored."""
    path = tmp / "thinned.dat"
    write_vmprof(path, [([0x100, 0x200], 1000 + i, i * 4000000) for i in range(50)],
                 {0x100: b"py:a:1:/t.py", 0x200: b"py:b:2:/t.py"}, period_us=1000)
    data = path.read_bytes()
    body, trailer = data[:-25], data[-25:]

    def meta(k, v):
        return b"\x07" + struct.pack("<q", len(k)) + k + struct.pack("<q", len(v)) + v

    body += meta(b"vmpv.thinned", b"factor=4 period_us=1000 samples_in=160 samples_out=40")
    body += meta(b"vmpv.thinned", b"factor=2 reason=spool-full samples_in=20 samples_out=10")
    body += meta(b"vmpv.thinned", b"factor=x period_us=1000 samples_in=9 samples_out=1")
    body += meta(b"other", b"factor=1000 samples_in=100000 samples_out=1")
    path.write_bytes(body + trailer)
    s = ApiServer(tmp / "thinned")
    try:
        rid = put(s, path, project="thinned")
        run = get_json(s.base + "/api/runs/" + rid)
        assert run["samples"] == 50
        assert run["decimation"] == {"original_period_s": 0.001, "period_s": 0.004,
                                     "samples_before": 50 + 120 + 10, "samples_after": 50}
        listed = [r for r in get_json(s.base + "/api/runs")["runs"] if r["id"] == rid]
        assert listed[0]["decimation"] == run["decimation"]
        plain_id = put(s, tmp / "summary.dat" if (tmp / "summary.dat").exists()
                       else synthetic(tmp / "t1.dat", 100), project="plain")
        assert get_json(s.base + "/api/runs/" + plain_id)["decimation"] is None
    finally:
        s.stop()
