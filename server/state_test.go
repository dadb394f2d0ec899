package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// localRaft applies each proposal at once to its machine: one node's log
// without a network. dup, when set, applies every proposal twice (a retry
// that reached the log again).
type localRaft struct {
	mu      sync.Mutex
	index   uint64
	machine *kv.Machine
	dup     bool
}

func (l *localRaft) Propose(_ context.Context, cmd []byte) (any, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.index++
	r := l.machine.Apply(l.index, cmd)
	if l.dup {
		l.index++
		r = l.machine.Apply(l.index, cmd)
	}
	return r, nil
}
func (l *localRaft) LinearizableRead(context.Context) error { return nil }
func (l *localRaft) Status() consensus.Status               { return consensus.Status{NodeID: "local"} }
func (l *localRaft) Ready() error                           { return nil }

func newLocalStore(opts ...kv.Option) *kv.Store {
	m := kv.NewMachine(opts...)
	return kv.NewStore(&localRaft{machine: m}, m)
}

// request serves one request with headers through h.
func request(h http.Handler, method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	var req *http.Request
	if body == "" {
		req = httptest.NewRequest(method, target, nil)
	} else {
		req = httptest.NewRequest(method, target, strings.NewReader(body))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// codeOf returns the error code of a response, "" for a success.
func codeOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if rec.Code < 300 {
		return ""
	}
	return errorCode(t, rec)
}

func TestHTTPStateRoutes(t *testing.T) {
	store := newLocalStore(kv.WithMaxKeys(6))
	h := NewHandler(store, HTTPOptions{})
	steps := []struct {
		method, target, body string
		hdr                  []string
		status               int
		code                 string
		contains             string
	}{
		// If-None-Match: * creates only.
		{"PUT", "/v1/kv/a", `1`, []string{"If-None-Match", "*"}, 200, "", `"revision":1`},
		{"PUT", "/v1/kv/a", `2`, []string{"If-None-Match", "*"}, 412, api.CodePreconditionFailed, ""},
		{"PUT", "/v1/kv/a", `2`, []string{"If-None-Match", `"1"`}, 400, api.CodeBadRequest, ""},
		// If-Match: revision, bare or quoted as the ETag.
		{"PUT", "/v1/kv/a", `2`, []string{"If-Match", "7"}, 412, api.CodePreconditionFailed, ""},
		{"PUT", "/v1/kv/a", `2`, []string{"If-Match", `"1"`}, 200, "", `"revision":2`},
		{"PUT", "/v1/kv/a", `3`, []string{"If-Match", "x"}, 400, api.CodeBadRequest, ""},
		{"PUT", "/v1/kv/a", `3`, []string{"If-Match", "2", "If-None-Match", "*"}, 400, api.CodeBadRequest, ""},
		{"PUT", "/v1/kv/missing", `3`, []string{"If-Match", "2"}, 412, api.CodePreconditionFailed, ""},
		{"DELETE", "/v1/kv/a", "", []string{"If-Match", "1"}, 412, api.CodePreconditionFailed, ""},
		{"GET", "/v1/kv/a", "", nil, 200, "", `"value":2`},
		// Transactions.
		{"POST", "/v1/txn", `{"ops":[{"op":"put","key":"b","value":{"x":1},"ifRevision":0},{"op":"delete","key":"a","ifRevision":2}]}`, nil, 200, "", `"revision":3`},
		{"POST", "/v1/txn", `{"ops":[{"op":"put","key":"c","value":1},{"op":"put","key":"b","value":2,"ifRevision":1}]}`, nil, 412, api.CodePreconditionFailed, ""},
		{"POST", "/v1/txn", `{"ops":[{"op":"delete","key":"nope"}]}`, nil, 404, api.CodeKeyNotFound, ""},
		{"POST", "/v1/txn", `{"ops":[{"op":"put","key":"c","value":1},{"op":"put","key":"c","value":2}]}`, nil, 400, api.CodeBadRequest, ""},
		{"POST", "/v1/txn", `{"ops":[]}`, nil, 400, api.CodeBadRequest, ""},
		{"POST", "/v1/txn", `{"ops":[{"op":"put","key":"c"}]}`, nil, 400, api.CodeInvalidJSON, ""},
		{"POST", "/v1/txn", `{"ops":[{"op":"cas","key":"c"}]}`, nil, 400, api.CodeBadRequest, ""},
		{"POST", "/v1/txn", `{"ops":[{"op":"put","key":"","value":1}]}`, nil, 400, api.CodeInvalidKey, ""},
		{"POST", "/v1/txn", `{"ops":[{"op":"put","key":"c","value":1}],"extra":1}`, nil, 400, api.CodeBadRequest, ""},
		{"POST", "/v1/txn", `[1]`, nil, 400, api.CodeBadRequest, ""},
		{"GET", "/v1/txn", "", nil, 405, api.CodeMethodNotAllowed, ""},
		// Workflows.
		{"GET", "/v1/workflows", "", nil, 200, "", `"workflows":[]`},
		{"POST", "/v1/workflows", `{"id":"p","name":"Data Processing","progress":0}`, nil, 201, "", `"id":"p"`},
		{"POST", "/v1/workflows", `{"id":"p"}`, nil, 409, api.CodeInvalidTransition, ""},
		{"POST", "/v1/workflows", `{"name":"no id"}`, nil, 400, api.CodeInvalidKey, ""},
		{"POST", "/v1/workflows", `[1]`, nil, 400, api.CodeInvalidJSON, ""},
		{"POST", "/v1/workflows", `{"id":"a/b"}`, nil, 400, api.CodeInvalidKey, ""},
		{"PATCH", "/v1/workflows/p", `{"progress":0.5}`, nil, 200, "", `"id":"p"`},
		{"PATCH", "/v1/workflows/q", `{"progress":0.5}`, nil, 404, api.CodeWorkflowNotFound, ""},
		{"PATCH", "/v1/workflows/p", `7`, nil, 400, api.CodeInvalidJSON, ""},
		{"GET", "/v1/workflows/p", "", nil, 200, "", `"status":"running"`},
		{"GET", "/v1/workflows/q", "", nil, 404, api.CodeWorkflowNotFound, ""},
		{"POST", "/v1/workflows/p/stop", "", nil, 200, "", `"id":"p"`},
		{"POST", "/v1/workflows/p/stop", "", nil, 409, api.CodeInvalidTransition, ""},
		{"PATCH", "/v1/workflows/p", `{"progress":1}`, nil, 409, api.CodeInvalidTransition, ""},
		{"POST", "/v1/workflows/q/stop", `{"reason":"x"}`, nil, 404, api.CodeWorkflowNotFound, ""},
		{"GET", "/v1/workflows/p/stop", "", nil, 405, api.CodeMethodNotAllowed, ""},
		{"POST", "/v1/workflows/p/pause", "", nil, 404, api.CodeNotFound, ""},
		{"DELETE", "/v1/workflows/p", "", nil, 405, api.CodeMethodNotAllowed, ""},
		{"GET", "/v1/workflows/a%2Fb", "", nil, 400, api.CodeInvalidKey, ""},
		{"GET", "/v1/workflowsx", "", nil, 404, api.CodeNotFound, ""},
		{"GET", "/v1/kv/workflow:p", "", nil, 200, "", `"status":"stopped"`},
		// Application nodes.
		{"POST", "/v1/nodes", `{"id":"app-1","zone":"eu"}`, nil, 200, "", `"id":"app-1"`},
		{"GET", "/v1/nodes", "", nil, 200, "", `"zone":"eu"`},
		{"DELETE", "/v1/nodes/app-1", "", nil, 200, "", `"id":"app-1"`},
		{"DELETE", "/v1/nodes/app-1", "", nil, 404, api.CodeNodeNotFound, ""},
		{"GET", "/v1/nodes/app-1", "", nil, 405, api.CodeMethodNotAllowed, ""},
		// State full (limit 6 here): b, workflow:p, then 4 more fit.
		{"POST", "/v1/txn", `{"ops":[{"op":"put","key":"f1","value":1},{"op":"put","key":"f2","value":1},{"op":"put","key":"f3","value":1},{"op":"put","key":"f4","value":1}]}`, nil, 200, "", ""},
		{"PUT", "/v1/kv/f5", `1`, nil, 422, api.CodeStateFull, ""},
		{"POST", "/v1/nodes", `{"id":"app-2"}`, nil, 422, api.CodeStateFull, ""},
		{"PUT", "/v1/kv/f1", `2`, nil, 200, "", ""},
		{"GET", "/v1/stats", "", nil, 200, "", `"keys":6`},
		// Request ids.
		{"PUT", "/v1/kv/f1", `3`, []string{ClientIDHeader, "c"}, 400, api.CodeBadRequest, ""},
		{"PUT", "/v1/kv/f1", `3`, []string{ClientIDHeader, "c", RequestSeqHeader, "0"}, 400, api.CodeBadRequest, ""},
		{"PUT", "/v1/kv/f1", `3`, []string{ClientIDHeader, strings.Repeat("c", 200), RequestSeqHeader, "1"}, 400, api.CodeBadRequest, ""},
	}
	for i, s := range steps {
		rec := request(h, s.method, s.target, s.body, s.hdr...)
		if rec.Code != s.status || codeOf(t, rec) != s.code || !strings.Contains(rec.Body.String(), s.contains) {
			t.Fatalf("step %d: %s %s %v: %d %s; want %d %q containing %q", i, s.method, s.target, s.hdr, rec.Code, rec.Body, s.status, s.code, s.contains)
		}
	}
	rec := request(h, "GET", "/v1/kv/b", "")
	if rec.Header().Get("ETag") != `"3"` {
		t.Fatalf("ETag %q", rec.Header().Get("ETag"))
	}
	// A conditional put with the ETag from a GET.
	if rec := request(h, "PUT", "/v1/kv/b", `5`, "If-Match", rec.Header().Get("ETag")); rec.Code != 200 {
		t.Fatalf("put with the GET's ETag: %d %s", rec.Code, rec.Body)
	}
}

// TestIfMatchStar: If-Match: * writes or deletes only a key that exists,
// at whatever revision.
func TestIfMatchStar(t *testing.T) {
	h := NewHandler(newLocalStore(), HTTPOptions{})
	for i, s := range []struct {
		method, target, body string
		status               int
		code                 string
	}{
		{"PUT", "/v1/kv/a", `1`, 412, api.CodePreconditionFailed},
		{"DELETE", "/v1/kv/a", "", 412, api.CodePreconditionFailed},
		{"PUT", "/v1/kv/a", `1`, 200, ""}, // unconditional
		{"PUT", "/v1/kv/a", `2`, 200, ""},
		{"DELETE", "/v1/kv/a", "", 200, ""},
		{"GET", "/v1/kv/a", "", 404, api.CodeKeyNotFound},
	} {
		var hdr []string
		if i != 2 && s.method != "GET" {
			hdr = []string{"If-Match", "*"}
		}
		rec := request(h, s.method, s.target, s.body, hdr...)
		if rec.Code != s.status || codeOf(t, rec) != s.code {
			t.Fatalf("step %d: %s %s %v: %d %s; want %d %q", i, s.method, s.target, hdr, rec.Code, rec.Body, s.status, s.code)
		}
	}
}

func TestHTTPRequestIDAppliesOnce(t *testing.T) {
	m := kv.NewMachine()
	raft := &localRaft{machine: m}
	h := NewHandler(kv.NewStore(raft, m), HTTPOptions{})
	hdr := []string{ClientIDHeader, "curl-1", RequestSeqHeader, "1"}
	first := request(h, "PUT", "/v1/kv/k", `"v"`, hdr...)
	raft.dup = true // the retry reaches the log twice too
	again := request(h, "PUT", "/v1/kv/k", `"other"`, hdr...)
	if first.Code != 200 || again.Code != 200 || first.Body.String() != again.Body.String() {
		t.Fatalf("first %d %s, retry %d %s", first.Code, first.Body, again.Code, again.Body)
	}
	if it, _ := m.Get("k"); string(it.Value) != `"v"` || it.Version != 1 {
		t.Fatalf("k = %+v: the retry was applied", it)
	}
	// A failed request's retry gets the same failure.
	hdr2 := []string{ClientIDHeader, "curl-1", RequestSeqHeader, "2"}
	a := request(h, "POST", "/v1/workflows/none/stop", "", hdr2...)
	b := request(h, "POST", "/v1/workflows/none/stop", "", hdr2...)
	if a.Code != 404 || b.Code != 404 || a.Body.String() != b.Body.String() {
		t.Fatalf("retried failure: %d %s / %d %s", a.Code, a.Body, b.Code, b.Body)
	}
}

func TestWSStateOperations(t *testing.T) {
	m := kv.NewMachine()
	raft := &localRaft{machine: m}
	_, url := wsTestServer(t, kv.NewStore(raft, m), HTTPOptions{})
	w := dialWS(t, url)
	rev := func(r wsTestResponse, want int64) {
		t.Helper()
		if !r.ok || toInt(t, r.result) != want {
			t.Fatalf("answer %+v, want revision %d", r, want)
		}
	}
	rev(w.call(1, api.OpPut, "a", []byte(`1`), nil, 0), 1) // create only
	wantWSError(t, w.call(2, api.OpPut, "a", []byte(`2`), nil, 0), api.CodePreconditionFailed)
	rev(w.call(3, api.OpPut, "a", []byte(`2`), nil, 1), 2) // if revision 1
	wantWSError(t, w.call(4, api.OpDelete, "a", nil, 1), api.CodePreconditionFailed)
	rev(w.call(5, api.OpTxn, []any{[]any{1, "b", []byte(`{"x":1}`), 0}, []any{2, "a", 2}}), 3)
	wantWSError(t, w.call(6, api.OpTxn, []any{[]any{2, "a"}}), api.CodeKeyNotFound)
	wantWSError(t, w.call(7, api.OpTxn, []any{[]any{3, "a"}}), api.CodeBadRequest)
	wantWSError(t, w.call(8, api.OpTxn, []any{}), api.CodeBadRequest)
	wantWSError(t, w.call(9, api.OpTxn, []any{[]any{1, "c"}}), api.CodeBadRequest)
	// Exactly once: the same request id twice, even with the log holding
	// the second copy twice, applies once and answers alike.
	rev(w.call(10, api.OpPut, "d", []byte(`"first"`), []any{"ws-client", 1}), 4)
	raft.mu.Lock()
	raft.dup = true
	raft.mu.Unlock()
	rev(w.call(11, api.OpPut, "d", []byte(`"second"`), []any{"ws-client", 1}), 4)
	raft.mu.Lock()
	raft.dup = false
	raft.mu.Unlock()
	if it, _ := m.Get("d"); string(it.Value) != `"first"` {
		t.Fatalf("d = %s", it.Value)
	}
	wantWSError(t, w.call(12, api.OpPut, "d", []byte(`1`), []any{"", 1}), api.CodeBadRequest)
	wantWSError(t, w.call(13, api.OpPut, "d", []byte(`1`), []any{"c"}), api.CodeBadRequest)
	// Workflows and nodes.
	wantWSError(t, w.call(20, api.OpWorkflowStop, "p"), api.CodeWorkflowNotFound)
	if r := w.call(21, api.OpWorkflowStart, "p", []byte(`{"progress":0}`)); !r.ok {
		t.Fatal(r)
	}
	wantWSError(t, w.call(22, api.OpWorkflowStart, "p", nil), api.CodeInvalidTransition)
	wantWSError(t, w.call(23, api.OpWorkflowUpdate, "p", []byte(`[1]`)), api.CodeInvalidJSON)
	wantWSError(t, w.call(24, api.OpWorkflowUpdate, "p"), api.CodeBadRequest)
	if r := w.call(25, api.OpWorkflowUpdate, "p", []byte(`{"progress":1}`)); !r.ok {
		t.Fatal(r)
	}
	r := w.call(26, api.OpWorkflowGet, "p", 1)
	if !r.ok || !strings.Contains(string(r.result.([]any)[1].([]byte)), `"progress":1`) {
		t.Fatalf("workflow = %+v", r)
	}
	if r := w.call(27, api.OpWorkflowStop, "p", nil, []any{"ws-client", 2}); !r.ok {
		t.Fatal(r)
	}
	wantWSError(t, w.call(28, api.OpWorkflowStop, "p"), api.CodeInvalidTransition)
	if r := w.call(29, api.OpWorkflowList); !r.ok || len(r.result.([]any)[1].([]any)) != 1 {
		t.Fatalf("workflows = %+v", r)
	}
	if r := w.call(30, api.OpNodeRegister, "app", []byte(`{"zone":"eu"}`)); !r.ok {
		t.Fatal(r)
	}
	if r := w.call(31, api.OpNodeList, 0); !r.ok || len(r.result.([]any)[1].([]any)) != 1 {
		t.Fatalf("nodes = %+v", r)
	}
	if r := w.call(32, api.OpNodeDeregister, "app"); !r.ok {
		t.Fatal(r)
	}
	wantWSError(t, w.call(33, api.OpNodeDeregister, "app"), api.CodeNodeNotFound)
	wantWSError(t, w.call(34, 15), api.CodeBadRequest)
}
