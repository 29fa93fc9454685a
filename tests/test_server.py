"""End-to-end tests of vmpv-server: the real binary, real vmprof profiles.

The truth is vmprof's own reader (vmprof.reader); the server must agree
with it on samples, peak RSS and per-function self/total counts.

Every test runs against both stores, SQLite and a real PostgreSQL started
for the session (harness.PgCluster); VMPV_TEST_DB=sqlite or =postgres
picks one.

Run: VMPV_BUILD=/path/to/build /tmp/venv/bin/python -m pytest tests/test_server.py
"""
import collections
import json
import os
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from harness import server_stores, store_args

vmprof = pytest.importorskip("vmprof")
from vmprof import reader as vmreader  # noqa: E402

# ---- helpers (candidates for tests/conftest.py) ----

BUILD = os.environ.get("VMPV_BUILD", "/work/main/build")
SERVER_BIN = os.path.join(BUILD, "server", "vmpv-server")
TOKEN = "sekret-token"


class Server:
    """A running vmpv-server on a free port; stop() checks a clean exit."""

    def __init__(self, tmp, web=None, token=TOKEN, extra=(), db=None, binary=None):
        binary = binary or SERVER_BIN  # another build's server, e.g. an older version
        if not os.path.exists(binary):
            pytest.skip("no server binary at %s (set VMPV_BUILD)" % binary)
        tmp.mkdir(parents=True, exist_ok=True)
        args = [binary, "--listen", "127.0.0.1:0", "--data", str(tmp / "data"),
                "--web", str(web or (tmp / "no-such-web")), "--log-level", "info"]
        if db:  # a postgresql:// URL; else SQLite in tmp/data
            args += ["--db", db]
        if token:
            args += ["--token", token]
        args += list(extra)
        # stderr to a file: a pipe nobody reads could fill and stall the server.
        self.log = tmp / "server.log"
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, cwd=str(tmp),
                                     stderr=open(self.log, "ab"), text=True)
        line = self.proc.stdout.readline()
        if "listening on http://127.0.0.1:" not in line:
            self.proc.kill()
            raise AssertionError("no ready line: %r %s" % (line, self.log.read_text()))
        self.base = line.split("listening on ", 1)[1].strip()
        if db:  # a binary without the PostgreSQL store would use a directory
            assert "store PostgreSQL" in self.log.read_text(), self.log.read_text()

    def stop(self):
        early = self.proc.poll()
        if early is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        err = self.log.read_text()
        assert early is None, "server exited before stop(): rc %s\n%s" % (early, err)
        assert rc == 0, err
        return err


def http(method, url, body=None, headers=None):
    """(status, headers, bytes) of one request; 4xx/5xx are returned too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get_json(url):
    status, _, body = http("GET", url)
    assert status == 200, body
    return json.loads(body)


WORKLOAD = r'''
import os, sys, types, vmprof

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def churn(rounds):
    keep = []
    for i in range(rounds):
        keep.append(bytearray(200000))
        if len(keep) > 150:
            del keep[:100]
    return len(keep)

def spin(n):
    s = 0
    for i in range(n):
        s += i * i
    return s

def evil_body():
    return spin(600000)

# A function whose name is hostile to HTML, CSV-ish and collapsed formats.
evil = types.FunctionType(evil_body.__code__.replace(co_name='evil<script>;\n"name'),
                          globals())

def main():
    for _ in range(4):
        fib(24)
        churn(3000)
        spin(800000)
        evil()

path, lines = sys.argv[1], sys.argv[2] == "1"
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
vmprof.enable(fd, period=0.005, memory=True, native=False, lines=lines)
main()
vmprof.disable()
os.close(fd)
'''

HOSTILE = 'evil<script>;\n"name'


def record(tmp, name, lines):
    script = tmp / "workload.py"
    script.write_text(WORKLOAD)
    path = tmp / name
    subprocess.run([sys.executable, str(script), str(path), "1" if lines else "0"],
                   check=True, timeout=120)
    return path


class OffsetReader(vmreader.LogReader):
    """vmprof's reader, noting the file offset where each sample record ends."""

    def setup(self):
        self.ends = []

    def add_trace(self, trace, weight, thread_id, mem_in_kb):
        vmreader.LogReader.add_trace(self, trace, weight, thread_id, mem_in_kb)
        self.ends.append(self.fileobj.tell())


def sample_ends(path):
    with open(path, "rb") as f:
        state = vmreader.LogReaderState()
        r = OffsetReader(f, state)
        r.read_all()
    return r.ends, state


def split_name(name):
    parts = name.split(":", 3)
    if len(parts) == 1:
        return parts[0], "", 0, 1
    sym = parts[1]
    line = parts[2] if len(parts) >= 3 else ""
    file = parts[3] if len(parts) >= 4 else ""
    return sym, file, int(line) if line.isdigit() else 0, len(parts)


def label_of(key_and_fields):
    (sym, file, line), fields = key_and_fields
    text = "%s (%s:%d)" % (sym, file, line) if fields >= 3 else sym
    return text.replace(";", "_").replace("\n", "_").replace("\r", "_")


def truth(path, upto=None):
    """What vmprof's reader says: samples, peak, per-function counts, stacks.

    The reader's state is used directly rather than vmprof.read_profile,
    whose Stats asserts that line-mode entries alternate in sign; CPython
    can record a line of -1, which breaks that. Line entries are told apart
    by position, as the format note says (vmprof-format.md §4.4)."""
    with open(path, "rb") as f:
        state = vmreader.LogReaderState()
        vmreader.LogReader(f, state).read_all()
    adr_dict = dict(state.virtual_ips)  # sorted: the greatest name wins
    profiles = state.profiles if upto is None else state.profiles[:upto]
    lines = state.profile_lines

    def fn(addr):
        name = adr_dict.get(addr)
        if name is None:
            return ("<unknown 0x%x>" % (addr & 0xFFFFFFFFFFFFFFFF), "", 0), 1
        sym, file, line, fields = split_name(name)
        return (sym, file, line), fields

    selfc, total = collections.Counter(), collections.Counter()
    collapsed = collections.Counter()
    for prof in profiles:
        trace = list(prof[0])  # root first; in the file it was leaf first
        if lines:  # code addresses sat at odd positions counted from the leaf
            d = len(trace)
            trace = [a for j, a in enumerate(trace) if (d - 1 - j) % 2 == 1]
        if not trace:
            continue
        funcs = [fn(a) for a in trace]
        for key in set(f[0] for f in funcs):
            total[key] += 1
        selfc[funcs[-1][0]] += 1
        collapsed[";".join(label_of(f) for f in funcs)] += 1
    return {
        "samples": len(profiles),
        "peak": max((p[3] for p in profiles), default=0),
        "min": min((p[3] for p in profiles), default=0),
        "threads": len(set(p[2] for p in profiles)),
        "self": selfc,
        "total": total,
        "collapsed": collapsed,
        "lines": lines,
    }


def synthetic(path, nsamples, lines=False, version=7, seed=1):
    """A vmprof file written here, byte by byte (vmprof-format.md §4): a few
    hundred stacks over 200 code addresses, of which the last 10 are never
    named, RSS rising in a sawtooth, and a sample clock when version >= 7."""
    import random
    rnd = random.Random(seed)
    out = bytearray(struct.pack("<5q", 0, 3, 0, 1000, 0))
    out += b"\x05" + struct.pack(">h", version) + bytes([1 | (2 if lines else 0), 7])
    out += b"cpython"
    out += b"\x06" + struct.pack("<qq", 1764000000, 123456) + b"\0" * 8
    addrs = [0x7F0000001000 + 0x40 * i for i in range(200)]
    stacks = [[addrs[0]] + [rnd.choice(addrs) for _ in range(rnd.randint(0, 11))]
              for _ in range(500)]
    t = 5000000
    for i in range(nsamples):
        ents = []
        for a in reversed(stacks[rnd.randrange(len(stacks))]):  # leaf first
            ents += [rnd.randint(1, 500), a] if lines else [a]
        t += rnd.randint(900000, 1100000)
        out += b"\x01" + struct.pack("<qq%dQ" % len(ents), 1, len(ents), *ents)
        out += struct.pack("<QQ", 0x7FABC000 + (i % 3) * 0x1000, 10000 + i % 5000)
        if version >= 7:
            out += struct.pack("<q", t)
    for j, a in enumerate(addrs[:-10]):
        name = ("py:f%d:%d:/src/mod%d.py" % (j, j + 1, j % 7)).encode()
        out += b"\x02" + struct.pack("<Qq", a, len(name)) + name
    out += b"\x03" + struct.pack("<qq", 1764000100, 0) + b"\0" * 8
    path.write_bytes(bytes(out))
    return path


def upload(base, data, **query):
    q = "&".join("%s=%s" % (k, urllib.request.quote(v)) for k, v in query.items())
    return http("POST", base + "/api/v1/upload" + ("?" + q if q else ""), data,
                {"Content-Type": "application/octet-stream"})


def check_against_truth(base, run_id, t, version=7):
    run = get_json(base + "/api/runs/" + run_id)
    assert run["samples"] == t["samples"]
    assert run["peak_rss_kb"] == t["peak"]
    assert run["threads"] == t["threads"]
    assert run["memory"] is True
    assert run["lines"] is t["lines"]
    assert run["version"] == version

    funcs = get_json(base + "/api/runs/%s/functions" % run_id)
    assert funcs["samples"] == t["samples"]
    got_self = {(f["name"], f["file"], f["line"]): f["self"] for f in funcs["functions"]}
    got_total = {(f["name"], f["file"], f["line"]): f["total"] for f in funcs["functions"]}
    assert got_total == dict(t["total"])
    assert {k: v for k, v in got_self.items() if v} == dict(t["self"])
    totals = [f["total"] for f in funcs["functions"]]
    assert totals == sorted(totals, reverse=True)

    status, headers, body = http("GET", base + "/api/runs/%s/collapsed" % run_id)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    got = collections.Counter()
    lines = body.decode().splitlines()
    assert lines == sorted(lines, key=lambda s: s.rsplit(" ", 1)[0].encode())
    for line in lines:
        text, count = line.rsplit(" ", 1)
        got[text] += int(count)
    assert got == t["collapsed"]

    mem = get_json(base + "/api/runs/%s/memory?buckets=1" % run_id)
    assert len(mem["points"]) == 1
    p = mem["points"][0]
    assert (p["n"], p["max"], p["min"]) == (t["samples"], t["peak"], t["min"])
    assert mem["peak_rss_kb"] == t["peak"]
    mem = get_json(base + "/api/runs/%s/memory" % run_id)
    assert sum(p["n"] for p in mem["points"]) == t["samples"]
    assert max(p["max"] for p in mem["points"]) == t["peak"]
    assert [p["t"] for p in mem["points"]] == sorted(p["t"] for p in mem["points"])
    for p in mem["points"]:
        assert 0 <= p["stack"] < len(mem["stacks"])
        assert p["min"] <= p["mean"] <= p["max"]
    return run


# ---- fixtures ----

@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def web(tmp):
    d = tmp / "web"
    (d / "assets").mkdir(parents=True)
    (d / "index.html").write_text("<!doctype html><title>vmpv</title>INDEX")
    (d / "assets" / "app.js").write_text("console.log('app')")
    (tmp / "secret.txt").write_text("outside")
    os.symlink(tmp / "secret.txt", d / "assets" / "link.txt")
    return d


@pytest.fixture(scope="module", params=server_stores())
def store(request):
    """"sqlite" or "postgres": the module runs once per store."""
    return request.param


def db_url(store):
    """--db for a server on store: None (SQLite), or a fresh PostgreSQL database."""
    args = store_args(store)
    return args[1] if args else None


@pytest.fixture(scope="module")
def server(tmp, web, store):
    s = Server(tmp / store, web=web, db=db_url(store))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def plain(tmp):
    return record(tmp, "plain.dat", lines=False)


@pytest.fixture(scope="module")
def lined(tmp):
    return record(tmp, "lines.dat", lines=True)


# ---- uploads (protocol D) ----

def test_upload_matches_vmprof(server, plain):
    t = truth(plain)
    assert t["samples"] > 50, "workload too short to mean anything"
    status, _, body = upload(server.base, plain.read_bytes(), project="proj-a",
                             function="main")
    assert status == 201, body
    r = json.loads(body)
    assert r["samples"] == t["samples"] and r["status"] == "complete"
    assert r["url"] == "/runs/" + r["id"] and len(r["id"]) == 32
    run = check_against_truth(server.base, r["id"], t)
    assert run["project"] == "proj-a" and run["function"] == "main"
    assert run["status"] == "complete" and run["error"] is None
    assert run["bytes"] == plain.stat().st_size
    assert run["period_s"] == pytest.approx(0.005)
    assert run["rate_hz"] > 0 and run["duration_s"] > 0 and run["t_end_s"] > 0
    assert run["start_time"].endswith("Z")


def test_upload_line_mode(server, lined):
    t = truth(lined)
    assert t["lines"]
    status, _, body = upload(server.base, lined.read_bytes(), project="proj-a",
                             function="lines")
    assert status == 201, body
    check_against_truth(server.base, json.loads(body)["id"], t)


def test_big_upload_spans_slices(server, tmp):
    # ~18 MB: more than two of the server's 8 MiB upload slices.
    path = synthetic(tmp / "big.dat", 200000)
    assert path.stat().st_size > 2 * 8 * 1024 * 1024
    status, _, body = upload(server.base, path.read_bytes(), project="big")
    assert status == 201, body
    r = json.loads(body)
    assert r["status"] == "complete"
    run = check_against_truth(server.base, r["id"], truth(path))
    assert run["threads"] == 3 and run["bytes"] == path.stat().st_size
    assert run["rate_hz"] == pytest.approx(1000, rel=0.01)
    assert run["duration_s"] == pytest.approx(100 - 0.123456)
    assert run["start_time"] == "2025-11-24T16:00:00.123Z"
    funcs = get_json(server.base + "/api/runs/%s/functions" % r["id"])["functions"]
    assert any(f["name"].startswith("<unknown 0x7f") for f in funcs)


@pytest.mark.parametrize("lines,version", [(True, 7), (False, 6)])
def test_synthetic_modes(server, tmp, lines, version):
    path = synthetic(tmp / ("syn-%d-%d.dat" % (lines, version)), 3000, lines=lines,
                     version=version)
    status, _, body = upload(server.base, path.read_bytes(), project="syn")
    assert status == 201, body
    run = check_against_truth(server.base, json.loads(body)["id"], truth(path), version)
    if version < 7:  # no sample clock: sample i is at i x period
        assert run["rate_hz"] == pytest.approx(1000)
        assert run["t_end_s"] == pytest.approx(2.999)


def test_empty_stacks_and_empty_runs(server, tmp):
    # A sample with no frames at all (vmprof never writes one; a file may).
    out = bytearray(struct.pack("<5q", 0, 3, 0, 10000, 0))
    out += b"\x05" + struct.pack(">h", 7) + bytes([1, 7]) + b"cpython"
    for depth, rss in ((0, 100), (1, 200)):
        out += b"\x01" + struct.pack("<qq", 1, depth) + b"\x10\0\0\0\0\0\0\0" * depth
        out += struct.pack("<QQq", 1, rss, 1000 * rss)
    path = tmp / "empty.dat"
    path.write_bytes(bytes(out))
    status, _, body = upload(server.base, bytes(out), project="empty")
    assert status == 201, body
    r = json.loads(body)
    assert r["samples"] == 2 and r["status"] == "incomplete"  # no trailer
    check_against_truth(server.base, r["id"], truth(path))
    # A run opened by a batch and nothing else: every view answers, empty.
    rid = os.urandom(16)
    opened = json.dumps({"project": "empty-run"}).encode()
    assert post_batch(server.base, batch(1, rid, 0, opened))[0] == 200
    base = server.base + "/api/runs/" + rid.hex()
    assert get_json(base + "/functions") == {"samples": 0, "functions": []}
    assert http("GET", base + "/collapsed")[2] == b""
    mem = get_json(base + "/memory")
    assert mem["points"] == [] and mem["stacks"] == [] and mem["peak_rss_kb"] == 0
    assert get_json(base)["status"] == "live"


def test_hostile_name_round_trips(server, plain):
    status, _, body = upload(server.base, plain.read_bytes(), project="hostile")
    rid = json.loads(body)["id"]
    funcs = get_json(server.base + "/api/runs/%s/functions" % rid)["functions"]
    evil = [f for f in funcs if f["name"] == HOSTILE]
    assert len(evil) == 1 and evil[0]["total"] > 0
    _, _, text = http("GET", server.base + "/api/runs/%s/collapsed" % rid)
    assert 'evil<script>__"name (' in text.decode()


def test_truncated_upload_keeps_complete_samples(server, plain):
    data = plain.read_bytes()
    ends, _ = sample_ends(plain)
    k = len(ends) // 2
    cut = ends[k] - 5  # inside sample record k: samples 0..k-1 are whole
    status, _, body = upload(server.base, data[:cut], project="cut")
    assert status == 201, body
    r = json.loads(body)
    assert r["samples"] == k and r["status"] == "incomplete"
    run = get_json(server.base + "/api/runs/" + r["id"])
    assert run["status"] == "incomplete"
    assert "truncated after %d samples at offset" % k in run["error"]
    t = truth(plain, upto=k)
    assert run["peak_rss_kb"] == t["peak"]
    funcs = get_json(server.base + "/api/runs/%s/functions" % r["id"])
    assert funcs["samples"] == k
    assert sum(f["self"] for f in funcs["functions"]) == k


def test_corrupt_record_keeps_samples_before_it(server, plain):
    data = bytearray(plain.read_bytes())
    ends, state = sample_ends(plain)
    k = len(ends) // 3
    depth = len(state.profiles[k][0])
    start = ends[k] - (1 + 8 + 8 + 8 * depth + 8 + 8 + 8)  # thread, rss, time
    assert data[start] == 1  # a STACKTRACE marker
    data[start] = 0x42
    status, _, body = upload(server.base, bytes(data), project="corrupt")
    assert status == 201, body
    r = json.loads(body)
    assert r["samples"] == k and r["status"] == "incomplete"
    run = get_json(server.base + "/api/runs/" + r["id"])
    assert "unknown record marker 0x42 at offset %d" % start in run["error"]


def test_not_a_profile_is_refused(server):
    before = get_json(server.base + "/api/runs")["total"]
    for body in (b"hello, this is not a profile at all" * 10, b"", b"\0" * 39):
        status, _, resp = upload(server.base, body, project="junk")
        assert status == 400
        assert "not a vmprof profile" in json.loads(resp)["error"]
    status, _, resp = upload(server.base, b"\x1f\x8b\x08\x00" + b"\0" * 100)
    assert status == 400 and "gzip" in json.loads(resp)["error"]
    assert get_json(server.base + "/api/runs")["total"] == before


# ---- batches (protocol C) ----

def batch(kind, run_id, seq, payload=b"", samples=0, token=TOKEN):
    tok = token.encode()
    head = struct.pack("<4sHBB16sQIIIHH", b"VPVB", 1, kind, 0, run_id, seq, len(payload),
                       len(payload), samples, len(tok), 0)
    return head + tok + payload


def post_batch(base, body, headers=None):
    h = {"Content-Type": "application/x-vmpv-batch"}
    h.update(headers or {})
    status, _, resp = http("POST", base + "/api/v1/batches", body, h)
    return status, json.loads(resp) if resp else None


def chunks(path, n):
    """The file cut at sample-record boundaries into about n DATA payloads,
    with their sample counts; the last one holds the names and trailer."""
    data = path.read_bytes()
    ends, _ = sample_ends(path)
    step = max(1, len(ends) // n)
    cuts = [ends[i] for i in range(step - 1, len(ends), step)][: n - 1] + [len(data)]
    out, prev = [], 0
    for c in cuts:
        out.append((data[prev:c], sum(1 for e in ends if prev < e <= c)))
        prev = c
    return out


def test_batches_in_order_with_retries(server, plain):
    rid = os.urandom(16)
    hexid = rid.hex()
    base = server.base
    data = chunks(plain, 4)
    # DATA before OPEN: send OPEN first.
    assert post_batch(base, batch(2, rid, 1, data[0][0], data[0][1])) == (
        409, {"error": "out of order", "expected": 0})
    opened = {"project": "batch-proj", "function": "pkg.job", "host": "box", "pid": 4242,
              "tags": {"team": "perf", "x": "<b>"}, "period": 0.005, "start": time.time(),
              "source": "client"}
    assert post_batch(base, batch(1, rid, 0, json.dumps(opened).encode())) == (
        200, {"status": "stored"})
    assert post_batch(base, batch(1, rid, 0, json.dumps(opened).encode())) == (
        200, {"status": "duplicate"})
    live = get_json(base + "/api/runs/" + hexid)
    assert live["status"] == "live" and live["samples"] == 0
    # A gap: the server names the seq it wants.
    assert post_batch(base, batch(2, rid, 2, data[1][0], data[1][1])) == (
        409, {"error": "out of order", "expected": 1})
    for i, (payload, n) in enumerate(data, start=1):
        assert post_batch(base, batch(2, rid, i, payload, n)) == (200, {"status": "stored"})
        # A retry of what was just stored is a duplicate, not applied twice.
        assert post_batch(base, batch(2, rid, i, payload, n)) == (200, {"status": "duplicate"})
    mid = get_json(base + "/api/runs/" + hexid)
    assert mid["status"] == "live"
    close = {"status": "complete", "samples": mid["samples"], "bytes": mid["bytes"]}
    seq = len(data) + 1
    assert post_batch(base, batch(3, rid, seq, json.dumps(close).encode())) == (
        200, {"status": "stored"})
    # Anything after CLOSE is refused, not retried forever.
    status, resp = post_batch(base, batch(2, rid, seq + 1, data[0][0], data[0][1]))
    assert status == 400 and "closed" in resp["error"]
    run = check_against_truth(base, hexid, truth(plain))
    assert run["status"] == "complete" and run["project"] == "batch-proj"
    assert run["tags"] == {"team": "perf", "x": "<b>"}
    assert run["pid"] == 4242 and run["host"] == "box" and run["function"] == "pkg.job"
    assert run["bytes"] == plain.stat().st_size


def test_batch_refusals(server, plain):
    base = server.base
    rid = os.urandom(16)
    opened = json.dumps({"project": "refusals", "function": "f"}).encode()
    assert post_batch(base, batch(1, rid, 0, opened, token="wrong"))[0] == 401
    # The bearer header is an alternative to the token in the batch.
    assert post_batch(base, batch(1, rid, 0, opened, token=""),
                      {"Authorization": "Bearer " + TOKEN}) == (200, {"status": "stored"})
    data = chunks(plain, 2)
    payload, n = data[0]
    status, resp = post_batch(base, batch(2, rid, 1, payload, n + 1))
    assert status == 400 and "samples" in resp["error"]
    status, resp = post_batch(base, batch(2, rid, 1, payload[:-3], n))
    assert status == 400 and "record boundary" in resp["error"]
    status, resp = post_batch(base, batch(2, rid, 1, b"garbage" * 10, 0))
    assert status == 400
    # Nothing of the refused batches was applied: seq 1 is still expected.
    assert post_batch(base, batch(2, rid, 1, payload, n)) == (200, {"status": "stored"})
    assert get_json(base + "/api/runs/" + rid.hex())["samples"] == n
    status, resp = post_batch(base, b"VPVB" + b"\0" * 20)
    assert status == 400 and resp["error"]
    status, resp = post_batch(base, batch(1, os.urandom(16), 0, b"[1,2]"))
    assert status == 400 and "JSON object" in resp["error"]
    status, resp = post_batch(base, b"x" * (9 * 1024 * 1024))
    assert status == 413
    status, _, resp = http("GET", base + "/api/v1/batches")
    assert status == 405 and "error" in json.loads(resp)


# ---- read API ----

def test_runs_list_filters(server, plain):
    data = plain.read_bytes()
    ids = []
    for proj, fn in (("filter-x", "alpha"), ("filter-x", "beta"), ("filter-y", "alphabet")):
        status, _, body = upload(server.base, data, project=proj, function=fn)
        assert status == 201
        ids.append(json.loads(body)["id"])
    got = get_json(server.base + "/api/runs?project=filter-x")
    assert got["total"] == 2 and {r["id"] for r in got["runs"]} == set(ids[:2])
    got = get_json(server.base + "/api/runs?q=ALPHA")
    assert {r["function"] for r in got["runs"]} >= {"alpha", "alphabet"}
    assert all("alpha" in (r["project"] + r["function"]).lower() for r in got["runs"])
    got = get_json(server.base + "/api/runs?q=filter-&limit=1&offset=1")
    assert got["total"] == 3 and len(got["runs"]) == 1
    allruns = get_json(server.base + "/api/runs?limit=1000")["runs"]
    starts = [r["start_time"] for r in allruns]
    assert starts == sorted(starts, reverse=True)
    for bad in ("limit=0", "limit=1001", "limit=x", "offset=-1"):
        status, _, body = http("GET", server.base + "/api/runs?" + bad)
        assert status == 400 and "error" in json.loads(body)


def test_memory_window(server, plain):
    status, _, body = upload(server.base, plain.read_bytes(), project="mem")
    rid = json.loads(body)["id"]
    whole = get_json(server.base + "/api/runs/%s/memory?buckets=50" % rid)
    half = whole["to"] / 2
    part = get_json(server.base + "/api/runs/%s/memory?buckets=10&from=0&to=%r" % (rid, half))
    assert part["from"] == 0 and part["to"] == pytest.approx(half)
    assert 0 < sum(p["n"] for p in part["points"]) < sum(p["n"] for p in whole["points"])
    assert all(p["t"] <= half for p in part["points"])
    for bad in ("buckets=0", "buckets=5001", "from=abc", "from=2&to=1", "to=nan"):
        status, _, body = http("GET", server.base + "/api/runs/%s/memory?%s" % (rid, bad))
        assert status == 400, bad


def test_errors_and_unknowns(server):
    base = server.base
    for path in ("/api/runs/" + "0" * 32, "/api/runs/" + "0" * 32 + "/functions",
                 "/api/runs/nothex", "/api/nope", "/api/runs/" + "0" * 32 + "/nope"):
        status, headers, body = http("GET", base + path)
        assert status == 404, path
        assert headers["Content-Type"].startswith("application/json")
        assert "error" in json.loads(body)
    status, _, body = http("POST", base + "/api/runs", b"")
    assert status == 405 and "error" in json.loads(body)
    status, _, body = http("GET", base + "/healthz")
    assert (status, body) == (200, b"ok")
    status, _, body = http("GET", base + "/metrics")
    assert status == 200
    text = body.decode()
    assert 'vmpv_server_batches_total{result="stored"}' in text
    assert "vmpv_server_samples_stored_total" in text


def test_static_files(server):
    base = server.base
    for path in ("/", "/runs/abc", "/index.html"):
        status, _, body = http("GET", base + path)
        assert status == 200 and b"INDEX" in body, path
    status, _, body = http("GET", base + "/assets/app.js")
    assert status == 200 and body == b"console.log('app')"
    for path in ("/assets/link.txt", "/../secret.txt", "/%2e%2e/secret.txt",
                 "/assets/%2e%2e/%2e%2e/secret.txt", "/assets/nope.js", "/.hidden"):
        status, _, body = http("GET", base + path)
        assert status == 404 and b"outside" not in body, path


def test_ui_not_built_and_sigterm(tmp, store):
    d = tmp / ("nobuild-" + store)
    d.mkdir()
    db = db_url(store)
    s = Server(d, web=d / "missing", token="", db=db)
    try:
        status, _, body = http("GET", s.base + "/")
        assert status == 200 and b"not built" in body
        assert get_json(s.base + "/api/runs") == {"runs": [], "total": 0}
    finally:
        s.stop()
    # The store survives a restart.
    s = Server(d, web=d / "missing", token="", db=db)
    try:
        assert get_json(s.base + "/api/runs")["total"] == 0
    finally:
        s.stop()
