package storage

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestCatchFatal: a pebble Fatalf raised while a method runs becomes an
// error wrapping ErrCorrupt; a write's poisons the store (catchFatal with
// write, and catchFatalUnlocked, which takes mu itself), a read's does
// not; any other panic goes on.
func TestCatchFatal(t *testing.T) {
	newStore := func() *Pebble { return &Pebble{dir: "d", log: slog.New(slog.DiscardHandler)} }
	raise := func() { pebbleLogger{l: slog.New(slog.DiscardHandler)}.Fatalf("wal %s", "broken") }
	for _, tt := range []struct {
		name   string
		run    func(p *Pebble) error
		poison bool
	}{
		{"read", func(p *Pebble) (err error) { defer p.catchFatal(&err, false); raise(); return nil }, false},
		{"write", func(p *Pebble) (err error) { defer p.catchFatal(&err, true); raise(); return nil }, true},
		{"unlocked write", func(p *Pebble) (err error) { defer p.catchFatalUnlocked(&err); raise(); return nil }, true},
	} {
		p := newStore()
		err := tt.run(p)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "storage: d: pebble failed: wal broken") {
			t.Errorf("%s: err %v, want ErrCorrupt naming the directory and pebble's message", tt.name, err)
		}
		if poisoned := p.failed != nil; poisoned != tt.poison {
			t.Errorf("%s: store poisoned %v, want %v", tt.name, poisoned, tt.poison)
		}
		if tt.poison && !errors.Is(p.failed, ErrCorrupt) {
			t.Errorf("%s: failed %v, want the same error", tt.name, p.failed)
		}
	}
	for _, unlocked := range []bool{false, true} {
		func() {
			defer func() {
				if r := recover(); r != "a bug" {
					t.Errorf("unlocked %v: recovered %v, want the bug's panic to go on", unlocked, r)
				}
			}()
			p := newStore()
			var err error
			func() {
				if unlocked {
					defer p.catchFatalUnlocked(&err)
				} else {
					defer p.catchFatal(&err, true)
				}
				panic("a bug")
			}()
			t.Errorf("unlocked %v: the panic was swallowed (err %v)", unlocked, err)
		}()
	}
}
