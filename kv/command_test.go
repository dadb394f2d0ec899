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

// TestDecodeSimpleCommand checks the fast decoder against the general one:
// on every encoding of a put or delete, and on random corruptions of
// them, whatever it accepts Validate and Unmarshal accept too, with the
// same command.
func TestDecodeSimpleCommand(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	lengths := []int{0, 1, 31, 32, 255, 256, 65535, 65536}
	pick := func() int { return lengths[rng.IntN(len(lengths))] }
	accepted := 0
	for i := range 20000 {
		c := command{Op: op(1 + rng.IntN(8)), Key: strings.Repeat("k", pick())}
		if v := pick(); v > 0 {
			c.Value = bytes.Repeat([]byte{'v'}, v)
		}
		if rng.IntN(2) == 0 {
			r := rng.Int64() - rng.Int64()
			c.If = &r
		}
		if rng.IntN(2) == 0 {
			c.Client = strings.Repeat("c", 1+rng.IntN(MaxClientIDBytes))
			c.Seq = 1 + rng.Uint64()>>rng.IntN(64)
		}
		if rng.IntN(3) == 0 {
			c.At = 1 + rng.Int64N(1<<40)
		}
		b, err := encodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			// Corrupt: flip, drop or append bytes.
			b = bytes.Clone(b)
			switch rng.IntN(3) {
			case 0:
				b[rng.IntN(len(b))] ^= byte(1 << rng.IntN(8))
			case 1:
				b = b[:rng.IntN(len(b))]
			case 2:
				b = append(b, byte(rng.IntN(256)))
			}
		}
		fast, ok := decodeSimpleCommand(b)
		if i%2 == 0 && !ok {
			t.Fatalf("case %d: %+v: the fast decoder refused appendCommand's encoding", i, c)
		}
		if !ok {
			continue
		}
		accepted++
		var slow command
		if err := msgpack.Unmarshal(b, &slow); err != nil {
			t.Fatalf("case %d: fast decoder accepted what Unmarshal refuses (%v): %x", i, err, b[:min(len(b), 64)])
		}
		if fast.Op != slow.Op || fast.Key != slow.Key || !bytes.Equal(fast.Value, slow.Value) ||
			(fast.Value == nil) != (slow.Value == nil) || (fast.If == nil) != (slow.If == nil) ||
			(fast.If != nil && *fast.If != *slow.If) || fast.Client != slow.Client || fast.Seq != slow.Seq ||
			fast.At != slow.At || len(slow.Ops) != 0 {
			t.Fatalf("case %d: fast %+v, Unmarshal %+v", i, fast, slow)
		}
	}
	if accepted < 10000 {
		t.Fatalf("only %d encodings accepted", accepted)
	}
}
