package storage

import (
	"bytes"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// TestPebbleMemTableBounded writes a node's log the way a node does (64
// entries of ~150 B a batch, the log compacted to 5,000 entries below
// every 1,000th) and checks that pebble's memtables, which hold every
// entry written since the last flush, compacted or not, stay within two
// of DefaultMemTableSize and within 8 MiB.
func TestPebbleMemTableBounded(t *testing.T) {
	p := openPebble(t, t.TempDir())
	defer func() {
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	const (
		total   = 100_000
		batch   = 64
		keep    = 5000
		every   = 1000
		dataLen = 150
	)
	data := bytes.Repeat([]byte{'v'}, dataLen)
	var peak uint64
	for next := uint64(1); next <= total; {
		es := make([]*raftpb.Entry, 0, batch)
		for range batch {
			es = append(es, &raftpb.Entry{Term: proto.Uint64(1), Index: proto.Uint64(next), Data: data})
			next++
		}
		if err := p.Save(hardState(1, 1, next-1), es, nil); err != nil {
			t.Fatal(err)
		}
		if (next-1)/every != (next-1-batch)/every && next-1 > keep {
			if err := p.Compact(next - 1 - keep); err != nil {
				t.Fatal(err)
			}
		}
		m := p.db.Metrics()
		peak = max(peak, m.MemTable.Size)
	}
	m := p.db.Metrics()
	t.Logf("memtables: peak %d B, now %d B in %d; block cache %d B", peak, m.MemTable.Size, m.MemTable.Count, m.BlockCache.Size)
	// 20 MB were written: memtables as large as that (32 MiB each, the
	// old default) would hold all of it in memory.
	if peak > 2*DefaultMemTableSize || peak > 8<<20 {
		t.Fatalf("memtables reached %d B, want at most %d", peak, min(2*DefaultMemTableSize, 8<<20))
	}
}
