#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each for the
# given seconds on a corpus that starts from real vmprof files and batches.
#   tests/fuzz/run.sh SECONDS [TARGET...]      TARGET: vmprof, batch, mpack
# Crashes are written to $FUZZ_OUT (default build-fuzz/) and fail the run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SECS=${1:-20}; shift || true
TARGETS=("${@:-vmprof batch}")
OUT=${FUZZ_OUT:-$ROOT/build-fuzz}
mkdir -p "$OUT"
PY=${PYTHON:-$ROOT/.venv/bin/python}
CFLAGS=(-std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -I"$ROOT/common" -I"$ROOT/build" -I"$ROOT/build-asan")
COMMON=("$ROOT"/common/vp_vmprof.c "$ROOT"/common/vp_batch.c "$ROOT"/common/vp_ack.c
        "$ROOT"/common/vp_mem.c "$ROOT"/common/vp_err.c)

# Seeds: real profiles (memory on/off, lines on), made fresh by vmprof itself.
SEEDS="$OUT/seeds-vmprof"
if [ ! -d "$SEEDS" ]; then
  mkdir -p "$SEEDS"
  "$PY" - "$SEEDS" <<'PY'
import sys, vmprof, threading
out = sys.argv[1]
def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)
def work():
    x = [bytearray(1 << 16) for _ in range(50)]
    fib(22)
    return x
for i, (mem, lines) in enumerate([(True, False), (False, False), (True, True)]):
    with open(f"{out}/real-{i}.dat", "w+b") as f:
        vmprof.enable(f.fileno(), period=0.001, memory=mem, lines=lines, native=False)
        t = threading.Thread(target=work); t.start(); work(); t.join()
        vmprof.disable()
PY
  # Keep seeds small: libFuzzer's default max_len is 4096.
  for f in "$SEEDS"/real-*.dat; do head -c 4000 "$f" >"$f.head"; done
fi
SEEDS_B="$OUT/seeds-batch"
if [ ! -d "$SEEDS_B" ]; then
  mkdir -p "$SEEDS_B"
  "$PY" - "$SEEDS_B" "$SEEDS"/real-0.dat.head <<'PY'
import struct, sys, os
out, src = sys.argv[1], sys.argv[2]
payload = open(src, "rb").read()[:2000]
for i, (kind, tok) in enumerate([(2, b""), (1, b"tok"), (3, b"")]):
    hdr = b"VPVB" + struct.pack("<HBB", 1, kind, 0) + os.urandom(16) + struct.pack("<QIIIHH", i, len(payload), len(payload), 3, len(tok), 0)
    open(f"{out}/b{i}", "wb").write(hdr + tok + payload)
ack = b"VPVA" + struct.pack("<HBB", 1, 0, 0) + bytes(16) + struct.pack("<QIHH", 1, 0, 2, 0) + b"ok"
open(f"{out}/ack", "wb").write(ack)
PY
fi

status=0
SEEDS_M="$OUT/seeds-mpack"
if [ ! -d "$SEEDS_M" ]; then
  mkdir -p "$SEEDS_M"
  # A map with a string, an int, an array and a bin, as the old client sends.
  printf '\x83\xa7version\x02\xa7project\xa1p\xa3arr\x92\x01\xc4\x02ab' >"$SEEDS_M/map"
fi

for t in ${TARGETS[@]}; do
  bin="$OUT/fuzz_$t"
  extra=()
  [ "$t" = mpack ] && extra=(-I"$ROOT/server" "$ROOT/server/mpack.c" -lz)
  clang "${CFLAGS[@]}" "$ROOT/tests/fuzz/fuzz_$t.c" "${COMMON[@]}" "${extra[@]}" -llz4 -o "$bin"
  corpus="$OUT/corpus-$t"
  mkdir -p "$corpus"
  seeds="$OUT/seeds-$t"
  echo "== fuzzing $t for ${SECS}s"
  if ! (cd "$OUT" && "$bin" -max_total_time="$SECS" -print_final_stats=1 -artifact_prefix="$OUT/crash-$t-" \
        "$corpus" "$seeds" 2>"$OUT/fuzz-$t.log"); then
    echo "fuzz_$t found a failure; see $OUT/fuzz-$t.log and $OUT/crash-$t-*"
    tail -40 "$OUT/fuzz-$t.log"
    status=1
  fi
  grep -E "stat::number_of_executed_units|cov:" "$OUT/fuzz-$t.log" | tail -2
done
exit $status
