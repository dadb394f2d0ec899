package api

import "fmt"

// ProtocolVersion is the /v1/ws frame format: the first element of every
// frame in both directions. A server answers a frame of another version
// by closing the connection (1002) with a reason naming the versions it
// speaks; an incompatible change bumps it.
const ProtocolVersion = 1

// Op is an operation of the /v1/ws protocol: the second element of a
// request. Its values are part of the wire format: never renumber them.
type Op uint64

// Operations of the /v1/ws protocol; docs/PROTOCOL.md lists their
// arguments and results.
const (
	OpPut            Op = 1
	OpGet            Op = 2
	OpDelete         Op = 3
	OpList           Op = 4
	OpStatus         Op = 5
	OpTxn            Op = 6
	OpWorkflowStart  Op = 7
	OpWorkflowStop   Op = 8
	OpWorkflowUpdate Op = 9
	OpWorkflowGet    Op = 10
	OpWorkflowList   Op = 11
	OpNodeRegister   Op = 12
	OpNodeDeregister Op = 13
	OpNodeList       Op = 14
	OpLeaseGrant     Op = 15
	OpLeaseRevoke    Op = 16
	OpLeaseKeepAlive Op = 17
	OpLeaseTTL       Op = 18
	OpLeaseList      Op = 19
	OpLockAcquire    Op = 20
	OpLockRelease    Op = 21
	OpLockGet        Op = 22
	OpCampaign       Op = 23
	OpProclaim       Op = 24
	OpResign         Op = 25
	OpLeader         Op = 26
	// OpWatch starts a watch on the connection: the server pushes its
	// events as elements of kind ResultWatchEvents tagged with the
	// request's id (the watch's id), after the answer; OpWatchCancel ends
	// one (api/watch.go, docs/PROTOCOL.md "Watches").
	OpWatch       Op = 27
	OpWatchCancel Op = 28
	// OpListPage is one page of a list, read at one revision across
	// pages; a list too large for one frame is read this way.
	OpListPage Op = 30

	// Task queues (40 to 59; 29 and 31 to 39 are kept for other
	// operations).
	// Their JSON arguments and results are the bodies of the HTTP queue
	// routes (docs/API.md "Task queues").
	OpQueueEnqueue  Op = 40
	OpQueueClaim    Op = 41
	OpTaskHeartbeat Op = 42
	OpTaskComplete  Op = 43
	OpTaskFail      Op = 44
	OpTaskRequeue   Op = 45
	OpTaskGet       Op = 46
	OpQueueStats    Op = 47
	OpTaskList      Op = 48

	// Schedules (50 to 54). Their JSON arguments and results are the
	// bodies of the HTTP schedule routes (docs/API.md "Schedules").
	OpSchedulePut    Op = 50
	OpScheduleGet    Op = 51
	OpScheduleList   Op = 52
	OpScheduleDelete Op = 53

	// Workflow history (55): its result is the body of
	// GET /v1/workflows/{id}/history (docs/API.md "Workflow history").
	OpWorkflowHistory Op = 55

	// opLast is the highest operation this version knows.
	opLast = OpWorkflowHistory
)

// Response kinds: the second element of a response.
const (
	ResultOK    = 0
	ResultError = 1
)

// Bounds of the frame format.
const (
	// FrameOverhead bounds the bytes of a frame's envelope: the outer
	// array, the version and the header of the element array.
	FrameOverhead = 8
	// RequestOverhead bounds a request's bytes beyond its arguments: the
	// array header, the id and the operation.
	RequestOverhead = 16
	// MaxDepth bounds the nesting of a frame either side accepts: frame,
	// elements, element, result or argument, items, item, and room for
	// fields a later version may add.
	MaxDepth = 8
)

// argKind is the kind of a request argument.
type argKind uint8

const (
	argKey         argKind = iota + 1 // str: a key, workflow id or node id
	argPrefix                         // nil or str
	argValue                          // bin: JSON
	argFields                         // nil or bin: a JSON object
	argConsistency                    // nil or 0 or 1
	argReqID                          // nil or [client str, seq uint]
	argCond                           // nil, a revision (0: absent) or true (exists)
	argOps                            // [[1, key, value, cond?] | [2, key, cond?], ...]
	argLease                          // a lease id (a positive int); nil or 0: none where optional
	argTTL                            // a time to live in ms (a positive int); nil or 0: none where optional
	argWait                           // a wait in ms (a non-negative int); nil or 0: try once
	argToken                          // a lock's fencing token (a positive int)
	argFence                          // nil or [lock str, token uint]: fences a write
	argTask                           // str: a task's id
	argLimit                          // nil or a page's most items (a non-negative int; nil or 0: the default)
	argStart                          // nil or str: the key a list page starts at
	argRevision                       // nil or a revision to read at (a non-negative int; nil or 0: now)
	argListMode                       // nil or 0 (items), 1 (keys only) or 2 (count only)
	argWatch                          // uint: a watch's id (the id of the request that started it)
)

// trimmable reports whether an optional argument of kind a at the end of
// a request is left out when unset (AppendArgs), so that a request that
// does not use an argument added later is the same on the wire as before
// it was added: put without a lease or a time to live.
// A fence, the last argument of every write, is trimmed the same way.
func (a argKind) trimmable() bool { return a == argLease || a == argTTL || a == argFence }

// resultKind is the shape of an operation's successful result.
type resultKind uint8

const (
	resultRevision resultKind = iota + 1 // int: the write's revision
	resultItem                           // [key, value bin, revision, createRevision, version]
	resultList                           // [revision, [item, ...]]
	resultStatus                         // bin: the JSON of GET /v1/status
	resultLease                          // [id, ttlMs, remainingMs?, [key, ...]?]
	resultLeases                         // [lease, ...]
	resultLock                           // [name, token, lease, value bin?, waiters]
	resultNone                           // nil
	resultJSON                           // nil or bin: the JSON of the HTTP route's answer (nil: 204)
	resultPage                           // [revision, [item, ...], more, next?, count]
)

// schema is an operation's contract: its arguments (after id and op), how
// many of them are required, whether it writes, whether it needs a
// read-write token though it does not write (renews), and its result.
type schema struct {
	name     string
	args     []argKind
	required int
	write    bool
	renews   bool
	result   resultKind
}

var schemas = [opLast + 1]schema{
	OpPut:             {name: "put", args: []argKind{argKey, argValue, argReqID, argCond, argLease, argTTL, argFence}, required: 2, write: true, result: resultRevision},
	OpGet:             {name: "get", args: []argKind{argKey, argConsistency}, required: 1, result: resultItem},
	OpDelete:          {name: "delete", args: []argKind{argKey, argReqID, argCond, argFence}, required: 1, write: true, result: resultRevision},
	OpList:            {name: "list", args: []argKind{argPrefix, argConsistency}, result: resultList},
	OpStatus:          {name: "status", result: resultStatus},
	OpTxn:             {name: "batch", args: []argKind{argOps, argReqID, argFence}, required: 1, write: true, result: resultRevision},
	OpWorkflowStart:   {name: "start workflow", args: []argKind{argKey, argFields, argReqID, argFence}, required: 1, write: true, result: resultRevision},
	OpWorkflowStop:    {name: "stop workflow", args: []argKind{argKey, argFields, argReqID, argFence}, required: 1, write: true, result: resultRevision},
	OpWorkflowUpdate:  {name: "update workflow", args: []argKind{argKey, argFields, argReqID, argFence}, required: 2, write: true, result: resultRevision},
	OpWorkflowGet:     {name: "get workflow", args: []argKind{argKey, argConsistency}, required: 1, result: resultItem},
	OpWorkflowList:    {name: "list workflows", args: []argKind{argConsistency}, result: resultList},
	OpNodeRegister:    {name: "register node", args: []argKind{argKey, argFields, argReqID, argFence, argLease, argTTL}, required: 1, write: true, result: resultRevision},
	OpNodeDeregister:  {name: "deregister node", args: []argKind{argKey, argReqID, argFence}, required: 1, write: true, result: resultRevision},
	OpNodeList:        {name: "list nodes", args: []argKind{argConsistency}, result: resultList},
	OpLeaseGrant:      {name: "grant lease", args: []argKind{argTTL, argLease, argReqID, argFence}, required: 1, write: true, result: resultLease},
	OpLeaseRevoke:     {name: "revoke lease", args: []argKind{argLease, argReqID, argFence}, required: 1, write: true, result: resultRevision},
	OpLeaseKeepAlive:  {name: "keep lease alive", args: []argKind{argLease}, required: 1, renews: true, result: resultLease},
	OpLeaseTTL:        {name: "lease time to live", args: []argKind{argLease}, required: 1, result: resultLease},
	OpLeaseList:       {name: "list leases", args: []argKind{argConsistency}, result: resultLeases},
	OpLockAcquire:     {name: "acquire lock", args: []argKind{argKey, argLease, argWait, argReqID, argFence}, required: 2, write: true, result: resultLock},
	OpLockRelease:     {name: "release lock", args: []argKind{argKey, argToken, argReqID, argFence}, required: 2, write: true, result: resultNone},
	OpLockGet:         {name: "get lock", args: []argKind{argKey, argConsistency}, required: 1, result: resultLock},
	OpCampaign:        {name: "campaign", args: []argKind{argKey, argLease, argFields, argWait, argReqID, argFence}, required: 2, write: true, result: resultLock},
	OpProclaim:        {name: "proclaim", args: []argKind{argKey, argToken, argValue, argReqID, argFence}, required: 3, write: true, result: resultNone},
	OpResign:          {name: "resign", args: []argKind{argKey, argToken, argReqID, argFence}, required: 2, write: true, result: resultNone},
	OpLeader:          {name: "election leader", args: []argKind{argKey, argConsistency}, required: 1, result: resultLock},
	OpQueueEnqueue:    {name: "enqueue task", args: []argKind{argKey, argValue, argReqID, argFence}, required: 2, write: true, result: resultJSON},
	OpQueueClaim:      {name: "claim task", args: []argKind{argKey, argValue}, required: 2, write: true, result: resultJSON},
	OpTaskHeartbeat:   {name: "heartbeat task", args: []argKind{argKey, argTask, argValue}, required: 3, renews: true, result: resultJSON},
	OpTaskComplete:    {name: "complete task", args: []argKind{argKey, argTask, argValue, argReqID, argFence}, required: 3, write: true, result: resultNone},
	OpTaskFail:        {name: "fail task", args: []argKind{argKey, argTask, argValue, argReqID, argFence}, required: 3, write: true, result: resultNone},
	OpTaskRequeue:     {name: "requeue task", args: []argKind{argKey, argTask, argReqID, argFence}, required: 2, write: true, result: resultNone},
	OpTaskGet:         {name: "get task", args: []argKind{argKey, argTask, argConsistency}, required: 2, result: resultJSON},
	OpQueueStats:      {name: "queue stats", args: []argKind{argKey, argConsistency}, required: 1, result: resultJSON},
	OpTaskList:        {name: "list tasks", args: []argKind{argKey, argFields, argConsistency}, required: 1, result: resultJSON},
	OpSchedulePut:     {name: "put schedule", args: []argKind{argKey, argValue, argReqID, argFence}, required: 2, write: true, result: resultJSON},
	OpScheduleGet:     {name: "get schedule", args: []argKind{argKey, argConsistency}, required: 1, result: resultJSON},
	OpScheduleList:    {name: "list schedules", args: []argKind{argConsistency}, result: resultJSON},
	OpScheduleDelete:  {name: "delete schedule", args: []argKind{argKey, argReqID, argFence}, required: 1, write: true, result: resultJSON},
	OpWorkflowHistory: {name: "workflow history", args: []argKind{argKey, argRevision, argLimit, argConsistency}, required: 1, result: resultJSON},
	OpWatch:           {name: "watch", args: []argKind{argPrefix, argRevision}, result: resultRevision},
	OpWatchCancel:     {name: "cancel watch", args: []argKind{argWatch}, required: 1, result: resultNone},
	OpListPage:        {name: "list page", args: []argKind{argPrefix, argConsistency, argLimit, argStart, argRevision, argListMode}, result: resultPage},
}

// Known reports whether this version of the protocol has op (the numbers
// between the groups of operations are not operations).
func (op Op) Known() bool { return op >= OpPut && op <= opLast && schemas[op].name != "" }

// IsWrite reports whether op changes the state: such requests carry a
// request id, and a timeout or unavailable answer leaves their outcome
// unknown.
func (op Op) IsWrite() bool { return op.Known() && schemas[op].write }

// NeedsWriteAccess reports whether op needs a read-write token: every
// write, and a lease's keepalive, which changes the leader's lease clock
// though not the replicated state (over HTTP it is a POST).
func (op Op) NeedsWriteAccess() bool {
	return op.Known() && (schemas[op].write || schemas[op].renews)
}

// KeyOnly reports whether only a key (not a value) can make a request of
// op large: get, delete, list, get workflow and deregister node.
func (op Op) KeyOnly() bool {
	switch op {
	case OpGet, OpDelete, OpList, OpListPage, OpWorkflowGet, OpNodeDeregister,
		OpLockAcquire, OpLockRelease, OpLockGet, OpResign, OpLeader:
		return true
	}
	return false
}

// String names op for people ("put", "list workflows"), or "op N" for an
// operation this version does not know.
func (op Op) String() string {
	if op.Known() {
		return schemas[op].name
	}
	return fmt.Sprintf("op %d", uint64(op))
}
