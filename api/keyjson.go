package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// Keys are any bytes (etcd's binary keys are written through etcd's
// API), but a JSON string is text: encoding/json would turn each byte of
// an invalid UTF-8 sequence into U+FFFD and lose the key. Every key the
// HTTP API shows is therefore written by AppendKeyJSON: valid UTF-8 as
// encoding/json writes it, and each byte of an invalid UTF-8 sequence as
// the escape \udcXX (a lone low surrogate, which no valid text holds, as
// Python's "surrogateescape" does; the state stores etcd's binary values
// the same way). UnquoteKeyJSON reverses it. A client that decodes such
// a string with a decoder of its own gets U+FFFD for each of those bytes
// instead; docs/API.md says so.

// AppendKeyJSON appends key as a JSON string, without allocating: as
// encoding/json writes it without HTML escaping (U+2028 and U+2029
// escaped), except that each byte of an invalid UTF-8 sequence is written
// as \udcXX, so that UnquoteKeyJSON gives back the same bytes.
func AppendKeyJSON(b []byte, key string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(key); {
		c := key[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(key[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, '\\', 'u', 'd', 'c', hex[c>>4], hex[c&0xf])
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, key[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// errKeyJSON is a key that is not a JSON string.
var errKeyJSON = errors.New("a key is not a JSON string")

// UnquoteKeyJSON decodes v, a JSON string with optional surrounding white
// space, into bytes: the inverse of AppendKeyJSON (\udc80 to \udcff are
// the bytes 0x80 to 0xff), and for any other JSON string its UTF-8 text
// (a lone surrogate otherwise as U+FFFD, as encoding/json does). ok is
// false when v is not a JSON string.
func UnquoteKeyJSON(v []byte) (b []byte, ok bool) {
	i := 0
	for i < len(v) && v[i] != '"' {
		switch v[i] {
		case ' ', '\t', '\n', '\r':
		default:
			return nil, false
		}
		i++
	}
	i++
	out := make([]byte, 0, len(v))
	for i < len(v) {
		c := v[i]
		switch {
		case c == '"':
			return out, true
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(v) {
			return nil, false
		}
		esc := v[i+1]
		i += 2
		switch esc {
		case '"', '\\', '/':
			out = append(out, esc)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(v, i)
			if !ok {
				return nil, false
			}
			i += 4
			switch {
			case r >= 0xdc80 && r <= 0xdcff:
				out = append(out, byte(r-0xdc00))
			case r >= 0xd800 && r < 0xdc00:
				// A surrogate pair, if a low surrogate follows.
				if i+6 <= len(v) && v[i] == '\\' && v[i+1] == 'u' {
					if lo, ok := hex4(v, i+2); ok && lo >= 0xdc00 && lo < 0xe000 {
						out = utf8.AppendRune(out, 0x10000+(r-0xd800)<<10+(lo-0xdc00))
						i += 6
						continue
					}
				}
				out = utf8.AppendRune(out, utf8.RuneError)
			default:
				out = utf8.AppendRune(out, r)
			}
		default:
			return nil, false
		}
	}
	return nil, false
}

func hex4(v []byte, i int) (rune, bool) {
	if i+4 > len(v) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(v[i:i+4]), 16, 16)
	return rune(n), err == nil
}

// JSONKey is a key in a JSON document: written by AppendKeyJSON, read by
// UnquoteKeyJSON. Item, WatchEventData and Lease write and read their
// keys as JSONKey.
type JSONKey string

// MarshalJSON writes k with AppendKeyJSON.
func (k JSONKey) MarshalJSON() ([]byte, error) { return AppendKeyJSON(nil, string(k)), nil }

// UnmarshalJSON reads k with UnquoteKeyJSON.
func (k *JSONKey) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	s, ok := UnquoteKeyJSON(b)
	if !ok {
		return errKeyJSON
	}
	*k = JSONKey(s)
	return nil
}

// marshalJSON is json.Marshal without HTML escaping: a MarshalJSON's
// output is escaped, or not, by the encoder that calls it, as the value
// would be without the method (encoding/json escapes, it never unescapes).
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// MarshalJSON writes it as its fields say, its key with AppendKeyJSON.
func (it Item) MarshalJSON() ([]byte, error) {
	type plain Item
	return marshalJSON(struct {
		Key JSONKey `json:"key"`
		plain
	}{JSONKey(it.Key), plain(it)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (it *Item) UnmarshalJSON(b []byte) error {
	type plain Item
	w := struct {
		*plain
		Key *JSONKey `json:"key"`
	}{plain: (*plain)(it), Key: (*JSONKey)(&it.Key)}
	return json.Unmarshal(b, &w)
}

// watchEventJSON is WatchEventData's JSON, its key a JSONKey.
type watchEventJSON struct {
	Type           string          `json:"type"`
	Key            JSONKey         `json:"key"`
	Value          json.RawMessage `json:"value"`
	Revision       int64           `json:"revision"`
	CreateRevision int64           `json:"createRevision"`
	Version        int64           `json:"version"`
}

// MarshalJSON writes d as its fields say, its key with AppendKeyJSON.
func (d WatchEventData) MarshalJSON() ([]byte, error) {
	return marshalJSON(watchEventJSON{d.Type, JSONKey(d.Key), d.Value, d.Revision, d.CreateRevision, d.Version})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (d *WatchEventData) UnmarshalJSON(b []byte) error {
	var w watchEventJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*d = WatchEventData{w.Type, string(w.Key), w.Value, w.Revision, w.CreateRevision, w.Version}
	return nil
}

// MarshalJSON writes l as its fields say, its keys with AppendKeyJSON.
func (l Lease) MarshalJSON() ([]byte, error) {
	type plain Lease
	keys := make([]JSONKey, len(l.Keys))
	for i, k := range l.Keys {
		keys[i] = JSONKey(k)
	}
	return marshalJSON(struct {
		plain
		Keys []JSONKey `json:"keys,omitempty"`
	}{plain(l), keys})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (l *Lease) UnmarshalJSON(b []byte) error {
	type plain Lease
	var keys []JSONKey
	w := struct {
		*plain
		Keys *[]JSONKey `json:"keys,omitempty"`
	}{plain: (*plain)(l), Keys: &keys}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	l.Keys = nil
	if keys != nil {
		l.Keys = make([]string, len(keys))
		for i, k := range keys {
			l.Keys[i] = string(k)
		}
	}
	return nil
}

// AppendWatchEventJSON appends the JSON of ev's WatchEventData (what
// WatchEventData.MarshalJSON writes, byte for byte) without reflection:
// GET /v1/watch encodes every event once per stream, and encoding/json
// (a marshaler's output compacted once by its own encoder and again by
// the caller's) was half of a watch-serving node's CPU. The value is
// written as it is when it is on one line (a stored value is compact
// JSON: Item.Value), and compacted first otherwise, so that it never
// breaks an SSE data line. A value that is not JSON is written as
// null.
func AppendWatchEventJSON(b []byte, ev *Event) []byte {
	b = append(b, `{"type":`...)
	b = strconv.AppendQuote(b, ev.Type.String()) // "put", "delete" or "unknown"
	b = append(b, `,"key":`...)
	b = AppendKeyJSON(b, ev.Item.Key)
	b = append(b, `,"value":`...)
	b = appendCompactValue(b, ev.Item.Value)
	b = append(b, `,"revision":`...)
	b = strconv.AppendInt(b, ev.Item.Revision, 10)
	b = append(b, `,"createRevision":`...)
	b = strconv.AppendInt(b, ev.Item.CreateRevision, 10)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, ev.Item.Version, 10)
	return append(b, '}')
}

// appendCompactValue appends v, a JSON value, as encoding/json writes a
// json.RawMessage without HTML escaping: null when v is nil, v itself
// when it is already compact (a stored value always is), otherwise v
// compacted, or null if it is not JSON.
func appendCompactValue(b, v []byte) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	if isCompactLine(v) {
		return append(b, v...)
	}
	n := len(b)
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, v); err != nil {
		return append(b[:n], "null"...)
	}
	return buf.Bytes()
}

// isCompactLine reports whether v, taken to be JSON, has no white space
// outside its strings and no line break anywhere, so that compacting it
// would change nothing and it cannot break an SSE data line. Only
// json.Compact checks that v is JSON; a stored value was checked when it
// was written.
func isCompactLine(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	inString, escaped := false, false
	for _, c := range v {
		switch {
		case c == '\n' || c == '\r':
			return false
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t'):
			return false
		}
	}
	return !inString
}
