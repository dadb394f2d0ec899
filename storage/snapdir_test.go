package storage

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func writeSnap(t *testing.T, d *SnapshotDir, index, term uint64, data []byte) {
	t.Helper()
	s, err := d.Create(index, term)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
}

func readSnap(d *SnapshotDir, index, term uint64) ([]byte, error) {
	r, size, err := d.Open(index, term)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err == nil && int64(len(b)) != size {
		return nil, errors.New("size disagrees with the data")
	}
	return b, err
}

func TestSnapshotDirRoundTripAndPrune(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenSnapshotDir(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 200_000) // 3.2 MB, several buffers
	for i := uint64(1); i <= 5; i++ {
		writeSnap(t, d, i*100, 2, append([]byte{byte(i)}, big...))
	}
	got, err := readSnap(d, 300, 2)
	if err != nil || got[0] != 3 || !bytes.Equal(got[1:], big) {
		t.Fatalf("read snapshot 300: %d bytes, %v", len(got), err)
	}
	if _, err := readSnap(d, 300, 3); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("wrong term: err %v, want fs.ErrNotExist", err)
	}
	// An aborted snapshot leaves nothing behind.
	s, err := d.Create(600, 2)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = s.Write([]byte("partial"))
	s.Abort()
	if err := d.Prune(400, 2); err != nil {
		t.Fatal(err)
	}
	list, err := d.List()
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]uint64{{300, 2}, {400, 2}, {500, 2}}
	if len(list) != len(want) {
		t.Fatalf("after prune: %v, want %v", list, want)
	}
	for i := range want {
		if list[i] != want[i] {
			t.Fatalf("after prune: %v, want %v", list, want)
		}
	}
	for _, e := range mustReadDir(t, dir) {
		if info, _ := e.Info(); info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
}

func mustReadDir(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// A torn or damaged snapshot file is refused with ErrCorrupt, never read.
func TestSnapshotDirDetectsDamage(t *testing.T) {
	data := bytes.Repeat([]byte("state"), 10_000)
	damage := map[string]func(b []byte) []byte{
		"torn write":       func(b []byte) []byte { return b[:len(b)/2] },
		"missing trailer":  func(b []byte) []byte { return b[:len(b)-snapTrailerLen] },
		"flipped data bit": func(b []byte) []byte { b[snapHeaderLen+100] ^= 0x10; return b },
		"flipped header":   func(b []byte) []byte { b[9] ^= 1; return b },
		"empty file":       func([]byte) []byte { return nil },
		"trailing garbage": func(b []byte) []byte { return append(b, 0) },
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			d, err := OpenSnapshotDir(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			writeSnap(t, d, 10, 1, data)
			path := filepath.Join(dir, snapName(10, 1))
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, f(b), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := readSnap(d, 10, 1); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

// A crash mid-write leaves a temporary file, which reopening removes; it
// is never mistaken for a snapshot.
func TestSnapshotDirRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenSnapshotDir(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := d.Create(5, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("half")); err != nil {
		t.Fatal(err)
	}
	// No Commit or Abort: the process "dies" here.
	if _, err := OpenSnapshotDir(dir, nil); err != nil {
		t.Fatal(err)
	}
	if es := mustReadDir(t, dir); len(es) != 0 {
		t.Fatalf("leftovers after reopen: %v", es)
	}
	if _, err := readSnap(d, 5, 1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("uncommitted snapshot: err %v, want fs.ErrNotExist", err)
	}
}
