package consensus

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// FuzzReadNodeState feeds arbitrary bytes to the decoder of a snapshot's
// node section: it must return an error or a state within the dedup
// table's bounds, never panic or allocate what a length field claims.
func FuzzReadNodeState(f *testing.F) {
	good, err := msgpack.Marshal(&nodeSnapshotState{
		Members: []Member{{ID: "n1", PeerAddr: "127.0.0.1:1", Voter: true}},
		Removed: []uint64{7},
		Dedup:   []dedupRecord{{Proposer: 1, Floor: 2, MaxSeq: 5, LastIndex: 9, Seen: []uint64{3, 5}}},
	})
	if err != nil {
		f.Fatal(err)
	}
	frame := func(state []byte) []byte {
		b := append([]byte(nil), nodeSnapMagic[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(state)))
		return append(b, state...)
	}
	f.Add(frame(good))
	f.Add(frame(nil))
	f.Add(append(nodeSnapMagic[:], 0xff, 0xff, 0xff, 0xff))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := readNodeState(bytes.NewReader(b))
		if err != nil {
			return
		}
		if err := checkDedupRecords(st.Dedup); err != nil {
			t.Fatalf("accepted a dedup table out of bounds: %v", err)
		}
		var d proposalDedup
		d.restore(st.Dedup)
		if again := d.records(); len(again) > len(st.Dedup) {
			t.Fatalf("restore grew the table: %d > %d", len(again), len(st.Dedup))
		}
	})
}
