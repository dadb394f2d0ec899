package kv

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkApplyWithWatchers measures Apply's cost with many watchers
// open: what publish adds to every committed write on the raft loop. The
// idle watchers watch prefixes nothing is written under (publish moves
// their cursors on the spot; one prefix test per distinct prefix); the
// busy ones watch everything and are drained by their own goroutines.
func BenchmarkApplyWithWatchers(b *testing.B) {
	for _, tc := range []struct{ idle, prefixes, busy int }{{0, 0, 0}, {1000, 1000, 0}, {1000, 10, 0}, {1000, 1000, 10}} {
		b.Run(fmt.Sprintf("idle=%d/prefixes=%d/busy=%d", tc.idle, tc.prefixes, tc.busy), func(b *testing.B) {
			const keys = 10_000
			value := []byte(`"` + strings.Repeat("v", 98) + `"`)
			cmds := make([][]byte, keys)
			for i := range cmds {
				cmds[i] = mustCmdTB(b, command{Op: opPut, Key: fmt.Sprintf("bench/%06d", i), Value: value})
			}
			m := NewMachine()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var watchers []*Watcher
			for i := range tc.idle {
				w, err := m.Watch(ctx, fmt.Sprintf("idle/%d/", i%tc.prefixes), 0)
				if err != nil {
					b.Fatal(err)
				}
				watchers = append(watchers, w)
			}
			for range tc.busy {
				w, err := m.Watch(ctx, "bench/", 0)
				if err != nil {
					b.Fatal(err)
				}
				watchers = append(watchers, w)
				go func() {
					for range w.C() {
					}
				}()
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if r, ok := m.Apply(uint64(i+1), cmds[i%keys]).(Result); !ok || r.Err != nil {
					b.Fatalf("apply %d: %v", i, r.Err)
				}
			}
			b.StopTimer()
			for _, w := range watchers {
				w.Close()
			}
		})
	}
}
