package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/bench"
)

func TestComparison(t *testing.T) {
	etcd := bench.Report{System: "etcd", Version: "3.7.3", Results: []bench.Result{
		{Protocol: "grpc", Workload: bench.Write, Concurrency: 1, OpsPerSec: 500, Latency: bench.Latency{P50: 2 * time.Millisecond}},
		{Protocol: "grpc", Workload: bench.Write, Concurrency: 256, OpsPerSec: 1000,
			CPU: []bench.ProcessCPU{{Name: "e1", PerOp: 60 * time.Microsecond}, {Name: "bench", PerOp: 40 * time.Microsecond}}},
		{Protocol: "grpc", Workload: bench.Read, Concurrency: 64, OpsPerSec: 1000, Errors: 2, FirstError: "timeout"},
	}}
	ours := bench.Report{System: "consensus", Version: "dev", Results: []bench.Result{
		{Protocol: "ws", Workload: bench.Write, Concurrency: 1, OpsPerSec: 250, Latency: bench.Latency{P50: time.Millisecond}},
		{Protocol: "ws", Workload: bench.Write, Concurrency: 256, OpsPerSec: 2500,
			CPU: []bench.ProcessCPU{{Name: "n1", PerOp: 50 * time.Microsecond}, {Name: "bench", PerOp: 30 * time.Microsecond}}},
		{Protocol: "http", Workload: bench.Read, Concurrency: 64, OpsPerSec: 1200},
	}}
	var b bytes.Buffer
	writeComparison(&b, etcd, ours)
	out := b.String()
	for _, want := range []string{
		"write ops/s, c=1                     ws             500          250      0.50x        -\n",
		"write ops/s, c=256                   ws            1000         2500      2.50x   >=2.0x  met\n",
		"one-client write p50                 ws          2.00ms       1.00ms      0.50x   <=0.7x  met\n",
		"linearizable read ops/s, c=64        ws            1000            -          -   >=3.0x\n",
		"HTTP linearizable read ops/s, c=64   http          1000         1200      1.20x   >=1.5x  missed\n",
		"note: HTTP linearizable read ops/s, c=64, etcd: 2 errors (first: timeout)\n",
		"etcd 3.7.3 (clientv3, gRPC)\n",
		"side by side: etcd 3.7.3 through clientv3 (gRPC); consensus dev through the client in column \"client\"\n",
		"CPU per write, c=256, all processes  ws           100µs         80µs      0.80x        -\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "HTTP write ops/s") {
		t.Errorf("a row neither system measured is shown:\n%s", out)
	}
}

// TestComparisonNeedsCPUOnBothSides: a CPU row appears only when both
// systems' cells carry CPU figures.
func TestComparisonNeedsCPUOnBothSides(t *testing.T) {
	etcd := bench.Report{Results: []bench.Result{{Protocol: "grpc", Workload: bench.Write, Concurrency: 256, OpsPerSec: 1000}}}
	ours := bench.Report{Results: []bench.Result{{Protocol: "ws", Workload: bench.Write, Concurrency: 256, OpsPerSec: 2000,
		CPU: []bench.ProcessCPU{{Name: "n1", PerOp: time.Microsecond}}}}}
	var b bytes.Buffer
	writeComparison(&b, etcd, ours)
	if strings.Contains(b.String(), "CPU per") {
		t.Fatalf("a CPU row without etcd's figures:\n%s", b.String())
	}
}

func TestLoopbackEndpoints(t *testing.T) {
	if eps, err := loopbackEndpoints("127.0.0.1:2379, http://localhost:2381"); err != nil || len(eps) != 2 || eps[1] != "localhost:2381" {
		t.Fatalf("%v %v", eps, err)
	}
	for _, bad := range []string{"", "10.1.2.3:2379", "example.com:2379", "127.0.0.1"} {
		if _, err := loopbackEndpoints(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestComparisonLeasesAndLocks: the lease and lock rows, with etcd's
// keepalives by KeepAliveOnce and over a stream, and lateness rows that
// compare p50, p99 and max; rows neither system ran are left out.
func TestComparisonLeasesAndLocks(t *testing.T) {
	late := bench.Latency{P50: 300 * time.Millisecond, P90: 450 * time.Millisecond, P99: 500 * time.Millisecond, Max: 520 * time.Millisecond}
	etcd := bench.Report{System: "etcd", Version: "3.7.3", Results: []bench.Result{
		{Protocol: "grpc", Workload: bench.Lock, Concurrency: 1, OpsPerSec: 400},
		{Protocol: "grpc", Workload: bench.Lock, Concurrency: 64, OpsPerSec: 300},
		{Protocol: "grpc", Workload: bench.KeepAlive, Concurrency: 64, OpsPerSec: 5000},
		{Protocol: "grpc-stream", Workload: bench.KeepAlive, Concurrency: 64, OpsPerSec: 20000},
		{Protocol: "grpc", Workload: bench.Expiry, Concurrency: 64, OpsPerSec: 40, Latency: late},
	}}
	ours := bench.Report{System: "consensus", Version: "dev", Results: []bench.Result{
		{Protocol: "ws", Workload: bench.Lock, Concurrency: 1, OpsPerSec: 800},
		{Protocol: "ws", Workload: bench.Lock, Concurrency: 64, OpsPerSec: 900},
		{Protocol: "ws", Workload: bench.KeepAlive, Concurrency: 64, OpsPerSec: 40000},
		{Protocol: "ws", Workload: bench.Expiry, Concurrency: 64, OpsPerSec: 45,
			Latency: bench.Latency{P50: 30 * time.Millisecond, P90: 40 * time.Millisecond, P99: 50 * time.Millisecond, Max: 52 * time.Millisecond}},
	}}
	var b bytes.Buffer
	writeComparison(&b, etcd, ours)
	out := b.String()
	for _, want := range []string{
		"lock acquire+release/s, c=1          ws             400          800      2.00x        -\n",
		"lock acquire+release/s, c=64         ws             300          900      3.00x        -\n",
		"keepalives/s, c=64                   ws            5000        40000      8.00x        -\n",
		"keepalives/s, c=64, etcd stream      ws           20000        40000      2.00x        -\n",
		"lease expiry lateness p50, c=64      ws           300ms       30.0ms      0.10x        -\n",
		"lease expiry lateness p99, c=64      ws           500ms       50.0ms      0.10x        -\n",
		"lease expiry lateness max, c=64      ws           520ms       52.0ms      0.10x        -\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}

	b.Reset()
	writeComparison(&b, bench.Report{Results: etcd.Results[:1]}, bench.Report{})
	if strings.Contains(b.String(), "keepalives/s") || strings.Contains(b.String(), "lease expiry") || !strings.Contains(b.String(), "lock acquire+release/s, c=1") {
		t.Errorf("rows neither system ran are shown, or a row one ran is not:\n%s", b.String())
	}
}

// TestComparisonQueues: the queue rows: enqueues and claim+complete pairs
// per second at 1, 16 and 64 workers, the claim's p50 and p99, and the
// takeover's lateness after the time to live.
func TestComparisonQueues(t *testing.T) {
	lat := func(p50, p99, max time.Duration) bench.Latency {
		return bench.Latency{P50: p50, P90: p99, P99: p99, Max: max}
	}
	etcd := bench.Report{System: "etcd", Results: []bench.Result{
		{Protocol: "grpc", Workload: bench.Enqueue, Concurrency: 16, OpsPerSec: 4000},
		{Protocol: "grpc", Workload: bench.Claim, Concurrency: 64, OpsPerSec: 1000, Latency: lat(20*time.Millisecond, 80*time.Millisecond, 90*time.Millisecond)},
		{Protocol: "grpc", Workload: bench.Takeover, Concurrency: 16, OpsPerSec: 8, Latency: lat(300*time.Millisecond, 500*time.Millisecond, 520*time.Millisecond)},
	}}
	ours := bench.Report{System: "consensus", Results: []bench.Result{
		{Protocol: "ws", Workload: bench.Enqueue, Concurrency: 16, OpsPerSec: 6000},
		{Protocol: "ws", Workload: bench.Claim, Concurrency: 64, OpsPerSec: 5000, Latency: lat(5*time.Millisecond, 40*time.Millisecond, 50*time.Millisecond)},
		{Protocol: "ws", Workload: bench.Takeover, Concurrency: 16, OpsPerSec: 9, Latency: lat(30*time.Millisecond, 50*time.Millisecond, 52*time.Millisecond)},
	}}
	var b bytes.Buffer
	writeComparison(&b, etcd, ours)
	out := b.String()
	for _, want := range []string{
		"enqueue/s, c=16                      ws            4000         6000      1.50x        -\n",
		"claim+complete/s, c=64               ws            1000         5000      5.00x        -\n",
		"claim p50, c=64                      ws          20.0ms       5.00ms      0.25x        -\n",
		"claim p99, c=64                      ws          80.0ms       40.0ms      0.50x        -\n",
		"takeover after TTL p50, c=16         ws           300ms       30.0ms      0.10x        -\n",
		"takeover after TTL max, c=16         ws           520ms       52.0ms      0.10x        -\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "enqueue/s, c=1 ") || strings.Contains(out, "claim+complete/s, c=16") {
		t.Errorf("rows neither system ran are shown:\n%s", out)
	}
}
