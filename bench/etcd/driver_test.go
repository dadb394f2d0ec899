package main

import (
	"context"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/unrdf/consensus/bench"
)

// startEtcd starts a one-member etcd in this process on loopback ports
// the kernel picks, and returns its client address.
func startEtcd(t *testing.T) string {
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
	return e.Clients[0].Addr().String()
}

// TestDriverLeasesAndLocks runs the lease and lock workloads through the
// etcd driver against a real etcd, briefly, and checks every cell has
// figures and no error (never the speed), with keepalives both by
// KeepAliveOnce and over a stream.
func TestDriverLeasesAndLocks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	addr := startEtcd(t)
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
