package etcdapi_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// getStream is GetStream's chunks merged, as GetStreamToGetResponse does.
func getStream(ch clientv3.GetStreamChan, err error) (*clientv3.GetResponse, error) {
	if err != nil {
		return nil, err
	}
	return clientv3.GetStreamToGetResponse(ch)
}

// chunks reads a RangeStream to its end and returns its chunks.
func chunks(t *testing.T, ch clientv3.GetStreamChan, err error) []clientv3.RangeStreamResponse {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	var out []clientv3.RangeStreamResponse
	for r := range ch {
		if err := r.Err(); err != nil {
			t.Fatalf("stream: %v", err)
		}
		out = append(out, r)
	}
	return out
}

// TestRangeStream checks that RangeStream's chunks merge into Range's
// answer: keys split over several messages in order, the header, more
// and count on the last one only, with Range's options.
func TestRangeStream(t *testing.T) {
	c, eps := startCluster(t, 3)
	follower := c.Others(c.WaitLeader(t, 10*time.Second))[0]
	cli := newClient(t, eps[follower])
	ctx := ctxT(t)

	const n = 2500 // more than two chunks of streamChunkKeys
	for i := 0; i < n; i += 100 {
		var ops []clientv3.Op
		for j := i; j < i+100; j++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("s/%05d", j), fmt.Sprintf("v%d", j)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	// Three values of 600 KB: the byte bound splits them.
	big := strings.Repeat("x", 600<<10)
	for i := range 3 {
		if _, err := cli.Put(ctx, fmt.Sprintf("t/%d", i), big); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name       string
		key        string
		opts       []clientv3.OpOption
		wantChunks int
	}{
		{"prefix", "s/", []clientv3.OpOption{clientv3.WithPrefix()}, 3},
		{"limit and descending", "s/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(1500), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}, 2},
		{"keys only", "s/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly()}, 3},
		{"count only", "s/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}, 1},
		{"serializable", "s/00001", []clientv3.OpOption{clientv3.WithSerializable()}, 1},
		{"missing key", "nothing", nil, 1},
		{"big values", "t/", []clientv3.OpOption{clientv3.WithPrefix()}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := cli.GetStream(ctx, tc.key, tc.opts...)
			got := chunks(t, ch, err)
			if len(got) != tc.wantChunks {
				t.Fatalf("%d chunks, want %d", len(got), tc.wantChunks)
			}
			for i, r := range got[:len(got)-1] {
				if r.Header != nil || r.Count != 0 || r.More || len(r.Kvs) == 0 {
					t.Fatalf("chunk %d of %d: header %v count %d more %v, %d keys", i, len(got), r.Header, r.Count, r.More, len(r.Kvs))
				}
			}
			if got[len(got)-1].Header == nil {
				t.Fatal("no header on the last chunk")
			}
			merged, err := getStream(cli.GetStream(ctx, tc.key, tc.opts...))
			if err != nil {
				t.Fatal(err)
			}
			want, err := cli.Get(ctx, tc.key, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if !sameRange(merged, want) {
				t.Fatalf("merged chunks differ from Range: %d keys (count %d, more %v) against %d (count %d, more %v)",
					len(merged.Kvs), merged.Count, merged.More, len(want.Kvs), want.Count, want.More)
			}
		})
	}

	// An older revision is read as Range reads it; a future one is etcd's error.
	cur, err := cli.Get(ctx, "s/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "s/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	old, err := getStream(cli.GetStream(ctx, "s/", clientv3.WithPrefix(), clientv3.WithRev(cur.Header.Revision)))
	if err != nil || len(old.Kvs) != n {
		t.Fatalf("at revision %d: %v, %v", cur.Header.Revision, err, old)
	}
	_, err = getStream(cli.GetStream(ctx, "s/", clientv3.WithRev(cur.Header.Revision+1000)))
	if !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("at a future revision: %v", err)
	}
	if _, err := getStream(cli.GetStream(ctx, "")); !errors.Is(err, rpctypes.ErrEmptyKey) {
		t.Fatalf("empty key: %v", err)
	}
}

// sameRange reports whether a and b hold the same keys, values,
// revisions, count and more (headers aside).
func sameRange(a, b *clientv3.GetResponse) bool {
	if a.Count != b.Count || a.More != b.More || len(a.Kvs) != len(b.Kvs) {
		return false
	}
	for i := range a.Kvs {
		x, y := a.Kvs[i], b.Kvs[i]
		if string(x.Key) != string(y.Key) || string(x.Value) != string(y.Value) || x.ModRevision != y.ModRevision ||
			x.CreateRevision != y.CreateRevision || x.Version != y.Version || x.Lease != y.Lease {
			return false
		}
	}
	return true
}
