#!/usr/bin/env bash
# Installs and builds everything vmprof-viewer needs on a Debian machine, as
# root. Safe to run again: each step is skipped when its result is present.
#   scripts/setup.sh            -> build/ (release) for the demo
#   scripts/setup.sh --tests    -> also build-asan/ (ASan+UBSan) and test tools
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
WANT_TESTS=0
[ "${1:-}" = "--tests" ] && WANT_TESTS=1

say() { printf '\n== %s\n' "$*"; }

# 1. Debian packages: the C libraries, meson, and for tests chromium and PostgreSQL.
PKGS=(build-essential pkg-config meson ninja-build python3-venv sqlite3 openssl curl
      libuv1-dev libnng-dev liblz4-dev libsqlite3-dev libh2o-dev libcurl4-openssl-dev
      libjansson-dev libmsgpack-dev libpq-dev libunwind-dev zlib1g-dev)
[ "$WANT_TESTS" = 1 ] && PKGS+=(chromium postgresql clang libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "installing Node.js and npm from Debian"
  apt-get install -y -qq nodejs npm >/dev/null
fi

# 2. The C programs.
if [ ! -f build/build.ninja ]; then
  say "configuring build/"
  meson setup build --buildtype=release >/dev/null
fi
say "building build/"
ninja -C build >/tmp/vmpv-build.log 2>&1 || { tail -40 /tmp/vmpv-build.log; exit 1; }
if [ "$WANT_TESTS" = 1 ]; then
  if [ ! -f build-asan/build.ninja ]; then
    say "configuring build-asan/ (ASan + UBSan)"
    meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
      -Dfault_injection=true >/dev/null
  fi
  say "building build-asan/"
  ninja -C build-asan >/tmp/vmpv-build-asan.log 2>&1 || { tail -40 /tmp/vmpv-build-asan.log; exit 1; }
fi

# 3. Python: a venv with the pinned sampler, the client and pytest.
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import vmprof_viewer_client, pytest' 2>/dev/null; then
  say "installing the Python client (vmprof 0.6.0) and pytest"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q pytest ./client
else
  # Always refresh the client itself: it may have changed since the venv was made.
  .venv/bin/pip install -q --no-deps --force-reinstall ./client >/dev/null
fi

# An older sampler (format version 6) to record files like those users have
# from before: vmprof 0.4.18.1 builds from source on this Python.
if [ "$WANT_TESTS" = 1 ] && [ ! -x .venv-vmprof04/bin/python ]; then
  say "building vmprof 0.4.18.1 in .venv-vmprof04 (for the old-format upload tests)"
  python3 -m venv .venv-vmprof04
  .venv-vmprof04/bin/pip install -q vmprof==0.4.18.1 || echo "vmprof 0.4.18.1 did not build; its tests will say so"
fi

# 4. The web UI.
if [ ! -d web/node_modules ]; then
  say "installing web dependencies (npm ci)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
say "building the web UI"
(cd web && npm run --silent build >/dev/null)
say "setup done"
