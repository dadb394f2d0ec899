package kv

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"
)

func TestEtcdValueRoundTrip(t *testing.T) {
	cases := []struct {
		etcd, stored string
	}{
		{"hello", `"hello"`},
		{"", `""`},
		{`{"a":1}`, `{"a":1}`},
		{"12", "12"},
		{" true ", " true "},
		{`"quoted"`, `"\"quoted\""`},
		{"a\nb\x00", `"a\u000ab\u0000"`},
		{"\xff\xfe", `"\udcff\udcfe"`},
		{"h\u00e9\U0001F600", "\"h\u00e9\U0001F600\""},
		{"{not json", `"{not json"`},
	}
	for _, c := range cases {
		stored := EtcdStoredValue([]byte(c.etcd))
		if string(stored) != c.stored {
			t.Errorf("EtcdStoredValue(%q) = %s, want %s", c.etcd, stored, c.stored)
		}
		if !json.Valid(stored) {
			t.Errorf("EtcdStoredValue(%q) = %s is not JSON", c.etcd, stored)
		}
		if back := EtcdValue(stored); string(back) != c.etcd {
			t.Errorf("EtcdValue(%s) = %q, want %q", stored, back, c.etcd)
		}
	}
	// A JSON string written over HTTP reads as its text, escapes decoded.
	if got := EtcdValue([]byte(`"a\u0062\ud83d\ude00"`)); string(got) != "ab\U0001F600" {
		t.Errorf("EtcdValue of an escaped string = %q", got)
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := 0; i < 2000; i++ {
		b := make([]byte, rng.IntN(12))
		for j := range b {
			b[j] = byte(rng.IntN(256))
		}
		stored := EtcdStoredValue(b)
		if !json.Valid(stored) {
			t.Fatalf("EtcdStoredValue(%q) = %q is not JSON", b, stored)
		}
		if back := EtcdValue(stored); !bytes.Equal(back, b) {
			t.Fatalf("round trip of %q gave %q (stored %q)", b, back, stored)
		}
	}
}

func applyEtcd(t *testing.T, m *Machine, index uint64, txn *EtcdTxn) Result {
	t.Helper()
	return m.Apply(index, mustCmd(t, command{Op: opEtcdTxn, Etcd: txn})).(Result)
}

func TestEtcdTxnApply(t *testing.T) {
	m := NewMachine()
	put := func(k, v string) EtcdOp {
		return EtcdOp{Type: EtcdPut, Key: k, Value: EtcdStoredValue([]byte(v))}
	}
	r := applyEtcd(t, m, 1, &EtcdTxn{Success: []EtcdOp{put("a", "1"), put("b", "x")}})
	if r.Err != nil || r.Revision != 1 || !r.Etcd.Succeeded {
		t.Fatalf("first txn: %+v", r)
	}
	// A compare on create revision 0 of a missing key holds; on a value of
	// a missing key it fails.
	r = applyEtcd(t, m, 2, &EtcdTxn{
		Compares: []EtcdCompare{{Key: "c", Target: EtcdTargetCreate, Result: EtcdEqual}},
		Success: []EtcdOp{put("c", "y"), {Type: EtcdNested, Txn: &EtcdTxn{
			Compares: []EtcdCompare{{Key: "b", Target: EtcdTargetValue, Result: EtcdEqual, Value: []byte("x")}},
			Success:  []EtcdOp{{Type: EtcdRange, Key: "a", End: EtcdRangeAll}},
		}}},
	})
	if r.Err != nil || r.Revision != 2 || !r.Etcd.Succeeded {
		t.Fatalf("second txn: %+v", r)
	}
	nested := r.Etcd.Responses[1].Txn
	if !nested.Succeeded || len(nested.Responses[0].Items) != 3 {
		t.Fatalf("nested txn: %+v", nested)
	}
	// A read-only transaction takes no revision; nor does a delete of nothing.
	r = applyEtcd(t, m, 3, &EtcdTxn{
		Compares: []EtcdCompare{{Key: "zz", Target: EtcdTargetValue, Result: EtcdEqual}},
		Failure:  []EtcdOp{{Type: EtcdDelete, Key: "q", End: "r"}, {Type: EtcdRange, Key: "a"}},
	})
	if r.Err != nil || r.Revision != 2 || r.Etcd.Succeeded || r.Etcd.Responses[1].Items[0].Key != "a" {
		t.Fatalf("read-only txn: %+v", r)
	}
	// A delete range with prev_kv; one revision for all.
	r = applyEtcd(t, m, 4, &EtcdTxn{Success: []EtcdOp{{Type: EtcdDelete, Key: "a", End: "c", PrevKV: true}}})
	if r.Err != nil || r.Revision != 3 || r.Etcd.Responses[0].Deleted != 2 || len(r.Etcd.Responses[0].Items) != 2 {
		t.Fatalf("delete range: %+v", r)
	}
	// All or nothing: a put with a missing lease fails the whole txn.
	r = applyEtcd(t, m, 5, &EtcdTxn{Success: []EtcdOp{put("d", "1"), {Type: EtcdPut, Key: "e", Value: []byte("1"), Lease: 99}}})
	if !errors.Is(r.Err, ErrLeaseNotFound) {
		t.Fatalf("missing lease: %+v", r)
	}
	if _, ok := m.Get("d"); ok || m.Revision() != 3 {
		t.Fatalf("a failed txn changed the state")
	}
	// Duplicate keys and a put that ignores the value of a missing key.
	for _, txn := range []*EtcdTxn{
		{Success: []EtcdOp{put("d", "1"), put("d", "2")}},
		{Success: []EtcdOp{put("d", "1"), {Type: EtcdDelete, Key: "a", End: EtcdRangeAll}}},
	} {
		if r := applyEtcd(t, m, 6, txn); !errors.Is(r.Err, ErrInvalidBatch) {
			t.Fatalf("duplicate keys: %+v", r)
		}
	}
	if r := applyEtcd(t, m, 7, &EtcdTxn{Success: []EtcdOp{{Type: EtcdPut, Key: "zz", IgnoreValue: true}}}); !errors.Is(r.Err, ErrKeyNotFound) {
		t.Fatalf("ignore_value on a missing key: %+v", r)
	}
	r = applyEtcd(t, m, 8, &EtcdTxn{Success: []EtcdOp{{Type: EtcdPut, Key: "c", IgnoreValue: true, PrevKV: true}}})
	if it, _ := m.Get("c"); r.Err != nil || string(it.Value) != `"y"` || it.Version != 2 || len(r.Etcd.Responses[0].Items) != 1 {
		t.Fatalf("ignore_value: %+v %+v", r, it)
	}
}

// TestEtcdReadTxn: a read-only transaction is evaluated locally at one
// revision, its ranges at older revisions from the history; one that
// writes is refused, and so is a range at a revision in a replicated one.
func TestEtcdReadTxn(t *testing.T) {
	m := NewMachine()
	put := func(k, v string) EtcdOp {
		return EtcdOp{Type: EtcdPut, Key: k, Value: EtcdStoredValue([]byte(v))}
	}
	for i, v := range []string{"1", "2", "3"} {
		if r := applyEtcd(t, m, uint64(i+1), &EtcdTxn{Success: []EtcdOp{put("a", v)}}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	txn := &EtcdTxn{
		Compares: []EtcdCompare{{Key: "a", Target: EtcdTargetVersion, Result: EtcdEqual, Number: 3}},
		Success: []EtcdOp{
			{Type: EtcdRange, Key: "a", Revision: 1},
			{Type: EtcdNested, Txn: &EtcdTxn{Failure: []EtcdOp{{Type: EtcdRange, Key: "a"}}, Compares: []EtcdCompare{{Key: "a", Target: EtcdTargetMod, Result: EtcdLess, Number: 3}}}},
		},
	}
	if !txn.ReadOnly() {
		t.Fatal("a transaction of ranges is not read-only")
	}
	res, rev, err := m.EtcdReadTxn(txn)
	if err != nil || rev != 3 || !res.Succeeded {
		t.Fatalf("read txn: %+v %d %v", res, rev, err)
	}
	if it := res.Responses[0].Items; len(it) != 1 || string(EtcdValue(it[0].Value)) != "1" || it[0].Revision != 1 {
		t.Fatalf("range at revision 1: %+v", it)
	}
	if n := res.Responses[1].Txn; n.Succeeded || string(EtcdValue(n.Responses[0].Items[0].Value)) != "3" {
		t.Fatalf("nested: %+v", n)
	}
	if _, _, err := m.EtcdReadTxn(&EtcdTxn{Success: []EtcdOp{{Type: EtcdRange, Key: "a", Revision: 9}}}); !errors.Is(err, ErrFutureRevision) {
		t.Fatalf("range at a future revision: %v", err)
	}
	writes := &EtcdTxn{Failure: []EtcdOp{{Type: EtcdNested, Txn: &EtcdTxn{Success: []EtcdOp{put("b", "1")}}}}}
	if writes.ReadOnly() {
		t.Fatal("a transaction with a nested put is read-only")
	}
	if _, _, err := m.EtcdReadTxn(writes); !errors.Is(err, ErrInvalidBatch) {
		t.Fatalf("read txn that writes: %v", err)
	}
	if m.Revision() != 3 {
		t.Fatalf("revision %d after read-only transactions, want 3", m.Revision())
	}
	s := &Store{machine: m}
	atRev := &EtcdTxn{Success: []EtcdOp{put("b", "1"), {Type: EtcdNested, Txn: &EtcdTxn{Success: []EtcdOp{{Type: EtcdRange, Key: "a", Revision: 1}}}}}}
	if err := s.checkEtcdTxn(atRev, 0); !errors.Is(err, ErrInvalidBatch) {
		t.Fatalf("a replicated transaction with a range at a revision: %v", err)
	}
}
