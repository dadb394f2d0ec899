//go:build stagetrace

package stages

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Enabled reports whether marks are recorded (build tag stagetrace).
const Enabled = true

// maxMarks bounds the memory a long run can take (about 40 bytes a mark).
const maxMarks = 4 << 20

type mark struct {
	stage string
	index uint64
	at    int64
}

var (
	mu    sync.Mutex
	marks []mark
)

// Mark records that the entry at index (0 if none) reached stage now.
func Mark(stage string, index uint64) {
	at := time.Now().UnixNano()
	mu.Lock()
	if len(marks) < maxMarks {
		marks = append(marks, mark{stage, index, at})
	}
	mu.Unlock()
}

// Dump writes the marks recorded so far for node to
// $CONSENSUS_STAGES_DIR/<node>-<pid>.txt and forgets them.
func Dump(node string) {
	dir := os.Getenv("CONSENSUS_STAGES_DIR")
	if dir == "" {
		return
	}
	mu.Lock()
	taken := marks
	marks = nil
	mu.Unlock()
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.txt", node, os.Getpid())))
	if err != nil {
		fmt.Fprintln(os.Stderr, "stages:", err)
		return
	}
	w := bufio.NewWriter(f)
	for _, m := range taken {
		fmt.Fprintf(w, "%d %s %d %s\n", m.at, node, m.index, m.stage)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "stages:", err)
	}
	_ = f.Close()
}
