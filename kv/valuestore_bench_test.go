package kv

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkValueStoreGet reads random keys of a 100,000-key state of
// 100 B values, with and without a value store.
func BenchmarkValueStoreGet(b *testing.B) {
	for _, store := range []bool{false, true} {
		b.Run(fmt.Sprintf("store=%v", store), func(b *testing.B) {
			var opts []Option
			if store {
				vs, err := OpenValueStore(filepath.Join(b.TempDir(), "values"), ValueStoreOptions{})
				if err != nil {
					b.Fatal(err)
				}
				defer vs.Close()
				opts = append(opts, WithValueStore(vs))
			}
			m := NewMachine(opts...)
			val := []byte(`"` + strings.Repeat("x", 98) + `"`)
			const n = 100_000
			for i := range n {
				m.Apply(uint64(i+1), mustCmdTB(b, command{Op: opPut, Key: fmt.Sprintf("bench/%07d", i), Value: val}))
			}

			b.ResetTimer()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
				for pb.Next() {
					if _, ok := m.Get(fmt.Sprintf("bench/%07d", rng.IntN(n))); !ok {
						panic("missing")
					}
				}
			})

		})
	}
}
