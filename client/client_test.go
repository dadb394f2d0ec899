package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRoundTrips(t *testing.T) {
	cl := newTestCluster(t, 3)
	leader := cl.WaitLeader(t, leaderTimeout)
	// Through a follower: it forwards writes to the leader.
	follower := cl.Others(leader)[0]
	c := newClient(t, Config{Endpoints: cl.Endpoints(follower)})
	ctx := testContext(t)

	rev1, err := c.Put(ctx, "workflow:a", []byte(`{"name": "Data Processing", "progress": 0}`))
	if err != nil {
		t.Fatal(err)
	}
	rev2, err := c.Put(ctx, "workflow:b", []byte(`[1,2,3]`))
	if err != nil {
		t.Fatal(err)
	}
	rev3, err := c.Put(ctx, "workflow:a", []byte(`{"progress":50}`))
	if err != nil {
		t.Fatal(err)
	}
	if !(rev1 < rev2 && rev2 < rev3) {
		t.Fatalf("revisions %d, %d, %d do not increase", rev1, rev2, rev3)
	}
	if _, err := c.Put(ctx, "other", []byte(`"x"`)); err != nil {
		t.Fatal(err)
	}

	it, err := c.Get(ctx, "workflow:a")
	if err != nil {
		t.Fatal(err)
	}
	want := kv.Item{Key: "workflow:a", Value: json.RawMessage(`{"progress":50}`), Revision: rev3, CreateRevision: rev1, Version: 2}
	if fmt.Sprint(it) != fmt.Sprint(want) {
		t.Fatalf("Get = %+v, want %+v", it, want)
	}
	// A local read on the node that applied the write sees it too.
	if it, err := c.Get(ctx, "workflow:b", WithConsistency(kv.Local)); err != nil || string(it.Value) != `[1,2,3]` {
		t.Fatalf("local Get = %+v, %v", it, err)
	}

	var items []kv.Item
	var rev int64
	for p, err := range c.Pages(ctx, "workflow:") {
		if err != nil {
			t.Fatal(err)
		}
		items, rev = append(items, p.Items...), p.Revision
	}
	if len(items) != 2 || items[0].Key != "workflow:a" || items[1].Key != "workflow:b" || rev < rev3 {
		t.Fatalf("List = %+v at %d", items, rev)
	}
	all, err := collectList(c.List(ctx, "", WithConsistency(kv.Local)))
	if err != nil || len(all) != 3 {
		t.Fatalf("List all = %+v, %v", all, err)
	}
	none, err := collectList(c.List(ctx, "nothing:"))
	if err != nil || len(none) != 0 {
		t.Fatalf("List none = %+v, %v", none, err)
	}

	drev, err := c.Delete(ctx, "workflow:a")
	if err != nil || drev <= rev3 {
		t.Fatalf("Delete = %d, %v", drev, err)
	}
	if _, err := c.Get(ctx, "workflow:a"); !errors.Is(err, kv.ErrKeyNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.NodeID != follower || st.LeaderID != leader || st.IsLeader || len(st.Members) != 3 {
		t.Fatalf("Status = %+v", st)
	}
}

// TestConcurrentCallsShareOneConnection runs 256 goroutines on one Client:
// every call succeeds, every value reads back, over a single connection.
func TestConcurrentCallsShareOneConnection(t *testing.T) {
	cl := newTestCluster(t, 3)
	leader := cl.WaitLeader(t, leaderTimeout)
	c := newClient(t, Config{Endpoints: cl.Endpoints(leader)})
	ctx := testContext(t)

	const workers = 256
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		wg.Go(func() {
			key := fmt.Sprintf("worker/%03d", i)
			value := fmt.Sprintf(`{"worker":%d,"pad":%q}`, i, strings.Repeat("x", i))
			rev, err := c.Put(ctx, key, []byte(value))
			if err != nil {
				errs <- fmt.Errorf("put %s: %w", key, err)
				return
			}
			it, err := c.Get(ctx, key)
			if err != nil {
				errs <- fmt.Errorf("get %s: %w", key, err)
				return
			}
			if string(it.Value) != value || it.Revision != rev || it.Key != key {
				errs <- fmt.Errorf("get %s = %+v, want value %s at %d", key, it, value, rev)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	items, err := collectList(c.List(ctx, "worker/"))
	if err != nil || len(items) != workers {
		t.Fatalf("List = %d items, %v", len(items), err)
	}
	var accepted int64
	for _, s := range cl.Servers {
		accepted += s.WSStats().Accepted
	}
	if accepted != 1 {
		t.Errorf("%d connections accepted, want 1", accepted)
	}
}

func TestErrorsMapToSentinels(t *testing.T) {
	cl := newTestCluster(t, 3)
	leader := cl.WaitLeader(t, leaderTimeout)
	c := newClient(t, Config{Endpoints: cl.Endpoints(leader)})
	ctx := testContext(t)

	wantCode := func(err error, code string, sentinels ...error) {
		t.Helper()
		var se *ServerError
		if !errors.As(err, &se) || se.Code != code {
			t.Fatalf("error %v, want a ServerError %q", err, code)
		}
		for _, s := range sentinels {
			if !errors.Is(err, s) {
				t.Errorf("error %v is not %v", err, s)
			}
		}
		if errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("refusal %v says outcome unknown", err)
		}
	}
	_, err := c.Get(ctx, "missing")
	wantCode(err, CodeKeyNotFound, kv.ErrKeyNotFound)
	_, err = c.Delete(ctx, "missing")
	wantCode(err, CodeKeyNotFound, kv.ErrKeyNotFound)
	_, err = c.Put(ctx, "", []byte("1"))
	wantCode(err, CodeInvalidKey, kv.ErrInvalidKey)
	// Reads take any bytes (etcd's API may have stored such a key); a
	// write of our own API refuses them.
	_, err = c.Get(ctx, "bad\xffkey")
	wantCode(err, CodeKeyNotFound, kv.ErrKeyNotFound)
	_, err = c.Put(ctx, "bad\xffkey", []byte("1"))
	wantCode(err, CodeInvalidKey, kv.ErrInvalidKey)
	_, err = c.Put(ctx, strings.Repeat("k", kv.DefaultMaxKeyBytes+1), []byte("1"))
	wantCode(err, CodeInvalidKey, kv.ErrInvalidKey)
	_, err = c.Put(ctx, "k", []byte(`{"unclosed":`))
	wantCode(err, CodeInvalidJSON, kv.ErrInvalidValue)
	big := []byte(`"` + strings.Repeat("x", kv.DefaultMaxValueBytes) + `"`)
	_, err = c.Put(ctx, "k", big)
	wantCode(err, CodeTooLarge, kv.ErrValueTooLarge, consensus.ErrTooLarge)

	// A value that does not fit in a frame is refused before it is sent.
	huge := make([]byte, DefaultMaxFrameBytes)
	if _, err := c.Put(ctx, "k", huge); !errors.Is(err, kv.ErrValueTooLarge) {
		t.Fatalf("Put of a frame-sized value = %v", err)
	}
	// The connection survived all of it.
	if _, err := c.Put(ctx, "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
}

func TestNoLeader(t *testing.T) {
	cl := newTestCluster(t, 3)
	leader := cl.WaitLeader(t, leaderTimeout)
	followers := cl.Others(leader)
	survivor := followers[1]
	c := newClient(t, Config{Endpoints: cl.Endpoints(survivor), RetryBackoff: 10 * time.Millisecond})
	ctx := testContext(t)
	if _, err := c.Put(ctx, "before", []byte("1")); err != nil {
		t.Fatal(err)
	}

	cl.Stop(t, leader)
	cl.Stop(t, followers[0])
	// One node of three cannot elect a leader; wait until it knows it has
	// none, so that writes are refused rather than left waiting.
	testwait.For(t, 10*time.Second, "the survivor knows it has no leader", func() bool { return cl.Servers[survivor].Node().Status().LeaderID == "" })

	_, err := c.Put(ctx, "after", []byte("1"))
	if !errors.Is(err, consensus.ErrNoLeader) {
		t.Fatalf("Put without a leader = %v, want ErrNoLeader", err)
	}
	if errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("no_leader says outcome unknown: %v", err)
	}
	if _, err := c.Get(ctx, "before"); !errors.Is(err, consensus.ErrNoLeader) {
		t.Fatalf("linearizable Get without a leader = %v, want ErrNoLeader", err)
	}
	// A local read still answers.
	if it, err := c.Get(ctx, "before", WithConsistency(kv.Local)); err != nil || string(it.Value) != "1" {
		t.Fatalf("local Get without a leader = %+v, %v", it, err)
	}
}

func TestFailover(t *testing.T) {
	cl := newTestCluster(t, 3)
	leader := cl.WaitLeader(t, leaderTimeout)
	ctx := testContext(t)

	// The first endpoint has nothing listening.
	dead := freeAddr(t)
	c := newClient(t, Config{Endpoints: append([]string{dead}, cl.Endpoints()...)})
	if _, err := c.Put(ctx, "k", []byte("1")); err != nil {
		t.Fatalf("Put with the first endpoint down: %v", err)
	}
	if it, err := c.Get(ctx, "k"); err != nil || string(it.Value) != "1" {
		t.Fatalf("Get with the first endpoint down: %+v, %v", it, err)
	}

	// The endpoint in use goes away: calls move on to the next.
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inUse := st.NodeID
	if inUse == leader {
		// Keep a quorum and a leader: stop a follower instead, after
		// moving the client onto it.
		inUse = cl.Others(leader)[0]
		c.Close()
		c = newClient(t, Config{Endpoints: cl.Endpoints(inUse, leader)})
		if _, err := c.Status(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Only the connection to the stopped node breaks: the client may
	// hold others (a call retried on the next endpoint while the cluster
	// settled), which stay up. Waiting for every connection to break
	// failed now and then for that reason.
	stopped := cl.Endpoints(inUse)[0]
	connBroken := func() bool {
		for _, ep := range c.endpoints {
			if ep.host != stopped && !strings.HasSuffix(ep.url, "//"+stopped) {
				continue
			}
			ep.mu.Lock()
			cn := ep.conn
			ep.mu.Unlock()
			if cn != nil && !cn.broken() {
				return false
			}
		}
		return true
	}
	cl.Stop(t, inUse)
	// The server's close reaches the client, which will not send on that
	// connection again.
	testwait.For(t, 10*time.Second, "the connection to the stopped node to see it close", connBroken)
	if _, err := c.Put(ctx, "k", []byte("2")); err != nil {
		t.Fatalf("Put after the endpoint in use stopped: %v", err)
	}
	if it, err := c.Get(ctx, "k"); err != nil || string(it.Value) != "2" {
		t.Fatalf("Get after the endpoint in use stopped: %+v, %v", it, err)
	}
	if st, err := c.Status(ctx); err != nil || st.NodeID == inUse {
		t.Fatalf("Status after failover = %+v, %v", st, err)
	}
}

func TestAllEndpointsDown(t *testing.T) {
	c := newClient(t, Config{Endpoints: []string{freeAddr(t), freeAddr(t)}, RetryBackoff: time.Millisecond})
	ctx := testContext(t)
	_, err := c.Put(ctx, "k", []byte("1"))
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Put with every endpoint down = %v, want ErrUnavailable (not sent)", err)
	}
	_, err = c.Get(ctx, "k")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with every endpoint down = %v", err)
	}
}

// TestGarbageFrame sends garbage to a live node's /v1/ws: that connection
// is closed with a reason, and the node keeps serving everyone else.
func TestGarbageFrame(t *testing.T) {
	cl := newTestCluster(t, 3)
	leader := cl.WaitLeader(t, leaderTimeout)
	c := newClient(t, Config{Endpoints: cl.Endpoints(leader)})
	ctx := testContext(t)
	if _, err := c.Put(ctx, "k", []byte("1")); err != nil {
		t.Fatal(err)
	}

	raw, _, err := websocket.Dial(ctx, "ws://"+cl.HTTP[leader]+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.CloseNow()
	if err := raw.Write(ctx, websocket.MessageBinary, []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x00}); err != nil {
		t.Fatal(err)
	}
	_, _, err = raw.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusProtocolError || ce.Reason == "" {
		t.Fatalf("after a garbage frame: %v, want a protocol error close with a reason", err)
	}
	t.Logf("server closed with %d %q", ce.Code, ce.Reason)
	if n := cl.Servers[leader].WSStats().BadFrames; n != 1 {
		t.Errorf("BadFrames = %d, want 1", n)
	}
	if it, err := c.Get(ctx, "k"); err != nil || string(it.Value) != "1" {
		t.Fatalf("Get on the other connection: %+v, %v", it, err)
	}
}

func TestClose(t *testing.T) {
	cl := newTestCluster(t, 1)
	cl.WaitLeader(t, leaderTimeout)
	c := newClient(t, Config{Endpoints: cl.Endpoints()})
	ctx := testContext(t)
	if _, err := c.Put(ctx, "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := c.Get(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
}

func TestContextEndsBeforeSend(t *testing.T) {
	cl := newTestCluster(t, 1)
	cl.WaitLeader(t, leaderTimeout)
	c := newClient(t, Config{Endpoints: cl.Endpoints()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Put(ctx, "k", []byte("1"))
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Put with a cancelled context = %v, want context.Canceled and not outcome unknown", err)
	}
}

func TestServerErrorSentinels(t *testing.T) {
	tests := []struct {
		code      string
		sentinels []error
		// unknown is whether a write answered with code has an unknown
		// outcome.
		unknown bool
	}{
		{CodeKeyNotFound, []error{kv.ErrKeyNotFound}, false},
		{CodeInvalidKey, []error{kv.ErrInvalidKey}, false},
		{CodeInvalidJSON, []error{kv.ErrInvalidValue}, false},
		{CodeTooLarge, []error{kv.ErrValueTooLarge, consensus.ErrTooLarge}, false},
		{CodeNoLeader, []error{consensus.ErrNoLeader}, false},
		{CodeBadRequest, []error{ErrBadRequest}, false},
		{CodeTimeout, []error{consensus.ErrTimeout}, true},
		{CodeUnavailable, []error{ErrUnavailable}, true},
		{CodeCanceled, []error{ErrUnavailable}, true},
		{CodeInternal, []error{ErrUnavailable}, true},
		{CodeUnauthorized, []error{ErrUnauthorized}, false},
		{CodeForbidden, []error{ErrForbidden}, false},
		{CodeRateLimited, []error{ErrRateLimited}, false},
		{CodeOverloaded, []error{ErrRateLimited}, false},
		{"from_the_future", []error{ErrUnavailable}, true},
	}
	for _, tt := range tests {
		for _, write := range []bool{false, true} {
			err := fmt.Errorf("client: op: %w", &ServerError{Code: tt.code, Message: "m", write: write})
			for _, s := range tt.sentinels {
				if !errors.Is(err, s) {
					t.Errorf("%s (write %v) is not %v", tt.code, write, s)
				}
			}
			if got := errors.Is(err, ErrOutcomeUnknown); got != (write && tt.unknown) {
				t.Errorf("%s (write %v): outcome unknown = %v", tt.code, write, got)
			}
		}
	}
}

func TestEndpointURL(t *testing.T) {
	tests := map[string]string{
		"127.0.0.1:9080":            "ws://127.0.0.1:9080/v1/ws",
		"http://127.0.0.1:9080":     "ws://127.0.0.1:9080/v1/ws",
		"http://127.0.0.1:9080/":    "ws://127.0.0.1:9080/v1/ws",
		"https://db.example:443":    "wss://db.example:443/v1/ws",
		"ws://h:1/v1/ws":            "ws://h:1/v1/ws",
		"wss://proxy.example/kv/ws": "wss://proxy.example/kv/ws",
		"http://h:1/v1/ws?x=1#frag": "ws://h:1/v1/ws",
	}
	for in, want := range tests {
		got, err := endpointURL(in)
		if err != nil || got != want {
			t.Errorf("endpointURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"ftp://h:1", "http://", "://x"} {
		if _, err := endpointURL(bad); err == nil {
			t.Errorf("endpointURL(%q) accepted", bad)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New without endpoints accepted")
	}
}

// TestDeliverRejectsBadFrames feeds hostile frames to the client's decoder:
// each is an error, never a panic or a huge allocation, and a call whose
// answer is malformed gets an error.
func TestDeliverRejectsBadFrames(t *testing.T) {
	frames := map[string][]byte{
		"empty":          {},
		"garbage":        []byte("\xc1\xc1"),
		"wrong version":  {0x92, 0x02, 0x90},
		"array32 huge":   {0x92, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff},
		"short response": {0x92, 0x01, 0x91, 0x92, 0x01, 0x00},
		"bin32 huge":     {0x92, 0x01, 0x91, 0x93, 0x01, 0x00, 0xc6, 0xff, 0xff, 0xff, 0xff},
		"string id":      {0x92, 0x01, 0x91, 0x93, 0xa1, 'x', 0x00, 0x01},
		"bad revision":   {0x92, 0x01, 0x91, 0x93, 0x01, 0x00, 0xa1, 'x'},
		"unknown kind":   {0x92, 0x01, 0x91, 0x93, 0x01, 0x07, 0x01},
	}
	for name, b := range frames {
		cn := &conn{pending: map[uint64]*call{}}
		cl := &call{id: 1, op: api.OpPut, done: make(chan callResult, 1)}
		cn.pending[1] = cl
		if err := cn.deliver(b); err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		select {
		case r := <-cl.done:
			if r.err == nil {
				t.Errorf("%s: call completed without an error", name)
			}
		default:
		}
	}
}
