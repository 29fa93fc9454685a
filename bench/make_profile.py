#!/usr/bin/env python3
"""Write a valid vmprof profile (format version 7, memory on) with a known
number of samples, for benchmarks and load tests that need more samples than
a real run can collect quickly.

The stacks cycle through a small call tree of F functions (depth D), RSS
ramps up and down, the sample clock advances by the period: every count is
known from the arguments.

With --paths K the stacks are instead K random call paths (depth D, drawn
with --seed), picked with Zipf-like weights 1/(k+1): a few hot paths and a
long tail, i.e. a wide call tree (K = 50000 gives ~10^5 tree nodes) as a
flame graph meets in a real program. Counts are then known from the seed.

  make_profile.py OUT --samples N [--depth D] [--functions F] [--period-us P] [--paths K --seed S]
"""
from __future__ import annotations

import argparse
import bisect
import random
import struct


def write_profile(path: str, samples: int, depth: int = 12, functions: int = 40,
                  period_us: int = 10000, paths: int = 0, seed: int = 7) -> None:
    base = 0x7F0000000000
    addrs = [base + 0x100 * (i + 1) for i in range(functions)]
    with open(path, "wb") as f:
        w = f.write
        w(struct.pack("<5q", 0, 3, 0, period_us, 0))
        w(b"\x05" + struct.pack(">h", 7) + bytes([1, 7]) + b"cpython")
        w(b"\x06" + struct.pack("<qq", 1700000000, 0) + bytes(8))
        for k, v in ((b"os", b"linux"), (b"bits", b"64")):
            w(b"\x07" + struct.pack("<q", len(k)) + k + struct.pack("<q", len(v)) + v)
        record = struct.Struct("<Bqq%dqqqq" % depth)
        if paths > 0:
            rnd = random.Random(seed)
            heads = []
            for _ in range(paths):
                frames = [addrs[0]] + [addrs[1 + int(rnd.random() ** 2 * (functions - 1))] for _ in range(depth - 1)]
                heads.append(struct.pack("<Bqq%dqq" % depth, 1, 1, depth, *reversed(frames), 0x7F00DEAD0000))
            cum, acc = [], 0.0
            for k in range(paths):
                acc += 1.0 / (k + 1)
                cum.append(acc)
            tail = struct.Struct("<qq")
            pick, rand = bisect.bisect_left, rnd.random
            for i in range(samples):
                w(heads[min(paths - 1, pick(cum, rand() * acc))] + tail.pack(50_000 + (i % 1000) * 10, i * period_us * 1000))
        for i in range(samples if paths <= 0 else 0):
            # root first: main, then a path chosen by i through the functions
            frames = [addrs[0]] + [addrs[1 + (i * (j + 3) + j) % (functions - 1)] for j in range(depth - 1)]
            rss = 50_000 + (i % 1000) * 10
            w(record.pack(1, 1, depth, *reversed(frames), 0x7F00DEAD0000, rss, i * period_us * 1000))
        for i, a in enumerate(addrs):
            name = f"py:func{i}:{i + 1}:/bench/synthetic.py".encode()
            w(b"\x02" + struct.pack("<qq", a, len(name)) + name)
        w(b"\x03" + struct.pack("<qq", 1700000000 + samples * period_us // 1_000_000, 0) + bytes(8))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--samples", type=int, required=True)
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--functions", type=int, default=40)
    ap.add_argument("--period-us", type=int, default=10000)
    ap.add_argument("--paths", type=int, default=0, help="K random call paths with Zipf-like weights instead of the cycle")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    write_profile(a.out, a.samples, a.depth, a.functions, a.period_us, a.paths, a.seed)


if __name__ == "__main__":
    main()
