package client

import (
	"context"
	"sync"
)

// seqWindow numbers a client's writes so that the newest one in flight is
// never limit or more past the oldest whose outcome is not yet settled.
// The cluster remembers the results of at least a client's limit most
// recent sequence numbers (kv.DefaultSessionWindow), and refuses a
// sequence older than those as request_expired, since it cannot tell a
// first attempt from a retry whose result it forgot. Without this bound a
// write held up (retried, or slow through a busy node) while more than
// limit later writes of the same client are applied would be refused
// although it was never applied. Writes beyond the window wait for it to
// move, bounded by their context.
type seqWindow struct {
	limit uint64

	mu   sync.Mutex
	next uint64              // the last sequence number handed out
	open map[uint64]struct{} // handed out, not yet released
	min  uint64              // the lowest open one, 0 if none
	// moved is closed (and replaced) whenever the window moves.
	moved chan struct{}
}

func newSeqWindow(limit int) seqWindow {
	return seqWindow{limit: uint64(max(limit, 1)), open: make(map[uint64]struct{}), moved: make(chan struct{})}
}

// acquire returns the next sequence number once it is within the window,
// or ctx's error.
func (w *seqWindow) acquire(ctx context.Context) (uint64, error) {
	for {
		w.mu.Lock()
		seq := w.next + 1
		if w.min == 0 || seq-w.min < w.limit {
			w.next = seq
			w.open[seq] = struct{}{}
			if w.min == 0 {
				w.min = seq
			}
			w.mu.Unlock()
			return seq, nil
		}
		moved := w.moved
		w.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// release settles seq: its write succeeded, failed, or was given up on.
func (w *seqWindow) release(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.open, seq)
	if seq != w.min {
		return
	}
	// At most limit are open, so this scan is short.
	w.min = 0
	for s := range w.open {
		if w.min == 0 || s < w.min {
			w.min = s
		}
	}
	close(w.moved)
	w.moved = make(chan struct{})
}
