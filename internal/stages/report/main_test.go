package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSplitOneWrite feeds the marks of one write through a leader and two
// followers, at known times, and checks every stage's length.
func TestSplitOneWrite(t *testing.T) {
	dir := t.TempDir()
	const base = 1_000_000_000
	write := func(name string, marks ...string) {
		var b strings.Builder
		for _, m := range marks {
			var at int64
			var idx uint64
			var stage string
			if _, err := fmt.Sscanf(m, "%d %d %s", &at, &idx, &stage); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%d %s %d %s\n", base+at*1000, name, idx, stage)
		}
		if err := os.WriteFile(filepath.Join(dir, name+"-1.txt"), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Times in microseconds; the write is entry 7.
	write("n1",
		"0 0 ws_frame", "10 0 ws_handle", "30 7 ready", "32 7 send_app", "35 0 peer_write",
		"400 7 saved", "600 0 peer_frame", "604 7 recv_resp", "630 7 commit_ready",
		"650 7 applied", "660 0 ws_handled")
	// n2 acknowledges first, so the report follows it.
	write("n2",
		"135 0 peer_frame", "140 7 recv_app", "155 7 ready", "500 7 saved", "503 7 send_resp", "510 0 peer_write")
	write("n3",
		"150 0 peer_frame", "155 7 recv_app", "170 7 ready", "700 7 saved", "705 7 send_resp", "710 0 peer_write")
	nodes, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var leader *node
	var followers []*node
	for _, n := range nodes {
		if n.name == "n1" {
			leader = n
		} else {
			followers = append(followers, n)
		}
	}
	want := []int64{10, 20, 2, 3, 100, 5, 15, 345, 3, 7, 90, 4, 26, 20, 10, 370, 660}
	rows := split(leader, followers)
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i, r := range rows {
		if len(r.values) != 1 || r.values[0] != want[i]*1000 {
			t.Errorf("%s: %v ns, want %d us", r.name, r.values, want[i])
		}
	}
}

func TestLoadRefusesGarbage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "n1-1.txt"), []byte("12 n1 x ready\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := load(dir); err == nil {
		t.Fatal("a bad index was accepted")
	}
}
