package etcdapi_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/testcluster"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startCluster starts n nodes, each serving etcd's API on a free
// loopback port, and returns the cluster and the etcd endpoints by id.
func startCluster(t testing.TB, n int) (*testcluster.Cluster, map[string]string) {
	t.Helper()
	c := testcluster.Start(t, n, testcluster.Configure(func(cfg *server.Config) {
		cfg.EtcdAddr = "127.0.0.1:0"
	}))
	eps := map[string]string{}
	for id, s := range c.Servers {
		eps[id] = s.EtcdAddr()
	}
	return c, eps
}

func newClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestKV(t *testing.T) {
	c, eps := startCluster(t, 3)
	follower := c.Others(c.WaitLeader(t, 10*time.Second))[0]
	cli := newClient(t, eps[follower])
	ctx := ctxT(t)

	put, err := cli.Put(ctx, "a/1", "one")
	if err != nil {
		t.Fatal(err)
	}
	if put.Header.Revision < 1 || put.Header.ClusterId == 0 || put.Header.MemberId == 0 || put.Header.RaftTerm == 0 {
		t.Fatalf("put header %+v", put.Header)
	}
	for _, kv := range [][2]string{{"a/2", `{"x":1}`}, {"a/3", "\xff\x00bin"}, {"b", "bee"}} {
		if _, err := cli.Put(ctx, kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	// The same state over HTTP: etcd's text is a JSON string there.
	it, err := c.Servers[follower].Store().Get(ctx, "a/1", kv.Linearizable)
	if err != nil || string(it.Value) != `"one"` {
		t.Fatalf("over the store: %+v %v", it, err)
	}

	get, err := cli.Get(ctx, "a/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if get.Count != 3 || len(get.Kvs) != 3 || string(get.Kvs[1].Value) != `{"x":1}` || string(get.Kvs[2].Value) != "\xff\x00bin" {
		t.Fatalf("prefix get: %+v", get)
	}
	if get.Kvs[0].Version != 1 || get.Kvs[0].CreateRevision != put.Header.Revision || get.Kvs[0].ModRevision != put.Header.Revision {
		t.Fatalf("revisions of a/1: %+v", get.Kvs[0])
	}
	lim, err := cli.Get(ctx, "a/", clientv3.WithPrefix(), clientv3.WithLimit(2), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if err != nil || !lim.More || lim.Count != 3 || len(lim.Kvs) != 2 || string(lim.Kvs[0].Key) != "a/3" {
		t.Fatalf("limit + sort: %+v %v", lim, err)
	}
	ko, err := cli.Get(ctx, "a/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil || len(ko.Kvs) != 3 || ko.Kvs[0].Value != nil {
		t.Fatalf("keys only: %+v %v", ko, err)
	}
	co, err := cli.Get(ctx, "a/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || co.Count != 3 || len(co.Kvs) != 0 {
		t.Fatalf("count only: %+v %v", co, err)
	}
	all, err := cli.Get(ctx, "", clientv3.WithFromKey())
	if err != nil || all.Count != 4 {
		t.Fatalf("all keys: %+v %v", all, err)
	}
	ser, err := cli.Get(ctx, "b", clientv3.WithSerializable())
	if err != nil || len(ser.Kvs) != 1 || string(ser.Kvs[0].Value) != "bee" {
		t.Fatalf("serializable: %+v %v", ser, err)
	}
	rng, err := cli.Get(ctx, "a/2", clientv3.WithRange("b"), clientv3.WithMinModRev(put.Header.Revision+2))
	if err != nil || rng.Count != 2 || len(rng.Kvs) != 1 || string(rng.Kvs[0].Key) != "a/3" {
		t.Fatalf("range + min mod revision: %+v %v", rng, err)
	}

	// Revisions: the current one is fine, a future one is etcd's error, an
	// older one reads the state as it was then.
	cur := all.Header.Revision
	if _, err := cli.Get(ctx, "b", clientv3.WithRev(cur)); err != nil {
		t.Fatalf("get at the current revision: %v", err)
	}
	if _, err := cli.Get(ctx, "b", clientv3.WithRev(cur+100)); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("get at a future revision: %v", err)
	}
	old, err := cli.Get(ctx, "a/", clientv3.WithPrefix(), clientv3.WithRev(put.Header.Revision+1))
	if err != nil || old.Count != 2 || string(old.Kvs[1].Key) != "a/2" || old.Header.Revision != cur {
		t.Fatalf("get at an old revision: %+v %v", old, err)
	}

	// Put options.
	prev, err := cli.Put(ctx, "b", "bee2", clientv3.WithPrevKV())
	if err != nil || prev.PrevKv == nil || string(prev.PrevKv.Value) != "bee" {
		t.Fatalf("put prev_kv: %+v %v", prev, err)
	}
	if _, err := cli.Put(ctx, "missing", "", clientv3.WithIgnoreValue()); !errors.Is(err, rpctypes.ErrKeyNotFound) {
		t.Fatalf("ignore_value of a missing key: %v", err)
	}
	if _, err := cli.Put(ctx, "b", "", clientv3.WithIgnoreValue()); err != nil {
		t.Fatal(err)
	}
	if g, _ := cli.Get(ctx, "b"); string(g.Kvs[0].Value) != "bee2" || g.Kvs[0].Version != 3 {
		t.Fatalf("after ignore_value: %+v", g.Kvs[0])
	}
	if _, err := cli.Put(ctx, "", "x"); !errors.Is(err, rpctypes.ErrEmptyKey) {
		t.Fatalf("empty key: %v", err)
	}
	if _, err := cli.Put(ctx, "c", "x", clientv3.WithLease(12345)); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("missing lease: %v", err)
	}

	// DeleteRange.
	del, err := cli.Delete(ctx, "a/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil || del.Deleted != 3 || len(del.PrevKvs) != 3 {
		t.Fatalf("delete prefix: %+v %v", del, err)
	}
	none, err := cli.Delete(ctx, "nothing")
	if err != nil || none.Deleted != 0 || none.Header.Revision != del.Header.Revision {
		t.Fatalf("delete of nothing: %+v %v (after %d)", none, err, del.Header.Revision)
	}

	// Compaction: replicated, reads below it are etcd's compacted error
	// on every member, at it they work; compacting it again, or a future
	// revision, is etcd's error.
	if before, err := cli.Get(ctx, "a/", clientv3.WithPrefix(), clientv3.WithRev(del.Header.Revision-1)); err != nil || before.Count != 3 {
		t.Fatalf("get before the delete: %+v %v", before, err)
	}
	comp, err := cli.Compact(ctx, del.Header.Revision)
	if err != nil || comp.Header.Revision != del.Header.Revision {
		t.Fatalf("compact: %+v %v", comp, err)
	}
	if _, err := cli.Get(ctx, "a/", clientv3.WithPrefix(), clientv3.WithRev(del.Header.Revision-1)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("get below the compaction: %v", err)
	}
	if at, err := cli.Get(ctx, "a/", clientv3.WithPrefix(), clientv3.WithRev(del.Header.Revision)); err != nil || at.Count != 0 {
		t.Fatalf("get at the compaction: %+v %v", at, err)
	}
	for _, id := range c.IDs {
		m := c.Servers[id].Store().Machine()
		testwait.For(t, 10*time.Second, "the compaction on "+id, func() bool { return m.CompactRevision() == del.Header.Revision })
	}
	if _, err := cli.Compact(ctx, del.Header.Revision); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("compact again: %v", err)
	}
	if _, err := cli.Compact(ctx, del.Header.Revision+100); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("compact at a future revision: %v", err)
	}
}

func TestTxn(t *testing.T) {
	_, eps := startCluster(t, 1)
	cli := newClient(t, eps["n1"])
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Txn(ctx).If(
		clientv3.Compare(clientv3.Value("k"), "=", "v1"),
		clientv3.Compare(clientv3.Version("k"), "=", 1),
		clientv3.Compare(clientv3.CreateRevision("new"), "=", 0),
		clientv3.Compare(clientv3.LeaseValue("k"), "=", clientv3.NoLease),
	).Then(
		clientv3.OpPut("k", "v2"),
		clientv3.OpPut("new", "n"),
		clientv3.OpGet("k"),
		clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision("k"), ">", 100)}, nil,
			[]clientv3.Op{clientv3.OpGet("", clientv3.WithFromKey(), clientv3.WithCountOnly())}),
	).Else(clientv3.OpGet("k")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Succeeded || len(resp.Responses) != 4 {
		t.Fatalf("txn: %+v", resp)
	}
	if kvs := resp.Responses[2].GetResponseRange().Kvs; string(kvs[0].Value) != "v2" || kvs[0].ModRevision != resp.Header.Revision {
		t.Fatalf("a read after a write in the txn: %+v", kvs)
	}
	nested := resp.Responses[3].GetResponseTxn()
	if nested.Succeeded || nested.Responses[0].GetResponseRange().Count != 2 {
		t.Fatalf("nested txn: %+v", nested)
	}
	// A failed compare runs Else.
	resp, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("k"), "=", "v1")).Else(clientv3.OpDelete("new")).Commit()
	if err != nil || resp.Succeeded || resp.Responses[0].GetResponseDeleteRange().Deleted != 1 {
		t.Fatalf("else branch: %+v %v", resp, err)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpPut("d", "1"), clientv3.OpPut("d", "2")).Commit(); !errors.Is(err, rpctypes.ErrDuplicateKey) {
		t.Fatalf("duplicate key: %v", err)
	}
}

func TestLease(t *testing.T) {
	c, eps := startCluster(t, 3)
	follower := c.Others(c.WaitLeader(t, 10*time.Second))[0]
	cli := newClient(t, eps[follower])
	ctx := ctxT(t)
	g, err := cli.Grant(ctx, 5)
	if err != nil || g.TTL != 5 || g.ID == 0 {
		t.Fatalf("grant: %+v %v", g, err)
	}
	if _, err := cli.Put(ctx, "leased", "x", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	// The same lease over the store (the HTTP API's).
	if l, err := c.Servers[follower].Store().Lease(ctx, kv.LeaseID(g.ID), kv.Linearizable); err != nil || len(l.Keys) != 1 {
		t.Fatalf("lease over the store: %+v %v", l, err)
	}
	// A follower asks the leader's HTTP API, once the leader has
	// advertised it.
	testwait.For(t, 10*time.Second, "every member's HTTP address known", func() bool {
		for _, m := range c.Servers[follower].Node().Members() {
			if m.HTTPAddr == "" {
				return false
			}
		}
		return true
	})
	ka, err := cli.KeepAliveOnce(ctx, g.ID)
	if err != nil || ka.TTL != 5 {
		t.Fatalf("keepalive: %+v %v", ka, err)
	}
	ttl, err := cli.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.GrantedTTL != 5 || ttl.TTL < 3 || ttl.TTL > 5 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "leased" {
		t.Fatalf("time to live: %+v %v", ttl, err)
	}
	ls, err := cli.Leases(ctx)
	if err != nil || len(ls.Leases) != 1 || ls.Leases[0].ID != g.ID {
		t.Fatalf("leases: %+v %v", ls, err)
	}
	ch, err := cli.KeepAlive(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r == nil || r.TTL != 5 {
			t.Fatalf("keepalive stream: %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("no keepalive answer")
	}
	if _, err := cli.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if get, err := cli.Get(ctx, "leased"); err != nil || len(get.Kvs) != 0 {
		t.Fatalf("a revoked lease's key: %+v %v", get, err)
	}
	if ttl, err := cli.TimeToLive(ctx, g.ID); err != nil || ttl.TTL != -1 {
		t.Fatalf("time to live of a revoked lease: %+v %v", ttl, err)
	}
	if _, err := cli.Revoke(ctx, g.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("revoke again: %v", err)
	}
}

func TestClusterAndMaintenance(t *testing.T) {
	c, eps := startCluster(t, 3)
	leader := c.WaitLeader(t, 10*time.Second)
	cli := newClient(t, eps["n1"])
	ctx := ctxT(t)
	ml, err := cli.MemberList(ctx)
	if err != nil || len(ml.Members) != 3 {
		t.Fatalf("member list: %+v %v", ml, err)
	}
	for _, m := range ml.Members {
		if m.Name == "n1" && (len(m.ClientURLs) != 1 || m.ClientURLs[0] != "http://"+eps["n1"]) {
			t.Fatalf("n1's client URLs: %v", m.ClientURLs)
		}
		if len(m.PeerURLs) != 1 || m.PeerURLs[0] != "http://"+c.Peers[m.Name] || m.IsLearner {
			t.Fatalf("member %+v", m)
		}
	}
	st, err := cli.Status(ctx, eps["n1"])
	if err != nil || st.Version == "" || st.RaftTerm == 0 || st.RaftIndex == 0 {
		t.Fatalf("status: %+v %v", st, err)
	}
	var leaderID uint64
	for _, m := range ml.Members {
		if m.Name == leader {
			leaderID = m.ID
		}
	}
	if st.Leader != leaderID {
		t.Fatalf("status leader %x, want %x (%s)", st.Leader, leaderID, leader)
	}
	al, err := cli.AlarmList(ctx)
	if err != nil || len(al.Alarms) != 0 {
		t.Fatalf("alarms: %+v %v", al, err)
	}

	// HashKV at a revision is the same on every member, and is still that
	// revision's after later writes; the current one differs from it.
	first, err := cli.Put(ctx, "h", "1")
	if err != nil {
		t.Fatal(err)
	}
	second, err := cli.Put(ctx, "h", "2")
	if err != nil {
		t.Fatal(err)
	}
	hashAt := func(ep string, rev int64) uint32 {
		t.Helper()
		var h *clientv3.HashKVResponse
		testwait.For(t, 10*time.Second, ep+" reaches revision "+fmt.Sprint(second.Header.Revision), func() bool {
			h, err = cli.HashKV(ctx, ep, rev)
			return err == nil
		})
		if h.HashRevision != rev || h.CompactRevision < 0 {
			t.Fatalf("hashkv of %s at %d: %+v", ep, rev, h)
		}
		return h.Hash
	}
	want := hashAt(eps["n1"], first.Header.Revision)
	for _, ep := range eps {
		if got := hashAt(ep, first.Header.Revision); got != want {
			t.Fatalf("hashkv at %d: %s has %x, n1 %x", first.Header.Revision, ep, got, want)
		}
	}
	if now := hashAt(eps["n1"], second.Header.Revision); now == want {
		t.Fatalf("hashkv at %d equals the one at %d", second.Header.Revision, first.Header.Revision)
	}
	if _, err := cli.HashKV(ctx, eps["n1"], second.Header.Revision+100); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("hashkv at a future revision: %v", err)
	}
	h1, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Hash(ctx, &pb.HashRequest{})
	if err != nil || h1.Hash == 0 {
		t.Fatalf("hash: %+v %v", h1, err)
	}
}

// A member the divergence check finds diverged is listed as etcd's
// CORRUPT alarm, by the members that found it.
func TestDivergedMemberIsACorruptAlarm(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Configure(func(cfg *server.Config) {
		cfg.EtcdAddr = "127.0.0.1:0"
		cfg.HashCheckInterval = 100 * time.Millisecond
	}))
	leader := c.WaitLeader(t, 10*time.Second)
	cli := newClient(t, c.Servers[leader].EtcdAddr())
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "k", "10"); err != nil {
		t.Fatal(err)
	}
	bad := ""
	for id := range c.Servers {
		if id != leader {
			bad = id
			break
		}
	}
	testwait.For(t, 10*time.Second, "the follower to hash the key", func() bool {
		return len(c.Servers[bad].Store().StateHashes()) >= 2
	})
	if !c.Servers[bad].Store().FlipValueForTest("k") {
		t.Fatal("no key to flip")
	}
	testwait.For(t, 10*time.Second, "the leader to list a CORRUPT alarm", func() bool {
		al, err := cli.AlarmList(ctx)
		return err == nil && len(al.Alarms) == 1 && al.Alarms[0].Alarm == pb.AlarmType_CORRUPT &&
			al.Alarms[0].MemberID == consensus.RaftID(bad)
	})
}
