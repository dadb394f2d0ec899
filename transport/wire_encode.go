package transport

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"go.etcd.io/raft/v3/raftpb"
)

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
