// Command report splits one writer's writes into the stages of their path
// from the marks the nodes of a local cluster dumped (package stages):
//
//	go build -tags stagetrace -o /tmp/consensus-stages ./cmd/consensus
//	mkdir -p /tmp/stages && CONSENSUS_STAGES_DIR=/tmp/stages \
//	  /tmp/consensus-stages bench --workloads write --concurrency 1 --duration 3s
//	go run ./internal/stages/report /tmp/stages
//
// It expects writes one at a time (concurrency 1): each write's stages
// are matched by its log index, and marks without an index (frames read
// and written) by time, the nearest before or after the indexed mark.
// For each stage it prints the median and 90th percentile over the
// writes, in microseconds, following the fastest follower (the one
// whose acknowledgement reached the leader first).
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// node holds one node's marks: by stage, the first time each index got
// there, and the sorted times of marks without an index.
type node struct {
	name    string
	byIndex map[string]map[uint64]int64
	times   map[string][]int64
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: report DIR (the CONSENSUS_STAGES_DIR of a stagetrace run)")
		os.Exit(2)
	}
	nodes, err := load(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	if len(nodes) < 2 {
		fmt.Fprintln(os.Stderr, "report: need the marks of at least two nodes")
		os.Exit(1)
	}
	// The leader is the node that served the writes.
	slices.SortFunc(nodes, func(a, b *node) int { return len(b.times["ws_frame"]) - len(a.times["ws_frame"]) })
	leader, followers := nodes[0], nodes[1:]
	rows := split(leader, followers)
	if len(rows) == 0 {
		fmt.Fprintln(os.Stderr, "report: no complete write found (was it a concurrency-1 write run?)")
		os.Exit(1)
	}
	fmt.Printf("leader %s, %d writes\n\n", leader.name, len(rows[0].values))
	fmt.Printf("%-44s %10s %10s\n", "stage", "p50", "p90")
	for _, r := range rows {
		slices.Sort(r.values)
		n := len(r.values)
		fmt.Printf("%-44s %10s %10s\n", r.name, us(r.values[n/2]), us(r.values[n*9/10]))
	}
}

func us(ns int64) string {
	return strconv.FormatFloat(float64(ns)/float64(time.Microsecond), 'f', 1, 64) + "us"
}

type row struct {
	name   string
	values []int64
}

// stages are the rows of the table: each the time from one point of a
// write's path to another (the points measure names).
var stages = []struct{ name, from, to string }{
	{"leader: ws frame read -> request handled", "wsframe", "wshandle"},
	{"leader: handler -> raft Ready with the entry", "wshandle", "ready"},
	{"leader: Ready -> appends handed to transport", "ready", "send"},
	{"leader: transport -> frame written", "send", "lwrite"},
	{"network: leader frame -> follower frame read", "lwrite", "fframe"},
	{"follower: frame read -> append stepped", "fframe", "frecv"},
	{"follower: stepped -> raft Ready", "frecv", "fready"},
	{"follower: Ready -> saved (fsync)", "fready", "fsaved"},
	{"follower: saved -> ack handed to transport", "fsaved", "fsend"},
	{"follower: transport -> frame written", "fsend", "fwrite"},
	{"network: follower frame -> leader frame read", "fwrite", "lframe"},
	{"leader: frame read -> ack stepped", "lframe", "resp"},
	{"leader: ack stepped -> Ready with the commit", "resp", "commit"},
	{"leader: commit Ready -> applied", "commit", "applied"},
	{"leader: applied -> answer queued", "applied", "handled"},
	{"leader: own save (Ready -> saved), in parallel", "ready", "lsaved"},
	{"total on the leader (ws frame -> answer)", "wsframe", "handled"},
}

// split measures every write the leader appended; a write whose marks are
// incomplete (the run's first and last) is skipped.
func split(l *node, fs []*node) []*row {
	rows := make([]*row, len(stages))
	for i, st := range stages {
		rows[i] = &row{name: st.name}
	}
	for idx, ready := range l.byIndex["ready"] {
		t, ok := measure(l, fs, idx, ready)
		if !ok {
			continue
		}
		for i, st := range stages {
			rows[i].values = append(rows[i].values, t[st.to]-t[st.from])
		}
	}
	return rows
}

// measure finds when the write at idx reached each point of its path,
// following the follower whose acknowledgement was sent first.
func measure(l *node, fs []*node, idx uint64, ready int64) (map[string]int64, bool) {
	var f *node
	for _, c := range fs {
		if at, ok := c.byIndex["send_resp"][idx]; ok && (f == nil || at < f.byIndex["send_resp"][idx]) {
			f = c
		}
	}
	if f == nil {
		return nil, false
	}
	t := map[string]int64{"ready": ready}
	ok := true
	get := func(key string, n *node, stage string) {
		at, found := n.byIndex[stage][idx]
		t[key], ok = at, ok && found
	}
	before := func(key string, n *node, stage string, at int64) {
		v, found := nearest(n.times[stage], at, false)
		t[key], ok = v, ok && found
	}
	after := func(key string, n *node, stage string, at int64) {
		v, found := nearest(n.times[stage], at, true)
		t[key], ok = v, ok && found
	}
	get("send", l, "send_app")
	get("lsaved", l, "saved")
	get("resp", l, "recv_resp")
	get("commit", l, "commit_ready")
	get("frecv", f, "recv_app")
	get("fready", f, "ready")
	get("fsaved", f, "saved")
	get("fsend", f, "send_resp")
	if !ok {
		return nil, false
	}
	before("wsframe", l, "ws_frame", ready)
	before("wshandle", l, "ws_handle", ready)
	after("lwrite", l, "peer_write", t["send"])
	before("fframe", f, "peer_frame", t["frecv"])
	after("fwrite", f, "peer_write", t["fsend"])
	before("lframe", l, "peer_frame", t["resp"])
	after("applied", l, "applied", t["commit"])
	if !ok {
		return nil, false
	}
	after("handled", l, "ws_handled", t["applied"])
	if !ok || t["wshandle"] < t["wsframe"] || ready-t["wsframe"] > int64(100*time.Millisecond) {
		return nil, false
	}
	return t, true
}

// nearest returns the last time at or before at, or with later the first
// at or after it.
func nearest(times []int64, at int64, later bool) (int64, bool) {
	i, found := slices.BinarySearch(times, at)
	if later {
		if i < len(times) {
			return times[i], true
		}
		return 0, false
	}
	if found {
		return times[i], true
	}
	if i > 0 {
		return times[i-1], true
	}
	return 0, false
}

func load(dir string) ([]*node, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	var nodes []*node
	for _, name := range files {
		n, err := loadFile(name)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

func loadFile(name string) (*node, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n := &node{byIndex: map[string]map[uint64]int64{}, times: map[string][]int64{}}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) != 4 {
			return nil, fmt.Errorf("%s:%d: want 4 fields, got %d", name, line, len(fields))
		}
		at, err1 := strconv.ParseInt(fields[0], 10, 64)
		idx, err2 := strconv.ParseUint(fields[2], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s:%d: bad number", name, line)
		}
		n.name = fields[1]
		stage := fields[3]
		n.times[stage] = append(n.times[stage], at)
		if idx == 0 {
			continue
		}
		m := n.byIndex[stage]
		if m == nil {
			m = map[uint64]int64{}
			n.byIndex[stage] = m
		}
		if _, seen := m[idx]; !seen {
			m[idx] = at
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, ts := range n.times {
		slices.Sort(ts)
	}
	return n, nil
}
