package api

import (
	"fmt"

	"github.com/unrdf/consensus/internal/msgpackcheck"
)

// FrameReader decodes a response frame element by element, so that the
// caller can look up each request by its id before decoding the result
// (whose shape depends on the request's operation).
type FrameReader struct {
	r reader
	b []byte // the frame
}

// NewFrameReader checks that b is well-formed MessagePack within MaxDepth
// and returns a reader of it. Release it when done.
func NewFrameReader(b []byte) (*FrameReader, error) {
	if err := msgpackcheck.Validate(b, MaxDepth); err != nil {
		return nil, err
	}
	fr := &FrameReader{b: b}
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
		if n < 3 {
			return resp, nil
		}
		if resp.OldestRevision, err = r.int(); err != nil {
			return resp, err
		}
		if resp.OldestRevision < 0 {
			return resp, fmt.Errorf("%w: oldest revision %d is negative", ErrField, resp.OldestRevision)
		}
		return resp, r.skip(n - 3)
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
	case resultJSON:
		var null bool
		if null, err = r.isNil(); err == nil && !null {
			resp.JSON, err = r.bin()
		}
	case resultPage:
		resp.Page, err = r.page()
	}
	return resp, err
}

// page reads [revision, [item, ...], more, next?, count, ...].
func (r *reader) page() (ListPage, error) {
	var p ListPage
	n, err := r.arrayAtLeast(5)
	if err != nil {
		return p, err
	}
	if p.Revision, err = r.int(); err != nil {
		return p, err
	}
	count, err := r.arrayLen()
	if err != nil {
		return p, err
	}
	p.Items = make([]Item, count)
	for i := range p.Items {
		if p.Items[i], err = r.item(); err != nil {
			return p, fmt.Errorf("item %d: %w", i, err)
		}
	}
	if p.More, err = r.bool(); err != nil {
		return p, err
	}
	null, err := r.isNil()
	if err != nil {
		return p, err
	}
	if !null {
		if p.Next, err = r.str(); err != nil {
			return p, err
		}
	}
	if p.More && p.Next == "" {
		return p, fmt.Errorf("%w: a page with more items names no next key", ErrField)
	}
	if p.Count, err = r.int(); err != nil {
		return p, err
	}
	return p, r.skip(n - 5)
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

// item reads [key, value?, revision, createRevision, version, lease, ...]
// (lease optional; value nil in a keys-only list).
func (r *reader) item() (Item, error) {
	var it Item
	n, err := r.arrayAtLeast(5)
	if err != nil {
		return it, err
	}
	if it.Key, err = r.str(); err != nil {
		return it, err
	}
	// A keys-only list page has no values.
	if null, err := r.isNil(); err != nil {
		return it, err
	} else if !null {
		if it.Value, err = r.bin(); err != nil {
			return it, err
		}
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
