package main

// The task queue workloads (bench.QueueWorkloads) on etcd, written the
// way users build a work queue with fenced claims on etcd's API:
//
//	q/<queue>/ready/<enqueue time, ns, 20 digits>-<id>   the task's data
//	q/<queue>/claimed/<id>                               the data, under the worker's lease
//	q/<queue>/done/<id>
//
// A claim reads the oldest ready keys (key order is enqueue order; a
// range sorted by create revision would read the whole prefix) and
// moves one to claimed/ in a transaction on its mod revision, with the
// worker's lease: the transaction's revision is the claim's epoch (its
// fencing token). A complete is a transaction on the claimed key's mod
// revision being the epoch: it deletes the claim and writes done/. A
// dead worker's lease expires and deletes its claimed key; a reaper
// watching q/ with previous values puts such a task back under ready/
// (unless it is done), which a deleted claim with no done/ write at the
// same revision tells apart from a complete. A claim that finds nothing
// ready waits on a watch of ready/ from the revision it read, as
// clientv3's recipe queue does.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/unrdf/consensus/bench"
)

var _ bench.QueueDriver = driver{}

// queueRoot starts every key of the queue workloads.
const queueRoot = "q/"

// claimWindow is how many of the oldest ready tasks a claim reads and
// tries, in random order, before it reads again: with many workers, the
// oldest one alone would be a transaction conflict for all but one.
const claimWindow = 32

func readyPrefix(queue string) string    { return queueRoot + queue + "/ready/" }
func claimedKey(queue, id string) string { return queueRoot + queue + "/claimed/" + id }
func doneKey(queue, id string) string    { return queueRoot + queue + "/done/" + id }

// readyKey names task id ready now: key order is enqueue order.
func readyKey(queue, id string) string {
	return fmt.Sprintf("%s%020d-%s", readyPrefix(queue), time.Now().UnixNano(), id)
}

// errStaleEpoch is a complete refused: the claim is not the task's
// current one.
var errStaleEpoch = errors.New("stale epoch: the claimed key changed since the claim")

// Enqueue puts the task under ready/.
func (d driver) Enqueue(ctx context.Context, queue, id string, data []byte) error {
	_, err := d.cli.Put(ctx, readyKey(queue, id), string(data))
	return err
}

// Ready counts the keys under ready/.
func (d driver) Ready(ctx context.Context, queue string) (int, error) {
	resp, err := d.cli.Get(ctx, readyPrefix(queue), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return int(resp.Count), nil
}

// NewQueueWorker opens a session (a lease of ttl kept alive in the
// background) for the worker's claims, and makes sure the reaper runs.
func (d driver) NewQueueWorker(ctx context.Context, queue, _ string, ttl time.Duration) (bench.QueueWorker, error) {
	if err := d.reaper.start(ctx); err != nil {
		return nil, err
	}
	resp, err := d.cli.Grant(ctx, ttlSeconds(ttl))
	if err != nil {
		return nil, err
	}
	s, err := concurrency.NewSession(d.cli, concurrency.WithLease(resp.ID))
	if err != nil {
		return nil, err
	}
	return &queueWorker{cli: d.cli, queue: queue, s: s, lease: resp.ID, rng: rand.New(rand.NewPCG(uint64(resp.ID), 1))}, nil
}

// ClaimAbandoned grants a lease of ttl that nothing keeps alive and
// claims with it; the deadline is the grant's answer plus the TTL
// granted.
func (d driver) ClaimAbandoned(ctx context.Context, queue string, ttl time.Duration) (string, time.Time, error) {
	if err := d.reaper.start(ctx); err != nil {
		return "", time.Time{}, err
	}
	resp, err := d.cli.Grant(ctx, ttlSeconds(ttl))
	if err != nil {
		return "", time.Time{}, err
	}
	deadline := time.Now().Add(time.Duration(resp.TTL) * time.Second)
	w := &queueWorker{cli: d.cli, queue: queue, lease: resp.ID, rng: rand.New(rand.NewPCG(uint64(resp.ID), 2))}
	c, err := w.Claim(ctx, 0)
	return c.ID, deadline, err
}

// queueWorker is one worker: its claims hold its lease.
type queueWorker struct {
	cli   *clientv3.Client
	queue string
	s     *concurrency.Session // nil for ClaimAbandoned's
	lease clientv3.LeaseID
	rng   *rand.Rand
}

// Claim moves one of the oldest ready tasks to claimed/ under the
// worker's lease; with nothing ready it waits on a watch of ready/ up to
// wait.
func (w *queueWorker) Claim(ctx context.Context, wait time.Duration) (bench.QueueClaim, error) {
	deadline := time.Now().Add(wait)
	prefix := readyPrefix(w.queue)
	for {
		resp, err := w.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithLimit(claimWindow))
		if err != nil {
			return bench.QueueClaim{}, err
		}
		if len(resp.Kvs) == 0 {
			left := time.Until(deadline)
			if left <= 0 {
				return bench.QueueClaim{}, fmt.Errorf("claim from %s: %w", w.queue, bench.ErrNoTask)
			}
			if err := waitForPut(ctx, w.cli, prefix, resp.Header.Revision+1, left); err != nil {
				return bench.QueueClaim{}, err
			}
			continue
		}
		for _, i := range w.rng.Perm(len(resp.Kvs)) {
			kv := resp.Kvs[i]
			key := string(kv.Key)
			id := key[strings.IndexByte(key[len(prefix):], '-')+len(prefix)+1:]
			tr, err := w.cli.Txn(ctx).
				If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
				Then(clientv3.OpDelete(key), clientv3.OpPut(claimedKey(w.queue, id), string(kv.Value), clientv3.WithLease(w.lease))).
				Commit()
			if err != nil {
				return bench.QueueClaim{}, err
			}
			if tr.Succeeded {
				return bench.QueueClaim{ID: id, Epoch: tr.Header.Revision}, nil
			}
		}
	}
}

// Complete deletes the claim and writes done/, if the claimed key is
// still the one the claim wrote.
func (w *queueWorker) Complete(ctx context.Context, c bench.QueueClaim) error {
	key := claimedKey(w.queue, c.ID)
	tr, err := w.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", c.Epoch)).
		Then(clientv3.OpDelete(key), clientv3.OpPut(doneKey(w.queue, c.ID), "")).
		Commit()
	if err != nil {
		return err
	}
	if !tr.Succeeded {
		return fmt.Errorf("complete %s with epoch %d: %w", c.ID, c.Epoch, errStaleEpoch)
	}
	return nil
}

// Close ends the session and revokes its lease (a claim still held goes
// back to ready/ through the reaper).
func (w *queueWorker) Close(context.Context) error {
	if w.s == nil {
		return nil
	}
	return w.s.Close()
}

// waitForPut waits, up to wait, for a put under prefix at or after
// revision rev.
func waitForPut(ctx context.Context, cli *clientv3.Client, prefix string, rev int64, wait time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for resp := range cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithFilterDelete()) {
		if err := resp.Err(); err != nil {
			return err
		}
		if len(resp.Events) > 0 {
			return nil
		}
	}
	return ctx.Err() // nil when only the wait ran out: the caller reads again
}

// reaper puts the tasks of expired claims back under ready/. One runs per
// driver, from the first worker on, until close.
type reaper struct {
	cli *clientv3.Client

	once    sync.Once
	started error
	cancel  context.CancelFunc
	done    chan struct{}
}

func newReaper(cli *clientv3.Client) *reaper {
	return &reaper{cli: cli, done: make(chan struct{})}
}

// start opens the reaper's watch (bounded by ctx) the first time.
func (r *reaper) start(ctx context.Context) error {
	if r == nil {
		return errors.New("the queue workloads need the driver's reaper")
	}
	r.once.Do(func() {
		// The revision the watch starts after: nothing before it can
		// be a claim of this run.
		resp, err := r.cli.Get(ctx, queueRoot, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			r.started = err
			close(r.done)
			return
		}
		var wctx context.Context
		wctx, r.cancel = context.WithCancel(context.Background())
		go r.run(wctx, resp.Header.Revision+1)
	})
	return r.started
}

// run watches q/ from rev on, again from the next revision after a break.
func (r *reaper) run(ctx context.Context, rev int64) {
	defer close(r.done)
	for ctx.Err() == nil {
		for resp := range r.cli.Watch(ctx, queueRoot, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithPrevKV()) {
			if resp.Err() != nil {
				break
			}
			r.reap(ctx, resp.Events)
			if len(resp.Events) > 0 {
				rev = resp.Events[len(resp.Events)-1].Kv.ModRevision + 1
			}
		}
	}
}

// reap re-enqueues the task of each claimed key deleted without a done/
// write at the same revision (a complete writes both at once).
func (r *reaper) reap(ctx context.Context, events []*clientv3.Event) {
	type at struct {
		rev int64
		key string
	}
	done := map[at]bool{}
	for _, ev := range events {
		if ev.Type == clientv3.EventTypePut && strings.Contains(string(ev.Kv.Key), "/done/") {
			done[at{ev.Kv.ModRevision, string(ev.Kv.Key)}] = true
		}
	}
	for _, ev := range events {
		key := string(ev.Kv.Key)
		i := strings.Index(key, "/claimed/")
		if ev.Type != clientv3.EventTypeDelete || i < 0 || ev.PrevKv == nil {
			continue
		}
		queue, id := key[len(queueRoot):i], key[i+len("/claimed/"):]
		if done[at{ev.Kv.ModRevision, doneKey(queue, id)}] {
			continue
		}
		// Unless it got done meanwhile: back under ready/.
		_, _ = r.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(doneKey(queue, id)), "=", 0)).
			Then(clientv3.OpPut(readyKey(queue, id), string(ev.PrevKv.Value))).
			Commit()
	}
}

// close stops the reaper.
func (r *reaper) close() {
	if r.cancel != nil {
		r.cancel()
	}
	r.once.Do(func() { close(r.done) })
	<-r.done
}
