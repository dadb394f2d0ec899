package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server"
)

// timeoutRaft applies every proposal to its machine at once, but answers
// the first timeouts of them ErrTimeout, as a node whose caller stopped
// waiting before the entry committed: the write is applied, the answer
// lost.
type timeoutRaft struct {
	mu       sync.Mutex
	index    uint64
	machine  *kv.Machine
	timeouts int
}

func (r *timeoutRaft) Propose(_ context.Context, cmd []byte) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index++
	res := r.machine.Apply(r.index, cmd)
	if r.timeouts > 0 {
		r.timeouts--
		return nil, consensus.ErrTimeout
	}
	return res, nil
}
func (r *timeoutRaft) LinearizableRead(context.Context) error { return nil }
func (r *timeoutRaft) Status() consensus.Status               { return consensus.Status{NodeID: "n1"} }
func (r *timeoutRaft) Ready() error                           { return nil }

func localServer(t *testing.T) (*timeoutRaft, string) {
	t.Helper()
	m := kv.NewMachine()
	raft := &timeoutRaft{machine: m}
	srv := httptest.NewServer(server.NewHandler(kv.NewStore(raft, m), server.HTTPOptions{}))
	t.Cleanup(srv.Close)
	return raft, srv.URL
}

func TestWriteRetriedAfterTimeoutAppliesOnce(t *testing.T) {
	raft, url := localServer(t)
	c := newClient(t, Config{Endpoints: []string{url}, RetryBackoff: 1})
	ctx := testContext(t)
	writes := []struct {
		name string
		do   func() (int64, error)
	}{
		{"put", func() (int64, error) { return c.Put(ctx, "k", []byte(`1`)) }},
		{"batch", func() (int64, error) {
			return c.Batch(ctx, []kv.Op{{Type: kv.OpPut, Key: "k", Value: []byte(`2`), Cond: kv.IfRevision(1)}, {Type: kv.OpPut, Key: "j", Value: []byte(`3`)}})
		}},
		{"start workflow", func() (int64, error) { return c.StartWorkflow(ctx, "w", nil) }},
		{"delete", func() (int64, error) { return c.DeleteIf(ctx, "j", kv.IfRevision(2)) }},
	}
	for i, w := range writes {
		raft.mu.Lock()
		raft.timeouts = 2 // the first attempt and the first retry time out
		raft.mu.Unlock()
		rev, err := w.do()
		if err != nil || rev != int64(i+1) {
			t.Fatalf("%s: %d, %v; want revision %d applied once", w.name, rev, err, i+1)
		}
		if got := raft.machine.Revision(); got != int64(i+1) {
			t.Fatalf("%s: state at revision %d: a retry was applied again", w.name, got)
		}
	}
	if it, _ := raft.machine.Get("k"); it.Version != 2 {
		t.Fatalf("k = %+v", it)
	}
}

func TestClientStateOperations(t *testing.T) {
	_, url := localServer(t)
	c := newClient(t, Config{Endpoints: []string{url}})
	ctx := testContext(t)
	rev, err := c.PutIf(ctx, "a", []byte(`1`), kv.IfAbsent())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutIf(ctx, "a", []byte(`1`), kv.IfAbsent()); !errors.Is(err, kv.ErrConflict) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("create-only twice: %v", err)
	}
	if _, err := c.DeleteIf(ctx, "a", kv.IfRevision(rev+1)); !errors.Is(err, kv.ErrConflict) {
		t.Fatal(err)
	}
	// IfExists travels as true over /v1/ws.
	if _, err := c.PutIf(ctx, "missing", []byte(`1`), kv.IfExists()); !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("IfExists on a missing key: %v", err)
	}
	if _, err := c.PutIf(ctx, "a", []byte(`2`), kv.IfExists()); err != nil {
		t.Fatalf("IfExists on an existing key: %v", err)
	}
	if ok, err := c.Has(ctx, "a"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				_, err := c.Update(ctx, "counter", func(cur kv.Item, exists bool) ([]byte, error) {
					n := 0
					if exists {
						json.Unmarshal(cur.Value, &n)
					}
					return []byte(strconv.Itoa(n + 1)), nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if it, _ := c.Get(ctx, "counter"); string(it.Value) != "80" {
		t.Fatalf("counter = %s", it.Value)
	}
	if _, err := c.Batch(ctx, []kv.Op{{Type: kv.OpDelete, Key: "missing"}}); !errors.Is(err, kv.ErrKeyNotFound) {
		t.Fatal(err)
	}
	keys, _ := collectList(c.Keys(ctx, ""))
	values, _ := collectList(c.Values(ctx, "", WithConsistency(kv.Local)))
	if len(keys) != 2 || len(values) != 2 || keys[0] != "a" {
		t.Fatalf("keys %v values %s", keys, values)
	}
	if _, err := c.StopWorkflow(ctx, "w", nil); !errors.Is(err, kv.ErrWorkflowNotFound) {
		t.Fatal(err)
	}
	if _, err := c.StartWorkflow(ctx, "w", []byte(`{"name":"Data Processing"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateWorkflowState(ctx, "w", []byte(`{"progress":0.5}`)); err != nil {
		t.Fatal(err)
	}
	wf, err := c.WorkflowState(ctx, "w")
	if err != nil || wf.Status != kv.StatusRunning || wf.ID != "w" {
		t.Fatalf("workflow %+v %v", wf, err)
	}
	if _, err := c.StopWorkflow(ctx, "w", []byte(`{"result":"ok"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StopWorkflow(ctx, "w", nil); !errors.Is(err, kv.ErrInvalidTransition) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("stop twice: %v", err)
	}
	wfs, _, err := c.Workflows(ctx)
	if err != nil || len(wfs) != 1 || wfs[0].Status != kv.StatusStopped {
		t.Fatalf("workflows %+v %v", wfs, err)
	}
	if _, err := c.RegisterNode(ctx, "app", []byte(`{"zone":"eu"}`)); err != nil {
		t.Fatal(err)
	}
	nodes, _, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].ID != "app" {
		t.Fatalf("nodes %+v %v", nodes, err)
	}
	if _, err := c.DeregisterNode(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeregisterNode(ctx, "app"); !errors.Is(err, kv.ErrNodeNotFound) {
		t.Fatal(err)
	}
	if _, err := New(Config{Endpoints: []string{url}, ClientID: string(make([]byte, 200))}); err == nil {
		t.Fatal("a 200-byte client id was accepted")
	}
}
