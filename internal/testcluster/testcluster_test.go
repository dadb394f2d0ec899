package testcluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/internal/testcluster"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// seed seeds the memnet clusters' fault draws; Start logs it.
const seed = 19

// A crashed leader hands nothing over: it sees no other node elected
// before it is gone (a graceful Stop would: server.Close transfers
// leadership first), and the survivors elect a leader of their own.
func TestCrashedLeaderHandsNothingOver(t *testing.T) {
	c := testcluster.Start(t, 3)
	leader := c.WaitLeader(t, 10*time.Second)
	events := c.Servers[leader].Node().Events().Subscribe(64)
	c.Crash(t, leader)
	events.Close()
	for e := range events.C() {
		if e.Type == consensus.EventLeaderElected && e.LeaderID != leader && e.LeaderID != "" {
			t.Fatalf("the crashed leader %s saw %s elected before it stopped: a hand-over, not a crash", leader, e.LeaderID)
		}
	}
	if _, ok := c.Servers[leader]; ok {
		t.Fatalf("%s still listed as running after Crash", leader)
	}
	next := c.WaitLeader(t, 10*time.Second)
	if next == leader {
		t.Fatalf("%s, crashed, is still the leader", leader)
	}
}

// A stopped or crashed node restarts on its addresses with its data:
// it has every write acknowledged before it went down, and one made
// while it was down.
func TestRestartKeepsAddressesAndData(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []testcluster.Option
	}{{"websocket", nil}, {"memnet", []testcluster.Option{testcluster.Memnet(seed)}}} {
		t.Run(mode.name, func(t *testing.T) { testRestartKeepsAddressesAndData(t, mode.opts...) })
	}
}

func testRestartKeepsAddressesAndData(t *testing.T, opts ...testcluster.Option) {
	c := testcluster.Start(t, 3, opts...)
	leader := c.WaitLeader(t, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, down := range []struct {
		name string
		stop func(testing.TB, string)
	}{{"stopped", c.Stop}, {"crashed", c.Crash}} {
		id := c.Others(leader)[0]
		before := c.Servers[id].Store()
		if _, err := before.Put(ctx, "before/"+down.name, []byte(`1`)); err != nil {
			t.Fatalf("put before %s: %v", down.name, err)
		}
		peer, http := c.Servers[id].PeerAddr(), c.Servers[id].HTTPAddr()
		down.stop(t, id)
		leader = c.WaitLeader(t, 10*time.Second)
		if _, err := c.Servers[leader].Store().Put(ctx, "while/"+down.name, []byte(`2`)); err != nil {
			t.Fatalf("put while %s %s: %v", id, down.name, err)
		}
		c.Restart(t, id)
		srv := c.Servers[id]
		if srv.PeerAddr() != peer || srv.HTTPAddr() != http || c.HTTP[id] != http {
			t.Fatalf("%s restarted on %s/%s, was %s/%s", id, srv.PeerAddr(), srv.HTTPAddr(), peer, http)
		}
		c.WaitLeader(t, 10*time.Second)
		for _, key := range []string{"before/" + down.name, "while/" + down.name} {
			var it kv.Item
			testwait.For(t, 10*time.Second, id+" has "+key+" locally", func() bool {
				var err error
				it, err = srv.Store().Get(ctx, key, kv.Local)
				return err == nil
			})
			if it.Key != key {
				t.Fatalf("%s: got %+v for %s", id, it, key)
			}
		}
	}
}

// A leader partitioned off from the majority is replaced: the majority
// elects one of its own and keeps taking writes through its client
// endpoints, while the old leader steps down and, cut off, has none of
// them. After Heal the old leader catches up: its /v1/kv reads, local
// ones included, show every write the majority took.
func TestPartitionedLeaderIsReplacedAndCatchesUp(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Memnet(seed))
	old := c.WaitLeader(t, 10*time.Second)
	majority := c.Others(old)
	c.Partition(t, []string{old}, majority)
	testwait.For(t, 10*time.Second, fmt.Sprintf("%v elect a leader other than %s", majority, old), func() bool {
		l := c.Leader(majority...)
		return l != "" && l != old
	})
	testwait.For(t, 10*time.Second, old+" steps down (check-quorum)", func() bool {
		return !c.Servers[old].Node().IsLeader()
	})

	cl, err := client.New(client.Config{Endpoints: c.Endpoints(majority...)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const writes = 20
	for i := range writes {
		if _, err := cl.Put(ctx, fmt.Sprintf("part/%d", i), []byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("put %d through %v while %s is partitioned off: %v", i, majority, old, err)
		}
	}
	if status, body := getKV(t, c.HTTP[old], "part/0", true); status != http.StatusNotFound {
		t.Fatalf("%s, partitioned off, has part/0 locally: %d %s", old, status, body)
	}

	c.Heal(t)
	c.WaitLeader(t, 10*time.Second)
	last := fmt.Sprintf("part/%d", writes-1)
	testwait.For(t, 10*time.Second, old+" has "+last+" locally after Heal", func() bool {
		status, _ := getKV(t, c.HTTP[old], last, true)
		return status == http.StatusOK
	})
	for i := range writes {
		for _, local := range []bool{true, false} {
			key := fmt.Sprintf("part/%d", i)
			status, body := getKV(t, c.HTTP[old], key, local)
			var item struct {
				Key   string          `json:"key"`
				Value json.RawMessage `json:"value"`
			}
			if status != http.StatusOK {
				t.Fatalf("GET %s on %s (local %v): %d %s", key, old, local, status, body)
			}
			if err := json.Unmarshal(body, &item); err != nil || item.Key != key || string(item.Value) != strconv.Itoa(i) {
				t.Fatalf("GET %s on %s (local %v): %s (%v)", key, old, local, body, err)
			}
		}
	}
}

// An isolated follower misses the writes made meanwhile and gets them
// after Heal; the others keep their leader and take writes throughout.
func TestIsolatedFollowerCatchesUpAfterHeal(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Memnet(seed))
	leader := c.WaitLeader(t, 10*time.Second)
	follower := c.Others(leader)[0]
	c.Isolate(t, follower)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Servers[leader].Store().Put(ctx, "isolated", []byte(`1`)); err != nil {
		t.Fatalf("put on %s with %s isolated: %v", leader, follower, err)
	}
	if _, err := c.Servers[follower].Store().Get(ctx, "isolated", kv.Local); !errors.Is(err, kv.ErrKeyNotFound) {
		t.Fatalf("%s, isolated, reads the write made meanwhile: %v", follower, err)
	}
	c.Heal(t)
	testwait.For(t, 10*time.Second, follower+" has the write after Heal", func() bool {
		_, err := c.Servers[follower].Store().Get(ctx, "isolated", kv.Local)
		return err == nil
	})
}

// Over WebSockets the cluster cannot cut peer traffic: Partition,
// Isolate and Heal fail the test, saying so, rather than doing nothing.
func TestPartitionNeedsMemnet(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.LeaderWithin(0))
	for name, call := range map[string]func(testing.TB){
		"Partition": func(tb testing.TB) { c.Partition(tb, []string{"n1"}) },
		"Isolate":   func(tb testing.TB) { c.Isolate(tb, "n1") },
		"Heal":      func(tb testing.TB) { c.Heal(tb) },
	} {
		msg := fatalOf(t, call)
		if !strings.Contains(msg, name+" needs the Memnet option") {
			t.Errorf("%s over WebSockets: fatal %q, want it to say it needs Memnet", name, msg)
		}
	}
}

// fatalTB is a testing.TB whose Fatalf records the message and ends the
// calling goroutine, as testing.T's does, without failing the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalOf runs call on its own goroutine and returns what it passed to
// Fatalf, "" if it returned without.
func fatalOf(t *testing.T, call func(testing.TB)) string {
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		call(tb)
	}()
	<-done
	return tb.msg
}

// getKV reads key from the node at addr over HTTP, with a local read if
// local, and returns the status and body.
func getKV(t *testing.T, addr, key string, local bool) (int, []byte) {
	t.Helper()
	u := "http://" + addr + "/v1/kv/" + key
	if local {
		u += "?consistency=local"
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode, body
}
