package main

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// defaultGCPercent is serve's --gc-percent. Go's own default, 100, lets
// the heap grow to twice what is live before it collects; a node's live
// heap is mostly its keys and values, so that doubles the memory they
// cost. 50 holds a third less heap for a few more collections
// (BENCHMARKS.md, "Memory per node").
const defaultGCPercent = 50

// gcPercent decides the garbage collector's target of a serve process:
// --gc-percent when it was given, else nothing when the GOGC environment
// variable is set (the runtime has applied it already), else flagValue,
// the flag's default. set is false when the runtime's setting stays.
func gcPercent(flagValue int, flagGiven bool, gogc string) (percent int, set bool) {
	if !flagGiven && strings.TrimSpace(gogc) != "" {
		return 0, false
	}
	return flagValue, true
}

// checkGCPercent reports a --gc-percent that serve refuses.
func checkGCPercent(p int) error {
	if p < 1 || p > 10_000 {
		return fmt.Errorf("--gc-percent %d is not between 1 and 10000 (GOGC=off turns the collector off)", p)
	}
	return nil
}

// applyGCPercent sets the collector's target as gcPercent decides and
// returns a function that restores the previous one (serve may run inside
// a test's process) and the target in force.
func applyGCPercent(flagValue int, flagGiven bool, gogc string) (restore func(), inForce string) {
	p, set := gcPercent(flagValue, flagGiven, gogc)
	if !set {
		return func() {}, "GOGC=" + strings.TrimSpace(gogc)
	}
	old := debug.SetGCPercent(p)
	return func() { debug.SetGCPercent(old) }, fmt.Sprint(p)
}
