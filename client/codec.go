package client

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/unrdf/consensus/api"
)

// The /v1/ws frame codec is api's, shared with the server: this file only
// turns its requests and responses into the client's.

// encodeArgs encodes the arguments of r (api.AppendArgs), with room for
// the request's envelope.
func encodeArgs(r *api.Request) ([]byte, int) {
	return api.AppendArgs(make([]byte, 0, len(r.Key)+len(r.Value)+64), r)
}

// response is a decoded answer; which fields are set depends on the
// operation.
type response struct {
	revision int64
	item     api.Item
	items    []api.Item
	page     api.ListPage
	status   api.Status
	lease    api.Lease
	leases   []api.Lease
	lock     api.Lock
	// json is a queue operation's answer (nil: a claim found nothing).
	json []byte
	// err is the server's error answer, if it sent one.
	err *ServerError
	// oldest is a compacted error's oldest revision.
	oldest int64
}

// errFrame is wrapped by errors about frames the client cannot decode.
var errFrame = errors.New("bad frame from server")

// readPayload reads the payload of an answer of the given kind to op.
func readPayload(r *api.FrameReader, op api.Op, kind uint64) (response, error) {
	p, err := r.Payload(op, kind)
	if err != nil {
		return response{}, err
	}
	if kind == api.ResultError {
		return response{err: &ServerError{Code: p.Code, Message: p.Message}, oldest: p.OldestRevision}, nil
	}
	resp := response{revision: p.Revision, item: p.Item, items: p.Items, lease: p.Lease, leases: p.Leases, lock: p.Lock, json: p.JSON,
		page: p.Page}
	if op == api.OpStatus {
		err = json.Unmarshal(p.Status, &resp.status)
	}
	return resp, err
}

// readFrameHeader reads a frame's envelope (api.FrameReader.Header).
func readFrameHeader(r *api.FrameReader) (count, extra int, err error) {
	count, extra, err = r.Header()
	if ve, ok := errors.AsType[*api.VersionError](err); ok {
		return 0, 0, fmt.Errorf("%w: version %d, this client speaks %d", errFrame, ve.Version, api.ProtocolVersion)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %w", errFrame, err)
	}
	return count, extra, nil
}
