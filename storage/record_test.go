package storage

import (
	"bytes"
	"errors"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, payload := range [][]byte{nil, {}, {0}, []byte("hello"), bytes.Repeat([]byte{0xab}, 1<<16)} {
		got, err := decodeRecord(encodeRecord(payload))
		if err != nil || !bytes.Equal(got, payload) {
			t.Errorf("round trip of %d bytes: %v", len(payload), err)
		}
	}
	e := entry(7, 3)
	v := mustEncode(t, e)
	if got, err := decodeEntry(7, v); err != nil || !proto.Equal(got, e) {
		t.Errorf("decodeEntry = %v, %v", got, err)
	}
	if term, err := decodeEntryTerm(7, v); err != nil || term != 3 {
		t.Errorf("decodeEntryTerm = %d, %v", term, err)
	}
	if _, err := decodeEntry(8, v); !errors.Is(err, ErrCorrupt) {
		t.Errorf("decodeEntry under the wrong index: err %v", err)
	}
	if ls, err := decodeLogStart(encodeLogStart(logStart{5, 2})); err != nil || ls != (logStart{5, 2}) {
		t.Errorf("decodeLogStart = %v, %v", ls, err)
	}
	if v, err := decodeVersion(encodeVersion(formatVersion)); err != nil || v != formatVersion {
		t.Errorf("decodeVersion = %v, %v", v, err)
	}
	if k, ok := parseEntryKey(entryKey(1 << 40)); !ok || k != 1<<40 {
		t.Errorf("parseEntryKey = %d, %v", k, ok)
	}
}

// FuzzDecodeRecord feeds arbitrary values to every decoder of stored
// records: garbage must give an error wrapping ErrCorrupt, never a panic,
// and the term-only entry reader must agree with the full decoder.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte{}, uint64(0))
	f.Add([]byte{1, 2, 3}, uint64(1))
	f.Add(encodeRecord(nil), uint64(0))
	f.Add(encodeRecord([]byte{0xff, 0xff, 0xff}), uint64(1))
	f.Add(encodeVersion(formatVersion), uint64(0))
	f.Add(encodeLogStart(logStart{index: 9, term: 2}), uint64(9))
	for _, m := range []proto.Message{
		entry(5, 2),
		&raftpb.Entry{Index: proto.Uint64(1)},
		hardState(3, 1, 2),
		snapshot(4, 2, 1, 2, 3),
	} {
		v, err := encodeProto(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v, uint64(5))
	}
	// An entry whose term appears twice and whose index has the wrong wire
	// type: the last term wins and the mistyped field is unknown.
	var odd []byte
	odd = protowire.AppendTag(odd, entryFieldTerm, protowire.VarintType)
	odd = protowire.AppendVarint(odd, 1)
	odd = protowire.AppendTag(odd, entryFieldIndex, protowire.BytesType)
	odd = protowire.AppendBytes(odd, []byte{1})
	odd = protowire.AppendTag(odd, entryFieldTerm, protowire.VarintType)
	odd = protowire.AppendVarint(odd, 4)
	f.Add(encodeRecord(odd), uint64(0))

	f.Fuzz(func(t *testing.T, value []byte, index uint64) {
		check := func(what string, err error) {
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: error %v does not wrap ErrCorrupt", what, err)
			}
		}
		if payload, err := decodeRecord(value); err == nil {
			if !bytes.Equal(encodeRecord(payload), value) {
				t.Fatal("decodeRecord accepted a value that does not re-encode to itself")
			}
		} else {
			check("decodeRecord", err)
		}
		e, errFull := decodeEntry(index, value)
		check("decodeEntry", errFull)
		term, errTerm := decodeEntryTerm(index, value)
		check("decodeEntryTerm", errTerm)
		if errFull == nil && (errTerm != nil || term != e.GetTerm()) {
			t.Fatalf("decodeEntry gives term %d, decodeEntryTerm %d, %v", e.GetTerm(), term, errTerm)
		}
		check("decodeProto(HardState)", decodeProto(value, &raftpb.HardState{}))
		check("decodeProto(Snapshot)", decodeProto(value, &raftpb.Snapshot{}))
		_, err := decodeLogStart(value)
		check("decodeLogStart", err)
		_, err = decodeVersion(value)
		check("decodeVersion", err)
	})
}
