package storage

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// formatVersion is the on-disk format this code reads and writes. Bump it
// (and teach Open to migrate or refuse) whenever a key or value layout
// changes.
const formatVersion uint32 = 1

// Key prefixes, one byte per record kind. The singletons sort before the
// entries so that the entry key space is one contiguous range that a single
// DeleteRange or iterator can cover.
const (
	prefixVersion   byte = 0x01
	prefixHardState byte = 0x02
	prefixSnapshot  byte = 0x03
	prefixLogStart  byte = 0x04
	prefixEntry     byte = 0x10
)

var (
	keyVersion   = []byte{prefixVersion}
	keyHardState = []byte{prefixHardState}
	keySnapshot  = []byte{prefixSnapshot}
	keyLogStart  = []byte{prefixLogStart}

	// entryKeysStart and entryKeysEnd bound every entry key: [start, end).
	entryKeysStart = []byte{prefixEntry}
	entryKeysEnd   = []byte{prefixEntry + 1}
)

// entryKeyLen is the prefix byte plus a big-endian uint64 index; big-endian
// so that pebble's bytewise order is log order.
const entryKeyLen = 1 + 8

// crcTable is CRC-32C (Castagnoli), hardware-accelerated on amd64 and arm64.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// crcLen is the size of the checksum that prefixes every stored value.
const crcLen = 4

func entryKey(index uint64) []byte {
	k := make([]byte, entryKeyLen)
	k[0] = prefixEntry
	binary.BigEndian.PutUint64(k[1:], index)
	return k
}

// parseEntryKey returns the index encoded in an entry key; ok is false for
// any key that is not a well-formed entry key.
func parseEntryKey(k []byte) (index uint64, ok bool) {
	if len(k) != entryKeyLen || k[0] != prefixEntry {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), true
}

// encodeRecord frames payload as checksum || payload.
func encodeRecord(payload []byte) []byte {
	v := make([]byte, crcLen+len(payload))
	binary.BigEndian.PutUint32(v, crc32.Checksum(payload, crcTable))
	copy(v[crcLen:], payload)
	return v
}

// decodeRecord verifies a framed value and returns its payload, which
// aliases value.
func decodeRecord(value []byte) ([]byte, error) {
	if len(value) < crcLen {
		return nil, fmt.Errorf("record of %d bytes is shorter than its checksum: %w", len(value), ErrCorrupt)
	}
	payload := value[crcLen:]
	if want, got := binary.BigEndian.Uint32(value), crc32.Checksum(payload, crcTable); want != got {
		return nil, fmt.Errorf("checksum mismatch (stored %08x, computed %08x): %w", want, got, ErrCorrupt)
	}
	return payload, nil
}

// encodeProto frames m like encodeRecord, marshalling straight into the
// framed buffer because snapshots can be large.
func encodeProto(m proto.Message) ([]byte, error) {
	v := make([]byte, crcLen, crcLen+proto.Size(m))
	v, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(v, m)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", m, err)
	}
	binary.BigEndian.PutUint32(v, crc32.Checksum(v[crcLen:], crcTable))
	return v, nil
}

// decodeProto verifies value and unmarshals it into m. proto.Unmarshal
// copies bytes fields, so m does not alias value (pebble reuses the
// buffers it hands out).
func decodeProto(value []byte, m proto.Message) error {
	payload, err := decodeRecord(value)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(payload, m); err != nil {
		return fmt.Errorf("undecodable %T: %v: %w", m, err, ErrCorrupt)
	}
	return nil
}

// decodeEntry decodes the entry stored under index and checks that it
// claims that index, so a value written under the wrong key is caught.
func decodeEntry(index uint64, value []byte) (*raftpb.Entry, error) {
	e := &raftpb.Entry{}
	if err := decodeProto(value, e); err != nil {
		return nil, err
	}
	if e.GetIndex() != index {
		return nil, fmt.Errorf("record holds index %d: %w", e.GetIndex(), ErrCorrupt)
	}
	return e, nil
}

// Field numbers of raftpb.Entry (see raft.proto).
const (
	entryFieldTerm  protowire.Number = 2
	entryFieldIndex protowire.Number = 3
)

// decodeEntryTerm verifies the entry stored under index like decodeEntry
// but reads only its term and index from the wire, without copying its
// data: raft asks for terms far more often than for entries, and entries
// can be megabytes. Like proto.Unmarshal, the last occurrence of a field
// wins and a field with an unexpected wire type is skipped as unknown.
func decodeEntryTerm(index uint64, value []byte) (uint64, error) {
	b, err := decodeRecord(value)
	if err != nil {
		return 0, err
	}
	var term, gotIndex uint64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, fmt.Errorf("undecodable entry: %v: %w", protowire.ParseError(n), ErrCorrupt)
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == entryFieldTerm || num == entryFieldIndex) {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, fmt.Errorf("undecodable entry: %v: %w", protowire.ParseError(n), ErrCorrupt)
			}
			b = b[n:]
			if num == entryFieldTerm {
				term = v
			} else {
				gotIndex = v
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, fmt.Errorf("undecodable entry: %v: %w", protowire.ParseError(n), ErrCorrupt)
		}
		b = b[n:]
	}
	if gotIndex != index {
		return 0, fmt.Errorf("record holds index %d: %w", gotIndex, ErrCorrupt)
	}
	return term, nil
}

// logStart is the entry just before the first stored one: its entries are
// gone (compacted or covered by the snapshot) but its term is kept so that
// raft can match appends against it.
type logStart struct {
	index, term uint64
}

const logStartLen = 16

func encodeLogStart(s logStart) []byte {
	var b [logStartLen]byte
	binary.BigEndian.PutUint64(b[:8], s.index)
	binary.BigEndian.PutUint64(b[8:], s.term)
	return encodeRecord(b[:])
}

func decodeLogStart(value []byte) (logStart, error) {
	b, err := decodeRecord(value)
	if err != nil {
		return logStart{}, err
	}
	if len(b) != logStartLen {
		return logStart{}, fmt.Errorf("log start record of %d bytes, want %d: %w", len(b), logStartLen, ErrCorrupt)
	}
	return logStart{index: binary.BigEndian.Uint64(b[:8]), term: binary.BigEndian.Uint64(b[8:])}, nil
}

func encodeVersion(v uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return encodeRecord(b[:])
}

func decodeVersion(value []byte) (uint32, error) {
	b, err := decodeRecord(value)
	if err != nil {
		return 0, err
	}
	if len(b) != 4 {
		return 0, fmt.Errorf("version record of %d bytes, want 4: %w", len(b), ErrCorrupt)
	}
	return binary.BigEndian.Uint32(b), nil
}
