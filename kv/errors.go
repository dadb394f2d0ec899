package kv

import (
	"errors"
	"fmt"

	"github.com/unrdf/consensus/api"
)

// Sentinel errors of the state machine beyond those of item.go, checked
// with errors.Is.
var (
	// ErrConflict means a precondition on a key's revision failed (the
	// key changed, exists when it must not, or is missing when a revision
	// was required). Nothing was changed.
	ErrConflict = api.ErrConflict
	// ErrStateFull means the write would create a key beyond the state's
	// key limit (WithMaxKeys). Nothing was changed; existing keys can still
	// be updated or deleted.
	ErrStateFull = api.ErrStateFull
	// ErrInvalidBatch means a batch is empty, too long, names a key twice,
	// or holds an operation other than put and delete.
	ErrInvalidBatch = errors.New("invalid batch")
	// ErrWorkflowNotFound means no workflow has this id.
	ErrWorkflowNotFound = api.ErrWorkflowNotFound
	// ErrInvalidTransition means the workflow cannot make this change from
	// its current status (stopping a stopped workflow, starting a running
	// one, updating one that is not running).
	ErrInvalidTransition = api.ErrInvalidTransition
	// ErrNodeNotFound means no application node is registered under this
	// id.
	ErrNodeNotFound = api.ErrNodeNotFound
	// ErrRequestExpired means a request carrying (client id, sequence) is
	// older than the session table remembers for that client: it was not
	// applied now, and whether an earlier copy was applied is unknown.
	ErrRequestExpired = api.ErrRequestExpired
	// ErrLeaseExists means a grant named a lease id already granted.
	ErrLeaseExists = api.ErrLeaseExists
)

// errKind numbers the sentinel an applied command failed with. Values are
// part of the snapshot format (the session table records results): never
// renumber them.
type errKind uint8

var kindErrors = [...]error{
	0:  nil,
	1:  ErrBadCommand,
	2:  ErrInvalidKey,
	3:  ErrInvalidValue,
	4:  ErrValueTooLarge,
	5:  ErrKeyNotFound,
	6:  ErrConflict,
	7:  ErrStateFull,
	8:  ErrInvalidBatch,
	9:  ErrWorkflowNotFound,
	10: ErrInvalidTransition,
	11: ErrNodeNotFound,
	12: ErrRequestExpired,
	13: ErrLeaseNotFound,
	14: ErrTooManyLeases,
	15: ErrInvalidTTL,
	16: ErrLeaseExists,
	17: ErrLocked,
	18: ErrNotHolder,
	19: ErrFenced,
	20: ErrTooManyLocks,
	21: ErrStaleEpoch,
	22: ErrTaskNotFound,
	23: ErrQueueFull,
	24: ErrTaskNotDead,
	25: ErrNoTask,
	26: ErrScheduleNotFound,
}

// applyError is every error Apply returns for a decoded command: a kind
// (so that the session table can record it and give the same answer to a
// retry) and the message.
type applyError struct {
	kind errKind
	msg  string
}

func (e *applyError) Error() string { return e.msg }
func (e *applyError) Unwrap() error { return kindErrors[e.kind] }

// fail returns an applyError wrapping sentinel, with "kv: " and the
// formatted text before it.
func fail(sentinel error, format string, args ...any) *applyError {
	kind := errKind(0)
	for i, e := range kindErrors {
		if e == sentinel {
			kind = errKind(i)
			break
		}
	}
	return &applyError{kind: kind, msg: "kv: " + fmt.Sprintf(format, args...) + ": " + sentinel.Error()}
}

// asApplyError classifies err for the session table.
func asApplyError(err error) *applyError {
	if err == nil {
		return nil
	}
	var ae *applyError
	if errors.As(err, &ae) {
		return ae
	}
	for i, e := range kindErrors {
		if e != nil && errors.Is(err, e) {
			return &applyError{kind: errKind(i), msg: err.Error()}
		}
	}
	return &applyError{kind: 1, msg: err.Error()}
}
