package consensus

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// A seed snapshot decodes as the node reads snapshots: the peers as
// voting members, nothing removed, an empty dedup table, then the state
// machine's bytes untouched; and equal inputs give equal bytes.
func TestWriteSeedSnapshot(t *testing.T) {
	peers := map[string]string{"b": "127.0.0.1:2", "a": "127.0.0.1:1", "c": "127.0.0.1:3"}
	state := []byte("state machine bytes")
	var first []byte
	for range 3 {
		var buf bytes.Buffer
		n, err := WriteSeedSnapshot(&buf, peers, bytes.NewReader(state))
		if err != nil || n != int64(buf.Len()) {
			t.Fatalf("wrote %d of %d: %v", n, buf.Len(), err)
		}
		if first == nil {
			first = bytes.Clone(buf.Bytes())
		} else if !bytes.Equal(first, buf.Bytes()) {
			t.Fatal("not deterministic")
		}
		st, err := readNodeState(&buf)
		if err != nil {
			t.Fatal(err)
		}
		want := []Member{{ID: "a", PeerAddr: "127.0.0.1:1", Voter: true}, {ID: "b", PeerAddr: "127.0.0.1:2", Voter: true}, {ID: "c", PeerAddr: "127.0.0.1:3", Voter: true}}
		if !slices.Equal(st.Members, want) || len(st.Removed) != 0 || len(st.Dedup) != 0 || buf.String() != string(state) {
			t.Fatalf("decoded %+v, rest %q", st, buf.String())
		}
	}
	if _, err := WriteSeedSnapshot(&bytes.Buffer{}, nil, strings.NewReader("")); err == nil {
		t.Fatal("no members accepted")
	}
	if _, err := WriteSeedSnapshot(&bytes.Buffer{}, map[string]string{"a": ""}, strings.NewReader("")); err == nil {
		t.Fatal("a member without an address accepted")
	}
	cs := SeedConfState(peers)
	if len(cs.GetVoters()) != 3 || !slices.IsSorted(cs.GetVoters()) || len(cs.GetLearners()) != 0 {
		t.Fatalf("conf state %v", cs)
	}
	id := RestoredClusterID(peers, 1)
	if id == 0 || id == ClusterID(peers) || id == RestoredClusterID(peers, 2) || id != RestoredClusterID(peers, 1) {
		t.Fatalf("restored cluster id %x (bootstrapped %x)", id, ClusterID(peers))
	}
}
