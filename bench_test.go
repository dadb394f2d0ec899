package consensus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/telemetry"
)

// startBenchCluster is a 3-node cluster on the in-memory chanNet with
// in-memory storage, so that what is measured is the node (raft loop,
// ReadIndex batching), not disk or sockets.
func startBenchCluster(b *testing.B) map[string]*testNode {
	b.Helper()
	nodes, _ := startCluster(b, 3)
	return nodes
}

// benchLeader waits for a leader and commits one entry in its term (a
// new leader serves reads only after that).
func benchLeader(b *testing.B, nodes map[string]*testNode) (leader, follower string) {
	b.Helper()
	leader = waitLeader(b, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := nodes[leader].node.Propose(ctx, []byte("warm")); err != nil {
		b.Fatal(err)
	}
	for name := range nodes {
		if name != leader {
			follower = name
			break
		}
	}
	return leader, follower
}

// BenchmarkReadIndexBatching runs many concurrent LinearizableRead calls
// (64 goroutines per GOMAXPROCS) on a 3-node in-memory cluster, on the
// leader and on a follower (whose ReadIndex goes to the leader and back).
// All reads waiting when a round starts share one ReadIndex, so ns/op
// falls far below one heartbeat round trip as concurrency grows.
func BenchmarkReadIndexBatching(b *testing.B) {
	for _, where := range []string{"leader", "follower"} {
		b.Run(where, func(b *testing.B) {
			nodes := startBenchCluster(b)
			leader, follower := benchLeader(b, nodes)
			node := nodes[leader].node
			if where == "follower" {
				node = nodes[follower].node
			}
			ctx := context.Background()
			b.SetParallelism(64)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := node.LinearizableRead(ctx); err != nil {
						b.Error(fmt.Errorf("read on %s: %w", where, err))
						return
					}
				}
			})
		})
	}
}

// BenchmarkPropose runs concurrent Propose calls (64 goroutines per
// GOMAXPROCS) on the leader of a 3-node in-memory cluster: the raft loop,
// proposal waiters and apply, without disk or sockets. It is the hot path
// the telemetry hooks sit on: "plain" has none set (nil checks only),
// "observed" the metrics Observer that server.Start sets, "traced" also a
// recording tracer (spans kept by the SDK, exported nowhere).
func BenchmarkPropose(b *testing.B) {
	tel, err := telemetry.New(context.Background(), telemetry.Options{NodeID: "bench", NoOTLP: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	obs, err := tel.NewNodeObserver()
	if err != nil {
		b.Fatal(err)
	}
	tracer := sdktrace.NewTracerProvider().Tracer("bench")
	for _, variant := range []struct {
		name      string
		configure func(*consensus.Config)
	}{
		{"plain", nil},
		{"observed", func(c *consensus.Config) { c.Observer = obs }},
		{"traced", func(c *consensus.Config) { c.Observer, c.Tracer = obs, tracer }},
	} {
		b.Run(variant.name, func(b *testing.B) {
			nodes, _ := startClusterWith(b, 3, variant.configure)
			leader, _ := benchLeader(b, nodes)
			node := nodes[leader].node
			ctx := context.Background()
			cmd := []byte("benchmark-command-0123456789")
			b.SetParallelism(64)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := node.Propose(ctx, cmd); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
