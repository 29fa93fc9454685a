"""vmprof-viewer demo: `python vmprofdemo.py demo [--period S]`.

Profiles a few seconds of mixed work - recursion, number crunching, text
processing, sorting - while memory grows by about 128 MB and is then
released, so both the CPU view and the Memory view have
something to show. Prints the run's URL at the end.

The vmprof-viewer agent (or, with --url / $VMPV_URL, the server, expected at
localhost:8000) should be running; otherwise the profile is kept on disk and
a command to upload it is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Dict, List, Tuple

import vmprof_viewer_client


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def primes_below(limit: int) -> List[int]:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for i in range(2, int(limit ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = bytearray(len(range(i * i, limit, i)))
    return [i for i, flag in enumerate(sieve) if flag]


def word_counts(lines: int) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for i in range(lines):
        line = f"the quick brown fox {i % 97} jumps over the lazy dog {i % 13}"
        for word in line.upper().split():
            counts[word] = counts.get(word, 0) + 1
    return counts


def sort_records(n: int) -> List[Tuple[int, str, float]]:
    records = [((i * 7919) % 10007, str(i), i * 0.5) for i in range(n)]
    records.sort()
    return records


def matrix_product(size: int) -> List[List[float]]:
    a = [[float(i * size + j) for j in range(size)] for i in range(size)]
    b = [[float(i == j) for j in range(size)] for i in range(size)]
    return [[sum(x * y for x, y in zip(row, col)) for col in zip(*b)] for row in a]


def grow_memory(blocks: List[bytearray], megabytes: int) -> None:
    # Large blocks come from mmap and go straight back to the OS when freed,
    # so the RSS curve really falls after the peak.
    for _ in range(megabytes // 16):
        block = bytearray(16 * 1024 * 1024)
        block[::4096] = b"\x01" * len(block[::4096])  # touch every page
        blocks.append(block)


def crunch(rounds: int) -> int:
    total = 0
    for _ in range(rounds):
        total += fib(27)
        total += len(primes_below(1_500_000))
        total += len(word_counts(40_000))
        total += len(sort_records(80_000))
        total += len(matrix_product(70))
    return total


@vmprof_viewer_client.profile
def demo() -> int:
    blocks: List[bytearray] = []
    total = crunch(2)  # warm-up at low memory
    for _ in range(8):  # ramp up by ~128 MB
        grow_memory(blocks, 16)
        total += crunch(1)
    total += crunch(5)  # plateau at the peak
    blocks.clear()  # release: RSS drops back
    total += crunch(5)  # tail at low memory
    return total


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="vmprofdemo.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["demo"], help="run the profiling demo")
    parser.add_argument("--period", type=float, default=0.01,
                        help="sampling period in seconds (default 0.01 = 100 Hz, so a few seconds "
                             "give a few hundred samples; the library's own default is 0.1)")
    parser.add_argument("--url", default=None,
                        help="vmprof-viewer server, for uploading without an agent "
                             "(default $VMPV_URL; run URLs default to http://localhost:8000)")
    args = parser.parse_args(argv)

    try:
        vmprof_viewer_client.configure("Demo project", url=args.url, period=args.period)
    except ValueError as exc:
        parser.error(str(exc))

    started = time.monotonic()
    demo()
    print(f"demo finished in {time.monotonic() - started:.1f} s")
    url = vmprof_viewer_client.last_run_url()
    if url:
        print(url)
        return 0
    print("the profile was not sent to vmprof-viewer (see the message above)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
