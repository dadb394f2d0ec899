package api

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendKeyJSONMatchesEncodingJSON(t *testing.T) {
	var cases []string
	for c := range 0x80 {
		cases = append(cases, "k"+string(rune(c))+"z")
	}
	cases = append(cases, "", "é", "\u2028\u2029", "日本<&>", "\U0001F600")
	for _, s := range cases {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		if got := string(AppendKeyJSON(nil, s)); got != strings.TrimSuffix(want.String(), "\n") {
			t.Errorf("%q: %s, want %s", s, got, want.String())
		}
	}
}

// TestKeyJSONRoundTrip checks that any bytes, binary etcd keys included,
// come back from their JSON byte for byte, and that the JSON is valid.
func TestKeyJSONRoundTrip(t *testing.T) {
	cases := map[string]string{
		"\x00\x00":     `"\u0000\u0000"`,
		"a\xffb":       `"a\udcffb"`,
		"\xe2\x80":     `"\udce2\udc80"`,
		"\xc3(":        `"\udcc3("`,
		"\xed\xb3\xbf": `"\udced\udcb3\udcbf"`, // an encoded surrogate is invalid UTF-8
	}
	for key, want := range cases {
		if got := string(AppendKeyJSON(nil, key)); got != want {
			t.Errorf("AppendKeyJSON(%q) = %s, want %s", key, got, want)
		}
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := 0; i < 5000; i++ {
		b := make([]byte, rng.IntN(12))
		for j := range b {
			b[j] = byte(rng.IntN(256))
		}
		key := string(b)
		j := AppendKeyJSON(nil, key)
		if !json.Valid(j) {
			t.Fatalf("AppendKeyJSON(%q) = %s is not JSON", key, j)
		}
		if back, ok := UnquoteKeyJSON(j); !ok || string(back) != key {
			t.Fatalf("round trip of %q gave %q %v (JSON %s)", key, back, ok, j)
		}
		// encoding/json reads the same text for valid UTF-8.
		var s string
		if err := json.Unmarshal(j, &s); err != nil || (utf8.ValidString(key) && s != key) {
			t.Fatalf("encoding/json reads %s as %q, %v", j, s, err)
		}
	}
	for _, bad := range []string{``, `x`, `"open`, `"\x"`, `"\u12"`, `1`} {
		if _, ok := UnquoteKeyJSON([]byte(bad)); ok {
			t.Errorf("UnquoteKeyJSON(%s) ok", bad)
		}
	}
}

// TestItemJSONKeepsBinaryKeys checks the types that carry keys over the
// HTTP API: a binary key survives a JSON round trip, and everything else
// is written as before.
func TestItemJSONKeepsBinaryKeys(t *testing.T) {
	const key = "\x00\xffk\n"
	it := Item{Key: key, Value: json.RawMessage(`{"a":1}`), Revision: 3, CreateRevision: 2, Version: 2, Lease: 0x1f}
	b, err := json.Marshal(it)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"key":"\u0000\udcffk\n","value":{"a":1},"revision":3,"createRevision":2,"version":2,"lease":"1f"}`; string(b) != want {
		t.Fatalf("item JSON %s, want %s", b, want)
	}
	var back Item
	if err := json.Unmarshal(b, &back); err != nil || back.Key != key || back.Lease != it.Lease || string(back.Value) != `{"a":1}` || back.Version != 2 {
		t.Fatalf("item back %+v, %v", back, err)
	}
	// Inside other values (a slice of events).
	evs := []Event{{Type: EventPut, Item: it}}
	b, err = json.Marshal(evs)
	if err != nil || !bytes.Contains(b, []byte(`\udcff`)) {
		t.Fatalf("events JSON %s, %v", b, err)
	}
	d := WatchEventData{Type: "put", Key: key, Value: json.RawMessage(`1`), Revision: 4}
	b, err = json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"put","key":"\u0000\udcffk\n","value":1,"revision":4,"createRevision":0,"version":0}`; string(b) != want {
		t.Fatalf("watch event JSON %s, want %s", b, want)
	}
	var d2 WatchEventData
	if err := json.Unmarshal(b, &d2); err != nil || d2.Key != key || d2.Revision != 4 {
		t.Fatalf("watch event back %+v, %v", d2, err)
	}
	l := Lease{ID: 0x2a, TTLMs: 5000, Keys: []string{"a", key}}
	b, err = json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	var l2 Lease
	if err := json.Unmarshal(b, &l2); err != nil || len(l2.Keys) != 2 || l2.Keys[1] != key || l2.ID != l.ID || l2.TTLMs != 5000 {
		t.Fatalf("lease back %+v from %s, %v", l2, b, err)
	}
	if b, _ := json.Marshal(Lease{ID: 1, TTLMs: 1}); strings.Contains(string(b), "keys") {
		t.Fatalf("a lease without keys: %s", b)
	}
}

// TestItemJSONEscapesAsBefore checks that the methods leave HTML escaping
// to the encoder, as encoding/json does for a type without them.
func TestItemJSONEscapesAsBefore(t *testing.T) {
	type plain Item
	it := Item{Key: "<a&b>", Value: json.RawMessage(`"<x>"`), Revision: 1, CreateRevision: 1, Version: 1, Lease: 7}
	for _, html := range []bool{true, false} {
		var got, want bytes.Buffer
		for _, c := range []struct {
			buf *bytes.Buffer
			v   any
		}{{&got, it}, {&want, plain(it)}} {
			enc := json.NewEncoder(c.buf)
			enc.SetEscapeHTML(html)
			enc.SetIndent("", "  ")
			if err := enc.Encode(c.v); err != nil {
				t.Fatal(err)
			}
		}
		if got.String() != want.String() {
			t.Errorf("escape HTML %v: %s, want %s", html, got.String(), want.String())
		}
	}
}

// watchEventJSONByReflection is how GET /v1/watch encoded an event before
// AppendWatchEventJSON: WatchEventData through an encoder without HTML
// escaping.
func watchEventJSONByReflection(ev *Event) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(WatchEventData{Type: ev.Type.String(), Key: ev.Item.Key, Value: ev.Item.Value,
		Revision: ev.Item.Revision, CreateRevision: ev.Item.CreateRevision, Version: ev.Item.Version})
	return strings.TrimSuffix(b.String(), "\n")
}

// TestAppendWatchEventJSONMatchesEncodingJSON checks that the SSE fast
// path writes what encoding/json wrote, byte for byte, for stored
// (compact) values and for values that need compacting, and never a line
// break.
func TestAppendWatchEventJSONMatchesEncodingJSON(t *testing.T) {
	values := []string{
		`1`, `-2.5e3`, `"s"`, `""`, `"a b\n"`, `"<&>\u2028 "`, "\"\u2028\u2029<>\"", `"\"quoted\" \\"`,
		`{"a":[1,2,{"b":null}],"c":"x y"}`, `[]`, `{}`, `true`, `null`,
		// Not compact: compacted first, as encoding/json does.
		"{ \"a\" : 1 }", "[1,\n2]", "\t\"x\"\r\n", `{"a": "b c"}`,
	}
	keys := []string{"a", "bench/key", "k\x00\xff", "日本<&>", "\u2028", `q"\`}
	var events []Event
	for i, v := range values {
		for _, typ := range []EventType{EventPut, EventDelete} {
			ev := Event{Type: typ, Item: Item{Key: keys[i%len(keys)], Value: json.RawMessage(v),
				Revision: int64(i + 7), CreateRevision: int64(i + 1), Version: int64(i)}}
			if typ == EventDelete {
				ev.Item.Value = nil
			}
			events = append(events, ev)
		}
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for range 200 {
		// Random JSON strings of any runes, compact as stored.
		var s strings.Builder
		for range rng.IntN(12) {
			s.WriteRune(rune(rng.IntN(0x2100)))
		}
		v, _ := json.Marshal(s.String())
		events = append(events, Event{Type: EventPut, Item: Item{Key: s.String(), Value: v,
			Revision: rng.Int64(), CreateRevision: rng.Int64(), Version: rng.Int64()}})
	}
	for _, ev := range events {
		got := string(AppendWatchEventJSON(nil, &ev))
		if want := watchEventJSONByReflection(&ev); got != want {
			t.Errorf("%+v:\n got %s\nwant %s", ev, got, want)
		}
		if strings.ContainsAny(got, "\r\n") {
			t.Errorf("%+v: a line break in %q", ev, got)
		}
	}
	// A value that is not JSON (never stored) is null rather than a
	// broken line.
	bad := Event{Type: EventPut, Item: Item{Key: "k", Value: json.RawMessage("{\n")}}
	if got := string(AppendWatchEventJSON(nil, &bad)); !strings.Contains(got, `"value":null`) {
		t.Errorf("invalid value: %s", got)
	}
}

func BenchmarkAppendWatchEventJSON(b *testing.B) {
	ev := Event{Type: EventPut, Item: Item{Key: "bench/0000000123", Value: json.RawMessage(`"` + strings.Repeat("x", 98) + `"`),
		Revision: 123456, CreateRevision: 1234, Version: 12}}
	b.Run("append", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = AppendWatchEventJSON(buf[:0], &ev)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			_ = watchEventJSONByReflection(&ev)
		}
	})
}
