package testwait

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeT records a Fatalf instead of stopping the goroutine for good.
type fakeT struct {
	testing.TB
	msg string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

// run calls For on a fakeT and returns the failure message, "" if none.
func run(timeout time.Duration, what string, cond func() bool) (msg string) {
	f := &fakeT{}
	defer func() {
		if r := recover(); r != nil && r != any(f) {
			panic(r)
		}
		msg = f.msg
	}()
	For(f, timeout, what, cond)
	return ""
}

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	var calls atomic.Int32
	if msg := run(10*time.Second, "third call", func() bool { return calls.Add(1) == 3 }); msg != "" {
		t.Fatalf("For failed: %s", msg)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("cond called %d times, want 3 (For must stop polling once it holds)", n)
	}
}

func TestForCallsTheConditionAtLeastOnce(t *testing.T) {
	called := false
	if msg := run(0, "first call", func() bool { called = true; return true }); msg != "" || !called {
		t.Fatalf("For(0) with a true condition: called %v, failure %q", called, msg)
	}
}

func TestForFailsWithWhatAfterTheTimeout(t *testing.T) {
	start := time.Now()
	msg := run(50*time.Millisecond, "the moon turns blue", func() bool { return false })
	took := time.Since(start)
	if !strings.Contains(msg, "the moon turns blue") || !strings.Contains(msg, "50ms") {
		t.Fatalf("failure %q does not name the condition and the timeout", msg)
	}
	if took < 50*time.Millisecond {
		t.Fatalf("For gave up after %v, before its 50ms timeout", took)
	}
}
