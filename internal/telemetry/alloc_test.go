package telemetry

import (
	"context"
	"testing"
	"time"

	"github.com/unrdf/consensus"
)

// The hooks on the raft loop allocate nothing, and the per-request
// recorders at most the slice of their one option, once their attribute
// sets are cached. (SnapshotDone, once per thousands of entries, may.)
func TestRecordersDoNotAllocate(t *testing.T) {
	tel, err := New(context.Background(), Options{NodeID: "n1", NoOTLP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	obs, err := tel.NewNodeObserver()
	if err != nil {
		t.Fatal(err)
	}
	hm, err := tel.NewHTTPMetrics()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	checks := []struct {
		name string
		max  float64
		f    func()
	}{
		{"CommandApplied", 0, func() { obs.CommandApplied(time.Microsecond) }},
		{"StorageSaved", 0, func() { obs.StorageSaved(time.Millisecond) }},
		{"StorageSynced", 0, func() { obs.StorageSynced(time.Millisecond) }},
		{"Request", 1, func() { hm.Request(ctx, "PUT", "/v1/kv/{key}", 200, time.Millisecond) }},
		{"WSRequest", 1, func() { hm.WSRequest(ctx, "put", "ok") }},
	}
	for _, c := range checks {
		c.f() // cache the attribute set
		if n := testing.AllocsPerRun(100, c.f); n > c.max {
			t.Errorf("%s: %v allocations per call, want at most %v", c.name, n, c.max)
		}
	}
	obs.SnapshotDone(consensus.SnapshotEvent{Type: consensus.SnapshotCreated, Bytes: 10})
}
