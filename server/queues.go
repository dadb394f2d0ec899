package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// QueueBackend is implemented by a Backend that serves task queues
// (kv.Store with its Lessor). A Backend without it answers the queue
// routes 404.
type QueueBackend interface {
	// Enqueue adds a task and returns its id and creation index.
	Enqueue(ctx context.Context, queue string, data []byte, o kv.EnqueueOptions) (string, int64, error)
	// Claim claims the next ready task, waiting up to wait
	// (kv.ErrNoTask when none became ready).
	Claim(ctx context.Context, queue, worker string, ttl, wait time.Duration) (kv.Claim, error)
	// Heartbeat is the leader's (consensus.ErrNotLeader elsewhere: the
	// handler forwards it to the leader).
	Heartbeat(ctx context.Context, queue, id string, epoch int64) (kv.TaskInfo, error)
	// Complete and Fail end the claim with epoch (kv.ErrStaleEpoch when
	// it is not the task's current claim).
	Complete(ctx context.Context, queue, id string, epoch int64, result []byte) error
	Fail(ctx context.Context, queue, id string, epoch int64, msg string, retryAfter *time.Duration) error
	// Requeue gives a dead task fresh attempts.
	Requeue(ctx context.Context, queue, id string) error
	// TaskState, QueueStats and ListTasks read.
	TaskState(ctx context.Context, queue, id string, c kv.Consistency) (kv.TaskInfo, error)
	QueueStats(ctx context.Context, queue string, c kv.Consistency) (kv.QueueStats, error)
	ListTasks(ctx context.Context, queue, state, after string, limit int, c kv.Consistency) ([]kv.TaskInfo, bool, error)
}

const queuesPath = "/v1/queues"

// defaultTaskList is how many tasks GET /v1/queues/{queue}/tasks lists
// without ?limit.
const defaultTaskList = 100

// serveQueues serves /v1/queues/{queue}[/claim|/tasks[/{id}[/heartbeat|
// /complete|/fail|/requeue]]]; rest is the path after /v1/queues.
func (h *apiHandler) serveQueues(w http.ResponseWriter, r *http.Request, rest string) {
	qb, ok := h.backend.(QueueBackend)
	if !ok {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve queues"})
		return
	}
	query, ok := parseQuery(w, r)
	if !ok {
		return
	}
	parts := strings.Split(strings.TrimPrefix(rest, "/"), "/")
	if rest == "" || rest == "/" || len(parts) > 4 {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound,
			message: "no such route: /v1/queues/{queue}, /claim, /tasks, /tasks/{id}[/heartbeat|/complete|/fail|/requeue]"})
		return
	}
	names := make([]string, len(parts))
	for i, p := range parts {
		n, err := url.PathUnescape(p)
		if err != nil {
			writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: "the path does not percent-decode"})
			return
		}
		names[i] = n
	}
	queue := names[0]
	if err := kv.ValidateKey(queue, api.MaxQueueNameBytes); err != nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey,
			message: "a queue's name is 1 to 256 bytes of UTF-8 without control characters, percent-encoded in the path"})
		return
	}
	route := strings.Join(append([]string{""}, parts[1:min(len(parts), 2)]...), "/")
	if len(parts) >= 3 {
		route += "/{id}"
		if err := kv.ValidateKey(names[2], api.MaxTaskIDBytes); err != nil {
			writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey,
				message: "a task's id is 1 to 256 bytes of UTF-8 without control characters, percent-encoded in the path"})
			return
		}
	}
	if len(parts) == 4 {
		route += "/" + parts[3]
	}
	switch route {
	case "":
		if !methodIn(r.Method, http.MethodGet, http.MethodHead) {
			methodNotAllowed(w, allowRead)
			return
		}
		if h.forwardQueueRead(w, r, query) {
			return
		}
		h.serveRead(w, r, query, func(ctx context.Context, c kv.Consistency) (any, error) {
			return qb.QueueStats(ctx, queue, c)
		})
	case "/claim":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		if h.forwardQueueWrite(w, r, false) {
			return
		}
		h.serveClaim(w, r, qb, queue)
	case "/tasks":
		switch r.Method {
		case http.MethodPost:
			if h.forwardQueueWrite(w, r, false) {
				return
			}
			h.serveEnqueue(w, r, qb, queue)
		case http.MethodGet, http.MethodHead:
			if h.forwardQueueRead(w, r, query) {
				return
			}
			h.serveTaskList(w, r, qb, queue, query)
		default:
			methodNotAllowed(w, "GET, HEAD, POST")
		}
	case "/tasks/{id}":
		if !methodIn(r.Method, http.MethodGet, http.MethodHead) {
			methodNotAllowed(w, allowRead)
			return
		}
		if h.forwardQueueRead(w, r, query) {
			return
		}
		h.serveRead(w, r, query, func(ctx context.Context, c kv.Consistency) (any, error) {
			return qb.TaskState(ctx, queue, names[2], c)
		})
	case "/tasks/{id}/heartbeat", "/tasks/{id}/complete", "/tasks/{id}/fail", "/tasks/{id}/requeue":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		if parts[3] != "heartbeat" && h.forwardQueueWrite(w, r, parts[3] == "requeue") {
			return // a heartbeat goes to the leader's lease clock on its own
		}
		h.serveTaskAction(w, r, qb, queue, names[2], parts[3])
	default:
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "no such route"})
	}
}

// forwardQueueWrite sends a queue write (enqueue, claim, complete, fail,
// requeue) to the leader when this node does not lead, and reports
// whether it answered r; emptyOK lets the body be empty (a requeue's).
// Queue writes carry the proposer's wall clock,
// which decides when delayed tasks and retries become ready; made on the
// leader, that is the leader's clock, as the design asks (a follower
// whose clock ran ahead would otherwise make tasks ready early). Without
// a known leader the answer is 503 no_leader, which a client retries.
func (h *apiHandler) forwardQueueWrite(w http.ResponseWriter, r *http.Request, emptyOK bool) bool {
	if !h.mustForward(r) {
		return false
	}
	var body []byte
	if !emptyOK || r.ContentLength != 0 {
		var ok bool
		if body, ok = h.readValue(w, r); !ok {
			return true
		}
	}
	// A claim may wait (waitMs); the forward waits with it.
	var wait struct {
		WaitMs int64 `json:"waitMs"`
	}
	_ = json.Unmarshal(body, &wait)
	h.forwardAsIs(w, r, http.MethodPost, body, time.Duration(min(max(wait.WaitMs, 0), MaxLockWait.Milliseconds()))*time.Millisecond, "a queue write")
	return true
}

// mustForward reports whether r is for the leader and this node does not
// lead: a request not forwarded already, on a node that knows its
// members.
func (h *apiHandler) mustForward(r *http.Request) bool {
	lb, ok := h.backend.(interface{ IsLeader() bool })
	return ok && h.opts.Membership != nil && r.Header.Get(forwardedHeader) == "" && !lb.IsLeader()
}

// forwardAsIs sends r's path and query, with method and body, to the
// leader and answers with the leader's answer, waiting for it the request
// timeout plus wait; what names it in errors.
func (h *apiHandler) forwardAsIs(w http.ResponseWriter, r *http.Request, method string, body []byte, wait time.Duration, what string) {
	ctx, cancel := context.WithTimeout(r.Context(), wait+h.opts.RequestTimeout)
	defer cancel()
	target := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	h.forwardToLeader(ctx, w, r, method, target, body, what)
}

// forwardQueueRead sends a linearizable queue read (a task, a list, the
// counts) to the leader when this node does not lead, and reports whether
// it answered r. Whether a waiting task is ready or delayed is told by
// the clock of the node that answers: the leader's, whose clock decides
// claims, so that no node reports a delayed task ready early because its
// own clock runs ahead. A ?consistency=local read is answered here, by
// this node's clock.
func (h *apiHandler) forwardQueueRead(w http.ResponseWriter, r *http.Request, query url.Values) bool {
	if query.Get("consistency") == "local" || !h.mustForward(r) {
		return false
	}
	if _, ok := parseConsistency(w, query); !ok {
		return true
	}
	w.Header().Set(ConsistencyHeader, kv.Linearizable.String())
	h.forwardAsIs(w, r, http.MethodGet, nil, 0, "a queue read") // a HEAD's headers are the GET's
	return true
}

func (h *apiHandler) serveEnqueue(w http.ResponseWriter, r *http.Request, qb QueueBackend, queue string) {
	var req api.EnqueueRequest
	if !h.decodeBody(w, r, &req, false) {
		return
	}
	if len(req.Data) == 0 {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidJSON, message: "data is required: the task's payload, any JSON value"})
		return
	}
	o := kv.EnqueueOptions{ID: req.ID, MaxAttempts: req.MaxAttempts, Workflow: req.Workflow}
	if req.DelayMs < 0 || req.DelayMs > api.MaxTaskDelayMs {
		badRequest(w, "delayMs must be 0 to 2592000000 (30 days)")
		return
	}
	o.Delay = time.Duration(req.DelayMs) * time.Millisecond
	if req.RunAt != "" {
		at, err := time.Parse(time.RFC3339Nano, req.RunAt)
		if err != nil {
			badRequest(w, "runAt must be an RFC 3339 time, such as 2026-01-02T15:04:05Z")
			return
		}
		o.RunAt = at
	}
	if req.MaxAttempts < 0 || req.MaxAttempts > api.MaxTaskAttempts {
		badRequest(w, "maxAttempts must be 1 to 1000 (0 or absent: 3)")
		return
	}
	if req.ID != "" {
		if err := kv.ValidateKey(req.ID, api.MaxTaskIDBytes); err != nil {
			writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: "id must be 1 to 256 bytes of UTF-8 without control characters"})
			return
		}
	}
	ctx, cancel, ok := h.writeContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	id, created, err := qb.Enqueue(ctx, queue, req.Data, o)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, api.Enqueued{ID: id, Revision: created})
}

func (h *apiHandler) serveClaim(w http.ResponseWriter, r *http.Request, qb QueueBackend, queue string) {
	var req api.ClaimRequest
	if !h.decodeBody(w, r, &req, false) {
		return
	}
	if err := kv.ValidateKey(req.Worker, api.MaxWorkerBytes); err != nil {
		badRequest(w, "worker is required: 1 to 256 bytes of UTF-8 without control characters naming the worker")
		return
	}
	if req.TTLMs < api.MinLeaseTTLMs || req.TTLMs > api.MaxLeaseTTLMs {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidLease,
			message: "ttlMs must be 1 to 2592000000 (30 days): the claim's lease lives that long without a heartbeat"})
		return
	}
	wait := time.Duration(req.WaitMs) * time.Millisecond
	if req.WaitMs < 0 || wait > MaxLockWait {
		badRequest(w, "waitMs must be 0 (try once) to 600000 (10 minutes)")
		return
	}
	// A claim's wait bounds it (waitContext), not the request timeout.
	ctx, cancel, ok := h.waitContext(w, r, wait)
	if !ok {
		return
	}
	defer cancel()
	claim, err := qb.Claim(ctx, queue, req.Worker, time.Duration(req.TTLMs)*time.Millisecond, wait)
	if errors.Is(err, kv.ErrNoTask) && r.Context().Err() == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, claim)
}

func (h *apiHandler) serveTaskAction(w http.ResponseWriter, r *http.Request, qb QueueBackend, queue, id, action string) {
	var req api.EpochRequest
	if !h.decodeBody(w, r, &req, action == "requeue") {
		return
	}
	if action != "requeue" && req.Epoch < 1 {
		badRequest(w, "epoch is required: the claim's epoch, an integer of at least 1")
		return
	}
	if action == "heartbeat" {
		h.serveHeartbeat(w, r, qb, queue, id, req.Epoch)
		return
	}
	ctx, cancel, ok := h.writeContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	var err error
	switch action {
	case "complete":
		err = qb.Complete(ctx, queue, id, req.Epoch, req.Result)
	case "fail":
		var retry *time.Duration
		if req.RetryAfterMs != nil {
			if *req.RetryAfterMs < 0 || *req.RetryAfterMs > api.MaxTaskDelayMs {
				badRequest(w, "retryAfterMs must be 0 to 2592000000 (30 days)")
				return
			}
			d := time.Duration(*req.RetryAfterMs) * time.Millisecond
			retry = &d
		}
		if len(req.Error) > api.MaxTaskErrorBytes {
			writeError(w, apiError{status: http.StatusRequestEntityTooLarge, code: api.CodeTooLarge, message: "error must be at most 4096 bytes"})
			return
		}
		err = qb.Fail(ctx, queue, id, req.Epoch, req.Error, retry)
	case "requeue":
		err = qb.Requeue(ctx, queue, id)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, struct{}{})
}

// serveHeartbeat keeps a claim alive on the leader's lease clock; on
// another node it is forwarded to the leader (once).
func (h *apiHandler) serveHeartbeat(w http.ResponseWriter, r *http.Request, qb QueueBackend, queue, id string, epoch int64) {
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	info, err := qb.Heartbeat(ctx, queue, id, epoch)
	if errors.Is(err, consensus.ErrNotLeader) {
		if r.Header.Get(forwardedHeader) == "" && h.opts.Membership != nil {
			body, _ := json.Marshal(api.EpochRequest{Epoch: epoch})
			h.forwardToLeader(ctx, w, r, http.MethodPost, r.URL.EscapedPath(), body, "a task's heartbeat")
			return
		}
		err = errors.Join(consensus.ErrNoLeader, err)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeJSON(w, http.StatusOK, info)
}

func (h *apiHandler) serveTaskList(w http.ResponseWriter, r *http.Request, qb QueueBackend, queue string, query url.Values) {
	limit := defaultTaskList
	if s := query.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > kv.MaxTaskList {
			badRequest(w, "limit must be 1 to 1000")
			return
		}
		limit = n
	}
	state := query.Get("state")
	switch state {
	case "", api.TaskReady, api.TaskDelayed, api.TaskClaimed, api.TaskDone, api.TaskDead:
	default:
		badRequest(w, "state must be ready, delayed, claimed, done or dead")
		return
	}
	after := query.Get("after")
	h.serveRead(w, r, query, func(ctx context.Context, c kv.Consistency) (any, error) {
		tasks, more, err := qb.ListTasks(ctx, queue, state, after, limit, c)
		return api.TaskList{Tasks: tasks, More: more}, err
	})
}

// queueRoute is routeOf for a path under /v1/queues/.
func queueRoute(path string) string {
	parts := strings.Split(strings.TrimPrefix(path, queuesPath+"/"), "/")
	switch {
	case len(parts) == 2 && (parts[1] == "claim" || parts[1] == "tasks"):
		return queuesPath + "/{queue}/" + parts[1]
	case len(parts) == 3 && parts[1] == "tasks":
		return queuesPath + "/{queue}/tasks/{id}"
	case len(parts) == 4 && parts[1] == "tasks":
		switch parts[3] {
		case "heartbeat", "complete", "fail", "requeue":
			return queuesPath + "/{queue}/tasks/{id}/" + parts[3]
		}
		return "other"
	case len(parts) == 1:
		return queuesPath + "/{queue}"
	}
	return "other"
}

// isQueueOp reports whether op is a /v1/ws queue operation.
func isQueueOp(op api.Op) bool { return op >= api.OpQueueEnqueue && op <= api.OpTaskList }

// taskListArgs is the JSON argument of OpTaskList: the query of GET
// /v1/queues/{queue}/tasks.
type taskListArgs struct {
	State string `json:"state"`
	After string `json:"after"`
	Limit int    `json:"limit"`
}

// wsQueue serves a /v1/ws queue operation through the HTTP handler of its
// route (serveQueues, wsThroughHTTP): the JSON argument is the route's
// body.
func (h *apiHandler) wsQueue(ctx context.Context, req api.Request) (api.Response, *apiError) {
	base := queuesPath + "/" + url.PathEscape(req.Key)
	task := base + "/tasks/" + url.PathEscape(req.Task)
	method, path, body := http.MethodPost, "", req.Value
	query := url.Values{}
	switch req.Op {
	case api.OpQueueEnqueue:
		path = base + "/tasks"
	case api.OpQueueClaim:
		path = base + "/claim"
	case api.OpTaskHeartbeat:
		path = task + "/heartbeat"
	case api.OpTaskComplete:
		path = task + "/complete"
	case api.OpTaskFail:
		path = task + "/fail"
	case api.OpTaskRequeue:
		path = task + "/requeue"
	case api.OpTaskGet:
		method, path, body = http.MethodGet, task, nil
	case api.OpQueueStats:
		method, path, body = http.MethodGet, base, nil
	case api.OpTaskList:
		method, path, body = http.MethodGet, base+"/tasks", nil
		if req.Value != nil {
			var a taskListArgs
			if err := json.Unmarshal(req.Value, &a); err != nil {
				return api.Response{}, &apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
					message: "list tasks: the argument is {\"state\",\"after\",\"limit\"}: " + err.Error()}
			}
			if a.State != "" {
				query.Set("state", a.State)
			}
			if a.After != "" {
				query.Set("after", a.After)
			}
			if a.Limit != 0 {
				query.Set("limit", strconv.Itoa(a.Limit))
			}
		}
	}
	if req.Consistency == api.Local {
		query.Set("consistency", "local")
	}
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	return h.wsThroughHTTP(ctx, req, method, path, body, func(w http.ResponseWriter, r *http.Request) {
		h.serveQueues(w, r, strings.TrimPrefix(r.URL.EscapedPath(), queuesPath))
	})
}

// wsThroughHTTP serves a /v1/ws operation with an HTTP route's handler
// (serve), so that both transports check, forward to the leader and
// answer alike: the request carries the connection's authorization and
// the operation's request id and fence as headers; the answer is the
// route's JSON (nil for a 204), an error its code.
func (h *apiHandler) wsThroughHTTP(ctx context.Context, req api.Request, method, target string, body []byte,
	serve func(http.ResponseWriter, *http.Request)) (api.Response, *apiError) {
	r, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return api.Response{}, &apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: err.Error()}
	}
	r.ContentLength = int64(len(body))
	if a := accessFrom(ctx).authorization; a != "" {
		r.Header.Set("Authorization", a) // for a request forwarded to the leader
	}
	if req.ReqID.Client != "" {
		r.Header.Set(ClientIDHeader, req.ReqID.Client)
		r.Header.Set(RequestSeqHeader, strconv.FormatUint(req.ReqID.Seq, 10))
	}
	if req.Fence.Lock != "" {
		r.Header.Set(FenceHeader, req.Fence.Lock+":"+strconv.FormatInt(req.Fence.Token, 10))
	}
	var rec bufferedAnswer
	serve(&rec, r)
	switch rec.status {
	case http.StatusOK:
		return api.Response{JSON: bytes.TrimSuffix(rec.body.Bytes(), []byte("\n"))}, nil
	case http.StatusNoContent:
		return api.Response{}, nil
	}
	var eb errorBody
	if err := json.Unmarshal(rec.body.Bytes(), &eb); err != nil || eb.Error.Code == "" {
		return api.Response{}, &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable,
			message: fmt.Sprintf("%s: status %d without an error body", req.Op, rec.status), unexpected: true}
	}
	return api.Response{}, &apiError{status: rec.status, code: eb.Error.Code, message: eb.Error.Message}
}

// bufferedAnswer is an http.ResponseWriter that keeps the answer, for
// wsThroughHTTP.
type bufferedAnswer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedAnswer) Header() http.Header {
	if b.header == nil {
		b.header = http.Header{}
	}
	return b.header
}

func (b *bufferedAnswer) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedAnswer) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}
