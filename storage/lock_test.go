package storage

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestLock: Lock conflicts with an open store both ways, names the
// directory, and refuses a directory that does not exist.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	p := openPebble(t, dir)
	if l, err := Lock(dir); err == nil {
		l.Close()
		t.Fatal("Lock of an open store succeeded")
	} else if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Lock of an open store: %v, want ErrLocked naming %s", err, dir)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	l, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if q, err := Open(dir, Options{}); err == nil {
		q.Close()
		t.Fatal("Open of a locked directory succeeded")
	} else if !errors.Is(err, ErrLocked) {
		t.Fatalf("Open of a locked directory: %v, want ErrLocked", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	openPebble(t, dir).Close()

	if _, err := Lock(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Lock of a missing directory: %v, want fs.ErrNotExist", err)
	}
}
