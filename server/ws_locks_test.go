package server

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

// wsLock reads a lock result: [name, token, lease, value, waiters].
func wsLock(t *testing.T, r wsTestResponse) api.Lock {
	t.Helper()
	if !r.ok {
		t.Fatalf("answer %+v, want a lock", r)
	}
	f := r.result.([]any)
	if len(f) != 5 {
		t.Fatalf("lock %v: want 5 elements", f)
	}
	l := api.Lock{Name: f[0].(string), Token: toInt(t, f[1]), Lease: api.LeaseID(toInt(t, f[2])), Waiters: int(toInt(t, f[4]))}
	if f[3] != nil {
		l.Value = f[3].([]byte)
	}
	return l
}

// Locks, fenced writes and elections over /v1/ws on a follower: a waiting
// acquire does not hold up the connection's other requests, the waiter is
// served on release with a larger token, a write fenced by the old token
// is refused, and an election's leader proclaims and resigns.
func TestLocksOverWS(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	follower := ""
	for _, id := range c.ids {
		if id != leader {
			follower = id
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+c.https[follower]+wsPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(64 << 20)
	t.Cleanup(func() { _ = ws.CloseNow() })
	w := &wsTestConn{t: t, c: ws}

	a, _, _, _ := wsLease(t, w.call(uint64(1), api.OpLeaseGrant, 60000))
	b, _, _, _ := wsLease(t, w.call(uint64(2), api.OpLeaseGrant, 60000))
	first := wsLock(t, w.call(uint64(3), api.OpLockAcquire, "job", a, 0))
	if first.Name != "job" || first.Token < 1 || int64(first.Lease) != a {
		t.Fatalf("acquire answered %+v", first)
	}
	wantWSError(t, w.call(uint64(4), api.OpLockAcquire, "job", b, nil), api.CodeLocked)
	// Request 5 waits; the connection serves the others meanwhile.
	w.send([]any{uint64(5), api.OpLockAcquire, "job", b, 20000})
	n := uint64(100)
	testwait.For(t, 10*time.Second, "the waiter to queue", func() bool {
		n++
		return wsLock(t, w.call(n, api.OpLockGet, "job")).Waiters == 1
	})
	if r := w.call(uint64(6), api.OpPut, "x", []byte("1"), nil, nil, nil, nil, []any{"job", first.Token}); !r.ok {
		t.Fatalf("the holder's fenced put: %+v", r)
	}
	w.send([]any{uint64(7), api.OpLockRelease, "job", first.Token})
	got := w.await(2)
	if r := got[7]; !r.ok || r.result != nil {
		t.Fatalf("release answered %+v", r)
	}
	second := wsLock(t, got[5])
	if int64(second.Lease) != b || second.Token <= first.Token {
		t.Fatalf("the waiter got %+v; want lease %x with a token above %d", second, b, first.Token)
	}
	wantWSError(t, w.call(uint64(8), api.OpPut, "x", []byte("2"), nil, nil, nil, nil, []any{"job", first.Token}), api.CodeFenced)
	wantWSError(t, w.call(uint64(9), api.OpDelete, "x", nil, nil, []any{"job", first.Token}), api.CodeFenced)
	wantWSError(t, w.call(uint64(10), api.OpTxn, []any{[]any{2, "x"}}, nil, []any{"job", first.Token}), api.CodeFenced)
	if r := w.call(uint64(11), api.OpDelete, "x", nil, nil, []any{"job", second.Token}); !r.ok {
		t.Fatalf("the new holder's fenced delete: %+v", r)
	}
	wantWSError(t, w.call(uint64(12), api.OpLockRelease, "job", first.Token), api.CodeNotHolder)
	// A wait that runs out leaves the queue, also with a request id (which
	// the leaving must not be taken for a retry of).
	wantWSError(t, w.call(uint64(28), api.OpLockAcquire, "job", a, 50, []any{"c", 1}), api.CodeLocked)
	if l := wsLock(t, w.call(uint64(29), api.OpLockGet, "job")); l.Waiters != 0 || l.Token != second.Token {
		t.Fatalf("after a wait ran out: %+v, want no waiters", l)
	}
	wantWSError(t, w.call(uint64(13), api.OpLockAcquire, "job", nil, 0), api.CodeInvalidLease)
	wantWSError(t, w.call(uint64(14), api.OpLockAcquire, "job", b, 600001), api.CodeBadRequest)
	wantWSError(t, w.call(uint64(15), api.OpLockRelease, "job", nil), api.CodeBadRequest)
	wantWSError(t, w.call(uint64(16), api.OpLockAcquire, "", b, 0), api.CodeInvalidKey)
	wantWSError(t, w.call(uint64(17), api.OpPut, "x", []byte("1"), nil, nil, nil, nil, []any{"job", 0}), api.CodeBadRequest)
	wantWSError(t, w.call(uint64(18), api.OpLockGet, "free"), api.CodeLockNotFound)
	if r := w.call(uint64(19), api.OpLockRelease, "job", second.Token); !r.ok {
		t.Fatalf("release: %+v", r)
	}

	// An election.
	won := wsLock(t, w.call(uint64(20), api.OpCampaign, "e", a, []byte(`"a"`), 0))
	if won.Token < 1 || string(won.Value) != `"a"` {
		t.Fatalf("campaign answered %+v", won)
	}
	wantWSError(t, w.call(uint64(21), api.OpCampaign, "e", b, []byte(`"b"`), 0), api.CodeLocked)
	if r := w.call(uint64(22), api.OpProclaim, "e", won.Token, []byte(`{"v": 2}`)); !r.ok {
		t.Fatalf("proclaim: %+v", r)
	}
	if l := wsLock(t, w.call(uint64(23), api.OpLeader, "e")); l.Token != won.Token || string(l.Value) != `{"v":2}` {
		t.Fatalf("leader %+v", l)
	}
	wantWSError(t, w.call(uint64(24), api.OpProclaim, "e", won.Token, []byte(`{`)), api.CodeInvalidJSON)
	if r := w.call(uint64(25), api.OpResign, "e", won.Token); !r.ok {
		t.Fatalf("resign: %+v", r)
	}
	wantWSError(t, w.call(uint64(26), api.OpLeader, "e"), api.CodeLockNotFound)
	wantWSError(t, w.call(uint64(27), api.OpResign, "e", won.Token), api.CodeNotHolder)
}

// A shutdown does not wait for an acquire's wait: the waiter is answered
// unavailable (not locked: another node may serve it) and leaves the
// queue, and the connection closes long before the shutdown's deadline.
func TestWSShutdownEndsWaits(t *testing.T) {
	f := newFake()
	h := newAPIHandler(f, HTTPOptions{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	w := dialWS(t, "ws"+strings.TrimPrefix(srv.URL, "http")+wsPath)
	a, _, _, _ := wsLease(t, w.call(uint64(1), api.OpLeaseGrant, 60000))
	b, _, _, _ := wsLease(t, w.call(uint64(2), api.OpLeaseGrant, 60000))
	wsLock(t, w.call(uint64(3), api.OpLockAcquire, "job", a, 0))
	w.send([]any{uint64(4), api.OpLockAcquire, "job", b, 600000, []any{"c", 1}})
	testwait.For(t, 5*time.Second, "the waiter to queue", func() bool {
		l, err := f.LockState(context.Background(), "job", kv.Local)
		return err == nil && l.Waiters == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- h.ws.shutdown(ctx) }()
	wantWSError(t, w.await(1)[4], api.CodeUnavailable)
	if code, _ := w.awaitClose(); code != websocket.StatusGoingAway {
		t.Errorf("close code = %v, want going away", code)
	}
	if err := <-done; err != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("shutdown = %v after %v", err, time.Since(start))
	}
	t.Logf("shutdown took %v", time.Since(start))
	if l, err := f.LockState(context.Background(), "job", kv.Local); err != nil || l.Waiters != 0 || l.Lease != api.LeaseID(a) {
		t.Fatalf("the lock after the shutdown: %+v, %v; want a's, no waiters", l, err)
	}
}
