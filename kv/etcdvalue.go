package kv

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/unrdf/consensus/api"
)

// etcd's v3 API stores values as arbitrary bytes; this state stores JSON
// values. The two are mapped so that each API reads what the other
// wrote as naturally as it can, and so that bytes written through etcd
// read back through etcd unchanged:
//
//   - bytes that are a JSON value other than a string (an object, an
//     array, a number, true, false, null) are stored as they are;
//   - any other bytes (text, a JSON string, binary) are stored as a JSON
//     string: valid UTF-8 as its characters, and each byte of an invalid
//     UTF-8 sequence as the escape \udcXX (a lone low surrogate, which no
//     valid text contains, as Python's "surrogateescape" does).
//
// Reading through etcd, a stored JSON string gives back its characters
// (with \udc80 to \udcff turned back into the bytes 0x80 to 0xff), and
// any other stored value its bytes. So `etcdctl put k hello` shows as
// "hello" over HTTP, and a JSON object put over HTTP reads through etcd
// as its JSON text.

// EtcdStoredValue returns the JSON value that stores b, bytes written
// through the etcd API.
func EtcdStoredValue(b []byte) []byte {
	if first, ok := firstNonSpace(b); ok && first != '"' && json.Valid(b) {
		return b
	}
	return appendEtcdString(make([]byte, 0, len(b)+2), b)
}

// EtcdValue returns the bytes the etcd API shows for v, a stored JSON
// value.
func EtcdValue(v []byte) []byte {
	first, ok := firstNonSpace(v)
	if !ok || first != '"' {
		return v
	}
	if b, ok := api.UnquoteKeyJSON(v); ok {
		return b
	}
	return v
}

func firstNonSpace(b []byte) (byte, bool) {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c, true
	}
	return 0, false
}

const hexDigits = "0123456789abcdef"

// appendEtcdString appends b as a JSON string (see EtcdStoredValue); its
// inverse is api.UnquoteKeyJSON, which shows keys the same way.
func appendEtcdString(out, b []byte) []byte {
	out = append(out, '"')
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && n <= 1:
			out = append(out, '\\', 'u', 'd', 'c', hexDigits[b[0]>>4], hexDigits[b[0]&0xf])
		case r == '"' || r == '\\':
			out = append(out, '\\', byte(r))
		case r < 0x20 || r == 0x7f:
			out = append(out, '\\', 'u', '0', '0', hexDigits[r>>4], hexDigits[r&0xf])
		default:
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	return append(out, '"')
}
