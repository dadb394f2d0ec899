package api

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/unrdf/consensus/internal/msgpackcheck"
)

// Request is one /v1/ws request: what AppendArgs encodes and
// DecodeRequests returns.
type Request struct {
	// ID is chosen by the client; the response carries it back.
	ID uint64
	Op Op
	// Key is the key, the list prefix, or a workflow or node id.
	Key string
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

// DecodeRequests decodes a request frame holding at most maxRequests
// requests. An error means the frame as a whole cannot be answered (it is
// not a frame of this version, or a request has no readable id); a
// request that has an id but is otherwise malformed is returned with Bad
// set. It never panics, and it allocates at most a small multiple of
// len(b).
func DecodeRequests(b []byte, maxRequests int) ([]Request, error) {
	if err := msgpackcheck.Validate(b, MaxDepth); err != nil {
		return nil, err
	}
	var r reader
	r.reset(b)
	defer r.release()
	count, extra, err := r.frameHeader()
	if err != nil {
		return nil, err
	}
	if count > maxRequests {
		return nil, fmt.Errorf("frame carries %d requests, more than the limit of %d", count, maxRequests)
	}
	reqs := make([]Request, count)
	for i := range reqs {
		if err := r.request(&reqs[i]); err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
	}
	if err := r.skip(extra); err != nil {
		return nil, err
	}
	return reqs, nil
}

// request decodes one request into req. It fails only when the request has
// no id to answer.
func (r *reader) request(req *Request) error {
	n, err := r.arrayLen()
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("empty; want [id, op, ...]")
	}
	if req.ID, err = r.uint(); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	bad := func(format string, args ...any) {
		if req.Bad == "" {
			req.Bad = fmt.Sprintf(format, args...)
		}
	}
	if n < 2 {
		bad("request has no operation")
		return nil
	}
	op, err := r.uint()
	req.Op = Op(op)
	if err != nil {
		if !errors.Is(err, ErrField) {
			return fmt.Errorf("operation: %w", err)
		}
		bad("operation: %v", err)
	} else if !req.Op.Known() {
		bad("unknown operation %d", op)
	}
	var s schema
	if req.Bad == "" {
		s = schemas[req.Op] // otherwise skip the arguments
	}
	for i := 2; i < n; i++ {
		var err error
		if i-2 < len(s.args) {
			err = r.arg(req, s.args[i-2])
		} else {
			// Arguments this version does not know (from a newer client), or
			// those of a request already known to be bad.
			err = r.d.Skip()
		}
		if err != nil {
			if !errors.Is(err, ErrField) {
				return fmt.Errorf("field %d: %w", i, err)
			}
			bad("field %d: %v", i, err)
		}
	}
	if req.Bad == "" && n-2 < s.required {
		bad("operation %d needs at least %d arguments, got %d (see docs/PROTOCOL.md)", op, s.required, n-2)
	}
	return nil
}

// arg decodes one argument of kind a into req.
func (r *reader) arg(req *Request, a argKind) error {
	var err error
	switch a {
	case argKey:
		req.Key, err = r.str()
	case argPrefix:
		var null bool
		if null, err = r.isNil(); err == nil && !null {
			req.Key, err = r.str()
		}
	case argValue:
		req.Value, err = r.bin()
	case argFields:
		var null bool
		if null, err = r.isNil(); err == nil && !null {
			req.Value, err = r.bin()
		}
	case argConsistency:
		req.Consistency, err = r.consistency()
	case argReqID:
		req.ReqID, err = r.reqID()
	case argCond:
		req.Cond, err = r.cond()
	case argOps:
		req.Ops, err = r.txnOps()
	case argLease:
		var v int64
		v, err = r.positiveOrNil("lease id")
		req.Lease = LeaseID(v)
	case argTTL:
		req.TTLMs, err = r.positiveOrNil("time to live")
	case argWait:
		req.WaitMs, err = r.positiveOrNil("wait")
	case argToken:
		req.Token, err = r.positiveOrNil("token")
	case argFence:
		req.Fence, err = r.fence()
	}
	return err
}

// fence reads nil or [lock, token, ...]: a fence names a lock.
func (r *reader) fence() (Fence, error) {
	var f Fence
	if null, err := r.isNil(); err != nil || null {
		return f, err
	}
	n, err := r.arrayLen()
	if err != nil {
		return f, err
	}
	if n < 2 {
		if err := r.skip(n); err != nil {
			return f, err
		}
		return f, fmt.Errorf("%w: a fence needs [lock, token]", ErrField)
	}
	var e1, e2 error
	f.Lock, e1 = r.str()
	f.Token, e2 = r.positiveOrNil("fence token")
	if err := r.skip(n - 2); err != nil {
		return f, err
	}
	if err := errors.Join(e1, e2); err != nil {
		return Fence{}, err
	}
	if f.Lock == "" {
		return Fence{}, fmt.Errorf("%w: a fence names a lock", ErrField)
	}
	return f, nil
}

// positiveOrNil reads nil (0) or a non-negative integer that fits an
// int64; what names it in errors. Whether 0 is allowed is the server's to
// say.
func (r *reader) positiveOrNil(what string) (int64, error) {
	if null, err := r.isNil(); err != nil || null {
		return 0, err
	}
	v, err := r.uint()
	if err != nil {
		return 0, err
	}
	if v > 1<<63-1 {
		return 0, fmt.Errorf("%w: %s %d out of range", ErrField, what, v)
	}
	return int64(v), nil
}

func (r *reader) consistency() (Consistency, error) {
	if null, err := r.isNil(); err != nil || null {
		return Linearizable, err
	}
	v, err := r.uint()
	if err != nil {
		return 0, err
	}
	switch v {
	case 0:
		return Linearizable, nil
	case 1:
		return Local, nil
	}
	return 0, fmt.Errorf("%w: consistency %d, want 0 (linearizable) or 1 (local)", ErrField, v)
}

// reqID reads nil or [client, seq, ...].
func (r *reader) reqID() (RequestID, error) {
	var id RequestID
	if null, err := r.isNil(); err != nil || null {
		return id, err
	}
	n, err := r.arrayLen()
	if err != nil {
		return id, err
	}
	if n < 2 {
		if err := r.skip(n); err != nil {
			return id, err
		}
		return id, fmt.Errorf("%w: request id needs [client, seq]", ErrField)
	}
	var e1, e2 error
	id.Client, e1 = r.str()
	id.Seq, e2 = r.uint()
	if err := r.skip(n - 2); err != nil {
		return id, err
	}
	if err := errors.Join(e1, e2); err != nil {
		return id, err
	}
	if id.Client == "" {
		return id, fmt.Errorf("%w: empty client id", ErrField)
	}
	return id, nil
}

// cond reads nil, a revision (0: the key must be absent) or true (the key
// must exist, at any revision).
func (r *reader) cond() (Cond, error) {
	if null, err := r.isNil(); err != nil || null {
		return Cond{}, err
	}
	switch c, err := r.d.PeekCode(); {
	case err != nil:
		return Cond{}, err
	case c == msgpcode.True:
		return IfExists(), r.d.Skip()
	case c == msgpcode.False:
		if err := r.d.Skip(); err != nil {
			return Cond{}, err
		}
		return Cond{}, fmt.Errorf("%w: cond false, want nil, a revision or true", ErrField)
	}
	rev, err := r.uint()
	if err != nil {
		return Cond{}, err
	}
	if rev > 1<<62 {
		return Cond{}, fmt.Errorf("%w: revision %d out of range", ErrField, rev)
	}
	return IfRevision(int64(rev)), nil
}

// txnOps reads [[1, key, value, cond?] | [2, key, cond?], ...]. A
// malformed operation is an ErrField after the whole array is consumed.
func (r *reader) txnOps() ([]TxnOp, error) {
	n, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	ops := make([]TxnOp, 0, min(n, DefaultMaxBatchOps))
	var bad error
	for i := range n {
		o, err := r.txnOp()
		if err != nil {
			if !errors.Is(err, ErrField) {
				return nil, err
			}
			if bad == nil {
				bad = fmt.Errorf("%w: operation %d: %w", ErrField, i, err)
			}
			continue
		}
		// One beyond the limit is kept, so that the server can say the
		// transaction is too long.
		if len(ops) < DefaultMaxBatchOps+1 {
			ops = append(ops, o)
		}
	}
	return ops, bad
}

func (r *reader) txnOp() (TxnOp, error) {
	var o TxnOp
	n, err := r.arrayLen()
	if err != nil {
		return o, err
	}
	read := 0
	next := func(f func() error) error {
		if read >= n {
			return fmt.Errorf("%w: too few fields", ErrField)
		}
		read++
		return f()
	}
	var typ uint64
	err = next(func() (err error) { typ, err = r.uint(); return })
	if err == nil && typ != uint64(TxnPut) && typ != uint64(TxnDelete) {
		err = fmt.Errorf("%w: type %d, want 1 (put) or 2 (delete)", ErrField, typ)
	}
	o.Type = TxnOpType(typ)
	if err == nil {
		err = next(func() (err error) { o.Key, err = r.str(); return })
	}
	if err == nil && o.Type == TxnPut {
		err = next(func() (err error) { o.Value, err = r.bin(); return })
	}
	if err == nil && read < n {
		err = next(func() (err error) { o.Cond, err = r.cond(); return })
	}
	if skipErr := r.skip(n - read); skipErr != nil {
		return o, skipErr
	}
	return o, err
}

// FrameReader decodes a response frame element by element, so that the
// caller can look up each request by its id before decoding the result
// (whose shape depends on the request's operation).
type FrameReader struct {
	r reader
}

// NewFrameReader checks that b is well-formed MessagePack within MaxDepth
// and returns a reader of it. Release it when done.
func NewFrameReader(b []byte) (*FrameReader, error) {
	if err := msgpackcheck.Validate(b, MaxDepth); err != nil {
		return nil, err
	}
	fr := &FrameReader{}
	fr.r.reset(b)
	return fr, nil
}

// Release returns the reader's decoder to its pool.
func (fr *FrameReader) Release() { fr.r.release() }

// Header reads the frame's [version, [ and returns the number of responses
// and of envelope elements after them (pass extra to Skip at the end).
func (fr *FrameReader) Header() (count, extra int, err error) { return fr.r.frameHeader() }

// ResponseHeader reads a response's [id, kind, and returns them with the
// number of elements after the payload (pass extra to Skip after the
// payload).
func (fr *FrameReader) ResponseHeader() (id, kind uint64, extra int, err error) {
	n, err := fr.r.arrayAtLeast(3)
	if err != nil {
		return 0, 0, 0, err
	}
	if id, err = fr.r.uint(); err != nil {
		return 0, 0, 0, fmt.Errorf("id: %w", err)
	}
	if kind, err = fr.r.uint(); err != nil {
		return 0, 0, 0, fmt.Errorf("kind: %w", err)
	}
	return id, kind, n - 3, nil
}

// Payload reads the payload of a response of kind to a request of op:
// the error's code and message, or the result op's schema names.
func (fr *FrameReader) Payload(op Op, kind uint64) (Response, error) {
	var resp Response
	r := &fr.r
	switch kind {
	case ResultError:
		n, err := r.arrayAtLeast(2)
		if err != nil {
			return resp, err
		}
		if resp.Code, err = r.str(); err != nil {
			return resp, err
		}
		if resp.Message, err = r.str(); err != nil {
			return resp, err
		}
		return resp, r.skip(n - 2)
	case ResultOK:
	default:
		return resp, fmt.Errorf("unknown response kind %d", kind)
	}
	if !op.Known() {
		return resp, fmt.Errorf("answer to unknown operation %d", uint64(op))
	}
	var err error
	switch schemas[op].result {
	case resultRevision:
		resp.Revision, err = r.int()
	case resultItem:
		resp.Item, err = r.item()
	case resultList:
		resp.Items, resp.Revision, err = r.list()
	case resultStatus:
		resp.Status, err = r.bin()
	case resultLease:
		resp.Lease, err = r.lease()
	case resultLeases:
		resp.Leases, err = r.leases()
	case resultLock:
		resp.Lock, err = r.lock()
	case resultNone:
		err = r.d.Skip()
	}
	return resp, err
}

// lock reads [name, token, lease, value?, waiters, ...].
func (r *reader) lock() (Lock, error) {
	var l Lock
	n, err := r.arrayAtLeast(5)
	if err != nil {
		return l, err
	}
	if l.Name, err = r.str(); err != nil {
		return l, err
	}
	if l.Token, err = r.int(); err != nil {
		return l, err
	}
	lease, err := r.int()
	if err != nil {
		return l, err
	}
	if lease < 0 {
		return l, fmt.Errorf("%w: lease id %d is negative", ErrField, lease)
	}
	l.Lease = LeaseID(lease)
	null, err := r.isNil()
	if err != nil {
		return l, err
	}
	if !null {
		if l.Value, err = r.bin(); err != nil {
			return l, err
		}
	}
	waiters, err := r.int()
	if err != nil {
		return l, err
	}
	if waiters < 0 || waiters > 1<<31 {
		return l, fmt.Errorf("%w: %d waiters", ErrField, waiters)
	}
	l.Waiters = int(waiters)
	return l, r.skip(n - 5)
}

// lease reads [id, ttlMs, remainingMs?, [key, ...]?, ...].
func (r *reader) lease() (Lease, error) {
	var l Lease
	n, err := r.arrayAtLeast(2)
	if err != nil {
		return l, err
	}
	id, err := r.int()
	if err != nil {
		return l, err
	}
	if id < 0 {
		return l, fmt.Errorf("%w: lease id %d is negative", ErrField, id)
	}
	l.ID = LeaseID(id)
	if l.TTLMs, err = r.int(); err != nil {
		return l, err
	}
	if n >= 3 {
		null, err := r.isNil()
		if err != nil {
			return l, err
		}
		if !null {
			ms, err := r.int()
			if err != nil {
				return l, err
			}
			l.RemainingMs = &ms
		}
	}
	if n >= 4 {
		null, err := r.isNil()
		if err != nil {
			return l, err
		}
		if !null {
			count, err := r.arrayLen()
			if err != nil {
				return l, err
			}
			if count > 0 {
				l.Keys = make([]string, count)
			}
			for i := range l.Keys {
				if l.Keys[i], err = r.str(); err != nil {
					return l, fmt.Errorf("key %d: %w", i, err)
				}
			}
		}
	}
	return l, r.skip(n - min(n, 4))
}

// leases reads [lease, ...].
func (r *reader) leases() ([]Lease, error) {
	count, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	var ls []Lease
	if count > 0 {
		ls = make([]Lease, count)
	}
	for i := range ls {
		if ls[i], err = r.lease(); err != nil {
			return nil, fmt.Errorf("lease %d: %w", i, err)
		}
	}
	return ls, nil
}

// Skip discards n values.
func (fr *FrameReader) Skip(n int) error { return fr.r.skip(n) }

// item reads [key, value, revision, createRevision, version, lease, ...]
// (lease optional).
func (r *reader) item() (Item, error) {
	var it Item
	n, err := r.arrayAtLeast(5)
	if err != nil {
		return it, err
	}
	if it.Key, err = r.str(); err != nil {
		return it, err
	}
	if it.Value, err = r.bin(); err != nil {
		return it, err
	}
	if it.Revision, err = r.int(); err != nil {
		return it, err
	}
	if it.CreateRevision, err = r.int(); err != nil {
		return it, err
	}
	if it.Version, err = r.int(); err != nil {
		return it, err
	}
	if n < 6 {
		return it, nil
	}
	lease, err := r.int()
	if err != nil {
		return it, err
	}
	if lease < 0 {
		return it, fmt.Errorf("%w: lease id %d is negative", ErrField, lease)
	}
	it.Lease = LeaseID(lease)
	return it, r.skip(n - 6)
}

// list reads [revision, [item, ...], ...].
func (r *reader) list() ([]Item, int64, error) {
	n, err := r.arrayAtLeast(2)
	if err != nil {
		return nil, 0, err
	}
	rev, err := r.int()
	if err != nil {
		return nil, 0, err
	}
	count, err := r.arrayLen()
	if err != nil {
		return nil, 0, err
	}
	items := make([]Item, count)
	for i := range items {
		if items[i], err = r.item(); err != nil {
			return nil, 0, fmt.Errorf("item %d: %w", i, err)
		}
	}
	return items, rev, r.skip(n - 2)
}
