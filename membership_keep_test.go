package consensus

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// TestKeepLearnerInNodeState: the learners kept from automatic promotion
// are part of a snapshot's node state, and a state written without them
// (an older snapshot) reads as none.
func TestKeepLearnerInNodeState(t *testing.T) {
	frame := func(st *nodeSnapshotState) []byte {
		t.Helper()
		b, err := st.encode()
		if err != nil {
			t.Fatal(err)
		}
		out := append([]byte(nil), nodeSnapMagic[:]...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(b)))
		return append(out, b...)
	}
	members := []Member{{ID: "n1", PeerAddr: "127.0.0.1:1", Voter: true}, {ID: "n2", PeerAddr: "127.0.0.1:2"}}
	got, err := readNodeState(bytes.NewReader(frame(&nodeSnapshotState{Members: members, KeepLearner: []uint64{RaftID("n2")}})))
	if err != nil || !slices.Equal(got.KeepLearner, []uint64{RaftID("n2")}) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	// Without learners kept, the encoding is the one before the field.
	type before struct {
		Members []Member      `msgpack:"m"`
		Removed []uint64      `msgpack:"r"`
		Dedup   []dedupRecord `msgpack:"d"`
	}
	old, err := msgpack.Marshal(&before{Members: members})
	if err != nil {
		t.Fatal(err)
	}
	now, err := (&nodeSnapshotState{Members: members}).encode()
	if err != nil || !bytes.Equal(old, now) {
		t.Fatalf("encoding without kept learners changed: %x, before %x (%v)", now, old, err)
	}
	if got, err := readNodeState(bytes.NewReader(frame(&nodeSnapshotState{Members: members}))); err != nil || got.KeepLearner != nil {
		t.Fatalf("an older state: %+v %v", got, err)
	}
}
