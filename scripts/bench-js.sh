#!/usr/bin/env bash
# The JavaScript client beside the Go client, on the same 3-node cluster in
# the same run: `consensus up` (default settings, fsync on), then RUNS
# rounds of writes and linearizable reads at concurrency 1, 64 and 256,
# each round driven once by `consensus bench --protocol ws` (the Go client)
# and once by clients/js/bench/load.js (the JS client), the order swapped
# every round; then one table of both, with the range over the rounds.
# Both talk to the leader over one multiplexed /v1/ws connection, on keys
# bench/000000... with 100-byte values. Everything listens on 127.0.0.1.
#
# Environment: RUNS (default 3), BENCH_DURATION (seconds per cell, default
# 5), BENCH_WARMUP (seconds, default 0.5), CONCURRENCY (default 1,64,256),
# OUT (reports and logs; default a new /tmp directory), PEER_PORT and
# HTTP_PORT (first of three ports each, default 28180, 29180).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
BENCH_DURATION=${BENCH_DURATION:-5}
BENCH_WARMUP=${BENCH_WARMUP:-0.5}
CONCURRENCY=${CONCURRENCY:-1,64,256}
OUT=${OUT:-$(mktemp -d /tmp/bench-js.XXXXXX)}
PEER_PORT=${PEER_PORT:-28180}
HTTP_PORT=${HTTP_PORT:-29180}
mkdir -p "$OUT"
echo "bench-js: reports and logs in $OUT" >&2

go build -o "$OUT/consensus" ./cmd/consensus
(cd clients/js && { [ -d node_modules ] || npm ci --no-audit --no-fund; })

up=""
stop_cluster() {
  if [ -n "$up" ]; then
    kill -TERM "$up" 2>/dev/null || true
    wait "$up" 2>/dev/null || true
    up=""
  fi
}
trap stop_cluster EXIT

"$OUT/consensus" up --data "$OUT/data" --peer-port "$PEER_PORT" --http-port "$HTTP_PORT" --log-level warn \
  >"$OUT/consensus-up.log" 2>&1 &
up=$!
endpoints="127.0.0.1:$HTTP_PORT,127.0.0.1:$((HTTP_PORT + 1)),127.0.0.1:$((HTTP_PORT + 2))"
deadline=$((SECONDS + 30))
until curl -fsS "http://127.0.0.1:$HTTP_PORT/v1/status" 2>/dev/null | grep -q '"leaderId":"[^"]'; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "bench-js: no leader within 30 s; see $OUT/consensus-up.log" >&2; exit 1; }
  sleep 0.1
done

go_cells() {
  "$OUT/consensus" bench --endpoints "$endpoints" --protocol ws --workloads write,read --concurrency "$CONCURRENCY" \
    --duration "${BENCH_DURATION}s" --warmup "${BENCH_WARMUP}s" --value-size 100 --json >"$OUT/go-$1.json"
}
js_cells() {
  node clients/js/bench/load.js --endpoints "$endpoints" --workloads write,read --concurrency "$CONCURRENCY" \
    --duration "$BENCH_DURATION" --warmup "$BENCH_WARMUP" --value-size 100 --json >"$OUT/js-$1.json"
}

for run in $(seq 1 "$RUNS"); do
  echo "bench-js: round $run of $RUNS, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  if [ $((run % 2)) -eq 1 ]; then go_cells "$run"; js_cells "$run"; else js_cells "$run"; go_cells "$run"; fi
done
echo "bench-js: done, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
stop_cluster
node clients/js/bench/compare.js "$OUT" "$RUNS" | tee "$OUT/table.txt"
