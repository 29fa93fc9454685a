#!/usr/bin/env bash
# The seed's demo, end to end on localhost: vmpv-server on localhost:8000
# (SQLite in ./vmpv-data), vmpv-relay and vmpv-agent beside it, then
# `python vmprofdemo.py demo` through the client. Prints the profile's URL and
# keeps the daemons running until Ctrl-C.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
STATE="$ROOT/vmpv-data"
mkdir -p "$STATE"
SOCK="$STATE/agent.sock"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Start a daemon, wait for its "listening on" line, and print the address.
start() {
  local name=$1; shift
  local out="$STATE/$name.out"
  : >"$out"
  "build/${name#vmpv-}/$name" "$@" >"$out" 2>>"$STATE/$name.log" &
  pids+=($!)
  for _ in $(seq 200); do
    if grep -q " listening on " "$out"; then
      sed -n 's/.* listening on //p' "$out" | head -1
      return 0
    fi
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.05
  done
  echo "$name did not start; see $STATE/$name.log" >&2
  tail -5 "$STATE/$name.log" >&2
  exit 1
}

SERVER=$(start vmpv-server --listen 127.0.0.1:8000 --data "$STATE/server" --web web/dist)
RELAY=$(start vmpv-relay --listen tcp://127.0.0.1:0 --server "$SERVER" --data "$STATE/relay")
start vmpv-agent --socket "$SOCK" --relay "$RELAY" --data "$STATE/agent" >/dev/null
echo "vmpv-server $SERVER, vmpv-relay $RELAY, vmpv-agent $SOCK (logs in $STATE)"

cd client
VMPV_AGENT_SOCKET="$SOCK" VMPV_URL="$SERVER" "$ROOT/.venv/bin/python" vmprofdemo.py demo | tee "$STATE/demo.out"
RUN_URL=$(grep -o 'http://[^ ]*/runs/[0-9a-f]*' "$STATE/demo.out" | tail -1)
RUN_ID=${RUN_URL##*/}
for _ in $(seq 300); do
  if curl -fsS "$SERVER/api/runs/$RUN_ID" 2>/dev/null | grep -q '"status": *"\(complete\|failed\|incomplete\)"'; then
    break
  fi
  sleep 0.1
done
echo
echo "Profile ready: $RUN_URL"
echo "All runs:      $SERVER/"
echo "Press Ctrl-C to stop the daemons."
while true; do sleep 3600; done
