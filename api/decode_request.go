package api

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/unrdf/consensus/internal/msgpackcheck"
)

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
	case argTask:
		req.Task, err = r.str()
	case argLimit:
		req.Limit, err = r.positiveOrNil("limit")
	case argStart:
		var null bool
		if null, err = r.isNil(); err == nil && !null {
			req.Start, err = r.str()
		}
	case argRevision:
		req.Revision, err = r.positiveOrNil("revision")
	case argListMode:
		var v int64
		v, err = r.positiveOrNil("list mode")
		if err == nil && v > int64(ListCountOnly) {
			err = fmt.Errorf("%w: list mode %d, want 0 (items), 1 (keys only) or 2 (count only)", ErrField, v)
		}
		req.Mode = ListMode(v)
	case argWatch:
		req.Watch, err = r.uint()
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
