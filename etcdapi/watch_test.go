package etcdapi_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/unrdf/consensus/internal/testcluster"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server"
)

// next returns the next response on ch, failing the test after 10 s.
func next(t *testing.T, ch clientv3.WatchChan) clientv3.WatchResponse {
	t.Helper()
	select {
	case r, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no watch response in 10s")
	}
	return clientv3.WatchResponse{}
}

// nextEvents is next, skipping progress notifications.
func nextEvents(t *testing.T, ch clientv3.WatchChan) clientv3.WatchResponse {
	t.Helper()
	for {
		if r := next(t, ch); !r.IsProgressNotify() {
			return r
		}
	}
}

func TestWatch(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Configure(func(cfg *server.Config) {
		cfg.EtcdAddr = "127.0.0.1:0"
		cfg.WatchHistory = kv.WatchConfig{HistoryEvents: 20}
	}))
	follower := c.Others(c.WaitLeader(t, 10*time.Second))[0]
	cli := newClient(t, c.Servers[follower].EtcdAddr())
	ctx := ctxT(t)

	first, err := cli.Put(ctx, "w/0", "zero")
	if err != nil {
		t.Fatal(err)
	}
	prefix := cli.Watch(ctx, "w/", clientv3.WithPrefix())
	rng := cli.Watch(ctx, "w/2", clientv3.WithRange("w/4"), clientv3.WithFilterDelete())
	// From an earlier revision: replays history first.
	fromRev := cli.Watch(ctx, "w/0", clientv3.WithRev(first.Header.Revision))
	// Wait until the watches exist (a progress request is answered after
	// the created responses), then write.
	if err := cli.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	if r := next(t, prefix); !r.IsProgressNotify() {
		t.Fatalf("first response of the prefix watch: %+v", r)
	}
	if r := next(t, rng); !r.IsProgressNotify() {
		t.Fatalf("first response of the range watch: %+v", r)
	}
	for i := 1; i <= 4; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("w/%d", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	del, err := cli.Delete(ctx, "w/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 9 {
		for _, ev := range next(t, prefix).Events {
			got = append(got, fmt.Sprintf("%s %s %s", ev.Type, ev.Kv.Key, ev.Kv.Value))
		}
	}
	want := []string{"PUT w/1 1", "PUT w/2 2", "PUT w/3 3", "PUT w/4 4", "DELETE w/0 ", "DELETE w/1 ", "DELETE w/2 ", "DELETE w/3 ", "DELETE w/4 "}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("prefix watch: %q, want %q", got, want)
	}
	var keys []string
	for len(keys) < 2 {
		for _, ev := range next(t, rng).Events {
			keys = append(keys, fmt.Sprintf("%s %s", ev.Type, ev.Kv.Key))
		}
	}
	if fmt.Sprint(keys) != "[PUT w/2 PUT w/3]" {
		t.Fatalf("range watch without deletes: %q", keys)
	}
	r := nextEvents(t, fromRev)
	if len(r.Events) != 1 || r.Events[0].Kv.ModRevision != first.Header.Revision || r.Events[0].Type != mvccpb.PUT {
		t.Fatalf("watch from a revision: %+v", r.Events)
	}
	if r = nextEvents(t, fromRev); len(r.Events) != 1 || r.Events[0].Type != mvccpb.DELETE || r.Events[0].Kv.ModRevision != del.Header.Revision {
		t.Fatalf("watch from a revision, the delete: %+v", r.Events)
	}

	// prev_kv: each event carries the item it replaced or deleted (a
	// create none).
	withPrev := cli.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(first.Header.Revision))
	got = got[:0]
	for len(got) < 10 {
		for _, ev := range nextEvents(t, withPrev).Events {
			prev := "-"
			if ev.PrevKv != nil {
				prev = fmt.Sprintf("%s@%d", ev.PrevKv.Value, ev.PrevKv.ModRevision)
			}
			got = append(got, fmt.Sprintf("%s %s %s", ev.Type, ev.Kv.Key, prev))
		}
	}
	want = []string{"PUT w/0 -", "PUT w/1 -", "PUT w/2 -", "PUT w/3 -", "PUT w/4 -"}
	for i := range 5 {
		v := fmt.Sprint(i)
		if i == 0 {
			v = "zero"
		}
		want = append(want, fmt.Sprintf("DELETE w/%d %s@%d", i, v, first.Header.Revision+int64(i)))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("watch with prev_kv: %q, want %q", got, want)
	}
	// A start revision past the history: the compacted error with the
	// oldest revision still kept.
	for i := range 30 {
		if _, err := cli.Put(ctx, "fill", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	r = next(t, cli.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(first.Header.Revision)))
	if !errors.Is(r.Err(), rpctypes.ErrCompacted) || r.CompactRevision <= first.Header.Revision {
		t.Fatalf("watch from a compacted revision: %+v %v", r, r.Err())
	}
	// A watch resumed from the compact revision works.
	resumed := cli.Watch(ctx, "fill", clientv3.WithRev(r.CompactRevision))
	if r2 := next(t, resumed); len(r2.Events) == 0 || r2.Events[0].Kv.ModRevision != r.CompactRevision {
		t.Fatalf("watch from the compact revision: %+v", r2)
	}

	// An explicit compaction: a watch from below it gets its revision, a
	// watch from it starts there.
	last, err := cli.Put(ctx, "fill", "last")
	if err != nil {
		t.Fatal(err)
	}
	at := last.Header.Revision - 3
	if _, err := cli.Compact(ctx, at); err != nil {
		t.Fatal(err)
	}
	r = next(t, cli.Watch(ctx, "fill", clientv3.WithRev(at-1)))
	if !errors.Is(r.Err(), rpctypes.ErrCompacted) || r.CompactRevision != at {
		t.Fatalf("watch from below the compaction at %d: %+v %v", at, r, r.Err())
	}
	if r2 := next(t, cli.Watch(ctx, "fill", clientv3.WithRev(at))); len(r2.Events) == 0 || r2.Events[0].Kv.ModRevision != at {
		t.Fatalf("watch from the compaction: %+v", r2)
	}
}
