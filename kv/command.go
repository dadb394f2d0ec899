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
)

// command is one replicated operation as stored in a raft log entry,
// encoded with MessagePack.
type command struct {
	Op    op     `msgpack:"o"`
	Key   string `msgpack:"k"`
	Value []byte `msgpack:"v,omitempty"`
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
	if c.Op != opPut && c.Op != opDelete {
		return command{}, fmt.Errorf("kv: %w: unknown op %d", ErrBadCommand, c.Op)
	}
	return c, nil
}
