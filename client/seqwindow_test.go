package client

import (
	"context"
	"testing"
	"time"
)

func TestSeqWindowBoundsTheSpanInFlight(t *testing.T) {
	w := newSeqWindow(4)
	ctx := context.Background()
	var got []uint64
	for range 4 {
		s, err := w.acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	// 1 is still open: 5 would be 4 past it.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if s, err := w.acquire(short); err == nil {
		t.Fatalf("acquired %d with 1 still open and a window of 4", s)
	}
	// Releasing a later one does not move the window; releasing 1 does.
	w.release(3)
	short2, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	if s, err := w.acquire(short2); err == nil {
		t.Fatalf("acquired %d before the oldest was released", s)
	}
	w.release(1)
	if s, err := w.acquire(ctx); err != nil || s != 5 {
		t.Fatalf("after releasing the oldest: %d, %v; want 5", s, err)
	}
	if got[0] != 1 || got[3] != 4 {
		t.Fatalf("sequence numbers %v", got)
	}
}
