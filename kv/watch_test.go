package kv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

const watchTestTimeout = 10 * time.Second

// put applies a put of value under key and returns its revision.
func put(t testing.TB, m *Machine, key, value string) int64 {
	t.Helper()
	r := m.Apply(0, mustCmdTB(t, command{Op: opPut, Key: key, Value: []byte(value)})).(Result)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	return r.Revision
}

func del(t testing.TB, m *Machine, key string) int64 {
	t.Helper()
	r := m.Apply(0, mustCmdTB(t, command{Op: opDelete, Key: key})).(Result)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	return r.Revision
}

func mustCmdTB(t testing.TB, c command) []byte {
	t.Helper()
	b, err := encodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// history is what a watcher of everything must see, in revision order.
type history struct {
	events []Event // in revision order
}

func (h *history) from(rev int64, prefix string) []Event {
	var out []Event
	for _, ev := range h.events {
		if ev.Item.Revision >= rev && strings.HasPrefix(ev.Item.Key, prefix) {
			out = append(out, ev)
		}
	}
	return out
}

// collect receives from w until its progress reaches rev, and returns the
// events. It fails the test if the watch ends first or the deadline passes.
func collect(t testing.TB, w *Watcher, rev int64) []Event {
	t.Helper()
	var out []Event
	deadline := time.After(watchTestTimeout)
	progress := w.StartRevision() - 1
	for progress < rev {
		// Progress reports move a watcher on whose prefix matches nothing.
		w.RequestProgress()
		select {
		case resp, ok := <-w.C():
			if !ok {
				t.Fatalf("watch ended at progress %d, want %d: %v", progress, rev, w.Err())
			}
			if resp.Revision < progress {
				t.Fatalf("progress went back from %d to %d", progress, resp.Revision)
			}
			progress = resp.Revision
			out = append(out, resp.Events...)
		case <-deadline:
			t.Fatalf("watch progress %d, want %d within %v", progress, rev, watchTestTimeout)
		}
	}
	return out
}

func sameEvents(t testing.TB, what string, got, want []Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d\ngot  %v\nwant %v", what, len(got), len(want), revs(got), revs(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Type != w.Type || g.Item.Key != w.Item.Key || string(g.Item.Value) != string(w.Item.Value) ||
			g.Item.Revision != w.Item.Revision || g.Item.CreateRevision != w.Item.CreateRevision || g.Item.Version != w.Item.Version {
			t.Fatalf("%s: event %d = %+v, want %+v", what, i, g, w)
		}
	}
}

func revs(evs []Event) []int64 {
	out := make([]int64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Item.Revision
	}
	return out
}

// fill applies n writes (puts, and deletes of existing keys) over a few
// prefixes and returns what a watcher must see.
func fill(t testing.TB, m *Machine, rng *rand.Rand, n int) *history {
	t.Helper()
	h := &history{}
	sub := m.StateChanged().Subscribe(n + 1)
	defer sub.Close()
	live := map[string]bool{}
	for range n {
		key := fmt.Sprintf("%s/%d", []string{"a", "b", "ab"}[rng.IntN(3)], rng.IntN(8))
		if live[key] && rng.IntN(4) == 0 {
			del(t, m, key)
			delete(live, key)
		} else {
			put(t, m, key, fmt.Sprintf(`{"n":%d}`, rng.IntN(1000)))
			live[key] = true
		}
	}
	for range n {
		h.events = append(h.events, <-sub.C())
	}
	return h
}

func seeded(t *testing.T) *rand.Rand {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(uint64(seed), 0))
}

func TestWatchResumesFromEveryRevisionInHistory(t *testing.T) {
	m := NewMachine()
	h := fill(t, m, seeded(t), 60)
	last := m.Revision()
	for _, prefix := range []string{"", "a", "a/", "ab/", "zzz"} {
		for from := int64(1); from <= last+1; from++ {
			w, err := m.Watch(context.Background(), prefix, from)
			if err != nil {
				t.Fatalf("watch %q from %d: %v", prefix, from, err)
			}
			if from <= last {
				got := collect(t, w, last)
				sameEvents(t, fmt.Sprintf("prefix %q from %d", prefix, from), got, h.from(from, prefix))
			}
			w.Close()
		}
	}
	// And live after the replay: one more write reaches a watcher that
	// replayed everything.
	w, err := m.Watch(context.Background(), "a/", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	collect(t, w, last)
	rev := put(t, m, "a/live", `1`)
	if got := collect(t, w, rev); len(got) != 1 || got[0].Item.Key != "a/live" || got[0].Item.Revision != rev {
		t.Fatalf("live event after replay = %+v", got)
	}
}

func TestWatchFromNowAndFromTheFuture(t *testing.T) {
	m := NewMachine()
	put(t, m, "k", `1`)
	now, err := m.Watch(context.Background(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer now.Close()
	if now.StartRevision() != 2 {
		t.Fatalf("from-now watch starts at %d, want 2", now.StartRevision())
	}
	future, err := m.Watch(context.Background(), "", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer future.Close()
	for i := range 4 {
		put(t, m, "k", fmt.Sprint(i))
	}
	if got := revs(collect(t, now, 5)); fmt.Sprint(got) != "[2 3 4 5]" {
		t.Fatalf("from now: %v", got)
	}
	if got := revs(collect(t, future, 5)); fmt.Sprint(got) != "[4 5]" {
		t.Fatalf("from the future: %v", got)
	}
	if _, err := m.Watch(context.Background(), "", -1); !errors.Is(err, ErrInvalidRevision) {
		t.Fatalf("watch from -1: %v", err)
	}
}

func TestWatchCompactedBoundaryIsExact(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  WatchConfig
		// each write's value is 10 bytes, key 3: 77 bytes an event
	}{
		{"by events", WatchConfig{HistoryEvents: 10}},
		{"by bytes", WatchConfig{HistoryBytes: 10 * (3 + 10 + eventOverhead)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMachine()
			m.SetWatchConfig(tc.cfg)
			for i := range 30 {
				put(t, m, fmt.Sprintf("k%02d", i), `"12345678"`)
			}
			st := m.WatchStats()
			if st.OldestRevision != 21 || st.HistoryEvents != 10 || st.Revision != 30 {
				t.Fatalf("stats %+v, want oldest 21 of 10 events at 30", st)
			}
			_, err := m.Watch(context.Background(), "", 20)
			var ce *CompactedError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCompacted) || ce.Requested != 20 || ce.Oldest != 21 {
				t.Fatalf("watch from 20: %v, want compacted with oldest 21", err)
			}
			w, err := m.Watch(context.Background(), "", 21)
			if err != nil {
				t.Fatalf("watch from the oldest revision: %v", err)
			}
			defer w.Close()
			if got := collect(t, w, 30); len(got) != 10 || got[0].Item.Revision != 21 {
				t.Fatalf("from 21: %v", revs(got))
			}
		})
	}
}

// A watcher whose consumer does not keep up lags in the shared history;
// once it is past what history keeps it ends with ErrCompacted naming the
// revision it needed, after delivering everything before it: no silent
// gap.
func TestSlowWatcherEndsWithCompactedNeverAGap(t *testing.T) {
	m := NewMachine()
	m.SetWatchConfig(WatchConfig{HistoryEvents: 20})
	w, err := m.Watch(context.Background(), "", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// More than the channel and one response in hand can hold.
	const writes = (watchChannelBuffer+2)*watchResponseEvents + 100
	for i := range writes {
		put(t, m, fmt.Sprintf("k%d", i%50), `1`)
	}
	var got []Event
	for resp := range w.C() {
		got = append(got, resp.Events...)
	}
	var ce *CompactedError
	if !errors.As(w.Err(), &ce) {
		t.Fatalf("slow watcher ended with %v, want ErrCompacted", w.Err())
	}
	for i, ev := range got {
		if ev.Item.Revision != int64(i+1) {
			t.Fatalf("event %d has revision %d: a gap", i, ev.Item.Revision)
		}
	}
	if ce.Requested != int64(len(got)+1) || ce.Oldest <= ce.Requested {
		t.Fatalf("compacted at %d (oldest %d) after %d events; want at %d, oldest later",
			ce.Requested, ce.Oldest, len(got), len(got)+1)
	}
	if n := m.WatchStats().Watchers; n != 0 {
		t.Fatalf("%d watchers registered after the end", n)
	}
}

// An idle watcher (nothing matches its prefix) never falls out of the
// history however much else is written, and reports its progress.
func TestIdleWatcherKeepsUpAndReportsProgress(t *testing.T) {
	m := NewMachine()
	m.SetWatchConfig(WatchConfig{HistoryEvents: 3})
	w, err := m.Watch(context.Background(), "a/", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 100 {
		put(t, m, fmt.Sprintf("b/%d", i), `1`)
	}
	w.RequestProgress()
	select {
	case resp := <-w.C():
		if len(resp.Events) != 0 || resp.Revision != 100 {
			t.Fatalf("progress report %+v, want no events at 100", resp)
		}
	case <-time.After(watchTestTimeout):
		t.Fatal("no progress report")
	}
	rev := put(t, m, "a/x", `1`)
	if got := collect(t, w, rev); len(got) != 1 || got[0].Item.Key != "a/x" {
		t.Fatalf("after 100 other writes: %v", got)
	}
}

// putEvent is the event of a first put of key at rev, value 1.
func putEvent(rev int64, key string) Event {
	return Event{Type: EventPut, Item: Item{Key: key, Value: []byte(`1`), Revision: rev, CreateRevision: rev, Version: 1}}
}

func TestWatchReset(t *testing.T) {
	var h watchHub
	for rev := int64(1); rev <= 10; rev++ {
		h.publish(putEvent(rev, "k"))
	}
	ctx := context.Background()
	caughtUp, _ := h.watch(ctx, "", 11) // needs 11 on: misses nothing
	defer caughtUp.Close()
	behind, _ := h.watch(ctx, "", 5) // needs 5..: would miss 5..20
	defer behind.Close()
	ahead, _ := h.watch(ctx, "", 21) // needs 21 on
	defer ahead.Close()
	collect(t, caughtUp, 10)

	// The state is replaced by a snapshot at revision 20.
	h.reset(20)
	for resp := range behind.C() {
		_ = resp // it may deliver what it had read before the reset
	}
	var ce *CompactedError
	if !errors.As(behind.Err(), &ce) || ce.Oldest != 21 {
		t.Fatalf("behind watcher after reset: %v, want compacted with oldest 21", behind.Err())
	}
	select {
	case resp, ok := <-caughtUp.C():
		// 11..20 are gone: it must not go on as if nothing happened.
		if ok {
			t.Fatalf("caught-up watcher at 11 got %+v after a reset to 20", resp)
		}
	case <-time.After(watchTestTimeout):
		t.Fatal("watcher needing 11..20 not ended by a reset to 20")
	}
	if !errors.Is(caughtUp.Err(), ErrCompacted) {
		t.Fatalf("watcher at 11 after reset: %v", caughtUp.Err())
	}
	if _, err := h.watch(ctx, "", 20); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch from 20 after reset to 20: %v", err)
	}
	after, err := h.watch(ctx, "", 21)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	h.publish(putEvent(21, "k"))
	for _, w := range []*Watcher{ahead, after} {
		if got := revs(collect(t, w, 21)); fmt.Sprint(got) != "[21]" {
			t.Fatalf("after reset: %v", got)
		}
	}
}

// One command's events share one call and, for a batch, may share one
// revision: they are delivered together, and resuming after that
// revision repeats none of them.
func TestWatchBatchSharingARevision(t *testing.T) {
	var h watchHub
	mk := func(rev int64, key string) Event {
		return Event{Type: EventPut, Item: Item{Key: key, Value: []byte(`1`), Revision: rev}}
	}
	h.publish(mk(1, "a"))
	h.publish(mk(2, "x"), mk(2, "y"), mk(2, "z"))
	h.publish(mk(3, "b"))
	ctx := context.Background()
	w, _ := h.watch(ctx, "", 2)
	defer w.Close()
	resp := <-w.C()
	if len(resp.Events) != 4 || resp.Revision != 3 {
		t.Fatalf("from 2: %+v", resp)
	}
	w3, _ := h.watch(ctx, "", 3)
	defer w3.Close()
	if got := collect(t, w3, 3); len(got) != 1 || got[0].Item.Key != "b" {
		t.Fatalf("from 3: %+v", got)
	}
}

// Watchers registered while writes are applied each see exactly the
// revisions from their start on: no gap, no duplicate.
func TestWatchRegistrationRacesPublish(t *testing.T) {
	rng := seeded(t)
	m := NewMachine()
	const writes = 2000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range writes {
			put(t, m, fmt.Sprintf("k%d", i%17), `1`)
		}
	}()
	type reg struct {
		w    *Watcher
		from int64
	}
	regs := make(chan reg, 64)
	for g := range 8 {
		seed := rng.Uint64()
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			for range 8 {
				from := int64(0)
				if cur := m.Revision(); cur > 0 && r.IntN(2) == 0 {
					from = 1 + r.Int64N(cur)
				}
				w, err := m.Watch(context.Background(), "", from)
				if err != nil {
					t.Error(err)
					return
				}
				regs <- reg{w, from}
			}
		}()
	}
	go func() { wg.Wait(); close(regs) }()
	n := 0
	for r := range regs {
		got := collect(t, r.w, writes)
		r.w.Close()
		start := r.w.StartRevision()
		if r.from != 0 && start != r.from {
			t.Fatalf("start %d, asked %d", start, r.from)
		}
		for i, ev := range got {
			if ev.Item.Revision != start+int64(i) {
				t.Fatalf("watcher from %d: event %d at revision %d: gap or duplicate", start, i, ev.Item.Revision)
			}
		}
		if int64(len(got)) != writes-start+1 {
			t.Fatalf("watcher from %d got %d events, want %d", start, len(got), writes-start+1)
		}
		n++
	}
	if n != 64 {
		t.Fatalf("%d watchers checked", n)
	}
}

func TestWatchEndsWithContextOrClose(t *testing.T) {
	m := NewMachine()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := m.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range w.C() {
	}
	if !errors.Is(w.Err(), context.Canceled) {
		t.Fatalf("after cancel: %v", w.Err())
	}
	w2, err := m.Watch(context.Background(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	put(t, m, "k", `1`) // undelivered: Close must not wait for a reader
	w2.Close()
	w2.Close()
	if !errors.Is(w2.Err(), ErrWatchClosed) {
		t.Fatalf("after Close: %v", w2.Err())
	}
	if n := m.WatchStats().Watchers; n != 0 {
		t.Fatalf("%d watchers left", n)
	}
}

func TestStateChangedAndCommandAppliedFeeds(t *testing.T) {
	m := NewMachine()
	fast := m.StateChanged().Subscribe(64)
	defer fast.Close()
	slow := m.StateChanged().Subscribe(2)
	defer slow.Close()
	applied := m.CommandApplied().Subscribe(64)
	defer applied.Close()

	done := make(chan struct{})
	go func() {
		defer close(done)
		// Nobody reads slow: apply must still never wait.
		for i := range 10 {
			put(t, m, fmt.Sprintf("k%d", i), `1`)
		}
		del(t, m, "k0")
		m.Apply(0, mustCmdTB(t, command{Op: opDelete, Key: "missing"})) // rejected: no event
	}()
	select {
	case <-done:
	case <-time.After(watchTestTimeout):
		t.Fatal("apply blocked on a slow subscriber")
	}
	if slow.Dropped() != 9 || m.StateChanged().Dropped() != 9 {
		t.Fatalf("slow subscriber dropped %d (feed %d), want 9", slow.Dropped(), m.StateChanged().Dropped())
	}
	for i := range 10 {
		ev := <-fast.C()
		if ev.Type != EventPut || ev.Item.Key != fmt.Sprintf("k%d", i) || ev.Item.Revision != int64(i+1) {
			t.Fatalf("state_changed %d = %+v", i, ev)
		}
	}
	if ev := <-fast.C(); ev.Type != EventDelete || ev.Item.Key != "k0" || ev.Item.Revision != 11 {
		t.Fatalf("state_changed delete = %+v", ev)
	}
	if fast.Dropped() != 0 {
		t.Fatalf("fast subscriber dropped %d", fast.Dropped())
	}
	for i := range 11 {
		ca := <-applied.C()
		if ca.Revision != int64(i+1) || len(ca.Events) != 1 || ca.Events[0].Item.Revision != ca.Revision {
			t.Fatalf("command_applied %d = %+v", i, ca)
		}
	}
	select {
	case ca := <-applied.C():
		t.Fatalf("a rejected command was reported applied: %+v", ca)
	default:
	}
}

// The hub defends itself against a machine that breaks the contract: a
// revision that goes back ends the watchers that saw it, and events that
// start after revision 1 without a reset make the earlier ones compacted.
func TestWatchHubContractViolations(t *testing.T) {
	mk := func(rev int64) Event {
		return Event{Type: EventPut, Item: Item{Key: "k", Value: []byte(`1`), Revision: rev}}
	}
	ctx := context.Background()
	var late watchHub
	early, _ := late.watch(ctx, "", 1)
	defer early.Close()
	late.publish(mk(5))
	for range early.C() {
	}
	if !errors.Is(early.Err(), ErrCompacted) {
		t.Fatalf("watcher from 1 when history starts at 5: %v", early.Err())
	}

	var back watchHub
	for rev := int64(1); rev <= 5; rev++ {
		back.publish(mk(rev))
	}
	saw, _ := back.watch(ctx, "", 1)
	defer saw.Close()
	collect(t, saw, 5)
	back.publish(mk(4)) // revision 4 again
	for range saw.C() {
	}
	if !errors.Is(saw.Err(), ErrCompacted) {
		t.Fatalf("watcher that saw revision 4 before it was rewritten: %v", saw.Err())
	}
}

// Watchers come and go in any order across prefixes; those left keep
// getting their events and the count stays right.
func TestWatchersComeAndGo(t *testing.T) {
	rng := seeded(t)
	m := NewMachine()
	ctx := context.Background()
	var open []*Watcher
	for i := range 60 {
		w, err := m.Watch(ctx, fmt.Sprintf("p%d/", i%7), 0)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, w)
	}
	rng.Shuffle(len(open), func(i, j int) { open[i], open[j] = open[j], open[i] })
	for len(open) > 5 {
		open[0].Close()
		open = open[1:]
		if n := m.WatchStats().Watchers; n != len(open) {
			t.Fatalf("%d watchers counted, %d open", n, len(open))
		}
	}
	revs := map[string]int64{}
	for i := range 7 {
		key := fmt.Sprintf("p%d/k", i)
		revs[key] = put(t, m, key, `1`)
	}
	for _, w := range open {
		got := collect(t, w, m.Revision())
		if len(got) != 1 || !strings.HasPrefix(got[0].Item.Key, w.Prefix()) || got[0].Item.Revision != revs[got[0].Item.Key] {
			t.Fatalf("watcher of %q got %+v", w.Prefix(), got)
		}
		w.Close()
	}
	if n := m.WatchStats().Watchers; n != 0 {
		t.Fatalf("%d watchers left", n)
	}
}

// TestWatchGroupDeliversLikeWatchers: watchers of one group, from every
// revision of a history and while writes go on, served by one goroutine
// that polls them, get what a Watcher gets: their prefix's events in
// order, no gap, no repeat; a progress report when asked; and one that
// falls out of the history ends with ErrCompacted.
func TestWatchGroupDeliversLikeWatchers(t *testing.T) {
	rng := seeded(t)
	m := NewMachine()
	m.SetWatchConfig(WatchConfig{HistoryEvents: 1000})
	h := fill(t, m, rng, 60)
	g := NewWatchGroup()
	type watch struct {
		gw     GroupWatcher
		prefix string
		from   int64
		got    []Event
	}
	var ws []*watch
	for from := int64(1); from <= 61; from += 3 {
		prefix := []string{"a", "b", "ab", ""}[rng.IntN(4)]
		// Two of each: the second polls sharing the first's reads.
		for range 2 {
			gw, err := m.WatchGrouped(g, prefix, from)
			if err != nil {
				t.Fatal(err)
			}
			ws = append(ws, &watch{gw: gw, prefix: prefix, from: from})
		}
	}
	// More writes while the group is served.
	more := make(chan *history, 1)
	go func() { more <- fill(t, m, rand.New(rand.NewPCG(rng.Uint64(), 1)), 200) }()
	h2 := <-more
	h.events = append(h.events, h2.events...)
	last := m.Revision()
	deadline := time.After(watchTestTimeout)
	for done := false; !done; {
		select {
		case <-g.C():
		case <-deadline:
			t.Fatal("the group's watchers did not catch up")
		}
		done = true
		var cache PollCache
		for i, w := range ws {
			for {
				poll := w.gw.Poll
				if i%2 == 1 {
					poll = func() (WatchResponse, bool, error) { return w.gw.PollShared(&cache) }
				}
				resp, more, err := poll()
				if err != nil {
					t.Fatal(err)
				}
				w.got = append(w.got, resp.Events...)
				if !more {
					break
				}
			}
			if n := len(w.got); n < len(h.from(w.from, w.prefix)) {
				done = false
			}
		}
	}
	for _, w := range ws {
		sameEvents(t, fmt.Sprintf("group watcher of %q from %d", w.prefix, w.from), w.got, h.from(w.from, w.prefix))
	}
	// A progress report when asked, once caught up.
	ws[0].gw.RequestProgress()
	<-g.C()
	if resp, more, err := ws[0].gw.Poll(); err != nil || more || len(resp.Events) != 0 || resp.Revision != last {
		t.Fatalf("progress report: %+v %v %v, want revision %d", resp, more, err, last)
	}
	if resp, more, err := ws[0].gw.Poll(); err != nil || more || resp.Revision != 0 {
		t.Fatalf("a second poll with nothing asked: %+v %v %v", resp, more, err)
	}
	// A watcher not polled while the history moves past it ends with
	// ErrCompacted; the others, and a stopped one, are not affected.
	lagging := ws[1]
	ws[2].gw.Stop()
	ws[2].gw.Stop()
	for i := range 1100 {
		put(t, m, fmt.Sprintf("%sx%d", lagging.prefix, i%7), `1`) // its keys: it cannot be moved along
	}
	if _, _, err := lagging.gw.Poll(); !errors.Is(err, ErrCompacted) {
		t.Fatalf("a watcher left behind the history: %v", err)
	}
	lagging.gw.Stop()
	if st := m.WatchStats(); st.Watchers != len(ws)-2 {
		t.Fatalf("%d watchers registered, want %d", st.Watchers, len(ws)-2)
	}
	if _, err := m.WatchGrouped(g, "", 5); !errors.Is(err, ErrCompacted) {
		t.Fatalf("a start older than the history: %v", err)
	}
}

// TestPollCacheHoldsUntilReset: a read shared through a PollCache serves
// another watcher at the same cursor, and sharing one allocation is the
// point; but once the history is started over (revisions went back), a
// read from before must not be served.
func TestPollCacheHoldsUntilReset(t *testing.T) {
	var h watchHub
	for rev := int64(1); rev <= 5; rev++ {
		h.publish(putEvent(rev, "k"))
	}
	g := NewWatchGroup()
	var gws []GroupWatcher
	for range 3 {
		gw, err := h.watchGrouped(g, "k", 3)
		if err != nil {
			t.Fatal(err)
		}
		gws = append(gws, gw)
	}
	var cache PollCache
	r0, _, err := gws[0].PollShared(&cache)
	if err != nil || len(r0.Events) != 3 || r0.Revision != 5 {
		t.Fatalf("first read: %+v %v", r0, err)
	}
	r1, _, err := gws[1].PollShared(&cache)
	if err != nil || len(r1.Events) != 3 || &r1.Events[0] != &r0.Events[0] {
		t.Fatalf("second read, same cursor: %+v %v (shared: want the first's events)", r1, err)
	}
	// Revision 3 again, another key: the history starts over at 3.
	h.publish(putEvent(3, "k2"))
	r2, _, err := gws[2].PollShared(&cache)
	if err != nil || len(r2.Events) != 1 || r2.Events[0].Item.Key != "k2" || r2.Revision != 3 {
		t.Fatalf("after the history started over: %+v %v, want revision 3's k2 only", r2, err)
	}
	for _, gw := range gws[:2] {
		if _, _, err := gw.PollShared(&cache); !errors.Is(err, ErrCompacted) {
			t.Fatalf("a watcher past the rewritten revision: %v, want ErrCompacted", err)
		}
	}
}
