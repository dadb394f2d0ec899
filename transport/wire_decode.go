package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

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
