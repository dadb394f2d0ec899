package kv

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/unrdf/consensus"
)

// BenchmarkApply measures Machine.Apply of put commands: decoding and
// validating the command, then updating the map, as every node does for
// every committed write. Keys cycle over 10,000 (so most puts overwrite,
// as a steady workload does); values are 100-byte JSON strings.
func BenchmarkApply(b *testing.B) {
	const keys = 10_000
	value := []byte(`"` + strings.Repeat("v", 98) + `"`)
	cmds := make([][]byte, keys)
	for i := range cmds {
		c, err := encodeCommand(command{Op: opPut, Key: fmt.Sprintf("bench/%06d", i), Value: value})
		if err != nil {
			b.Fatal(err)
		}
		cmds[i] = c
	}
	m := NewMachine()
	b.SetBytes(int64(len(cmds[0])))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if r, ok := m.Apply(uint64(i+1), cmds[i%keys]).(Result); !ok || r.Err != nil {
			b.Fatalf("apply %d: %v", i, r.Err)
		}
	}
}

// snapshotBenchMachine is a machine with 100,000 keys of 100-byte values,
// the size the note asks about.
func snapshotBenchMachine(b *testing.B) *Machine {
	b.Helper()
	const keys = 100_000
	value := []byte(`"` + strings.Repeat("v", 98) + `"`)
	m := NewMachine()
	for i := range keys {
		c, err := encodeCommand(command{Op: opPut, Key: fmt.Sprintf("bench/%06d", i), Value: value})
		if err != nil {
			b.Fatal(err)
		}
		if r, ok := m.Apply(uint64(i+1), c).(Result); !ok || r.Err != nil {
			b.Fatalf("apply %d: %v", i, r.Err)
		}
	}
	return m
}

// BenchmarkSnapshot100k measures taking a snapshot of 100,000 keys: the
// O(1) capture the raft loop does, plus writing it out (which another
// goroutine does). It reports the snapshot's size.
func BenchmarkSnapshot100k(b *testing.B) {
	m := snapshotBenchMachine(b)
	var size int64
	for b.Loop() {
		view, err := m.Snapshot(consensus.Position{})
		if err != nil {
			b.Fatal(err)
		}
		n, err := view.WriteTo(io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		view.Release()
		size = n
	}
	b.ReportMetric(float64(size), "snapshot-bytes")
}

// BenchmarkSnapshotCapture100k measures only the capture, which runs in
// the raft loop between two applies.
func BenchmarkSnapshotCapture100k(b *testing.B) {
	m := snapshotBenchMachine(b)
	for b.Loop() {
		view, err := m.Snapshot(consensus.Position{})
		if err != nil {
			b.Fatal(err)
		}
		view.Release()
	}
}

// BenchmarkRestore100k measures restoring 100,000 keys from a snapshot,
// what a follower does when it installs one.
func BenchmarkRestore100k(b *testing.B) {
	m := snapshotBenchMachine(b)
	view, err := m.Snapshot(consensus.Position{})
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := view.WriteTo(&buf); err != nil {
		b.Fatal(err)
	}
	view.Release()
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := NewMachine().Restore(consensus.Position{}, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
