package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/unrdf/consensus/internal/testcluster"
	"github.com/unrdf/consensus/kv"
)

// benchParallelism multiplies GOMAXPROCS into the number of goroutines
// RunParallel uses: the point of /v1/ws is many requests in flight, so the
// benchmarks keep many in flight, over one connection for the client and
// over one keep-alive connection per goroutine for HTTP.
const benchParallelism = 32

// benchCluster starts a 3-node cluster and returns it with its leader's
// endpoint first: both protocols are measured against the leader, so
// follower forwarding does not blur the comparison.
func benchCluster(b *testing.B) (*testcluster.Cluster, []string) {
	b.Helper()
	cl := newTestCluster(b, 3)
	leader := cl.WaitLeader(b, leaderTimeout)
	return cl, cl.Endpoints(append([]string{leader}, cl.Others(leader)...)...)
}

var benchValue = []byte(`{"name":"Data Processing","status":"running","progress":42}`)

func BenchmarkClientPut(b *testing.B) {
	_, eps := benchCluster(b)
	c := newClient(b, Config{Endpoints: eps})
	ctx := context.Background()
	var seq atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := fmt.Sprintf("bench/%d", seq.Add(1)%4096)
			if _, err := c.Put(ctx, key, benchValue); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkClientGet(b *testing.B) { benchClientGet(b) }

// BenchmarkClientGetLocal reads without a ReadIndex round: it measures the
// protocol rather than raft.
func BenchmarkClientGetLocal(b *testing.B) { benchClientGet(b, WithConsistency(kv.Local)) }

func benchClientGet(b *testing.B, opts ...ReadOption) {
	_, eps := benchCluster(b)
	c := newClient(b, Config{Endpoints: eps})
	ctx := context.Background()
	if _, err := c.Put(ctx, "bench/get", benchValue); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Get(ctx, "bench/get", opts...); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchHTTPClient keeps one idle connection per goroutine.
func benchHTTPClient(b *testing.B) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func BenchmarkHTTPPut(b *testing.B) {
	_, eps := benchCluster(b)
	hc := benchHTTPClient(b)
	base := "http://" + eps[0] + "/v1/kv/"
	var seq atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			url := fmt.Sprintf("%sbench/%d", base, seq.Add(1)%4096)
			req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(benchValue))
			if err != nil {
				b.Error(err)
				return
			}
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("PUT: %s", resp.Status)
				return
			}
		}
	})
}

func BenchmarkHTTPGet(b *testing.B) { benchHTTPGet(b, "") }

// BenchmarkHTTPGetLocal is BenchmarkClientGetLocal over the JSON API.
func BenchmarkHTTPGetLocal(b *testing.B) { benchHTTPGet(b, "?consistency=local") }

func benchHTTPGet(b *testing.B, query string) {
	_, eps := benchCluster(b)
	hc := benchHTTPClient(b)
	url := "http://" + eps[0] + "/v1/kv/bench/get"
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(benchValue))
	resp, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := hc.Get(url + query)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("GET: %s", resp.Status)
				return
			}
		}
	})
}
