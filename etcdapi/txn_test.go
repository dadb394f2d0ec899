package etcdapi_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/memnet"
	"github.com/unrdf/consensus/internal/testcluster"
	"github.com/unrdf/consensus/server"
)

// TestReadOnlyTxn: a transaction without writes is served without the
// log: its ranges may read older revisions (nested ones too), its
// compares see the current state, its header has the current revision,
// and it takes no revision; errors of a range at a revision are etcd's.
// A transaction that writes still refuses a range at a revision.
func TestReadOnlyTxn(t *testing.T) {
	_, eps := startCluster(t, 1)
	cli := newClient(t, eps["n1"])
	ctx := ctxT(t)
	first, err := cli.Put(ctx, "k", "v1")
	if err != nil {
		t.Fatal(err)
	}
	second, err := cli.Put(ctx, "k", "v2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "other", "o"); err != nil {
		t.Fatal(err)
	}
	cur := second.Header.Revision + 1

	resp, err := cli.Txn(ctx).If(
		clientv3.Compare(clientv3.Value("k"), "=", "v2"),
		clientv3.Compare(clientv3.ModRevision("k"), "=", second.Header.Revision),
	).Then(
		clientv3.OpGet("k", clientv3.WithRev(first.Header.Revision)),
		clientv3.OpGet("k"),
		clientv3.OpGet("", clientv3.WithFromKey(), clientv3.WithRev(second.Header.Revision), clientv3.WithCountOnly()),
		clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Version("k"), "=", 1)},
			[]clientv3.Op{clientv3.OpGet("never")},
			[]clientv3.Op{clientv3.OpGet("k", clientv3.WithRev(first.Header.Revision), clientv3.WithKeysOnly())}),
	).Else(clientv3.OpGet("k")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Succeeded || len(resp.Responses) != 4 || resp.Header.Revision != cur {
		t.Fatalf("read-only txn: %+v", resp)
	}
	old := resp.Responses[0].GetResponseRange()
	if len(old.Kvs) != 1 || string(old.Kvs[0].Value) != "v1" || old.Kvs[0].ModRevision != first.Header.Revision || old.Header.Revision != cur {
		t.Fatalf("range at revision %d: %+v", first.Header.Revision, old)
	}
	if now := resp.Responses[1].GetResponseRange(); len(now.Kvs) != 1 || string(now.Kvs[0].Value) != "v2" {
		t.Fatalf("range now: %+v", now)
	}
	if all := resp.Responses[2].GetResponseRange(); all.Count != 1 {
		t.Fatalf("count at revision %d: %+v", second.Header.Revision, all)
	}
	nested := resp.Responses[3].GetResponseTxn()
	if nested.Succeeded || len(nested.Responses) != 1 {
		t.Fatalf("nested: %+v", nested)
	}
	if kvs := nested.Responses[0].GetResponseRange().Kvs; len(kvs) != 1 || kvs[0].Value != nil || kvs[0].Version != 1 {
		t.Fatalf("nested range at revision %d: %+v", first.Header.Revision, kvs)
	}
	// A failed compare runs Else; compares alone are a read-only
	// transaction too; neither takes a revision.
	resp, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("k"), "=", "v1")).
		Else(clientv3.OpGet("k", clientv3.WithRev(first.Header.Revision), clientv3.WithSerializable())).Commit()
	if err != nil || resp.Succeeded || string(resp.Responses[0].GetResponseRange().Kvs[0].Value) != "v1" {
		t.Fatalf("else branch: %+v %v", resp, err)
	}
	if resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Version("k"), "=", 2)).Commit(); err != nil || !resp.Succeeded || resp.Header.Revision != cur {
		t.Fatalf("compares only: %+v %v", resp, err)
	}
	if p, err := cli.Put(ctx, "after", "x"); err != nil || p.Header.Revision != cur+1 {
		t.Fatalf("put after the read-only txns: %+v %v (want revision %d)", p, err, cur+1)
	}

	// Errors of a range at a revision, in a branch not taken too is not
	// read.
	if _, err := cli.Txn(ctx).Then(clientv3.OpGet("k", clientv3.WithRev(cur+100))).Commit(); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("range at a future revision: %v", err)
	}
	if _, err := cli.Compact(ctx, second.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpGet("k", clientv3.WithRev(first.Header.Revision))).Commit(); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("range below the compaction: %v", err)
	}
	if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Version("k"), "=", 1)).
		Then(clientv3.OpGet("k", clientv3.WithRev(first.Header.Revision))).Commit(); err != nil {
		t.Fatalf("a compacted range on the branch not taken: %v", err)
	}
	// A transaction that writes goes through the log, where a range at a
	// revision is not served.
	_, err = cli.Txn(ctx).Then(clientv3.OpPut("w", "1"),
		clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpGet("k", clientv3.WithRev(second.Header.Revision))}, nil)).Commit()
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("a range at a revision in a transaction that writes: %v", err)
	}
}

// TestReadOnlyTxnIsLinearizable: a follower whose log trails the leader's
// by a fixed delay still answers a read-only transaction with every
// write acknowledged before it (it waits for a ReadIndex), while a
// serializable one reads its own, older state.
func TestReadOnlyTxnIsLinearizable(t *testing.T) {
	const seed = 16
	c := testcluster.Start(t, 3, testcluster.Memnet(seed), testcluster.Configure(func(cfg *server.Config) {
		cfg.EtcdAddr = "127.0.0.1:0"
		// Long election timeouts, so a delay of the slow follower's
		// messages well under them starts no election.
		cfg.Node.ElectionTimeoutMin, cfg.Node.ElectionTimeoutMax = time.Second, 2*time.Second
		cfg.Node.HeartbeatInterval = 100 * time.Millisecond
	}))
	leader := c.WaitLeader(t, 20*time.Second)
	slow := c.Others(leader)[0]
	if err := c.Net.SetRule(consensus.RaftID(leader), consensus.RaftID(slow), memnet.Rule{MinDelay: 300 * time.Millisecond, MaxDelay: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	cliL := newClient(t, c.Servers[leader].EtcdAddr())
	cliS := newClient(t, c.Servers[slow].EtcdAddr())
	ctx := ctxT(t)
	stale := 0
	for i := range 5 {
		v := fmt.Sprint("v", i)
		put, err := cliL.Put(ctx, "k", v)
		if err != nil {
			t.Fatal(err)
		}
		ser, err := cliS.Txn(ctx).Then(clientv3.OpGet("k", clientv3.WithSerializable())).Commit()
		if err != nil {
			t.Fatal(err)
		}
		if kvs := ser.Responses[0].GetResponseRange().Kvs; len(kvs) == 0 || string(kvs[0].Value) != v {
			stale++
		}
		lin, err := cliS.Txn(ctx).If(clientv3.Compare(clientv3.Value("k"), "=", v)).
			Then(clientv3.OpGet("k"), clientv3.OpGet("k", clientv3.WithRev(put.Header.Revision-1))).Commit()
		if err != nil {
			t.Fatal(err)
		}
		if !lin.Succeeded || lin.Header.Revision < put.Header.Revision {
			t.Fatalf("txn %d on the slow follower after the put at %d: %+v", i, put.Header.Revision, lin)
		}
		if kvs := lin.Responses[0].GetResponseRange().Kvs; len(kvs) != 1 || string(kvs[0].Value) != v || kvs[0].ModRevision != put.Header.Revision {
			t.Fatalf("txn %d: range %+v, want %q at %d", i, kvs, v, put.Header.Revision)
		}
		if kvs := lin.Responses[1].GetResponseRange().Kvs; i > 0 && (len(kvs) != 1 || string(kvs[0].Value) != fmt.Sprint("v", i-1)) {
			t.Fatalf("txn %d: range at %d %+v, want v%d", i, put.Header.Revision-1, kvs, i-1)
		}
	}
	// The delay works: a serializable read (no ReadIndex) saw an older
	// state; without the linearizable read the checks above would too.
	if stale == 0 {
		t.Fatalf("no serializable read on the slow follower was stale (memnet seed %d): the delay did not hold it back", seed)
	}
	t.Logf("%d of 5 serializable reads on the slow follower were stale", stale)
}

// TestReadOnlyTxnWithReadOnlyToken: as in etcd, a transaction that only
// reads needs only the right to read: an ro token may send one, not one
// with a write on any branch.
func TestReadOnlyTxnWithReadOnlyToken(t *testing.T) {
	tokens, err := server.ParseTokens(strings.NewReader("writer rw\nreader ro\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := testcluster.Start(t, 1, testcluster.Configure(func(cfg *server.Config) {
		cfg.EtcdAddr = "127.0.0.1:0"
		cfg.HTTP.Tokens = tokens
	}))
	cli := newClient(t, c.Servers["n1"].EtcdAddr())
	rw := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer writer")
	ro := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer reader")
	if _, err := cli.Put(rw, "k", "v"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Txn(ro).If(clientv3.Compare(clientv3.Value("k"), "=", "v")).
		Then(clientv3.OpGet("k"), clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpGet("k")}, nil)).Commit()
	if err != nil || !resp.Succeeded {
		t.Fatalf("read-only txn with an ro token: %+v %v", resp, err)
	}
	_, err = cli.Txn(ro).If(clientv3.Compare(clientv3.Value("k"), "=", "v")).
		Then(clientv3.OpGet("k")).Else(clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpDelete("k")}, nil)).Commit()
	if !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("txn with a delete on a branch, with an ro token: %v", err)
	}
	if _, err := cli.Put(ro, "k", "w"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("put with an ro token: %v", err)
	}
}
