package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// txnRequest is the body of POST /v1/txn.
type txnRequest struct {
	Ops []txnRequestOp `json:"ops"`
}

type txnRequestOp struct {
	Op         string          `json:"op"`
	Key        string          `json:"key"`
	Value      json.RawMessage `json:"value"`
	IfRevision *int64          `json:"ifRevision"`
}

// TxnError is a POST /v1/txn body refused before anything is proposed:
// Code is the API's error code for it (400 bad_request, invalid_key or
// invalid_json), Message says why.
type TxnError struct {
	Code    string
	Message string
}

func (e *TxnError) Error() string { return e.Message }

// ParseTxn decodes a batch as POST /v1/txn takes it,
// {"ops":[{"op":"put"|"delete","key","value","ifRevision"?},...]}, into
// the operations of kv.Store.Batch, with kv's default key limit. A refused
// batch is a *TxnError. The command line's `kv txn` reads batches with it.
func ParseTxn(body []byte) ([]kv.Op, error) {
	ops, err := parseTxn(body, func(key string) string { return keyProblem(key, kv.DefaultMaxKeyBytes) })
	if err != nil {
		return nil, err
	}
	return ops, nil
}

// parseTxn is ParseTxn with checkKey saying what is wrong with a key ("":
// nothing).
func parseTxn(body []byte, checkKey func(string) string) ([]kv.Op, *TxnError) {
	bad := func(code, format string, args ...any) *TxnError {
		return &TxnError{Code: code, Message: fmt.Sprintf(format, args...)}
	}
	var req txnRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, bad(api.CodeBadRequest, `the batch is not {"ops":[...]}: %v`, err)
	}
	if dec.More() {
		return nil, bad(api.CodeBadRequest, "more than one JSON value in the batch")
	}
	switch n := len(req.Ops); {
	case n == 0:
		return nil, bad(api.CodeBadRequest, "the batch has no operations")
	case n > kv.DefaultMaxBatchOps:
		return nil, bad(api.CodeBadRequest, "the batch has %d operations, more than %d", n, kv.DefaultMaxBatchOps)
	}
	ops := make([]kv.Op, len(req.Ops))
	for i, o := range req.Ops {
		n := i + 1 // operations are numbered from 1 in messages
		if msg := checkKey(o.Key); msg != "" {
			return nil, bad(api.CodeInvalidKey, "op %d (%q): %s", n, o.Key, msg)
		}
		ops[i].Key = o.Key
		if o.IfRevision != nil {
			if *o.IfRevision < 0 {
				return nil, bad(api.CodeBadRequest, "op %d: ifRevision %d is negative (0 means absent)", n, *o.IfRevision)
			}
			ops[i].Cond = kv.IfRevision(*o.IfRevision)
		}
		switch o.Op {
		case "put":
			if o.Value == nil {
				return nil, bad(api.CodeInvalidJSON, "op %d: a put needs a value", n)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, o.Value); err != nil {
				return nil, bad(api.CodeInvalidJSON, "op %d: value: %v", n, err)
			}
			ops[i].Type, ops[i].Value = kv.OpPut, compact.Bytes()
		case "delete":
			if o.Value != nil {
				return nil, bad(api.CodeBadRequest, "op %d: a delete takes no value", n)
			}
			ops[i].Type = kv.OpDelete
		default:
			return nil, bad(api.CodeBadRequest, "op %d: op %q, want put or delete", n, o.Op)
		}
	}
	return ops, nil
}

func (h *apiHandler) serveTxn(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	if _, ok := parseQuery(w, r); !ok {
		return
	}
	body, ok := h.readValue(w, r)
	if !ok {
		return
	}
	ops, terr := parseTxn(body, h.checkKey)
	if terr != nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: terr.Code, message: terr.Message})
		return
	}
	ctx, cancel, ok := h.writeContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	rev, err := h.backend.Batch(ctx, ops)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, revisionResponse{Revision: rev})
}
