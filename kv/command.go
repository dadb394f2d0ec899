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
	// Leases (lease.go): Lease is the id, TTL the time to live in
	// milliseconds; an expiry lists Leases and is proposed by the leader
	// alone, bound to its term.
	opLeaseGrant  op = 9
	opLeaseRevoke op = 10
	opLeaseExpire op = 11
	// Locks (lock.go): Key is the lock's name, Lease the holder's or
	// waiter's lease, Value its value (elections); an acquire with Try
	// does not wait; a release's If is the token it releases (nil: leave
	// the lock, holding or waiting).
	opLockAcquire op = 12
	opLockRelease op = 13
	// opLockProclaim sets the holder's value (an election's), If the
	// holder's token.
	opLockProclaim op = 14
	// Queues (queue.go): Key is the queue, Task the task's id, At the
	// proposer's clock (the state machine's clock never goes back). An
	// enqueue carries Value (data), RunAt, Attempts and Workflow; a claim
	// Worker and the claim's new lease (Lease, TTL); a complete Epoch and
	// Value (result); a fail Epoch, Error and Retry.
	opTaskEnqueue  op = 15
	opTaskClaim    op = 16
	opTaskComplete op = 17
	opTaskFail     op = 18
	opTaskRequeue  op = 19
	opLast            = opTaskRequeue
	// Schedules (schedule.go): Key is the schedule's id, At the
	// proposer's clock. A put carries Queue, Cron or Every, and Value
	// (each task's data); a fire, proposed by the leader alone in its
	// term, Tick: the schedule's next tick, due by At.
	opSchedulePut    op = 50
	opScheduleDelete op = 51
	opScheduleFire   op = 52
)

// isScheduleOp reports whether o is a schedule command.
func isScheduleOp(o op) bool { return o >= opSchedulePut && o <= opScheduleFire }

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
	case opLeaseGrant:
		return "grant lease"
	case opLeaseRevoke:
		return "revoke lease"
	case opLeaseExpire:
		return "expire leases"
	case opLockAcquire:
		return "acquire lock"
	case opLockRelease:
		return "release lock"
	case opLockProclaim:
		return "proclaim"
	case opEtcdTxn:
		return "etcd transaction"
	case opCompact:
		return "compact"
	case opTaskEnqueue:
		return "enqueue task"
	case opTaskClaim:
		return "claim task"
	case opTaskComplete:
		return "complete task"
	case opTaskFail:
		return "fail task"
	case opTaskRequeue:
		return "requeue task"
	case opSchedulePut:
		return "put schedule"
	case opScheduleDelete:
		return "delete schedule"
	case opScheduleFire:
		return "fire schedule"
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
	// Lease is a lease id: granted, revoked, or the one a put attaches
	// Key to. TTL is a time to live in milliseconds: of a granted lease,
	// or of a put's own lease (id Lease) that expires the key.
	Lease int64 `msgpack:"l,omitempty"`
	TTL   int64 `msgpack:"d,omitempty"`
	// Leases are the leases an expiry revokes.
	Leases []int64 `msgpack:"x,omitempty"`
	// FenceLock and FenceToken fence a write: it is applied only if lock
	// FenceLock is held with token FenceToken at that moment.
	FenceLock  string `msgpack:"fl,omitempty"`
	FenceToken int64  `msgpack:"ft,omitempty"`
	// Try makes a lock acquire fail rather than wait.
	Try bool `msgpack:"y,omitempty"`
	// Etcd is the transaction of an opEtcdTxn (etcdtxn.go).
	Etcd *EtcdTxn `msgpack:"et,omitempty"`
	// Queue commands (opTaskEnqueue to opTaskRequeue): the task's id, the
	// claim's epoch, the claiming worker, the task's workflow, when it is
	// ready (Unix ms), its most attempts, a failure's message and its
	// retry delay in ms (nil: the default backoff).
	Task     string `msgpack:"tk,omitempty"`
	Epoch    int64  `msgpack:"te,omitempty"`
	Worker   string `msgpack:"tw,omitempty"`
	Workflow string `msgpack:"tf,omitempty"`
	RunAt    int64  `msgpack:"tr,omitempty"`
	Attempts int    `msgpack:"tm,omitempty"`
	Error    string `msgpack:"tx,omitempty"`
	Retry    *int64 `msgpack:"tb,omitempty"`
	// Compact is the revision an opCompact compacts at (history.go).
	Compact int64 `msgpack:"cr,omitempty"`
	// Schedule commands (opSchedulePut to opScheduleFire): the queue its
	// tasks go to, its cron expression or its interval in ms, and the
	// tick a fire is for (Unix ms).
	Queue string `msgpack:"sq,omitempty"`
	Cron  string `msgpack:"sc,omitempty"`
	Every int64  `msgpack:"se,omitempty"`
	Tick  int64  `msgpack:"st,omitempty"`
	// History makes the command write workflow history (wfhistory.go).
	// Store and Lessor set it on the commands that may (withHistory);
	// entries written before history existed lack it and apply as they
	// always did, so a node replaying an old log after an upgrade keeps
	// the state its peers hold.
	History bool `msgpack:"wh,omitempty"`
}

// withHistory returns c marked to write workflow history if its op may:
// the workflow commands, the queue commands and the lease revocations
// that release a claimed task.
func withHistory(c command) command {
	switch {
	case c.Op == opWorkflowStart, c.Op == opWorkflowStop, c.Op == opWorkflowUpdate,
		c.Op == opLeaseRevoke, c.Op == opLeaseExpire,
		c.Op >= opTaskEnqueue && c.Op <= opTaskRequeue:
		c.History = true
	}
	return c
}

// txnOp is one operation of a batch.
type txnOp struct {
	Op    op     `msgpack:"o"`
	Key   string `msgpack:"k"`
	Value []byte `msgpack:"v,omitempty"`
	If    *int64 `msgpack:"i,omitempty"`
	Lease int64  `msgpack:"l,omitempty"`
}

// ErrBadCommand means a log entry's payload is not a command this version
// understands. Every node sees the same bytes and rejects them alike.
var ErrBadCommand = errors.New("bad command")

func encodeCommand(c command) ([]byte, error) {
	if !c.History && len(c.Ops) == 0 && c.Lease == 0 && c.TTL == 0 && len(c.Leases) == 0 && c.FenceLock == "" && !c.Try && c.Etcd == nil && c.Op < opTaskEnqueue {
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
	if c, ok := decodeSimpleCommand(b); ok {
		return c, nil
	}
	// The log is replicated input: validate declared lengths first so a
	// crafted entry cannot make the decoder allocate gigabytes.
	if err := msgpackcheck.Validate(b, msgpackcheck.DefaultMaxDepth); err != nil {
		return command{}, fmt.Errorf("kv: %w: %w", ErrBadCommand, err)
	}
	var c command
	if err := msgpack.Unmarshal(b, &c); err != nil {
		return command{}, fmt.Errorf("kv: %w: %w", ErrBadCommand, err)
	}
	if (c.Op < opPut || c.Op > opLast) && c.Op != opEtcdTxn && c.Op != opCompact && c.Op != opHashCheck && !isScheduleOp(c.Op) {
		return command{}, fmt.Errorf("kv: %w: unknown op %d", ErrBadCommand, c.Op)
	}
	return c, nil
}

// decodeSimpleCommand decodes b if it is exactly what appendCommand writes
// (a put or delete without Ops, fields in their canonical order and
// forms); anything else returns false and goes through the general,
// validating decoder. It is the apply path of every write on every node,
// where Validate plus Unmarshal cost 3-4% of a cluster's CPU. For every b
// it accepts, the result equals Unmarshal's (TestDecodeSimpleCommand).
func decodeSimpleCommand(b []byte) (command, bool) {
	var c command
	r := simpleReader{b: b}
	n, ok := r.byte()
	if !ok || n < msgpcode.FixedMapLow|2 || n > msgpcode.FixedMapLow|7 {
		return c, false
	}
	fields := int(n - msgpcode.FixedMapLow)
	if !r.key('o') || !r.expect(msgpcode.Uint8) {
		return c, false
	}
	o, ok := r.byte()
	if !ok || op(o) < opPut || op(o) > opNodeDeregister {
		return c, false
	}
	c.Op = op(o)
	if !r.key('k') {
		return c, false
	}
	if c.Key, ok = r.str(); !ok {
		return c, false
	}
	for i := 2; i < fields; i++ {
		k, ok := r.anyKey()
		if !ok {
			return c, false
		}
		switch {
		case k == 'v' && c.Value == nil && c.If == nil && c.Client == "" && c.Seq == 0 && c.At == 0:
			v, ok := r.bin()
			if !ok || len(v) == 0 {
				return c, false
			}
			c.Value = append([]byte(nil), v...)
		case k == 'i' && c.If == nil && c.Client == "" && c.Seq == 0 && c.At == 0:
			v, ok := r.fixed(msgpcode.Int64)
			if !ok {
				return c, false
			}
			i := int64(v)
			c.If = &i
		case k == 'c' && c.Client == "" && c.Seq == 0 && c.At == 0:
			if c.Client, ok = r.str(); !ok || c.Client == "" {
				return c, false
			}
		case k == 's' && c.Seq == 0 && c.At == 0:
			if c.Seq, ok = r.fixed(msgpcode.Uint64); !ok || c.Seq == 0 {
				return c, false
			}
		case k == 'a' && c.At == 0:
			v, ok := r.fixed(msgpcode.Int64)
			if !ok || v == 0 {
				return c, false
			}
			c.At = int64(v)
		default:
			return c, false
		}
	}
	return c, len(r.b) == 0
}

// simpleReader reads the few MessagePack forms appendCommand writes.
type simpleReader struct{ b []byte }

func (r *simpleReader) byte() (byte, bool) {
	if len(r.b) < 1 {
		return 0, false
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c, true
}

func (r *simpleReader) expect(code byte) bool {
	c, ok := r.byte()
	return ok && c == code
}

// anyKey reads a one-letter field name.
func (r *simpleReader) anyKey() (byte, bool) {
	if len(r.b) < 2 || r.b[0] != msgpcode.FixedStrLow|1 {
		return 0, false
	}
	k := r.b[1]
	r.b = r.b[2:]
	return k, true
}

func (r *simpleReader) key(k byte) bool {
	got, ok := r.anyKey()
	return ok && got == k
}

func (r *simpleReader) fixed(code byte) (uint64, bool) {
	if len(r.b) < 9 || r.b[0] != code {
		return 0, false
	}
	v := binary.BigEndian.Uint64(r.b[1:9])
	r.b = r.b[9:]
	return v, true
}

// raw reads a length of the given width after a one-byte code and that
// many bytes.
func (r *simpleReader) raw(code8, code16, code32 byte) ([]byte, bool) {
	if len(r.b) < 1 {
		return nil, false
	}
	var l, h int
	switch c := r.b[0]; {
	case code8 == msgpcode.Str8 && c >= msgpcode.FixedStrLow && c <= msgpcode.FixedStrHigh:
		l, h = int(c-msgpcode.FixedStrLow), 1
	case c == code8 && len(r.b) >= 2:
		l, h = int(r.b[1]), 2
	case c == code16 && len(r.b) >= 3:
		l, h = int(binary.BigEndian.Uint16(r.b[1:3])), 3
	case c == code32 && len(r.b) >= 5:
		l, h = int(binary.BigEndian.Uint32(r.b[1:5])), 5
	default:
		return nil, false
	}
	if len(r.b)-h < l {
		return nil, false
	}
	v := r.b[h : h+l]
	r.b = r.b[h+l:]
	return v, true
}

func (r *simpleReader) str() (string, bool) {
	v, ok := r.raw(msgpcode.Str8, msgpcode.Str16, msgpcode.Str32)
	return string(v), ok
}

func (r *simpleReader) bin() ([]byte, bool) {
	return r.raw(msgpcode.Bin8, msgpcode.Bin16, msgpcode.Bin32)
}
