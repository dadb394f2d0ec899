// Command report splits one writer's writes into the stages of their path
// from the marks a local cluster's nodes and the bench client dumped
// (package stages):
//
//	go build -tags stagetrace -o /tmp/consensus-stages ./cmd/consensus
//	mkdir -p /tmp/stages && CONSENSUS_STAGES_DIR=/tmp/stages \
//	  /tmp/consensus-stages bench --workloads write --concurrency 1 --duration 3s
//	go run ./internal/stages/report /tmp/stages
//
// (--protocol http for writes over HTTP/1.1 instead of the Go client's
// /v1/ws.) It expects writes one at a time (concurrency 1): each write's
// stages are matched by its log index, and marks without an index (frames
// and requests read and written, proposals stepped) by time, the nearest
// before or after an indexed mark. For each stage it prints the median
// and 90th percentile over the writes, in microseconds, following the
// fastest follower (the one whose acknowledgement reached the leader
// first). The client's rows are there when the bench's file ("client")
// is.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clientName is the node name the bench process dumps its marks under.
const clientName = "client"

// node holds one process's marks: by stage, the first time each index got
// there, and the sorted times of every mark.
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
	if err == nil {
		err = report(os.Stdout, nodes)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// report prints the stage table of the writes in nodes.
func report(w io.Writer, nodes []*node) error {
	var cl *node
	var servers []*node
	for _, n := range nodes {
		if n.name == clientName {
			cl = n
		} else {
			servers = append(servers, n)
		}
	}
	if len(servers) < 2 {
		return fmt.Errorf("need the marks of at least two nodes")
	}
	// The leader is the node that served the writes.
	served := func(n *node) int { return len(n.times["ws_frame"]) + len(n.times["http_handle"]) }
	slices.SortStableFunc(servers, func(a, b *node) int { return served(b) - served(a) })
	leader, followers := servers[0], servers[1:]
	ws := len(leader.times["ws_frame"]) > 0
	rows, waited := split(leader, followers, cl, ws)
	if len(rows) == 0 || len(rows[0].values) == 0 {
		return fmt.Errorf("no complete write found (was it a concurrency-1 write run?)")
	}
	proto := "http"
	if ws {
		proto = "ws"
	}
	n := len(rows[0].values)
	fmt.Fprintf(w, "leader %s, %s, %d writes; the leader's own save ended after the follower's ack reached it in %d%%\n\n",
		leader.name, proto, n, waited*100/n)
	fmt.Fprintf(w, "%-56s %10s %10s %10s\n", "stage", "p50", "p90", "mean")
	for _, r := range rows {
		slices.Sort(r.values)
		k := len(r.values)
		var sum int64
		for _, v := range r.values {
			sum += v
		}
		fmt.Fprintf(w, "%-56s %10s %10s %10s\n", r.name, us(r.values[k/2]), us(r.values[k*9/10]), us(sum/int64(k)))
	}
	return nil
}

func us(ns int64) string {
	return strconv.FormatFloat(float64(ns)/float64(time.Microsecond), 'f', 1, 64) + "us"
}

type row struct {
	name   string
	values []int64
}

// A stage is a row of the table: the time from one point of a write's
// path to another (measure names the points). ws rows exist only for
// writes over /v1/ws, client rows only with the client's marks.
type stage struct {
	name, from, to string
	ws, client     bool
}

var stageList = []stage{
	{name: "client: call -> request written", from: "ccall", to: "cwrite", client: true},
	{name: "network: client request -> leader read it", from: "cwrite", to: "recv", client: true},
	{name: "leader: ws frame read -> request handled", from: "recv", to: "handle", ws: true},
	{name: "leader: handler -> proposal stepped into raft", from: "handle", to: "proposed"},
	{name: "leader: stepped -> raft Ready with the entry", from: "proposed", to: "ready"},
	{name: "leader: Ready -> appends handed to transport", from: "ready", to: "send"},
	{name: "leader: transport -> frame written", from: "send", to: "lwrite"},
	{name: "network: leader frame -> follower frame read", from: "lwrite", to: "fframe"},
	{name: "follower: frame read -> append stepped", from: "fframe", to: "frecv"},
	{name: "follower: stepped -> raft Ready", from: "frecv", to: "fready"},
	{name: "follower: Ready -> save begins", from: "fready", to: "fsaving"},
	{name: "follower: save (fsync)", from: "fsaving", to: "fsaved"},
	{name: "follower: saved -> ack handed to transport", from: "fsaved", to: "fsend"},
	{name: "follower: transport -> frame written", from: "fsend", to: "fwrite"},
	{name: "network: follower frame -> leader frame read", from: "fwrite", to: "lframe"},
	{name: "leader: frame read -> ack stepped", from: "lframe", to: "resp"},
	{name: "leader: Ready -> own save begins", from: "ready", to: "lsaving"},
	{name: "leader: own save (fsync), in parallel", from: "lsaving", to: "lsaved"},
	{name: "leader: later of ack and own save -> commit Ready", from: "quorum", to: "commit"},
	{name: "leader: commit Ready -> apply begins", from: "commit", to: "applying"},
	{name: "leader: apply", from: "applying", to: "applied"},
	{name: "leader: applied -> proposer woken", from: "applied", to: "woken"},
	{name: "leader: proposer woken -> answer queued", from: "woken", to: "handled"},
	{name: "leader: answer queued -> ws frame written", from: "handled", to: "written", ws: true},
	{name: "network: leader answer -> client read it", from: "written", to: "cread", client: true},
	{name: "client: answer read -> call returns", from: "cread", to: "cdone", client: true},
	{name: "total on the leader (request read -> answer written)", from: "recv", to: "written"},
	{name: "total at the client (call -> return)", from: "ccall", to: "cdone", client: true},
	{name: "the rest: client total - 4 hops - follower fsync", from: "ccall", to: "rest", client: true},
}

// split measures every write the leader appended; a write whose marks are
// incomplete (the run's first and last) is skipped. waited counts the
// writes whose commit waited for the leader's own save rather than the
// follower's ack.
func split(l *node, fs []*node, cl *node, ws bool) (rows []*row, waited int) {
	var use []stage
	for _, st := range stageList {
		if (st.ws && !ws) || (st.client && cl == nil) {
			continue
		}
		use = append(use, st)
		rows = append(rows, &row{name: st.name})
	}
	for idx, ready := range l.byIndex["ready"] {
		t, ok := measure(l, fs, cl, ws, idx, ready)
		if !ok {
			continue
		}
		if t["lsaved"] > t["resp"] {
			waited++
		}
		for i, st := range use {
			rows[i].values = append(rows[i].values, t[st.to]-t[st.from])
		}
	}
	return rows, waited
}

// measure finds when the write at idx reached each point of its path,
// following the follower whose acknowledgement was sent first.
func measure(l *node, fs []*node, cl *node, ws bool, idx uint64, ready int64) (map[string]int64, bool) {
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
	get("lsaving", l, "saving")
	get("lsaved", l, "saved")
	get("resp", l, "recv_resp")
	get("commit", l, "commit_ready")
	get("woken", l, "woken")
	get("applying", l, "applying")
	get("frecv", f, "recv_app")
	get("fready", f, "ready")
	get("fsaving", f, "saving")
	get("fsaved", f, "saved")
	get("fsend", f, "send_resp")
	if !ok {
		return nil, false
	}
	t["quorum"] = max(t["lsaved"], t["resp"])
	before("proposed", l, "proposed", ready)
	if ws {
		before("recv", l, "ws_frame", ready)
		before("handle", l, "ws_handle", ready)
		after("handled", l, "ws_handled", t["woken"])
		after("written", l, "ws_write", t["handled"])
	} else {
		before("recv", l, "http_handle", ready)
		t["handle"] = t["recv"]
		after("handled", l, "http_handled", t["woken"])
		t["written"] = t["handled"]
	}
	after("lwrite", l, "peer_write", t["send"])
	before("fframe", f, "peer_frame", t["frecv"])
	after("fwrite", f, "peer_write", t["fsend"])
	before("lframe", l, "peer_frame", t["resp"])
	after("applied", l, "applied", t["commit"])
	if cl != nil {
		before("cwrite", cl, "client_write", t["recv"])
		before("ccall", cl, "client_call", t["cwrite"])
		after("cread", cl, "client_read", t["written"])
		after("cdone", cl, "client_done", t["cread"])
		t["rest"] = t["ccall"] + (t["cdone"] - t["ccall"]) -
			(t["recv"] - t["cwrite"]) - (t["fframe"] - t["lwrite"]) - (t["lframe"] - t["fwrite"]) -
			(t["cread"] - t["written"]) - (t["fsaved"] - t["fsaving"])
	}
	// A point matched to another write's mark (one lost or out of order)
	// shows as a negative or absurd stage: drop such writes.
	if !ok || t["handle"] < t["recv"] || t["proposed"] < t["handle"] || ready-t["recv"] > int64(100*time.Millisecond) ||
		(cl != nil && (t["ccall"] > t["cwrite"] || t["recv"]-t["ccall"] > int64(100*time.Millisecond))) {
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
