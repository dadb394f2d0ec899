package kv

import (
	"testing"
)

// Two machines that applied the same entries hash alike at a hash check;
// one whose value flipped outside the log does not; a machine keeps its
// four most recent hashes, oldest first.
func TestStateHashes(t *testing.T) {
	a, b := NewMachine(), NewMachine()
	apply := func(index uint64, c command) {
		for _, m := range []*Machine{a, b} {
			if r := m.Apply(index, appendCommand(nil, &c)).(Result); r.Err != nil {
				t.Fatalf("apply %d: %v", index, r.Err)
			}
		}
	}
	apply(1, command{Op: opPut, Key: "k", Value: []byte(`10`)})
	apply(2, command{Op: opPut, Key: "j", Value: []byte(`"x"`)})
	apply(3, command{Op: opHashCheck})
	a.WaitHashes()
	b.WaitHashes()
	ha, hb := a.StateHashes(), b.StateHashes()
	if len(ha) != 1 || ha[0].Index != 3 || len(ha[0].Hash) != 64 || ha[0] != hb[0] {
		t.Fatalf("equal states hashed %v and %v", ha, hb)
	}
	if !b.FlipValueForTest("k") || b.FlipValueForTest("absent") {
		t.Fatal("FlipValueForTest found the wrong keys")
	}
	if it, _ := b.Get("k"); string(it.Value) != "11" {
		t.Fatalf("flipped value %q", it.Value)
	}
	apply(4, command{Op: opHashCheck})
	a.WaitHashes()
	b.WaitHashes()
	ha, hb = a.StateHashes(), b.StateHashes()
	if len(ha) != 2 || ha[1].Index != 4 || ha[1] == hb[1] || ha[0] != hb[0] {
		t.Fatalf("after a flip: %v and %v", ha, hb)
	}
	if r := a.Apply(5, appendCommand(nil, &command{Op: opHashCheck})).(Result); r.Revision != 2 {
		t.Fatalf("a hash check changed the revision to %d", r.Revision)
	}
	for i := uint64(6); i < 10; i++ {
		a.Apply(i, appendCommand(nil, &command{Op: opHashCheck}))
	}
	a.WaitHashes()
	got := a.StateHashes()
	if len(got) != 4 || got[0].Index != 6 || got[3].Index != 9 {
		t.Fatalf("recent hashes %v, want indexes 6 to 9", got)
	}
}
