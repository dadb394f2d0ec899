package consensus

import "sync"

// appliedWait lets goroutines wait until the applied index reaches a
// target. The raft loop advances it after each batch of committed entries;
// waiters never block the loop.
type appliedWait struct {
	mu      sync.Mutex
	applied uint64
	waiters []indexWaiter
}

type indexWaiter struct {
	index uint64
	ch    chan struct{}
}

// wait returns a channel closed once the applied index is at least index.
func (w *appliedWait) wait(index uint64) <-chan struct{} {
	ch := make(chan struct{})
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.applied >= index {
		close(ch)
		return ch
	}
	w.waiters = append(w.waiters, indexWaiter{index, ch})
	return ch
}

// index returns the applied index.
func (w *appliedWait) index() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.applied
}

// advance records that index has been applied and wakes waiters it
// satisfies.
func (w *appliedWait) advance(index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if index <= w.applied {
		return
	}
	w.applied = index
	kept := w.waiters[:0]
	for _, wt := range w.waiters {
		if wt.index <= index {
			close(wt.ch)
		} else {
			kept = append(kept, wt)
		}
	}
	clear(w.waiters[len(kept):])
	w.waiters = kept
}
