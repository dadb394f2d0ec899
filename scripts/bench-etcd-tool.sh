#!/usr/bin/env bash
# etcd's own benchmark tool against etcd 3.7.3 and consensus, on this
# machine, in one run: RUNS rounds (default 3), each starting a fresh
# 3-node etcd (built from bench/etcd's go.mod, as make bench-etcd does;
# fsync on, --heartbeat-interval 50 --election-timeout 300) and a fresh
# 3-node consensus (`consensus up`, etcd's API on every node), one after
# the other, the order alternated (odd rounds etcd first, even rounds
# consensus first), and driving each with the same four commands of the
# tool:
#
#   put       --total TOTAL --val-size 100                  (key-space 1)
#   range     bench-key --total TOTAL --consistency l       (linearizable)
#   txn-put   --total TOTAL --val-size 100 --txn-ops 1      (key-space 1)
#   txn-mixed --total TOTAL --val-size 100 --consistency l  (rw-ratio 1,
#             key-space 1; its reads and writes are reported apart)
#
# all with --clients CLIENTS --conns CONNS over every member's endpoint.
# The tool's keys are varints in a zeroed 8-byte buffer (NUL bytes, bytes
# >= 0x80), which consensus takes as etcd does since issue 16.
# The tool is go.etcd.io/etcd/v3's tools/benchmark at v3.6.8, built by
# bench/etcdtool (v3.7.3's root module is not on the Go module proxy; the
# tool is a client, and its RPCs are the same in 3.7). It prints one
# table of requests/s, mean, p50 and p99 latency per system and command,
# each as the range over the rounds, and the ratio consensus/etcd of
# requests/s per round.
#
# Environment: RUNS (3), TOTAL (20000), CLIENTS (64), CONNS (8), OUT
# (reports and logs; default a new /tmp directory), ETCD_PORT (first of
# six etcd ports, default 23790), PEER_PORT, HTTP_PORT and API_PORT (first
# of three consensus ports each, default 28080, 29080, 22379).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
TOTAL=${TOTAL:-20000}
CLIENTS=${CLIENTS:-64}
CONNS=${CONNS:-8}
OUT=${OUT:-$(mktemp -d /tmp/bench-etcd-tool.XXXXXX)}
ETCD_PORT=${ETCD_PORT:-23790}
PEER_PORT=${PEER_PORT:-28080}
HTTP_PORT=${HTTP_PORT:-29080}
API_PORT=${API_PORT:-22379}
mkdir -p "$OUT"
echo "bench-etcd-tool: reports and logs in $OUT" >&2

go build -o "$OUT/consensus" ./cmd/consensus
(cd bench/etcd && go build -o "$OUT/etcd-bench" . && go build -o "$OUT/etcd" ./cmd/etcd)
(cd bench/etcdtool && go build -o "$OUT/benchmark" .)

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $(seq "$ETCD_PORT" $((ETCD_PORT + 5))) $(seq "$PEER_PORT" $((PEER_PORT + 2))) \
  $(seq "$HTTP_PORT" $((HTTP_PORT + 2))) $(seq "$API_PORT" $((API_PORT + 2))); do
  if port_busy "$p"; then
    echo "bench-etcd-tool: port $p on 127.0.0.1 is in use; set ETCD_PORT, PEER_PORT, HTTP_PORT or API_PORT" >&2
    exit 1
  fi
done

pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT

# drive runs the three commands against endpoints; reports go to
# $OUT/<system>-<run>-<command>.txt.
drive() {
  local system=$1 run=$2 endpoints=$3 common
  common=(--endpoints "$endpoints" --clients "$CLIENTS" --conns "$CONNS" --precise)
  "$OUT/benchmark" "${common[@]}" put --total "$TOTAL" --val-size 100 \
    >"$OUT/$system-$run-put.txt" 2>"$OUT/$system-$run-put.log" || true
  "$OUT/benchmark" "${common[@]}" range bench-key --total "$TOTAL" --consistency l \
    >"$OUT/$system-$run-range.txt" 2>"$OUT/$system-$run-range.log" || true
  "$OUT/benchmark" "${common[@]}" txn-put --total "$TOTAL" --val-size 100 --txn-ops 1 \
    >"$OUT/$system-$run-txn-put.txt" 2>"$OUT/$system-$run-txn-put.log" || true
  "$OUT/benchmark" "${common[@]}" txn-mixed --total "$TOTAL" --val-size 100 --consistency l \
    >"$OUT/$system-$run-txn-mixed.txt" 2>"$OUT/$system-$run-txn-mixed.log" || true
  # Its two reports, reads then writes, each as a report of its own.
  : >"$OUT/$system-$run-txn-mixed-read.txt"
  : >"$OUT/$system-$run-txn-mixed-write.txt"
  awk '/^Total Write Ops:/ { w = 1 } { print > (w ? W : R) }' \
    R="$OUT/$system-$run-txn-mixed-read.txt" W="$OUT/$system-$run-txn-mixed-write.txt" \
    "$OUT/$system-$run-txn-mixed.txt"
}

run_etcd() {
  local run=$1 cluster="" endpoints="" i client peer
  for i in 1 2 3; do
    peer=$((ETCD_PORT + 2 * i - 1))
    cluster+="${cluster:+,}e$i=http://127.0.0.1:$peer"
    endpoints+="${endpoints:+,}127.0.0.1:$((ETCD_PORT + 2 * i - 2))"
  done
  rm -rf "$OUT/etcd-data"
  for i in 1 2 3; do
    client=$((ETCD_PORT + 2 * i - 2)) peer=$((ETCD_PORT + 2 * i - 1))
    # env -u: etcd reads ETCD_* variables as flags.
    env -u ETCD_PORT "$OUT/etcd" --name "e$i" --data-dir "$OUT/etcd-data/e$i" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token bench-etcd-tool \
      --heartbeat-interval 50 --election-timeout 300 \
      --logger zap --log-outputs stderr --log-level warn \
      >"$OUT/etcd-$run-e$i.log" 2>&1 &
    pids+=($!)
  done
  "$OUT/etcd-bench" wait --endpoints "$endpoints"
  echo "bench-etcd-tool: run $run: etcd $("$OUT/etcd" --version | sed -n 's/^etcd Version: //p'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  drive etcd "$run" "$endpoints"
  stop_all
  rm -rf "$OUT/etcd-data"
}

run_consensus() {
  local run=$1 endpoints="" i
  rm -rf "$OUT/consensus-data"
  "$OUT/consensus" up --data "$OUT/consensus-data" --peer-port "$PEER_PORT" --http-port "$HTTP_PORT" \
    --etcd-port "$API_PORT" --log-level warn >"$OUT/consensus-$run.log" 2>&1 &
  pids+=($!)
  for i in 0 1 2; do endpoints+="${endpoints:+,}127.0.0.1:$((API_PORT + i))"; done
  # A linearizable Range answers once the node has a leader.
  local deadline=$((SECONDS + 30))
  until "$OUT/benchmark" --endpoints "$endpoints" range bench-key --total 1 >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "bench-etcd-tool: consensus did not answer in 30s (see $OUT/consensus-$run.log)" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "bench-etcd-tool: run $run: consensus $("$OUT/consensus" version | cut -d' ' -f2), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  drive consensus "$run" "$endpoints"
  stop_all
  rm -rf "$OUT/consensus-data"
}

for run in $(seq 1 "$RUNS"); do
  if [ $((run % 2)) -eq 1 ]; then
    run_etcd "$run"
    run_consensus "$run"
  else
    run_consensus "$run"
    run_etcd "$run"
  fi
done

# field report key: the first number after "key:" in a report, or "-".
field() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }
# pct report p: the latency (s) of percentile p ("50%") in a report.
pct() { awk -v k="$2" '$1 == k && $2 == "in" { print $3; exit }' "$1"; }
ms() { awk -v a="$1" 'BEGIN { if (a == "") print ""; else printf "%.2f", a * 1000 }'; }
# errors report: the number of failed requests, and the first error.
errors() {
  awk '/^Error distribution:/ { on = 1; next } on && /\[[0-9]+\]/ { gsub(/[\[\]]/, "", $1); n += $1; if (msg == "") { $1 = ""; msg = $0 } } END { printf "%d\t%s\n", n, msg }' "$1"
}
range_of() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR == 0) print "-"; else if (lo == hi) print lo; else print lo "-" hi }'; }

{
  echo "| command | system | requests/s | mean latency (ms) | p50 (ms) | p99 (ms) | failed requests | ratio of requests/s (consensus/etcd, per run) |"
  echo "|---|---|---|---|---|---|---|---|"
  for cmd in put range txn-put txn-mixed-read txn-mixed-write; do
    for system in etcd consensus; do
      rps=() lat=() p50=() p99=() failed=() ratio=() first=""
      for run in $(seq 1 "$RUNS"); do
        f="$OUT/$system-$run-$cmd.txt"
        read -r n msg < <(errors "$f")
        failed+=("$n")
        [ -z "$first" ] && [ "$n" -gt 0 ] && first=$msg
        if [ "$n" -lt "$TOTAL" ]; then
          rps+=("$(field "$f" Requests/sec:)")
          lat+=("$(ms "$(field "$f" Average:)")")
          p50+=("$(ms "$(pct "$f" 50%)")")
          p99+=("$(ms "$(pct "$f" 99%)")")
        fi
        if [ "$system" = consensus ]; then
          e=$(field "$OUT/etcd-$run-$cmd.txt" Requests/sec:)
          c=$(field "$f" Requests/sec:)
          if [ "$n" -lt "$TOTAL" ] && [ -n "$e" ] && [ -n "$c" ]; then
            ratio+=("$(awk -v c="$c" -v e="$e" 'BEGIN { printf "%.2f", c / e }')")
          fi
        fi
      done
      r="" l="" a="" b="" fr="" rt=""
      r=$(printf '%s\n' "${rps[@]}" | grep -v '^$' | awk '{ printf "%.0f\n", $1 }' | range_of || true)
      l=$(printf '%s\n' "${lat[@]}" | grep -v '^$' | range_of || true)
      a=$(printf '%s\n' "${p50[@]}" | grep -v '^$' | range_of || true)
      b=$(printf '%s\n' "${p99[@]}" | grep -v '^$' | range_of || true)
      fr=$(printf '%s\n' "${failed[@]}" | range_of)
      [ -n "$first" ] && fr="$fr of $TOTAL (${first# })"
      if [ "$system" = consensus ]; then
        rt=$(printf '%s\n' "${ratio[@]}" | grep -v '^$' | range_of || true)
      fi
      echo "| $cmd | $system | ${r:--} | ${l:--} | ${a:--} | ${b:--} | $fr | ${rt:-} |"
    done
  done
} | tee "$OUT/table.md"
