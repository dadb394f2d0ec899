// Package msgpackcheck validates the structure of MessagePack bytes before
// a struct decoder sees them.
//
// Decoders that trust declared lengths (vmihailenco/msgpack preallocates
// what an array, map, string or bin header claims) can be made to allocate
// gigabytes by a few bytes of input. Validate walks the encoding without
// allocating and rejects any value whose declared size exceeds the bytes
// that follow it, so that once it passes, decoding allocates at most a
// small multiple of the input size.
package msgpackcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrInvalid is wrapped by every error Validate returns.
var ErrInvalid = errors.New("invalid msgpack")

// DefaultMaxDepth bounds how deeply arrays and maps may nest.
const DefaultMaxDepth = 32

// Validate checks that b holds exactly one well-formed MessagePack value
// whose nesting is at most maxDepth deep and whose every declared length
// fits in the remaining bytes.
func Validate(b []byte, maxDepth int) error {
	v := validator{b: b, maxDepth: maxDepth}
	if err := v.value(0); err != nil {
		return err
	}
	if v.pos != len(b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrInvalid, len(b)-v.pos)
	}
	return nil
}

type validator struct {
	b        []byte
	pos      int
	maxDepth int
}

func (v *validator) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrInvalid, what, v.pos)
}

// take advances past n bytes, failing if fewer remain.
func (v *validator) take(n uint64) error {
	if n > uint64(len(v.b)-v.pos) {
		return v.fail("length exceeds input")
	}
	v.pos += int(n)
	return nil
}

// length reads a big-endian length of size bytes.
func (v *validator) length(size int) (uint64, error) {
	if len(v.b)-v.pos < size {
		return 0, v.fail("truncated length")
	}
	p := v.b[v.pos : v.pos+size]
	v.pos += size
	switch size {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), nil
	default:
		return uint64(binary.BigEndian.Uint32(p)), nil
	}
}

func (v *validator) value(depth int) error {
	if v.pos >= len(v.b) {
		return v.fail("truncated value")
	}
	c := v.b[v.pos]
	v.pos++
	switch {
	case c <= 0x7f || c >= 0xe0: // fixints
		return nil
	case c <= 0x8f:
		return v.container(uint64(c&0x0f), 2, depth)
	case c <= 0x9f:
		return v.container(uint64(c&0x0f), 1, depth)
	case c <= 0xbf:
		return v.take(uint64(c & 0x1f))
	}
	switch c {
	case 0xc0, 0xc2, 0xc3: // nil, false, true
		return nil
	case 0xc4, 0xd9: // bin8, str8
		return v.sized(1, 0)
	case 0xc5, 0xda:
		return v.sized(2, 0)
	case 0xc6, 0xdb:
		return v.sized(4, 0)
	case 0xc7: // ext8: length, type, data
		return v.sized(1, 1)
	case 0xc8:
		return v.sized(2, 1)
	case 0xc9:
		return v.sized(4, 1)
	case 0xca:
		return v.take(4)
	case 0xcb:
		return v.take(8)
	case 0xcc, 0xd0:
		return v.take(1)
	case 0xcd, 0xd1:
		return v.take(2)
	case 0xce, 0xd2:
		return v.take(4)
	case 0xcf, 0xd3:
		return v.take(8)
	case 0xd4:
		return v.take(2)
	case 0xd5:
		return v.take(3)
	case 0xd6:
		return v.take(5)
	case 0xd7:
		return v.take(9)
	case 0xd8:
		return v.take(17)
	case 0xdc, 0xde:
		n, err := v.length(2)
		if err != nil {
			return err
		}
		return v.container(n, mult(c), depth)
	case 0xdd, 0xdf:
		n, err := v.length(4)
		if err != nil {
			return err
		}
		return v.container(n, mult(c), depth)
	}
	return v.fail(fmt.Sprintf("unused type byte 0x%02x", c))
}

func mult(c byte) uint64 {
	if c == 0xde || c == 0xdf {
		return 2
	}
	return 1
}

func (v *validator) sized(lenBytes int, extra uint64) error {
	n, err := v.length(lenBytes)
	if err != nil {
		return err
	}
	return v.take(n + extra)
}

// container checks n elements (times per: 2 for maps), each of which takes
// at least one byte, so a count larger than the rest of the input is
// rejected before any element is read.
func (v *validator) container(n, per uint64, depth int) error {
	if depth >= v.maxDepth {
		return v.fail("nested too deeply")
	}
	total := n * per
	if total > uint64(len(v.b)-v.pos) {
		return v.fail("element count exceeds input")
	}
	for range total {
		if err := v.value(depth + 1); err != nil {
			return err
		}
	}
	return nil
}
