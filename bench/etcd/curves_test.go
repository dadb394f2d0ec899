package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/bench"
)

// TestCurves: the curves table picks each cell by value size, cluster
// size and watchers, shows MB/s from ops/s and the value size, the
// delivery lag from ack of the run with that many watchers, and leaves
// out rows neither system ran.
func TestCurves(t *testing.T) {
	w := func(size, conc, nodes, watchers int, ops float64, p50, p99 time.Duration) bench.Result {
		return bench.Result{Protocol: "grpc", Workload: bench.Write, Concurrency: conc, ValueSize: size, Nodes: nodes,
			Watchers: watchers, OpsPerSec: ops, Latency: bench.Latency{P50: p50, P99: p99}}
	}
	etcd := bench.Report{Version: "3.7.3", Results: []bench.Result{
		w(100, 16, 3, 0, 4000, 0, 0),
		w(1_000_000, 16, 3, 0, 10, 0, 0),
		w(100, 1, 5, 0, 600, 1500*time.Microsecond, 0),
		w(100, 64, 3, 1000, 800, 0, 0),
		{Protocol: "grpc", Workload: bench.Read, Concurrency: 1024, ValueSize: 100, Nodes: 3, OpsPerSec: 15000,
			Latency: bench.Latency{P50: 60 * time.Millisecond, P99: 120 * time.Millisecond}},
	}}
	ours := bench.Report{Version: "dev", Results: []bench.Result{
		w(100, 16, 3, 0, 8000, 0, 0),
		w(1_000_000, 16, 3, 0, 5, 0, 0),
		w(100, 1, 3, 0, 1300, 700*time.Microsecond, 0), // 3 nodes: not the 5-node row
		w(100, 1, 5, 0, 900, 1*time.Millisecond, 0),
		w(100, 64, 3, 1000, 200, 0, 0),
		{Protocol: "ws", Workload: bench.Read, Concurrency: 1024, ValueSize: 100, Nodes: 3, OpsPerSec: 30000, Errors: 2, FirstError: "timeout",
			Latency: bench.Latency{P50: 30 * time.Millisecond, P99: 240 * time.Millisecond}},
	}}
	etcdWatches := []bench.WatchReport{{Watchers: 1000, Probes: 10, Delivered: 10000, AckLag: bench.Latency{P50: time.Second, P99: 2 * time.Second}},
		{Watchers: 1, Probes: 10, Delivered: 10, AckLag: bench.Latency{P50: 50 * time.Microsecond, P99: time.Millisecond}}}
	oursWatches := []bench.WatchReport{{Watchers: 1000, Probes: 10, Delivered: 9000, AckLag: bench.Latency{P50: 20 * time.Millisecond, P99: 500 * time.Millisecond}},
		{Watchers: 1, Probes: 10, Delivered: 10, AckLag: bench.Latency{P50: -26 * time.Microsecond, P99: time.Millisecond}}}
	var b bytes.Buffer
	writeCurves(&b, etcd, ours, etcdWatches, oursWatches)
	out := b.String()
	for _, want := range []string{
		"write ops/s, 100 B, c=16                           4000         8000      2.00x\n",
		"write MB/s, 100 B, c=16                             0.4          0.8      2.00x\n",
		"write ops/s, 1 MB, c=16                              10            5      0.50x\n",
		"write MB/s, 1 MB, c=16                             10.0          5.0      0.50x\n",
		"write ops/s, 3 nodes, c=1                             -         1300          -\n",
		"write ops/s, 5 nodes, c=1                           600          900      1.50x\n",
		"write p50, 5 nodes, c=1                          1.50ms       1.00ms      0.67x\n",
		"write ops/s, c=64, 1000 watchers                    800          200      0.25x\n",
		"delivery lag from ack p50, 1000 watchers          1.00s       20.0ms      0.02x\n",
		"delivery lag from ack p99, 1000 watchers          2.00s        500ms      0.25x\n",
		"linearizable read ops/s, c=1024                   15000        30000      2.00x\n",
		"linearizable read p99, c=1024                     120ms        240ms      2.00x\n",
		"note: linearizable read ops/s, c=1024, consensus: 2 errors (first: timeout)\n",
		"note: 1000 watchers, consensus: 0 ended early, 9000 of 10000 probe events delivered\n",
		// A watcher that beat the writer's ack: a negative lag, no ratio.
		"delivery lag from ack p50, 1 watchers              50µs        -26µs          -\n",
		"delivery lag from ack p99, 1 watchers            1.00ms       1.00ms      1.00x\n",
		"watches over SSE)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	for _, absent := range []string{"10 KB", "10000 watchers", "write ops/s, c=1024", "note: 1000 watchers, etcd"} {
		if strings.Contains(out, absent) {
			t.Errorf("%q shown, though neither system ran it:\n%s", absent, out)
		}
	}
}

// TestCurvesSaysWatchesOverWS: with our watcher reports all over /v1/ws,
// the table's header says so.
func TestCurvesSaysWatchesOverWS(t *testing.T) {
	var b bytes.Buffer
	writeCurves(&b, bench.Report{Version: "3.7.3"}, bench.Report{Version: "dev"}, nil,
		[]bench.WatchReport{{Watchers: 1000, Transport: "ws"}, {Watchers: 10000, Transport: "ws"}})
	if !strings.Contains(b.String(), "watches over /v1/ws)") {
		t.Fatalf("header:\n%s", b.String())
	}
}

// TestCompareReadsWatchReports: compare --table curves reads each run's
// watcher figures from its report; an unknown table is a usage error.
func TestCompareReadsWatchReports(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, r bench.Report) string {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cell := bench.Result{Workload: bench.Write, Concurrency: 64, ValueSize: 100, Nodes: 3, Watchers: 1, OpsPerSec: 100}
	e := write("e.json", bench.Report{System: "etcd", Results: []bench.Result{cell},
		Watch: &bench.WatchReport{Watchers: 1, AckLag: bench.Latency{P50: 4 * time.Millisecond}}})
	cell.OpsPerSec = 300
	o := write("o.json", bench.Report{System: "consensus", Results: []bench.Result{cell},
		Watch: &bench.WatchReport{Watchers: 1, AckLag: bench.Latency{P50: time.Millisecond}}})
	var stdout, stderr bytes.Buffer
	if code := run([]string{"compare", "--table", "curves", "--etcd", e, "--ours", o}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{
		"write ops/s, c=64, 1 watchers                       100          300      3.00x\n",
		"delivery lag from ack p50, 1 watchers            4.00ms       1.00ms      0.25x\n",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("missing %q in:\n%s", want, stdout.String())
		}
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"compare", "--table", "scale", "--etcd", e, "--ours", o}, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), `--table: "scale" is not targets or curves`) {
		t.Errorf("unknown table: exit %d: %s", code, stderr.String())
	}
}

func TestSizeName(t *testing.T) {
	for n, want := range map[int]string{100: "100 B", 10_000: "10 KB", 1_000_000: "1 MB", 1500: "1500 B"} {
		if got := sizeName(n); got != want {
			t.Errorf("sizeName(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestWatchFlags(t *testing.T) {
	for _, ok := range [][2]int{{0, 1000}, {1, 1}, {bench.MaxWatchers, 1000}} {
		if err := checkWatchFlags(ok[0], ok[1]); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, bad := range [][2]int{{-1, 1000}, {bench.MaxWatchers + 1, 1000}, {10, 0}} {
		if err := checkWatchFlags(bad[0], bad[1]); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"run", "--endpoints", "127.0.0.1:1", "--watchers", "-1"}, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "--watchers: -1 is not between 0 and 16384") {
		t.Errorf("--watchers -1: exit %d: %s", code, stderr.String())
	}
	for n, want := range map[[2]int]int{{1, 1000}: 1, {1000, 1000}: 1, {1001, 1000}: 2, {10000, 1000}: 10, {5, 2}: 3} {
		if got := watchStreams(n[0], n[1]); got != want {
			t.Errorf("watchStreams(%d, %d) = %d, want %d", n[0], n[1], got, want)
		}
	}
}

// TestWatchFanout follows a real etcd with watchers over several
// streams while a write cell runs, and checks the figures (never the
// speed): every watcher read every probe and every write, with lags.
func TestWatchFanout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	addr, _ := startEtcd(t)
	const watchers = 5
	f, err := startWatchFanout(context.Background(), []string{addr}, watchers, 2)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := newClient([]string{addr})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	o := bench.DefaultOptions()
	o.Workloads, o.Concurrency, o.Warmup, o.Duration = []bench.Workload{bench.Write}, []int{2}, 0, 300*time.Millisecond
	results, err := bench.Suite(context.Background(), driver{cli: cli}, o, "etcd", "grpc", nil, nil)
	if err != nil || len(results) != 1 || results[0].Ops == 0 {
		t.Fatalf("%+v %v", results, err)
	}
	wr, err := f.stop()
	if err != nil {
		t.Fatal(err)
	}
	if wr.Watchers != watchers || wr.Streams != 3 || wr.Nodes != 1 || wr.Ended != 0 || wr.Probes == 0 ||
		wr.Delivered != int64(wr.Probes)*watchers || wr.Lag.P50 <= 0 || wr.AckLag.Max < wr.AckLag.P99 ||
		wr.ProbeWrite.P50 <= 0 || wr.Events < watchers*(results[0].Ops+int64(wr.Probes)) {
		t.Fatalf("watch report %+v after %d writes", wr, results[0].Ops)
	}
}
