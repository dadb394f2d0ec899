package msgpackcheck

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestValidateAcceptsWhatTheLibraryEncodes(t *testing.T) {
	values := []any{
		nil, true, 1, -1, 300, -300, 1 << 40, 1.5, float32(2.5), "", "hello",
		[]byte{1, 2, 3}, []any{1, "a", []any{nil}}, map[string]any{"a": 1, "b": []any{true}},
		make([]byte, 70000), string(make([]byte, 300)), make([]any, 20),
	}
	for _, v := range values {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := Validate(b, DefaultMaxDepth); err != nil {
			t.Errorf("Validate(%T) = %v", v, err)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	cases := map[string][]byte{
		"empty":          {},
		"bin32 4GiB":     {0xc6, 0xff, 0xff, 0xff, 0xff},
		"str32 huge":     {0xdb, 0x7f, 0xff, 0xff, 0xff, 'a'},
		"array32 huge":   {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01},
		"map16 short":    {0xde, 0x00, 0x02, 0x01, 0x01, 0x01},
		"fixarray short": {0x93, 0x01},
		"unused c1":      {0xc1},
		"trailing":       {0x01, 0x02},
		"truncated u64":  {0xcf, 0x00},
		"ext8 no type":   {0xc7, 0x00},
	}
	for name, b := range cases {
		if err := Validate(b, DefaultMaxDepth); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
		}
	}
	deep := make([]byte, 100)
	for i := range deep {
		deep[i] = 0x91
	}
	deep[len(deep)-1] = 0x01
	if err := Validate(deep, DefaultMaxDepth); !errors.Is(err, ErrInvalid) {
		t.Errorf("deep nesting: Validate = %v, want ErrInvalid", err)
	}
}

// TestValidateTruncations checks every strict prefix of valid encodings is
// rejected (seeded random values; the seed is printed).
func TestValidateTruncations(t *testing.T) {
	seed := uint64(7)
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	for range 200 {
		v := map[string]any{"k": r.Uint64(), "s": string(make([]byte, r.IntN(40))), "a": []any{r.Int64(), r.Float64(), nil}}
		b, _ := msgpack.Marshal(v)
		for i := range b {
			if err := Validate(b[:i], DefaultMaxDepth); err == nil {
				t.Fatalf("prefix %d of %x accepted", i, b)
			}
		}
	}
}

func FuzzValidate(f *testing.F) {
	f.Add([]byte{0x81, 0xa1, 'a', 0x01})
	f.Add([]byte{0xc6, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if Validate(b, DefaultMaxDepth) != nil {
			return
		}
		// Whatever passes must decode without the library tripping over
		// lengths (it may still reject types, which is fine).
		var v any
		_ = msgpack.Unmarshal(b, &v)
	})
}
