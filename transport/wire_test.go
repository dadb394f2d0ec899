package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

var seedFlag = flag.Uint64("transport.seed", 1, "seed for the randomized frame tests")

// MarshalJSON lets the size comparison encode the wire structs as JSON the
// way msgpack carries them: an absent field is omitted (omitzero), a present
// one is its bare value.
func (o opt[T]) MarshalJSON() ([]byte, error) {
	if !o.Set {
		return []byte("null"), nil
	}
	return json.Marshal(o.V)
}

// jsonFrame is the envelope for the JSON size comparison.
type jsonFrame struct {
	V    int            `json:"v"`
	From uint64         `json:"from"`
	Msgs []*wireMessage `json:"msgs"`
}

func jsonFrameSize(t testing.TB, from uint64, msgs []*raftpb.Message) int {
	f := jsonFrame{V: frameVersion, From: from}
	for _, m := range msgs {
		f.Msgs = append(f.Msgs, toWire(m))
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}

// randUint covers every msgpack integer width.
func randUint(rng *rand.Rand) uint64 {
	switch rng.IntN(6) {
	case 0:
		return 0
	case 1:
		return rng.Uint64N(128)
	case 2:
		return rng.Uint64N(1 << 16)
	case 3:
		return rng.Uint64N(1 << 32)
	case 4:
		return math.MaxUint64 - rng.Uint64N(3)
	}
	return rng.Uint64()
}

func maybeUint(rng *rand.Rand) *uint64 {
	if rng.IntN(3) == 0 {
		return nil
	}
	return proto.Uint64(randUint(rng))
}

func maybeBool(rng *rand.Rand) *bool {
	if rng.IntN(3) == 0 {
		return nil
	}
	return proto.Bool(rng.IntN(2) == 0)
}

// maybeBytes returns nil, empty or random bytes: proto2 tells the first two
// apart and so must the wire.
func maybeBytes(rng *rand.Rand, maxLen int) []byte {
	switch rng.IntN(4) {
	case 0:
		return nil
	case 1:
		return []byte{}
	}
	b := make([]byte, rng.IntN(maxLen+1))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func maybeUints(rng *rand.Rand) []uint64 {
	n := rng.IntN(4)
	if n == 0 {
		return nil
	}
	vs := make([]uint64, n)
	for i := range vs {
		vs[i] = randUint(rng)
	}
	return vs
}

// randMessage sets each field of a message, or not, at random.
func randMessage(rng *rand.Rand) *raftpb.Message {
	m := &raftpb.Message{
		To:         maybeUint(rng),
		From:       maybeUint(rng),
		Term:       maybeUint(rng),
		LogTerm:    maybeUint(rng),
		Index:      maybeUint(rng),
		Commit:     maybeUint(rng),
		Vote:       maybeUint(rng),
		Reject:     maybeBool(rng),
		RejectHint: maybeUint(rng),
		Context:    maybeBytes(rng, 16),
	}
	switch rng.IntN(4) {
	case 0:
	case 1:
		m.Type = raftpb.MessageType(rng.Int32() - rng.Int32()).Enum() // unknown values too
	default:
		m.Type = raftpb.MessageType(rng.IntN(24)).Enum()
	}
	for range rng.IntN(5) {
		e := &raftpb.Entry{Term: maybeUint(rng), Index: maybeUint(rng), Data: maybeBytes(rng, 64)}
		if rng.IntN(3) != 0 {
			e.Type = raftpb.EntryType(rng.IntN(3)).Enum()
		}
		m.Entries = append(m.Entries, e)
	}
	if rng.IntN(4) == 0 {
		m.Snapshot = &raftpb.Snapshot{Data: maybeBytes(rng, 128)}
		if rng.IntN(4) != 0 {
			m.Snapshot.Metadata = &raftpb.SnapshotMetadata{Index: maybeUint(rng), Term: maybeUint(rng)}
			if rng.IntN(4) != 0 {
				m.Snapshot.Metadata.ConfState = &raftpb.ConfState{
					Voters:         maybeUints(rng),
					Learners:       maybeUints(rng),
					VotersOutgoing: maybeUints(rng),
					LearnersNext:   maybeUints(rng),
					AutoLeave:      maybeBool(rng),
				}
			}
		}
	}
	return m
}

func TestFrameRoundTripRandom(t *testing.T) {
	seed := *seedFlag
	t.Logf("seed %d (rerun with -transport.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range 2000 {
		from := randUint(rng)
		msgs := make([]*raftpb.Message, rng.IntN(8))
		for j := range msgs {
			msgs[j] = randMessage(rng)
		}
		b, err := EncodeFrame(from, msgs)
		if err != nil {
			t.Fatalf("frame %d: encode: %v", i, err)
		}
		gotFrom, got, err := DecodeFrame(b)
		if err != nil {
			t.Fatalf("frame %d: decode: %v", i, err)
		}
		if gotFrom != from || len(got) != len(msgs) {
			t.Fatalf("frame %d: got from %d with %d msgs, want %d with %d", i, gotFrom, len(got), from, len(msgs))
		}
		for j := range msgs {
			if !proto.Equal(got[j], msgs[j]) {
				t.Fatalf("frame %d msg %d differs:\n got %v\nwant %v", i, j, got[j], msgs[j])
			}
		}
		again, err := EncodeFrame(gotFrom, got)
		if err != nil {
			t.Fatalf("frame %d: re-encode: %v", i, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("frame %d: re-encoding differs", i)
		}
	}
}

// TestFramePresence pins the cases where proto2 presence is easy to lose.
func TestFramePresence(t *testing.T) {
	cases := map[string]*raftpb.Message{
		"empty message":     {},
		"zero set scalars":  {Type: raftpb.MsgHup.Enum(), To: proto.Uint64(0), Reject: proto.Bool(false)},
		"empty context":     {Context: []byte{}},
		"empty entry data":  {Entries: []*raftpb.Entry{{Data: []byte{}}, {Data: nil}, {}}},
		"empty snapshot":    {Snapshot: &raftpb.Snapshot{}},
		"empty snap data":   {Snapshot: &raftpb.Snapshot{Data: []byte{}, Metadata: &raftpb.SnapshotMetadata{}}},
		"empty conf state":  {Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{ConfState: &raftpb.ConfState{}}}},
		"only the last one": {Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Term: proto.Uint64(0)}}},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			b, err := EncodeFrame(1, []*raftpb.Message{m})
			if err != nil {
				t.Fatal(err)
			}
			_, got, err := DecodeFrame(b)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got[0], m) {
				t.Fatalf("got %v, want %v", got[0], m)
			}
		})
	}
}

// TestFrameCompact pins how small routine messages are, since the doc
// promises it.
func TestFrameCompact(t *testing.T) {
	resp := &raftpb.Message{Type: raftpb.MsgHeartbeatResp.Enum(), To: proto.Uint64(1), From: proto.Uint64(2), Term: proto.Uint64(7)}
	one, err := EncodeFrame(2, []*raftpb.Message{resp})
	if err != nil {
		t.Fatal(err)
	}
	two, err := EncodeFrame(2, []*raftpb.Message{resp, resp})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(two) - len(one); n != 5 {
		t.Errorf("a heartbeat response takes %d bytes, want 5", n)
	}
	// The envelope costs 16 bytes a frame, however many messages it holds.
	if len(one) != 21 {
		t.Errorf("a frame of one heartbeat response is %d bytes, want 21", len(one))
	}
}

func TestFrameSizeVsJSON(t *testing.T) {
	app := []*raftpb.Message{typicalMsgApp()}
	beats := make([]*raftpb.Message, 100)
	for i := range beats {
		beats[i] = &raftpb.Message{
			Type: raftpb.MsgHeartbeat.Enum(), To: proto.Uint64(uint64(2 + i%2)), From: proto.Uint64(1),
			Term: proto.Uint64(42), Commit: proto.Uint64(123456),
		}
	}
	for _, c := range []struct {
		name string
		msgs []*raftpb.Message
	}{{"MsgApp 64x256B entries", app}, {"100 heartbeats", beats}} {
		b, err := EncodeFrame(1, c.msgs)
		if err != nil {
			t.Fatal(err)
		}
		j := jsonFrameSize(t, 1, c.msgs)
		t.Logf("%s: msgpack %d bytes, JSON %d bytes, msgpack/JSON = %.2f", c.name, len(b), j, float64(len(b))/float64(j))
		if len(b) >= j {
			t.Errorf("%s: msgpack frame (%d bytes) is not smaller than JSON (%d)", c.name, len(b), j)
		}
	}
}

// frameBytes builds raw msgpack for the decoder tests.
func frameBytes(t *testing.T, build func(e *msgpack.Encoder)) []byte {
	t.Helper()
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	build(e)
	return buf.Bytes()
}

func envelope(e *msgpack.Encoder, from uint64, nmsgs int) {
	_ = e.EncodeMapLen(3)
	_ = e.EncodeString("v")
	_ = e.EncodeUint(1)
	_ = e.EncodeString("from")
	_ = e.EncodeUint(from)
	_ = e.EncodeString("msgs")
	_ = e.EncodeArrayLen(nmsgs)
}

func TestDecodeFrameRejects(t *testing.T) {
	valid, err := EncodeFrame(1, []*raftpb.Message{typicalMsgApp()})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":           {},
		"not a map":       {0x93, 1, 2, 3},
		"empty map":       {0x80},
		"truncated":       valid[:len(valid)-1],
		"trailing bytes":  append(bytes.Clone(valid), 0xc0),
		"invalid code":    {0xc1},
		"huge map":        {0xdf, 0xff, 0xff, 0xff, 0xff},
		"huge msgs array": frameBytes(t, func(e *msgpack.Encoder) { envelope(e, 1, math.MaxUint32) }),
		"huge bin": frameBytes(t, func(e *msgpack.Encoder) {
			envelope(e, 1, 1)
			_ = e.EncodeArrayLen(11)
			hugeFields(e, 10)
			_, _ = e.Writer().Write([]byte{0xc6, 0xff, 0xff, 0xff, 0xff})
		}),
		"huge entries": frameBytes(t, func(e *msgpack.Encoder) {
			envelope(e, 1, 1)
			_ = e.EncodeArrayLen(8)
			hugeFields(e, 7)
			_ = e.EncodeArrayLen(math.MaxUint32)
		}),
		"huge entry arity": frameBytes(t, func(e *msgpack.Encoder) {
			envelope(e, 1, 1)
			_ = e.EncodeArrayLen(8)
			hugeFields(e, 7)
			_ = e.EncodeArrayLen(1)
			_ = e.EncodeArrayLen(math.MaxUint32)
		}),
		"huge conf state": frameBytes(t, func(e *msgpack.Encoder) {
			envelope(e, 1, 1)
			_ = e.EncodeArrayLen(13)
			hugeFields(e, 12)
			_ = e.EncodeArrayLen(2)
			_ = e.EncodeNil()
			_ = e.EncodeArrayLen(1)
			_ = e.EncodeArrayLen(math.MaxUint32)
		}),
		"nil message": frameBytes(t, func(e *msgpack.Encoder) { envelope(e, 1, 1); _ = e.EncodeNil() }),
		"nil entry": frameBytes(t, func(e *msgpack.Encoder) {
			envelope(e, 1, 1)
			_ = e.EncodeArrayLen(8)
			hugeFields(e, 7)
			_ = e.EncodeArrayLen(1)
			_ = e.EncodeNil()
		}),
		"string for uint": frameBytes(t, func(e *msgpack.Encoder) {
			envelope(e, 1, 1)
			_ = e.EncodeArrayLen(2)
			_ = e.EncodeNil()
			_ = e.EncodeString("x")
		}),
		"enum out of range": frameBytes(t, func(e *msgpack.Encoder) {
			envelope(e, 1, 1)
			_ = e.EncodeArrayLen(1)
			_ = e.EncodeInt(math.MaxInt32 + 1)
		}),
		"version 2": bytes.Replace(valid, []byte{0xa1, 'v', 1}, []byte{0xa1, 'v', 2}, 1),
		"version not first": frameBytes(t, func(e *msgpack.Encoder) {
			_ = e.EncodeMapLen(3)
			_ = e.EncodeString("from")
			_ = e.EncodeUint(1)
		}),
		"missing msgs": frameBytes(t, func(e *msgpack.Encoder) {
			_ = e.EncodeMapLen(2)
			_ = e.EncodeString("v")
			_ = e.EncodeUint(1)
			_ = e.EncodeString("from")
			_ = e.EncodeUint(1)
		}),
		"nil from": frameBytes(t, func(e *msgpack.Encoder) {
			_ = e.EncodeMapLen(3)
			_ = e.EncodeString("v")
			_ = e.EncodeUint(1)
			_ = e.EncodeString("from")
			_ = e.EncodeNil()
		}),
		"duplicate from": frameBytes(t, func(e *msgpack.Encoder) {
			_ = e.EncodeMapLen(4)
			_ = e.EncodeString("v")
			_ = e.EncodeUint(1)
			_ = e.EncodeString("from")
			_ = e.EncodeUint(1)
			_ = e.EncodeString("from")
			_ = e.EncodeUint(2)
		}),
		"long key": frameBytes(t, func(e *msgpack.Encoder) {
			_ = e.EncodeMapLen(2)
			_ = e.EncodeString("v")
			_ = e.EncodeUint(1)
			_ = e.EncodeString(string(make([]byte, 40)))
			_ = e.EncodeNil()
		}),
		"deep unknown value": frameBytes(t, func(e *msgpack.Encoder) {
			_ = e.EncodeMapLen(2)
			_ = e.EncodeString("v")
			_ = e.EncodeUint(1)
			_ = e.EncodeString("zz")
			for range 100000 {
				_ = e.EncodeArrayLen(1)
			}
			_ = e.EncodeNil()
		}),
		"ext in unknown value": frameBytes(t, func(e *msgpack.Encoder) {
			_ = e.EncodeMapLen(2)
			_ = e.EncodeString("v")
			_ = e.EncodeUint(1)
			_ = e.EncodeString("zz")
			_, _ = e.Writer().Write([]byte{0xd4, 1, 0})
		}),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			before := ms.TotalAlloc
			_, _, err := DecodeFrame(b)
			runtime.ReadMemStats(&ms)
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("DecodeFrame error %v, want ErrBadFrame", err)
			}
			// Generous: the point is that a 4 GiB header allocates nothing
			// like 4 GiB.
			if alloc := ms.TotalAlloc - before; alloc > 1<<20+uint64(64*len(b)) {
				t.Errorf("decoding %d bytes allocated %d bytes", len(b), alloc)
			}
			t.Logf("%v", err)
		})
	}
}

// hugeFields writes n nil message fields.
func hugeFields(e *msgpack.Encoder, n int) {
	for range n {
		_ = e.EncodeNil()
	}
}

// TestDecodeFrameForwardCompatible checks that fields a newer peer appends
// are skipped.
func TestDecodeFrameForwardCompatible(t *testing.T) {
	b := frameBytes(t, func(e *msgpack.Encoder) {
		_ = e.EncodeMapLen(4)
		_ = e.EncodeString("v")
		_ = e.EncodeUint(1)
		_ = e.EncodeString("trace")
		_ = e.EncodeMap(map[string]any{"id": "abc", "spans": []any{1, 2.5, true, nil, []byte{1}}})
		_ = e.EncodeString("from")
		_ = e.EncodeUint(3)
		_ = e.EncodeString("msgs")
		_ = e.EncodeArrayLen(1)
		_ = e.EncodeArrayLen(msgFields + 2)
		_ = e.EncodeInt(int64(raftpb.MsgApp))
		for range msgFields - 1 {
			_ = e.EncodeNil()
		}
		_ = e.EncodeString("future field")
		_ = e.EncodeArrayLen(2)
		_ = e.EncodeUint(1)
		_ = e.EncodeMapLen(0)
	})
	from, msgs, err := DecodeFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &raftpb.Message{Type: raftpb.MsgApp.Enum()}
	if from != 3 || len(msgs) != 1 || !proto.Equal(msgs[0], want) {
		t.Fatalf("got from %d msgs %v", from, msgs)
	}
}

func typicalMsgApp() *raftpb.Message {
	m := &raftpb.Message{
		Type: raftpb.MsgApp.Enum(), To: proto.Uint64(2), From: proto.Uint64(1),
		Term: proto.Uint64(5), LogTerm: proto.Uint64(5), Index: proto.Uint64(100_000), Commit: proto.Uint64(99_990),
	}
	for i := range 64 {
		data := make([]byte, 256)
		for j := range data {
			data[j] = byte(i + j)
		}
		m.Entries = append(m.Entries, &raftpb.Entry{
			Term: proto.Uint64(5), Index: proto.Uint64(uint64(100_001 + i)), Type: raftpb.EntryNormal.Enum(), Data: data,
		})
	}
	return m
}

func BenchmarkEncodeFrame(b *testing.B) {
	msgs := []*raftpb.Message{typicalMsgApp()}
	frame, err := EncodeFrame(1, msgs)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	// Like the writer: conversion happens in Send, encoding into a reused
	// buffer in the writer; both are measured.
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(nil)
	wire := make([]*wireMessage, 1)
	for b.Loop() {
		wire[0] = toWire(msgs[0])
		if err := encodeFrame(enc, &buf, 1, wire); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(frame)), "msgpack-bytes")
	b.ReportMetric(float64(jsonFrameSize(b, 1, msgs)), "json-bytes")
}

func BenchmarkDecodeFrame(b *testing.B) {
	frame, err := EncodeFrame(1, []*raftpb.Message{typicalMsgApp()})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodeFrame(frame); err != nil {
			b.Fatal(err)
		}
	}
}
