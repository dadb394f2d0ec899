package kv

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkApply measures Machine.Apply of put commands: decoding and
// validating the command, then updating the map, as every node does for
// every committed write. Keys cycle over 10,000 (so most puts overwrite,
// as a steady workload does); values are 100-byte JSON strings.
func BenchmarkApply(b *testing.B) {
	const keys = 10_000
	value := []byte(`"` + strings.Repeat("v", 98) + `"`)
	cmds := make([][]byte, keys)
	for i := range cmds {
		c, err := encodeCommand(command{Op: opPut, Key: fmt.Sprintf("bench/%06d", i), Value: value})
		if err != nil {
			b.Fatal(err)
		}
		cmds[i] = c
	}
	m := NewMachine()
	b.SetBytes(int64(len(cmds[0])))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if r, ok := m.Apply(uint64(i+1), cmds[i%keys]).(Result); !ok || r.Err != nil {
			b.Fatalf("apply %d: %v", i, r.Err)
		}
	}
}
