package server

// Keepalives in batches. Only the leader's clock renews a lease, so a
// keepalive that reaches a follower must be asked of the leader. One
// forwarded HTTP request per keepalive would make a follower's cost grow
// with its clients' leases (etcd's followers forward each renewal; its
// keepalives failed at 40-60k leases, etcd-io/etcd#11886). Here a
// follower's /v1/ws keepalives wait in a queue per token, and one request
// to the leader, POST /v1/leases/keepalive, carries every keepalive that
// arrived while the previous one was on its way: under load the forwards
// are a handful per round trip, whatever the number of leases.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// MaxKeepAliveBatch is the most leases one POST /v1/leases/keepalive may
// renew.
const MaxKeepAliveBatch = 1000

// keepAliveBatchPath renews many leases at once: a route of its own under
// /v1/leases ("keepalive" is not a lease id: ids are hexadecimal).
const keepAliveBatchPath = "/keepalive"

// keepAliveBatchRequest is the body of POST /v1/leases/keepalive.
type keepAliveBatchRequest struct {
	IDs []kv.LeaseID `json:"ids"`
}

// keepAliveBatchResponse is its answer: one result per id, in order.
type keepAliveBatchResponse struct {
	Leases []keepAliveResult `json:"leases"`
}

// keepAliveResult is a lease renewed (the fields of a keepalive's
// answer) or, with Error set, why it was not (only ID is set then).
type keepAliveResult struct {
	ID          kv.LeaseID   `json:"id"`
	TTLMs       int64        `json:"ttlMs,omitempty"`
	RemainingMs *int64       `json:"remainingMs,omitempty"`
	Error       *errorDetail `json:"error,omitempty"`
}

// serveKeepAliveBatch answers POST /v1/leases/keepalive: every lease of
// the body kept alive, each with its own answer or error, so that one
// lease gone does not fail the others. On a follower the whole request is
// forwarded to the leader.
func (h *apiHandler) serveKeepAliveBatch(w http.ResponseWriter, r *http.Request, lb LeaseBackend) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	body, ok := h.readValue(w, r)
	if !ok {
		return
	}
	var req keepAliveBatchRequest
	if err := decodeStrict(body, &req); err != nil {
		e := apiError{status: http.StatusBadRequest, code: api.CodeInvalidJSON, message: "request body: " + err.Error()}
		if errors.Is(err, api.ErrInvalidLeaseID) {
			e.code = api.CodeInvalidLease
		}
		writeError(w, e)
		return
	}
	if len(req.IDs) == 0 || len(req.IDs) > MaxKeepAliveBatch {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
			message: fmt.Sprintf("ids must hold 1 to %d lease ids, not %d", MaxKeepAliveBatch, len(req.IDs))})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	out := keepAliveBatchResponse{Leases: make([]keepAliveResult, len(req.IDs))}
	for i, id := range req.IDs {
		l, err := lb.KeepAlive(ctx, id)
		if errors.Is(err, consensus.ErrNotLeader) {
			if i == 0 && r.Header.Get(forwardedHeader) == "" && h.opts.Membership != nil {
				h.forwardToLeader(ctx, w, r, http.MethodPost, leasesPath+keepAliveBatchPath, body, "keepalives")
				return
			}
			// Leadership moved in the middle: the rest are for the new
			// leader, which the client's retry finds.
			err = errors.Join(consensus.ErrNoLeader, err)
		}
		if err != nil {
			e := requestError(ctx, err)
			if e.unexpected {
				h.log.Error("http backend error", "path", r.URL.EscapedPath(), "err", err)
			}
			out.Leases[i] = keepAliveResult{ID: id, Error: &errorDetail{Code: e.code, Message: e.message}}
			continue
		}
		out.Leases[i] = keepAliveResult{ID: l.ID, TTLMs: l.TTLMs, RemainingMs: l.RemainingMs}
	}
	h.writeJSON(w, http.StatusOK, out)
}

// decodeStrict decodes b as one JSON value into v, refusing unknown
// fields and anything after the value.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// keepAliveBatcher queues a follower's keepalives for the leader, one
// queue per token (a forwarded request carries its caller's
// Authorization), and sends each queue as batches: one request in flight
// per queue, the next carrying whatever arrived meanwhile.
type keepAliveBatcher struct {
	// timeout bounds each request to the leader (the request timeout).
	timeout time.Duration
	// ask is apiHandler.askLeader, but for tests.
	ask func(ctx context.Context, method, pathAndQuery string, body []byte, authorization, what string) (int, []byte, *apiError)
	mu  sync.Mutex
	// queues holds the queues with a batch in flight, by Authorization.
	queues map[string][]*keepAliveWaiter
	// oneByOne is set once the leader answered the batch route 404 or
	// 405 (a node of an older version): keepalives go one request each.
	oneByOne bool
}

type keepAliveWaiter struct {
	id   kv.LeaseID
	done chan keepAliveOutcome // buffered: the sender never waits
}

type keepAliveOutcome struct {
	lease kv.Lease
	err   *apiError
}

// keepAlive asks the leader to keep lease id alive, in the next batch for
// authorization, and waits for its answer or for ctx.
func (b *keepAliveBatcher) keepAlive(ctx context.Context, authorization string, id kv.LeaseID) (kv.Lease, *apiError) {
	w := &keepAliveWaiter{id: id, done: make(chan keepAliveOutcome, 1)}
	b.mu.Lock()
	if b.oneByOne {
		b.mu.Unlock()
		return b.askOne(ctx, authorization, id)
	}
	if b.queues == nil {
		b.queues = make(map[string][]*keepAliveWaiter)
	}
	queue, flying := b.queues[authorization]
	b.queues[authorization] = append(queue, w)
	b.mu.Unlock()
	if !flying {
		go b.send(authorization)
	}
	select {
	case o := <-w.done:
		return o.lease, o.err
	case <-ctx.Done():
		e := requestError(ctx, ctx.Err())
		return kv.Lease{}, &e
	}
}

// send sends the queue of authorization in batches until it is empty,
// then forgets it.
func (b *keepAliveBatcher) send(authorization string) {
	for {
		b.mu.Lock()
		queue := b.queues[authorization]
		if len(queue) == 0 {
			delete(b.queues, authorization)
			b.mu.Unlock()
			return
		}
		n := min(len(queue), MaxKeepAliveBatch)
		batch := queue[:n:n]
		b.queues[authorization] = queue[n:]
		b.mu.Unlock()
		b.askBatch(authorization, batch)
	}
}

// askOne asks the leader to keep lease id alive, alone.
func (b *keepAliveBatcher) askOne(ctx context.Context, authorization string, id kv.LeaseID) (kv.Lease, *apiError) {
	const what = "a lease's keepalive"
	status, answer, e := b.ask(ctx, http.MethodPost, leasesPath+"/"+id.String()+"/keepalive", nil, authorization, what)
	return leaderLease(id, status, answer, e, what)
}

// askBatch sends one batch to the leader and answers its waiters. A waiter
// that gave up meanwhile finds nobody reading; its lease was renewed
// all the same, as a keepalive whose answer was lost would be.
func (b *keepAliveBatcher) askBatch(authorization string, batch []*keepAliveWaiter) {
	var req keepAliveBatchRequest
	index := make(map[kv.LeaseID]int, len(batch)) // a lease asked twice is sent once
	for _, w := range batch {
		if _, ok := index[w.id]; !ok {
			index[w.id] = len(req.IDs)
			req.IDs = append(req.IDs, w.id)
		}
	}
	answerAll := func(o keepAliveOutcome) {
		for _, w := range batch {
			w.done <- o
		}
	}
	body, err := json.Marshal(req)
	if err != nil {
		answerAll(keepAliveOutcome{err: &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable, message: err.Error()}})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	status, answer, e := b.ask(ctx, http.MethodPost, leasesPath+keepAliveBatchPath, body, authorization, "keepalives")
	if e != nil {
		answerAll(keepAliveOutcome{err: e})
		return
	}
	if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
		// A leader of an older version, without the batch route.
		b.mu.Lock()
		b.oneByOne = true
		b.mu.Unlock()
		for _, w := range batch {
			l, e := b.askOne(ctx, authorization, w.id)
			w.done <- keepAliveOutcome{lease: l, err: e}
		}
		return
	}
	if status != http.StatusOK {
		var eb errorBody
		if err := json.Unmarshal(answer, &eb); err != nil || eb.Error.Code == "" {
			answerAll(keepAliveOutcome{err: &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable,
				message: fmt.Sprintf("forwarding keepalives to the leader: status %d without an error body", status)}})
			return
		}
		answerAll(keepAliveOutcome{err: &apiError{status: status, code: eb.Error.Code, message: eb.Error.Message}})
		return
	}
	var resp keepAliveBatchResponse
	if err := json.Unmarshal(answer, &resp); err != nil || len(resp.Leases) != len(req.IDs) {
		answerAll(keepAliveOutcome{err: &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable,
			message: "forwarding keepalives to the leader: its answer does not decode as one result per lease"}})
		return
	}
	for _, w := range batch {
		i := index[w.id]
		r := resp.Leases[i]
		switch {
		case r.ID != w.id:
			w.done <- keepAliveOutcome{err: &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable,
				message: fmt.Sprintf("forwarding keepalives to the leader: result %d is for lease %s, not %s", i, r.ID, w.id)}}
		case r.Error != nil:
			w.done <- keepAliveOutcome{err: &apiError{status: statusOfCode(r.Error.Code), code: r.Error.Code, message: r.Error.Message}}
		default:
			w.done <- keepAliveOutcome{lease: kv.Lease{ID: r.ID, TTLMs: r.TTLMs, RemainingMs: r.RemainingMs}}
		}
	}
}
