package kv

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
)

// Watch history and watchers.
//
// The hub keeps the events of recently applied commands, oldest first, in
// one shared history bounded by event count and bytes. A watcher is a
// cursor into that history (the next revision it needs) and a goroutine
// that reads from the cursor at the consumer's pace and hands the events
// on. Nothing is copied per watcher beyond the few responses in its
// channel, so a slow watcher costs no memory: it only lags. A watcher
// that lags past what the history keeps is ended with ErrCompacted (and
// the oldest revision still available), never skipped ahead silently.
//
// publish (the raft loop, through Machine.Apply) appends one batch, trims
// the history, and looks at each watcher once: a watcher that is caught up
// and wants none of the batch's events has its cursor moved past the batch
// on the spot; one that wants some is woken. Publish never waits on a
// watcher; its cost is one prefix test per watcher and event.
//
// Registration takes the same lock as publish, so a watcher's replay of
// history and its live events meet exactly: no gap, no duplicate.

// Defaults of WatchConfig.
const (
	// DefaultWatchHistoryEvents is the default WatchConfig.HistoryEvents.
	DefaultWatchHistoryEvents = 10_000
	// DefaultWatchHistoryBytes is the default WatchConfig.HistoryBytes.
	DefaultWatchHistoryBytes int64 = 64 << 20
)

// Bounds of one watch response, so that a reader holds the history lock
// briefly and a watcher's channel pins little memory. A single applied
// command is never split, so one response may exceed them.
const (
	watchResponseEvents = 256
	watchResponseBytes  = 256 << 10
	// watchScanBatches bounds the batches one read looks at when none of
	// them match, so a watcher with a rare prefix does not hold the lock
	// over the whole history.
	watchScanBatches = 1024
	// watchChannelBuffer is the capacity of a Watcher's channel.
	watchChannelBuffer = 8
	// eventOverhead is what an event costs in history beyond its key and
	// value, for the byte bound.
	eventOverhead = 64
)

// WatchConfig bounds the history that watchers resume from. The zero
// value means the defaults.
type WatchConfig struct {
	// HistoryEvents is the most events kept. Default
	// DefaultWatchHistoryEvents (10,000).
	HistoryEvents int
	// HistoryBytes bounds the keys and values (plus a small overhead per
	// event) kept. Default DefaultWatchHistoryBytes (64 MiB).
	HistoryBytes int64
}

func (c WatchConfig) withDefaults() WatchConfig {
	if c.HistoryEvents <= 0 {
		c.HistoryEvents = DefaultWatchHistoryEvents
	}
	if c.HistoryBytes <= 0 {
		c.HistoryBytes = DefaultWatchHistoryBytes
	}
	return c
}

// Errors of watches, checked with errors.Is.
var (
	// ErrCompacted means the events a watch needs are no longer kept: the
	// revision asked for is older than the history, the watcher fell that
	// far behind, or the state was replaced by a snapshot. The error is a
	// *CompactedError, which carries the oldest revision still available.
	// The caller re-reads the state (a List) and watches from its
	// revision + 1.
	ErrCompacted = api.ErrCompacted
	// ErrInvalidRevision means a negative revision.
	ErrInvalidRevision = api.ErrInvalidRevision
	// ErrWatchClosed is a Watcher's Err after its Close.
	ErrWatchClosed = api.ErrWatchClosed
)

// CompactedError is the ErrCompacted of a watch: the revision it needed
// and the oldest one that can still be watched from.
type CompactedError = api.CompactedError

// WatchResponse is what a Watcher delivers: the events of one or more
// applied commands, and how far the watch has got.
type WatchResponse = api.WatchResponse

// CommandApplied is the command_applied event: one applied command that
// changed the state, with the events it produced. Commands that were
// rejected (and so changed nothing) produce none.
type CommandApplied struct {
	// Revision is the revision of the command's last event.
	Revision int64
	// Events are the command's changes, in order. Shared: do not modify.
	Events []Event
}

// histBatch is the events of one applied command.
type histBatch struct {
	first, last int64 // revisions of its first and last event
	events      []Event
	// prev[i] is the item events[i] replaced or deleted (an empty Key:
	// the key did not exist), for reads at older revisions
	// (history.go); nil when not known.
	prev  []Item
	bytes int64
}

// matches reports whether b holds an event at or after revision from
// whose key starts with prefix.
func (b *histBatch) matches(prefix string, from int64) bool {
	for i := range b.events {
		ev := &b.events[i]
		if ev.Item.Revision >= from && strings.HasPrefix(ev.Item.Key, prefix) {
			return true
		}
	}
	return false
}

func eventBytes(ev *Event) int64 {
	return int64(len(ev.Item.Key)+len(ev.Item.Value)) + eventOverhead
}

// watchHub keeps recent events for watchers and feeds the state_changed
// and command_applied subscriptions. The zero value is ready to use, with
// the default WatchConfig.
//
// The machine's side of the contract: it calls publish and reset with its
// lock held; publish gets every change, one call per applied command, with
// revisions that grow from call to call (the events of one call may share
// a revision); when the state is replaced (a snapshot restore) it calls
// reset(rev) before publishing anything after rev. Everything else may be
// called from any goroutine.
type watchHub struct {
	// mu guards everything below it. publish, reset and registration hold
	// it exclusively; a watcher reading history holds it shared and
	// writes only its own cursor.
	mu  sync.RWMutex
	cfg WatchConfig // zero until configure; resolved by limits()
	// batches[start:] is the history, oldest first.
	batches []histBatch
	start   int
	events  int
	bytes   int64
	// compacted is the newest revision no longer available: a watch can
	// start at compacted+1 at the earliest.
	compacted int64
	// floor is the revision of the newest explicit compaction
	// (history.go): reads below it are refused even while the history
	// still covers them.
	floor int64
	// last is the revision of the last event published (or of the
	// snapshot the state was reset to).
	last int64
	// era counts the resets: a read of the history before one may not
	// hold after it (PollCache).
	era uint64
	// groups holds the open watchers by prefix, in a slice so that
	// publish walks them without map iteration; byPrefix finds a group.
	groups   []*watchGroup
	byPrefix map[string]*watchGroup
	watchers int

	stateChanged   consensus.Feed[Event]
	commandApplied consensus.Feed[CommandApplied]
}

// limits returns the configuration with defaults applied. Call with mu
// held.
func (h *watchHub) limits() WatchConfig { return h.cfg.withDefaults() }

// configure replaces the history bounds and trims to them.
func (h *watchHub) configure(cfg WatchConfig) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cfg = cfg.withDefaults()
	h.trimLocked()
}

// publish records the events of one applied command. It never blocks on
// a watcher or subscriber.
func (h *watchHub) publish(evs ...Event) { h.publishPrev(evs, nil) }

// publishPrev is publish with the items the events replaced or deleted,
// one per event (or nil when they are not known).
func (h *watchHub) publishPrev(evs []Event, prev []Item) {
	if len(evs) == 0 {
		return
	}
	b := histBatch{
		first:  evs[0].Item.Revision,
		last:   evs[len(evs)-1].Item.Revision,
		events: slices.Clone(evs), // the caller may reuse its slices
	}
	for i := range b.events {
		b.bytes += eventBytes(&b.events[i])
	}
	if len(prev) == len(evs) {
		b.prev = slices.Clone(prev)
		for i := range b.prev {
			b.bytes += int64(len(b.prev[i].Key) + len(b.prev[i].Value))
		}
	}
	h.mu.Lock()
	switch {
	case b.first <= h.last:
		// Revisions went back without a reset: not something Apply does.
		// Start the history over rather than serve a confused one, and
		// end every watcher that saw any revision being rewritten.
		h.resetLocked(b.first - 1)
		for _, g := range h.groups {
			for _, w := range g.watchers {
				if w.next > b.first {
					w.fault = &CompactedError{Requested: w.next, Oldest: b.first}
					w.wake()
				}
			}
		}
	case h.last == 0 && h.compacted == 0 && b.first > 1:
		// The first events come after revision 1: the machine started from
		// a state it did not reset the hub to. What came before is not
		// here.
		h.resetLocked(b.first - 1)
	}
	h.batches = append(h.batches, b)
	h.events += len(b.events)
	h.bytes += b.bytes
	h.last = b.last
	h.trimLocked()
	for _, g := range h.groups {
		// Most watchers of a group are caught up (next == b.first): one
		// prefix test serves them all.
		matches := b.matches(g.prefix, b.first)
		for _, w := range g.watchers {
			switch {
			case w.next < b.first || w.next > b.last:
				// Behind (it is reading history, and will reach this
				// batch) or waiting for a later revision.
			case matches && (w.next == b.first || b.matches(g.prefix, w.next)):
				w.wake()
			default:
				// Caught up and nothing here for it: move it along, so
				// that an idle watcher never falls out of the history.
				w.next = b.last + 1
			}
		}
	}
	h.mu.Unlock()
	// Still under the machine's lock, so subscribers see commands in
	// order; Feed.Publish never blocks.
	for i := range b.events {
		h.stateChanged.Publish(b.events[i])
	}
	h.commandApplied.Publish(CommandApplied{Revision: b.last, Events: b.events})
}

// reset forgets all history: the state was replaced by a snapshot at
// revision rev, so events at or below rev are no longer available.
// Watchers that still need any of them are ended with ErrCompacted;
// the others go on from rev+1.
func (h *watchHub) reset(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resetLocked(rev)
}

func (h *watchHub) resetLocked(rev int64) {
	h.era++
	clear(h.batches)
	h.batches, h.start, h.events, h.bytes = h.batches[:0], 0, 0, 0
	h.compacted, h.last = rev, rev
	for _, g := range h.groups {
		for _, w := range g.watchers {
			if w.next <= rev {
				w.wake() // it will read and find ErrCompacted
			}
		}
	}
}

// trimLocked drops the oldest batches while the history is over its
// bounds, always keeping the newest batch.
func (h *watchHub) trimLocked() {
	lim := h.limits()
	for len(h.batches)-h.start > 1 && (h.events > lim.HistoryEvents || h.bytes > lim.HistoryBytes) {
		h.dropOldestLocked()
	}
	// Reclaim the dropped prefix once it is half the slice.
	if h.start > 0 && h.start >= len(h.batches)/2 {
		n := copy(h.batches, h.batches[h.start:])
		clear(h.batches[n:])
		h.batches, h.start = h.batches[:n], 0
	}
}

// dropOldestLocked drops the oldest batch of the history, which is not
// empty.
func (h *watchHub) dropOldestLocked() {
	b := &h.batches[h.start]
	h.events -= len(b.events)
	h.bytes -= b.bytes
	h.compacted = max(h.compacted, b.last)
	*b = histBatch{} // let the events go
	h.start++
}

// watch registers a watcher from revision from (0: after the last
// published revision).
func (h *watchHub) watch(ctx context.Context, prefix string, from int64) (*Watcher, error) {
	if from < 0 {
		return nil, fmt.Errorf("kv: watch from revision %d: %w", from, ErrInvalidRevision)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	if from == 0 {
		from = h.last + 1
	}
	if from <= h.compacted {
		err := &CompactedError{Requested: from, Oldest: h.compacted + 1}
		h.mu.Unlock()
		return nil, err
	}
	wctx, cancel := context.WithCancelCause(ctx)
	w := &Watcher{
		hub:      h,
		prefix:   prefix,
		start:    from,
		next:     from,
		ctx:      wctx,
		cancel:   cancel,
		c:        make(chan WatchResponse, watchChannelBuffer),
		notify:   make(chan struct{}, 1),
		progress: make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	h.addLocked(w)
	h.mu.Unlock()
	go w.run()
	return w, nil
}

// watchGroup is the watchers of one prefix.
type watchGroup struct {
	prefix   string
	watchers []*Watcher
	pos      int // index in watchHub.groups
}

func (h *watchHub) addLocked(w *Watcher) {
	g := h.byPrefix[w.prefix]
	if g == nil {
		if h.byPrefix == nil {
			h.byPrefix = make(map[string]*watchGroup)
		}
		g = &watchGroup{prefix: w.prefix, pos: len(h.groups)}
		h.byPrefix[w.prefix] = g
		h.groups = append(h.groups, g)
	}
	w.set, w.pos = g, len(g.watchers)
	g.watchers = append(g.watchers, w)
	h.watchers++
}

func (h *watchHub) remove(w *Watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// Swap-remove: move the last watcher (perhaps w itself) into w's place.
	g := w.set
	last := len(g.watchers) - 1
	moved := g.watchers[last]
	g.watchers[w.pos], moved.pos = moved, w.pos
	g.watchers[last] = nil
	g.watchers = g.watchers[:last]
	h.watchers--
	if last > 0 {
		return
	}
	end := len(h.groups) - 1
	movedGroup := h.groups[end]
	h.groups[g.pos], movedGroup.pos = movedGroup, g.pos
	h.groups[end] = nil
	h.groups = h.groups[:end]
	delete(h.byPrefix, g.prefix)
}

// read returns the next response for w: up to the response bounds of
// matching events from w's cursor on, moving the cursor past what it
// scanned. caughtUp is true when nothing is left to read, and then
// the response is empty. With a cache, a read that another watcher of
// w's prefix made from the same cursor is taken from it, and a new one
// is added: the response's Events are then shared.
func (h *watchHub) read(w *Watcher, cache *PollCache) (resp WatchResponse, caughtUp bool, err error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if w.fault != nil {
		return resp, false, w.fault
	}
	if w.next <= h.compacted {
		return resp, false, &CompactedError{Requested: w.next, Oldest: h.compacted + 1}
	}
	if w.next > h.last {
		return resp, true, nil
	}
	var key pollKey
	if cache != nil {
		// The history from a cursor on only grows, until a reset: a read
		// made since the last one still holds (it may stop short of
		// revisions published since, which the next read gets).
		if cache.era != h.era {
			clear(cache.reads)
			cache.era = h.era
		}
		key = pollKey{prefix: w.prefix, next: w.next}
		if r, ok := cache.reads[key]; ok {
			w.next = r.next
			return r.resp, false, nil
		}
		defer func() {
			if cache.reads == nil {
				cache.reads = make(map[pollKey]pollRead)
			}
			cache.reads[key] = pollRead{resp: resp, next: w.next}
		}()
	}
	live := h.batches[h.start:]
	i := sort.Search(len(live), func(i int) bool { return live[i].last >= w.next })
	var bytes int64
	for scanned := 0; i < len(live) && scanned < watchScanBatches; i, scanned = i+1, scanned+1 {
		b := &live[i]
		for j := range b.events {
			ev := &b.events[j]
			if ev.Item.Revision >= w.next && strings.HasPrefix(ev.Item.Key, w.prefix) {
				resp.Events = append(resp.Events, *ev)
				bytes += eventBytes(ev)
			}
		}
		w.next = b.last + 1
		if len(resp.Events) >= watchResponseEvents || bytes >= watchResponseBytes {
			break
		}
	}
	resp.Revision = w.next - 1
	return resp, false, nil
}

// progress returns w's progress: every matching event at or below it
// has been read.
func (h *watchHub) progress(w *Watcher) int64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return w.next - 1
}

// Watcher delivers the changes to keys under a prefix, in revision
// order, from a starting revision on: first those still in history, then
// live ones, with no gap and no duplicate. It ends (C is closed) when its
// context is cancelled, Close is called, or it can no longer deliver
// without a gap (ErrCompacted); Err then says which.
type Watcher struct {
	hub    *watchHub
	prefix string
	start  int64
	// next is the first revision not yet read; guarded by hub.mu (written
	// by publish under the exclusive lock and by this watcher's reader
	// under the shared one).
	next int64
	// fault, when set (under hub.mu), ends the watcher at its next read.
	fault error
	// set and pos place the watcher in the hub; guarded by hub.mu.
	set *watchGroup
	pos int
	// stopped is set by a group watcher's Stop.
	stopped atomic.Bool

	ctx      context.Context
	cancel   context.CancelCauseFunc
	c        chan WatchResponse
	notify   chan struct{} // capacity 1: something to read
	progress chan struct{} // capacity 1: a progress report is wanted
	done     chan struct{}

	mu  sync.Mutex
	err error

	// group, for a watcher of a WatchGroup (no goroutine of its own):
	// wake marks it woken and signals the group instead of notify.
	group *WatchGroup
	woken atomic.Bool
	// progressWanted is a group watcher's pending RequestProgress.
	progressWanted atomic.Bool
}

// wake tells the watcher there is something to read; never blocks.
func (w *Watcher) wake() {
	if w.group != nil {
		w.woken.Store(true)
		w.group.signal()
		return
	}
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// WatchGroup is a set of watchers that one goroutine of the caller's
// serves, instead of a goroutine each: publishing wakes the group (one
// channel, C) and marks the watchers that have something to read, which
// the caller then polls (GroupWatcher.Poll). A connection that carries
// many watches holds one group, so that a write wakes one goroutine per
// connection rather than one per watch. The zero value is not ready: use
// NewWatchGroup.
type WatchGroup struct {
	c chan struct{}
}

// NewWatchGroup returns an empty group.
func NewWatchGroup() *WatchGroup { return &WatchGroup{c: make(chan struct{}, 1)} }

// C receives a value when a watcher of the group may have something to
// read, or a progress report to give.
func (g *WatchGroup) C() <-chan struct{} { return g.c }

// Notify signals C, as a watcher with something to read does: for a
// caller that adds a watcher to those it polls after registering it.
func (g *WatchGroup) Notify() { g.signal() }

func (g *WatchGroup) signal() {
	select {
	case g.c <- struct{}{}:
	default:
	}
}

// PollCache holds the history reads of one pass over a group's watchers
// (GroupWatcher.PollShared), so that watchers of one prefix at one cursor
// share one read. The zero value is ready to use; Reset it after each pass
// so that it lets the events go. One goroutine at a time may use it.
type PollCache struct {
	era   uint64
	reads map[pollKey]pollRead
}

type pollKey struct {
	prefix string
	next   int64
}

// pollRead is a read from a cursor: its response, and the cursor after.
type pollRead struct {
	resp WatchResponse
	next int64
}

// Reset forgets the reads.
func (c *PollCache) Reset() { clear(c.reads) }

// GroupWatcher is a watcher of a WatchGroup: the same history, cursor and
// guarantees as a Watcher (no gap, no repeat, ErrCompacted when it falls
// out of the history), read by the group's goroutine with Poll. It holds
// no goroutine and no channel; Stop releases it.
type GroupWatcher struct{ w *Watcher }

// StartRevision is the first revision the watch delivers.
func (g GroupWatcher) StartRevision() int64 { return g.w.start }

// RequestProgress asks for a progress report from the next Poll that
// finds the watcher caught up. It never blocks.
func (g GroupWatcher) RequestProgress() {
	g.w.progressWanted.Store(true)
	g.w.group.signal()
}

// Poll returns the watcher's next response, if it has one: events (up to
// the response bounds; more is then true, so poll again), or with none a
// progress report that was asked for. An empty response with more false
// means nothing to deliver now: wait for the group's C. An error ends the
// watch (a *CompactedError); Stop it. One goroutine at a time may poll a
// watcher.
func (g GroupWatcher) Poll() (resp WatchResponse, more bool, err error) {
	return g.PollShared(nil)
}

// PollShared is Poll sharing reads through cache (nil: none) with the
// other watchers polled with it: watchers of one prefix at one cursor
// (typically every watcher of a prefix that keeps up) read the history
// once between them. The response's Events may then be shared with
// theirs: read them, never change them.
func (g GroupWatcher) PollShared(cache *PollCache) (resp WatchResponse, more bool, err error) {
	w := g.w
	if !w.woken.Swap(false) && !w.progressWanted.Load() {
		return resp, false, nil
	}
	for {
		resp, caughtUp, err := w.hub.read(w, cache)
		switch {
		case err != nil:
			return resp, false, err
		case len(resp.Events) > 0:
			w.woken.Store(true) // read on at the next poll
			return resp, true, nil
		case !caughtUp:
			continue // scanned batches with nothing for it; read on
		}
		if w.progressWanted.Swap(false) {
			return WatchResponse{Revision: w.hub.progress(w)}, false, nil
		}
		return resp, false, nil
	}
}

// Stop releases the watcher; safe to call more than once.
func (g GroupWatcher) Stop() {
	if g.w.stopped.CompareAndSwap(false, true) {
		g.w.hub.remove(g.w)
	}
}

// watchGrouped registers a watcher of group from revision from (0: after
// the last published revision).
func (h *watchHub) watchGrouped(group *WatchGroup, prefix string, from int64) (GroupWatcher, error) {
	if from < 0 {
		return GroupWatcher{}, fmt.Errorf("kv: watch from revision %d: %w", from, ErrInvalidRevision)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if from == 0 {
		from = h.last + 1
	}
	if from <= h.compacted {
		return GroupWatcher{}, &CompactedError{Requested: from, Oldest: h.compacted + 1}
	}
	w := &Watcher{hub: h, prefix: prefix, start: from, next: from, group: group}
	w.woken.Store(true) // it may start in the history
	h.addLocked(w)
	group.signal()
	return GroupWatcher{w}, nil
}

// C returns the channel responses arrive on. It is closed when the watch
// ends; Err then says why.
func (w *Watcher) C() <-chan WatchResponse { return w.c }

// StartRevision is the first revision the watch delivers: the one it was
// asked for, or for a watch "from now" the revision after the state's at
// registration. Resuming from it repeats nothing.
func (w *Watcher) StartRevision() int64 { return w.start }

// Prefix is the key prefix watched.
func (w *Watcher) Prefix() string { return w.prefix }

// RequestProgress asks for a progress report: a response with no events
// whose Revision says how far the watch has got, sent after every event
// already delivered. It never blocks; requests made while one is pending
// are merged. The report comes once the watcher has caught up with the
// applied state.
func (w *Watcher) RequestProgress() {
	select {
	case w.progress <- struct{}{}:
	default:
	}
}

// Err returns why the watch ended, once C is closed: a *CompactedError
// (errors.Is ErrCompacted), ErrWatchClosed after Close, or the cause of
// the context's end. Nil while the watch runs.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close ends the watch and waits until its goroutine has stopped. Safe to
// call more than once and concurrently with receiving.
func (w *Watcher) Close() {
	w.cancel(ErrWatchClosed)
	<-w.done
}

// run reads the history from the cursor and delivers, until the watch
// ends.
func (w *Watcher) run() {
	defer close(w.done)
	err := w.deliver()
	w.hub.remove(w)
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
	w.cancel(err) // release the context's resources
	close(w.c)
}

func (w *Watcher) deliver() error {
	for {
		resp, caughtUp, err := w.hub.read(w, nil)
		if err != nil {
			return err
		}
		if len(resp.Events) > 0 {
			if err := w.send(resp); err != nil {
				return err
			}
			continue
		}
		if !caughtUp {
			continue // scanned batches with nothing for us; read on
		}
		select {
		case <-w.notify:
		case <-w.progress:
			if err := w.send(WatchResponse{Revision: w.hub.progress(w)}); err != nil {
				return err
			}
		case <-w.ctx.Done():
			return context.Cause(w.ctx)
		}
	}
}

func (w *Watcher) send(resp WatchResponse) error {
	select {
	case w.c <- resp:
		return nil
	case <-w.ctx.Done():
		return context.Cause(w.ctx)
	}
}

// WatchStats describes the watch history and watchers of a Machine.
type WatchStats struct {
	// Watchers is the number of open watchers.
	Watchers int
	// HistoryEvents and HistoryBytes are what the history holds now.
	HistoryEvents int
	HistoryBytes  int64
	// OldestRevision is the oldest revision a watch can start from.
	OldestRevision int64
	// Revision is the last revision published.
	Revision int64
}

// Watch starts a watcher of the keys starting with prefix ("" for all),
// from revision fromRevision on (0: from the next write after the
// machine's current state). It fails with a *CompactedError
// (errors.Is ErrCompacted) when fromRevision is older than the history
// keeps. A fromRevision beyond the current revision waits for it. The
// watcher ends when ctx is done or Close is called; call Close (or cancel
// ctx) to release it.
//
// The history is local: resuming on another node works because every
// node applies the same commands at the same revisions; see Store.Watch
// for a "from now" that is linearizable.
func (m *Machine) Watch(ctx context.Context, prefix string, fromRevision int64) (*Watcher, error) {
	return m.hub.watch(ctx, prefix, fromRevision)
}

// WatchGrouped is Watch for a watcher of group, which the caller serves
// (WatchGroup): no goroutine, no context; Stop releases it.
func (m *Machine) WatchGrouped(group *WatchGroup, prefix string, fromRevision int64) (GroupWatcher, error) {
	return m.hub.watchGrouped(group, prefix, fromRevision)
}

// SetWatchConfig bounds the watch history (the zero WatchConfig means
// the defaults). It may be called at any time; a smaller bound trims the
// history at once.
func (m *Machine) SetWatchConfig(cfg WatchConfig) { m.hub.configure(cfg) }

// WatchStats returns the current watch history and watcher counts.
func (m *Machine) WatchStats() WatchStats {
	h := &m.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	return WatchStats{
		Watchers:       h.watchers,
		HistoryEvents:  h.events,
		HistoryBytes:   h.bytes,
		OldestRevision: h.compacted + 1,
		Revision:       h.last,
	}
}

// StateChanged is the state_changed event feed: every change to a key,
// in revision order, as an Event (Type is the operation; Item carries the
// key, value and revision). Subscribers have bounded buffers; a value
// that does not fit is dropped for that subscriber and counted, so apply
// never waits on a subscriber. Use a Watch to get every change without
// loss.
func (m *Machine) StateChanged() *consensus.Feed[Event] { return &m.hub.stateChanged }

// CommandApplied is the command_applied event feed: one value per
// applied command that changed the state, in log order. Bounded and
// lossy like StateChanged.
func (m *Machine) CommandApplied() *consensus.Feed[CommandApplied] {
	return &m.hub.commandApplied
}
