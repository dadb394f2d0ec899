#!/usr/bin/env bash
# Side by side with etcd, on this machine, one system after the other:
#
#   1. a 3-node etcd on 127.0.0.1 with our timings (--heartbeat-interval 50
#      --election-timeout 300) and fsync on (its default), driven through
#      etcd's Go client v3 by bench/etcd. The etcd server is, by default,
#      etcd 3.7.3 built from its Go modules at the versions bench/etcd's
#      go.mod pins (bench/etcd/cmd/etcd; no download of a prebuilt
#      binary); ETCD=debian uses Debian's etcd-server instead (installed
#      if missing; 3.4.23 when this was written), the comparison system
#      before 3.7.3;
#   2. a 3-node consensus cluster (`consensus up`, default settings),
#      driven by `consensus bench` through our Go client (ws) and plain
#      HTTP/1.1 JSON (http);
#
# each with writes at concurrency 1/16/64/256 and linearizable reads at 64
# (and, for us, HTTP writes and reads at 64), and leases and locks: lock
# acquire+release with 1 and 64 contenders, keepalives at 64 (etcd: by
# KeepAliveOnce, and over one LeaseKeepAlive stream per contender), and
# the lateness of 1 s leases' expiry as a watch sees it, 64 at a time;
# and task queues: enqueues and claim+complete pairs at 1/16/64 workers
# (etcd: the loop its users write, a transaction on a revision moving a
# ready key to a claimed key under the worker's lease, bench/etcd/queue.go),
# and how late after its 1 s time to live a dead worker's task is claimed
# again, 16 at a time; then prints one table with both systems and the
# ratio per row. Everything listens on 127.0.0.1 only;
# every cell is bounded by BENCH_DURATION.
#
# Environment: ETCD (build, the default, or debian: which etcd server, as
# above), BENCH_SET (all, the default; kv: writes and reads only; coord:
# leases and locks only; queue: task queues only; memory: instead of workloads, each node's RSS
# after FILL_KEYS keys of 100 B, default 100000; curves: instead, how cost
# grows with value size, cluster size (a 5-node start of each system),
# watchers and 1,024 clients, see curves_etcd below; not part of all;
# scale: for each of SCALE_KEYS, default "10000 100000 1000000", what that
# many keys of 100 B cost each system: RSS, data directory, a backup's size
# and time, restart of a follower and of the whole cluster, a new member's
# catch-up; one table per key count, the order alternated from one to the
# next; not part of all),
# BENCH_DURATION (per cell, default 5s), BENCH_WARMUP (500ms),
# OUT (where reports, logs and data go; default a new /tmp directory),
# ETCD_PORT (first of six etcd ports, default 23790), PEER_PORT and
# HTTP_PORT (first of three consensus ports each, default 28080, 29080),
# ORDER (default etcd,consensus), KEEP_DATA (non-empty keeps both data
# directories; by default only reports, logs and binaries stay in OUT).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DURATION=${BENCH_DURATION:-5s}
BENCH_WARMUP=${BENCH_WARMUP:-500ms}
OUT=${OUT:-$(mktemp -d /tmp/bench-etcd.XXXXXX)}
ETCD_PORT=${ETCD_PORT:-23790}
PEER_PORT=${PEER_PORT:-28080}
HTTP_PORT=${HTTP_PORT:-29080}
ORDER=${ORDER:-etcd,consensus}
ETCD=${ETCD:-build}
BENCH_SET=${BENCH_SET:-all}
FILL_KEYS=${FILL_KEYS:-100000}
SCALE_KEYS=${SCALE_KEYS:-10000 100000 1000000}
case "$BENCH_SET" in
all | kv | coord | queue | memory | curves | scale) ;;
*) echo "bench-etcd: BENCH_SET: $BENCH_SET is not all, kv, coord, queue, memory, curves or scale" >&2; exit 2 ;;
esac
want() { [ "$BENCH_SET" = all ] || [ "$BENCH_SET" = "$1" ]; }
mkdir -p "$OUT"
echo "bench-etcd: reports, logs and data in $OUT" >&2

go build -o "$OUT/consensus" ./cmd/consensus
(cd bench/etcd && go build -o "$OUT/etcd-bench" .)
case "$ETCD" in
build)
  echo "bench-etcd: building etcd's server from bench/etcd's go.mod" >&2
  (cd bench/etcd && go build -o "$OUT/bin/etcd" ./cmd/etcd)
  etcd_bin="$OUT/bin/etcd"
  ;;
debian)
  if ! command -v etcd >/dev/null 2>&1; then
    echo "bench-etcd: installing etcd-server from Debian's packages" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
  fi
  etcd_bin=$(command -v etcd)
  ;;
*) echo "bench-etcd: ETCD: $ETCD is not build or debian" >&2; exit 2 ;;
esac

# A port in use would make a node fail at start: check them all first.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $(seq "$ETCD_PORT" $((ETCD_PORT + 5))) $(seq "$PEER_PORT" $((PEER_PORT + 2))) $(seq "$HTTP_PORT" $((HTTP_PORT + 2))); do
  if port_busy "$p"; then
    echo "bench-etcd: port $p on 127.0.0.1 is in use; set ETCD_PORT, PEER_PORT or HTTP_PORT" >&2
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

cells=(--duration "$BENCH_DURATION" --warmup "$BENCH_WARMUP" --value-size 100 --json)

# ---- etcd ---------------------------------------------------------------
# start_etcd [N] starts an N-node etcd (default 3) and waits for a leader;
# it sets endpoints, cpu (e1=pid,...) and datadirs (e1=dir,...).
start_etcd() {
  local cluster="" i client peer n=${1:-3}
  endpoints="" cpu="" datadirs=""
  for i in $(seq 1 "$n"); do
    peer=$((ETCD_PORT + 2 * i - 1))
    cluster+="${cluster:+,}e$i=http://127.0.0.1:$peer"
    endpoints+="${endpoints:+,}127.0.0.1:$((ETCD_PORT + 2 * i - 2))"
  done
  for i in $(seq 1 "$n"); do
    client=$((ETCD_PORT + 2 * i - 2)) peer=$((ETCD_PORT + 2 * i - 1))
    mkdir -p "$OUT/etcd"
    # env -u: etcd reads ETCD_* variables as flags (and warns about ours).
    env -u ETCD_PORT "$etcd_bin" --name "e$i" --data-dir "$OUT/etcd/e$i" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token bench-etcd \
      --heartbeat-interval 50 --election-timeout 300 \
      --logger zap --log-outputs stderr --log-level warn \
      >"$OUT/etcd/e$i.log" 2>&1 &
    pids+=($!)
    cpu+="${cpu:+,}e$i=$!"
    datadirs+="${datadirs:+,}e$i=$OUT/etcd/e$i"
  done
  "$OUT/etcd-bench" wait --endpoints "$endpoints"
}

run_etcd() {
  local endpoints cpu datadirs
  start_etcd
  echo "bench-etcd: etcd $("$etcd_bin" --version | sed -n 's/^etcd Version: //p'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  if want kv; then
    echo "bench-etcd: etcd: writes" >&2
    "$OUT/etcd-bench" run --endpoints "$endpoints" --workloads write --concurrency 1,16,64,256 --cpu-pids "$cpu" "${cells[@]}" >"$OUT/etcd-write.json"
    echo "bench-etcd: etcd: linearizable reads" >&2
    "$OUT/etcd-bench" run --endpoints "$endpoints" --workloads read --concurrency 64 --cpu-pids "$cpu" "${cells[@]}" >"$OUT/etcd-read.json"
  fi
  if want coord; then
    echo "bench-etcd: etcd: locks, keepalives, lease expiry" >&2
    "$OUT/etcd-bench" run --endpoints "$endpoints" --workloads lock --concurrency 1,64 --cpu-pids "$cpu" "${cells[@]}" >"$OUT/etcd-lock.json"
    "$OUT/etcd-bench" run --endpoints "$endpoints" --workloads keepalive --concurrency 64 --cpu-pids "$cpu" "${cells[@]}" >"$OUT/etcd-keepalive.json"
    "$OUT/etcd-bench" run --endpoints "$endpoints" --workloads keepalive --keepalive-stream --concurrency 64 --cpu-pids "$cpu" "${cells[@]}" >"$OUT/etcd-keepalive-stream.json"
    "$OUT/etcd-bench" run --endpoints "$endpoints" --workloads expiry --lease-ttl 1s --concurrency 64 --cpu-pids "$cpu" "${cells[@]}" >"$OUT/etcd-expiry.json"
  fi
  if want queue; then
    echo "bench-etcd: etcd: task queues" >&2
    "$OUT/etcd-bench" run --endpoints "$endpoints" --workloads enqueue,claim --concurrency 1,16,64 --cpu-pids "$cpu" "${cells[@]}" >"$OUT/etcd-queue.json"
    "$OUT/etcd-bench" run --endpoints "$endpoints" --workloads takeover --lease-ttl 1s --concurrency 16 --cpu-pids "$cpu" "${cells[@]}" >"$OUT/etcd-takeover.json"
  fi
  echo "bench-etcd: etcd done, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  stop_all
  [ -n "${KEEP_DATA:-}" ] || rm -rf "$OUT/etcd/e1" "$OUT/etcd/e2" "$OUT/etcd/e3"
}

# ---- consensus ----------------------------------------------------------
run_consensus() {
  local endpoints up cpu="" p id deadline=$((SECONDS + 30)) cpuflag=()
  "$OUT/consensus" up --data "$OUT/consensus-data" --peer-port "$PEER_PORT" --http-port "$HTTP_PORT" --log-level warn \
    >"$OUT/consensus-up.log" 2>&1 &
  up=$!
  pids+=("$up")
  # The nodes are up's children; their CPU is measured like etcd's.
  until [ "$(pgrep -c -P "$up")" -ge 3 ] || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.1; done
  for p in $(pgrep -P "$up"); do
    id=$(tr '\0' '\n' <"/proc/$p/cmdline" | sed -n '/^--id$/{n;p;}')
    [ -n "$id" ] && cpu+="${cpu:+,}$id=$p"
  done
  [ -n "$cpu" ] && cpuflag=(--cpu-pids "$cpu")
  endpoints="127.0.0.1:$HTTP_PORT,127.0.0.1:$((HTTP_PORT + 1)),127.0.0.1:$((HTTP_PORT + 2))"
  echo "bench-etcd: consensus $("$OUT/consensus" version | cut -d' ' -f2), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  if want kv; then
    echo "bench-etcd: consensus: writes (ws)" >&2
    "$OUT/consensus" bench --endpoints "$endpoints" --protocol ws --workloads write --concurrency 1,16,64,256 "${cpuflag[@]}" "${cells[@]}" >"$OUT/ours-ws-write.json"
    echo "bench-etcd: consensus: linearizable reads (ws)" >&2
    "$OUT/consensus" bench --endpoints "$endpoints" --protocol ws --workloads read --concurrency 64 "${cpuflag[@]}" "${cells[@]}" >"$OUT/ours-ws-read.json"
    echo "bench-etcd: consensus: writes and linearizable reads (http)" >&2
    "$OUT/consensus" bench --endpoints "$endpoints" --protocol http --workloads write,read --concurrency 64 "${cpuflag[@]}" "${cells[@]}" >"$OUT/ours-http.json"
  fi
  if want coord; then
    echo "bench-etcd: consensus: locks, keepalives, lease expiry (ws)" >&2
    "$OUT/consensus" bench --endpoints "$endpoints" --protocol ws --workloads lock --concurrency 1,64 "${cpuflag[@]}" "${cells[@]}" >"$OUT/ours-lock.json"
    "$OUT/consensus" bench --endpoints "$endpoints" --protocol ws --workloads keepalive --concurrency 64 "${cpuflag[@]}" "${cells[@]}" >"$OUT/ours-keepalive.json"
    "$OUT/consensus" bench --endpoints "$endpoints" --protocol ws --workloads expiry --lease-ttl 1s --concurrency 64 "${cpuflag[@]}" "${cells[@]}" >"$OUT/ours-expiry.json"
  fi
  if want queue; then
    echo "bench-etcd: consensus: task queues (ws)" >&2
    "$OUT/consensus" bench --endpoints "$endpoints" --protocol ws --workloads enqueue,claim --concurrency 1,16,64 "${cpuflag[@]}" "${cells[@]}" >"$OUT/ours-queue.json"
    "$OUT/consensus" bench --endpoints "$endpoints" --protocol ws --workloads takeover --lease-ttl 1s --concurrency 16 "${cpuflag[@]}" "${cells[@]}" >"$OUT/ours-takeover.json"
  fi
  echo "bench-etcd: consensus done, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  stop_all
  [ -n "${KEEP_DATA:-}" ] || rm -rf "$OUT/consensus-data"
}

# ---- memory (BENCH_SET=memory) -------------------------------------------
# FILL_KEYS distinct keys of 100 B into a fresh 3-node cluster of each
# system, through its leader at concurrency 64; then each node's RSS, peak
# RSS and data directory once every node has applied them.
memory_etcd() {
  local endpoints cpu datadirs
  start_etcd
  echo "bench-etcd: etcd $("$etcd_bin" --version | sed -n 's/^etcd Version: //p'): memory, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  "$OUT/etcd-bench" fill --endpoints "$endpoints" --pids "$cpu" --data "$datadirs" --keys "$FILL_KEYS" --value-size 100 | tee "$OUT/etcd-memory.txt"
  stop_all
  [ -n "${KEEP_DATA:-}" ] || rm -rf "$OUT/etcd/e1" "$OUT/etcd/e2" "$OUT/etcd/e3"
}

memory_consensus() {
  echo "bench-etcd: consensus $("$OUT/consensus" version | cut -d' ' -f2): memory, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  local keep=()
  [ -z "${KEEP_DATA:-}" ] || keep=(--data "$OUT/consensus-fill" --keep-data)
  # bench starts its own 3 nodes (on ports it picks) for --fill-keys, in a
  # temporary directory it removes, unless KEEP_DATA.
  "$OUT/consensus" bench --fill-keys "$FILL_KEYS" --value-size 100 "${keep[@]}" | tee "$OUT/ours-memory.txt"
}

# ---- curves (BENCH_SET=curves) -------------------------------------------
# How each cost grows with the work (issue 18, item 3): on 3 nodes, writes
# of 100 B, 10 KB and 1 MB values at c=16 and 64 (and c=1 at 100 B); writes
# and linearizable reads at c=1024; writes at c=64 while 1, 1,000 and
# 10,000 watchers follow bench/ (ours: one SSE stream each, spread over
# the nodes, each from its own loopback address, and again over /v1/ws,
# CURVES_WATCHES_PER_STREAM to a connection; etcd: clientv3 watches,
# CURVES_WATCHES_PER_STREAM (default 1000) to a client, that is one gRPC
# connection and Watch stream, the clients spread over the nodes), with
# the delivery lag of probe writes; then on 5 nodes, writes at c=1 and 64.
# The watcher rows are printed twice: ours over SSE, then ours over /v1/ws.
# Each system's 3-node and 5-node clusters are started fresh.
CURVES_WATCHES_PER_STREAM=${CURVES_WATCHES_PER_STREAM:-1000}
curves_cells=(--duration "$BENCH_DURATION" --warmup "$BENCH_WARMUP" --json)
# Each curves cell also carries the CPU time per operation of the nodes and
# of the load generator (--cpu-pids), to tell where a bend's time goes.
# curves_run FILE CMD...: runs one measurement into FILE; a failure (say,
# a probe write timing out under 10,000 watchers) is noted and the set
# goes on, the report it printed kept.
curves_run() {
  local file=$1 rc=0
  shift
  "$@" >"$file" || rc=$?
  [ "$rc" = 0 ] || echo "bench-etcd: $(basename "$file" .json): exit $rc (the report keeps what was measured)" >&2
}

curves_etcd() {
  local endpoints cpu datadirs size n
  for p in $(seq "$ETCD_PORT" $((ETCD_PORT + 9))); do
    if port_busy "$p"; then echo "bench-etcd: port $p on 127.0.0.1 is in use; set ETCD_PORT" >&2; exit 1; fi
  done
  start_etcd 3
  echo "bench-etcd: etcd $("$etcd_bin" --version | sed -n 's/^etcd Version: //p'): curves on 3 nodes, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  for size in 100 10000 1000000; do
    echo "bench-etcd: etcd: writes of $size B, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    curves_run "$OUT/etcd-curves-size$size.json" "$OUT/etcd-bench" run --endpoints "$endpoints" --cpu-pids "$cpu" --workloads write --concurrency "$([ "$size" = 100 ] && echo 1,16,64 || echo 16,64)" \
      --value-size "$size" "${curves_cells[@]}"
  done
  echo "bench-etcd: etcd: writes and reads at c=1024, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  curves_run "$OUT/etcd-curves-c1024.json" "$OUT/etcd-bench" run --endpoints "$endpoints" --cpu-pids "$cpu" --workloads write,read --concurrency 1024 --value-size 100 "${curves_cells[@]}"
  for n in 1 1000 10000; do
    echo "bench-etcd: etcd: writes with $n watchers, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    curves_run "$OUT/etcd-curves-watch$n.json" "$OUT/etcd-bench" run --endpoints "$endpoints" --cpu-pids "$cpu" --workloads write --concurrency 64 --value-size 100 \
      --watchers "$n" --watches-per-stream "$CURVES_WATCHES_PER_STREAM" "${curves_cells[@]}"
  done
  stop_all
  [ -n "${KEEP_DATA:-}" ] || rm -rf "$OUT/etcd/e1" "$OUT/etcd/e2" "$OUT/etcd/e3"
  start_etcd 5
  echo "bench-etcd: etcd: writes on 5 nodes, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  curves_run "$OUT/etcd-curves-5nodes.json" "$OUT/etcd-bench" run --endpoints "$endpoints" --cpu-pids "$cpu" --workloads write --concurrency 1,64 --value-size 100 "${curves_cells[@]}"
  echo "bench-etcd: etcd curves done, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  stop_all
  [ -n "${KEEP_DATA:-}" ] || rm -rf "$OUT"/etcd/e[1-5]
}

# curves_start_consensus N starts an N-node `consensus up` (its etcd API
# off) and sets endpoints and cpu (n1=pid,...).
curves_start_consensus() {
  local n=$1 up deadline=$((SECONDS + 30)) i p id
  for p in $(seq "$PEER_PORT" $((PEER_PORT + n - 1))) $(seq "$HTTP_PORT" $((HTTP_PORT + n - 1))); do
    if port_busy "$p"; then echo "bench-etcd: port $p on 127.0.0.1 is in use; set PEER_PORT or HTTP_PORT" >&2; exit 1; fi
  done
  # Watches over /v1/ws share a connection, so a client identity.
  "$OUT/consensus" up --nodes "$n" --data "$OUT/consensus-data" --peer-port "$PEER_PORT" --http-port "$HTTP_PORT" \
    --etcd-port 0 --log-level warn --max-watches-per-client "$((CURVES_WATCHES_PER_STREAM > 64 ? CURVES_WATCHES_PER_STREAM : 64))" \
    >"$OUT/consensus-up-$n.log" 2>&1 &
  up=$!
  pids+=("$up")
  until [ "$(pgrep -c -P "$up")" -ge "$n" ] || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.1; done
  cpu=""
  for p in $(pgrep -P "$up"); do
    id=$(tr '\0' '\n' <"/proc/$p/cmdline" | sed -n '/^--id$/{n;p;}')
    [ -n "$id" ] && cpu+="${cpu:+,}$id=$p"
  done
  endpoints=""
  for i in $(seq 0 $((n - 1))); do endpoints+="${endpoints:+,}127.0.0.1:$((HTTP_PORT + i))"; done
}

curves_consensus() {
  local endpoints cpu size n
  curves_start_consensus 3
  echo "bench-etcd: consensus $("$OUT/consensus" version | cut -d' ' -f2): curves on 3 nodes, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  for size in 100 10000 1000000; do
    echo "bench-etcd: consensus: writes of $size B, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    curves_run "$OUT/ours-curves-size$size.json" "$OUT/consensus" bench --endpoints "$endpoints" --cpu-pids "$cpu" --protocol ws --workloads write --concurrency "$([ "$size" = 100 ] && echo 1,16,64 || echo 16,64)" \
      --value-size "$size" "${curves_cells[@]}"
  done
  echo "bench-etcd: consensus: writes and reads at c=1024, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  curves_run "$OUT/ours-curves-c1024.json" "$OUT/consensus" bench --endpoints "$endpoints" --cpu-pids "$cpu" --protocol ws --workloads write,read --concurrency 1024 --value-size 100 "${curves_cells[@]}"
  for n in 1 1000 10000; do
    echo "bench-etcd: consensus: writes with $n watchers, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    curves_run "$OUT/ours-curves-watch$n.json" "$OUT/consensus" bench --endpoints "$endpoints" --cpu-pids "$cpu" --protocol ws --workloads write --concurrency 64 --value-size 100 \
      --watchers "$n" "${curves_cells[@]}"
    echo "bench-etcd: consensus: writes with $n watchers over /v1/ws, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    curves_run "$OUT/ours-curves-wswatch$n.json" "$OUT/consensus" bench --endpoints "$endpoints" --cpu-pids "$cpu" --protocol ws --workloads write --concurrency 64 --value-size 100 \
      --watchers "$n" --watch-protocol ws --watches-per-conn "$CURVES_WATCHES_PER_STREAM" "${curves_cells[@]}"
  done
  stop_all
  [ -n "${KEEP_DATA:-}" ] || rm -rf "$OUT/consensus-data"
  curves_start_consensus 5
  echo "bench-etcd: consensus: writes on 5 nodes, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  curves_run "$OUT/ours-curves-5nodes.json" "$OUT/consensus" bench --endpoints "$endpoints" --cpu-pids "$cpu" --protocol ws --workloads write --concurrency 1,64 --value-size 100 "${curves_cells[@]}"
  echo "bench-etcd: consensus curves done, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  stop_all
  [ -n "${KEEP_DATA:-}" ] || rm -rf "$OUT/consensus-data"
}

curves_compare() {
  local f etcd="" ours=""
  for f in size100 size10000 size1000000 c1024 watch1 watch1000 watch10000 5nodes; do
    [ -s "$OUT/etcd-curves-$f.json" ] && etcd+="${etcd:+,}$OUT/etcd-curves-$f.json"
    [ -s "$OUT/ours-curves-$f.json" ] && ours+="${ours:+,}$OUT/ours-curves-$f.json"
  done
  echo >&2
  "$OUT/etcd-bench" compare --table curves --etcd "$etcd" --ours "$ours" | tee "$OUT/curves.txt"
  # The watcher rows again, ours watching over /v1/ws.
  etcd="" ours=""
  for f in 1 1000 10000; do
    [ -s "$OUT/etcd-curves-watch$f.json" ] && etcd+="${etcd:+,}$OUT/etcd-curves-watch$f.json"
    [ -s "$OUT/ours-curves-wswatch$f.json" ] && ours+="${ours:+,}$OUT/ours-curves-wswatch$f.json"
  done
  if [ -n "$ours" ]; then
    echo "watchers, ours over /v1/ws ($CURVES_WATCHES_PER_STREAM watches to a connection):" | tee -a "$OUT/curves.txt"
    "$OUT/etcd-bench" compare --table curves --etcd "$etcd" --ours "$ours" | tee -a "$OUT/curves.txt"
  fi
}

# ---- scale (BENCH_SET=scale) --------------------------------------------
# For each of SCALE_KEYS: etcd scale (its own 3 members, and a fourth
# added as a learner, on ETCD_PORT to ETCD_PORT+7) and consensus bench
# --scale-keys (its own nodes, on ports it picks), one after the other,
# ORDER first for the first key count and reversed for the next, and so
# on; then one table per key count. Both remove their data directories.
scale_one() { # system keys
  case "$1" in
  etcd)
    echo "bench-etcd: etcd: $2 keys, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    "$OUT/etcd-bench" scale --etcd "$etcd_bin" --data "$OUT/etcd-scale-$2" --port "$ETCD_PORT" --keys "$2" --value-size 100 --json \
      >"$OUT/etcd-scale-$2.json" || echo "bench-etcd: etcd: $2 keys: a figure failed; its row shows -; logs in $OUT/etcd-scale-$2" >&2
    # A member that cannot join logs a line per retry: keep 50 MB of it.
    find "$OUT/etcd-scale-$2" -name '*.log' -size +50M -exec truncate -s 50M {} +
    ;;
  consensus)
    echo "bench-etcd: consensus: $2 keys, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    # At info level the logs time each snapshot written and restored.
    "$OUT/consensus" bench --scale-keys "$2" --value-size 100 --data "$OUT/consensus-scale-$2" --log-level info --json \
      >"$OUT/ours-scale-$2.json" ||
      echo "bench-etcd: consensus: $2 keys: a figure failed; its row shows -; logs in $OUT/consensus-scale-$2" >&2
    # bench keeps a --data directory it did not create: keep its logs only.
    [ -n "${KEEP_DATA:-}" ] || find "$OUT/consensus-scale-$2" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
    ;;
  *) echo "bench-etcd: ORDER: unknown system $1" >&2; exit 2 ;;
  esac
}

run_scale() {
  local keys first second n=0 system reports
  IFS=, read -r first second <<<"$ORDER"
  for keys in $SCALE_KEYS; do
    if [ $((n % 2)) -eq 0 ]; then set -- "$first" ${second:+"$second"}; else set -- ${second:+"$second"} "$first"; fi
    for system in "$@"; do scale_one "$system" "$keys"; done
    n=$((n + 1))
  done
  for keys in $SCALE_KEYS; do
    echo
    reports=()
    [ ! -f "$OUT/etcd-scale-$keys.json" ] || reports+=(--etcd "$OUT/etcd-scale-$keys.json")
    [ ! -f "$OUT/ours-scale-$keys.json" ] || reports+=(--ours "$OUT/ours-scale-$keys.json")
    "$OUT/etcd-bench" scale-compare "${reports[@]}" || true
  done | tee "$OUT/scale.txt"
}
if [ "$BENCH_SET" = scale ]; then
  run_scale
  exit 0
fi

# One system after the other, never both at once; ORDER=consensus,etcd
# swaps them (on a shared machine, to see whether the order matters).
IFS=, read -r -a order <<<"$ORDER"
for system in "${order[@]}"; do
  case "$system:$BENCH_SET" in
  etcd:memory) memory_etcd ;;
  consensus:memory) memory_consensus ;;
  etcd:curves) curves_etcd ;;
  consensus:curves) curves_consensus ;;
  etcd:*) run_etcd ;;
  consensus:*) run_consensus ;;
  *) echo "bench-etcd: ORDER: unknown system $system" >&2; exit 2 ;;
  esac
done
[ "$BENCH_SET" != memory ] || exit 0
if [ "$BENCH_SET" = curves ]; then curves_compare; exit 0; fi

echo >&2
reports() { # the reports of this run among those named
  local f list=""
  for f in "$@"; do [ -f "$OUT/$f.json" ] && list+="${list:+,}$OUT/$f.json"; done
  echo "$list"
}
"$OUT/etcd-bench" compare \
  --etcd "$(reports etcd-write etcd-read etcd-lock etcd-keepalive etcd-keepalive-stream etcd-expiry etcd-queue etcd-takeover)" \
  --ours "$(reports ours-ws-write ours-ws-read ours-http ours-lock ours-keepalive ours-expiry ours-queue ours-takeover)" | tee "$OUT/table.txt"
