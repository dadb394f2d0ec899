package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// ErrBadFrame is wrapped by every error DecodeFrame returns: the bytes are
// not a frame this version understands. A peer that sends one has a bug or
// speaks another protocol; the frame is dropped and the stream kept.
var ErrBadFrame = errors.New("transport: bad frame")

// frameVersion is the value of the envelope's "v" key. A decoder rejects any
// other value, so an incompatible format change must bump it.
const frameVersion = 1

// maxSkipDepth bounds the nesting of values a decoder skips (unknown envelope
// keys, trailing array elements from a newer peer). Skipping recurses, and a
// frame of nothing but array headers must not exhaust the stack.
const maxSkipDepth = 16

// Positions in the array a message is encoded as. The encoder stops after the
// last field present, so the order puts fields that most messages carry first.
const (
	msgType = iota
	msgTo
	msgFrom
	msgTerm
	msgLogTerm
	msgIndex
	msgCommit
	msgEntries
	msgReject
	msgRejectHint
	msgContext
	msgVote
	msgSnapshot
	msgFields // number of fields this version knows
)

// opt is a proto2 optional scalar: Set false means the field was absent (a
// nil pointer in raftpb), which the wire carries as msgpack nil. Holding the
// value rather than the pointer means a wire message shares no memory with
// the raftpb message it was made from, except entry and snapshot data.
type opt[T any] struct {
	V   T
	Set bool
}

func optOf[T any](p *T) opt[T] {
	if p == nil {
		return opt[T]{}
	}
	return opt[T]{V: *p, Set: true}
}

// wireMessage is the wire form of a raftpb.Message, made in the goroutine
// that calls Send and encoded later by the peer's writer. The JSON tags name
// the fields for documentation and for the size comparison in the tests; the
// msgpack encoding is positional (see the msg* constants and doc.go).
type wireMessage struct {
	Type       opt[raftpb.MessageType] `json:"type,omitzero"`
	To         opt[uint64]             `json:"to,omitzero"`
	From       opt[uint64]             `json:"from,omitzero"`
	Term       opt[uint64]             `json:"term,omitzero"`
	LogTerm    opt[uint64]             `json:"logTerm,omitzero"`
	Index      opt[uint64]             `json:"index,omitzero"`
	Commit     opt[uint64]             `json:"commit,omitzero"`
	Entries    []wireEntry             `json:"entries,omitzero"`
	Reject     opt[bool]               `json:"reject,omitzero"`
	RejectHint opt[uint64]             `json:"rejectHint,omitzero"`
	Context    []byte                  `json:"context,omitzero"`
	Vote       opt[uint64]             `json:"vote,omitzero"`
	Snapshot   *wireSnapshot           `json:"snapshot,omitzero"`

	// size estimates the encoded bytes, for the writer's batch budget.
	size int
}

// wireEntry is the wire form of a raftpb.Entry: [term, index, type, data].
type wireEntry struct {
	Term  opt[uint64]           `json:"term,omitzero"`
	Index opt[uint64]           `json:"index,omitzero"`
	Type  opt[raftpb.EntryType] `json:"type,omitzero"`
	Data  []byte                `json:"data,omitzero"`
}

// wireSnapshot is the wire form of a raftpb.Snapshot: [data, metadata].
type wireSnapshot struct {
	Data     []byte        `json:"data,omitzero"`
	Metadata *wireSnapMeta `json:"metadata,omitzero"`
}

// wireSnapMeta is the wire form of a raftpb.SnapshotMetadata:
// [confState, index, term].
type wireSnapMeta struct {
	ConfState *wireConfState `json:"confState,omitzero"`
	Index     opt[uint64]    `json:"index,omitzero"`
	Term      opt[uint64]    `json:"term,omitzero"`
}

// wireConfState is the wire form of a raftpb.ConfState:
// [voters, learners, votersOutgoing, learnersNext, autoLeave].
type wireConfState struct {
	Voters         []uint64  `json:"voters,omitzero"`
	Learners       []uint64  `json:"learners,omitzero"`
	VotersOutgoing []uint64  `json:"votersOutgoing,omitzero"`
	LearnersNext   []uint64  `json:"learnersNext,omitzero"`
	AutoLeave      opt[bool] `json:"autoLeave,omitzero"`
}

// toWire copies m into its wire form. Scalars and id lists are copied, and
// so is Context (small, and owned by the caller); entry and snapshot data
// are referenced, because raft never mutates them and copying a snapshot in
// the raft loop would be expensive. m.Responses is local to a node and is
// not carried.
func toWire(m *raftpb.Message) *wireMessage {
	w := &wireMessage{
		Type:       optOf(m.Type),
		To:         optOf(m.To),
		From:       optOf(m.From),
		Term:       optOf(m.Term),
		LogTerm:    optOf(m.LogTerm),
		Index:      optOf(m.Index),
		Commit:     optOf(m.Commit),
		Reject:     optOf(m.Reject),
		RejectHint: optOf(m.RejectHint),
		Context:    bytes.Clone(m.Context),
		Vote:       optOf(m.Vote),
		size:       32 + len(m.Context),
	}
	if len(m.Entries) > 0 {
		w.Entries = make([]wireEntry, len(m.Entries))
		for i, e := range m.Entries {
			if e == nil {
				continue // raft never sends a nil entry; it travels as an empty one
			}
			w.Entries[i] = wireEntry{
				Term:  optOf(e.Term),
				Index: optOf(e.Index),
				Type:  optOf(e.Type),
				Data:  e.Data,
			}
			w.size += 16 + len(e.Data)
		}
	}
	if s := m.Snapshot; s != nil {
		w.Snapshot = &wireSnapshot{Data: s.Data}
		w.size += 16 + len(s.Data)
		if md := s.Metadata; md != nil {
			w.Snapshot.Metadata = &wireSnapMeta{Index: optOf(md.Index), Term: optOf(md.Term)}
			if cs := md.ConfState; cs != nil {
				w.Snapshot.Metadata.ConfState = &wireConfState{
					Voters:         slices.Clone(cs.Voters),
					Learners:       slices.Clone(cs.Learners),
					VotersOutgoing: slices.Clone(cs.VotersOutgoing),
					LearnersNext:   slices.Clone(cs.LearnersNext),
					AutoLeave:      optOf(cs.AutoLeave),
				}
				w.size += 9 * (len(cs.Voters) + len(cs.Learners) + len(cs.VotersOutgoing) + len(cs.LearnersNext))
			}
		}
	}
	return w
}

// isSnap reports whether w carries a snapshot, whose outcome raft must hear
// about through ReportSnapshot.
func (w *wireMessage) isSnap() bool {
	return w.Type.Set && w.Type.V == raftpb.MsgSnap
}

// EncodeFrame encodes msgs, sent by the node with raft id from, as one frame
// in the format described in the package documentation. It does not retain
// msgs or anything they reference.
func EncodeFrame(from uint64, msgs []*raftpb.Message) ([]byte, error) {
	wire := make([]*wireMessage, len(msgs))
	for i, m := range msgs {
		if m == nil {
			return nil, fmt.Errorf("transport: encode frame: message %d is nil", i)
		}
		wire[i] = toWire(m)
	}
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	if err := encodeFrame(enc, &buf, from, wire); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// encodeFrame resets buf and enc and encodes one frame into buf.
func encodeFrame(enc *msgpack.Encoder, buf *bytes.Buffer, from uint64, msgs []*wireMessage) error {
	buf.Reset()
	enc.Reset(buf)
	w := frameWriter{enc: enc}
	w.mapLen(3)
	w.str("v")
	w.uint(frameVersion)
	w.str("from")
	w.uint(from)
	w.str("msgs")
	w.arrayLen(len(msgs))
	for _, m := range msgs {
		w.message(m)
	}
	if w.err != nil {
		return fmt.Errorf("transport: encode frame: %w", w.err)
	}
	return nil
}

// frameWriter encodes the wire structs, remembering the first error so the
// encoding reads as a sequence of fields. Writing to a bytes.Buffer does not
// fail, so in practice there is none.
type frameWriter struct {
	enc *msgpack.Encoder
	err error
}

func (w *frameWriter) keep(err error) {
	if w.err == nil {
		w.err = err
	}
}

func (w *frameWriter) mapLen(n int)   { w.keep(w.enc.EncodeMapLen(n)) }
func (w *frameWriter) arrayLen(n int) { w.keep(w.enc.EncodeArrayLen(n)) }
func (w *frameWriter) str(s string)   { w.keep(w.enc.EncodeString(s)) }
func (w *frameWriter) uint(v uint64)  { w.keep(w.enc.EncodeUint(v)) }
func (w *frameWriter) null()          { w.keep(w.enc.EncodeNil()) }

// bytes writes nil as msgpack nil and any other slice, empty included, as
// bin, so that proto2 presence survives.
func (w *frameWriter) bytes(b []byte) { w.keep(w.enc.EncodeBytes(b)) }

func (w *frameWriter) optUint(o opt[uint64]) {
	if !o.Set {
		w.null()
		return
	}
	w.uint(o.V)
}

func (w *frameWriter) optBool(o opt[bool]) {
	if !o.Set {
		w.null()
		return
	}
	w.keep(w.enc.EncodeBool(o.V))
}

func optInt[T ~int32](w *frameWriter, o opt[T]) {
	if !o.Set {
		w.null()
		return
	}
	w.keep(w.enc.EncodeInt(int64(o.V)))
}

// uints writes an empty or nil list as nil: proto does not tell them apart.
func (w *frameWriter) uints(vs []uint64) {
	if len(vs) == 0 {
		w.null()
		return
	}
	w.arrayLen(len(vs))
	for _, v := range vs {
		w.uint(v)
	}
}

// fieldCount is the number of leading message fields to write: everything up
// to the last one present.
func (m *wireMessage) fieldCount() int {
	switch {
	case m.Snapshot != nil:
		return msgSnapshot + 1
	case m.Vote.Set:
		return msgVote + 1
	case m.Context != nil:
		return msgContext + 1
	case m.RejectHint.Set:
		return msgRejectHint + 1
	case m.Reject.Set:
		return msgReject + 1
	case len(m.Entries) > 0:
		return msgEntries + 1
	case m.Commit.Set:
		return msgCommit + 1
	case m.Index.Set:
		return msgIndex + 1
	case m.LogTerm.Set:
		return msgLogTerm + 1
	case m.Term.Set:
		return msgTerm + 1
	case m.From.Set:
		return msgFrom + 1
	case m.To.Set:
		return msgTo + 1
	case m.Type.Set:
		return msgType + 1
	}
	return 0
}

func (w *frameWriter) message(m *wireMessage) {
	n := m.fieldCount()
	w.arrayLen(n)
	for i := range n {
		switch i {
		case msgType:
			optInt(w, m.Type)
		case msgTo:
			w.optUint(m.To)
		case msgFrom:
			w.optUint(m.From)
		case msgTerm:
			w.optUint(m.Term)
		case msgLogTerm:
			w.optUint(m.LogTerm)
		case msgIndex:
			w.optUint(m.Index)
		case msgCommit:
			w.optUint(m.Commit)
		case msgEntries:
			w.entries(m.Entries)
		case msgReject:
			w.optBool(m.Reject)
		case msgRejectHint:
			w.optUint(m.RejectHint)
		case msgContext:
			w.bytes(m.Context)
		case msgVote:
			w.optUint(m.Vote)
		case msgSnapshot:
			w.snapshot(m.Snapshot)
		}
	}
}

func (w *frameWriter) entries(es []wireEntry) {
	if len(es) == 0 {
		w.null()
		return
	}
	w.arrayLen(len(es))
	for i := range es {
		e := &es[i]
		n := 0
		switch {
		case e.Data != nil:
			n = 4
		case e.Type.Set:
			n = 3
		case e.Index.Set:
			n = 2
		case e.Term.Set:
			n = 1
		}
		w.arrayLen(n)
		if n > 0 {
			w.optUint(e.Term)
		}
		if n > 1 {
			w.optUint(e.Index)
		}
		if n > 2 {
			optInt(w, e.Type)
		}
		if n > 3 {
			w.bytes(e.Data)
		}
	}
}

func (w *frameWriter) snapshot(s *wireSnapshot) {
	if s == nil {
		w.null()
		return
	}
	md := s.Metadata
	if md == nil {
		w.arrayLen(1)
		w.bytes(s.Data)
		return
	}
	w.arrayLen(2)
	w.bytes(s.Data)
	w.arrayLen(3)
	if cs := md.ConfState; cs == nil {
		w.null()
	} else {
		w.arrayLen(5)
		w.uints(cs.Voters)
		w.uints(cs.Learners)
		w.uints(cs.VotersOutgoing)
		w.uints(cs.LearnersNext)
		w.optBool(cs.AutoLeave)
	}
	w.optUint(md.Index)
	w.optUint(md.Term)
}

// DecodeFrame decodes a frame made by EncodeFrame. Every error wraps
// ErrBadFrame. It never panics, and it bounds every length the input
// declares by the bytes that remain, so memory use is linear in len(b)
// whatever b holds: at worst a few hundred bytes per input byte (a frame of
// empty messages), about fifty for real heartbeat traffic, as with protobuf.
// The returned messages do not reference b.
func DecodeFrame(b []byte) (from uint64, msgs []*raftpb.Message, err error) {
	r := frameReader{d: msgpack.GetDecoder()}
	defer msgpack.PutDecoder(r.d)
	r.src.Reset(b)
	r.d.Reset(&r.src)
	from, msgs, err = r.frame()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("%w: %w", ErrBadFrame, err)
	}
	return from, msgs, nil
}

// frameReader decodes one frame. The msgpack decoder reads src directly (a
// bytes.Reader is an io.ByteScanner, so it is not buffered), which lets the
// reader check declared lengths against src.Len() before allocating: the
// library itself preallocates whatever an array or bin header claims.
type frameReader struct {
	src bytes.Reader
	d   *msgpack.Decoder
}

var (
	errTrailing = errors.New("trailing bytes after frame")
	errTooLong  = errors.New("declared length exceeds frame")
	errTooDeep  = errors.New("values nested too deep")
)

func (r *frameReader) frame() (uint64, []*raftpb.Message, error) {
	n, err := r.d.DecodeMapLen()
	if err != nil {
		return 0, nil, fmt.Errorf("envelope: %w", err)
	}
	if n < 0 || n > r.src.Len()/2 {
		return 0, nil, fmt.Errorf("envelope: %d keys: %w", n, errTooLong)
	}
	var (
		from       uint64
		msgs       []*raftpb.Message
		seenFrom   bool
		seenMsgs   bool
		keyScratch [8]byte
	)
	for i := range n {
		key, err := r.key(keyScratch[:0])
		if err != nil {
			return 0, nil, fmt.Errorf("envelope key %d: %w", i, err)
		}
		// The version comes first, so that nothing is decoded in the wrong
		// format.
		if i == 0 {
			if string(key) != "v" {
				return 0, nil, fmt.Errorf("envelope: first key is %q, want \"v\"", key)
			}
			v, err := r.uint()
			if err != nil {
				return 0, nil, fmt.Errorf("envelope: v: %w", err)
			}
			if v != frameVersion {
				return 0, nil, fmt.Errorf("envelope: unsupported version %d", v)
			}
			continue
		}
		switch string(key) {
		case "v":
			return 0, nil, errors.New("envelope: duplicate key \"v\"")
		case "from":
			if seenFrom {
				return 0, nil, errors.New("envelope: duplicate key \"from\"")
			}
			seenFrom = true
			if from, err = r.uint(); err != nil {
				return 0, nil, fmt.Errorf("envelope: from: %w", err)
			}
		case "msgs":
			if seenMsgs {
				return 0, nil, errors.New("envelope: duplicate key \"msgs\"")
			}
			seenMsgs = true
			if msgs, err = r.messages(); err != nil {
				return 0, nil, err
			}
		default:
			// A key from a newer compatible version.
			if err := r.skip(0); err != nil {
				return 0, nil, fmt.Errorf("envelope key %q: %w", key, err)
			}
		}
	}
	if n == 0 {
		return 0, nil, errors.New("envelope: empty")
	}
	if !seenFrom || !seenMsgs {
		return 0, nil, errors.New("envelope: missing \"from\" or \"msgs\"")
	}
	if r.src.Len() != 0 {
		return 0, nil, errTrailing
	}
	return from, msgs, nil
}

// key reads a map key, which must be a short string: the envelope has no
// other kind.
func (r *frameReader) key(scratch []byte) ([]byte, error) {
	c, err := r.d.PeekCode()
	if err != nil {
		return nil, err
	}
	if !msgpcode.IsFixedString(c) {
		return nil, fmt.Errorf("key code %#x is not a short string", c)
	}
	n, err := r.d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n > r.src.Len() {
		return nil, errTooLong
	}
	b := scratch[:0]
	for range n {
		c, err := r.src.ReadByte()
		if err != nil {
			return nil, err
		}
		b = append(b, c)
	}
	return b, nil
}

// null consumes a msgpack nil if one is next.
func (r *frameReader) null() (bool, error) {
	c, err := r.d.PeekCode()
	if err != nil {
		return false, err
	}
	if c != msgpcode.Nil {
		return false, nil
	}
	return true, r.d.DecodeNil()
}

// arrayLen reads an array header, -1 for nil. minElem is the fewest bytes
// one element can take, so the bound holds before anything is allocated.
func (r *frameReader) arrayLen(minElem int) (int, error) {
	n, err := r.d.DecodeArrayLen()
	if err != nil {
		return 0, err
	}
	if n > r.src.Len()/minElem {
		return 0, fmt.Errorf("array of %d: %w", n, errTooLong)
	}
	return n, nil
}

func (r *frameReader) uint() (uint64, error) {
	if isNil, err := r.null(); err != nil || isNil {
		if err == nil {
			err = errors.New("nil where an integer is required")
		}
		return 0, err
	}
	return r.d.DecodeUint64()
}

func (r *frameReader) optUint() (*uint64, error) {
	if isNil, err := r.null(); err != nil || isNil {
		return nil, err
	}
	v, err := r.d.DecodeUint64()
	if err != nil {
		return nil, err
	}
	return proto.Uint64(v), nil
}

// optUintAt is optUint storing the value in *slot rather than a new
// allocation.
func (r *frameReader) optUintAt(slot *uint64) (*uint64, error) {
	if isNil, err := r.null(); err != nil || isNil {
		return nil, err
	}
	v, err := r.d.DecodeUint64()
	if err != nil {
		return nil, err
	}
	*slot = v
	return slot, nil
}

func (r *frameReader) optBool() (*bool, error) {
	if isNil, err := r.null(); err != nil || isNil {
		return nil, err
	}
	v, err := r.d.DecodeBool()
	if err != nil {
		return nil, err
	}
	return proto.Bool(v), nil
}

// enum reads an optional enum value, which raftpb holds as int32; ok is
// false when it is absent.
func (r *frameReader) enum() (v int32, ok bool, err error) {
	if isNil, err := r.null(); err != nil || isNil {
		return 0, false, err
	}
	n, err := r.d.DecodeInt64()
	if err != nil {
		return 0, false, err
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		return 0, false, fmt.Errorf("enum value %d out of range", n)
	}
	return int32(n), true, nil
}

// bytes reads bin (or str, which older msgpack encoders write for bytes) and
// returns a fresh copy; nil stays nil and an empty bin becomes an empty,
// non-nil slice.
func (r *frameReader) bytes() ([]byte, error) {
	n, err := r.d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, nil
	}
	if n > r.src.Len() {
		return nil, fmt.Errorf("bytes of %d: %w", n, errTooLong)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(&r.src, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (r *frameReader) uints() ([]uint64, error) {
	n, err := r.arrayLen(1)
	if err != nil || n <= 0 {
		return nil, err
	}
	vs := make([]uint64, n)
	for i := range vs {
		if vs[i], err = r.uint(); err != nil {
			return nil, err
		}
	}
	return vs, nil
}

// skip discards one value of any kind, iterating over containers with a
// bounded depth rather than trusting the library's unbounded recursion.
func (r *frameReader) skip(depth int) error {
	if depth > maxSkipDepth {
		return errTooDeep
	}
	c, err := r.d.PeekCode()
	if err != nil {
		return err
	}
	switch {
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := r.arrayLen(1)
		if err != nil {
			return err
		}
		for range n {
			if err := r.skip(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := r.d.DecodeMapLen()
		if err != nil {
			return err
		}
		if n > r.src.Len()/2 {
			return fmt.Errorf("map of %d: %w", n, errTooLong)
		}
		for range 2 * n {
			if err := r.skip(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case msgpcode.IsString(c) || msgpcode.IsBin(c):
		n, err := r.d.DecodeBytesLen()
		if err != nil {
			return err
		}
		if n > r.src.Len() {
			return fmt.Errorf("bytes of %d: %w", n, errTooLong)
		}
		_, err = r.src.Seek(int64(n), io.SeekCurrent)
		return err
	case msgpcode.IsExt(c):
		return fmt.Errorf("unexpected extension code %#x", c)
	}
	// Scalars: nil, booleans, integers and floats, each a fixed size.
	return r.d.Skip()
}

func (r *frameReader) messages() ([]*raftpb.Message, error) {
	n, err := r.arrayLen(1)
	if err != nil {
		return nil, fmt.Errorf("msgs: %w", err)
	}
	if n <= 0 {
		return nil, nil
	}
	msgs := make([]*raftpb.Message, n)
	for i := range msgs {
		if msgs[i], err = r.message(); err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
	}
	return msgs, nil
}

func (r *frameReader) message() (*raftpb.Message, error) {
	n, err := r.arrayLen(1)
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, errors.New("nil message")
	}
	m := &raftpb.Message{}
	for i := range n {
		var err error
		switch i {
		case msgType:
			var t int32
			var ok bool
			if t, ok, err = r.enum(); ok {
				m.Type = raftpb.MessageType(t).Enum()
			}
		case msgTo:
			m.To, err = r.optUint()
		case msgFrom:
			m.From, err = r.optUint()
		case msgTerm:
			m.Term, err = r.optUint()
		case msgLogTerm:
			m.LogTerm, err = r.optUint()
		case msgIndex:
			m.Index, err = r.optUint()
		case msgCommit:
			m.Commit, err = r.optUint()
		case msgEntries:
			m.Entries, err = r.entries()
		case msgReject:
			m.Reject, err = r.optBool()
		case msgRejectHint:
			m.RejectHint, err = r.optUint()
		case msgContext:
			m.Context, err = r.bytes()
		case msgVote:
			m.Vote, err = r.optUint()
		case msgSnapshot:
			m.Snapshot, err = r.snapshot()
		default:
			// A field from a newer compatible version.
			err = r.skip(1)
		}
		if err != nil {
			return nil, fmt.Errorf("field %d: %w", i, err)
		}
	}
	return m, nil
}

func (r *frameReader) entries() ([]*raftpb.Entry, error) {
	n, err := r.arrayLen(1)
	if err != nil || n <= 0 {
		return nil, err
	}
	// Entries come in hundreds per frame, so their structs and scalars are
	// carved from a few slabs instead of four allocations each.
	es := make([]*raftpb.Entry, n)
	slab := make([]raftpb.Entry, n)
	nums := make([]uint64, 2*n)
	types := make([]raftpb.EntryType, n)
	for i := range es {
		fields, err := r.arrayLen(1)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if fields < 0 {
			return nil, fmt.Errorf("entry %d is nil", i)
		}
		e := &slab[i]
		for f := range fields {
			switch f {
			case 0:
				e.Term, err = r.optUintAt(&nums[2*i])
			case 1:
				e.Index, err = r.optUintAt(&nums[2*i+1])
			case 2:
				var t int32
				var ok bool
				if t, ok, err = r.enum(); ok {
					types[i] = raftpb.EntryType(t)
					e.Type = &types[i]
				}
			case 3:
				e.Data, err = r.bytes()
			default:
				err = r.skip(2)
			}
			if err != nil {
				return nil, fmt.Errorf("entry %d field %d: %w", i, f, err)
			}
		}
		es[i] = e
	}
	return es, nil
}

func (r *frameReader) snapshot() (*raftpb.Snapshot, error) {
	n, err := r.arrayLen(1)
	if err != nil || n < 0 {
		return nil, err
	}
	s := &raftpb.Snapshot{}
	for f := range n {
		switch f {
		case 0:
			s.Data, err = r.bytes()
		case 1:
			s.Metadata, err = r.snapMeta()
		default:
			err = r.skip(2)
		}
		if err != nil {
			return nil, fmt.Errorf("snapshot field %d: %w", f, err)
		}
	}
	return s, nil
}

func (r *frameReader) snapMeta() (*raftpb.SnapshotMetadata, error) {
	n, err := r.arrayLen(1)
	if err != nil || n < 0 {
		return nil, err
	}
	md := &raftpb.SnapshotMetadata{}
	for f := range n {
		switch f {
		case 0:
			md.ConfState, err = r.confState()
		case 1:
			md.Index, err = r.optUint()
		case 2:
			md.Term, err = r.optUint()
		default:
			err = r.skip(3)
		}
		if err != nil {
			return nil, fmt.Errorf("metadata field %d: %w", f, err)
		}
	}
	return md, nil
}

func (r *frameReader) confState() (*raftpb.ConfState, error) {
	n, err := r.arrayLen(1)
	if err != nil || n < 0 {
		return nil, err
	}
	cs := &raftpb.ConfState{}
	for f := range n {
		switch f {
		case 0:
			cs.Voters, err = r.uints()
		case 1:
			cs.Learners, err = r.uints()
		case 2:
			cs.VotersOutgoing, err = r.uints()
		case 3:
			cs.LearnersNext, err = r.uints()
		case 4:
			cs.AutoLeave, err = r.optBool()
		default:
			err = r.skip(4)
		}
		if err != nil {
			return nil, fmt.Errorf("conf state field %d: %w", f, err)
		}
	}
	return cs, nil
}
