package kv

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// TestAppendCommandMatchesMarshal checks the reflection-free encoder of
// puts and deletes against msgpack.Marshal, byte for byte, across the
// length classes of strings and binaries and every optional field.
func TestAppendCommandMatchesMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := []int{0, 1, 31, 32, 255, 256, 65535, 65536, 70000}
	pick := func() int { return lengths[rng.IntN(len(lengths))] }
	for i := range 2000 {
		c := command{Op: op(1 + rng.IntN(8)), Key: strings.Repeat("k", pick())}
		if v := pick(); v > 0 || rng.IntN(2) == 0 {
			c.Value = bytes.Repeat([]byte{'v'}, v)
		}
		if rng.IntN(2) == 0 {
			r := rng.Int64() - rng.Int64()
			if rng.IntN(3) == 0 {
				r = 0
			}
			c.If = &r
		}
		if rng.IntN(2) == 0 {
			c.Client = strings.Repeat("c", min(pick(), MaxClientIDBytes))
		}
		if rng.IntN(2) == 0 {
			c.Seq = rng.Uint64() >> rng.IntN(64)
		}
		if rng.IntN(3) == 0 {
			c.At = rng.Int64() - rng.Int64()
		}
		want, err := msgpack.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d: %+v: appendCommand differs from msgpack.Marshal:\n got %x\nwant %x", i, c, got[:min(len(got), 64)], want[:min(len(want), 64)])
		}
		if back, err := decodeCommand(got); err == nil && (back.Key != c.Key || back.Seq != c.Seq) {
			t.Fatalf("case %d: round trip lost fields", i)
		}
	}
}

// BenchmarkEncodeCommand compares the write path's encoder of a put with
// a request id against msgpack.Marshal of the same command.
func BenchmarkEncodeCommand(b *testing.B) {
	c := command{Op: opPut, Key: "bench/000123", Value: bytes.Repeat([]byte{'x'}, 100),
		Client: "go-0123456789abcdef01234567", Seq: 12345}
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeCommand(c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := msgpack.Marshal(&c); err != nil {
				b.Fatal(err)
			}
		}
	})
}
