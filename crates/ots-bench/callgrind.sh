#!/usr/bin/env bash
# Instructions ots executes per share+reveal pair and per /api/v1/status request, on the
# memory store, counted by valgrind's callgrind: the same binary and requests give the same
# count whatever else the machine does, so a change of a few per cent shows where a rate on a
# shared machine would hide it (BENCHMARKS.md).
#
#   crates/ots-bench/callgrind.sh [BINARY] [PAIRS]
#
# BINARY defaults to target/release/ots, PAIRS to 1000. One keep-alive connection; 50 pairs
# warm up before the counters are zeroed. The profiles are kept as
# callgrind.pairs.out and callgrind.status.out in the working directory (callgrind_annotate reads it).
set -euo pipefail

bin=${1:-target/release/ots}
pairs=${2:-1000}
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 1; }
[ -x "$bin" ] || { echo "callgrind.sh: no binary at $bin (cargo build --release -p ots-server)" >&2; exit 1; }

work=$(mktemp -d)
vpid=
cleanup() { [ -n "$vpid" ] && kill "$vpid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/bench.toml" <<'EOF'
[plans.anonymous.rate_limits]
create = { burst = 10000000, per_minute = 100000000 }
reveal = { burst = 10000000, per_minute = 100000000 }
other = { burst = 10000000, per_minute = 100000000 }
EOF

cat > "$work/drive.py" <<'EOF'
import http.client, json, sys
port, kind, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
form = {"content-type": "application/x-www-form-urlencoded"}
for _ in range(n):
    if kind == "status":
        for _ in range(2):
            c.request("GET", "/api/v1/status")
            r = c.getresponse(); r.read(); assert r.status == 200, r.status
        continue
    c.request("POST", "/api/v1/share", body="secret=benchmark+value+0123456789&ttl=3600", headers=form)
    r = c.getresponse(); body = r.read(); assert r.status == 200, r.status
    c.request("POST", "/api/v1/secret/" + json.loads(body)["secret_key"], body="", headers=form)
    r = c.getresponse(); r.read(); assert r.status == 200, r.status
EOF

# Instructions for `n` operations of `kind` (pairs, or status requests two at a time).
count() {
  local kind=$1 n=$2 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -f "$work"/out.*
  OTS_CONFIG="$work/bench.toml" OTS_DATABASE_URL=memory:// OTS_DATA_DIR="$work" \
    OTS_SECRET=benchmark-master-secret-0123456789abcdef OTS_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$work/out.%p" \
    "$bin" serve --listen "127.0.0.1:$port" >"$work/log" 2>&1 &
  vpid=$!
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  python3 "$work/drive.py" "$port" "$kind" 50
  callgrind_control -z "$vpid" >/dev/null 2>&1
  python3 "$work/drive.py" "$port" "$kind" "$n"
  callgrind_control -d "$vpid" >/dev/null 2>&1
  sleep 1
  kill "$vpid"; wait "$vpid" 2>/dev/null || true; vpid=
  local out total
  out=$(ls "$work"/out.*.1)
  cp "$out" "callgrind.$kind.out"
  total=$(callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  echo "$total"
}

p=$(count pairs "$pairs")
s=$(count status "$pairs")
echo "$bin: $((p / pairs)) instructions per pair, $((s / pairs / 2)) per /api/v1/status request"
