package storage

import (
	"fmt"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// BenchmarkSave measures a synced append of a batch of 256-byte entries
// with a hard state, as the raft loop writes each Ready.
func BenchmarkSave(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("entries=%d", batch), func(b *testing.B) {
			p, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			data := make([]byte, 256)
			next := uint64(1)
			b.SetBytes(int64(batch * len(data)))
			b.ReportAllocs()
			for b.Loop() {
				es := make([]*raftpb.Entry, batch)
				for i := range es {
					es[i] = &raftpb.Entry{Index: proto.Uint64(next), Term: proto.Uint64(1), Data: data}
					next++
				}
				if err := p.Save(hardState(1, 1, next-1), es, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
