package storage

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func openPebble(t testing.TB, dir string) *Pebble {
	t.Helper()
	p, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// populate gives dir a store with a snapshot at 3 (term 1), entries 4..10
// with terms 1 1 2 2 2 3 3, hard state term 3 vote 2 commit 8, compacted
// to 4.
func populate(t testing.TB, dir string) {
	t.Helper()
	p := openPebble(t, dir)
	defer func() {
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	steps := []func() error{
		func() error { return p.Save(hardState(1, 1, 0), ents(1, 1, 1, 1, 1, 1), nil) },
		func() error { return p.Save(nil, nil, snapshot(3, 1, 1, 2, 3)) },
		func() error { return p.Save(hardState(3, 2, 8), ents(6, 2, 2, 2, 3, 3), nil) },
		func() error { return p.Compact(4) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("populate step %d: %v", i, err)
		}
	}
}

var populated = logWant{5, []uint64{1, 1, 2, 2, 2, 3, 3}}

func checkPopulated(t *testing.T, p *Pebble) {
	t.Helper()
	checkLog(t, p, populated)
	hs, cs, err := p.InitialState()
	if err != nil || !raftHardStateEqual(hs, hardState(3, 2, 8)) || len(cs.GetVoters()) != 3 {
		t.Fatalf("InitialState() = %v, %v, %v", hs, cs, err)
	}
	snap, err := p.Snapshot()
	if err != nil || !proto.Equal(snap, raftpb.EnsureSnapshot(snapshot(3, 1, 1, 2, 3))) {
		t.Fatalf("Snapshot() = %v, %v", snap, err)
	}
}

func TestPebbleReopen(t *testing.T) {
	dir := t.TempDir()
	populate(t, dir)
	for range 2 {
		p := openPebble(t, dir)
		checkPopulated(t, p)
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPebbleCrashRecovery copies the files of an open store, as a kill -9
// would leave them, and checks that every synced Save is in the copy.
func TestPebbleCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	populate(t, dir)
	p := openPebble(t, dir)
	defer p.Close()
	if err := p.Save(hardState(4, 4, 12), ents(11, 4, 4), nil); err != nil {
		t.Fatal(err)
	}
	crashed := copyDir(t, dir)
	q := openPebble(t, crashed)
	defer q.Close()
	checkLog(t, q, logWant{5, []uint64{1, 1, 2, 2, 2, 3, 3, 4, 4}})
	if hs, _, err := q.InitialState(); err != nil || !raftHardStateEqual(hs, hardState(4, 4, 12)) {
		t.Fatalf("InitialState() = %v, %v", hs, err)
	}
}

// copyDir copies the regular files of dir into a new directory, as a
// kill -9 would leave them. The store is live: Pebble deletes obsolete
// files (an old OPTIONS file, say) in the background, so a file listed may
// be gone when it is read. A copy that met one starts again from a fresh
// listing, so the copy is of one moment's set of files (issue 13: it failed
// once in 50 runs with "OPTIONS-000003: no such file or directory").
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	for range 100 {
		dst := t.TempDir()
		if copyFiles(t, dir, dst) {
			return dst
		}
	}
	t.Fatalf("copy %s: files kept vanishing while being copied", dir)
	return ""
}

// copyFiles copies dir's regular files into dst and reports false if one
// vanished between the listing and its read.
func copyFiles(t *testing.T, dir, dst string) bool {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, de.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return true
}

// openRaw opens the pebble database under a store, bypassing verification,
// so that a test can damage records.
func openRaw(t *testing.T, dir string) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{l: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func rawGet(t *testing.T, db *pebble.DB, key []byte) []byte {
	t.Helper()
	v, closer, err := db.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	return append([]byte(nil), v...)
}

func mustEncode(t *testing.T, m proto.Message) []byte {
	t.Helper()
	v, err := encodeProto(m)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPebbleCorruptRecord(t *testing.T) {
	flip := func(v []byte) []byte { v[len(v)-1] ^= 0x01; return v }
	set := func(key []byte, value func(t *testing.T, db *pebble.DB) []byte) func(*testing.T, *pebble.DB) {
		return func(t *testing.T, db *pebble.DB) {
			if err := db.Set(key, value(t, db), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
	}
	del := func(key []byte) func(*testing.T, *pebble.DB) {
		return func(t *testing.T, db *pebble.DB) {
			if err := db.Delete(key, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
	}
	value := func(v []byte) func(*testing.T, *pebble.DB) []byte {
		return func(*testing.T, *pebble.DB) []byte { return v }
	}
	tests := []struct {
		name   string
		damage func(*testing.T, *pebble.DB)
		want   string
	}{
		{"entry bit flip", set(entryKey(7), func(t *testing.T, db *pebble.DB) []byte { return flip(rawGet(t, db, entryKey(7))) }),
			"corrupt entry at index 7: checksum mismatch"},
		{"entry garbage", set(entryKey(7), value([]byte("garbage!"))), "corrupt entry at index 7: checksum mismatch"},
		{"entry shorter than its checksum", set(entryKey(7), value([]byte{1})), "corrupt entry at index 7: record of 1 bytes"},
		{"entry that does not decode", set(entryKey(7), value(encodeRecord([]byte{0xff, 0xff}))), "corrupt entry at index 7: undecodable"},
		{"entry under the wrong key", set(entryKey(7), func(t *testing.T, db *pebble.DB) []byte { return rawGet(t, db, entryKey(8)) }),
			"corrupt entry at index 7: record holds index 8"},
		{"missing entry", del(entryKey(7)), "corrupt entry at index 7: missing"},
		{"stray entry below the log start", set(entryKey(2), func(t *testing.T, _ *pebble.DB) []byte { return mustEncode(t, entry(2, 1)) }),
			"corrupt entry at index 5: missing (next stored entry is 2)"},
		{"term going back", set(entryKey(9), func(t *testing.T, _ *pebble.DB) []byte { return mustEncode(t, entry(9, 1)) }),
			"corrupt entry at index 9: term 1 is below the previous term 2"},
		{"malformed entry key", set([]byte{prefixEntry, 1}, value(encodeRecord(nil))), "corrupt entries: malformed key"},
		{"hard state bit flip", set(keyHardState, func(t *testing.T, db *pebble.DB) []byte { return flip(rawGet(t, db, keyHardState)) }),
			"corrupt hard state: checksum mismatch"},
		{"hard state committing past the log", set(keyHardState, func(t *testing.T, _ *pebble.DB) []byte { return mustEncode(t, hardState(3, 2, 11)) }),
			"corrupt hard state: commit index 11 is beyond the last index 10"},
		{"snapshot bit flip", set(keySnapshot, func(t *testing.T, db *pebble.DB) []byte { return flip(rawGet(t, db, keySnapshot)) }),
			"corrupt snapshot: checksum mismatch"},
		{"snapshot at index 0", set(keySnapshot, func(t *testing.T, _ *pebble.DB) []byte { return mustEncode(t, &raftpb.Snapshot{}) }),
			"corrupt snapshot: stored snapshot has index 0"},
		{"log start bit flip", set(keyLogStart, func(t *testing.T, db *pebble.DB) []byte { return flip(rawGet(t, db, keyLogStart)) }),
			"corrupt log start: checksum mismatch"},
		{"log start of the wrong size", set(keyLogStart, value(encodeRecord([]byte{1, 2, 3}))), "corrupt log start: log start record of 3 bytes"},
		{"log start missing", del(keyLogStart), "corrupt log start: missing"},
		// A log start behind the snapshot is legal (SetSnapshot keeps
		// entries below it) only if the log holds those entries.
		{"log start behind the snapshot without the entries", set(keyLogStart, value(encodeLogStart(logStart{index: 2, term: 1}))),
			"corrupt entry at index 3: missing"},
		{"log start disagreeing with the snapshot", set(keyLogStart, value(encodeLogStart(logStart{index: 3, term: 2}))),
			"corrupt log start: index 3 term 2 disagrees with the snapshot"},
		{"version bit flip", set(keyVersion, func(t *testing.T, db *pebble.DB) []byte { return flip(rawGet(t, db, keyVersion)) }),
			"corrupt format version: checksum mismatch"},
		{"unsupported version", set(keyVersion, value(encodeVersion(2))), "corrupt format version: unsupported version 2"},
		{"version missing", del(keyVersion), "corrupt format version: missing from a non-empty store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			populate(t, dir)
			db := openRaw(t, dir)
			tt.damage(t, db)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			p, err := Open(dir, Options{})
			if err == nil {
				p.Close()
				t.Fatal("Open succeeded on a damaged store")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("err %v, want ErrCorrupt", err)
			}
			if want := "storage: " + dir + ": " + tt.want; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("err %q, want it to start with %q", err, want)
			}
			// The failed Open released pebble and the directory lock.
			if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("second Open: err %v, want ErrCorrupt again", err)
			}
			openRaw(t, dir).Close()
		})
	}
}

// pebbleFiles lists dir's files whose names start with prefix and end with
// suffix, oldest (lowest number) first.
func pebbleFiles(t *testing.T, dir, prefix, suffix string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if n := de.Name(); strings.HasPrefix(n, prefix) && strings.HasSuffix(n, suffix) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		t.Fatalf("no %s*%s file in %s", prefix, suffix, dir)
	}
	return out
}

func newest(t *testing.T, dir, prefix, suffix string) string {
	fs := pebbleFiles(t, dir, prefix, suffix)
	return fs[len(fs)-1]
}

func xorRange(t *testing.T, path string, from, to float64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := int(float64(len(b)) * from); i < int(float64(len(b))*to); i++ {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func truncateHalf(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// TestPebbleDamagedFiles damages pebble's own files. Open must fail with
// an error naming the directory (never panic), wrapping ErrCorrupt where
// pebble says the damage is corruption.
func TestPebbleDamagedFiles(t *testing.T) {
	tests := []struct {
		name string
		// damage returns the directory to open: dir itself, or a copy.
		damage  func(t *testing.T, dir string, open *Pebble) string
		corrupt bool
	}{
		{"MANIFEST truncated", func(t *testing.T, dir string, _ *Pebble) string {
			truncateHalf(t, newest(t, dir, "MANIFEST-", ""))
			return dir
		}, true},
		{"MANIFEST garbage", func(t *testing.T, dir string, _ *Pebble) string {
			xorRange(t, newest(t, dir, "MANIFEST-", ""), 0, 1)
			return dir
		}, true},
		{"OPTIONS garbage", func(t *testing.T, dir string, _ *Pebble) string {
			if err := os.WriteFile(newest(t, dir, "OPTIONS-", ""), []byte("[Options]\ngarbage[[["), 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}, true},
		{"newest sstable garbage", func(t *testing.T, dir string, _ *Pebble) string {
			xorRange(t, newest(t, dir, "", ".sst"), 0.25, 0.5)
			return dir
		}, true},
		{"newest sstable truncated", func(t *testing.T, dir string, _ *Pebble) string {
			truncateHalf(t, newest(t, dir, "", ".sst"))
			return dir
		}, false}, // pebble's size check does not mark its error as corruption
		{"newest sstable missing", func(t *testing.T, dir string, _ *Pebble) string {
			if err := os.Remove(newest(t, dir, "", ".sst")); err != nil {
				t.Fatal(err)
			}
			return dir
		}, true},
		{"WAL damaged before synced records", func(t *testing.T, dir string, p *Pebble) string {
			// Pebble tells a damaged record from a torn write only if a
			// later 32 KiB WAL block proves the record was synced, so write
			// more than one block, crash, and damage the first.
			for i := uint64(11); i < 11+64; i++ {
				e := entry(i, 3)
				e.Data = bytes.Repeat([]byte{byte(i)}, 1024)
				if err := p.Save(nil, []*raftpb.Entry{e}, nil); err != nil {
					t.Fatal(err)
				}
			}
			crashed := copyDir(t, dir)
			xorRange(t, newest(t, crashed, "", ".log"), 0.1, 0.11)
			return crashed
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			populate(t, dir)
			p := openPebble(t, dir)
			var target string
			if strings.HasPrefix(tt.name, "WAL") {
				target = tt.damage(t, dir, p)
				p.Close()
			} else {
				p.Close()
				target = tt.damage(t, dir, nil)
			}
			q, err := Open(target, Options{})
			if err == nil {
				q.Close()
				t.Fatal("Open succeeded on a damaged store")
			}
			if !strings.HasPrefix(err.Error(), "storage: "+target+": ") {
				t.Errorf("err %q does not name the directory %s", err, target)
			}
			if tt.corrupt && !errors.Is(err, ErrCorrupt) {
				t.Errorf("err %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestPebbleCleanCloseOutlivesWALDamage checks that after Close the state
// no longer depends on the WAL, whose damaged tail pebble would drop.
func TestPebbleCleanCloseOutlivesWALDamage(t *testing.T) {
	dir := t.TempDir()
	populate(t, dir)
	for _, wal := range pebbleFiles(t, dir, "", ".log") {
		xorRange(t, wal, 0, 1)
	}
	p := openPebble(t, dir)
	defer p.Close()
	checkPopulated(t, p)
}

func TestPebbleLocked(t *testing.T) {
	dir := t.TempDir()
	p := openPebble(t, dir)
	q, err := Open(dir, Options{})
	if err == nil {
		q.Close()
		t.Fatal("second Open succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second Open: err %v, want ErrLocked naming %s", err, dir)
	}

	// Another process: the test binary itself, running TestLockHelper.
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelper$")
	cmd.Env = append(os.Environ(), "STORAGE_LOCK_HELPER_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "helper: locked") {
		t.Fatalf("other process: %v\n%s", err, out)
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p = openPebble(t, dir)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLockHelper is TestPebbleLocked's other process; run alone it skips.
func TestLockHelper(t *testing.T) {
	dir := os.Getenv("STORAGE_LOCK_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process for TestPebbleLocked")
	}
	p, err := Open(dir, Options{})
	if err == nil {
		p.Close()
		t.Fatal("helper: Open succeeded on a locked directory")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("helper: err %v, want ErrLocked", err)
	}
	t.Log("helper: locked")
	os.Stdout.WriteString("helper: locked\n")
}

func TestPebbleCorruptAfterOpen(t *testing.T) {
	dir := t.TempDir()
	populate(t, dir)
	p := openPebble(t, dir)
	defer p.Close()
	if err := p.db.Set(entryKey(7), []byte("garbage!"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := p.db.Delete(entryKey(9), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := p.db.Set(keySnapshot, []byte("garbage!"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		call func() error
		want string
	}{
		{"Term of a damaged entry", func() error { _, err := p.Term(7); return err }, "corrupt entry at index 7: checksum mismatch"},
		{"Term of a missing entry", func() error { _, err := p.Term(9); return err }, "corrupt entry at index 9: missing"},
		{"Entries over a damaged entry", func() error { _, err := p.Entries(5, 8, math.MaxUint64); return err }, "corrupt entry at index 7: checksum mismatch"},
		{"Entries over a missing entry", func() error { _, err := p.Entries(8, 11, math.MaxUint64); return err }, "corrupt entry at index 9: missing"},
		{"Entries ending at a missing entry", func() error { _, err := p.Entries(8, 10, math.MaxUint64); return err }, "corrupt entry at index 9: missing"},
		{"Snapshot damaged", func() error { _, err := p.Snapshot(); return err }, "corrupt snapshot: checksum mismatch"},
	}
	for _, c := range checks {
		err := c.call()
		if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), "storage: "+dir+": "+c.want) {
			t.Errorf("%s: err %v, want ErrCorrupt starting %q", c.name, err, "storage: "+dir+": "+c.want)
		}
	}
	// Undamaged entries still read.
	if es, err := p.Entries(5, 7, math.MaxUint64); err != nil || len(es) != 2 {
		t.Errorf("Entries(5, 7) = %v, %v", es, err)
	}
}

func TestPebbleFatalPoisons(t *testing.T) {
	p := openPebble(t, t.TempDir())
	defer p.Close()
	func() {
		var err error
		p.mu.Lock()
		defer p.mu.Unlock()
		func() {
			defer p.catchFatal(&err, true)
			pebbleLogger{l: p.log}.Fatalf("disk on fire")
		}()
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("caught %v", err)
		}
	}()
	if err := p.Save(hardState(1, 0, 0), nil, nil); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Save after a fatal write: err %v, want the fatal error", err)
	}
	if _, err := p.LastIndex(); err == nil {
		t.Fatal("LastIndex after a fatal write succeeded")
	}
}

func TestOpenCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "raft")
	p := openPebble(t, dir)
	defer p.Close()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("%s has mode %v, want 0700", d, perm)
		}
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if q, err := Open(file, Options{}); err == nil || !strings.Contains(err.Error(), file) {
		if q != nil {
			q.Close()
		}
		t.Fatalf("Open on a file: err %v, want an error naming it", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		opts Options
		ok   bool
	}{
		{Options{}, true},
		{Options{CacheSize: 1 << 20, MemTableSize: 4 << 20}, true},
		{Options{CacheSize: -1}, false},
		{Options{MemTableSize: 1 << 10}, false},
		{Options{MemTableSize: 2 << 30}, false},
	}
	for _, tt := range tests {
		if err := tt.opts.Validate(); (err == nil) != tt.ok {
			t.Errorf("%+v.Validate() = %v, want ok=%v", tt.opts, err, tt.ok)
		}
		if !tt.ok {
			if _, err := Open(t.TempDir(), tt.opts); err == nil {
				t.Errorf("Open with %+v succeeded", tt.opts)
			}
		}
	}
}

func TestPebbleLogs(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := Open(t.TempDir(), Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "storage opened") {
		t.Errorf("log lacks the open event:\n%s", buf.String())
	}
	// Pebble's chatter is debug level, so the default logger stays quiet.
	buf.Reset()
	logger = slog.New(slog.NewTextHandler(&buf, nil))
	p, err = Open(t.TempDir(), Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if buf.Len() != 0 {
		t.Errorf("info-level log of a clean open and close is not empty:\n%s", buf.String())
	}
}

// panickyFS panics when pebble opens its MANIFEST, standing in for a
// pebble bug triggered by a damaged file.
type panickyFS struct{ vfs.FS }

func (fs panickyFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	if strings.Contains(filepath.Base(name), "MANIFEST") {
		panic("pebble: unexpected manifest contents")
	}
	return fs.FS.Open(name, opts...)
}

func TestPebbleOpenRecoversPanic(t *testing.T) {
	dir := t.TempDir()
	populate(t, dir)
	_, err := Open(dir, Options{FS: panickyFS{vfs.Default}})
	if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), "storage: "+dir+": ") || !strings.Contains(err.Error(), "unexpected manifest contents") {
		t.Fatalf("err %v, want ErrCorrupt naming %s and the panic", err, dir)
	}
	// The directory lock was released.
	p := openPebble(t, dir)
	defer p.Close()
	checkPopulated(t, p)
}
