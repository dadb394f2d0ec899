package client

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testcluster"
	"github.com/unrdf/consensus/internal/testwait"
)

// followerClient returns a client of cl's follower only (so keepalives and
// times to live must be forwarded to the leader) once the members' HTTP
// addresses, which forwarding needs, are published.
func followerClient(t *testing.T, cl *testcluster.Cluster) *Client {
	t.Helper()
	leader := cl.WaitLeader(t, leaderTimeout)
	follower := cl.Others(leader)[0]
	c := newClient(t, Config{Endpoints: cl.Endpoints(follower)})
	testwait.For(t, 10*time.Second, "members' HTTP addresses", func() bool {
		st, err := c.Status(testContext(t))
		if err != nil {
			return false
		}
		for _, m := range st.Members {
			if m.HTTPAddr == "" {
				return false
			}
		}
		return true
	})
	return c
}

// Grant, attach, keepalive through a follower, expire, revoke, and the
// errors, on a three-node cluster.
func TestLeases(t *testing.T) {
	cl := newTestCluster(t, 3)
	c := followerClient(t, cl)
	ctx := testContext(t)

	l, err := c.Grant(ctx, 2*time.Second)
	if err != nil || l.ID <= 0 || l.TTLMs != 2000 {
		t.Fatalf("Grant = %+v, %v", l, err)
	}
	if _, err := c.PutWith(ctx, "held", []byte(`1`), PutOptions{Lease: l.ID}); err != nil {
		t.Fatal(err)
	}
	if it, err := c.Get(ctx, "held"); err != nil || it.Lease != l.ID {
		t.Fatalf("Get = %+v, %v; want lease %s", it, err, l.ID)
	}
	if _, err := c.PutWith(ctx, "brief", []byte(`2`), PutOptions{TTL: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if it, err := c.Get(ctx, "brief"); err != nil || it.Lease == 0 {
		t.Fatalf("Get of a key with a ttl = %+v, %v; want a lease", it, err)
	}
	// Keepalives through the follower keep "held" while "brief" expires.
	testwait.For(t, 10*time.Second, "the key with a ttl to expire", func() bool {
		k, err := c.KeepAlive(ctx, l.ID)
		if err != nil || k.ID != l.ID || k.TTLMs != 2000 || k.RemainingMs == nil || *k.RemainingMs != 2000 {
			t.Fatalf("KeepAlive = %+v, %v", k, err)
		}
		has, err := c.Has(ctx, "brief")
		return err == nil && !has
	})
	info, err := c.TimeToLive(ctx, l.ID)
	if err != nil || !slices.Equal(info.Keys, []string{"held"}) || info.RemainingMs == nil ||
		*info.RemainingMs > 2000 || *info.RemainingMs < 1000 {
		t.Fatalf("TimeToLive = %+v, %v", info, err)
	}
	ls, err := c.Leases(ctx)
	if err != nil || len(ls) != 1 || ls[0].ID != l.ID || ls[0].TTLMs != 2000 {
		t.Fatalf("Leases = %+v, %v", ls, err)
	}
	rev, err := c.Revoke(ctx, l.ID)
	if err != nil || rev <= 0 {
		t.Fatalf("Revoke = %d, %v", rev, err)
	}
	if _, err := c.Get(ctx, "held"); !errors.Is(err, api.ErrKeyNotFound) {
		t.Fatalf("Get of a revoked lease's key: %v", err)
	}
	for name, err := range map[string]error{
		"keepalive": second(c.KeepAlive(ctx, l.ID)),
		"ttl":       second(c.TimeToLive(ctx, l.ID)),
		"revoke":    second(c.Revoke(ctx, l.ID)),
		"put":       second(c.PutWith(ctx, "k", []byte(`1`), PutOptions{Lease: l.ID})),
	} {
		if !errors.Is(err, api.ErrLeaseNotFound) || errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("%s of a revoked lease: %v, want lease not found (refused)", name, err)
		}
	}
	if g, err := c.Grant(ctx, time.Minute, WithLeaseID(0x77)); err != nil || g.ID != 0x77 {
		t.Fatalf("Grant with id 77 = %+v, %v", g, err)
	}
	if _, err := c.Grant(ctx, time.Minute, WithLeaseID(0x77)); !errors.Is(err, api.ErrLeaseExists) {
		t.Fatalf("a second grant of id 77: %v, want lease exists", err)
	}
	if _, err := c.Revoke(ctx, 0x77); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"grant id -1":  second(c.Grant(ctx, time.Second, WithLeaseID(-1))),
		"grant 0":      second(c.Grant(ctx, 0)),
		"grant 31d":    second(c.Grant(ctx, 31*24*time.Hour)),
		"put both":     second(c.PutWith(ctx, "k", []byte(`1`), PutOptions{Lease: l.ID, TTL: time.Second})),
		"put ttl 1µs":  second(c.PutWith(ctx, "k", []byte(`1`), PutOptions{TTL: time.Microsecond})),
		"keepalive 0":  second(c.KeepAlive(ctx, 0)),
		"revoke -1":    second(c.Revoke(ctx, -1)),
		"put lease -1": second(c.PutWith(ctx, "k", []byte(`1`), PutOptions{Lease: -1})),
	} {
		if !errors.Is(err, api.ErrInvalidTTL) && !errors.Is(err, api.ErrInvalidLeaseID) {
			t.Errorf("%s: %v, want an invalid ttl or lease id", name, err)
		}
	}

	// Without keepalives a lease expires, and its keys with it.
	short, err := c.Grant(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutWith(ctx, "short", []byte(`3`), PutOptions{Lease: short.ID}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testwait.For(t, 10*time.Second, "the lease to expire", func() bool {
		has, err := c.Has(ctx, "short")
		return err == nil && !has
	})
	t.Logf("a 1s lease's key went %v after its put", time.Since(start).Round(time.Millisecond))
	if _, err := c.KeepAlive(ctx, short.ID); !errors.Is(err, api.ErrLeaseNotFound) {
		t.Fatalf("KeepAlive of an expired lease: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

// A Session keeps its key alive well past its time to live, and Close
// revokes it.
func TestSessionKeepsKeyAlive(t *testing.T) {
	cl := newTestCluster(t, 3)
	c := followerClient(t, cl)
	ctx := testContext(t)
	const ttl = time.Second // api.LeaseTTLFloorMs: a shorter one is raised to it
	s, err := NewSession(ctx, c, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if s.TTL() != ttl || s.Lease() <= 0 {
		t.Fatalf("session lease %s ttl %v", s.Lease(), s.TTL())
	}
	if _, err := c.PutWith(ctx, "alive", []byte(`1`), PutOptions{Lease: s.Lease()}); err != nil {
		t.Fatal(err)
	}
	// Four times the time to live: the key must be there at every look.
	for start := time.Now(); time.Since(start) < 4*ttl; {
		if _, err := c.Get(ctx, "alive"); err != nil {
			t.Fatalf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
		}
		select {
		case <-s.Done():
			t.Fatalf("session ended: %v", s.Err())
		case <-time.After(ttl / 6): // the pace of the looks, not a wait for a condition
		}
	}
	if s.Err() != nil {
		t.Fatalf("Err of a live session: %v", s.Err())
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	<-s.Done()
	if !errors.Is(s.Err(), ErrSessionClosed) {
		t.Fatalf("Err after Close: %v", s.Err())
	}
	if _, err := c.Get(ctx, "alive"); !errors.Is(err, api.ErrKeyNotFound) {
		t.Fatalf("Get after Close: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A Session whose lease is revoked by someone else says so, within its
// keepalive period.
func TestSessionRevokedReportsDone(t *testing.T) {
	cl := newTestCluster(t, 3)
	c := followerClient(t, cl)
	other := newClient(t, Config{Endpoints: cl.Endpoints()})
	ctx := testContext(t)
	s, err := NewSession(ctx, c, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Revoke(ctx, s.Lease()); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not see its lease revoked")
	}
	t.Logf("the session saw the revoke after %v", time.Since(revoked).Round(time.Millisecond))
	if !errors.Is(s.Err(), api.ErrLeaseNotFound) {
		t.Fatalf("Err = %v, want lease not found", s.Err())
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close of a lost session: %v", err)
	}
	if !errors.Is(s.Err(), api.ErrLeaseNotFound) {
		t.Fatalf("Err after Close = %v, want still lease not found", s.Err())
	}
}

// A Session whose keepalives all fail (every node crashed) ends with
// ErrSessionExpired within its time to live of the last one that
// succeeded.
func TestSessionExpiresWithoutKeepAlives(t *testing.T) {
	cl := newTestCluster(t, 3)
	c := newClient(t, Config{Endpoints: cl.Endpoints(), RetryBackoff: 10 * time.Millisecond})
	ctx := testContext(t)
	s, err := NewSession(ctx, c, 900*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// The last keepalive that can succeed is sent before this.
	stopped := time.Now()
	for _, id := range cl.IDs {
		cl.Crash(t, id)
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end")
	}
	took := time.Since(stopped)
	t.Logf("the session ended %v after the cluster stopped", took.Round(time.Millisecond))
	if !errors.Is(s.Err(), ErrSessionExpired) {
		t.Fatalf("Err = %v, want ErrSessionExpired", s.Err())
	}
	if took > s.TTL()+time.Second {
		t.Fatalf("the session ended %v after the last keepalive could have succeeded, ttl %v", took, s.TTL())
	}
	if err := s.Close(ctx); err == nil {
		t.Fatal("Close revoked a lease on a stopped cluster")
	}
}
