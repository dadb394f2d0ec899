package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/unrdf/consensus/bench"
)

// startEtcd starts a one-member etcd in this process on loopback ports
// the kernel picks, and returns its client address and data directory.
func startEtcd(t *testing.T) (addr, dir string) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop()) // its shutdown logs errors
	loop := func() []url.URL { return []url.URL{{Scheme: "http", Host: "127.0.0.1:0"}} }
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = loop(), loop()
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = loop(), loop()
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready within 30s")
	}
	return e.Clients[0].Addr().String(), cfg.Dir
}

// TestDriverLeasesAndLocks runs the lease and lock workloads through the
// etcd driver against a real etcd, briefly, and checks every cell has
// figures and no error (never the speed), with keepalives both by
// KeepAliveOnce and over a stream.
func TestDriverLeasesAndLocks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	addr, _ := startEtcd(t)
	cli, err := newClient([]string{addr})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	o := bench.DefaultOptions()
	o.Workloads, o.Concurrency = bench.CoordWorkloads, []int{1, 4}
	o.Warmup, o.Duration = 0, 200*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, stream := range []bool{false, true} {
		workloads := o.Workloads
		if stream {
			o.Workloads = []bench.Workload{bench.KeepAlive}
		}
		results, err := bench.Suite(ctx, driver{cli: cli, keepAliveStream: stream}, o, "etcd", "grpc", nil, nil)
		o.Workloads = workloads
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			t.Logf("stream %v: %s c=%d: %d ops, p50 %v, max %v", stream, r.Workload, r.Concurrency, r.Ops, r.Latency.P50, r.Latency.Max)
			if r.Ops == 0 || r.Errors != 0 || r.Latency.Max < r.Latency.P50 {
				t.Errorf("stream %v: %s c=%d: %+v", stream, r.Workload, r.Concurrency, r)
			}
			if r.Workload == bench.Expiry && r.Latency.P50 < -100*time.Millisecond {
				t.Errorf("expiry c=%d: leases seen expired early: %+v", r.Concurrency, r.Latency)
			}
		}
	}
	// Every contender revoked its lease; the expiry leases expired.
	leases, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases.Leases) != 0 {
		t.Errorf("%d leases left after the cells", len(leases.Leases))
	}
	if resp, err := cli.Get(ctx, bench.ExpiryPrefix, clientv3.WithPrefix()); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("keys left under %s: %v %v", bench.ExpiryPrefix, resp, err)
	}
}

// TestFill writes keys into a real etcd (in this process, so its memory is
// this process's) and checks the memory report; bad flags are usage
// errors.
func TestFill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	addr, dir := startEtcd(t)
	pid := strconv.Itoa(os.Getpid())
	var stdout, stderr bytes.Buffer
	code := run([]string{"fill", "--endpoints", addr, "--pids", "e1=" + pid, "--data", "e1=" + dir,
		"--keys", "300", "--value-size", "50", "--json"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var r memoryReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	if r.System != "etcd" || r.Version == "" || len(r.Memory) != 1 {
		t.Fatalf("report %s", stdout.String())
	}
	m := r.Memory[0]
	if m.Node != "e1" || m.Keys != 300 || m.ValueSize != 50 || m.RSSBefore <= 0 || m.RSSAfter <= 0 || m.HWM < m.RSSAfter || m.AnonAfter <= 0 || m.FileAfter <= 0 || m.AnonAfter+m.FileAfter > m.RSSAfter || m.DataBytes <= 0 {
		t.Errorf("memory %+v", m)
	}
	cli, err := newClient([]string{addr})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(context.Background(), "bench/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 300 {
		t.Errorf("keys written: %v %v", resp, err)
	}

	for name, args := range map[string][]string{
		"no pids":      {"--endpoints", addr},
		"remote":       {"--endpoints", "10.0.0.1:2379", "--pids", "e1=" + pid},
		"zero keys":    {"--endpoints", addr, "--pids", "e1=" + pid, "--keys", "0"},
		"bad data":     {"--endpoints", addr, "--pids", "e1=" + pid, "--data", "e1"},
		"tiny value":   {"--endpoints", addr, "--pids", "e1=" + pid, "--value-size", "1"},
		"unknown flag": {"--endpoints", addr, "--pids", "e1=" + pid, "--nodes", "3"},
	} {
		stdout.Reset()
		stderr.Reset()
		if code := run(append([]string{"fill"}, args...), &stdout, &stderr); code != 2 || stderr.Len() == 0 {
			t.Errorf("%s: exit %d, stderr %q", name, code, stderr.String())
		}
	}
}

// TestDriverQueues runs the queue workloads through the etcd driver
// against a real etcd, briefly, and checks every cell has figures (never
// the speed), takeovers come no earlier than the dead claim's deadline
// allows, and every task ends done or ready: none left claimed, none
// completed twice (a done/ key is written once per task: its version is
// 1).
func TestDriverQueues(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	addr, _ := startEtcd(t)
	cli, err := newClient([]string{addr})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	o := bench.DefaultOptions()
	o.Workloads, o.Concurrency = bench.QueueWorkloads, []int{1, 4}
	o.Warmup, o.Duration, o.QueueTasks = 0, 300*time.Millisecond, 200
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := newReaper(cli)
	results, err := bench.Suite(ctx, driver{cli: cli, reaper: r}, o, "etcd", "grpc", nil, nil)
	r.close()
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 6 {
		t.Fatalf("%d results, want 6", len(results))
	}
	for _, r := range results {
		t.Logf("%s c=%d: %d ops, p50 %v, max %v, errors %d %s", r.Workload, r.Concurrency, r.Ops, r.Latency.P50, r.Latency.Max, r.Errors, r.FirstError)
		drained := r.Workload == bench.Claim && r.Errors <= int64(r.Concurrency) && strings.Contains(r.FirstError, "no task ready")
		if r.Ops == 0 || (r.Errors != 0 && !drained) || r.Latency.Max < r.Latency.P50 {
			t.Errorf("%s c=%d: %+v", r.Workload, r.Concurrency, r)
		}
		if r.Workload == bench.Takeover && r.Latency.P50 < -100*time.Millisecond {
			t.Errorf("takeover c=%d: taken over early: %+v", r.Concurrency, r.Latency)
		}
	}
	if resp, err := cli.Get(ctx, queueRoot, clientv3.WithPrefix(), clientv3.WithKeysOnly()); err != nil {
		t.Fatal(err)
	} else {
		for _, kv := range resp.Kvs {
			key := string(kv.Key)
			if strings.Contains(key, "/claimed/") || (strings.Contains(key, "/done/") && kv.Version != 1) {
				t.Errorf("%s left (version %d)", key, kv.Version)
			}
		}
	}
}
