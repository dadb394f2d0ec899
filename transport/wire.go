package transport

// The frame format (see doc.go) is split by concern:
//
//	wire.go         the wire structs and their making from raftpb messages
//	wire_encode.go  EncodeFrame and the frame writer
//	wire_decode.go  DecodeFrame and the bounded frame reader

import (
	"bytes"
	"errors"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
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
