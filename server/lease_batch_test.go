package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

// fakeLeader answers a keepAliveBatcher's requests as a leader would,
// holding the first until release is closed, and records them.
type fakeLeader struct {
	t       *testing.T
	release chan struct{}
	batch   bool // whether it serves the batch route (an older one does not)

	mu       sync.Mutex
	requests []string // "auth path ids..."
}

func (f *fakeLeader) ask(ctx context.Context, method, path string, body []byte, auth, _ string) (int, []byte, *apiError) {
	var ids []kv.LeaseID
	if path == leasesPath+keepAliveBatchPath {
		var req keepAliveBatchRequest
		if err := json.Unmarshal(body, &req); err != nil {
			f.t.Errorf("batch body %q: %v", body, err)
		}
		ids = req.IDs
	}
	f.mu.Lock()
	first := len(f.requests) == 0
	f.requests = append(f.requests, fmt.Sprint(auth, " ", path, " ", ids))
	f.mu.Unlock()
	if first {
		select {
		case <-f.release:
		case <-ctx.Done():
		}
	}
	lease := func(id kv.LeaseID) keepAliveResult {
		if id == 0xdead {
			return keepAliveResult{ID: id, Error: &errorDetail{Code: api.CodeLeaseNotFound, Message: "gone"}}
		}
		remaining := int64(1000)
		return keepAliveResult{ID: id, TTLMs: 1000, RemainingMs: &remaining}
	}
	if path != leasesPath+keepAliveBatchPath {
		var id kv.LeaseID
		hex := strings.TrimSuffix(strings.TrimPrefix(path, leasesPath+"/"), "/keepalive")
		if err := id.UnmarshalJSON([]byte(`"` + hex + `"`)); err != nil {
			f.t.Errorf("single keepalive path %q: %v", path, err)
		}
		r := lease(id)
		if r.Error != nil {
			b, _ := json.Marshal(errorBody{Error: *r.Error})
			return http.StatusNotFound, b, nil
		}
		b, _ := json.Marshal(kv.Lease{ID: r.ID, TTLMs: r.TTLMs, RemainingMs: r.RemainingMs})
		return http.StatusOK, b, nil
	}
	if !f.batch {
		b, _ := json.Marshal(errorBody{Error: errorDetail{Code: api.CodeNotFound, Message: "no such route"}})
		return http.StatusNotFound, b, nil
	}
	var resp keepAliveBatchResponse
	for _, id := range ids {
		resp.Leases = append(resp.Leases, lease(id))
	}
	b, _ := json.Marshal(resp)
	return http.StatusOK, b, nil
}

func (f *fakeLeader) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// keepAliveAll runs a keepalive for each id, all at once, and returns
// their outcomes in order.
func keepAliveAll(b *keepAliveBatcher, auth string, ids []kv.LeaseID) []keepAliveOutcome {
	out := make([]keepAliveOutcome, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out[i].lease, out[i].err = b.keepAlive(ctx, auth, id)
		})
	}
	wg.Wait()
	return out
}

// A follower's keepalives go to the leader in batches: those that arrive
// while a batch is in flight share the next request, a lease asked twice
// is sent once and both callers get its answer, a lease the leader no
// longer has fails alone, and different tokens never share a request.
func TestKeepAliveBatches(t *testing.T) {
	f := &fakeLeader{t: t, release: make(chan struct{}), batch: true}
	b := &keepAliveBatcher{timeout: 10 * time.Second, ask: f.ask}

	firstDone := make(chan keepAliveOutcome, 1)
	go func() {
		l, e := b.keepAlive(context.Background(), "Bearer a", 1)
		firstDone <- keepAliveOutcome{l, e}
	}()
	testwait.For(t, 10*time.Second, "the first keepalive to be in flight", func() bool { return len(f.seen()) == 1 })
	ids := []kv.LeaseID{2, 3, 3, 0xdead, 4}
	outcomes := make([]keepAliveOutcome, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids { // one at a time, so that the queue's order is known
		wg.Go(func() { outcomes[i].lease, outcomes[i].err = b.keepAlive(context.Background(), "Bearer a", id) })
		testwait.For(t, 10*time.Second, fmt.Sprintf("keepalive %d to queue behind the first", i), func() bool {
			b.mu.Lock()
			defer b.mu.Unlock()
			return len(b.queues["Bearer a"]) == i+1
		})
	}
	other := keepAliveAll(b, "Bearer b", []kv.LeaseID{9})
	close(f.release)
	wg.Wait()
	if o := <-firstDone; o.err != nil || o.lease.ID != 1 {
		t.Fatalf("first keepalive: %+v", o)
	}
	for i, o := range outcomes {
		if ids[i] == 0xdead {
			if o.err == nil || o.err.code != api.CodeLeaseNotFound || o.err.status != http.StatusNotFound {
				t.Errorf("keepalive of a lease gone: %+v", o)
			}
			continue
		}
		if o.err != nil || o.lease.ID != ids[i] || o.lease.RemainingMs == nil || *o.lease.RemainingMs != 1000 {
			t.Errorf("keepalive %d of lease %v: %+v", i, ids[i], o)
		}
	}
	if o := other[0]; o.err != nil || o.lease.ID != 9 {
		t.Errorf("the other token's keepalive: %+v", o)
	}
	want := []string{
		"Bearer a /v1/leases/keepalive [1]",
		"Bearer b /v1/leases/keepalive [9]",
		"Bearer a /v1/leases/keepalive [2 3 dead 4]",
	}
	if got := f.seen(); !slices.Equal(got, want) {
		t.Errorf("requests to the leader:\n got %q\nwant %q", got, want)
	}
	// The sender forgets a queue once it finds it empty, after answering.
	testwait.For(t, 10*time.Second, "the queues to be forgotten", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.queues) == 0
	})
}

// A leader without the batch route (an older version) answers 404: the
// batch is sent again one keepalive at a time, and so is every keepalive
// after it.
func TestKeepAliveBatchFallsBackOneByOne(t *testing.T) {
	f := &fakeLeader{t: t, release: make(chan struct{}), batch: false}
	close(f.release)
	b := &keepAliveBatcher{timeout: 10 * time.Second, ask: f.ask}
	for _, o := range keepAliveAll(b, "", []kv.LeaseID{5}) {
		if o.err != nil || o.lease.ID != 5 {
			t.Fatalf("keepalive: %+v", o)
		}
	}
	if o := keepAliveAll(b, "", []kv.LeaseID{0xdead})[0]; o.err == nil || o.err.code != api.CodeLeaseNotFound {
		t.Fatalf("keepalive of a lease gone: %+v", o)
	}
	want := []string{" /v1/leases/keepalive [5]", " /v1/leases/5/keepalive []", " /v1/leases/dead/keepalive []"}
	if got := f.seen(); !slices.Equal(got, want) {
		t.Errorf("requests to the leader:\n got %q\nwant %q", got, want)
	}
}

// POST /v1/leases/keepalive on a follower is answered by the leader: each
// lease renewed or failed on its own; bad bodies are refused with the
// JSON error.
func TestKeepAliveBatchOverHTTP(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	follower := c.forwardingFollower(leader)
	base := "http://" + c.https[follower]
	grant := func() string {
		r := call(t, http.MethodPost, base+"/v1/leases", []byte(`{"ttlMs":60000}`))
		if r.status != http.StatusOK {
			t.Fatalf("grant: %d %s", r.status, r.body)
		}
		return decodeAs[api.Lease](t, r).ID.String()
	}
	a, b := grant(), grant()
	r := call(t, http.MethodPost, base+"/v1/leases/keepalive", fmt.Appendf(nil, `{"ids":[%q,"abc",%q]}`, a, b))
	if r.status != http.StatusOK {
		t.Fatalf("batch keepalive: %d %s", r.status, r.body)
	}
	got := decodeAs[keepAliveBatchResponse](t, r).Leases
	if len(got) != 3 || got[0].ID.String() != a || got[2].ID.String() != b || got[1].ID.String() != "abc" {
		t.Fatalf("batch keepalive answered %s", r.body)
	}
	for _, i := range []int{0, 2} {
		if got[i].Error != nil || got[i].TTLMs != 60000 || got[i].RemainingMs == nil || *got[i].RemainingMs != 60000 {
			t.Errorf("lease %d: %s", i, r.body)
		}
	}
	if got[1].Error == nil || got[1].Error.Code != api.CodeLeaseNotFound || got[1].RemainingMs != nil {
		t.Errorf("an unknown lease: %s", r.body)
	}
	many := strings.Repeat(`"1",`, MaxKeepAliveBatch)
	for _, bad := range []struct{ body, code string }{
		{`{"ids":[]}`, api.CodeBadRequest},
		{`{"ids":[` + many + `"1"]}`, api.CodeBadRequest},
		{`{"ids":["zz"]}`, api.CodeInvalidLease},
		{`{"ids":["1"],"extra":1}`, api.CodeInvalidJSON},
		{`{"ids":["1"]} {}`, api.CodeInvalidJSON},
		{`[`, api.CodeInvalidJSON},
	} {
		r := call(t, http.MethodPost, base+"/v1/leases/keepalive", []byte(bad.body))
		if r.status != http.StatusBadRequest || leaseErrCode(t, r) != bad.code {
			t.Errorf("body %.40q: %d %s, want 400 %s", bad.body, r.status, r.body, bad.code)
		}
	}
	if r := call(t, http.MethodGet, base+"/v1/leases/keepalive", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET of the batch route: %d %s", r.status, r.body)
	}
}
