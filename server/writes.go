package server

// What every write route shares: the exactly-once headers, conditions on
// revisions, and reading bodies. The routes beyond plain keys are in
// txn.go (batches), workflows.go (workflows and application nodes) and
// http.go (stats); they are:
//
//	PUT/DELETE /v1/kv/{key}         If-Match: <revision> | If-None-Match: *
//	POST   /v1/txn                  {"ops":[{"op":"put"|"delete","key","value","ifRevision"}]}
//	GET    /v1/workflows            {"workflows":[...],"revision":n}
//	POST   /v1/workflows            {"id":"...", ...fields}: START_WORKFLOW
//	GET    /v1/workflows/{id}       the workflow (getWorkflowState)
//	PATCH  /v1/workflows/{id}       {...fields}: UPDATE_STATE
//	POST   /v1/workflows/{id}/stop  {...fields} or no body: STOP_WORKFLOW
//	GET    /v1/nodes                {"nodes":[...],"revision":n}
//	POST   /v1/nodes                {"id":"...", ...metadata}: REGISTER_NODE
//	DELETE /v1/nodes/{id}           DEREGISTER_NODE
//	GET    /v1/stats                keys, bytes, revision, applied and snapshot index
//
// Every write route takes X-Client-Id and X-Request-Seq for exactly-once
// retries.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// Request headers of the exactly-once protocol: a write carrying both is
// applied at most once per (client id, sequence), and a retry gets the
// first attempt's answer.
const (
	ClientIDHeader   = "X-Client-Id"
	RequestSeqHeader = "X-Request-Seq"
)

const (
	workflowsPath = "/v1/workflows"
	nodesPath     = "/v1/nodes"
	txnPath       = "/v1/txn"
	statsPath     = "/v1/stats"
)

func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: msg})
}

// writeContext returns the context a write runs in: the request timeout,
// the request id of the X-Client-Id and X-Request-Seq headers, and the
// fence of the X-Fence header. It answers 400 itself and returns ok false
// when they are malformed.
func (h *apiHandler) writeContext(w http.ResponseWriter, r *http.Request) (context.Context, context.CancelFunc, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	fail := func(msg string) (context.Context, context.CancelFunc, bool) {
		cancel()
		badRequest(w, msg)
		return nil, nil, false
	}
	if fences := r.Header.Values(FenceHeader); len(fences) > 0 {
		f, ok := parseFence(fences)
		if !ok {
			return fail(FenceHeader + ` must be one "<lock name>:<token>", the token a decimal integer of at least 1`)
		}
		ctx = kv.WithFence(ctx, f)
	}
	clients, seqs := r.Header.Values(ClientIDHeader), r.Header.Values(RequestSeqHeader)
	if len(clients) == 0 && len(seqs) == 0 {
		return ctx, cancel, true
	}
	if len(clients) != 1 || len(seqs) != 1 {
		return fail(ClientIDHeader + " and " + RequestSeqHeader + " go together, once each")
	}
	seq, err := strconv.ParseUint(strings.TrimSpace(seqs[0]), 10, 64)
	if err != nil || seq == 0 {
		return fail(RequestSeqHeader + " must be a decimal integer of at least 1")
	}
	id := kv.RequestID{Client: clients[0], Seq: seq}
	if err := id.Validate(); err != nil {
		return fail(fmt.Sprintf("%s must be 1 to %d bytes of UTF-8", ClientIDHeader, kv.MaxClientIDBytes))
	}
	return kv.WithRequestID(ctx, id), cancel, true
}

// FenceHeader fences a write: "<lock name>:<token>". The write is applied
// only if the lock is held with that token when it is (412 fenced
// otherwise, nothing changed).
const FenceHeader = "X-Fence"

// parseFence reads one X-Fence value; the token follows the last colon
// (a lock's name may hold colons).
func parseFence(values []string) (kv.Fence, bool) {
	if len(values) != 1 {
		return kv.Fence{}, false
	}
	v := strings.TrimSpace(values[0])
	i := strings.LastIndexByte(v, ':')
	if i <= 0 {
		return kv.Fence{}, false
	}
	token, err := strconv.ParseInt(v[i+1:], 10, 64)
	if err != nil || token < 1 || len(v[:i]) > kv.MaxLockNameBytes {
		return kv.Fence{}, false
	}
	return kv.Fence{Lock: v[:i], Token: token}, true
}

// condition reads If-Match and If-None-Match: If-Match: <revision> (also
// quoted, as the ETag of a GET) requires the key at that revision,
// If-Match: * requires it to exist; If-None-Match: * requires it absent.
// It answers 400 itself for anything else.
func condition(w http.ResponseWriter, r *http.Request) (kv.Cond, bool) {
	match, noneMatch := r.Header.Values("If-Match"), r.Header.Values("If-None-Match")
	switch {
	case len(match) == 0 && len(noneMatch) == 0:
		return kv.Cond{}, true
	case len(match) > 0 && len(noneMatch) > 0:
		badRequest(w, "give If-Match or If-None-Match, not both")
		return kv.Cond{}, false
	case len(noneMatch) > 0:
		if len(noneMatch) != 1 || strings.TrimSpace(noneMatch[0]) != "*" {
			badRequest(w, `If-None-Match must be "*" (create only)`)
			return kv.Cond{}, false
		}
		return kv.IfAbsent(), true
	}
	v := ""
	if len(match) == 1 {
		v = strings.TrimSpace(match[0])
		if v == "*" {
			return kv.IfExists(), true
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
	}
	rev, err := strconv.ParseInt(v, 10, 64)
	if err != nil || rev < 1 {
		badRequest(w, `If-Match must be "*" or one revision (a decimal integer of at least 1, optionally quoted as the ETag of a GET)`)
		return kv.Cond{}, false
	}
	return kv.IfRevision(rev), true
}

// etag is the ETag of an item: its revision, quoted.
func etag(rev int64) string { return `"` + strconv.FormatInt(rev, 10) + `"` }

// readBody reads the request body as in readValue; when optional, an
// empty body is nil rather than an error.
func (h *apiHandler) readBody(w http.ResponseWriter, r *http.Request, optional bool) ([]byte, bool) {
	if optional && (r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0) {
		return nil, true
	}
	return h.readValue(w, r)
}

// readObject reads a body that must be a JSON object; optional allows an
// empty body (nil).
func (h *apiHandler) readObject(w http.ResponseWriter, r *http.Request, optional bool) (map[string]json.RawMessage, []byte, bool) {
	body, ok := h.readBody(w, r, optional)
	if !ok || body == nil {
		return nil, nil, ok
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidJSON, message: "request body must be a JSON object"})
		return nil, nil, false
	}
	return obj, body, true
}
