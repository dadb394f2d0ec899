package etcdapi_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkReadOnlyTxn compares a read-only transaction (a compare and
// two ranges), served after a ReadIndex without the log, with the same
// reads sent through the log (a put on the branch not taken makes the
// transaction a replicated one; it writes nothing), on a 3-node cluster
// over loopback WebSockets, asked of a follower, 16 clients at once. The
// two alternate over three rounds, so that load from elsewhere on the
// machine falls on both.
func BenchmarkReadOnlyTxn(b *testing.B) {
	c, eps := startCluster(b, 3)
	follower := c.Others(c.WaitLeader(b, 10*time.Second))[0]
	cli := newClient(b, eps[follower])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := range 100 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k/%02d", i), "value"); err != nil {
			b.Fatal(err)
		}
	}
	readOnly := func() clientv3.Txn {
		return cli.Txn(ctx).If(clientv3.Compare(clientv3.Version("k/00"), ">", 0)).
			Then(clientv3.OpGet("k/00"), clientv3.OpGet("k/", clientv3.WithPrefix(), clientv3.WithLimit(10)))
	}
	throughLog := func() clientv3.Txn {
		return cli.Txn(ctx).If(clientv3.Compare(clientv3.Version("k/00"), ">", 0)).
			Then(clientv3.OpGet("k/00"), clientv3.OpGet("k/", clientv3.WithPrefix(), clientv3.WithLimit(10))).
			Else(clientv3.OpPut("never", "x"))
	}
	run := func(name string, txn func() clientv3.Txn) {
		b.Run(name, func(b *testing.B) {
			b.SetParallelism(8) // 8 x GOMAXPROCS (2 here) clients
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := txn().Commit()
					if err != nil || !resp.Succeeded {
						b.Errorf("txn: %+v %v", resp, err)
						return
					}
				}
			})
		})
	}
	for round := range 3 {
		if round%2 == 0 {
			run(fmt.Sprint("round", round, "/read-only"), readOnly)
			run(fmt.Sprint("round", round, "/log"), throughLog)
		} else {
			run(fmt.Sprint("round", round, "/log"), throughLog)
			run(fmt.Sprint("round", round, "/read-only"), readOnly)
		}
	}
}
