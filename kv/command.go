package kv

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/unrdf/consensus/internal/msgpackcheck"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// op names a state machine operation. Values are part of the log format:
// never renumber them.
type op uint8

const (
	opPut    op = 1
	opDelete op = 2
	// opTxn applies Ops all or nothing, at one revision.
	opTxn op = 3
	// Workflow commands (the seed's START_WORKFLOW, STOP_WORKFLOW,
	// UPDATE_STATE): Key is the workflow id, Value a JSON object of fields.
	opWorkflowStart  op = 4
	opWorkflowStop   op = 5
	opWorkflowUpdate op = 6
	// Application node registry (REGISTER_NODE, DEREGISTER_NODE): Key is
	// the node id, Value a JSON object of metadata.
	opNodeRegister   op = 7
	opNodeDeregister op = 8
)

func (o op) String() string {
	switch o {
	case opPut:
		return "put"
	case opDelete:
		return "delete"
	case opTxn:
		return "batch"
	case opWorkflowStart:
		return "start workflow"
	case opWorkflowStop:
		return "stop workflow"
	case opWorkflowUpdate:
		return "update workflow"
	case opNodeRegister:
		return "register node"
	case opNodeDeregister:
		return "deregister node"
	}
	return fmt.Sprintf("op %d", uint8(o))
}

// command is one replicated operation as stored in a raft log entry,
// encoded with MessagePack. Fields are only ever appended, with omitempty,
// so that older entries decode unchanged.
type command struct {
	Op    op     `msgpack:"o"`
	Key   string `msgpack:"k"`
	Value []byte `msgpack:"v,omitempty"`
	// If, when set, is a precondition on Key's revision (0: the key must
	// not exist). Put and delete only.
	If *int64 `msgpack:"i,omitempty"`
	// Ops are the operations of an opTxn.
	Ops []txnOp `msgpack:"t,omitempty"`
	// Client and Seq identify the request for exactly-once application;
	// Client empty means no session.
	Client string `msgpack:"c,omitempty"`
	Seq    uint64 `msgpack:"s,omitempty"`
	// At is the proposer's clock (Unix milliseconds), recorded in
	// workflow and node timestamps; apply never reads a clock.
	At int64 `msgpack:"a,omitempty"`
}

// txnOp is one operation of a batch.
type txnOp struct {
	Op    op     `msgpack:"o"`
	Key   string `msgpack:"k"`
	Value []byte `msgpack:"v,omitempty"`
	If    *int64 `msgpack:"i,omitempty"`
}

// ErrBadCommand means a log entry's payload is not a command this version
// understands. Every node sees the same bytes and rejects them alike.
var ErrBadCommand = errors.New("bad command")

func encodeCommand(c command) ([]byte, error) {
	if len(c.Ops) == 0 {
		return appendCommand(make([]byte, 0, commandSizeHint(&c)), &c), nil
	}
	b, err := msgpack.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("kv: encode command: %w", err)
	}
	return b, nil
}

// appendCommand appends c, which has no Ops, to b as msgpack.Marshal
// would (a map of the non-empty fields in declaration order; uint8, int64
// and uint64 in their fixed-size forms), without reflection: on the write
// path of every put and delete, Marshal's type lookups and the deep
// stacks they grow were 8% of a cluster's CPU (BENCHMARKS.md).
// TestAppendCommandMatchesMarshal holds it to Marshal's bytes.
func appendCommand(b []byte, c *command) []byte {
	n := 2 // o, k
	if len(c.Value) > 0 {
		n++
	}
	if c.If != nil {
		n++
	}
	if c.Client != "" {
		n++
	}
	if c.Seq != 0 {
		n++
	}
	if c.At != 0 {
		n++
	}
	b = append(b, msgpcode.FixedMapLow|byte(n))
	b = appendMsgpackString(b, "o")
	b = append(b, msgpcode.Uint8, byte(c.Op))
	b = appendMsgpackString(b, "k")
	b = appendMsgpackString(b, c.Key)
	if len(c.Value) > 0 {
		b = appendMsgpackString(b, "v")
		b = appendMsgpackBin(b, c.Value)
	}
	if c.If != nil {
		b = appendMsgpackString(b, "i")
		b = append(b, msgpcode.Int64)
		b = binary.BigEndian.AppendUint64(b, uint64(*c.If))
	}
	if c.Client != "" {
		b = appendMsgpackString(b, "c")
		b = appendMsgpackString(b, c.Client)
	}
	if c.Seq != 0 {
		b = appendMsgpackString(b, "s")
		b = append(b, msgpcode.Uint64)
		b = binary.BigEndian.AppendUint64(b, c.Seq)
	}
	if c.At != 0 {
		b = appendMsgpackString(b, "a")
		b = append(b, msgpcode.Int64)
		b = binary.BigEndian.AppendUint64(b, uint64(c.At))
	}
	return b
}

// commandSizeHint is an upper bound of appendCommand's output for c.
func commandSizeHint(c *command) int {
	return 64 + len(c.Key) + len(c.Value) + len(c.Client)
}

func appendMsgpackString(b []byte, s string) []byte {
	switch l := len(s); {
	case l < 32:
		b = append(b, msgpcode.FixedStrLow|byte(l))
	case l < 1<<8:
		b = append(b, msgpcode.Str8, byte(l))
	case l < 1<<16:
		b = append(b, msgpcode.Str16)
		b = binary.BigEndian.AppendUint16(b, uint16(l))
	default:
		b = append(b, msgpcode.Str32)
		b = binary.BigEndian.AppendUint32(b, uint32(l))
	}
	return append(b, s...)
}

func appendMsgpackBin(b []byte, v []byte) []byte {
	switch l := len(v); {
	case l < 1<<8:
		b = append(b, msgpcode.Bin8, byte(l))
	case l < 1<<16:
		b = append(b, msgpcode.Bin16)
		b = binary.BigEndian.AppendUint16(b, uint16(l))
	default:
		b = append(b, msgpcode.Bin32)
		b = binary.BigEndian.AppendUint32(b, uint32(l))
	}
	return append(b, v...)
}

func decodeCommand(b []byte) (command, error) {
	// The log is replicated input: validate declared lengths first so a
	// crafted entry cannot make the decoder allocate gigabytes.
	if err := msgpackcheck.Validate(b, msgpackcheck.DefaultMaxDepth); err != nil {
		return command{}, fmt.Errorf("kv: %w: %w", ErrBadCommand, err)
	}
	var c command
	if err := msgpack.Unmarshal(b, &c); err != nil {
		return command{}, fmt.Errorf("kv: %w: %w", ErrBadCommand, err)
	}
	if c.Op < opPut || c.Op > opNodeDeregister {
		return command{}, fmt.Errorf("kv: %w: unknown op %d", ErrBadCommand, c.Op)
	}
	return c, nil
}
