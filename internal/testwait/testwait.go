// Package testwait waits, in tests, for a condition to hold. It depends
// on the standard library alone, so the internal tests of any package of
// the module (the root package, memnet, transport, ...) can import it
// without an import cycle.
package testwait

import (
	"testing"
	"time"
)

// Polling starts at minPoll, so a condition that holds within a
// millisecond is seen within one, and doubles up to maxPoll, so a long
// wait does not spin on a machine shared with other tests.
const (
	minPoll = time.Millisecond
	maxPoll = 20 * time.Millisecond
)

// For polls cond until it returns true. If it has not within timeout, it
// fails t with what (a description of the condition) and stops the
// test (t.Fatalf), so it must be called from the test's goroutine. cond
// is called at least once, however short the timeout.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	poll := minPoll
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(poll)
		poll = min(2*poll, maxPoll)
	}
}
