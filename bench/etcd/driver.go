package main

// The etcd side of bench.Driver and bench.CoordDriver, through clientv3.

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/unrdf/consensus/bench"
)

// driver is etcd's client as bench drives it: one client, one gRPC
// connection (HTTP/2, multiplexed), to the leader. With keepAliveStream,
// a contender's keepalives go over one LeaseKeepAlive stream of its own,
// as clientv3's KeepAlive sends them, instead of KeepAliveOnce.
type driver struct {
	cli             *clientv3.Client
	keepAliveStream bool
	// reaper serves the queue workloads (queue.go); nil without them.
	reaper *reaper
}

func (d driver) Put(ctx context.Context, key string, value []byte) error {
	_, err := d.cli.Put(ctx, key, string(value))
	return err
}

func (d driver) Get(ctx context.Context, key string, linearizable bool) error {
	var opts []clientv3.OpOption
	if !linearizable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := d.cli.Get(ctx, key, opts...)
	if err != nil {
		return err
	}
	if len(resp.Kvs) != 1 {
		return fmt.Errorf("get %s: key not found", key)
	}
	return nil
}

// The lease and lock workloads (bench.CoordWorkloads), through clientv3's
// lease API and its concurrency package, as etcd's users take locks.
var _ bench.CoordDriver = driver{}

// ttlSeconds is ttl in etcd's unit, whole seconds (bench.Options checks
// that it is one).
func ttlSeconds(ttl time.Duration) int64 { return int64(ttl / time.Second) }

// NewContender grants a lease of ttl (bounded by ctx) and opens a
// concurrency.Session on it, which keeps it alive over clientv3's
// KeepAlive stream.
func (d driver) NewContender(ctx context.Context, ttl time.Duration) (bench.Contender, error) {
	resp, err := d.cli.Grant(ctx, ttlSeconds(ttl))
	if err != nil {
		return nil, err
	}
	// Not concurrency.WithContext(ctx): the session's keepalives would
	// stop with ctx, which only bounds this setup.
	s, err := concurrency.NewSession(d.cli, concurrency.WithLease(resp.ID))
	if err != nil {
		return nil, err
	}
	k := &contender{cli: d.cli, s: s}
	if d.keepAliveStream {
		k.stream = &keepAliveStream{lease: pb.NewLeaseClient(d.cli.ActiveConnection())}
	}
	return k, nil
}

// PutWithLease grants a lease of ttl and puts key with it; the deadline
// is the grant's answer plus the time to live granted (etcd raises a TTL
// below its minimum, 1.5 election timeouts rounded up to a second).
func (d driver) PutWithLease(ctx context.Context, key string, value []byte, ttl time.Duration) (time.Time, error) {
	resp, err := d.cli.Grant(ctx, ttlSeconds(ttl))
	if err != nil {
		return time.Time{}, err
	}
	deadline := time.Now().Add(time.Duration(resp.TTL) * time.Second)
	_, err = d.cli.Put(ctx, key, string(value), clientv3.WithLease(resp.ID))
	return deadline, err
}

// WatchDeletes watches the keys under prefix for deletes, and returns once
// etcd has created the watch.
func (d driver) WatchDeletes(ctx context.Context, prefix string) (<-chan string, error) {
	wctx, cancel := context.WithCancel(ctx)
	wch := d.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithCreatedNotify())
	select {
	case resp, ok := <-wch:
		if !ok || resp.Err() != nil || !resp.Created {
			cancel()
			if ok && resp.Err() != nil {
				return nil, resp.Err()
			}
			return nil, errors.Join(errors.New("watch not created"), ctx.Err())
		}
	case <-ctx.Done():
		cancel()
		return nil, ctx.Err()
	}
	out := make(chan string)
	go func() {
		defer close(out)
		defer cancel()
		for resp := range wch {
			if resp.Err() != nil {
				return
			}
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypeDelete {
					continue
				}
				select {
				case out <- string(ev.Kv.Key):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// contender is one lock or keepalive contender: a session of its own on
// the shared client.
type contender struct {
	cli    *clientv3.Client
	s      *concurrency.Session
	stream *keepAliveStream // nil: KeepAliveOnce
}

// LockUnlock takes lock name as concurrency.Mutex does (a key under
// name/ with the session's lease; wait for the deletes of the keys
// before it), then releases it.
func (k *contender) LockUnlock(ctx context.Context, name string) error {
	m := concurrency.NewMutex(k.s, name+"/")
	if err := m.Lock(ctx); err != nil {
		return err
	}
	return m.Unlock(ctx)
}

// KeepAlive renews the session's lease with KeepAliveOnce (one
// LeaseKeepAlive stream opened, used once and closed per call) or over the
// contender's own stream.
func (k *contender) KeepAlive(ctx context.Context) error {
	if k.stream != nil {
		return k.stream.keepAlive(ctx, k.s.Lease())
	}
	_, err := k.cli.KeepAliveOnce(ctx, k.s.Lease())
	return err
}

// Close ends the session and revokes its lease (bounded by the lease's
// TTL, clientv3's choice).
func (k *contender) Close(context.Context) error {
	if k.stream != nil {
		k.stream.close()
	}
	return k.s.Close()
}

// keepAliveStream is one LeaseKeepAlive stream, opened at the first
// keepalive: each keepalive is one request on it and its answer. One
// goroutine uses it at a time (its contender's worker).
type keepAliveStream struct {
	lease  pb.LeaseClient
	cancel context.CancelFunc
	stream pb.Lease_LeaseKeepAliveClient
}

func (s *keepAliveStream) keepAlive(ctx context.Context, id clientv3.LeaseID) error {
	if s.stream == nil {
		sctx, cancel := context.WithCancel(context.Background())
		stream, err := s.lease.LeaseKeepAlive(sctx)
		if err != nil {
			cancel()
			return err
		}
		s.stream, s.cancel = stream, cancel
	}
	// Send and Recv do not take ctx: wait for them apart, and drop the
	// stream when ctx ends first.
	st := s.stream
	done := make(chan error, 1)
	go func() {
		if err := st.Send(&pb.LeaseKeepAliveRequest{ID: int64(id)}); err != nil {
			done <- err
			return
		}
		resp, err := st.Recv()
		if err == nil && resp.TTL <= 0 {
			err = fmt.Errorf("lease %x not found", id)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			s.close()
		}
		return err
	case <-ctx.Done():
		s.close()
		<-done
		return ctx.Err()
	}
}

func (s *keepAliveStream) close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.stream, s.cancel = nil, nil
}
