package client

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
)

// Locks on a three-node cluster: mutual exclusion with increasing tokens,
// a waiter served on release (its wait, longer than the request timeout,
// does not hold up the client's other calls), and writes fenced by the
// old token refused once the lock moved.
func TestLocks(t *testing.T) {
	cl := newTestCluster(t, 3)
	c := followerClient(t, cl)
	ctx := testContext(t)

	a, err := NewSession(ctx, c, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSession(ctx, c, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	first, err := a.Lock(ctx, "job", 0)
	if err != nil || first.Name != "job" || first.Token < 1 || first.Lease != a.Lease() {
		t.Fatalf("Lock = %+v, %v", first, err)
	}
	if _, err := b.Lock(ctx, "job", 0); !errors.Is(err, api.ErrLocked) {
		t.Fatalf("a second holder's try: %v, want ErrLocked", err)
	}
	if _, err := b.Lock(ctx, "job", 50*time.Millisecond); !errors.Is(err, api.ErrLocked) {
		t.Fatalf("a second holder's short wait: %v, want ErrLocked", err)
	}
	// The wait ran out: b left the queue.
	if l, err := c.LockState(ctx, "job"); err != nil || l.Waiters != 0 {
		t.Fatalf("LockState after a wait ran out = %+v, %v; want no waiters", l, err)
	}
	if _, err := c.Lock(ctx, "job", a.Lease(), -time.Second); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("a negative wait: %v, want ErrBadRequest", err)
	}
	// A client whose request timeout is shorter than the wait: the wait
	// extends the call's.
	brief := newClient(t, Config{Endpoints: c.cfg.Endpoints, RequestTimeout: 300 * time.Millisecond})
	type result struct {
		l   api.Lock
		err error
	}
	waited := make(chan result, 1)
	started := time.Now()
	go func() {
		l, err := brief.Lock(ctx, "job", b.Lease(), 20*time.Second)
		waited <- result{l, err}
	}()
	testwait.For(t, 10*time.Second, "the waiter to queue", func() bool {
		l, err := c.LockState(ctx, "job")
		return err == nil && l.Waiters == 1 && l.Token == first.Token
	})
	testwait.For(t, 10*time.Second, "the waiter to outlast its client's request timeout", func() bool {
		return time.Since(started) > 2*brief.cfg.RequestTimeout
	})
	fenced := WithFence(ctx, api.Fence{Lock: "job", Token: first.Token})
	if _, err := c.Put(fenced, "x", []byte(`1`)); err != nil {
		t.Fatalf("the holder's fenced put: %v", err)
	}
	if err := c.Unlock(ctx, "job", first.Token); err != nil {
		t.Fatal(err)
	}
	var second api.Lock
	select {
	case r := <-waited:
		if r.err != nil || r.l.Lease != b.Lease() || r.l.Token <= first.Token {
			t.Fatalf("the waiter got %+v, %v; want a token above %d", r.l, r.err, first.Token)
		}
		second = r.l
	case <-ctx.Done():
		t.Fatal("the waiter was not served")
	}
	if _, err := c.Put(fenced, "x", []byte(`2`)); !errors.Is(err, api.ErrFenced) {
		t.Fatalf("a put fenced by the old token: %v, want ErrFenced", err)
	}
	if _, err := c.Delete(fenced, "x"); !errors.Is(err, api.ErrFenced) {
		t.Fatalf("a delete fenced by the old token: %v, want ErrFenced", err)
	}
	if _, err := c.Batch(fenced, []api.TxnOp{{Type: api.TxnDelete, Key: "x"}}); !errors.Is(err, api.ErrFenced) {
		t.Fatalf("a batch fenced by the old token: %v, want ErrFenced", err)
	}
	if _, err := c.Put(WithFence(ctx, api.Fence{Lock: "job", Token: second.Token}), "x", []byte(`3`)); err != nil {
		t.Fatalf("the new holder's fenced put: %v", err)
	}
	if it, err := c.Get(ctx, "x"); err != nil || string(it.Value) != `3` {
		t.Fatalf("x = %s, %v; want the holders' writes only", it.Value, err)
	}
	if err := c.Unlock(ctx, "job", first.Token); !errors.Is(err, api.ErrNotHolder) {
		t.Fatalf("an unlock by the old token: %v, want ErrNotHolder", err)
	}
	// The session's end frees the lock.
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LockState(ctx, "job"); !errors.Is(err, api.ErrLockNotFound) {
		t.Fatalf("the lock after its session closed: %v, want ErrLockNotFound", err)
	}
	third, err := a.Lock(ctx, "job", 0)
	if err != nil || third.Token <= second.Token {
		t.Fatalf("Lock again = %+v, %v; want a token above %d", third, err, second.Token)
	}
}

// An election: campaign, observe the leader through a follower, proclaim,
// a second candidate waiting, resign handing leadership over.
func TestElection(t *testing.T) {
	cl := newTestCluster(t, 3)
	c := followerClient(t, cl)
	ctx := testContext(t)

	a, err := NewSession(ctx, c, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSession(ctx, c, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	leaders, err := c.Observe(ctx, "boss")
	if err != nil {
		t.Fatal(err)
	}
	next := func(what string) *api.Lock {
		t.Helper()
		select {
		case l, ok := <-leaders:
			if !ok {
				t.Fatalf("%s: the observe channel closed", what)
			}
			return l
		case <-ctx.Done():
			t.Fatalf("%s: no leader event", what)
		}
		return nil
	}
	if l := next("no leader yet"); l != nil {
		t.Fatalf("first event %+v, want nil (no leader)", l)
	}
	won, err := a.Campaign(ctx, "boss", []byte(`"a"`), 0)
	if err != nil || won.Token < 1 || string(won.Value) != `"a"` {
		t.Fatalf("Campaign = %+v, %v", won, err)
	}
	if l := next("a leads"); l == nil || l.Token != won.Token || string(l.Value) != `"a"` {
		t.Fatalf("observed %+v, want a's leadership", l)
	}
	if err := c.Proclaim(ctx, "boss", won.Token, []byte(`"a2"`)); err != nil {
		t.Fatal(err)
	}
	if l := next("a proclaims"); l == nil || string(l.Value) != `"a2"` {
		t.Fatalf("observed %+v, want a2", l)
	}
	if l, err := c.Leader(ctx, "boss"); err != nil || l.Lease != a.Lease() || string(l.Value) != `"a2"` {
		t.Fatalf("Leader = %+v, %v", l, err)
	}
	type result struct {
		l   api.Lock
		err error
	}
	waited := make(chan result, 1)
	go func() {
		l, err := b.Campaign(ctx, "boss", []byte(`"b"`), 20*time.Second)
		waited <- result{l, err}
	}()
	testwait.For(t, 10*time.Second, "b to queue", func() bool {
		l, err := c.Leader(ctx, "boss")
		return err == nil && l.Waiters == 1
	})
	if err := c.Resign(ctx, "boss", won.Token); err != nil {
		t.Fatal(err)
	}
	r := <-waited
	if r.err != nil || r.l.Lease != b.Lease() || r.l.Token <= won.Token {
		t.Fatalf("b's campaign = %+v, %v", r.l, r.err)
	}
	for {
		l := next("b leads")
		if l != nil && l.Token == r.l.Token {
			if string(l.Value) != `"b"` {
				t.Fatalf("observed %+v, want b", l)
			}
			break
		}
	}
	if err := c.Resign(ctx, "boss", won.Token); !errors.Is(err, api.ErrNotHolder) {
		t.Fatalf("a resign by the old token: %v, want ErrNotHolder", err)
	}
}

// cutProxy relays TCP connections to target until cut, which closes its
// listener and every connection it relays: to the client, a network
// failure of that endpoint.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	t.Cleanup(p.cut)
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// Observe moves to the next endpoint when its stream breaks, and reports
// the leadership's end when the leader's session closes.
func TestObserveMovesOn(t *testing.T) {
	cl := newTestCluster(t, 3)
	leader := cl.WaitLeader(t, leaderTimeout)
	followers := cl.Others(leader)
	proxy := newCutProxy(t, strings.TrimPrefix(cl.Endpoints(followers[0])[0], "http://"))
	c := newClient(t, Config{Endpoints: append([]string{proxy.addr()}, cl.Endpoints(followers[1])...),
		RetryBackoff: 20 * time.Millisecond})
	ctx := testContext(t)
	s, err := NewSession(ctx, c, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	leaders, err := c.Observe(ctx, "boss/of all")
	if err != nil {
		t.Fatal(err)
	}
	next := func(what string) *api.Lock {
		t.Helper()
		select {
		case l, ok := <-leaders:
			if !ok {
				t.Fatalf("%s: the observe channel closed", what)
			}
			return l
		case <-ctx.Done():
			t.Fatalf("%s: no leader event", what)
		}
		return nil
	}
	if l := next("no leader yet"); l != nil {
		t.Fatalf("first event %+v, want nil", l)
	}
	proxy.cut()
	won, err := s.Campaign(ctx, "boss/of all", []byte(`1`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if l := next("the leader, seen from the other follower"); l == nil || l.Token != won.Token {
		t.Fatalf("observed %+v, want token %d", l, won.Token)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if l := next("the leadership's end"); l != nil {
		t.Fatalf("observed %+v, want nil", l)
	}
}

// RegisterNodeWith a session's lease: the node is deregistered when the
// session ends.
func TestRegisterNodeWithLease(t *testing.T) {
	cl := newTestCluster(t, 3)
	c := followerClient(t, cl)
	ctx := testContext(t)
	s, err := NewSession(ctx, c, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterNodeWith(ctx, "w1", []byte(`{"zone":"a"}`), PutOptions{Lease: s.Lease()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterNodeWith(ctx, "w2", nil, PutOptions{Lease: s.Lease(), TTL: time.Second}); !errors.Is(err, api.ErrInvalidTTL) {
		t.Fatalf("a lease and a ttl: %v, want ErrInvalidTTL", err)
	}
	if it, err := c.Get(ctx, "node:w1"); err != nil || it.Lease != s.Lease() {
		t.Fatalf("node:w1 = %+v, %v; want lease %s", it, err, s.Lease())
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if nodes, _, err := c.Nodes(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("Nodes after the session closed = %+v, %v; want none", nodes, err)
	}
}
