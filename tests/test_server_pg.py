"""Several vmpv-server instances on one PostgreSQL database, as behind a load
balancer: the batches of one run reach them alternately, at the same moment,
and more than once, and every batch must be applied exactly once and in order
(PROTOCOL.md §C). The stored run must equal vmprof's own reading of the file.

The helpers are test_server.py's; the PostgreSQL is the session's
(harness.PgCluster). Skipped when VMPV_TEST_DB=sqlite.
"""
import collections
import json
import os
import threading
import time

import pytest

from harness import postgres, server_stores
from test_server import (Server, batch, check_against_truth, chunks, get_json, post_batch,
                         synthetic, truth, upload)

pytestmark = pytest.mark.skipif("postgres" not in server_stores(),
                                reason="VMPV_TEST_DB=sqlite: PostgreSQL tests off")


def race(sends):
    """POST every (server, body) at the same moment; [(status, reply)] in order."""
    go = threading.Barrier(len(sends))
    out = [None] * len(sends)

    def one(i, server, body):
        go.wait()
        out[i] = post_batch(server.base, body)

    threads = [threading.Thread(target=one, args=(i, s, b)) for i, (s, b) in enumerate(sends)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


@pytest.fixture
def two_servers(tmp_path):
    url = postgres().new_database()
    servers = [Server(tmp_path / name, db=url) for name in ("a", "b")]
    yield servers
    for s in servers:
        s.stop()


def opened(project):
    return json.dumps({"project": project, "function": "f", "host": "h", "pid": 1,
                       "period": 0.001, "start": time.time()}).encode()


def test_one_run_through_two_servers(two_servers, tmp_path):
    a, b = two_servers
    path = synthetic(tmp_path / "shared.dat", 20000, seed=3)
    data = chunks(path, 30)
    rid = os.urandom(16)
    # The OPEN at both servers at once: exactly one creates the run.
    got = race([(a, batch(1, rid, 0, opened("shared"))), (b, batch(1, rid, 0, opened("shared")))])
    assert sorted(got, key=str) == [(200, {"status": "duplicate"}), (200, {"status": "stored"})]
    for i, (payload, n) in enumerate(data, start=1):
        body = batch(2, rid, i, payload, n)
        first, second = (a, b) if i % 2 else (b, a)
        if i % 3 == 0:
            # The same batch at both servers at once (a relay's retry racing
            # its original): one applies it, the other sees it applied.
            got = race([(first, body), (second, body)])
            assert sorted(got, key=str) == [(200, {"status": "duplicate"}),
                                            (200, {"status": "stored"})], i
        else:
            # Alternately, each batch followed by a duplicate at the other.
            assert post_batch(first.base, body) == (200, {"status": "stored"}), i
            assert post_batch(second.base, body) == (200, {"status": "duplicate"}), i
        # The next batch's successor is out of order at either server.
        if i + 2 <= len(data):
            nxt = batch(2, rid, i + 2, *data[i + 1])
            assert post_batch(second.base, nxt) == (409, {"error": "out of order",
                                                          "expected": i + 1})
    mid = get_json(a.base + "/api/runs/" + rid.hex())
    close = json.dumps({"status": "complete", "samples": mid["samples"]}).encode()
    seq = len(data) + 1
    got = race([(a, batch(3, rid, seq, close)), (b, batch(3, rid, seq, close))])
    assert sorted(got, key=str) == [(200, {"status": "duplicate"}), (200, {"status": "stored"})]
    t = truth(path)
    for s in (a, b):
        run = check_against_truth(s.base, rid.hex(), t)
        assert run["status"] == "complete" and run["bytes"] == path.stat().st_size
        assert run["project"] == "shared"


def test_two_relays_race_through_a_run(two_servers, tmp_path):
    """Two senders, one per server, each push every batch of the same runs in
    order, retrying 409s and resending some batches, as two relays holding
    the same spool would: each batch is stored exactly once overall."""
    path = synthetic(tmp_path / "raced.dat", 12000, seed=5)
    data = chunks(path, 24)
    runs = [os.urandom(16) for _ in range(3)]
    stored = collections.Counter()
    errors = []
    lock = threading.Lock()

    def relay(server, k):
        try:
            for rid in runs:
                bodies = [batch(1, rid, 0, opened("raced"))]
                bodies += [batch(2, rid, i, p, n) for i, (p, n) in enumerate(data, start=1)]
                for seq, body in enumerate(bodies):
                    for attempt in range(2 if (seq + k) % 4 == 0 else 1):
                        deadline = time.monotonic() + 60
                        while True:
                            status, reply = post_batch(server.base, body)
                            if status != 409:
                                break
                            assert time.monotonic() < deadline, (seq, reply)
                            time.sleep(0.002)
                        assert status == 200, (seq, status, reply)
                        if reply["status"] == "stored":
                            with lock:
                                stored[(rid, seq)] += 1
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=relay, args=(s, k)) for k, s in enumerate(two_servers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert stored == {(rid, seq): 1 for rid in runs for seq in range(len(data) + 1)}
    t = truth(path)
    for rid in runs:
        for s in two_servers:
            check_against_truth(s.base, rid.hex(), t)
    for s in two_servers:  # no statement failed along the way
        assert "ERROR postgresql: " not in s.log.read_text()


def test_uploads_and_reads_on_both(two_servers, tmp_path):
    a, b = two_servers
    path = synthetic(tmp_path / "up.dat", 5000, seed=9)
    status, _, body = upload(a.base, path.read_bytes(), project="shared-up")
    assert status == 201, body
    rid = json.loads(body)["id"]
    check_against_truth(b.base, rid, truth(path))
    assert get_json(b.base + "/api/runs?project=shared-up")["total"] == 1


def test_server_survives_a_postgres_restart(two_servers, tmp_path):
    a, _ = two_servers
    path = synthetic(tmp_path / "restart.dat", 2000, seed=11)
    status, _, _ = upload(a.base, path.read_bytes(), project="before")
    assert status == 201
    postgres().restart()
    # Every pooled connection was dropped: each is re-opened on its next use.
    for i in range(8):
        status, _, body = upload(a.base, path.read_bytes(), project="after-%d" % i)
        assert status == 201, body
    assert get_json(a.base + "/api/runs")["total"] == 9


def hostile_profile(path, nsamples=3000):
    """A profile whose bytes test the store's types: names with invalid UTF-8
    and NUL bytes, an address named twice (the greatest name wins), code
    addresses and thread ids above 2**63 (int8 keeps their bits), an
    interpreter name that is not UTF-8."""
    import random
    import struct
    rnd = random.Random(13)
    out = bytearray(struct.pack("<5q", 0, 3, 0, 1000, 0))
    out += b"\x05" + struct.pack(">h", 7) + bytes([1, 7]) + b"cpy\xffhon"
    out += b"\x06" + struct.pack("<qq", 1764000000, 0) + b"\0" * 8
    addrs = [0x7F0000001000 + 0x40 * i for i in range(40)] + [0xFFFF800000000000 + 0x40 * i
                                                             for i in range(10)]
    stacks = [[addrs[0]] + [rnd.choice(addrs) for _ in range(rnd.randint(0, 8))]
              for _ in range(60)]
    t = 0
    for i in range(nsamples):
        ents = list(reversed(stacks[rnd.randrange(len(stacks))]))
        t += 1000000
        thread = (1 << 63) + 5 if i % 2 else 7
        out += b"\x01" + struct.pack("<qq%dQ" % len(ents), 1, len(ents), *ents)
        out += struct.pack("<QQq", thread, (1 << 40) + i, t)
    names = {a: b"py:f%d:%d:/src/m.py" % (j, j) for j, a in enumerate(addrs[:-3])}
    names[addrs[1]] = b"py:bad\xff\xfe\xc3(:3:/src/\xe9t\xe9.py"
    names[addrs[2]] = b"py:nul\x00inside:4:/src/n.py"
    names[addrs[41]] = b"py:high:5:/src/\xf0\x9f\x94\xa5.py"
    for a, name in names.items():
        out += b"\x02" + struct.pack("<Qq", a, len(name)) + name
    for name in (b"py:aaa:1:/x.py", b"py:zzz:1:/x.py"):  # addrs[3] named twice more
        out += b"\x02" + struct.pack("<Qq", addrs[3], len(name)) + name
    out += b"\x03" + struct.pack("<qq", 1764000100, 0) + b"\0" * 8
    path.write_bytes(bytes(out))
    return path


def test_same_answers_as_sqlite(tmp_path):
    """The same bytes through both stores give the same answers."""
    from test_server import http
    path = hostile_profile(tmp_path / "hostile.dat")
    sq = Server(tmp_path / "sqlite")
    pg = Server(tmp_path / "pg", db=postgres().new_database())
    try:
        answers = []
        for s in (sq, pg):
            # Percent-escapes straight into the query: a project that is not UTF-8.
            status, _, body = http("POST", s.base + "/api/v1/upload?project=p%FF%C3q%C4%80X"
                                   "&function=fn", path.read_bytes(),
                                   {"Content-Type": "application/octet-stream"})
            assert status == 201, body
            rid = json.loads(body)["id"]
            got = {}
            run = get_json(s.base + "/api/runs/" + rid)
            for k in ("id", "url", "created", "updated", "created_time", "updated_time"):
                run.pop(k, None)
            got["run"] = run
            for ep in ("functions", "collapsed", "memory", "memory?buckets=7&from=0.5&to=2.5"):
                got[ep] = http("GET", "%s/api/runs/%s/%s" % (s.base, rid, ep))[2]
            listed = get_json(s.base + "/api/runs")["runs"]
            got["project"] = listed[0]["project"]
            # (Not q=%EF%BF%BD: PostgreSQL keeps repaired text, so U+FFFD
            # itself matches there, and only there.)
            for q in ("q=x", "q=%C4%80", "q=%C4%81", "q=P%FF"):
                got[q] = get_json(s.base + "/api/runs?" + q)["total"]
            got["exact"] = get_json(s.base + "/api/runs?project=p%FF%C3q%C4%80X")["total"]
            answers.append(got)
        assert answers[0] == answers[1]
        assert answers[0]["q=x"] == 1 and answers[0]["exact"] == 1
        assert answers[0]["run"]["samples"] == 3000 and answers[0]["run"]["threads"] == 2
        funcs = json.loads(answers[0]["functions"])["functions"]
        assert any(f["name"] == "zzz" for f in funcs)  # the greatest name won
    finally:
        sq.stop()
        pg.stop()


def test_servers_start_together_on_a_fresh_database(tmp_path):
    """The first start creates the schema; servers starting at the same
    moment must not race on it."""
    url = postgres().new_database()
    go = threading.Barrier(3)
    made, errors = [], []

    def start(i):
        go.wait()
        try:
            made.append(Server(tmp_path / ("s%d" % i), db=url))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        assert len(made) == 3
        path = synthetic(tmp_path / "fresh.dat", 500)
        status, _, body = upload(made[0].base, path.read_bytes(), project="fresh")
        assert status == 201, body
        for s in made:
            assert get_json(s.base + "/api/runs")["total"] == 1
        assert postgres().psql("SELECT version FROM vmpv_schema", db=url.rsplit("/", 1)[1]) == "3\n"
    finally:
        for s in made:
            s.stop()


def test_unreachable_or_wrong_database_is_refused(tmp_path):
    from test_server import SERVER_BIN
    import subprocess
    pg = postgres()
    cases = [
        ("postgresql://postgres@127.0.0.1:%d/test_none" % pg.port, "does not exist"),
        ("postgresql://postgres@127.0.0.1:1/x", "cannot connect to PostgreSQL"),
        ("mysql://u@h/db", "--db must be a postgresql:// or postgres:// URL"),
    ]
    for url, why in cases:
        r = subprocess.run([SERVER_BIN, "--listen", "127.0.0.1:0", "--db", url,
                            "--data", str(tmp_path / "d")], capture_output=True, text=True,
                           timeout=60, cwd=tmp_path)
        assert r.returncode != 0 and why in r.stderr, (url, r.stderr)
    assert not (tmp_path / "d").exists(), "no SQLite directory for a --db server"


def test_schema_1_database_is_upgraded(tmp_path):
    """A database a server of schema version 1 made (no thinning columns)
    is upgraded when a newer server starts: its run reads as never thinned,
    and uploads work."""
    url = postgres().new_database()
    name = url.rsplit("/", 1)[1]
    postgres().psql(
        "CREATE TABLE vmpv_schema(version int8 NOT NULL); INSERT INTO vmpv_schema VALUES(1);"
        "CREATE TABLE runs(rid int8 GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
        " id text NOT NULL UNIQUE, project text NOT NULL, function text NOT NULL,"
        " host text NOT NULL, source text NOT NULL, interp text NOT NULL, tags text NOT NULL,"
        " error text, status text NOT NULL, pid int8 NOT NULL, period_us int8 NOT NULL,"
        " version int8 NOT NULL, mode int8 NOT NULL, samples int8 NOT NULL,"
        " peak_rss_kb int8 NOT NULL, threads int8 NOT NULL, start_us int8 NOT NULL,"
        " end_us int8 NOT NULL, first_t_ns int8 NOT NULL, last_t_ns int8 NOT NULL,"
        " next_seq int8 NOT NULL, bytes int8 NOT NULL, trailer int8 NOT NULL,"
        " created_us int8 NOT NULL, updated_us int8 NOT NULL);"
        "CREATE TABLE names(rid int8 NOT NULL, addr int8 NOT NULL, name bytea NOT NULL,"
        " PRIMARY KEY(rid, addr));"
        "CREATE TABLE stacks(rid int8 NOT NULL, stack_id int8 NOT NULL, frames bytea NOT NULL,"
        " PRIMARY KEY(rid, stack_id));"
        "CREATE TABLE samples(rid int8 NOT NULL, idx int8 NOT NULL, t_ns int8 NOT NULL,"
        " rss_kb int8 NOT NULL, thread int8 NOT NULL, stack_id int8 NOT NULL,"
        " PRIMARY KEY(rid, idx));"
        "CREATE TABLE threads(rid int8 NOT NULL, thread int8 NOT NULL, PRIMARY KEY(rid, thread));"
        "INSERT INTO runs VALUES(DEFAULT, '" + "cd" * 16 + "', 'old', 'main', 'h', 'upload', 'cpython',"
        " '{}', NULL, 'complete', 1, 1000, 7, 1, 0, 0, 0, 1764000000000000, 1764000001000000,"
        " -1, -1, 0, 0, 1, 1764000000000000, 1764000000000000);", db=name)
    s = Server(tmp_path / "s", db=url)
    try:
        run = get_json(s.base + "/api/runs/" + "cd" * 16)
        assert run["project"] == "old" and run["decimation"] is None
        path = synthetic(tmp_path / "new.dat", 300)
        status, _, body = upload(s.base, path.read_bytes(), project="new")
        assert status == 201, body
        assert get_json(s.base + "/api/runs")["total"] == 2
    finally:
        s.stop()
    assert postgres().psql("SELECT max(version) FROM vmpv_schema", db=name) == "3\n"


# The last commit whose server kept a row per sample in PostgreSQL (schema 2).
SCHEMA_2_COMMIT = "6f78524"


@pytest.fixture(scope="session")
def schema_2_server():
    """vmpv-server built from SCHEMA_2_COMMIT (git archive of this
    repository, meson, the server target only), cached across sessions in
    $VMPV_TEST_CACHE (default /tmp/vmpv-test-cache); $VMPV_OLD_SERVER names
    a ready binary instead. Skips where neither git history nor a binary is
    at hand."""
    import shutil
    import subprocess
    if os.environ.get("VMPV_OLD_SERVER"):
        return os.environ["VMPV_OLD_SERVER"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cache = os.path.join(os.environ.get("VMPV_TEST_CACHE", "/tmp/vmpv-test-cache"),
                         "server-" + SCHEMA_2_COMMIT)
    binary = os.path.join(cache, "build", "server", "vmpv-server")
    if os.path.exists(binary):
        return binary
    if not shutil.which("git") or subprocess.run(
            ["git", "-C", root, "cat-file", "-e", SCHEMA_2_COMMIT + "^{commit}"],
            capture_output=True).returncode:
        pytest.skip("no git history with %s to build the schema-2 server" % SCHEMA_2_COMMIT)
    src = cache + ".tmp"
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    archive = subprocess.run(["git", "-C", root, "archive", SCHEMA_2_COMMIT],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "x"], input=archive, cwd=src, check=True)
    for cmd in (["meson", "setup", "build"], ["ninja", "-j2", "-C", "build", "server/vmpv-server"]):
        r = subprocess.run(cmd, cwd=src, capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, (cmd, r.stdout[-3000:], r.stderr[-3000:])
    shutil.rmtree(cache, ignore_errors=True)
    os.rename(src, cache)
    return binary


def answers(base, rid):
    """Everything the API says about a run that comes from its samples."""
    from test_server import http
    run = get_json(base + "/api/runs/" + rid)
    for k in ("url", "updated", "updated_time"):
        run.pop(k, None)
    if run["status"] == "live":
        run.pop("duration_s")  # counted to now
    got = {"run": run}
    for ep in ("functions", "collapsed", "memory", "memory?buckets=7&from=0.5&to=2.5", "tree",
               "tree?from=1&to=3", "growth", "speedscope"):
        status, _, body = http("GET", "%s/api/runs/%s/%s" % (base, rid, ep))
        assert status == 200, (ep, body)
        got[ep] = body
    # Speedscope numbers its frames in the order the store lists stacks,
    # which the schema-2 store left to PostgreSQL's join: compare each
    # sample's frames themselves.
    doc = json.loads(got["speedscope"])
    frames = doc["shared"]["frames"]
    for p in doc["profiles"]:
        p["samples"] = [[frames[i] for i in stack] for stack in p["samples"]]
    del doc["shared"]
    got["speedscope"] = doc
    return got


def test_schema_2_database_is_upgraded(tmp_path, schema_2_server):
    """A database the schema-2 server (a row per sample) filled is upgraded
    to blocks when this server starts: every run answers as before, the old
    table is gone, and the old server then refuses the database."""
    url = postgres().new_database()
    name = url.rsplit("/", 1)[1]
    old = Server(tmp_path / "old", db=url, binary=schema_2_server)
    try:
        rids = []
        # Uploads: 10,000 samples span three blocks; the hostile one's
        # stack ids and thread ids use all 64 bits.
        for path, project in ((synthetic(tmp_path / "big.dat", 10000, seed=21), "big"),
                              (hostile_profile(tmp_path / "hostile.dat"), "hostile")):
            status, _, body = upload(old.base, path.read_bytes(), project=project)
            assert status == 201, body
            rids.append(json.loads(body)["id"])
        # A run that grew batch by batch, one transaction each, left open.
        rid = os.urandom(16)
        assert post_batch(old.base, batch(1, rid, 0, opened("live")))[0] == 200
        live = synthetic(tmp_path / "live.dat", 6000, seed=22)
        parts = chunks(live, 7)
        for i, (payload, n) in enumerate(parts[:-1], start=1):
            assert post_batch(old.base, batch(2, rid, i, payload, n)) == (200, {"status": "stored"})
        rids.append(rid.hex())
        before = {r: answers(old.base, r) for r in rids}
    finally:
        old.stop()
    assert postgres().psql("SELECT max(version) FROM vmpv_schema", db=name) == "2\n"
    rows = int(postgres().psql("SELECT count(*) FROM samples", db=name))
    assert rows == sum(b["run"]["samples"] for b in before.values())

    new = Server(tmp_path / "new", db=url)  # its own data dir: no summary files
    try:
        after = {r: answers(new.base, r) for r in rids}
        for r in rids:
            for k in before[r]:
                assert after[r][k] == before[r][k], (r, k)
        # The open run keeps growing, now into blocks, and ends whole.
        last = len(parts)
        assert post_batch(new.base, batch(2, rid, last, *parts[-1])) == (200, {"status": "stored"})
        check_against_truth(new.base, rid.hex(), truth(live))
        assert "moved into blocks" in new.log.read_text()
    finally:
        new.stop()
    assert postgres().psql("SELECT max(version) FROM vmpv_schema", db=name) == "3\n"
    assert postgres().psql("SELECT to_regclass('samples') IS NULL", db=name) == "t\n"
    assert postgres().psql("SELECT sum(n) FROM sample_blocks", db=name) == \
        "%d\n" % (rows + parts[-1][1])
    # Blocks in index order, none across a run boundary, none overfull.
    assert postgres().psql(
        "SELECT count(*) FROM (SELECT n, first_idx, lead(first_idx) OVER"
        " (PARTITION BY rid ORDER BY first_idx) AS next FROM sample_blocks) b"
        " WHERE n > 4096 OR n < 1 OR next < first_idx + n", db=name) == "0\n"

    # A server of the old version refuses the upgraded database, saying why.
    import subprocess
    r = subprocess.run([schema_2_server, "--listen", "127.0.0.1:0", "--db", url, "--data",
                        str(tmp_path / "refused")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "has schema version 3; this server knows 2" in r.stderr, r.stderr
