package etcdapi_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/unrdf/consensus/internal/loopback"
	"github.com/unrdf/consensus/internal/testcluster"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/server"
)

// fixedEtcdCluster starts n nodes whose etcd API keeps its address across
// restarts, so clients given every endpoint find a restarted node again.
func fixedEtcdCluster(t *testing.T, n int) (*testcluster.Cluster, []string) {
	t.Helper()
	addrs := map[string]string{}
	var eps []string
	for i := 1; i <= n; i++ {
		a, err := loopback.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		addrs[fmt.Sprintf("n%d", i)] = a
		eps = append(eps, a)
	}
	c := testcluster.Start(t, n, testcluster.Configure(func(cfg *server.Config) {
		cfg.EtcdAddr = addrs[cfg.Node.ID]
	}))
	return c, eps
}

// crashLeader crashes the leader, waits for another, and restarts the
// crashed node.
func crashLeader(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	leader := c.WaitLeader(t, 10*time.Second)
	c.Crash(t, leader)
	c.WaitLeader(t, 10*time.Second, c.Others(leader)...)
	c.Restart(t, leader)
	t.Logf("crashed and restarted the leader %s", leader)
}

// keyGone waits until key does not exist, for at most timeout, watching
// it for its delete.
func keyGone(cli *clientv3.Client, key string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for ctx.Err() == nil {
		g, err := cli.Get(ctx, key)
		if err == nil && len(g.Kvs) == 0 {
			return true
		}
		if err != nil {
			continue
		}
		for r := range cli.Watch(ctx, key, clientv3.WithRev(g.Header.Revision+1)) {
			if r.Err() != nil || len(r.Events) > 0 {
				break
			}
		}
	}
	return false
}

// lockIn is one operation of the mutex model: client acquires or
// releases the lock.
type lockIn struct {
	client  int
	acquire bool
}

// mutexModel is one lock: an acquire succeeds only when it is free, a
// release only by its holder. State: the holder's client id + 1, 0 free.
var mutexModel = porcupine.Model{
	Init: func() any { return 0 },
	Step: func(state, input, _ any) (bool, any) {
		s, in := state.(int), input.(lockIn)
		if in.acquire {
			return s == 0, in.client + 1
		}
		return s == in.client+1, 0
	},
	DescribeOperation: func(input, _ any) string {
		in := input.(lockIn)
		if in.acquire {
			return fmt.Sprintf("c%d acquire", in.client)
		}
		return fmt.Sprintf("c%d release", in.client)
	},
}

// TestMutexModelCatchesOverlap: the one-lock model refuses a history in
// which a second client acquires before the first releases, and a
// release by a client that does not hold the lock.
func TestMutexModelCatchesOverlap(t *testing.T) {
	op := func(client int, acquire bool, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: lockIn{client: client, acquire: acquire}, Call: call, Return: ret}
	}
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"in turn", []porcupine.Operation{op(0, true, 0, 1), op(0, false, 2, 3), op(1, true, 4, 5), op(1, false, 6, 7)}, true},
		{"release and acquire at once", []porcupine.Operation{op(0, true, 0, 1), op(0, false, 2, 5), op(1, true, 3, 6)}, true},
		{"overlap", []porcupine.Operation{op(0, true, 0, 1), op(1, true, 2, 3), op(0, false, 4, 5)}, false},
		{"release by another", []porcupine.Operation{op(0, true, 0, 1), op(1, false, 2, 3)}, false},
	} {
		if got := porcupine.CheckOperations(mutexModel, tc.ops); got != tc.ok {
			t.Errorf("%s: linearizable %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// leaderKills is how many times the concurrency tests crash the leader.
const leaderKills = 3

// keyGoneWait bounds the wait for the key of a failed unlock or
// resignation to go: the session's lease (TTL 5 s) runs out at the
// latest, but each new leader gives every lease a full TTL again, and
// more than one crash may fall within the wait.
const keyGoneWait = 30 * time.Second

// TestMutexAcrossLeaderKills runs clientv3's concurrency.Mutex with many
// contenders on a 3-node cluster while its leader is crashed (and
// restarted) leaderKills times, and
// checks the history of acquires and releases against a one-lock model
// with porcupine: mutual exclusion held. Each holder also writes through
// a transaction fenced on owning the lock (Mutex.IsOwner), which must
// succeed.
func TestMutexAcrossLeaderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("crashes leaders")
	}
	c, eps := fixedEtcdCluster(t, 3)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	const contenders = 12
	start := time.Now()
	var (
		mu       sync.Mutex
		ops      []porcupine.Operation
		acquired atomic.Int64
		inside   atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	now := func() int64 { return int64(time.Since(start)) }
	record := func(op porcupine.Operation) {
		mu.Lock()
		ops = append(ops, op)
		mu.Unlock()
	}
	for cid := range contenders {
		cli := newClient(t, eps...)
		rng := rand.New(rand.NewPCG(seed, uint64(cid)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s *concurrency.Session
			defer func() {
				if s != nil {
					s.Close()
				}
			}()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if s == nil {
					var err error
					if s, err = concurrency.NewSession(cli, concurrency.WithTTL(5)); err != nil {
						s = nil
						continue
					}
				}
				m := concurrency.NewMutex(s, "/lock/")
				call := now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := m.Lock(ctx)
				cancel()
				if err != nil {
					// Outcome unknown: give the session up, which
					// revokes its key (or lets its lease expire).
					s.Close()
					s = nil
					continue
				}
				record(porcupine.Operation{ClientId: cid, Input: lockIn{client: cid, acquire: true}, Call: call, Return: now()})
				if inside.Add(1) != 1 {
					t.Errorf("c%d acquired the lock while another client held it", cid)
				}
				acquired.Add(1)
				// Work while holding: a write fenced on still owning
				// the lock.
				wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := cli.Txn(wctx).If(m.IsOwner()).Then(clientv3.OpPut("/counter", fmt.Sprint(rng.IntN(1000)))).Commit()
				wcancel()
				if err == nil && !resp.Succeeded {
					t.Errorf("c%d's fenced write failed: it no longer owned the lock", cid)
				}
				inside.Add(-1)
				call = now()
				uctx, ucancel := context.WithTimeout(context.Background(), 10*time.Second)
				err = m.Unlock(uctx)
				ucancel()
				if err != nil {
					// Make sure the key is gone before the release
					// returns: revoke the session, else wait out its
					// lease.
					s.Close()
					s = nil
					if !keyGone(cli, m.Key(), keyGoneWait) {
						t.Errorf("c%d: the key of a failed unlock is still there after %v", cid, keyGoneWait)
						return
					}
				}
				record(porcupine.Operation{ClientId: cid, Input: lockIn{client: cid}, Call: call, Return: now()})
			}
		}()
	}
	for round := range leaderKills {
		testwait.For(t, 60*time.Second, "acquisitions before a crash", func() bool { return acquired.Load() >= int64(10*(round+1)) })
		crashLeader(t, c)
	}
	after := acquired.Load()
	testwait.For(t, 60*time.Second, "acquisitions after the crashes", func() bool { return acquired.Load() >= after+10 })
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d acquisitions by %d contenders", acquired.Load(), contenders)
	if res := porcupine.CheckOperations(mutexModel, ops); !res {
		t.Fatalf("the history of %d lock operations is not linearizable against one lock (seed %d)", len(ops), seed)
	}
}

// TestElectionAcrossLeaderKills runs clientv3's concurrency.Election
// with many candidates while the cluster's leader is crashed (and
// restarted) leaderKills times. It checks that an observer sees every
// candidate that won (each winner keeps leadership until the observer has
// seen its value, then resigns), and that leadership is exclusive: the
// history of wins and resignations, checked with porcupine against the
// one-lock model, and a counter of leaders in office.
func TestElectionAcrossLeaderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("crashes leaders")
	}
	c, eps := fixedEtcdCluster(t, 3)
	const candidates = 8
	start := time.Now()
	var (
		mu       sync.Mutex
		observed = map[string]bool{}
		changed  = make(chan struct{}) // closed and replaced at each observation
		won      []string
		ops      []porcupine.Operation
		wins     atomic.Int64
		inOffice atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	now := func() int64 { return int64(time.Since(start)) }
	record := func(op porcupine.Operation) {
		mu.Lock()
		ops = append(ops, op)
		mu.Unlock()
	}
	// waitSeen waits until the observer has seen v, for at most 20 s.
	waitSeen := func(v string) {
		deadline := time.After(20 * time.Second)
		for {
			mu.Lock()
			ok, ch := observed[v], changed
			mu.Unlock()
			if ok {
				return
			}
			select {
			case <-ch:
			case <-deadline:
				return
			}
		}
	}
	// The observer re-observes whenever its channel closes (an error
	// during a crash ends an observation).
	obsCtx, obsCancel := context.WithCancel(context.Background())
	obsDone := make(chan struct{})
	obsCli := newClient(t, eps...)
	go func() {
		defer close(obsDone)
		cli := obsCli
		for obsCtx.Err() == nil {
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
			if err != nil {
				continue
			}
			for r := range concurrency.NewElection(s, "/elect/").Observe(obsCtx) {
				mu.Lock()
				observed[string(r.Kvs[0].Value)] = true
				close(changed)
				changed = make(chan struct{})
				mu.Unlock()
			}
			s.Close()
		}
	}()
	for cid := range candidates {
		cli := newClient(t, eps...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
				if err != nil {
					continue
				}
				e := concurrency.NewElection(s, "/elect/")
				value := fmt.Sprintf("c%d-%d", cid, round)
				call := now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err = e.Campaign(ctx, value)
				cancel()
				if err != nil {
					s.Close()
					continue
				}
				record(porcupine.Operation{ClientId: cid, Input: lockIn{client: cid, acquire: true}, Call: call, Return: now()})
				if inOffice.Add(1) != 1 {
					t.Errorf("%s won while another candidate was the leader", value)
				}
				mu.Lock()
				won = append(won, value)
				mu.Unlock()
				wins.Add(1)
				waitSeen(value)
				inOffice.Add(-1)
				call = now()
				key := e.Key() // Resign forgets it, even when it fails
				rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
				err = e.Resign(rctx)
				rcancel()
				s.Close()
				if err != nil && !keyGone(cli, key, keyGoneWait) {
					// Office ends only when the key is gone: the
					// session's revoke, or else its lease running out.
					t.Errorf("%s: the key of a failed resignation is still there after %v", value, keyGoneWait)
					return
				}
				record(porcupine.Operation{ClientId: cid, Input: lockIn{client: cid}, Call: call, Return: now()})
			}
		}()
	}
	for round := range leaderKills {
		testwait.For(t, 60*time.Second, "elections before a crash", func() bool { return wins.Load() >= int64(6*(round+1)) })
		crashLeader(t, c)
	}
	after := wins.Load()
	testwait.For(t, 60*time.Second, "elections after the crashes", func() bool { return wins.Load() >= after+6 })
	close(stop)
	wg.Wait()
	obsCancel()
	<-obsDone
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d elections won by %d candidates, %d values observed", len(won), candidates, len(observed))
	for _, v := range won {
		if !observed[v] {
			t.Errorf("the election won by %s was never observed", v)
		}
	}
	if !porcupine.CheckOperations(mutexModel, ops) {
		t.Fatalf("the history of %d wins and resignations is not linearizable against one lock", len(ops))
	}
}
