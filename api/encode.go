package api

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// The MessagePack encoding of /v1/ws frames, appended to a byte slice.
// Every integer takes its shortest form, as the msgpack library's
// EncodeInt and EncodeUint write it.

// AppendUint appends v.
func AppendUint(b []byte, v uint64) []byte {
	switch {
	case v <= math.MaxInt8:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, msgpcode.Uint8, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, msgpcode.Uint16), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, msgpcode.Uint32), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, msgpcode.Uint64), v)
}

// AppendInt appends v.
func AppendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0:
		return AppendUint(b, uint64(v))
	case v >= -32:
		return append(b, byte(v))
	case v >= math.MinInt8:
		return append(b, msgpcode.Int8, byte(v))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, msgpcode.Int16), uint16(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, msgpcode.Int32), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, msgpcode.Int64), uint64(v))
}

// AppendNil appends nil.
func AppendNil(b []byte) []byte { return append(b, msgpcode.Nil) }

// AppendArrayHeader appends the header of an array of n elements.
func AppendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, msgpcode.FixedArrayLow|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, msgpcode.Array16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, msgpcode.Array32), uint32(n))
}

// AppendStr appends s as a str.
func AppendStr(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, msgpcode.FixedStrLow|byte(n))
	case n <= math.MaxUint8:
		b = append(b, msgpcode.Str8, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, msgpcode.Str16), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, msgpcode.Str32), uint32(n))
	}
	return append(b, s...)
}

// AppendBin appends p as a bin; nil is an empty bin.
func AppendBin(b []byte, p []byte) []byte {
	n := len(p)
	switch {
	case n <= math.MaxUint8:
		b = append(b, msgpcode.Bin8, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, msgpcode.Bin16), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, msgpcode.Bin32), uint32(n))
	}
	return append(b, p...)
}

// appendBinOrNil appends p as a bin, or nil when p is nil.
func appendBinOrNil(b []byte, p []byte) []byte {
	if p == nil {
		return AppendNil(b)
	}
	return AppendBin(b, p)
}

// AppendFrameHeader appends the start of a frame of n elements (requests
// or responses), which follow it: [version, [.
func AppendFrameHeader(b []byte, n int) []byte {
	b = append(b, msgpcode.FixedArrayLow|2, ProtocolVersion)
	return AppendArrayHeader(b, n)
}

// appendCond appends a precondition: nil, the revision required, or true
// for "the key exists". A negative revision, which a server refuses,
// takes the 9-byte int64 form.
func appendCond(b []byte, c Cond) []byte {
	if c.Exists() {
		return append(b, msgpcode.True)
	}
	rev, ok := c.Revision()
	switch {
	case !ok:
		return AppendNil(b)
	case rev < 0:
		return binary.BigEndian.AppendUint64(append(b, msgpcode.Int64), uint64(rev))
	}
	return AppendUint(b, uint64(rev))
}

// AppendArgs appends the arguments of r (everything after its id and
// operation) as its operation's schema lists them, every one of them,
// and returns how many it appended. Optional arguments r does not set go
// as nil (a request id, a precondition, fields), or as their default (the
// consistency). An operation this version does not know has none.
func AppendArgs(b []byte, r *Request) ([]byte, int) {
	if !r.Op.Known() {
		return b, 0
	}
	s := &schemas[r.Op]
	args := s.args
	for len(args) > s.required && args[len(args)-1].trimmable() && !r.has(args[len(args)-1]) {
		args = args[:len(args)-1]
	}
	for _, a := range args {
		switch a {
		case argKey, argPrefix:
			b = AppendStr(b, r.Key)
		case argValue:
			b = AppendBin(b, r.Value)
		case argFields:
			b = appendBinOrNil(b, r.Value)
		case argConsistency:
			c := uint64(0)
			if r.Consistency == Local {
				c = 1
			}
			b = AppendUint(b, c)
		case argReqID:
			if r.ReqID.Client == "" {
				b = AppendNil(b)
				break
			}
			b = AppendArrayHeader(b, 2)
			b = AppendUint(AppendStr(b, r.ReqID.Client), r.ReqID.Seq)
		case argCond:
			b = appendCond(b, r.Cond)
		case argOps:
			b = AppendArrayHeader(b, len(r.Ops))
			for i := range r.Ops {
				o := &r.Ops[i]
				if o.Type == TxnPut {
					b = AppendArrayHeader(b, 4)
					b = AppendBin(AppendStr(AppendUint(b, uint64(TxnPut)), o.Key), o.Value)
				} else {
					b = AppendArrayHeader(b, 3)
					b = AppendStr(AppendUint(b, uint64(o.Type)), o.Key)
				}
				b = appendCond(b, o.Cond)
			}
		case argLease:
			b = appendPositiveOrNil(b, int64(r.Lease))
		case argTTL:
			b = appendPositiveOrNil(b, r.TTLMs)
		case argWait:
			b = appendPositiveOrNil(b, r.WaitMs)
		case argToken:
			b = appendPositiveOrNil(b, r.Token)
		case argFence:
			if r.Fence.Lock == "" {
				b = AppendNil(b)
				break
			}
			b = AppendArrayHeader(b, 2)
			b = appendPositiveOrNil(AppendStr(b, r.Fence.Lock), r.Fence.Token)
		case argTask:
			b = AppendStr(b, r.Task)
		case argLimit:
			b = appendPositiveOrNil(b, r.Limit)
		case argStart:
			if r.Start == "" {
				b = AppendNil(b)
				break
			}
			b = AppendStr(b, r.Start)
		case argRevision:
			b = appendPositiveOrNil(b, r.Revision)
		case argListMode:
			b = appendPositiveOrNil(b, int64(r.Mode))
		case argWatch:
			b = AppendUint(b, r.Watch)
		}
	}
	return b, len(args)
}

// has reports whether r sets the argument of kind a (only asked of
// trimmable kinds).
func (r *Request) has(a argKind) bool {
	switch a {
	case argLease:
		return r.Lease != 0
	case argTTL:
		return r.TTLMs != 0
	case argFence:
		return r.Fence.Lock != ""
	}
	return true
}

// appendPositiveOrNil appends v, or nil when v is 0. A negative v, which
// a decoder refuses, takes the 9-byte int64 form.
func appendPositiveOrNil(b []byte, v int64) []byte {
	if v == 0 {
		return AppendNil(b)
	}
	return AppendInt(b, v)
}

// AppendRequest appends request [id, op, args...], where args holds
// nargs encoded values (from AppendArgs).
func AppendRequest(b []byte, id uint64, op Op, nargs int, args []byte) []byte {
	b = AppendArrayHeader(b, 2+nargs)
	b = AppendUint(b, id)
	b = AppendUint(b, uint64(op))
	return append(b, args...)
}

// appendItem appends [key, value, revision, createRevision, version], and
// the lease id after them if the key has one; a nil value is nil.
func appendItem(b []byte, it *Item) []byte {
	n := 5
	if it.Lease != 0 {
		n = 6
	}
	b = AppendArrayHeader(b, n)
	b = AppendStr(b, it.Key)
	b = appendBinOrNil(b, it.Value)
	b = AppendInt(b, it.Revision)
	b = AppendInt(b, it.CreateRevision)
	b = AppendInt(b, it.Version)
	if n == 6 {
		b = AppendInt(b, int64(it.Lease))
	}
	return b
}

// AppendPage appends a list page: [revision, [item, ...], more, next,
// count], next nil when there is no more.
func AppendPage(b []byte, p *ListPage) []byte {
	b = AppendArrayHeader(b, 5)
	b = AppendInt(b, p.Revision)
	b = AppendArrayHeader(b, len(p.Items))
	for i := range p.Items {
		b = appendItem(b, &p.Items[i])
	}
	if p.More {
		b = append(b, msgpcode.True)
		b = AppendStr(b, p.Next)
	} else {
		b = append(b, msgpcode.False)
		b = AppendNil(b)
	}
	return AppendInt(b, p.Count)
}

// ItemSize bounds the bytes appendItem takes for it beyond its key and
// value, so that a server can bound a page by the frame limit.
const ItemSize = 48

// appendLease appends [id, ttlMs, remainingMs, keys]: remainingMs nil
// when unknown, keys nil when there are none.
func appendLease(b []byte, l *Lease) []byte {
	b = AppendArrayHeader(b, 4)
	b = AppendInt(b, int64(l.ID))
	b = AppendInt(b, l.TTLMs)
	if l.RemainingMs == nil {
		b = AppendNil(b)
	} else {
		b = AppendInt(b, *l.RemainingMs)
	}
	if len(l.Keys) == 0 {
		return AppendNil(b)
	}
	b = AppendArrayHeader(b, len(l.Keys))
	for _, k := range l.Keys {
		b = AppendStr(b, k)
	}
	return b
}

// AppendResponse appends r, the answer to a request of op: [id, 1, [code,
// message]] when r.Code is set (a message that is not valid UTF-8 has its
// bad bytes replaced by U+FFFD; [code, message, oldestRevision] when
// r.OldestRevision is set), otherwise [id, 0, result] with the result
// op's schema names. It fails only for a result to an operation this
// version does not know.
func AppendResponse(b []byte, op Op, r *Response) ([]byte, error) {
	if r.Code != "" {
		b = AppendArrayHeader(b, 3)
		b = AppendUint(b, r.ID)
		b = AppendUint(b, ResultError)
		return appendError(b, r.Code, r.Message, r.OldestRevision), nil
	}
	if !op.Known() {
		return b, fmt.Errorf("result to unknown operation %d", uint64(op))
	}
	b = AppendArrayHeader(b, 3)
	b = AppendUint(b, r.ID)
	b = AppendUint(b, ResultOK)
	switch schemas[op].result {
	case resultRevision:
		b = AppendInt(b, r.Revision)
	case resultItem:
		b = appendItem(b, &r.Item)
	case resultList:
		b = AppendArrayHeader(b, 2)
		b = AppendInt(b, r.Revision)
		b = AppendArrayHeader(b, len(r.Items))
		for i := range r.Items {
			b = appendItem(b, &r.Items[i])
		}
	case resultStatus:
		b = appendBinOrNil(b, r.Status)
	case resultLease:
		b = appendLease(b, &r.Lease)
	case resultLeases:
		b = AppendArrayHeader(b, len(r.Leases))
		for i := range r.Leases {
			b = appendLease(b, &r.Leases[i])
		}
	case resultLock:
		l := &r.Lock
		b = AppendArrayHeader(b, 5)
		b = AppendInt(AppendStr(b, l.Name), l.Token)
		b = appendBinOrNil(AppendInt(b, int64(l.Lease)), l.Value)
		b = AppendInt(b, int64(l.Waiters))
	case resultNone:
		b = AppendNil(b)
	case resultJSON:
		b = appendBinOrNil(b, r.JSON)
	case resultPage:
		b = AppendPage(b, &r.Page)
	}
	return b, nil
}

// appendError appends an error payload: [code, message], or [code,
// message, oldestRevision] when oldest is set.
func appendError(b []byte, code, message string, oldest int64) []byte {
	if oldest > 0 {
		b = AppendArrayHeader(b, 3)
	} else {
		b = AppendArrayHeader(b, 2)
	}
	b = AppendStr(b, code)
	b = AppendStr(b, strings.ToValidUTF8(message, "\uFFFD"))
	if oldest > 0 {
		b = AppendInt(b, oldest)
	}
	return b
}
