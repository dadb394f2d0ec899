package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// LeaseID names a lease. It is a positive 63-bit number (the range of
// etcd's lease ids), written in JSON, URLs and the CLI as lowercase
// hexadecimal in a string, as etcdctl prints lease ids.
type LeaseID int64

// String returns the id in hexadecimal, "" for the zero id (no lease).
func (id LeaseID) String() string {
	if id == 0 {
		return ""
	}
	return strconv.FormatInt(int64(id), 16)
}

// ErrInvalidLeaseID means a lease id is not 1 to 16 hexadecimal digits of
// a positive 63-bit number.
var ErrInvalidLeaseID = errors.New("invalid lease id")

// ParseLeaseID reads an id written by LeaseID.String.
func ParseLeaseID(s string) (LeaseID, error) {
	v, err := strconv.ParseInt(s, 16, 64)
	if err != nil || v <= 0 || len(s) > 16 {
		return 0, fmt.Errorf("%w: %q (want up to 16 hexadecimal digits, not zero)", ErrInvalidLeaseID, s)
	}
	return LeaseID(v), nil
}

// MarshalJSON writes the id as a hexadecimal string.
func (id LeaseID) MarshalJSON() ([]byte, error) {
	return json.Marshal(id.String())
}

// UnmarshalJSON reads a hexadecimal string.
func (id *LeaseID) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%w: not a string", ErrInvalidLeaseID)
	}
	v, err := ParseLeaseID(s)
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// Lease limits.
const (
	// MinLeaseTTLMs and MaxLeaseTTLMs bound the time to live a request
	// may ask for.
	MinLeaseTTLMs = 1
	MaxLeaseTTLMs = 30 * 24 * 3600 * 1000 // 30 days
	// LeaseTTLFloorMs is the least time to live a lease is granted: a
	// shorter one asked for is raised to it, and the answer says so (as
	// etcd raises a TTL below its minimum). A leader's lease clock stops
	// counting when its storage stalls for 500 ms; a lease that lives at
	// least twice that cannot expire in a stall too short to be noticed.
	LeaseTTLFloorMs = 1000
)

// Lease describes a lease (GET /v1/leases/{id}, and the answers to a
// grant and a keepalive).
type Lease struct {
	ID LeaseID `json:"id"`
	// TTLMs is the time to live it was granted with, in milliseconds.
	TTLMs int64 `json:"ttlMs"`
	// RemainingMs is how long it has left by the leader's clock, if the
	// leader knows (absent in a grant's answer: the full TTL).
	RemainingMs *int64 `json:"remainingMs,omitempty"`
	// Keys are the keys attached to it, sorted (only in GET's answer).
	Keys []string `json:"keys,omitempty"`
}

// Error codes of the lease routes.
const (
	// CodeLeaseNotFound (404) means no lease has this id: it was never
	// granted, or it expired or was revoked.
	CodeLeaseNotFound = "lease_not_found"
	// CodeTooManyLeases (422) means the state holds its limit of leases,
	// or the lease its limit of keys. Nothing was changed.
	CodeTooManyLeases = "too_many_leases"
	// CodeLeaseExists (409) means a grant named an id already granted.
	CodeLeaseExists = "lease_exists"
	// CodeInvalidLease (400) means a lease id that is not 1 to 16
	// hexadecimal digits, or a time to live out of range.
	CodeInvalidLease = "invalid_lease"
)

// Sentinel errors of leases.
var (
	// ErrLeaseNotFound means no lease has this id: it was never granted,
	// or it expired or was revoked.
	ErrLeaseNotFound = errors.New("lease not found")
	// ErrTooManyLeases means the state holds its limit of leases, or a
	// lease its limit of keys.
	ErrTooManyLeases = errors.New("too many leases")
	// ErrInvalidTTL means a time to live outside MinLeaseTTLMs to
	// MaxLeaseTTLMs.
	ErrInvalidTTL = errors.New("invalid time to live")
	// ErrLeaseExists means a grant named a lease id already granted.
	ErrLeaseExists = errors.New("lease already exists")
)

// Lock describes a lock (GET /v1/locks/{name}, and the answer to an
// acquire).
type Lock struct {
	Name string `json:"name"`
	// Token is the holder's fencing token: strictly increasing with each
	// grant of the lock (the raft index of the entry that granted it).
	Token int64 `json:"token"`
	// Lease is the holder's lease: its expiry or revocation releases the
	// lock.
	Lease LeaseID `json:"lease"`
	// Value is the holder's value: an election leader's proclamation
	// (absent for a plain lock).
	Value json.RawMessage `json:"value,omitempty"`
	// Waiters is how many leases wait for the lock (GET only).
	Waiters int `json:"waiters"`
}

// Error codes of the lock routes and fenced writes.
const (
	// CodeLocked (409) means the lock is held by another lease: a
	// try-once acquire, or a wait that ran out (the waiter left the queue).
	CodeLocked = "locked"
	// CodeNotHolder (409) means a release named a lock this token does not
	// hold (any more).
	CodeNotHolder = "not_holder"
	// CodeFenced (412) means a fenced write (X-Fence) named a lock that is
	// not held with that token when the write was applied. Nothing was
	// changed.
	CodeFenced = "fenced"
	// CodeTooManyLocks (422) means the state holds its limit of locks, or
	// the lock its limit of waiters.
	CodeTooManyLocks = "too_many_locks"
	// CodeLockNotFound (404) means nobody holds or waits for the lock.
	CodeLockNotFound = "lock_not_found"
)

// Sentinel errors of locks.
var (
	// ErrLocked means a lock is held by another lease.
	ErrLocked = errors.New("locked")
	// ErrNotHolder means a release named a lock this lease and token do
	// not hold.
	ErrNotHolder = errors.New("not the lock holder")
	// ErrFenced means a fenced write's lock is not held with its token.
	ErrFenced = errors.New("fenced")
	// ErrTooManyLocks means the state holds its limit of locks, or the
	// lock its limit of waiters.
	ErrTooManyLocks = errors.New("too many locks")
	// ErrLockNotFound means nobody holds or waits for a lock.
	ErrLockNotFound = errors.New("lock not found")
)

// Fence is a fence on a write (the X-Fence header, "<lock>:<token>"): the
// write is applied only if the lock is held with that token then.
type Fence struct {
	Lock  string
	Token int64
}
