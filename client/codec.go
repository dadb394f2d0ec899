package client

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/internal/msgpackcheck"
	"github.com/unrdf/consensus/kv"
)

// protocolVersion is the /v1/ws frame format this client speaks.
const protocolVersion = 1

// Operations of the /v1/ws protocol.
const (
	opPut            = 1
	opGet            = 2
	opDelete         = 3
	opList           = 4
	opStatus         = 5
	opTxn            = 6
	opWorkflowStart  = 7
	opWorkflowStop   = 8
	opWorkflowUpdate = 9
	opWorkflowGet    = 10
	opWorkflowList   = 11
	opNodeRegister   = 12
	opNodeDeregister = 13
	opNodeList       = 14
)

// isWriteOp reports whether op changes the state: such requests carry a
// request id, and a server's timeout or unavailable answer leaves their
// outcome unknown.
func isWriteOp(op byte) bool {
	switch op {
	case opPut, opDelete, opTxn, opWorkflowStart, opWorkflowStop, opWorkflowUpdate, opNodeRegister, opNodeDeregister:
		return true
	}
	return false
}

// Response kinds.
const (
	resultOK    = 0
	resultError = 1
)

const (
	// frameOverhead bounds a frame's envelope: the outer array, the
	// version and the header of the element array.
	frameOverhead = 8
	// requestOverhead bounds a request's bytes beyond its arguments: the
	// array header, the id and the operation.
	requestOverhead = 16
	// maxDepth bounds the nesting of a frame the client accepts: frame,
	// responses, response, result, items, item, and room to grow.
	maxDepth = 8
)

func opName(op byte) string {
	switch op {
	case opPut:
		return "put"
	case opGet:
		return "get"
	case opDelete:
		return "delete"
	case opList:
		return "list"
	case opStatus:
		return "status"
	case opTxn:
		return "batch"
	case opWorkflowStart:
		return "start workflow"
	case opWorkflowStop:
		return "stop workflow"
	case opWorkflowUpdate:
		return "update workflow"
	case opWorkflowGet:
		return "get workflow"
	case opWorkflowList:
		return "list workflows"
	case opNodeRegister:
		return "register node"
	case opNodeDeregister:
		return "deregister node"
	case opNodeList:
		return "list nodes"
	}
	return fmt.Sprintf("op %d", op)
}

// MessagePack encoding of requests, appended to a byte slice: requests hold
// only unsigned integers, strings and bins.

func appendUint(b []byte, v uint64) []byte {
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

func appendNil(b []byte) []byte { return append(b, msgpcode.Nil) }

func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return appendUint(b, uint64(v))
	}
	return binary.BigEndian.AppendUint64(append(b, msgpcode.Int64), uint64(v))
}

// appendCond appends a precondition: nil, the revision required, or true
// for "the key exists".
func appendCond(b []byte, c kv.Cond) []byte {
	if c.Exists() {
		return append(b, msgpcode.True)
	}
	if rev, ok := c.Revision(); ok {
		return appendInt(b, rev)
	}
	return appendNil(b)
}

// appendFields appends a JSON object as bin, or nil.
func appendFields(b []byte, fields []byte) []byte {
	if fields == nil {
		return appendNil(b)
	}
	return appendBin(b, fields)
}

func appendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, msgpcode.FixedArrayLow|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, msgpcode.Array16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, msgpcode.Array32), uint32(n))
}

func appendStr(b []byte, s string) []byte {
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

func appendBin(b []byte, p []byte) []byte {
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

// appendRequest appends [id, op, args...] where args holds nargs encoded
// values.
func appendRequest(b []byte, id uint64, op byte, nargs int, args []byte) []byte {
	b = appendArrayHeader(b, 2+nargs)
	b = appendUint(b, id)
	b = append(b, op)
	return append(b, args...)
}

// response is a decoded answer; which fields are set depends on the
// operation.
type response struct {
	revision int64
	item     kv.Item
	items    []kv.Item
	status   consensus.Status
	// err is the server's error answer, if it sent one.
	err *ServerError
}

// errFrame is wrapped by errors about frames the client cannot decode.
var errFrame = errors.New("bad frame from server")

// frameReader decodes a frame that msgpackcheck.Validate accepted, so that
// every declared length fits in the frame. Typed reads peek first and
// reject a value of the wrong type before consuming it.
type frameReader struct {
	src bytes.Reader
	d   *msgpack.Decoder
}

func newFrameReader(b []byte) (*frameReader, error) {
	if err := msgpackcheck.Validate(b, maxDepth); err != nil {
		return nil, fmt.Errorf("%w: %w", errFrame, err)
	}
	r := &frameReader{d: msgpack.GetDecoder()}
	r.src.Reset(b)
	r.d.Reset(&r.src)
	return r, nil
}

func (r *frameReader) release() { msgpack.PutDecoder(r.d) }

func (r *frameReader) peek(want string, ok func(byte) bool) error {
	c, err := r.d.PeekCode()
	if err != nil {
		return err
	}
	if !ok(c) {
		return fmt.Errorf("type %#x, want %s", c, want)
	}
	return nil
}

func isArray(c byte) bool {
	return msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32
}

func isInt(c byte) bool {
	return msgpcode.IsFixedNum(c) || (c >= msgpcode.Uint8 && c <= msgpcode.Int64)
}

func isBytes(c byte) bool { return msgpcode.IsString(c) || msgpcode.IsBin(c) }

// arrayLen reads an array header of at least min elements.
func (r *frameReader) arrayLen(min int) (int, error) {
	if err := r.peek("an array", isArray); err != nil {
		return 0, err
	}
	n, err := r.d.DecodeArrayLen()
	if err == nil && n < min {
		err = fmt.Errorf("array of %d elements, want at least %d", n, min)
	}
	return n, err
}

func (r *frameReader) int() (int64, error) {
	if err := r.peek("an integer", isInt); err != nil {
		return 0, err
	}
	return r.d.DecodeInt64()
}

func (r *frameReader) uint() (uint64, error) {
	if err := r.peek("an integer", isInt); err != nil {
		return 0, err
	}
	return r.d.DecodeUint64()
}

func (r *frameReader) str() (string, error) {
	if err := r.peek("a string", isBytes); err != nil {
		return "", err
	}
	return r.d.DecodeString()
}

func (r *frameReader) bin() ([]byte, error) {
	if err := r.peek("bin", isBytes); err != nil {
		return nil, err
	}
	b, err := r.d.DecodeBytes()
	if b == nil && err == nil {
		b = []byte{}
	}
	return b, err
}

// skip discards n values (the elements a newer server may append).
func (r *frameReader) skip(n int) error {
	for range n {
		if err := r.d.Skip(); err != nil {
			return err
		}
	}
	return nil
}

// frameHeader reads [version, [ and returns the number of responses and of
// envelope elements after them.
func (r *frameReader) frameHeader() (count, extra int, err error) {
	n, err := r.arrayLen(2)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %w", errFrame, err)
	}
	v, err := r.uint()
	if err != nil {
		return 0, 0, fmt.Errorf("%w: version: %w", errFrame, err)
	}
	if v != protocolVersion {
		return 0, 0, fmt.Errorf("%w: version %d, this client speaks %d", errFrame, v, protocolVersion)
	}
	count, err = r.arrayLen(0)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: responses: %w", errFrame, err)
	}
	return count, n - 2, nil
}

// responseHeader reads [id, kind, and returns them with the number of
// elements after the payload.
func (r *frameReader) responseHeader() (id, kind uint64, extra int, err error) {
	n, err := r.arrayLen(3)
	if err != nil {
		return 0, 0, 0, err
	}
	if id, err = r.uint(); err != nil {
		return 0, 0, 0, fmt.Errorf("id: %w", err)
	}
	if kind, err = r.uint(); err != nil {
		return 0, 0, 0, fmt.Errorf("kind: %w", err)
	}
	return id, kind, n - 3, nil
}

// payload decodes the payload of an answer of the given kind to op.
func (r *frameReader) payload(op byte, kind uint64) (response, error) {
	var resp response
	var err error
	switch kind {
	case resultError:
		resp.err, err = r.serverError()
		return resp, err
	case resultOK:
	default:
		return resp, fmt.Errorf("unknown response kind %d", kind)
	}
	switch op {
	case opPut, opDelete, opTxn, opWorkflowStart, opWorkflowStop, opWorkflowUpdate, opNodeRegister, opNodeDeregister:
		resp.revision, err = r.int()
	case opGet, opWorkflowGet:
		resp.item, err = r.item()
	case opList, opWorkflowList, opNodeList:
		resp.items, resp.revision, err = r.list()
	case opStatus:
		var b []byte
		if b, err = r.bin(); err == nil {
			err = json.Unmarshal(b, &resp.status)
		}
	default:
		err = fmt.Errorf("answer to unknown operation %d", op)
	}
	return resp, err
}

func (r *frameReader) serverError() (*ServerError, error) {
	n, err := r.arrayLen(2)
	if err != nil {
		return nil, err
	}
	var e ServerError
	if e.Code, err = r.str(); err != nil {
		return nil, err
	}
	if e.Message, err = r.str(); err != nil {
		return nil, err
	}
	return &e, r.skip(n - 2)
}

// item reads [key, value, revision, createRevision, version].
func (r *frameReader) item() (kv.Item, error) {
	var it kv.Item
	n, err := r.arrayLen(5)
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
	return it, r.skip(n - 5)
}

// list reads [revision, [item, ...]].
func (r *frameReader) list() ([]kv.Item, int64, error) {
	n, err := r.arrayLen(2)
	if err != nil {
		return nil, 0, err
	}
	rev, err := r.int()
	if err != nil {
		return nil, 0, err
	}
	count, err := r.arrayLen(0)
	if err != nil {
		return nil, 0, err
	}
	items := make([]kv.Item, count)
	for i := range items {
		if items[i], err = r.item(); err != nil {
			return nil, 0, fmt.Errorf("item %d: %w", i, err)
		}
	}
	return items, rev, r.skip(n - 2)
}
