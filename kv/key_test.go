package kv

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"a/b:c d", true},
		{"é✓日本", true},
		{"\u00a0", true},     // no-break space: Zs, not Cc
		{"a\u200bb", true},   // zero-width space: Cf, not Cc
		{"a\u2028b", true},   // line separator: Zl, not Cc
		{"\U0001F600", true}, // outside the BMP
		{strings.Repeat("k", 16), true},
		{"", false},
		{"\x00", false},
		{"a\x00b", false},
		{"a\nb", false},
		{"\r", false},
		{"\t", false},
		{"\x1b[31m", false},
		{"\x7f", false},    // DEL
		{"a\u0085", false}, // NEL, C1
		{"\u009f", false},  // last of C1
		{"\xff", false},    // invalid UTF-8
		{"a\xc3", false},   // truncated UTF-8
		{strings.Repeat("k", 17), false},
	}
	for _, tt := range tests {
		err := ValidateKey(tt.key, 16)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateKey(%q) = %v, want ok %v", tt.key, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v, not ErrInvalidKey", tt.key, err)
		}
		// A key the state may hold, and a prefix, are any bytes within
		// the limit (etcd's rule); a prefix may be empty.
		storedOK := tt.key != "" && len(tt.key) <= 16
		if err := ValidateStoredKey(tt.key, 16); (err == nil) != storedOK {
			t.Errorf("ValidateStoredKey(%q) = %v, want ok %v", tt.key, err, storedOK)
		} else if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateStoredKey(%q) = %v, not ErrInvalidKey", tt.key, err)
		}
		perr := ValidatePrefix(tt.key, 16)
		if wantOK := len(tt.key) <= 16; (perr == nil) != wantOK {
			t.Errorf("ValidatePrefix(%q) = %v, want ok %v", tt.key, perr, wantOK)
		}
		if perr != nil && !errors.Is(perr, ErrInvalidKey) {
			t.Errorf("ValidatePrefix(%q) = %v, not ErrInvalidKey", tt.key, perr)
		}
	}
	if err := ValidateKey("a\nb", 16); err == nil || !strings.Contains(err.Error(), "U+000A") {
		t.Errorf("message does not name the character: %v", err)
	}
}

// TestStoreRefusesControlCharacterKeys checks every Store method that
// writes a key, or takes an id: a control character is ErrInvalidKey, and
// nothing reaches the log. Reads, deletes, lists and watches take any key
// the state may hold (TestStoreReadsBinaryKeys).
func TestStoreRefusesControlCharacterKeys(t *testing.T) {
	s, l := newLocalStore()
	ctx := context.Background()
	const bad = "a\x00b"
	calls := map[string]func() error{
		"Put": func() error { _, err := s.Put(ctx, bad, []byte(`1`)); return err },
		"PutIf": func() error {
			_, err := s.PutIf(ctx, "a\nb", []byte(`1`), IfRevision(0))
			return err
		},
		"Batch": func() error {
			_, err := s.Batch(ctx, []Op{{Type: OpPut, Key: "ok", Value: []byte(`1`)}, {Type: OpDelete, Key: bad}})
			return err
		},
		"Update": func() error {
			_, err := s.Update(ctx, bad, func(Item, bool) ([]byte, error) { return []byte(`1`), nil })
			return err
		},
		"StartWorkflow":       func() error { _, err := s.StartWorkflow(ctx, bad, nil); return err },
		"StopWorkflow":        func() error { _, err := s.StopWorkflow(ctx, bad, nil); return err },
		"UpdateWorkflowState": func() error { _, err := s.UpdateWorkflowState(ctx, bad, []byte(`{}`)); return err },
		"WorkflowState":       func() error { _, err := s.WorkflowState(ctx, bad, Local); return err },
		"RegisterNode":        func() error { _, err := s.RegisterNode(ctx, bad, nil); return err },
		"DeregisterNode":      func() error { _, err := s.DeregisterNode(ctx, bad); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s: err = %v, want ErrInvalidKey", name, err)
		}
	}
	if l.index != 0 {
		t.Errorf("%d command(s) reached the log; a refused key must be refused before proposing", l.index)
	}
	// The valid neighbours still work.
	if _, err := s.Put(ctx, "a b/é", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.List(ctx, "", Local); err != nil {
		t.Fatal(err)
	}
}

// TestApplyKeepsControlCharacterKeys checks that the rule is the API's, not
// apply's: an entry committed with such a key (before the rule) applies,
// survives a snapshot, and is listed, so replaying an old log gives the
// state it gave before.
func TestApplyKeepsControlCharacterKeys(t *testing.T) {
	m := NewMachine()
	keys := []string{"a\nb", "\x00", "c\u0085"}
	for i, k := range keys {
		r := m.Apply(uint64(i+1), mustCmd(t, command{Op: opPut, Key: k, Value: []byte(`1`)})).(Result)
		if r.Err != nil {
			t.Fatalf("apply put %q: %v", k, r.Err)
		}
	}
	batch := command{Op: opTxn, Ops: []txnOp{{Op: opPut, Key: "d\te", Value: []byte(`2`)}, {Op: opDelete, Key: "\x00"}}}
	if r := m.Apply(4, mustCmd(t, batch)).(Result); r.Err != nil {
		t.Fatalf("apply batch: %v", r.Err)
	}
	if r := m.Apply(5, mustCmd(t, command{Op: opWorkflowStart, Key: "w\x01", At: 1})).(Result); r.Err != nil {
		t.Fatalf("apply workflow start: %v", r.Err)
	}

	restored := NewMachine()
	if err := restored.Restore(consensus.Position{}, bytes.NewReader(snapshotBytes(t, m))); err != nil {
		t.Fatalf("restore a snapshot holding control-character keys: %v", err)
	}
	items, _ := restored.List("")
	var got []string
	for _, it := range items {
		got = append(got, it.Key)
	}
	want := []string{"a\nb", "c\u0085", "d\te", WorkflowPrefix + "w\x01"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("restored keys %q, want %q", got, want)
	}
}

func TestCheckKeyAnyBytes(t *testing.T) {
	for _, k := range []string{"a", "\x00", "\x00\x00\x00\x00\x00\x00\x00\x00", "\xff", "a\xc3", "\x7f\n", strings.Repeat("\xfe", 16)} {
		if err := checkKey(k, 16); err != nil {
			t.Errorf("checkKey(%q) = %v, want ok: a key of the state is any bytes", k, err)
		}
	}
	for _, k := range []string{"", strings.Repeat("\x00", 17)} {
		if err := checkKey(k, 16); err == nil || !errors.Is(err, ErrInvalidKey) {
			t.Errorf("checkKey(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
	// Names (ids of workflows and nodes, locks, elections, queues) keep
	// the old apply rule: valid UTF-8.
	for _, k := range []string{"\xff", "a\xc3"} {
		if err := checkTextKey(k, 16); err == nil || !errors.Is(err, ErrInvalidKey) {
			t.Errorf("checkTextKey(%q) = %v, want ErrInvalidKey", k, err)
		}
		if r := NewMachine().Apply(1, mustCmd(t, command{Op: opWorkflowStart, Key: k, At: 1})).(Result); !errors.Is(r.Err, ErrInvalidKey) {
			t.Errorf("apply workflow start %q: %v, want ErrInvalidKey", k, r.Err)
		}
	}
}

// TestStoreBinaryKeys checks etcd's binary keys end to end in the state:
// written through EtcdTxn, ordered by their bytes, read, ranged, listed,
// watched, compared, deleted, and kept by a snapshot; our own write paths
// still refuse them.
func TestStoreBinaryKeys(t *testing.T) {
	s, _ := newLocalStore()
	ctx := context.Background()
	// The keys etcd's benchmark tool writes: varints in a zeroed buffer.
	keys := []string{"\x00\x00\x00\x00\x00\x00\x00\x00", "\x00\xff", "\x02\x00\x00", "\xff\xfe", "a\x00b"}
	w, err := s.Watch(ctx, "\x00", 0)
	if err != nil {
		t.Fatalf("watch a binary prefix: %v", err)
	}
	defer w.Close()
	for _, k := range keys {
		if _, _, err := s.EtcdTxn(ctx, &EtcdTxn{Success: []EtcdOp{{Type: EtcdPut, Key: k, Value: EtcdStoredValue([]byte("v" + k))}}}); err != nil {
			t.Fatalf("etcd put %q: %v", k, err)
		}
	}
	for _, k := range keys {
		it, err := s.Get(ctx, k, Local)
		if err != nil || it.Key != k || string(EtcdValue(it.Value)) != "v"+k {
			t.Fatalf("get %q = %q %q, %v", k, it.Key, EtcdValue(it.Value), err)
		}
	}
	// [\x00, \x01): the two keys starting with NUL, in byte order.
	got, _ := s.Machine().EtcdRange("\x00", "\x01")
	if len(got) != 2 || got[0].Key != keys[0] || got[1].Key != keys[1] {
		t.Fatalf("range [\\x00, \\x01) = %v", got)
	}
	all, _ := s.Machine().EtcdRange("\x00", EtcdRangeAll)
	var order []string
	for _, it := range all {
		order = append(order, it.Key)
	}
	if want := []string{keys[0], keys[1], keys[2], keys[4], keys[3]}; strings.Join(order, "|") != strings.Join(want, "|") {
		t.Fatalf("keys in order %q, want byte order %q", order, want)
	}
	if items, _, err := s.List(ctx, "\x00", Local); err != nil || len(items) != 2 {
		t.Fatalf("list prefix \\x00: %d items, %v", len(items), err)
	}
	page, err := s.ListPage(ctx, "", Local, ListOptions{Start: keys[2], Limit: 10})
	if err != nil || len(page.Items) != 3 || page.Items[0].Key != keys[2] {
		t.Fatalf("list page from %q: %v, %v", keys[2], page.Items, err)
	}
	var seen []string
	deadline := time.After(10 * time.Second)
	for len(seen) < 2 {
		select {
		case resp := <-w.C():
			for _, ev := range resp.Events {
				seen = append(seen, ev.Item.Key)
			}
		case <-deadline:
			t.Fatalf("watch of prefix \\x00 saw %q in 10s, want 2 events", seen)
		}
	}
	if want := keys[:2]; strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Fatalf("watch of prefix \\x00 saw %q, want %q", seen, want)
	}
	// A compare on a binary key, then a delete through our API.
	res, _, err := s.EtcdTxn(ctx, &EtcdTxn{
		Compares: []EtcdCompare{{Key: keys[3], Target: EtcdTargetValue, Result: EtcdEqual, Value: []byte("v" + keys[3])}},
		Success:  []EtcdOp{{Type: EtcdDelete, Key: keys[3]}},
	})
	if err != nil || !res.Succeeded || res.Responses[0].Deleted != 1 {
		t.Fatalf("txn compare on %q: %+v, %v", keys[3], res, err)
	}
	if _, err := s.Delete(ctx, keys[4]); err != nil {
		t.Fatalf("delete %q: %v", keys[4], err)
	}
	// Our own writes keep their rule.
	if _, err := s.Put(ctx, "\xff", []byte(`1`)); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("Put of a binary key: %v, want ErrInvalidKey", err)
	}
	// A snapshot keeps the keys byte for byte.
	restored := NewMachine()
	if err := restored.Restore(consensus.Position{}, bytes.NewReader(snapshotBytes(t, s.Machine()))); err != nil {
		t.Fatalf("restore a snapshot holding binary keys: %v", err)
	}
	items, _ := restored.List("")
	order = order[:0]
	for _, it := range items {
		order = append(order, it.Key)
	}
	if want := keys[:3]; strings.Join(order, "|") != strings.Join(want, "|") {
		t.Fatalf("restored keys %q, want %q", order, want)
	}
}
