package kv

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

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
		// A prefix follows the same rules, but may be empty.
		perr := ValidatePrefix(tt.key, 16)
		if wantOK := tt.ok || tt.key == ""; (perr == nil) != wantOK {
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

// TestStoreRefusesControlCharacterKeys checks every Store method that takes
// a key, id or prefix: a control character is ErrInvalidKey, and nothing
// reaches the log.
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
		"Delete":   func() error { _, err := s.Delete(ctx, "\x7f"); return err },
		"DeleteIf": func() error { _, err := s.DeleteIf(ctx, "\u0085", IfRevision(1)); return err },
		"Batch": func() error {
			_, err := s.Batch(ctx, []Op{{Type: OpPut, Key: "ok", Value: []byte(`1`)}, {Type: OpDelete, Key: bad}})
			return err
		},
		"Update": func() error {
			_, err := s.Update(ctx, bad, func(Item, bool) ([]byte, error) { return []byte(`1`), nil })
			return err
		},
		"Get":     func() error { _, err := s.Get(ctx, bad, Local); return err },
		"Has":     func() error { _, err := s.Has(ctx, bad, Linearizable); return err },
		"List":    func() error { _, _, err := s.List(ctx, "a\x1b", Local); return err },
		"Keys":    func() error { _, _, err := s.Keys(ctx, "\t", Local); return err },
		"Entries": func() error { _, _, err := s.Entries(ctx, "\x00", Local); return err },
		"Values":  func() error { _, _, err := s.Values(ctx, "\n", Local); return err },
		"Watch": func() error {
			w, err := s.Watch(ctx, "a\r", 0)
			if w != nil {
				w.Close()
			}
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
