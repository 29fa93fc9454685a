"""Write a big, valid vmprof profile made of real vmprof records.

    python bench/replicate_profile.py OUT [--samples N]

Real samples are slow to collect (vmprof's CPU timer fires at most at the
scheduler tick, ~250 Hz here), so this records one real profile of
bench/workload.py with vmprof 0.6.0 (memory=True, native=False, period
0.001, about 8 s of CPU: ~2000 samples, HEADER version 7), cached in
$VMPV_BENCH_CACHE or /tmp/vmpv-bench-cache, and then writes OUT as: that
file's own header records, its STACKTRACE records repeated in order until N
samples (each repetition shifts the s64 sample time so time keeps growing;
stacks, thread id and RSS are byte for byte what vmprof wrote), its name
records, and its TRAILER.
"""

from __future__ import annotations

import argparse
import statistics

import _common as c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("out", help="file to write")
    ap.add_argument("--samples", type=int, default=2_000_000, help="STACKTRACE records (default 2000000)")
    args = ap.parse_args()
    if args.samples < 1:
        ap.error("--samples must be positive")
    src_path, prof = c.real_profile()
    size = c.SyntheticWriter(prof).write(args.out, args.samples)
    mean = statistics.mean(len(s) for s in prof.stacks)
    print(c.table(["file", "samples", "bytes", "bytes/sample", "source", "source samples", "mean record"],
                  [[args.out, args.samples, size, f"{size / args.samples:.1f}", src_path, len(prof.stacks),
                    f"{mean:.1f}"]]))
    return 0


if __name__ == "__main__":
    c.main_guard(main)
