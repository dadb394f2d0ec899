package api

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// The /v1/ws decoder is three files: this one, the reader and its
// primitives; decode_request.go, the requests a server reads
// (DecodeRequests); decode_response.go, the responses a client reads
// (FrameReader).

// Request is one /v1/ws request: what AppendArgs encodes and
// DecodeRequests returns.
type Request struct {
	// ID is chosen by the client; the response carries it back.
	ID uint64
	Op Op
	// Key is the key, the list prefix, a workflow or node id, or a
	// queue's name.
	Key string
	// Task is a task's id (queue operations).
	Task string
	// Value is a value, or a JSON object of fields (nil: none).
	Value       []byte
	Consistency Consistency
	// ReqID identifies a write for exactly-once application; its zero
	// value is none.
	ReqID RequestID
	Cond  Cond
	// Ops are the operations of a transaction.
	Ops []TxnOp
	// Lease is a lease id: the lease a lease operation names, the id a
	// grant asks for, or the lease a put attaches its key to (0: none).
	Lease LeaseID
	// TTLMs is a time to live in milliseconds: a grant's, or a put's
	// that gives its key a lease of its own (0: none).
	TTLMs int64
	// WaitMs is how long an acquire or a campaign may wait, in
	// milliseconds (0: try once).
	WaitMs int64
	// Token is the fencing token a release, proclaim or resign names.
	Token int64
	// Fence fences a write: it is applied only if lock Fence.Lock is held
	// with Fence.Token then (the zero value: no fence).
	Fence Fence
	// Limit is a list page's most items (0: the default); Start the key a
	// page starts at (its prefix when empty); Revision the revision the
	// page is read at (0: now); Mode what the page returns.
	Limit    int64
	Start    string
	Revision int64
	Mode     ListMode
	// Watch is the watch a cancel names: the id of the request that
	// started it.
	Watch uint64
	// Bad, when set by DecodeRequests, says why the request is malformed;
	// it is answered bad_request.
	Bad string
}

// Response is one /v1/ws response: an error (Code set) or a result, of
// which the fields the operation's schema names are set.
type Response struct {
	// ID is the request's.
	ID uint64
	// Code and Message are an error answer's.
	Code    string
	Message string
	// Revision is a write's revision, or the revision a list was read at.
	Revision int64
	// Item is the answer to a get.
	Item Item
	// Items are the answer to a list.
	Items []Item
	// Page is the answer to a list page (Revision and Items are not
	// used by it).
	Page ListPage
	// Status is the answer to a status request: the JSON of GET
	// /v1/status.
	Status []byte
	// Lease is the answer to a grant, a keepalive or a time-to-live
	// request.
	Lease Lease
	// Leases are the answer to a lease list.
	Leases []Lease
	// Lock is the answer to an acquire, a lock get, a campaign or a
	// leader request.
	Lock Lock
	// JSON is the answer to a queue operation: the JSON body the HTTP
	// route answers (nil for a claim that found no task).
	JSON []byte
	// OldestRevision, in a compacted error (a watch's start), is the
	// oldest revision a watch can start from; 0 otherwise.
	OldestRevision int64
}

// ErrField is wrapped by errors about an element of the wrong type or
// value; the element has been consumed, so decoding can go on with the
// next one.
var ErrField = errors.New("bad field")

// reader decodes a frame that msgpackcheck.Validate accepted: every
// declared length fits in the input, so the decoder's preallocation is
// bounded by the frame's size. Each typed read peeks first and skips a
// value of the wrong type, so the stream stays aligned after an error.
type reader struct {
	src bytes.Reader
	d   *msgpack.Decoder
}

func (r *reader) reset(b []byte) {
	r.d = msgpack.GetDecoder()
	r.src.Reset(b)
	r.d.Reset(&r.src)
}

func (r *reader) release() {
	if r.d != nil {
		msgpack.PutDecoder(r.d)
		r.d = nil
	}
}

func isArray(c byte) bool {
	return msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32
}

func isInt(c byte) bool {
	return msgpcode.IsFixedNum(c) || (c >= msgpcode.Uint8 && c <= msgpcode.Int64)
}

func isBytes(c byte) bool { return msgpcode.IsString(c) || msgpcode.IsBin(c) }

// skipWrong skips the next value and returns an error naming want.
func (r *reader) skipWrong(c byte, want string) error {
	if err := r.d.Skip(); err != nil {
		return err
	}
	return fmt.Errorf("%w: type %#x, want %s", ErrField, c, want)
}

func (r *reader) arrayLen() (int, error) {
	c, err := r.d.PeekCode()
	if err != nil {
		return 0, err
	}
	if !isArray(c) {
		return 0, r.skipWrong(c, "an array")
	}
	return r.d.DecodeArrayLen()
}

// arrayAtLeast reads an array header of at least min elements.
func (r *reader) arrayAtLeast(min int) (int, error) {
	n, err := r.arrayLen()
	if err == nil && n < min {
		err = fmt.Errorf("array of %d elements, want at least %d", n, min)
	}
	return n, err
}

// uint reads a non-negative integer in any encoding.
func (r *reader) uint() (uint64, error) {
	c, err := r.d.PeekCode()
	if err != nil {
		return 0, err
	}
	if !isInt(c) {
		return 0, r.skipWrong(c, "an integer")
	}
	if c <= msgpcode.PosFixedNumHigh || (c >= msgpcode.Uint8 && c <= msgpcode.Uint64) {
		return r.d.DecodeUint64()
	}
	v, err := r.d.DecodeInt64()
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, fmt.Errorf("%w: %d is negative", ErrField, v)
	}
	return uint64(v), nil
}

func (r *reader) int() (int64, error) {
	c, err := r.d.PeekCode()
	if err != nil {
		return 0, err
	}
	if !isInt(c) {
		return 0, r.skipWrong(c, "an integer")
	}
	return r.d.DecodeInt64()
}

// str reads a str (or bin) as a string.
func (r *reader) str() (string, error) {
	c, err := r.d.PeekCode()
	if err != nil {
		return "", err
	}
	if !isBytes(c) {
		return "", r.skipWrong(c, "a string")
	}
	return r.d.DecodeString()
}

// bin reads a bin (or str) as bytes; never nil.
func (r *reader) bin() ([]byte, error) {
	c, err := r.d.PeekCode()
	if err != nil {
		return nil, err
	}
	if !isBytes(c) {
		return nil, r.skipWrong(c, "bin")
	}
	b, err := r.d.DecodeBytes()
	if b == nil && err == nil {
		b = []byte{}
	}
	return b, err
}

// bool reads true or false.
func (r *reader) bool() (bool, error) {
	c, err := r.d.PeekCode()
	if err != nil {
		return false, err
	}
	if c != msgpcode.True && c != msgpcode.False {
		return false, r.skipWrong(c, "a boolean")
	}
	return r.d.DecodeBool()
}

// isNil consumes a nil if one is next.
func (r *reader) isNil() (bool, error) {
	c, err := r.d.PeekCode()
	if err != nil || c != msgpcode.Nil {
		return false, err
	}
	return true, r.d.Skip()
}

// skip discards n values.
func (r *reader) skip(n int) error {
	for range n {
		if err := r.d.Skip(); err != nil {
			return err
		}
	}
	return nil
}

// frameHeader reads [version, [ and returns the number of elements and of
// envelope elements after them (from a newer compatible version).
func (r *reader) frameHeader() (count, extra int, err error) {
	n, err := r.arrayLen()
	if err != nil {
		return 0, 0, fmt.Errorf("frame: %w", err)
	}
	if n < 2 {
		return 0, 0, fmt.Errorf("frame has %d elements; want [version, [element, ...]]", n)
	}
	version, err := r.uint()
	if err != nil {
		return 0, 0, fmt.Errorf("frame version: %w", err)
	}
	if version != ProtocolVersion {
		return 0, 0, &VersionError{Version: version}
	}
	count, err = r.arrayLen()
	if err != nil {
		return 0, 0, fmt.Errorf("frame elements: %w", err)
	}
	return count, n - 2, nil
}

// VersionError is the error of a frame of a version this one does not
// speak.
type VersionError struct {
	// Version is the frame's.
	Version uint64
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("unsupported frame version %d; this side speaks %d", e.Version, ProtocolVersion)
}
