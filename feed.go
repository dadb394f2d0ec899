package consensus

import (
	"sync"
	"sync/atomic"
)

// Feed broadcasts values to subscribers without ever blocking the
// publisher: each subscriber has a bounded buffer, and a value that does
// not fit is dropped for that subscriber and counted. The raft loop
// publishes events through feeds, so a slow subscriber can never stall
// it. The zero Feed is ready to use; it is safe for concurrent use.
type Feed[T any] struct {
	mu      sync.RWMutex
	subs    map[*Subscription[T]]struct{}
	dropped atomic.Uint64
}

// Subscription is one subscriber's view of a Feed.
type Subscription[T any] struct {
	feed    *Feed[T]
	c       chan T
	dropped atomic.Uint64
	once    sync.Once
}

// DefaultSubscriptionBuffer is the buffer Subscribe uses for a buffer <= 0.
const DefaultSubscriptionBuffer = 256

// Subscribe returns a subscription holding up to buffer undelivered
// values. Call Close when done with it.
func (f *Feed[T]) Subscribe(buffer int) *Subscription[T] {
	if buffer <= 0 {
		buffer = DefaultSubscriptionBuffer
	}
	s := &Subscription[T]{feed: f, c: make(chan T, buffer)}
	f.mu.Lock()
	if f.subs == nil {
		f.subs = make(map[*Subscription[T]]struct{})
	}
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	return s
}

// Publish offers v to every subscriber; it never blocks.
func (f *Feed[T]) Publish(v T) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for s := range f.subs {
		select {
		case s.c <- v:
		default:
			s.dropped.Add(1)
			f.dropped.Add(1)
		}
	}
}

// Subscribers returns the number of open subscriptions.
func (f *Feed[T]) Subscribers() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.subs)
}

// Dropped returns how many values were dropped, over all subscribers,
// because a subscriber's buffer was full.
func (f *Feed[T]) Dropped() uint64 { return f.dropped.Load() }

// C returns the channel values arrive on. It is closed by Close.
func (s *Subscription[T]) C() <-chan T { return s.c }

// Dropped returns how many values this subscriber missed because its
// buffer was full.
func (s *Subscription[T]) Dropped() uint64 { return s.dropped.Load() }

// Close unsubscribes and closes C. Safe to call more than once.
func (s *Subscription[T]) Close() {
	s.once.Do(func() {
		s.feed.mu.Lock()
		delete(s.feed.subs, s)
		close(s.c)
		s.feed.mu.Unlock()
	})
}
