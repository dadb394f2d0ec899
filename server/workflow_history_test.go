package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

var _ WorkflowHistoryBackend = (*kv.Store)(nil)

// historyRig drives one server's workflow and queue routes.
type historyRig struct {
	t    *testing.T
	base string
}

func (h historyRig) do(method, path, body string, want int) apiResponse {
	h.t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	r := call(h.t, method, h.base+path, b)
	if r.status != want {
		h.t.Fatalf("%s %s: %d %s, want %d", method, path, r.status, r.body, want)
	}
	return r
}

// step enqueues task id of workflow w, claims it and completes it.
func (h historyRig) step(w, id string) {
	h.t.Helper()
	h.do(http.MethodPost, "/v1/queues/q/tasks", `{"id":"`+id+`","data":1,"workflow":"`+w+`"}`, http.StatusOK)
	r := h.do(http.MethodPost, "/v1/queues/q/claim", `{"worker":"w1","ttlMs":60000}`, http.StatusOK)
	var claim api.Claim
	if err := json.Unmarshal(r.body, &claim); err != nil || claim.Task.ID != id {
		h.t.Fatalf("claim: %s %v", r.body, err)
	}
	h.do(http.MethodPost, "/v1/queues/q/tasks/"+id+"/complete", `{"epoch":`+strconv.FormatInt(claim.Epoch, 10)+`}`, http.StatusOK)
}

func (h historyRig) history(w, query string) api.WorkflowHistory {
	h.t.Helper()
	r := h.do(http.MethodGet, "/v1/workflows/"+w+"/history"+query, "", http.StatusOK)
	var page api.WorkflowHistory
	if err := json.Unmarshal(r.body, &page); err != nil {
		h.t.Fatalf("history: %s: %v", r.body, err)
	}
	return page
}

// nextHistoryEvent reads the stream's next event, checking that its id is
// its revision.
func nextHistoryEvent(t *testing.T, s *sseStream) api.WorkflowEvent {
	t.Helper()
	for {
		m, err := s.next()
		if err != nil {
			t.Fatalf("history stream: %v", err)
		}
		if m.data == "" {
			continue
		}
		var ev api.WorkflowEvent
		if err := json.Unmarshal([]byte(m.data), &ev); err != nil || m.event != "" {
			t.Fatalf("history stream sent %+v: %v", m, err)
		}
		if m.id != strconv.FormatInt(ev.Revision, 10) {
			t.Fatalf("event at revision %d has id %q", ev.Revision, m.id)
		}
		return ev
	}
}

// GET /v1/workflows/{id}/history answers the events as JSON, by pages
// from a revision; bad input is 400 and an unknown workflow 404.
func TestWorkflowHistoryJSON(t *testing.T) {
	s := startOne(t, nil)
	h := historyRig{t: t, base: "http://" + s.HTTPAddr()}
	h.do(http.MethodPost, "/v1/workflows", `{"id":"w","name":"etl"}`, http.StatusCreated)
	h.step("w", "a")
	h.do(http.MethodPatch, "/v1/workflows/w", `{"progress":1}`, http.StatusOK)
	h.do(http.MethodPost, "/v1/workflows/w/stop", "", http.StatusOK)

	all := h.history("w", "")
	want := []string{api.HistoryStarted, api.HistoryStepEnqueued, api.HistoryClaimed, api.HistoryCompleted, api.HistoryUpdated, api.HistoryStopped}
	var got []string
	for _, ev := range all.Events {
		got = append(got, ev.Type)
	}
	if !slices.Equal(got, want) || all.More || all.Workflow != "w" || all.Revision < all.Events[len(all.Events)-1].Revision {
		t.Fatalf("history %s", mustJSON(all))
	}
	if c := all.Events[2]; c.Epoch == 0 || c.Worker != "w1" || c.Queue != "q" || c.Task != "a" || c.Time == "" {
		t.Fatalf("claimed event %+v", c)
	}
	page := h.history("w", "?fromRevision="+strconv.FormatInt(all.Events[1].Revision, 10)+"&limit=2")
	if !page.More || len(page.Events) != 2 || page.Events[0] != all.Events[1] || page.Events[1] != all.Events[2] {
		t.Fatalf("page: %s", mustJSON(page))
	}
	// /v1/ws op 55 answers the same page.
	w := dialWS(t, "ws://"+s.HTTPAddr()+wsPath)
	var wsPage api.WorkflowHistory
	if err := json.Unmarshal(wsJSON(t, w.call(1, api.OpWorkflowHistory, "w", all.Events[1].Revision, 2)), &wsPage); err != nil ||
		!wsPage.More || len(wsPage.Events) != 2 || wsPage.Events[0] != all.Events[1] || wsPage.Events[1] != all.Events[2] {
		t.Fatalf("op 55: %+v %v", wsPage, err)
	}
	wantWSError(t, w.call(2, api.OpWorkflowHistory, "nope"), api.CodeWorkflowNotFound)
	wantWSError(t, w.call(3, api.OpWorkflowHistory, "a/b"), api.CodeInvalidKey)
	h.do(http.MethodGet, "/v1/workflows/nope/history", "", http.StatusNotFound)
	for _, q := range []string{"?fromRevision=-1", "?fromRevision=x", "?limit=0", "?limit=1001", "?fromRevision=1&fromRevision=2"} {
		h.do(http.MethodGet, "/v1/workflows/w/history"+q, "", http.StatusBadRequest)
	}
	h.do(http.MethodPost, "/v1/workflows/w/history", "", http.StatusMethodNotAllowed)
	// History cannot be forged through the key-value API.
	r := h.do(http.MethodPut, "/v1/kv/"+api.WorkflowHistoryKey("w", 1), `{"type":"completed"}`, http.StatusBadRequest)
	if e := decodeAs[struct {
		Error struct{ Code string } `json:"error"`
	}](t, r); e.Error.Code != api.CodeInvalidKey {
		t.Fatalf("forged history put: %s", r.body)
	}
}

// With Accept: text/event-stream the history replays from fromRevision,
// then follows live; a stream resumed with Last-Event-ID (or
// fromRevision) delivers the rest with no gap and no duplicate.
func TestWorkflowHistorySSEResume(t *testing.T) {
	// A watch history of two events: the replay comes from the state,
	// not from the watch history, which holds almost nothing.
	s := startWatchServer(t, kv.WatchConfig{HistoryEvents: 2}, HTTPOptions{})
	h := historyRig{t: t, base: "http://" + s.HTTPAddr()}
	h.do(http.MethodPost, "/v1/workflows", `{"id":"w"}`, http.StatusCreated)
	h.step("w", "a")
	before := h.history("w", "").Events
	from := before[1].Revision
	sse := map[string]string{"Accept": "text/event-stream"}
	url := h.base + "/v1/workflows/w/history?fromRevision=" + strconv.FormatInt(from, 10)

	w1 := openWatch(t, url, sse)
	if w1.resp.StatusCode != http.StatusOK || w1.resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", w1.resp.StatusCode, w1.body())
	}
	var seen []api.WorkflowEvent
	for range 3 { // step_enqueued, claimed, completed: the replay
		seen = append(seen, nextHistoryEvent(t, w1))
	}
	// Live, with other writes in between.
	for i := range 5 {
		putRev(t, h.base, "noise/"+strconv.Itoa(i), `1`, "")
	}
	h.step("w", "b")
	for range 3 {
		seen = append(seen, nextHistoryEvent(t, w1))
	}
	last := w1.lastID
	w1.close()

	// Missed while away, then resumed by Last-Event-ID (which wins over
	// the URL's fromRevision, as an EventSource reconnects with both).
	h.step("w", "c")
	h.do(http.MethodPost, "/v1/workflows/w/stop", "", http.StatusOK)
	w2 := openWatch(t, url, map[string]string{"Accept": "text/event-stream", "Last-Event-ID": last})
	for range 4 {
		seen = append(seen, nextHistoryEvent(t, w2))
	}
	w2.close()

	all := h.history("w", "?fromRevision="+strconv.FormatInt(from, 10)).Events
	if !slices.Equal(seen, all) {
		t.Fatalf("streamed %s\nwant     %s", mustJSON(seen), mustJSON(all))
	}
	// A stream of an unknown workflow is 404, before any stream.
	if r := openWatch(t, h.base+"/v1/workflows/nope/history", sse); r.resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown workflow's stream: %d", r.resp.StatusCode)
	}
}

// The history is kept state: a server stopped and started again on its
// data directory (recovering from its snapshot and log) answers the same
// history.
func TestWorkflowHistorySurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	configure := func(c *Config) {
		c.DataDir = dir
		c.Node.SnapshotThreshold = 4 // several snapshots along the way
	}
	s := startOne(t, configure)
	h := historyRig{t: t, base: "http://" + s.HTTPAddr()}
	h.do(http.MethodPost, "/v1/workflows", `{"id":"w"}`, http.StatusCreated)
	for i := range 3 {
		h.step("w", fmt.Sprintf("t%d", i))
	}
	before := h.history("w", "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := startOne(t, configure)
	if s2.Node().Status().SnapshotIndex == 0 {
		t.Fatal("no snapshot was taken")
	}
	h2 := historyRig{t: t, base: "http://" + s2.HTTPAddr()}
	after := h2.history("w", "")
	if !slices.Equal(after.Events, before.Events) || len(before.Events) != 10 {
		t.Fatalf("after a restart %s\nbefore %s", mustJSON(after.Events), mustJSON(before.Events))
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// compactedOnce is a backend whose first watch has fallen out of the
// watch history (after a write that the stream has not read yet).
type compactedOnce struct {
	*kv.Store
	watches atomic.Int32
	before  func()
}

func (b *compactedOnce) Watch(ctx context.Context, prefix string, from int64) (*kv.Watcher, error) {
	if b.watches.Add(1) == 1 {
		b.before()
		return nil, &kv.CompactedError{Requested: from, Oldest: from + 5}
	}
	return b.Store.Watch(ctx, prefix, from)
}

// A stream whose watch starts out of the watch history reads the state
// again from where it was: the event written meanwhile arrives once, and
// the live ones after it.
func TestWorkflowHistorySSERereadsWhenCompacted(t *testing.T) {
	store := newLocalStore()
	ctx := context.Background()
	if _, err := store.StartWorkflow(ctx, "w", nil); err != nil {
		t.Fatal(err)
	}
	b := &compactedOnce{Store: store, before: func() {
		if _, err := store.UpdateWorkflowState(ctx, "w", []byte(`{"step":1}`)); err != nil {
			t.Error(err)
		}
	}}
	srv := httptest.NewServer(NewHandler(b, HTTPOptions{}))
	defer srv.Close()
	w := openWatch(t, srv.URL+"/v1/workflows/w/history", map[string]string{"Accept": "text/event-stream"})
	if ev := nextHistoryEvent(t, w); ev.Type != api.HistoryStarted || ev.Revision != 1 {
		t.Fatalf("first event %+v", ev)
	}
	if ev := nextHistoryEvent(t, w); ev.Type != api.HistoryUpdated || ev.Revision != 2 {
		t.Fatalf("the event written while the watch was lost: %+v", ev)
	}
	if _, err := store.StopWorkflow(ctx, "w", nil); err != nil {
		t.Fatal(err)
	}
	if ev := nextHistoryEvent(t, w); ev.Type != api.HistoryStopped || ev.Revision != 3 {
		t.Fatalf("live event %+v", ev)
	}
	w.close()
	if n := b.watches.Load(); n != 2 {
		t.Fatalf("%d watches, want 2", n)
	}
}
