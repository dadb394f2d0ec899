package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
)

// The queue routes end to end on a three-node cluster, asked of a
// follower: enqueue (idempotent by id), claim with the contract's shape,
// heartbeat (forwarded to the leader), complete, a late worker refused
// with 409 stale_epoch after its claim's lease expired and the task was
// claimed again, 204 when nothing is ready, fail to dead, list, requeue,
// counts, and bad input.
func TestQueuesOverHTTP(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	follower := c.forwardingFollower(leader)
	base := "http://" + c.https[follower] + "/v1/queues/jobs"
	post := func(path, body string) apiResponse { return call(t, http.MethodPost, base+path, []byte(body)) }
	expect := func(r apiResponse, status int, code string) {
		t.Helper()
		if r.status != status || (code != "" && leaseErrCode(t, r) != code) {
			t.Fatalf("got %d %s, want %d %s", r.status, r.body, status, code)
		}
	}

	r := post("/tasks", `{"id":"a","data":{"n":1},"maxAttempts":2,"workflow":"wf1"}`)
	expect(r, http.StatusOK, "")
	first := decodeAs[api.Enqueued](t, r)
	if first.ID != "a" || first.Revision < 1 {
		t.Fatalf("enqueue answered %s", r.body)
	}
	r = post("/tasks", `{"id":"a","data":{"n":2}}`)
	expect(r, http.StatusOK, "")
	if again := decodeAs[api.Enqueued](t, r); again != first {
		t.Fatalf("the same id again answered %s, want %+v", r.body, first)
	}
	r = post("/tasks", `{"data":"b","runAt":"2001-01-01T00:00:00Z","maxAttempts":2}`)
	expect(r, http.StatusOK, "")
	bID := decodeAs[api.Enqueued](t, r).ID

	// The claim's shape, as outside scripts read it.
	r = post("/claim", `{"worker":"w1","ttlMs":60000}`)
	expect(r, http.StatusOK, "")
	var raw struct {
		Task struct {
			ID       string          `json:"id"`
			Data     json.RawMessage `json:"data"`
			Attempt  int             `json:"attempt"`
			Workflow string          `json:"workflow"`
		} `json:"task"`
		Epoch int64  `json:"epoch"`
		Lease string `json:"lease"`
	}
	if err := json.Unmarshal(r.body, &raw); err != nil || raw.Task.ID != "a" || string(raw.Task.Data) != `{"n":1}` ||
		raw.Task.Attempt != 1 || raw.Task.Workflow != "wf1" || raw.Epoch < 1 || raw.Lease == "" {
		t.Fatalf("claim answered %s (%v)", r.body, err)
	}
	epochA := raw.Epoch
	hb := func(id string, epoch int64) apiResponse {
		return post("/tasks/"+id+"/heartbeat", fmt.Sprintf(`{"epoch":%d}`, epoch))
	}
	expect(hb("a", epochA), http.StatusOK, "")
	expect(hb("a", epochA+1), http.StatusConflict, api.CodeStaleEpoch)
	expect(post("/tasks/a/complete", fmt.Sprintf(`{"epoch":%d,"result":{"ok":true}}`, epochA)), http.StatusOK, "")
	for _, action := range []string{"complete", "fail", "heartbeat"} {
		expect(post("/tasks/a/"+action, fmt.Sprintf(`{"epoch":%d,"error":"late"}`, epochA)), http.StatusConflict, api.CodeStaleEpoch)
	}
	r = call(t, http.MethodGet, base+"/tasks/a", nil)
	expect(r, http.StatusOK, "")
	var state struct {
		ID      string          `json:"id"`
		State   string          `json:"state"`
		Attempt int             `json:"attempt"`
		Epoch   int64           `json:"epoch"`
		Result  json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(r.body, &state); err != nil || state.State != "done" || state.Epoch != epochA ||
		state.Attempt != 1 || string(state.Result) != `{"ok":true}` {
		t.Fatalf("done task answered %s", r.body)
	}

	// A worker that stops heartbeating loses the task: it is claimed
	// again with a higher epoch, and the late worker is refused.
	r = post("/claim", `{"worker":"w1","ttlMs":1000}`)
	expect(r, http.StatusOK, "")
	late := decodeAs[api.Claim](t, r)
	if late.Task.ID != bID {
		t.Fatalf("second claim %s, want task %s", r.body, bID)
	}
	r = post("/claim", `{"worker":"w2","ttlMs":60000,"waitMs":20000}`)
	expect(r, http.StatusOK, "")
	taken := decodeAs[api.Claim](t, r)
	if taken.Task.ID != bID || taken.Epoch <= late.Epoch || taken.Task.Attempt != 2 {
		t.Fatalf("claim after the expiry %s, want task %s above epoch %d", r.body, bID, late.Epoch)
	}
	expect(post("/tasks/"+bID+"/complete", fmt.Sprintf(`{"epoch":%d}`, late.Epoch)), http.StatusConflict, api.CodeStaleEpoch)
	expect(hb(bID, late.Epoch), http.StatusConflict, api.CodeStaleEpoch)
	// Its last attempt fails: dead, listed, requeued.
	expect(post("/tasks/"+bID+"/fail", fmt.Sprintf(`{"epoch":%d,"error":"boom"}`, taken.Epoch)), http.StatusOK, "")
	r = call(t, http.MethodGet, base+"/tasks?state=dead", nil)
	expect(r, http.StatusOK, "")
	if l := decodeAs[api.TaskList](t, r); len(l.Tasks) != 1 || l.Tasks[0].ID != bID || l.Tasks[0].Error != "boom" {
		t.Fatalf("dead tasks %s", r.body)
	}
	r = call(t, http.MethodGet, base, nil)
	expect(r, http.StatusOK, "")
	if st := decodeAs[api.QueueStats](t, r); st != (api.QueueStats{Queue: "jobs", Done: 1, Dead: 1}) {
		t.Fatalf("counts %s", r.body)
	}
	expect(post("/tasks/"+bID+"/requeue", ``), http.StatusOK, "")
	expect(post("/tasks/"+bID+"/requeue", ``), http.StatusConflict, api.CodeTaskNotDead)
	r = post("/claim", `{"worker":"w3","ttlMs":60000}`)
	expect(r, http.StatusOK, "")
	again := decodeAs[api.Claim](t, r)
	if again.Epoch <= taken.Epoch || again.Task.Attempt != 1 {
		t.Fatalf("claim after the requeue %s", r.body)
	}
	// Nothing ready within the wait: 204.
	start := time.Now()
	r = post("/claim", `{"worker":"w1","ttlMs":60000,"waitMs":100}`)
	expect(r, http.StatusNoContent, "")
	if time.Since(start) < 100*time.Millisecond || len(r.body) != 0 {
		t.Fatalf("204 after %v with %q", time.Since(start), r.body)
	}
	// A delayed task is claimed by a waiting claim once its time comes.
	expect(post("/tasks", `{"id":"soon","data":1,"delayMs":300}`), http.StatusOK, "")
	r = call(t, http.MethodGet, base+"/tasks/soon", nil)
	if decodeAs[api.TaskInfo](t, r).State != "delayed" {
		t.Fatalf("a delayed task: %s", r.body)
	}
	r = post("/claim", `{"worker":"w1","ttlMs":60000,"waitMs":20000}`)
	expect(r, http.StatusOK, "")
	if decodeAs[api.Claim](t, r).Task.ID != "soon" {
		t.Fatalf("claimed %s", r.body)
	}

	// Bad input: typed errors, never a 5xx.
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{http.MethodPost, "/tasks", `{"data":`, 400, api.CodeInvalidJSON},
		{http.MethodPost, "/tasks", `{"id":"x"}`, 400, api.CodeInvalidJSON},
		{http.MethodPost, "/tasks", `{"data":1,"runAt":"tomorrow"}`, 400, api.CodeBadRequest},
		{http.MethodPost, "/tasks", `{"data":1,"delayMs":-1}`, 400, api.CodeBadRequest},
		{http.MethodPost, "/tasks", `{"data":1,"maxAttempts":1001}`, 400, api.CodeBadRequest},
		{http.MethodPost, "/tasks", `{"data":1,"surprise":1}`, 400, api.CodeInvalidJSON},
		{http.MethodPost, "/claim", `{"ttlMs":1000}`, 400, api.CodeBadRequest},
		{http.MethodPost, "/claim", `{"worker":"w","ttlMs":0}`, 400, api.CodeInvalidLease},
		{http.MethodPost, "/claim", `{"worker":"w","ttlMs":1000,"waitMs":-5}`, 400, api.CodeBadRequest},
		{http.MethodPost, "/tasks/nope/complete", `{"epoch":3}`, 404, api.CodeTaskNotFound},
		{http.MethodPost, "/tasks/nope/heartbeat", `{"epoch":3}`, 404, api.CodeTaskNotFound},
		{http.MethodPost, "/tasks/a/complete", `{}`, 400, api.CodeBadRequest},
		{http.MethodPost, "/tasks/a/fail", `{"epoch":1,"retryAfterMs":-1}`, 400, api.CodeBadRequest},
		{http.MethodGet, "/tasks/nope", ``, 404, api.CodeTaskNotFound},
		{http.MethodGet, "/tasks?limit=0", ``, 400, api.CodeBadRequest},
		{http.MethodGet, "/tasks?state=odd", ``, 400, api.CodeBadRequest},
		{http.MethodGet, "/tasks/a/other", ``, 404, api.CodeNotFound},
		{http.MethodDelete, "/tasks/a", ``, 405, api.CodeMethodNotAllowed},
		{http.MethodGet, "/claim", ``, 405, api.CodeMethodNotAllowed},
		{http.MethodGet, "/tasks/%ff", ``, 400, api.CodeInvalidKey},
	} {
		r := call(t, tc.method, base+tc.path, []byte(tc.body))
		if r.status != tc.status || leaseErrCode(t, r) != tc.code {
			t.Errorf("%s %s %s: %d %s, want %d %s", tc.method, tc.path, tc.body, r.status, r.body, tc.status, tc.code)
		}
	}
	testwait.For(t, 5*time.Second, "the counts to settle", func() bool {
		r := call(t, http.MethodGet, base, nil)
		return decodeAs[api.QueueStats](t, r).Claimed == 2
	})
}

// Metrics and spans name queue routes by template, never by queue or id.
func TestQueueRouteTemplates(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/queues/q":                     "/v1/queues/{queue}",
		"/v1/queues/q/claim":               "/v1/queues/{queue}/claim",
		"/v1/queues/q/tasks":               "/v1/queues/{queue}/tasks",
		"/v1/queues/q/tasks/t1":            "/v1/queues/{queue}/tasks/{id}",
		"/v1/queues/q/tasks/t1/heartbeat":  "/v1/queues/{queue}/tasks/{id}/heartbeat",
		"/v1/queues/q/tasks/t1/secret-id":  "other",
		"/v1/queues/q/tasks/t1/fail/extra": "other",
	} {
		if got := routeOf(path); got != want {
			t.Errorf("routeOf(%q) = %q, want %q", path, got, want)
		}
	}
}

// The queue operations of /v1/ws on a follower: their JSON arguments and
// answers are the HTTP routes' bodies; a heartbeat is forwarded to the
// leader; a stale epoch is the stale_epoch code; a claim that found
// nothing answers nil; a number between the groups of operations is a
// bad request.
func TestQueuesOverWS(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	follower := c.forwardingFollower(leader)
	w := dialWS(t, "ws://"+c.https[follower]+wsPath)
	jsonOf := func(r wsTestResponse) []byte { return wsJSON(t, r) }
	var enq api.Enqueued
	if err := json.Unmarshal(jsonOf(w.call(uint64(1), api.OpQueueEnqueue, "ws", []byte(`{"id":"a","data":[1,2]}`))), &enq); err != nil || enq.ID != "a" {
		t.Fatalf("enqueue: %+v %v", enq, err)
	}
	var claim api.Claim
	if err := json.Unmarshal(jsonOf(w.call(uint64(2), api.OpQueueClaim, "ws", []byte(`{"worker":"w","ttlMs":60000}`))), &claim); err != nil ||
		claim.Task.ID != "a" || claim.Epoch < 1 || string(claim.Task.Data) != `[1,2]` {
		t.Fatalf("claim: %+v %v", claim, err)
	}
	epoch := []byte(fmt.Sprintf(`{"epoch":%d}`, claim.Epoch))
	var hb api.TaskInfo
	if err := json.Unmarshal(jsonOf(w.call(uint64(3), api.OpTaskHeartbeat, "ws", "a", epoch)), &hb); err != nil || hb.State != "claimed" {
		t.Fatalf("heartbeat: %+v %v", hb, err)
	}
	if r := w.call(uint64(4), api.OpTaskComplete, "ws", "a", epoch); !r.ok || r.result != nil {
		t.Fatalf("complete: %+v", r)
	}
	if r := w.call(uint64(5), api.OpTaskComplete, "ws", "a", epoch); r.ok || r.code != api.CodeStaleEpoch {
		t.Fatalf("complete again: %+v", r)
	}
	if r := w.call(uint64(6), api.OpQueueClaim, "ws", []byte(`{"worker":"w","ttlMs":60000,"waitMs":50}`)); !r.ok || r.result != nil {
		t.Fatalf("claim of an empty queue: %+v", r)
	}
	var info api.TaskInfo
	if err := json.Unmarshal(jsonOf(w.call(uint64(7), api.OpTaskGet, "ws", "a", 1)), &info); err != nil || info.State != "done" || info.Epoch != claim.Epoch {
		t.Fatalf("get: %+v %v", info, err)
	}
	var st api.QueueStats
	if err := json.Unmarshal(jsonOf(w.call(uint64(8), api.OpQueueStats, "ws")), &st); err != nil || st.Done != 1 {
		t.Fatalf("stats: %+v %v", st, err)
	}
	var list api.TaskList
	if err := json.Unmarshal(jsonOf(w.call(uint64(9), api.OpTaskList, "ws", []byte(`{"state":"done","limit":5}`))), &list); err != nil || len(list.Tasks) != 1 {
		t.Fatalf("list: %+v %v", list, err)
	}
	if r := w.call(uint64(10), api.OpTaskRequeue, "ws", "a"); r.ok || r.code != api.CodeTaskNotDead {
		t.Fatalf("requeue of a done task: %+v", r)
	}
	if r := w.call(uint64(11), api.OpTaskGet, "ws", "nope"); r.ok || r.code != api.CodeTaskNotFound {
		t.Fatalf("get of an unknown task: %+v", r)
	}
	if r := w.call(uint64(12), api.Op(31)); r.ok || r.code != api.CodeBadRequest {
		t.Fatalf("op 31 (between the groups of operations): %+v", r)
	}
}

// Queue writes made on a follower carry the leader's clock: they are
// forwarded to the leader. A follower whose clock runs an hour ahead
// cannot make a task delayed by half an hour ready early, and a task it
// enqueues with a delay is delayed by the leader's clock.
func TestQueueWritesCarryTheLeadersClock(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	follower := c.forwardingFollower(leader)
	c.servers[follower].Store().UseClock(func() time.Time { return time.Now().Add(time.Hour) })
	onLeader := "http://" + c.https[leader] + "/v1/queues/clock"
	onFollower := "http://" + c.https[follower] + "/v1/queues/clock"
	if r := call(t, http.MethodPost, onLeader+"/tasks", []byte(`{"id":"later","data":1,"delayMs":1800000}`)); r.status != http.StatusOK {
		t.Fatalf("enqueue: %d %s", r.status, r.body)
	}
	// Without forwarding, this claim would carry the follower's clock,
	// an hour ahead, and take the task.
	if r := call(t, http.MethodPost, onFollower+"/claim", []byte(`{"worker":"w","ttlMs":5000,"waitMs":0}`)); r.status != http.StatusNoContent {
		t.Fatalf("a claim on the follower whose clock is ahead: %d %s, want 204", r.status, r.body)
	}
	if r := call(t, http.MethodPost, onFollower+"/tasks", []byte(`{"id":"soon","data":2,"delayMs":60000}`)); r.status != http.StatusOK {
		t.Fatalf("enqueue on the follower: %d %s", r.status, r.body)
	}
	r := call(t, http.MethodGet, onLeader+"/tasks/soon", nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"state":"delayed"`) {
		t.Fatalf("a task the follower enqueued with a minute's delay: %d %s, want delayed", r.status, r.body)
	}
	if r := call(t, http.MethodPost, onFollower+"/claim", []byte(`{"worker":"w","ttlMs":5000,"waitMs":0}`)); r.status != http.StatusNoContent {
		t.Fatalf("a second claim on the follower: %d %s, want 204", r.status, r.body)
	}
}

// TestForwardedWritesKeepFenceAndRequestID: a queue write a follower
// forwards to the leader keeps its fence and its exactly-once id. Before,
// the leader applied a fenced write unfenced, and a retry twice.
func TestForwardedWritesKeepFenceAndRequestID(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	follower := c.forwardingFollower(leader)
	base := "http://" + c.https[follower] + "/v1/queues/fenced"
	post := func(path, body string, hdr ...string) apiResponse {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return apiResponse{status: resp.StatusCode, body: b}
	}
	if r := post("/tasks", `{"id":"a","data":1}`, FenceHeader, "nobody-holds-this:7"); r.status != http.StatusPreconditionFailed ||
		!strings.Contains(string(r.body), api.CodeFenced) {
		t.Fatalf("a fenced enqueue on a follower, the lock not held: %d %s, want 412 fenced", r.status, r.body)
	}
	if r := post("/tasks", `{"id":"b","data":1}`, ClientIDHeader, "c1", RequestSeqHeader, "1"); r.status != http.StatusOK {
		t.Fatalf("enqueue: %d %s", r.status, r.body)
	}
	// The same request id again is a retry: answered, not applied.
	if r := post("/tasks", `{"id":"c","data":1}`, ClientIDHeader, "c1", RequestSeqHeader, "1"); r.status != http.StatusOK {
		t.Fatalf("retry: %d %s", r.status, r.body)
	}
	for id, want := range map[string]int{"a": http.StatusNotFound, "b": http.StatusOK, "c": http.StatusNotFound} {
		if r := call(t, http.MethodGet, "http://"+c.https[leader]+"/v1/queues/fenced/tasks/"+id, nil); r.status != want {
			t.Errorf("task %s on the leader: %d %s, want %d", id, r.status, r.body, want)
		}
	}
}
