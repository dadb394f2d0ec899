package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"sync"
)

// memorySnapshots is the SnapshotStore of a node configured without one:
// snapshot data in memory, lost with the process, like storage.Memory.
type memorySnapshots struct {
	mu    sync.Mutex
	snaps map[[2]uint64][]byte
}

func newMemorySnapshots() *memorySnapshots {
	return &memorySnapshots{snaps: make(map[[2]uint64][]byte)}
}

func (m *memorySnapshots) Create(index, term uint64) (SnapshotSink, error) {
	return &memorySink{m: m, key: [2]uint64{index, term}}, nil
}

func (m *memorySnapshots) Open(index, term uint64) (io.ReadCloser, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.snaps[[2]uint64{index, term}]
	if !ok {
		return nil, 0, fmt.Errorf("snapshot %d term %d: %w", index, term, fs.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

func (m *memorySnapshots) Prune(keep uint64, retain int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var older [][2]uint64
	for k := range m.snaps {
		if k[0] < keep {
			older = append(older, k)
		}
	}
	sort.Slice(older, func(i, j int) bool { return older[i][0] > older[j][0] })
	for i, k := range older {
		if i >= retain-1 {
			delete(m.snaps, k)
		}
	}
	return nil
}

type memorySink struct {
	m    *memorySnapshots
	key  [2]uint64
	buf  bytes.Buffer
	done bool
}

func (s *memorySink) Write(p []byte) (int, error) {
	if s.done {
		return 0, errors.New("snapshot sink already finished")
	}
	return s.buf.Write(p)
}

func (s *memorySink) Commit() error {
	if s.done {
		return errors.New("snapshot sink already finished")
	}
	s.done = true
	s.m.mu.Lock()
	s.m.snaps[s.key] = s.buf.Bytes()
	s.m.mu.Unlock()
	return nil
}

func (s *memorySink) Abort() { s.done = true }
