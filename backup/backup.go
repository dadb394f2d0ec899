// Package backup reads and writes backup files: a point-in-time copy of
// a cluster's replicated state, taken by GET /v1/snapshot (`consensus
// snapshot save`) and turned into the data directories of a new cluster
// by Restore (`consensus snapshot restore`).
//
// A backup file, format version 1:
//
//	header   magic "CNSBAK\r\n" (8) | version (2, big-endian) | reserved, 0 (2)
//	         | metadata length (4, big-endian) | metadata (JSON, at most 64 KiB)
//	         | CRC-32C of the header up to here (4)
//	state    the state machine's snapshot bytes (kv.View.WriteTo), to the trailer
//	trailer  length of everything before the trailer (8, big-endian)
//	         | CRC-32C (Castagnoli) of everything before the trailer (4) | "KABC" (4)
//
// The header carries its own checksum so that the metadata can be trusted
// before the state has been read; the trailer's checksum covers the whole
// file. The state has no length of its own: a reader holds back the last
// 16 bytes of the stream as the trailer, so a backup can be written while
// it is produced and read with bounded memory. Whatever is damaged (a
// truncated or torn file, a flipped bit, bytes appended) makes the trailer
// disagree, and the file is refused with ErrCorrupt; nothing in it is
// used before the whole file has been verified (Verify, Restore).
package backup

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"strconv"
	"time"
)

// Version is the format version this package writes, and the newest it
// reads.
const Version = 1

// StateFormat names the encoding of the state section: the kv state
// machine's snapshot format, version 1 (see package kv).
const StateFormat = "kv-snapshot/1"

var (
	// ErrCorrupt means the file is not a whole, intact backup: truncated,
	// torn, damaged, or with bytes appended.
	ErrCorrupt = errors.New("backup: corrupt file")
	// ErrVersion means the file was written in a format version this
	// build does not read (by a newer release).
	ErrVersion = errors.New("backup: unsupported format version")
	// ErrNotBackup means the file does not start with a backup's magic.
	ErrNotBackup = errors.New("backup: not a backup file")
)

var (
	magic    = [8]byte{'C', 'N', 'S', 'B', 'A', 'K', '\r', '\n'}
	endMagic = [4]byte{'K', 'A', 'B', 'C'}
	crcTable = crc32.MakeTable(crc32.Castagnoli)
)

const (
	// fixedHeaderLen is the header before the metadata.
	fixedHeaderLen = 16
	// TrailerLen is the size of the trailer.
	trailerLen = 16
	// maxMetadataBytes bounds the metadata, so a damaged length cannot
	// make a reader allocate without limit.
	maxMetadataBytes = 64 << 10
	// readBuffer is the reader's buffer: all a reader holds of the state
	// at once.
	readBuffer = 64 << 10
)

// Metadata describes a backup. It is written as JSON; fields unknown to
// a reader are ignored, so a later version 1 writer may add some.
type Metadata struct {
	// ClusterID is the id of the cluster the backup was taken from (0 if
	// its node kept none). In the JSON it is a hexadecimal string, as in
	// GET /v1/members.
	ClusterID uint64 `json:"-"`
	// Node is the name of the node that took it.
	Node string `json:"node"`
	// Revision is the revision of the last write in the backup: it holds
	// exactly the writes at or below it.
	Revision int64 `json:"revision"`
	// AppliedIndex is the raft index of the last command in the backup.
	AppliedIndex uint64 `json:"appliedIndex"`
	// RaftTerm and CommitIndex are the node's raft term and commit index
	// when the backup was taken (for information).
	RaftTerm    uint64 `json:"raftTerm"`
	CommitIndex uint64 `json:"commitIndex"`
	// Keys is the number of keys in the backup.
	Keys int64 `json:"keys"`
	// Created is when the backup was taken (the node's clock, UTC).
	Created time.Time `json:"created"`
	// StateFormat names the encoding of the state section (StateFormat).
	StateFormat string `json:"stateFormat"`
}

// metadataJSON is Metadata as stored: the cluster id in hexadecimal.
type metadataJSON struct {
	ClusterID string `json:"clusterId"`
	metadataFields
}

// metadataFields is Metadata without its methods (no recursion).
type metadataFields Metadata

// MarshalJSON encodes m with its cluster id in hexadecimal.
func (m Metadata) MarshalJSON() ([]byte, error) {
	return json.Marshal(metadataJSON{ClusterID: strconv.FormatUint(m.ClusterID, 16), metadataFields: metadataFields(m)})
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (m *Metadata) UnmarshalJSON(b []byte) error {
	var j metadataJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	id, err := strconv.ParseUint(j.ClusterID, 16, 64)
	if err != nil {
		return fmt.Errorf("cluster id %q: %w", j.ClusterID, err)
	}
	*m = Metadata(j.metadataFields)
	m.ClusterID = id
	return nil
}

// Summary is what verifying or writing a whole file learns.
type Summary struct {
	// Size is the length of the file in bytes.
	Size int64
	// Checksum is the CRC-32C in the trailer, over everything before it.
	Checksum uint32
}

// ChecksumString returns the checksum as 8 hexadecimal digits.
func (s Summary) ChecksumString() string { return fmt.Sprintf("%08x", s.Checksum) }

// hashWriter counts and hashes what passes through it.
type hashWriter struct {
	w   io.Writer
	crc hash.Hash32
	n   int64
}

func (h *hashWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.crc.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// encodeHeader returns the header for meta.
func encodeHeader(meta Metadata) ([]byte, error) {
	mj, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("backup: encode metadata: %w", err)
	}
	if len(mj) > maxMetadataBytes {
		return nil, fmt.Errorf("backup: metadata of %d bytes exceeds %d", len(mj), maxMetadataBytes)
	}
	h := make([]byte, 0, fixedHeaderLen+len(mj)+4)
	h = append(h, magic[:]...)
	h = binary.BigEndian.AppendUint16(h, Version)
	h = binary.BigEndian.AppendUint16(h, 0)
	h = binary.BigEndian.AppendUint32(h, uint32(len(mj)))
	h = append(h, mj...)
	return binary.BigEndian.AppendUint32(h, crc32.Checksum(h, crcTable)), nil
}

// Write writes a backup of state, described by meta, to w: the header,
// the bytes state.WriteTo writes, then the trailer. meta.StateFormat
// defaults to StateFormat. Memory stays bounded whatever the size of the
// state; w sees the bytes as state produces them. On an error w holds a
// partial file, which any reader refuses.
func Write(w io.Writer, meta Metadata, state io.WriterTo) (Summary, error) {
	if meta.StateFormat == "" {
		meta.StateFormat = StateFormat
	}
	hdr, err := encodeHeader(meta)
	if err != nil {
		return Summary{}, err
	}
	hw := &hashWriter{w: w, crc: crc32.New(crcTable)}
	if _, err := hw.Write(hdr); err != nil {
		return Summary{}, fmt.Errorf("backup: write header: %w", err)
	}
	if _, err := state.WriteTo(hw); err != nil {
		return Summary{}, fmt.Errorf("backup: write state: %w", err)
	}
	sum := Summary{Size: hw.n + trailerLen, Checksum: hw.crc.Sum32()}
	var t [trailerLen]byte
	binary.BigEndian.PutUint64(t[:8], uint64(hw.n))
	binary.BigEndian.PutUint32(t[8:12], sum.Checksum)
	copy(t[12:], endMagic[:])
	if _, err := w.Write(t[:]); err != nil {
		return Summary{}, fmt.Errorf("backup: write trailer: %w", err)
	}
	return sum, nil
}

// Reader reads one backup: Open has read and verified the header, Read
// streams the state section, and the end of it verifies the trailer. It
// holds at most 64 KiB of the file at once.
type Reader struct {
	meta Metadata
	r    *bufio.Reader
	crc  hash.Hash32
	n    int64 // bytes consumed before the trailer
	done bool
	err  error // sticky: io.EOF once verified, else the failure
	sum  Summary
}

// Open reads and verifies the header of the backup r holds and returns a
// Reader positioned at the state. Errors wrap ErrNotBackup, ErrVersion or
// ErrCorrupt (or r's own read error).
func Open(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, readBuffer)
	var fixed [fixedHeaderLen]byte
	if n, err := io.ReadFull(br, fixed[:]); err != nil {
		if !bytes.HasPrefix(magic[:], fixed[:min(n, len(magic))]) {
			return nil, fmt.Errorf("%w: bad magic", ErrNotBackup)
		}
		return nil, readErr("header", err)
	}
	if [8]byte(fixed[:8]) != magic {
		return nil, fmt.Errorf("%w: bad magic %q", ErrNotBackup, fixed[:8])
	}
	if v := binary.BigEndian.Uint16(fixed[8:10]); v != Version {
		return nil, fmt.Errorf("%w: the file is format version %d, this build reads version %d", ErrVersion, v, Version)
	}
	size := binary.BigEndian.Uint32(fixed[12:16])
	if binary.BigEndian.Uint16(fixed[10:12]) != 0 || size > maxMetadataBytes {
		return nil, fmt.Errorf("%w: header (metadata of %d bytes)", ErrCorrupt, size)
	}
	rest := make([]byte, int(size)+4)
	if _, err := io.ReadFull(br, rest); err != nil {
		return nil, readErr("header", err)
	}
	crc := crc32.New(crcTable)
	crc.Write(fixed[:])
	crc.Write(rest[:size])
	if got, want := crc.Sum32(), binary.BigEndian.Uint32(rest[size:]); got != want {
		return nil, fmt.Errorf("%w: header checksum %08x, computed %08x", ErrCorrupt, want, got)
	}
	var meta Metadata
	if err := json.Unmarshal(rest[:size], &meta); err != nil {
		return nil, fmt.Errorf("%w: metadata: %w", ErrCorrupt, err)
	}
	if meta.Revision < 0 || meta.Keys < 0 {
		return nil, fmt.Errorf("%w: metadata: negative revision or key count", ErrCorrupt)
	}
	crc.Write(rest[size:])
	return &Reader{meta: meta, r: br, crc: crc, n: int64(len(fixed) + len(rest))}, nil
}

// readErr turns an unexpected end of the stream into ErrCorrupt.
func readErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated in the %s", ErrCorrupt, what)
	}
	return fmt.Errorf("backup: read %s: %w", what, err)
}

// Metadata returns the backup's metadata, verified by the header's
// checksum (the state is verified only once it has all been read).
func (b *Reader) Metadata() Metadata { return b.meta }

// Read reads the state section. It returns io.EOF at its end only once
// the trailer has verified the whole file; a damaged file gives an error
// wrapping ErrCorrupt instead, after the damaged bytes have been handed
// out, so a caller must not use what it read before that io.EOF.
func (b *Reader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	want := min(len(p), readBuffer-trailerLen)
	ahead, err := b.r.Peek(want + trailerLen)
	if len(ahead) > trailerLen {
		n := copy(p, ahead[:len(ahead)-trailerLen])
		b.crc.Write(p[:n])
		b.n += int64(n)
		_, _ = b.r.Discard(n)
		return n, nil
	}
	if err == nil || errors.Is(err, bufio.ErrBufferFull) {
		// Cannot happen: Peek returned fewer bytes than asked without an
		// error of the stream.
		b.err = fmt.Errorf("backup: read state: short peek")
		return 0, b.err
	}
	if !errors.Is(err, io.EOF) {
		b.err = fmt.Errorf("backup: read state: %w", err)
		return 0, b.err
	}
	b.err = b.verifyTrailer(ahead)
	return 0, b.err
}

// verifyTrailer checks the last bytes of the stream, t, as the trailer.
func (b *Reader) verifyTrailer(t []byte) error {
	if len(t) < trailerLen {
		return fmt.Errorf("%w: truncated (%d bytes where the %d-byte trailer should be)", ErrCorrupt, len(t), trailerLen)
	}
	if [4]byte(t[12:16]) != endMagic {
		return fmt.Errorf("%w: no trailer at the end (truncated, or bytes appended)", ErrCorrupt)
	}
	if n := binary.BigEndian.Uint64(t[:8]); n != uint64(b.n) {
		return fmt.Errorf("%w: the trailer counts %d bytes, the file has %d", ErrCorrupt, n, b.n)
	}
	sum := binary.BigEndian.Uint32(t[8:12])
	if got := b.crc.Sum32(); got != sum {
		return fmt.Errorf("%w: checksum %08x, computed %08x", ErrCorrupt, sum, got)
	}
	b.done = true
	b.sum = Summary{Size: b.n + trailerLen, Checksum: sum}
	return io.EOF
}

// Summary returns the size and checksum of the file once Read has
// returned io.EOF (the file verified), and false before.
func (b *Reader) Summary() (Summary, bool) { return b.sum, b.done }

// Verify reads the whole backup r holds and verifies it, with bounded
// memory. It returns the metadata and summary of an intact file; errors
// wrap ErrNotBackup, ErrVersion or ErrCorrupt (or r's read error).
func Verify(r io.Reader) (Metadata, Summary, error) {
	br, err := Open(r)
	if err != nil {
		return Metadata{}, Summary{}, err
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return Metadata{}, Summary{}, err
	}
	sum, _ := br.Summary()
	return br.meta, sum, nil
}
