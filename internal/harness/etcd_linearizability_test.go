package harness_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/etcdapi"
	"github.com/unrdf/consensus/internal/loopback"
	"github.com/unrdf/consensus/kv"
)

// etcdSeeds are the seeds of TestLinearizabilityEtcd.
var etcdSeeds = []uint64{6, 52}

// TestLinearizabilityEtcd is TestLinearizability with the workload
// driven through etcd's own client (clientv3) against etcd's v3 API
// (package etcdapi), served by every incarnation of every node on a
// loopback address that outlives its crashes: gets and lists are Range
// requests, puts Put, deletes DeleteRange, compare-and-sets and batches
// Txn with a mod_revision compare. The same nemesis, model and checks.
// clientv3 retries no write whose outcome it does not know, so every
// failed write is an operation of unknown outcome.
func TestLinearizabilityEtcd(t *testing.T) {
	seeds := etcdSeeds
	if *seedFlag != 0 {
		seeds = []uint64{*seedFlag}
	}
	var total linStats
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			total.add(runLinearizability(t, seed, shortRun, true))
		})
	}
	t.Logf("TOTAL: %s", total.String())
}

// etcdListeners serves each node's incarnations over etcd's API, each
// node on an address of its own that it keeps across restarts (the
// harness's Options.Serve).
type etcdListeners struct {
	t     *testing.T
	mu    sync.Mutex
	addrs map[string]string
}

func (e *etcdListeners) serve(name string, node *consensus.Node, store *kv.Store) func() {
	e.mu.Lock()
	addr, known := e.addrs[name]
	e.mu.Unlock()
	var ln net.Listener
	var err error
	if known {
		ln, err = loopback.Listen(addr, 5*time.Second)
	} else {
		ln, err = loopback.ListenFree()
	}
	if err != nil {
		// Clients go to the other members, as when one is down.
		e.t.Logf("etcd listener of %s: %v", name, err)
		return nil
	}
	e.mu.Lock()
	e.addrs[name] = ln.Addr().String()
	e.mu.Unlock()
	srv, err := etcdapi.New(etcdapi.Config{Store: store, Members: node})
	if err != nil {
		ln.Close()
		e.t.Errorf("etcd server of %s: %v", name, err)
		return nil
	}
	srv.Serve(ln)
	return func() {
		// Abruptly, as a crash: RPCs in flight end with their
		// connections.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = srv.Stop(ctx)
	}
}

// endpoints returns the addresses of the named nodes.
func (e *etcdListeners) endpoints(names []string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var eps []string
	for _, n := range names {
		if a, ok := e.addrs[n]; ok {
			eps = append(eps, a)
		}
	}
	return eps
}

// etcdClient is a client of the model's workload that goes through
// clientv3. Values are recorded as the state stores them (a JSON string
// of etcd's bytes, kv.EtcdStoredValue), so that the harness's own final
// reads agree with them.
type etcdClient struct {
	*client
	cli *clientv3.Client
}

func newEtcdClient(t *testing.T, cl *client, eps []string) *etcdClient {
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("clientv3: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return &etcdClient{client: cl, cli: cli}
}

// stored is etcd bytes v as the state stores them.
func stored(v []byte) string { return string(kv.EtcdStoredValue(v)) }

// do runs one random operation and records it.
func (ec *etcdClient) do() {
	cl := ec.client
	key := cl.keys[cl.rng.IntN(len(cl.keys))]
	cl.seq++
	value := fmt.Sprintf("%s-%d", cl.name, cl.seq)
	switch r := cl.rng.IntN(100); {
	case r < 30:
		ec.read(key)
	case r < 38:
		ec.list()
	case r < 62:
		ec.write(kvInput{Op: opPut, Key: key, Value: stored([]byte(value))}, func(ctx context.Context) (kvOutput, error) {
			resp, err := ec.cli.Put(ctx, key, value)
			if err != nil {
				return kvOutput{}, err
			}
			return kvOutput{Revision: resp.Header.Revision}, nil
		})
	case r < 72:
		ec.write(kvInput{Op: opDelete, Key: key}, func(ctx context.Context) (kvOutput, error) {
			resp, err := ec.cli.Delete(ctx, key)
			if err != nil || resp.Deleted == 0 {
				return kvOutput{}, err
			}
			return kvOutput{Found: true, Revision: resp.Header.Revision}, nil
		})
	case r < 88:
		cond, ok := ec.read(key)
		if !ok {
			return
		}
		if cl.rng.IntN(5) == 0 && cond > 0 {
			cond--
		}
		in := kvInput{Op: opPutIf, Key: key, Value: stored([]byte(value)), HasCond: true, CondRev: cond}
		ec.write(in, func(ctx context.Context) (kvOutput, error) {
			resp, err := ec.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", cond)).
				Then(clientv3.OpPut(key, value)).Commit()
			return txnOutput(resp, err)
		})
	default:
		ec.batch(value)
	}
}

// txnOutput is a Txn's result: a conflict when its compare failed.
func txnOutput(resp *clientv3.TxnResponse, err error) (kvOutput, error) {
	switch {
	case err != nil:
		return kvOutput{}, err
	case !resp.Succeeded:
		return kvOutput{Conflict: true}, nil
	}
	return kvOutput{Revision: resp.Header.Revision}, nil
}

// batch puts value under 2 or 3 distinct keys in one Txn, half the time
// on condition that the first key is at the revision a read just saw.
func (ec *etcdClient) batch(value string) {
	cl := ec.client
	n := min(len(cl.keys), 2+cl.rng.IntN(2))
	perm := cl.rng.Perm(len(cl.keys))[:n]
	in := kvInput{Op: opBatch, Value: stored([]byte(value))}
	puts := make([]clientv3.Op, 0, n)
	for _, i := range perm {
		in.Keys = append(in.Keys, cl.keys[i])
		puts = append(puts, clientv3.OpPut(cl.keys[i], value))
	}
	in.Key = in.Keys[0]
	var cmps []clientv3.Cmp
	if cl.rng.IntN(2) == 0 {
		cond, ok := ec.read(in.Keys[0])
		if !ok {
			return
		}
		in.HasCond, in.CondRev = true, cond
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(in.Keys[0]), "=", cond))
	}
	ec.write(in, func(ctx context.Context) (kvOutput, error) {
		return txnOutput(ec.cli.Txn(ctx).If(cmps...).Then(puts...).Commit())
	})
}

// read is a linearizable Range of one key, recorded; it returns the
// revision it saw (0 if the key is absent) and whether it succeeded.
func (ec *etcdClient) read(key string) (int64, bool) {
	cl := ec.client
	ctx, cancel := context.WithTimeout(context.Background(), cl.timeout())
	defer cancel()
	call := cl.h.now()
	resp, err := ec.cli.Get(ctx, key)
	ret := cl.h.now()
	if err != nil {
		// A read that failed changed nothing: leave it out.
		cl.h.count(false, true, nil)
		backOff()
		return 0, false
	}
	out := kvOutput{}
	if len(resp.Kvs) == 1 {
		it := resp.Kvs[0]
		out = kvOutput{Found: true, Value: stored(it.Value), Revision: it.ModRevision, CreateRevision: it.CreateRevision, Version: it.Version}
	}
	cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: kvInput{Op: opGet, Key: key}, Call: call, Output: out, Return: ret})
	return out.Revision, true
}

// list reads every key at once (a Range of the prefix), recorded.
func (ec *etcdClient) list() {
	cl := ec.client
	ctx, cancel := context.WithTimeout(context.Background(), cl.timeout())
	defer cancel()
	call := cl.h.now()
	resp, err := ec.cli.Get(ctx, keyPrefix, clientv3.WithPrefix())
	ret := cl.h.now()
	if err != nil {
		cl.h.count(false, true, nil)
		backOff()
		return
	}
	out := kvOutput{Revision: resp.Header.Revision}
	for _, it := range resp.Kvs {
		out.Items = append(out.Items, listItem{Key: string(it.Key), Value: stored(it.Value), Revision: it.ModRevision, CreateRevision: it.CreateRevision, Version: it.Version})
	}
	cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: kvInput{Op: opList, Keys: cl.keys}, Call: call, Output: out, Return: ret})
}

// write runs attempt once and records it. Any failure is of unknown
// outcome: etcd's errors do not tell a write that was never proposed
// from one that timed out (ErrNoLeader stands for both "no leader" and
// "not the leader" here), and clientv3 retries none of them.
func (ec *etcdClient) write(in kvInput, attempt func(context.Context) (kvOutput, error)) {
	cl := ec.client
	ctx, cancel := context.WithTimeout(context.Background(), cl.timeout())
	defer cancel()
	call := cl.h.now()
	out, err := attempt(ctx)
	if err == nil {
		cl.h.record(porcupine.Operation{ClientId: cl.cid, Input: in, Call: call, Output: out, Return: cl.h.now()})
		return
	}
	cl.recordUnknown(in, call, nil)
	backOff()
}
