package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// The coordination workloads: leases and locks. They need a CoordDriver.
const (
	// Lock takes and releases one lock that all of the cell's contenders
	// share, each with its own lease (a session): at concurrency 1 it is
	// uncontended, at 64 there are 64 contenders. One operation is an
	// acquire and its release.
	Lock Workload = "lock"
	// KeepAlive renews the contender's own lease, once per operation.
	KeepAlive Workload = "keepalive"
	// Expiry waits a pause drawn from [0, Options.LeaseTTL) (so that the
	// deadlines do not lock onto the phase of the system's expiry checks),
	// then grants a lease of Options.LeaseTTL that nothing keeps alive,
	// puts a key with it, and waits for a watcher to see the key deleted
	// when the lease expires. Its latency figures are the lateness of that
	// delete: when the watcher saw it minus (when the grant was answered +
	// the time to live granted). The grant is answered after the lease's
	// countdown has started, so a lateness is a lower bound, short of the
	// truth by at most the grant's answer time.
	Expiry Workload = "expiry"
)

// CoordWorkloads lists the coordination workloads, in the order cells run.
var CoordWorkloads = []Workload{Lock, KeepAlive, Expiry}

// SessionTTL is the time to live of a Lock or KeepAlive contender's
// lease, which its session keeps alive in the background.
const SessionTTL = 10 * time.Second

// LockName is the lock every Lock contender takes.
const LockName = "bench-lock"

// ExpiryPrefix starts the keys of the Expiry workload.
const ExpiryPrefix = "bench-expiry/"

// CoordDriver is a Driver that also has leases and locks. Its methods are
// called from many goroutines at once and must honour ctx.
type CoordDriver interface {
	Driver
	// NewContender returns a client of its own for a Lock or KeepAlive
	// cell: a lease of time to live ttl kept alive in the background (a
	// session), with which it takes locks.
	NewContender(ctx context.Context, ttl time.Duration) (Contender, error)
	// PutWithLease grants a lease of time to live ttl that nothing keeps
	// alive, then puts key with value under it. It returns the lease's
	// deadline as the client sees it: when the grant was answered plus the
	// time to live granted (which a system may have raised above ttl).
	PutWithLease(ctx context.Context, key string, value []byte, ttl time.Duration) (deadline time.Time, err error)
	// WatchDeletes returns a watch on the keys starting with prefix that
	// delivers the key of each delete from its return on, until ctx is
	// done or the watch breaks; then the channel is closed.
	WatchDeletes(ctx context.Context, prefix string) (<-chan string, error)
}

// Contender is one client of a Lock or KeepAlive cell, with its own lease.
type Contender interface {
	// LockUnlock takes lock name with the contender's lease, waiting its
	// turn (until ctx is done), then releases it.
	LockUnlock(ctx context.Context, name string) error
	// KeepAlive renews the contender's lease once.
	KeepAlive(ctx context.Context) error
	// Close ends the contender and revokes its lease.
	Close(ctx context.Context) error
}

// isCoord reports whether w needs a CoordDriver.
func (w Workload) isCoord() bool { return w == Lock || w == KeepAlive || w == Expiry }

// coordCell is what a coordination cell sets up before it starts: a
// contender per worker, or the expiry watcher.
type coordCell struct {
	d          CoordDriver
	contenders []Contender
	expiry     *expiryWatch
}

// newCoordCell prepares cell c on d, before its time starts: each setup
// step is bounded by o.Timeout.
func newCoordCell(ctx context.Context, d Driver, o Options, c Cell) (*coordCell, error) {
	cd, ok := d.(CoordDriver)
	if !ok {
		return nil, fmt.Errorf("workload %s: this client has no leases and locks", c.Workload)
	}
	cc := &coordCell{d: cd}
	if c.Workload == Expiry {
		ew, err := watchExpiries(ctx, cd, o.Timeout)
		if err != nil {
			return nil, err
		}
		cc.expiry = ew
		return cc, nil
	}
	cc.contenders = make([]Contender, c.Concurrency)
	errs := make([]error, c.Concurrency)
	var wg sync.WaitGroup
	for i := range c.Concurrency {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, o.Timeout)
			defer cancel()
			cc.contenders[i], errs[i] = cd.NewContender(sctx, SessionTTL)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		cc.close(o.Timeout)
		return nil, fmt.Errorf("workload %s: new contender: %w", c.Workload, err)
	}
	return cc, nil
}

// close ends the cell's contenders (revoking their leases) and its watch.
func (cc *coordCell) close(timeout time.Duration) {
	var wg sync.WaitGroup
	for _, k := range cc.contenders {
		if k == nil {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			_ = k.Close(ctx) // a lease not revoked expires by itself
		})
	}
	wg.Wait()
	if cc.expiry != nil {
		cc.expiry.close()
	}
}

// op runs one operation of worker w; for Expiry, sample is the lateness,
// else the operation's own latency is the sample. rng is the worker's.
func (cc *coordCell) op(ctx context.Context, wl Workload, w int, seq int, rng *rand.Rand, value []byte, ttl time.Duration) (sample time.Duration, isSample bool, err error) {
	switch wl {
	case Lock:
		return 0, false, cc.contenders[w].LockUnlock(ctx, LockName)
	case KeepAlive:
		return 0, false, cc.contenders[w].KeepAlive(ctx)
	default:
		// A pause drawn from [0, ttl) first: a worker that granted its
		// next lease as soon as it saw the last one expire would grant
		// right after the system's expiry check, and with a TTL that is a
		// multiple of the check's period every later deadline would fall
		// just after a check: the lateness would be the whole period every
		// time (etcd checks every 500 ms, we tick every 50 ms). The pause
		// spreads the deadlines over the period.
		sleepCtx(ctx, time.Duration(rng.Int64N(int64(ttl))))
		if err := ctx.Err(); err != nil {
			return 0, true, err
		}
		late, err := cc.expiry.expire(ctx, cc.d, fmt.Sprintf("%s%d-%d", ExpiryPrefix, w, seq), value, ttl)
		return late, true, err
	}
}

// expiryWatch hands the deletes one watch sees to the Expiry operations
// waiting for them.
type expiryWatch struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the watch has ended

	mu      sync.Mutex
	waiting map[string]chan time.Time
}

// watchExpiries opens the watch on ExpiryPrefix; timeout bounds opening it.
func watchExpiries(ctx context.Context, d CoordDriver, timeout time.Duration) (*expiryWatch, error) {
	wctx, cancel := context.WithCancel(ctx)
	opened := make(chan struct{})
	t := time.AfterFunc(timeout, func() {
		select {
		case <-opened:
		default:
			cancel()
		}
	})
	deletes, err := d.WatchDeletes(wctx, ExpiryPrefix)
	close(opened)
	t.Stop()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("workload %s: watch %s: %w", Expiry, ExpiryPrefix, err)
	}
	ew := &expiryWatch{cancel: cancel, done: make(chan struct{}), waiting: map[string]chan time.Time{}}
	go func() {
		defer close(ew.done)
		for key := range deletes {
			seen := time.Now()
			ew.mu.Lock()
			ch := ew.waiting[key]
			delete(ew.waiting, key)
			ew.mu.Unlock()
			if ch != nil {
				ch <- seen // buffered, and only one send per key
			}
		}
	}()
	return ew, nil
}

func (ew *expiryWatch) close() {
	ew.cancel()
	<-ew.done
}

// errWatchEnded means the expiry watch ended before it saw a delete.
var errWatchEnded = errors.New("the watch on " + ExpiryPrefix + " ended")

// expire puts key with a new lease of ttl and returns how late after the
// lease's deadline (grant answered + time to live granted) the watch saw
// key deleted.
func (ew *expiryWatch) expire(ctx context.Context, d CoordDriver, key string, value []byte, ttl time.Duration) (time.Duration, error) {
	ch := make(chan time.Time, 1)
	ew.mu.Lock()
	ew.waiting[key] = ch
	ew.mu.Unlock()
	defer func() {
		ew.mu.Lock()
		delete(ew.waiting, key)
		ew.mu.Unlock()
	}()
	deadline, err := d.PutWithLease(ctx, key, value, ttl)
	if err != nil {
		return 0, err
	}
	select {
	case seen := <-ch:
		return seen.Sub(deadline), nil
	case <-ew.done:
		return 0, errWatchEnded
	case <-ctx.Done():
		return 0, fmt.Errorf("%s not seen deleted %v after its lease's deadline: %w", key, time.Since(deadline), ctx.Err())
	}
}
