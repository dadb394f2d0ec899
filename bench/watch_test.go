package bench

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const milli = time.Millisecond

// TestDeliveryLags: each sight's lag from its probe's sending, and from
// its acknowledgement where there was one, which a watcher may beat (a
// negative lag); sights of probes never acknowledged are counted apart.
func TestDeliveryLags(t *testing.T) {
	acked := map[time.Duration]time.Duration{10 * milli: 13 * milli, 30 * milli: 31 * milli}
	sights := []ProbeSight{
		{Sent: 10 * milli, At: 15 * milli}, // 5 milli after sending, 2 after the ack
		{Sent: 10 * milli, At: 12 * milli}, // seen before the writer saw the ack
		{Sent: 20 * milli, At: 26 * milli}, // never acknowledged
		{Sent: 30 * milli, At: 41 * milli},
	}
	fromSend, fromAck, unacked := DeliveryLags(sights, acked)
	if want := []time.Duration{5 * milli, 2 * milli, 6 * milli, 11 * milli}; !slices.Equal(fromSend, want) {
		t.Errorf("from send: %v, want %v", fromSend, want)
	}
	if want := []time.Duration{2 * milli, -1 * milli, 10 * milli}; !slices.Equal(fromAck, want) {
		t.Errorf("from ack: %v, want %v", fromAck, want)
	}
	if unacked != 1 {
		t.Errorf("unacked %d, want 1", unacked)
	}
	if s, a, u := DeliveryLags(nil, acked); len(s) != 0 || len(a) != 0 || u != 0 {
		t.Errorf("no sights: %v %v %d", s, a, u)
	}
}

// TestWatchReportSummary: the figures of two watchers' sights, the
// second of which missed a probe.
func TestWatchReportSummary(t *testing.T) {
	acked := map[time.Duration]time.Duration{0: 2 * milli, 20 * milli: 22 * milli}
	sights := [][]ProbeSight{
		{{Sent: 0, At: 3 * milli}, {Sent: 20 * milli, At: 23 * milli}},
		{{Sent: 0, At: 6 * milli}},
	}
	r := WatchReport{Watchers: 2}
	r.Summary(sights, acked, []time.Duration{2 * milli, 2 * milli})
	if r.Probes != 2 || r.Delivered != 3 {
		t.Errorf("probes %d delivered %d, want 2 and 3", r.Probes, r.Delivered)
	}
	if r.Lag.P50 != 3*milli || r.Lag.Max != 6*milli || r.AckLag.P50 != milli || r.AckLag.Max != 4*milli || r.ProbeWrite.P50 != 2*milli {
		t.Errorf("lags %+v", r)
	}
}

// TestProberWritesUntilStopAndOnceMore: the prober's writes carry the time
// since its start, in order, until Stop, and one more comes
// at Stop; each acknowledged write is in the acked map and a failed one
// is the error Stop returns, not in the map.
func TestProberWritesUntilStopAndOnceMore(t *testing.T) {
	start := time.Now()
	var (
		mu    sync.Mutex
		sents []time.Duration
		calls atomic.Int64
	)
	failure := errors.New("no leader")
	p := StartProber(context.Background(), start, func(ctx context.Context, sent time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		sents = append(sents, sent)
		if calls.Add(1) == 2 {
			return failure
		}
		return nil
	})
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("fewer than 3 probes within 10s")
		}
		time.Sleep(milli) // polling a counter, not waiting out a time
	}
	acked, lat, err := p.Stop()
	mu.Lock()
	defer mu.Unlock()
	n := len(sents)
	if n < 4 || !errors.Is(err, failure) || len(acked) != n-1 || len(lat) != n-1 {
		t.Fatalf("%d writes, %d acked, %d latencies, err %v", n, len(acked), len(lat), err)
	}
	for i, s := range sents {
		if i > 0 && s <= sents[i-1] {
			t.Errorf("probe %d sent at %v, not after the one before (%v)", i, s, sents[i-1])
		}
		if _, ok := acked[s]; ok == (i == 1) {
			t.Errorf("probe %d (sent %v): acked %v", i, s, ok)
		}
	}
	for s, a := range acked {
		if a < s {
			t.Errorf("acked at %v before sent at %v", a, s)
		}
	}
}

// TestProberEndsWithItsContext: a cancelled context stops the writes
// without Stop's last probe.
func TestProberEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	p := StartProber(ctx, time.Now(), func(context.Context, time.Duration) error { calls.Add(1); return nil })
	cancel()
	<-p.done
	before := calls.Load()
	if _, _, err := p.Stop(); err != nil || calls.Load() != before {
		t.Fatalf("after cancel: err %v, %d writes then %d", err, before, calls.Load())
	}
}

// TestWaitDelivered returns as soon as every watcher has the count, and
// at the timeout when one never does.
func TestWaitDelivered(t *testing.T) {
	counts := []int64{3, 3, 3}
	t0 := time.Now()
	WaitDelivered(len(counts), func(i int) int64 { return counts[i] }, 3, 10*time.Second)
	if time.Since(t0) > 5*time.Second {
		t.Errorf("caught-up watchers waited %v", time.Since(t0))
	}
	counts[1] = 2
	t0 = time.Now()
	WaitDelivered(len(counts), func(i int) int64 { return counts[i] }, 3, 50*milli)
	if el := time.Since(t0); el < 50*milli {
		t.Errorf("a watcher behind: returned after %v, before the 50ms timeout", el)
	}
}
