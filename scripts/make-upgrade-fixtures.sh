#!/usr/bin/env bash
# Regenerates the upgrade fixtures of a release: a data directory and a
# backup written by that release's binary, and the listing of the state it
# served, which TestUpgradeFixtures (cmd/consensus/upgrade_test.go) opens
# with the current code.
#
#   scripts/make-upgrade-fixtures.sh COMMIT NAME
#
# e.g. `scripts/make-upgrade-fixtures.sh 8ba22d3 v0.7.0` writes
# testdata/upgrade/v0.7.0/{fixtures.tar.gz,expected.txt}. It builds COMMIT's
# `consensus` in a temporary git worktree, runs it as a 1-node cluster on
# 127.0.0.1 (PEER_PORT, HTTP_PORT: default 27170 and 27171) with
# --snapshot-threshold 20, and writes through its HTTP API: keys (puts,
# overwrites, deletes, a batch), a workflow, a registered node, two leases
# with keys, a lock, an election, and queue tasks in each state but delayed
# (ready, claimed, done, dead; a delay would end by the calendar and change
# what the state reads). The node snapshots and compacts its log on the way,
# so the data directory holds a snapshot and log entries after it. Then it
# takes a backup (`consensus snapshot save`), saves every read of the
# listing (READS below) as expected.txt, stops the node with SIGTERM and
# packs the data directory and the backup into fixtures.tar.gz.
#
# Leases and claims have 1-hour times to live, which a restarted leader
# counts again from the start, so the state does not change while a test
# reads it. Needs git, go, curl, jq, tar.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ne 2 ]; then
	echo "usage: $0 COMMIT NAME   (e.g. $0 8ba22d3 v0.7.0)" >&2
	exit 2
fi
COMMIT=$1
NAME=$2
PEER_PORT=${PEER_PORT:-27170}
HTTP_PORT=${HTTP_PORT:-27171}
for tool in git go curl jq tar; do
	command -v "$tool" >/dev/null || { echo "$0: $tool is needed" >&2; exit 1; }
done

ROOT=$(pwd)
OUTDIR=$ROOT/testdata/upgrade/$NAME
WORK=$(mktemp -d /tmp/upgrade-fixtures.XXXXXX)
SRC=$WORK/src
PID=
cleanup() {
	if [ -n "$PID" ]; then kill -9 "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
	git worktree remove --force "$SRC" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

git worktree add --detach "$SRC" "$COMMIT" >/dev/null
FULL=$(git -C "$SRC" rev-parse HEAD)
(cd "$SRC" && go build -o "$WORK/consensus" ./cmd/consensus)
BIN=$WORK/consensus
API=http://127.0.0.1:$HTTP_PORT

mkdir -p "$WORK/fixture"
"$BIN" serve --id n1 --listen "127.0.0.1:$PEER_PORT" --http "127.0.0.1:$HTTP_PORT" \
	--peers "n1=127.0.0.1:$PEER_PORT" --data "$WORK/fixture/data" \
	--snapshot-threshold 20 >"$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 200); do
	curl -sf "$API/readyz" >/dev/null 2>&1 && break
	sleep 0.05
done
curl -sf "$API/readyz" >/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }

# call METHOD PATH [BODY]: fails the script on any status but 2xx.
call() {
	curl -sf -X "$1" "$API$2" ${3:+-d "$3"}
}

for i in $(seq 0 29); do call PUT "/v1/kv/k/$i" "{\"n\":$i,\"s\":\"value $i\"}" >/dev/null; done
for i in $(seq 0 9); do call PUT "/v1/kv/k/$i" "\"second $i\"" >/dev/null; done
for i in 20 21 22; do call DELETE "/v1/kv/k/$i" >/dev/null; done
call PUT /v1/kv/types/null 'null' >/dev/null
call PUT /v1/kv/types/array '[1,2.5,"three",true]' >/dev/null
call PUT "/v1/kv/types/unicode%20k%C3%A9y" '"h\u00e9llo \ud83d\ude00"' >/dev/null
call POST /v1/txn '{"ops":[{"op":"put","key":"batch/a","value":1},{"op":"put","key":"batch/b","value":2},{"op":"delete","key":"k/23"}]}' >/dev/null
call POST /v1/workflows '{"id":"pipeline","stage":"extract"}' >/dev/null
call POST /v1/workflows '{"id":"stopped","stage":"load"}' >/dev/null
call POST /v1/workflows/stopped/stop '{"reason":"done"}' >/dev/null
call POST /v1/nodes '{"id":"worker-1","zone":"a"}' >/dev/null
call POST /v1/leases '{"id":"a1","ttlMs":3600000}' >/dev/null
call POST /v1/leases '{"id":"b2","ttlMs":3600000}' >/dev/null
call PUT "/v1/kv/workers/w1?lease=a1" '{"host":"a"}' >/dev/null
call PUT "/v1/kv/workers/w2?lease=b2" '{"host":"b"}' >/dev/null
call POST /v1/locks/report '{"lease":"a1","waitMs":0}' >/dev/null
call POST /v1/elections/sched '{"lease":"b2","value":{"addr":"w2"},"waitMs":0}' >/dev/null
for t in t1 t2 t3; do call POST /v1/queues/jobs/tasks "{\"id\":\"$t\",\"data\":{\"task\":\"$t\"}}" >/dev/null; done
# Claims take the oldest ready task: t1 is completed, t2 stays claimed, t3
# stays ready; on the queue "dead", d1 fails for good.
claim() {
	call POST /v1/queues/jobs/claim "{\"worker\":\"$1\",\"ttlMs\":3600000}"
}
c=$(claim w1); [ "$(jq -r .task.id <<<"$c")" = t1 ]
call POST /v1/queues/jobs/tasks/t1/complete "{\"epoch\":$(jq .epoch <<<"$c"),\"result\":{\"ok\":true}}" >/dev/null
c=$(claim w2); [ "$(jq -r .task.id <<<"$c")" = t2 ]
call POST /v1/queues/dead/tasks '{"id":"d1","data":"fails","maxAttempts":1}' >/dev/null
c=$(call POST /v1/queues/dead/claim '{"worker":"w3","ttlMs":3600000}'); [ "$(jq -r .task.id <<<"$c")" = d1 ]
call POST /v1/queues/dead/tasks/d1/fail "{\"epoch\":$(jq .epoch <<<"$c"),\"error\":\"boom\"}" >/dev/null

# The node has taken at least one snapshot (threshold 20).
snaps=$(find "$WORK/fixture/data" -name '*.snap' | wc -l)
[ "$snaps" -ge 1 ] || { echo "$0: no snapshot was taken" >&2; exit 1; }

"$BIN" snapshot save "$WORK/fixture/backup.cnsbak" --endpoints "127.0.0.1:$HTTP_PORT" >/dev/null

# The listing: each read, then its answer as one line of JSON (keys sorted).
READS=(
	"/v1/kv?prefix="
	"/v1/kv/k/0"
	"/v1/kv/types/unicode%20k%C3%A9y"
	"/v1/workflows"
	"/v1/nodes"
	"/v1/leases"
	"/v1/leases/a1"
	"/v1/leases/b2"
	"/v1/locks/report"
	"/v1/elections/sched"
	"/v1/queues/jobs"
	"/v1/queues/jobs/tasks"
	"/v1/queues/dead"
	"/v1/queues/dead/tasks"
	"/v1/members"
)
mkdir -p "$OUTDIR"
{
	echo "# Reads of the state the fixtures hold, as $NAME ($FULL) served them."
	echo "# Written by scripts/make-upgrade-fixtures.sh; TestUpgradeFixtures compares."
	for r in "${READS[@]}"; do
		echo "GET $r"
		call GET "$r" | jq -cS .
	done
} >"$OUTDIR/expected.txt"

kill -TERM "$PID"
wait "$PID" || { echo "$0: the node did not stop cleanly" >&2; cat "$WORK/serve.log" >&2; exit 1; }
PID=
tar -C "$WORK/fixture" --sort=name --owner=0 --group=0 --numeric-owner \
	--mtime='2026-01-01 00:00Z' -czf "$OUTDIR/fixtures.tar.gz" data backup.cnsbak
echo "$FULL" >"$OUTDIR/COMMIT"
ls -l "$OUTDIR"
