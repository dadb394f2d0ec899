package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// wsExecute serves req against the backend with the request timeout and
// returns the result that req.Op's schema names (api.Response). Keys, prefixes and values are checked exactly as the JSON
// API checks them, and errors are mapped by the same table.
func (h *apiHandler) wsExecute(connCtx context.Context, req api.Request) (api.Response, *apiError) {
	if req.Bad != "" {
		return api.Response{}, &apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: req.Bad}
	}
	invalidKey := func(msg string) *apiError {
		return &apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: msg}
	}
	if e := h.wsAdmit(connCtx, req.Op); e != nil {
		return api.Response{}, e
	}
	if isQueueOp(req.Op) {
		return h.wsQueue(connCtx, req)
	}
	if isScheduleOp(req.Op) {
		return h.wsSchedule(connCtx, req)
	}
	if req.Op == api.OpWorkflowHistory {
		return h.wsWorkflowHistory(connCtx, req)
	}
	// checkValue checks and compacts a JSON value as the body of a PUT.
	checkValue := func(v []byte, what string) ([]byte, *apiError) {
		if int64(len(v)) > h.opts.MaxBodyBytes {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: api.CodeTooLarge,
				message: fmt.Sprintf("%s is %d bytes, larger than the limit of %d", what, len(v), h.opts.MaxBodyBytes)}
		}
		return compactJSONValue(v, what)
	}
	switch req.Op {
	case api.OpList:
		if msg := h.checkPrefix(req.Key); msg != "" {
			return api.Response{}, invalidKey(msg)
		}
	case api.OpListPage:
		if msg := h.checkPrefix(req.Key); msg != "" {
			return api.Response{}, invalidKey(msg)
		}
		if req.Start != "" {
			if msg := h.checkStoredKey(req.Start); msg != "" {
				return api.Response{}, invalidKey("start: " + msg)
			}
			if !strings.HasPrefix(req.Start, req.Key) {
				return api.Response{}, invalidKey(fmt.Sprintf("start %q is not under the prefix %q", req.Start, req.Key))
			}
		}
	case api.OpStatus, api.OpTxn, api.OpWorkflowList, api.OpNodeList,
		api.OpLeaseGrant, api.OpLeaseRevoke, api.OpLeaseKeepAlive, api.OpLeaseTTL, api.OpLeaseList:
	case api.OpLockAcquire, api.OpLockRelease, api.OpLockGet:
		if req.Key == "" || len(req.Key) > kv.MaxLockNameBytes || kv.ValidateKey(req.Key, kv.MaxLockNameBytes) != nil {
			return api.Response{}, invalidKey("a lock's name is 1 to 512 bytes of UTF-8 without control characters")
		}
	case api.OpCampaign, api.OpProclaim, api.OpResign, api.OpLeader:
		if req.Key == "" || len(kv.ElectionPrefix+req.Key) > kv.MaxLockNameBytes || kv.ValidateKey(req.Key, kv.MaxLockNameBytes) != nil {
			return api.Response{}, invalidKey("an election's name is UTF-8 without control characters, 1 to 503 bytes")
		}
	case api.OpGet, api.OpDelete:
		// Any key the state may hold, as over HTTP.
		if msg := h.checkStoredKey(req.Key); msg != "" {
			return api.Response{}, invalidKey(msg)
		}
	default:
		if msg := h.checkKey(req.Key); msg != "" {
			return api.Response{}, invalidKey(msg)
		}
	}
	var fields []byte
	if req.Value != nil && req.Op != api.OpPut {
		what := "fields"
		if req.Op == api.OpCampaign || req.Op == api.OpProclaim {
			what = "value"
		}
		var e *apiError
		if fields, e = checkValue(req.Value, what); e != nil {
			return api.Response{}, e
		}
	}
	wait := time.Duration(req.WaitMs) * time.Millisecond
	if wait > MaxLockWait {
		return api.Response{}, &apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
			message: "waitMs must be 0 (try once) to 600000 (10 minutes)"}
	}
	// An acquire or a campaign may wait: the wait bounds it, plus one
	// request timeout for the proposals in it (as over HTTP). It holds one
	// of the connection's request slots meanwhile, not the connection.
	ctx, cancel := context.WithTimeout(connCtx, wait+h.opts.RequestTimeout)
	defer cancel()
	if req.Fence.Lock != "" {
		if req.Fence.Token < 1 || len(req.Fence.Lock) > kv.MaxLockNameBytes {
			return api.Response{}, &apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
				message: "a fence is [lock name of up to 512 bytes, token of at least 1]"}
		}
		ctx = kv.WithFence(ctx, req.Fence)
	}
	if req.ReqID.Client != "" {
		if err := req.ReqID.Validate(); err != nil {
			return api.Response{}, &apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: err.Error()}
		}
		// An acquire or a campaign whose wait runs out leaves the queue
		// with a second command made with the request's context, which
		// kv would take for a retry of the first (the same request id)
		// and not apply: the lease would stay queued and get the lock
		// unbeknown to its caller. Both are idempotent for a lease (it
		// keeps its place, or gets its token again), so they go without.
		if req.Op != api.OpLockAcquire && req.Op != api.OpCampaign {
			ctx = kv.WithRequestID(ctx, req.ReqID)
		}
	}
	var (
		result api.Response
		err    error
	)
	if e := checkLeaseArgs(req); e != nil {
		return api.Response{}, e
	}
	lb, servesLeases := h.backend.(LeaseBackend)
	if !servesLeases && (isLeaseOp(req.Op) || req.Lease != 0 || req.TTLMs != 0) {
		return api.Response{}, &apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve leases"}
	}
	lockB, servesLocks := h.backend.(LockBackend)
	if !servesLocks && (isLockOp(req.Op) || req.Fence.Lock != "") {
		return api.Response{}, &apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve locks"}
	}
	eb, servesElections := h.backend.(ElectionBackend)
	if !servesElections && isElectionOp(req.Op) {
		return api.Response{}, &apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve elections"}
	}
	switch req.Op {
	case api.OpPut:
		value, e := checkValue(req.Value, "value")
		if e != nil {
			return api.Response{}, e
		}
		if req.Lease != 0 || req.TTLMs != 0 {
			result.Revision, err = lb.PutWith(ctx, req.Key, value, kv.PutOptions{Cond: req.Cond, Lease: req.Lease,
				TTL: time.Duration(req.TTLMs) * time.Millisecond})
		} else if _, conditional := req.Cond.Revision(); conditional {
			result.Revision, err = h.backend.PutIf(ctx, req.Key, value, req.Cond)
		} else {
			result.Revision, err = h.backend.Put(ctx, req.Key, value)
		}
	case api.OpGet:
		result.Item, err = h.backend.Get(ctx, req.Key, req.Consistency)
	case api.OpDelete:
		if _, conditional := req.Cond.Revision(); conditional {
			result.Revision, err = h.backend.DeleteIf(ctx, req.Key, req.Cond)
		} else {
			result.Revision, err = h.backend.Delete(ctx, req.Key)
		}
	case api.OpList:
		result.Items, result.Revision, err = h.wsList(ctx, req.Key, req.Consistency)
	case api.OpListPage:
		result.Page, err = h.listPage(ctx, req.Key, req.Consistency, kv.ListOptions{Limit: int(min(req.Limit, kv.MaxListLimit)),
			MaxBytes: h.wsPageBytes(), Start: req.Start, Revision: req.Revision, Mode: req.Mode})
	case api.OpTxn:
		if len(req.Ops) == 0 || len(req.Ops) > kv.DefaultMaxBatchOps {
			return api.Response{}, &apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
				message: fmt.Sprintf("a txn holds 1 to %d operations, not %d", kv.DefaultMaxBatchOps, len(req.Ops))}
		}
		ops := make([]kv.Op, len(req.Ops))
		for i, o := range req.Ops {
			if msg := h.checkKey(o.Key); msg != "" {
				return api.Response{}, invalidKey(fmt.Sprintf("operation %d: %s", i, msg))
			}
			ops[i] = kv.Op{Type: kv.OpDelete, Key: o.Key, Cond: o.Cond}
			if o.Type == kv.OpPut {
				value, e := checkValue(o.Value, fmt.Sprintf("operation %d value", i))
				if e != nil {
					return api.Response{}, e
				}
				ops[i].Type, ops[i].Value = kv.OpPut, value
			}
		}
		result.Revision, err = h.backend.Batch(ctx, ops)
	case api.OpWorkflowStart:
		result.Revision, err = h.backend.StartWorkflow(ctx, req.Key, fields)
	case api.OpWorkflowStop:
		result.Revision, err = h.backend.StopWorkflow(ctx, req.Key, fields)
	case api.OpWorkflowUpdate:
		result.Revision, err = h.backend.UpdateWorkflowState(ctx, req.Key, fields)
	case api.OpWorkflowGet:
		var wf kv.Workflow
		if wf, err = h.backend.WorkflowState(ctx, req.Key, req.Consistency); err == nil {
			result.Item = kv.Item{Key: kv.WorkflowPrefix + wf.ID, Value: wf.Value, Revision: wf.Revision,
				CreateRevision: wf.CreateRevision, Version: wf.Version}
		}
	case api.OpWorkflowList:
		// The items under workflow:, as a list reads them: refused as
		// too_large as soon as they pass a frame, never built whole.
		result.Items, result.Revision, err = h.wsList(ctx, kv.WorkflowPrefix, req.Consistency)
	case api.OpNodeRegister:
		if req.Lease != 0 || req.TTLMs != 0 {
			nb, ok := h.backend.(NodeLeaseBackend)
			if !ok {
				return api.Response{}, &apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve leases"}
			}
			result.Revision, err = nb.RegisterNodeWith(ctx, req.Key, fields, kv.PutOptions{Lease: req.Lease,
				TTL: time.Duration(req.TTLMs) * time.Millisecond})
			break
		}
		result.Revision, err = h.backend.RegisterNode(ctx, req.Key, fields)
	case api.OpNodeDeregister:
		result.Revision, err = h.backend.DeregisterNode(ctx, req.Key)
	case api.OpNodeList:
		result.Items, result.Revision, err = h.wsList(ctx, kv.NodePrefix, req.Consistency)
	case api.OpLeaseGrant:
		result.Lease, err = lb.Grant(ctx, time.Duration(req.TTLMs)*time.Millisecond, req.Lease)
	case api.OpLeaseRevoke:
		result.Revision, err = lb.Revoke(ctx, req.Lease)
	case api.OpLeaseKeepAlive, api.OpLeaseTTL:
		call, keepalive := lb.TimeToLive, req.Op == api.OpLeaseKeepAlive
		if keepalive {
			call = lb.KeepAlive
		}
		result.Lease, err = call(ctx, req.Lease)
		if errors.Is(err, consensus.ErrNotLeader) {
			if h.opts.Membership == nil {
				err = errors.Join(consensus.ErrNoLeader, err)
				break
			}
			// Only the leader's clock can answer: ask it over HTTP, a
			// keepalive in the next batch of this token's.
			var e *apiError
			if keepalive {
				result.Lease, e = h.keepalives.keepAlive(ctx, accessFrom(ctx).authorization, req.Lease)
			} else {
				result.Lease, e = h.askLeaderLease(ctx, false, req.Lease)
			}
			if e != nil {
				return api.Response{}, e
			}
			err = nil
		}
	case api.OpLeaseList:
		result.Leases, err = lb.ListLeases(ctx, req.Consistency)
	case api.OpLockAcquire:
		result.Lock, err = lockB.Acquire(ctx, req.Key, req.Lease, wait)
		result.Lock.Value, result.Lock.Waiters = nil, 0
	case api.OpLockRelease:
		err = lockB.Release(ctx, req.Key, 0, req.Token)
	case api.OpLockGet:
		result.Lock, err = lockB.LockState(ctx, req.Key, req.Consistency)
	case api.OpCampaign:
		result.Lock, err = eb.Campaign(ctx, req.Key, req.Lease, fields, wait)
		result.Lock.Waiters = 0
	case api.OpProclaim:
		err = eb.Proclaim(ctx, req.Key, req.Token, fields)
	case api.OpResign:
		err = eb.Resign(ctx, req.Key, req.Token)
	case api.OpLeader:
		result.Lock, err = eb.ElectionLeader(ctx, req.Key, req.Consistency)
	case api.OpStatus:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(h.status()); err != nil {
			return api.Response{}, &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable,
				message: "encoding status: " + err.Error()}
		}
		result.Status = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	default:
		// decodeWSFrame marks unknown operations bad.
		return api.Response{}, &apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
			message: fmt.Sprintf("unknown operation %d", req.Op)}
	}
	if err != nil && (req.Op == api.OpLockAcquire || req.Op == api.OpCampaign) && connCtx.Err() != nil {
		// The wait was given up because the server is shutting down (or
		// the connection ended): not locked; another node may serve it.
		return api.Response{}, &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable,
			message: "server is shutting down; the wait was given up and the lease left the queue"}
	}
	if err != nil {
		e := requestError(connCtx, err)
		if e.unexpected {
			h.log.Error("ws backend error", "op", uint64(req.Op), "err", err)
		}
		return api.Response{}, &e
	}
	return result, nil
}

// isLeaseOp reports whether op is one of the lease operations.
func isLeaseOp(op api.Op) bool { return op >= api.OpLeaseGrant && op <= api.OpLeaseList }

// isLockOp reports whether op is one of the lock operations.
func isLockOp(op api.Op) bool { return op >= api.OpLockAcquire && op <= api.OpLockGet }

// isElectionOp reports whether op is one of the election operations.
func isElectionOp(op api.Op) bool { return op >= api.OpCampaign && op <= api.OpLeader }

// checkLeaseArgs checks the lease arguments of req as the HTTP routes
// check theirs: a lease operation names a lease, a time to live is 1 ms
// to 30 days, and a put has a lease or a time to live, not both.
func checkLeaseArgs(req api.Request) *apiError {
	invalid := func(msg string) *apiError {
		return &apiError{status: http.StatusBadRequest, code: api.CodeInvalidLease, message: msg}
	}
	switch req.Op {
	case api.OpLeaseGrant:
		if req.TTLMs < api.MinLeaseTTLMs || req.TTLMs > api.MaxLeaseTTLMs {
			return invalid("ttlMs must be 1 to 2592000000 (30 days)")
		}
	case api.OpLeaseRevoke, api.OpLeaseKeepAlive, api.OpLeaseTTL:
		if req.Lease == 0 {
			return invalid("a lease id is required (not 0)")
		}
	case api.OpLockAcquire, api.OpCampaign:
		if req.Lease == 0 {
			return invalid("a lease id is required (not 0): the lock is held by it")
		}
	case api.OpLockRelease, api.OpProclaim, api.OpResign:
		if req.Token < 1 {
			return &apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: "token must be the holder's token, at least 1"}
		}
	case api.OpPut, api.OpNodeRegister:
		if req.TTLMs != 0 && req.TTLMs > api.MaxLeaseTTLMs {
			return invalid("ttlMs must be 1 to 2592000000 (30 days)")
		}
		if req.TTLMs != 0 && req.Lease != 0 {
			return &apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, message: "give lease or ttl, not both"}
		}
	}
	return nil
}

// encodeWSResponse encodes the answer to request id of operation op: the
// result, or e when it is not nil. A response that would not fit in a
// frame of maxFrame bytes is replaced by a too_large error, and an error
// whose message does not fit has it cut.
func encodeWSResponse(id uint64, op api.Op, result api.Response, e *apiError, maxFrame int64) []byte {
	resp := result
	if e != nil {
		resp = api.Response{Code: e.code, Message: e.message}
	}
	resp.ID = id
	b, err := api.AppendResponse(nil, op, &resp)
	switch {
	case err != nil:
		b, _ = api.AppendResponse(nil, op, &api.Response{ID: id, Code: api.CodeUnavailable,
			Message: "encoding response: " + err.Error()})
	case int64(len(b)) > maxFrame-api.FrameOverhead && e != nil:
		// Only a message longer than a frame gets here; cut it.
		b, _ = api.AppendResponse(nil, op, &api.Response{ID: id, Code: e.code, Message: closeReason(e.message)})
	case int64(len(b)) > maxFrame-api.FrameOverhead:
		b, _ = api.AppendResponse(nil, op, &api.Response{ID: id, Code: api.CodeTooLarge,
			Message: fmt.Sprintf("response of %d bytes exceeds the frame limit of %d", len(b), maxFrame)})
	}
	return b
}
