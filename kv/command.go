package kv

import (
	"errors"
	"fmt"

	"github.com/unrdf/consensus/internal/msgpackcheck"
	"github.com/vmihailenco/msgpack/v5"
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
	b, err := msgpack.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("kv: encode command: %w", err)
	}
	return b, nil
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
