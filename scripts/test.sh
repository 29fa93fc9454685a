#!/usr/bin/env bash
# Every test: C unit tests under ASan+UBSan, the web UI's unit tests, then
# pytest (client, daemons, end to end, browser), whose summary line ends the run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/setup.sh" --tests
cd "$ROOT"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
echo "== C unit tests (ASan+UBSan)"
meson test -C build-asan --print-errorlogs --suite unit
if grep -q '"test"' web/package.json; then
  echo "== web unit tests"
  (cd web && npm test --silent)
fi
echo "== pytest"
mkdir -p test-artifacts
export VMPV_BUILD="$ROOT/build-asan"
export VMPV_ARTIFACTS="$ROOT/test-artifacts"
exec .venv/bin/python -m pytest -q -p no:cacheprovider client/tests tests "$@"
