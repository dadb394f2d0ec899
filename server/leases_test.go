package server

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
)

func decodeAs[T any](t *testing.T, r apiResponse) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

func leaseErrCode(t *testing.T, r apiResponse) string {
	t.Helper()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// The lease routes end to end on a three-node cluster, asked of a
// follower: grant, attach, a key with its own time to live, keepalive and
// time to live (forwarded to the leader, whose clock they are), expiry,
// revoke, and the errors.
func TestLeasesOverHTTP(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	var follower string
	for _, id := range c.ids {
		if id != leader {
			follower = id
			break
		}
	}
	base := "http://" + c.https[follower]
	// The leader's HTTP address, which forwarding needs, is published
	// after the start.
	testwait.For(t, 10*time.Second, "the condition", func() bool {
		for _, m := range c.servers[follower].Node().Members() {
			if m.HTTPAddr == "" {
				return false
			}
		}
		return true
	})

	r := call(t, http.MethodPost, base+"/v1/leases", []byte(`{"ttlMs":2000}`))
	if r.status != http.StatusOK {
		t.Fatalf("grant: %d %s", r.status, r.body)
	}
	granted := decodeAs[api.Lease](t, r)
	if floor := decodeAs[api.Lease](t, call(t, http.MethodPost, base+"/v1/leases", []byte(`{"ttlMs":10}`))); floor.TTLMs != api.LeaseTTLFloorMs {
		t.Fatalf("a 10 ms lease was granted %d ms, want the floor %d", floor.TTLMs, api.LeaseTTLFloorMs)
	} else {
		call(t, http.MethodDelete, base+"/v1/leases/"+floor.ID.String(), nil)
	}
	if granted.ID == 0 || granted.TTLMs != 2000 || !strings.Contains(string(r.body), `"id":"`+granted.ID.String()+`"`) {
		t.Fatalf("grant answered %s", r.body)
	}
	id := granted.ID.String()
	if r := call(t, http.MethodPut, base+"/v1/kv/held?lease="+id, []byte(`1`)); r.status != http.StatusOK {
		t.Fatalf("put with the lease: %d %s", r.status, r.body)
	}
	r = call(t, http.MethodGet, base+"/v1/kv/held", nil)
	if it := decodeAs[api.Item](t, r); it.Lease != granted.ID || !strings.Contains(string(r.body), `"lease":"`+id+`"`) {
		t.Fatalf("get answered %s, want lease %s", r.body, id)
	}
	if r := call(t, http.MethodPut, base+"/v1/kv/brief?ttl=300ms", []byte(`2`)); r.status != http.StatusOK {
		t.Fatalf("put with a ttl: %d %s", r.status, r.body)
	}
	if it := decodeAs[api.Item](t, call(t, http.MethodGet, base+"/v1/kv/brief", nil)); it.Lease == 0 {
		t.Fatal("a key with a ttl has no lease")
	}

	// Keepalives through the follower keep "held" while "brief" expires.
	start := time.Now()
	testwait.For(t, 10*time.Second, "the condition", func() bool {
		r := call(t, http.MethodPost, base+"/v1/leases/"+id+"/keepalive", nil)
		if r.status != http.StatusOK {
			t.Fatalf("keepalive: %d %s", r.status, r.body)
		}
		if l := decodeAs[api.Lease](t, r); l.RemainingMs == nil || *l.RemainingMs != 2000 || l.TTLMs != 2000 {
			t.Fatalf("keepalive answered %s", r.body)
		}
		return call(t, http.MethodGet, base+"/v1/kv/brief", nil).status == http.StatusNotFound
	})
	// Asked 300ms, it was given the least time to live, 1 s.
	t.Logf("a key asked 300ms expired after %v", time.Since(start).Round(time.Millisecond))
	if took := time.Since(start); took < 800*time.Millisecond {
		t.Fatalf("a key asked 300ms expired after %v: its lease was not raised to 1 s", took)
	}
	for time.Since(start) < 2500*time.Millisecond {
		if r := call(t, http.MethodPost, base+"/v1/leases/"+id+"/keepalive", nil); r.status != http.StatusOK {
			t.Fatalf("keepalive: %d %s", r.status, r.body)
		}
		time.Sleep(200 * time.Millisecond) // the client's keepalive period
	}
	if r := call(t, http.MethodGet, base+"/v1/kv/held", nil); r.status != http.StatusOK {
		t.Fatalf("a key of a lease kept alive went: %d %s", r.status, r.body)
	}
	r = call(t, http.MethodGet, base+"/v1/leases/"+id, nil)
	info := decodeAs[api.Lease](t, r)
	if r.status != http.StatusOK || !slices.Equal(info.Keys, []string{"held"}) || info.RemainingMs == nil ||
		*info.RemainingMs > 2000 || *info.RemainingMs < 1000 {
		t.Fatalf("time to live: %d %s", r.status, r.body)
	}

	// Without keepalives it expires, and its key with it.
	stopped := time.Now()
	testwait.For(t, 10*time.Second, "the condition", func() bool {
		return call(t, http.MethodGet, base+"/v1/kv/held", nil).status == http.StatusNotFound
	})
	if took := time.Since(stopped); took < 1500*time.Millisecond {
		t.Fatalf("the lease expired %v after its last keepalive, before its 2 s time to live", took)
	}
	r = call(t, http.MethodGet, base+"/v1/leases/"+id, nil)
	if r.status != http.StatusNotFound || leaseErrCode(t, r) != api.CodeLeaseNotFound {
		t.Fatalf("an expired lease: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodPost, base+"/v1/leases/"+id+"/keepalive", nil); r.status != http.StatusNotFound {
		t.Fatalf("keepalive of an expired lease: %d %s", r.status, r.body)
	}

	// Revoke takes the keys at once; the list shows what is left.
	other := decodeAs[api.Lease](t, call(t, http.MethodPost, base+"/v1/leases", []byte(`{"ttlMs":60000}`)))
	call(t, http.MethodPut, base+"/v1/kv/x?lease="+other.ID.String(), []byte(`1`))
	if r := decodeAs[leasesResponse](t, call(t, http.MethodGet, base+"/v1/leases", nil)); len(r.Leases) != 1 || r.Leases[0].ID != other.ID {
		t.Fatalf("list: %+v", r)
	}
	if r := call(t, http.MethodDelete, base+"/v1/leases/"+other.ID.String(), nil); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodGet, base+"/v1/kv/x", nil); r.status != http.StatusNotFound {
		t.Fatalf("a revoked lease's key: %d %s", r.status, r.body)
	}

	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{http.MethodDelete, "/v1/leases/" + other.ID.String(), "", 404, api.CodeLeaseNotFound},
		{http.MethodGet, "/v1/leases/nothex", "", 400, api.CodeInvalidLease},
		{http.MethodGet, "/v1/leases/0", "", 400, api.CodeInvalidLease},
		{http.MethodPost, "/v1/leases", `{"ttlMs":0}`, 400, api.CodeInvalidLease},
		{http.MethodPost, "/v1/leases", `{"ttl":5}`, 400, api.CodeInvalidJSON},
		{http.MethodPut, "/v1/kv/y?lease=" + other.ID.String(), "1", 404, api.CodeLeaseNotFound},
		{http.MethodPut, "/v1/kv/y?ttl=soon", "1", 400, api.CodeInvalidLease},
		{http.MethodPut, "/v1/kv/y?ttl=1s&lease=" + id, "1", 400, api.CodeBadRequest},
		{http.MethodPatch, "/v1/leases", "", 405, api.CodeMethodNotAllowed},
		{http.MethodGet, "/v1/leases/" + id + "/other", "", 404, api.CodeNotFound},
	} {
		r := call(t, tc.method, base+tc.path, []byte(tc.body))
		if r.status != tc.status || leaseErrCode(t, r) != tc.code {
			t.Errorf("%s %s %s: %d %s, want %d %s", tc.method, tc.path, tc.body, r.status, r.body, tc.status, tc.code)
		}
	}
}

// An application node registered under a lease, or with a time to live,
// is deregistered when the lease goes: the registry's liveness.
func TestNodeRegistryLiveness(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	base := "http://" + c.https[leader]
	registered := func(id string) bool {
		r := call(t, http.MethodGet, base+"/v1/nodes", nil)
		return strings.Contains(string(r.body), `"id":"`+id+`"`)
	}
	if r := call(t, http.MethodPost, base+"/v1/nodes?ttl=1s", []byte(`{"id":"brief","zone":"a"}`)); r.status != http.StatusOK {
		t.Fatalf("register with a ttl: %d %s", r.status, r.body)
	}
	lease := decodeAs[api.Lease](t, call(t, http.MethodPost, base+"/v1/leases", []byte(`{"ttlMs":1000}`)))
	if r := call(t, http.MethodPost, base+"/v1/nodes?lease="+lease.ID.String(), []byte(`{"id":"kept"}`)); r.status != http.StatusOK {
		t.Fatalf("register with a lease: %d %s", r.status, r.body)
	}
	if !registered("brief") || !registered("kept") {
		t.Fatal("registrations missing")
	}
	start := time.Now()
	testwait.For(t, 10*time.Second, "the node with a ttl to be deregistered", func() bool {
		if r := call(t, http.MethodPost, base+"/v1/leases/"+lease.ID.String()+"/keepalive", nil); r.status != http.StatusOK {
			t.Fatalf("keepalive: %d %s", r.status, r.body)
		}
		return !registered("brief")
	})
	if took := time.Since(start); took < 800*time.Millisecond {
		t.Fatalf("deregistered after %v, before its 1 s", took)
	}
	if !registered("kept") {
		t.Fatal("a node whose lease was kept alive was deregistered")
	}
	testwait.For(t, 10*time.Second, "the node whose lease is no longer kept alive to go", func() bool { return !registered("kept") })
	if r := call(t, http.MethodPost, base+"/v1/nodes?ttl=nope", []byte(`{"id":"x"}`)); r.status != http.StatusBadRequest {
		t.Fatalf("a bad ttl: %d %s", r.status, r.body)
	}
}

// wsLease reads a lease result: [id, ttlMs, remainingMs?, keys?].
func wsLease(t *testing.T, r wsTestResponse) (id, ttlMs int64, remainingMs *int64, keys []string) {
	t.Helper()
	if !r.ok {
		t.Fatalf("answer %+v, want a lease", r)
	}
	l := r.result.([]any)
	if len(l) != 4 {
		t.Fatalf("lease %v: want 4 elements", l)
	}
	id, ttlMs = toInt(t, l[0]), toInt(t, l[1])
	if l[2] != nil {
		ms := toInt(t, l[2])
		remainingMs = &ms
	}
	if l[3] != nil {
		for _, k := range l[3].([]any) {
			keys = append(keys, k.(string))
		}
	}
	return id, ttlMs, remainingMs, keys
}

// The lease operations of /v1/ws on a three-node cluster with bearer
// tokens, asked of a follower: keepalive and time to live reach the
// leader with the connection's token, and the leader's errors come back
// with their codes.
func TestLeasesOverWS(t *testing.T) {
	c := newTestClusterOf(t, 3, func(cfg *Config) { cfg.HTTP.Tokens = testTokens(t) })
	leader := c.waitLeader()
	follower := c.forwardingFollower(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+c.https[follower]+wsPath,
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer s3cret-rw"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	w := &wsTestConn{t: t, c: ws}

	id, ttl, remaining, _ := wsLease(t, w.call(uint64(1), api.OpLeaseGrant, 2000))
	if id <= 0 || ttl != 2000 || remaining != nil {
		t.Fatalf("grant answered id %d ttl %d remaining %v", id, ttl, remaining)
	}
	if r := w.call(uint64(2), api.OpPut, "held", []byte("1"), nil, nil, id); !r.ok {
		t.Fatalf("put with the lease: %+v", r)
	}
	if r := w.call(uint64(3), api.OpGet, "held"); !r.ok || len(r.result.([]any)) != 6 || toInt(t, r.result.([]any)[5]) != id {
		t.Fatalf("get of a key with a lease: %+v", r)
	}
	if r := w.call(uint64(4), api.OpPut, "brief", []byte("2"), nil, nil, nil, 300); !r.ok {
		t.Fatalf("put with a ttl: %+v", r)
	}
	// Keepalives through the follower keep "held" while "brief" expires.
	n := uint64(100)
	testwait.For(t, 10*time.Second, "the key with a ttl to expire", func() bool {
		n++
		gotID, ttl, remaining, _ := wsLease(t, w.call(n, api.OpLeaseKeepAlive, id))
		if gotID != id || ttl != 2000 || remaining == nil || *remaining != 2000 {
			t.Fatalf("keepalive answered %d %d %v", gotID, ttl, remaining)
		}
		n++
		return w.call(n, api.OpGet, "brief").code == api.CodeKeyNotFound
	})
	_, _, remaining, keys := wsLease(t, w.call(uint64(5), api.OpLeaseTTL, id))
	if remaining == nil || *remaining > 2000 || *remaining < 1000 || !slices.Equal(keys, []string{"held"}) {
		t.Fatalf("time to live: remaining %v keys %v", remaining, keys)
	}
	r := w.call(uint64(6), api.OpLeaseList, 0)
	if !r.ok || len(r.result.([]any)) != 1 {
		t.Fatalf("list: %+v", r)
	}
	if r := w.call(uint64(7), api.OpLeaseRevoke, id); !r.ok || toInt(t, r.result) <= 0 {
		t.Fatalf("revoke: %+v", r)
	}
	wantWSError(t, w.call(uint64(8), api.OpGet, "held"), api.CodeKeyNotFound)
	// The leader's 404, relayed by the follower.
	wantWSError(t, w.call(uint64(9), api.OpLeaseKeepAlive, id), api.CodeLeaseNotFound)
	wantWSError(t, w.call(uint64(10), api.OpLeaseTTL, id), api.CodeLeaseNotFound)
	wantWSError(t, w.call(uint64(11), api.OpLeaseRevoke, id), api.CodeLeaseNotFound)
	wantWSError(t, w.call(uint64(12), api.OpPut, "k", []byte("1"), nil, nil, id), api.CodeLeaseNotFound)
	wantWSError(t, w.call(uint64(13), api.OpLeaseGrant, 0), api.CodeInvalidLease)
	wantWSError(t, w.call(uint64(14), api.OpLeaseGrant, api.MaxLeaseTTLMs+1), api.CodeInvalidLease)
	wantWSError(t, w.call(uint64(15), api.OpLeaseRevoke, nil), api.CodeInvalidLease)
	wantWSError(t, w.call(uint64(16), api.OpLeaseKeepAlive, -1), api.CodeBadRequest)
	wantWSError(t, w.call(uint64(17), api.OpPut, "k", []byte("1"), nil, nil, id, 1000), api.CodeBadRequest)
	if gotID, _, _, _ := wsLease(t, w.call(uint64(18), api.OpLeaseGrant, 60000, 0x77)); gotID != 0x77 {
		t.Fatalf("grant of id 77 answered id %x", gotID)
	}
	wantWSError(t, w.call(uint64(19), api.OpLeaseGrant, 60000, 0x77), api.CodeLeaseExists)
}
