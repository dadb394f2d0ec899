package main

import (
	"strings"
	"testing"
	"time"
)

// TestMeasure saves a few entries and times each.
func TestMeasure(t *testing.T) {
	d, err := measure(5, 200)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 5 {
		t.Fatalf("%d saves timed, want 5", len(d))
	}
	for _, x := range d {
		if x <= 0 {
			t.Fatalf("a save of %v", x)
		}
	}
}

func TestSummary(t *testing.T) {
	d := []time.Duration{4, 1, 3, 2, 10}
	got := summary(d, 200)
	want := "5 synced saves of one 200 B entry: p50 3ns p90 10ns mean 4ns"
	if !strings.Contains(got, want) {
		t.Fatalf("summary %q, want %q", got, want)
	}
}
