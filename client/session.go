package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/unrdf/consensus/api"
)

// Errors a Session's Err wraps.
var (
	// ErrSessionClosed means Close ended the session.
	ErrSessionClosed = errors.New("session closed")
	// ErrSessionExpired means no keepalive succeeded for a whole time to
	// live: the lease may have expired (the leader counts from when it
	// received the last one, so it may not have yet), and the session no
	// longer claims it.
	ErrSessionExpired = errors.New("session expired: no keepalive succeeded for a whole time to live")
)

// minKeepAliveRetry bounds how often a session retries a failed
// keepalive.
const minKeepAliveRetry = 10 * time.Millisecond

// Session holds a lease and keeps it alive in the background until it is
// closed or the lease is lost: put keys with PutOptions{Lease:
// s.Lease()} and they live as long as the session (as etcd's
// concurrency.Session). Its methods are safe for concurrent use.
type Session struct {
	c     *Client
	lease api.LeaseID
	ttl   time.Duration

	stop      chan struct{} // closed by Close
	loopDone  chan struct{} // closed when the keepalive loop has returned
	done      chan struct{} // closed when the session ends, with err set
	closeOnce sync.Once
	mu        sync.Mutex
	err       error
}

// NewSession grants a lease with time to live ttl (Grant; ctx bounds the
// grant only; TTL returns the time to live granted, which the cluster may
// have raised) and keeps it alive every third of it until Close, until
// the lease is lost, or until c is closed. A keepalive that fails is
// tried again sooner (every tenth of ttl); the session ends when the
// cluster answers that the lease is gone (kv.ErrLeaseNotFound: it expired
// or was revoked) or when no keepalive has succeeded for a whole ttl
// (ErrSessionExpired), counted from when the last successful one was
// sent, so the session ends no later than the lease can.
func NewSession(ctx context.Context, c *Client, ttl time.Duration) (*Session, error) {
	l, err := c.Grant(ctx, ttl)
	if err != nil {
		return nil, fmt.Errorf("client: new session: %w", err)
	}
	s := &Session{c: c, lease: l.ID, ttl: time.Duration(l.TTLMs) * time.Millisecond,
		stop: make(chan struct{}), loopDone: make(chan struct{}), done: make(chan struct{})}
	go s.keepAlive(time.Now())
	return s, nil
}

// Lease returns the session's lease.
func (s *Session) Lease() api.LeaseID { return s.lease }

// TTL returns the lease's time to live, as granted.
func (s *Session) TTL() time.Duration { return s.ttl }

// Done is closed when the session ends: the lease was lost (Err says
// why) or Close was called.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is nil while the session holds its lease. After Done is closed it
// says why: an error wrapping kv.ErrLeaseNotFound (the lease expired or
// was revoked), ErrSessionExpired (no keepalive succeeded for a whole
// time to live; it wraps the last keepalive's error too), ErrClosed (the
// client was closed), or ErrSessionClosed (Close).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// end records why the session ended, once, and closes Done.
func (s *Session) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		close(s.done)
	}
}

// keepAlive renews the lease until the session stops or the lease is
// lost. grantedAt is when the grant was sent: the lease lives at least a
// ttl from then.
func (s *Session) keepAlive(grantedAt time.Time) {
	defer close(s.loopDone)
	period, retry := s.ttl/3, max(s.ttl/10, minKeepAliveRetry)
	lastOK := grantedAt // when the last successful keepalive (or the grant) was sent
	wait := period
	for {
		t := time.NewTimer(wait)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-s.c.ctx.Done():
			t.Stop()
			s.end(fmt.Errorf("client: session of lease %s: %w", s.lease, ErrClosed))
			return
		case <-t.C:
		}
		// A keepalive may take until the lease would be lost, no longer.
		sent := time.Now()
		ctx, cancel := context.WithDeadline(s.c.ctx, lastOK.Add(s.ttl))
		_, err := s.c.KeepAlive(ctx, s.lease)
		cancel()
		switch {
		case err == nil:
			lastOK, wait = sent, period
			continue
		case errors.Is(err, api.ErrLeaseNotFound):
			s.end(fmt.Errorf("client: session of lease %s: %w", s.lease, err))
			return
		case errors.Is(err, ErrClosed) || s.c.closed.Load():
			s.end(fmt.Errorf("client: session of lease %s: %w", s.lease, ErrClosed))
			return
		}
		left := time.Until(lastOK.Add(s.ttl))
		if left <= 0 {
			s.end(fmt.Errorf("client: session of lease %s: %w (last keepalive: %w)", s.lease, ErrSessionExpired, err))
			return
		}
		wait = min(retry, left)
	}
}

// Close stops the keepalives and revokes the lease, which deletes the
// keys attached to it; ctx bounds the revoke. After it, Done is closed
// and Err wraps ErrSessionClosed unless the session had already ended.
// A lease already gone is not an error. Calling Close again returns nil.
func (s *Session) Close(ctx context.Context) error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		close(s.stop)
	})
	if !first {
		return nil
	}
	<-s.loopDone
	s.end(fmt.Errorf("client: session of lease %s: %w", s.lease, ErrSessionClosed))
	if _, err := s.c.Revoke(ctx, s.lease); err != nil && !errors.Is(err, api.ErrLeaseNotFound) {
		return fmt.Errorf("client: close session: %w", err)
	}
	return nil
}
