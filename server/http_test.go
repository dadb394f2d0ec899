package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server/dashboard"
)

// fakeBackend is an in-memory Backend: a map with a revision counter, and
// switches that make it fail the ways a node can.
type fakeBackend struct {
	// Store serves the routes beyond plain keys (conditional writes,
	// batches, workflows, nodes, stats) from a real state machine.
	*kv.Store

	mu    sync.Mutex
	items map[string]kv.Item
	rev   int64

	// err, when set, is returned by every Put, Get, Delete and List.
	err error
	// block makes every data call wait for its context and return its
	// error, as a node does when raft does not answer in time.
	block bool
	// panicWith, when set, makes every data call panic with it.
	panicWith any
	// readyErr is returned by Ready.
	readyErr error
	// status is returned by Status.
	status consensus.Status

	// calls counts data calls; consistency records the last read's.
	calls       int
	consistency kv.Consistency
}

func newFake() *fakeBackend {
	return &fakeBackend{items: make(map[string]kv.Item), Store: newLocalStore()}
}

// enter applies the failure switches; it returns a non-nil error when the
// call must fail with it.
func (f *fakeBackend) enter(ctx context.Context) error {
	f.mu.Lock()
	f.calls++
	err, block, p := f.err, f.block, f.panicWith
	f.mu.Unlock()
	if p != nil {
		panic(p)
	}
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeBackend) Put(ctx context.Context, key string, value []byte) (int64, error) {
	if err := f.enter(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	it, ok := f.items[key]
	if !ok {
		it = kv.Item{Key: key, CreateRevision: f.rev}
	}
	it.Value = slices.Clone(value)
	it.Revision = f.rev
	it.Version++
	f.items[key] = it
	return f.rev, nil
}

func (f *fakeBackend) Get(ctx context.Context, key string, c kv.Consistency) (kv.Item, error) {
	if err := f.enter(ctx); err != nil {
		return kv.Item{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.consistency = c
	it, ok := f.items[key]
	if !ok {
		return kv.Item{}, fmt.Errorf("fake: get %q: %w", key, kv.ErrKeyNotFound)
	}
	return it, nil
}

func (f *fakeBackend) Delete(ctx context.Context, key string) (int64, error) {
	if err := f.enter(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.items[key]; !ok {
		return 0, fmt.Errorf("fake: delete %q: %w", key, kv.ErrKeyNotFound)
	}
	f.rev++
	delete(f.items, key)
	return f.rev, nil
}

// ListPage and ReadView read the fake's own items (not the embedded
// Store's) through List, as the handler does for a Backend that is no
// ListBackend.
func (f *fakeBackend) ListPage(ctx context.Context, prefix string, c kv.Consistency, o kv.ListOptions) (kv.ListPage, error) {
	items, rev, err := f.List(ctx, prefix, c)
	if err != nil {
		return kv.ListPage{}, err
	}
	if o.Revision != 0 && o.Revision != rev {
		return kv.ListPage{}, &kv.CompactedError{Requested: o.Revision, Oldest: rev, List: true}
	}
	return kv.NewReadView(rev, items).Page(prefix, o), nil
}

func (f *fakeBackend) ReadView(ctx context.Context, c kv.Consistency) (*kv.ReadView, error) {
	items, rev, err := f.List(ctx, "", c)
	if err != nil {
		return nil, err
	}
	return kv.NewReadView(rev, items), nil
}

func (f *fakeBackend) List(ctx context.Context, prefix string, c kv.Consistency) ([]kv.Item, int64, error) {
	if err := f.enter(ctx); err != nil {
		return nil, 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.consistency = c
	var items []kv.Item // nil when nothing matches: the handler must send []
	for k, it := range f.items {
		if strings.HasPrefix(k, prefix) {
			items = append(items, it)
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Key < items[j].Key })
	return items, f.rev, nil
}

func (f *fakeBackend) Status() consensus.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panicWith != nil {
		panic(f.panicWith)
	}
	return f.status
}

func (f *fakeBackend) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readyErr
}

// syncBuffer is a log sink safe for the handler's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testHandler returns a handler over f with small limits, and its log.
func testHandler(t testing.TB, f *fakeBackend, opts HTTPOptions) (*apiHandler, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h := NewHandler(f, opts).(*apiHandler)
	t.Cleanup(func() {
		if n := h.panics.Load(); n != 0 && f.panicWith == nil {
			t.Errorf("handler recovered %d panic(s); log:\n%s", n, logs)
		}
	})
	return h, logs
}

func serve(h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, r))
	return rec
}

// jsonFields decodes a JSON object and returns its field names, sorted,
// and the raw fields.
func jsonFields(t *testing.T, body []byte) ([]string, map[string]json.RawMessage) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", body, err)
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names, m
}

func wantFields(t *testing.T, body []byte, want ...string) map[string]json.RawMessage {
	t.Helper()
	got, m := jsonFields(t, body)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("fields = %v, want %v; body %s", got, want, body)
	}
	return m
}

// checkErrorBody reports whether body is exactly {"error":{"code","message"}}
// with a non-empty code, and returns the code.
func checkErrorBody(body []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var e errorBody
	if err := dec.Decode(&e); err != nil {
		return "", fmt.Errorf("error body %q: %v", body, err)
	}
	if dec.More() {
		return "", fmt.Errorf("error body %q: trailing data", body)
	}
	if e.Error.Code == "" || e.Error.Message == "" {
		return "", fmt.Errorf("error body %q: empty code or message", body)
	}
	return e.Error.Code, nil
}

func wantError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	got, err := checkErrorBody(rec.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got != code {
		t.Fatalf("code = %q, want %q; body %s", got, code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	if ra := rec.Header().Get("Retry-After"); (status == http.StatusServiceUnavailable) != (ra != "") {
		t.Fatalf("status %d with Retry-After %q", status, ra)
	}
}

func TestHTTPStatus(t *testing.T) {
	f := newFake()
	f.status = consensus.Status{NodeID: "n1", Term: 3, CommitIndex: 7, AppliedIndex: 6}
	h, _ := testHandler(t, f, HTTPOptions{})

	rec := serve(h, http.MethodGet, "/v1/status", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
	}
	m := wantFields(t, rec.Body.Bytes(), "nodeId", "isLeader", "leaderId", "term",
		"commitIndex", "appliedIndex", "snapshotIndex", "members", "connectedPeers", "removed")
	for field, want := range map[string]string{
		"nodeId": `"n1"`, "isLeader": "false", "leaderId": `""`, "term": "3",
		"commitIndex": "7", "appliedIndex": "6", "members": "[]", "connectedPeers": "[]",
	} {
		if got := string(m[field]); got != want {
			t.Errorf("%s = %s, want %s", field, got, want)
		}
	}

	f.status = consensus.Status{NodeID: "n1", IsLeader: true, LeaderID: "n1",
		Members:        []consensus.Member{{ID: "n1", PeerAddr: "127.0.0.1:8080", Voter: true}},
		ConnectedPeers: []string{"n2"}}
	rec = serve(h, http.MethodGet, "/v1/status", "")
	m = wantFields(t, rec.Body.Bytes(), "nodeId", "isLeader", "leaderId", "term",
		"commitIndex", "appliedIndex", "snapshotIndex", "members", "connectedPeers", "removed")
	if got, want := string(m["members"]), `[{"id":"n1","peerAddr":"127.0.0.1:8080","httpAddr":"","voter":true}]`; got != want {
		t.Errorf("members = %s, want %s", got, want)
	}
	if got := string(m["connectedPeers"]); got != `["n2"]` {
		t.Errorf("connectedPeers = %s", got)
	}
}

func TestHTTPProbes(t *testing.T) {
	f := newFake()
	h, _ := testHandler(t, f, HTTPOptions{})

	rec := serve(h, http.MethodGet, "/healthz", "")
	if rec.Code != http.StatusOK || rec.Body.String() != `{"status":"ok"}`+"\n" {
		t.Fatalf("healthz = %d %s", rec.Code, rec.Body)
	}
	rec = serve(h, http.MethodGet, "/readyz", "")
	if rec.Code != http.StatusOK || rec.Body.String() != `{"status":"ready"}`+"\n" {
		t.Fatalf("readyz = %d %s", rec.Code, rec.Body)
	}

	f.readyErr = fmt.Errorf("node: %w", consensus.ErrNoLeader)
	wantError(t, serve(h, http.MethodGet, "/readyz", ""), http.StatusServiceUnavailable, api.CodeNoLeader)
	f.readyErr = errors.New("still replaying the log")
	wantError(t, serve(h, http.MethodGet, "/readyz", ""), http.StatusServiceUnavailable, api.CodeUnavailable)
	f.readyErr = kv.ErrKeyNotFound // a reason that would map to 404 elsewhere
	wantError(t, serve(h, http.MethodGet, "/readyz", ""), http.StatusServiceUnavailable, api.CodeUnavailable)

	// Health does not depend on readiness.
	if rec := serve(h, http.MethodGet, "/healthz", ""); rec.Code != http.StatusOK {
		t.Fatalf("healthz while not ready = %d", rec.Code)
	}
	if rec := serve(h, http.MethodHead, "/healthz", ""); rec.Code != http.StatusOK {
		t.Fatalf("HEAD healthz = %d", rec.Code)
	}
}

func TestHTTPKeyLifecycle(t *testing.T) {
	f := newFake()
	h, _ := testHandler(t, f, HTTPOptions{})

	rec := serve(h, http.MethodPut, "/v1/kv/a", " { \"b\" : [1, 2, {\"c\": null}] ,\n\"html\":\"<b>&amp;</b>\"} ")
	if rec.Code != http.StatusOK || rec.Body.String() != `{"revision":1}`+"\n" {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	const compact = `{"b":[1,2,{"c":null}],"html":"<b>&amp;</b>"}`
	if got := string(f.items["a"].Value); got != compact {
		t.Fatalf("stored %s, want compacted %s", got, compact)
	}

	rec = serve(h, http.MethodGet, "/v1/kv/a", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET = %d %s", rec.Code, rec.Body)
	}
	m := wantFields(t, rec.Body.Bytes(), "key", "value", "revision", "createRevision", "version")
	for field, want := range map[string]string{
		"key": `"a"`, "value": compact, "revision": "1", "createRevision": "1", "version": "1",
	} {
		if got := string(m[field]); got != want {
			t.Errorf("%s = %s, want %s", field, got, want)
		}
	}
	if got := rec.Header().Get(ConsistencyHeader); got != "linearizable" || f.consistency != kv.Linearizable {
		t.Errorf("default read: header %q, backend saw %v; want linearizable", got, f.consistency)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}

	rec = serve(h, http.MethodGet, "/v1/kv/a?consistency=local", "")
	if got := rec.Header().Get(ConsistencyHeader); rec.Code != http.StatusOK || got != "local" || f.consistency != kv.Local {
		t.Errorf("local read: %d, header %q, backend saw %v", rec.Code, got, f.consistency)
	}
	rec = serve(h, http.MethodGet, "/v1/kv/a?consistency=linearizable", "")
	if got := rec.Header().Get(ConsistencyHeader); rec.Code != http.StatusOK || got != "linearizable" || f.consistency != kv.Linearizable {
		t.Errorf("explicit linearizable read: %d, header %q, backend saw %v", rec.Code, got, f.consistency)
	}

	rec = serve(h, http.MethodPut, "/v1/kv/a", `"second"`)
	if rec.Body.String() != `{"revision":2}`+"\n" {
		t.Fatalf("second PUT = %s", rec.Body)
	}
	rec = serve(h, http.MethodGet, "/v1/kv/a", "")
	m = wantFields(t, rec.Body.Bytes(), "key", "value", "revision", "createRevision", "version")
	if string(m["value"]) != `"second"` || string(m["revision"]) != "2" ||
		string(m["createRevision"]) != "1" || string(m["version"]) != "2" {
		t.Errorf("after update: %s", rec.Body)
	}

	if rec := serve(h, http.MethodHead, "/v1/kv/a", ""); rec.Code != http.StatusOK {
		t.Errorf("HEAD = %d", rec.Code)
	}

	rec = serve(h, http.MethodDelete, "/v1/kv/a", "")
	if rec.Code != http.StatusOK || rec.Body.String() != `{"revision":3}`+"\n" {
		t.Fatalf("DELETE = %d %s", rec.Code, rec.Body)
	}
	wantError(t, serve(h, http.MethodGet, "/v1/kv/a", ""), http.StatusNotFound, api.CodeKeyNotFound)
	wantError(t, serve(h, http.MethodDelete, "/v1/kv/a", ""), http.StatusNotFound, api.CodeKeyNotFound)

	// Every JSON value is a value, not only objects.
	for _, v := range []string{`0`, `-1.5e10`, `true`, `null`, `"s"`, `[]`, `{}`, `"\u00e9\ud83d\ude00"`} {
		rec := serve(h, http.MethodPut, "/v1/kv/scalar", v)
		if rec.Code != http.StatusOK {
			t.Errorf("PUT %s = %d %s", v, rec.Code, rec.Body)
		}
		rec = serve(h, http.MethodGet, "/v1/kv/scalar", "")
		_, m := jsonFields(t, rec.Body.Bytes())
		if string(m["value"]) != v {
			t.Errorf("value %s came back as %s", v, m["value"])
		}
	}
}

func TestHTTPList(t *testing.T) {
	f := newFake()
	h, _ := testHandler(t, f, HTTPOptions{})

	rec := serve(h, http.MethodGet, "/v1/kv", "")
	if rec.Code != http.StatusOK || rec.Body.String() != `{"items":[],"revision":0}`+"\n" {
		t.Fatalf("empty list = %d %s", rec.Code, rec.Body)
	}
	for _, k := range []string{"app/a", "app/b", "other", "app/c/d"} {
		if rec := serve(h, http.MethodPut, "/v1/kv/"+k, `1`); rec.Code != http.StatusOK {
			t.Fatalf("PUT %s = %d", k, rec.Code)
		}
	}

	rec = serve(h, http.MethodGet, "/v1/kv?prefix=app/", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("list = %d %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get(ConsistencyHeader); got != "linearizable" || f.consistency != kv.Linearizable {
		t.Errorf("list consistency header %q, backend saw %v", got, f.consistency)
	}
	m := wantFields(t, rec.Body.Bytes(), "items", "revision")
	if string(m["revision"]) != "4" {
		t.Errorf("revision = %s", m["revision"])
	}
	var items []json.RawMessage
	if err := json.Unmarshal(m["items"], &items); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, raw := range items {
		im := wantFields(t, raw, "key", "value", "revision", "createRevision", "version")
		var k string
		_ = json.Unmarshal(im["key"], &k)
		keys = append(keys, k)
	}
	if want := []string{"app/a", "app/b", "app/c/d"}; !slices.Equal(keys, want) {
		t.Errorf("keys = %v, want %v", keys, want)
	}

	// An empty prefix lists everything; a prefix matching nothing is [].
	rec = serve(h, http.MethodGet, "/v1/kv?prefix=&consistency=local", "")
	m = wantFields(t, rec.Body.Bytes(), "items", "revision")
	if err := json.Unmarshal(m["items"], &items); err != nil || len(items) != 4 {
		t.Errorf("all items: %s (%v)", m["items"], err)
	}
	if got := rec.Header().Get(ConsistencyHeader); got != "local" || f.consistency != kv.Local {
		t.Errorf("local list: header %q, backend saw %v", got, f.consistency)
	}
	rec = serve(h, http.MethodGet, "/v1/kv?prefix=zzz", "")
	if m := wantFields(t, rec.Body.Bytes(), "items", "revision"); string(m["items"]) != "[]" {
		t.Errorf("no match: items = %s", m["items"])
	}
	// A percent-encoded prefix is decoded.
	rec = serve(h, http.MethodGet, "/v1/kv?prefix=app%2Fc", "")
	m = wantFields(t, rec.Body.Bytes(), "items", "revision")
	if err := json.Unmarshal(m["items"], &items); err != nil || len(items) != 1 {
		t.Errorf("prefix app/c: %s (%v)", m["items"], err)
	}
}

// countingReader counts reads, to show a body was answered without reading.
type countingReader struct {
	reads int
	r     io.Reader
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

func TestHTTPBodyLimit(t *testing.T) {
	const limit = 64
	f := newFake()
	h, _ := testHandler(t, f, HTTPOptions{MaxBodyBytes: limit})
	fits := `"` + strings.Repeat("x", limit-2) + `"`
	over := `"` + strings.Repeat("x", limit-1) + `"`

	t.Run("exactly the limit", func(t *testing.T) {
		if rec := serve(h, http.MethodPut, "/v1/kv/k", fits); rec.Code != http.StatusOK {
			t.Fatalf("PUT of %d bytes = %d %s", len(fits), rec.Code, rec.Body)
		}
	})
	t.Run("content-length", func(t *testing.T) {
		body := &countingReader{r: strings.NewReader(over)}
		req := httptest.NewRequest(http.MethodPut, "/v1/kv/k", body)
		req.ContentLength = int64(len(over))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		wantError(t, rec, http.StatusRequestEntityTooLarge, api.CodeTooLarge)
		if body.reads != 0 {
			t.Errorf("body read %d times before answering", body.reads)
		}
	})
	t.Run("chunked", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPut, "/v1/kv/k", strings.NewReader(over))
		req.ContentLength = -1 // unknown, as with Transfer-Encoding: chunked
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		wantError(t, rec, http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	})
	t.Run("lying content-length", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPut, "/v1/kv/k", strings.NewReader(over+over))
		req.ContentLength = 2
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		wantError(t, rec, http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	})
	t.Run("over the wire", func(t *testing.T) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		var seenChunked bool
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seenChunked = slices.Contains(r.TransferEncoding, "chunked")
			h.ServeHTTP(w, r)
		}))
		defer srv.Close()
		for _, chunked := range []bool{false, true} {
			var body io.Reader = strings.NewReader(over)
			if chunked {
				body = io.MultiReader(strings.NewReader(over)) // length unknown: chunked
			}
			req, err := http.NewRequest(http.MethodPut, srv.URL+"/v1/kv/k", body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if chunked != seenChunked {
				t.Errorf("chunked=%v but the server saw chunked=%v", chunked, seenChunked)
			}
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("chunked=%v: status %d %s", chunked, resp.StatusCode, got)
			}
			if code, err := checkErrorBody(got); err != nil || code != api.CodeTooLarge {
				t.Errorf("chunked=%v: code %q, %v", chunked, code, err)
			}
		}
	})
	if f.items["k"].Value == nil || len(f.items["k"].Value) != limit {
		t.Errorf("stored value %q: only the fitting PUT should have landed", f.items["k"].Value)
	}
}

// TestHTTPErrors produces each error status of the contract.
func TestHTTPErrors(t *testing.T) {
	tests := []struct {
		name           string
		method, target string
		body           string
		setup          func(*fakeBackend)
		opts           HTTPOptions
		status         int
		code           string
	}{
		{name: "invalid json", method: "PUT", target: "/v1/kv/k", body: `{"a":`, status: 400, code: api.CodeInvalidJSON},
		{name: "empty body", method: "PUT", target: "/v1/kv/k", body: ``, status: 400, code: api.CodeInvalidJSON},
		{name: "blank body", method: "PUT", target: "/v1/kv/k", body: " \n\t", status: 400, code: api.CodeInvalidJSON},
		{name: "two values", method: "PUT", target: "/v1/kv/k", body: `1 2`, status: 400, code: api.CodeInvalidJSON},
		{name: "trailing garbage", method: "PUT", target: "/v1/kv/k", body: `{}x`, status: 400, code: api.CodeInvalidJSON},
		{name: "bare word", method: "PUT", target: "/v1/kv/k", body: `hello`, status: 400, code: api.CodeInvalidJSON},
		{name: "invalid utf-8 in a string", method: "PUT", target: "/v1/kv/k", body: "\"\xff\"", status: 400, code: api.CodeInvalidJSON},
		{name: "byte order mark", method: "PUT", target: "/v1/kv/k", body: "\ufeff{}", status: 400, code: api.CodeInvalidJSON},
		{name: "missing key", method: "GET", target: "/v1/kv/nope", status: 404, code: api.CodeKeyNotFound},
		{name: "empty key", method: "GET", target: "/v1/kv/", status: 400, code: api.CodeInvalidKey},
		{name: "empty key put", method: "PUT", target: "/v1/kv/", body: `1`, status: 400, code: api.CodeInvalidKey},
		{name: "invalid utf-8 key", method: "PUT", target: "/v1/kv/%FF", body: `1`, status: 400, code: api.CodeInvalidKey},
		{name: "invalid utf-8 key put", method: "PUT", target: "/v1/kv/a%C3", body: `1`, status: 400, code: api.CodeInvalidKey},
		{name: "key too long", method: "PUT", target: "/v1/kv/" + strings.Repeat("k", 17), body: `1`,
			opts: HTTPOptions{MaxKeyBytes: 16}, status: 400, code: api.CodeInvalidKey},
		{name: "key too long once decoded", method: "GET", target: "/v1/kv/" + strings.Repeat("%C3%A9", 9),
			opts: HTTPOptions{MaxKeyBytes: 16}, status: 400, code: api.CodeInvalidKey},
		{name: "key too long by default", method: "GET", target: "/v1/kv/" + strings.Repeat("k", kv.DefaultMaxKeyBytes+1),
			status: 400, code: api.CodeInvalidKey},
		{name: "prefix too long", method: "GET", target: "/v1/kv?prefix=" + strings.Repeat("k", 17),
			opts: HTTPOptions{MaxKeyBytes: 16}, status: 400, code: api.CodeInvalidKey},
		{name: "prefix too long", method: "GET", target: "/v1/kv?prefix=" + strings.Repeat("p", 17),
			opts: HTTPOptions{MaxKeyBytes: 16}, status: 400, code: api.CodeInvalidKey},
		{name: "unknown path", method: "GET", target: "/v1/nothing", status: 404, code: api.CodeNotFound},
		{name: "unknown dashboard asset", method: "GET", target: "/ui/nope.js", status: 404, code: api.CodeNotFound},
		{name: "dashboard asset traversal", method: "GET", target: "/ui/../go.mod", status: 404, code: api.CodeNotFound},
		{name: "post dashboard", method: "POST", target: "/", body: `1`, status: 405, code: api.CodeMethodNotAllowed},
		{name: "events after negative", method: "GET", target: "/v1/events?after=-1", opts: HTTPOptions{Events: NewEventLog(4)}, status: 400, code: api.CodeBadRequest},
		{name: "events after word", method: "GET", target: "/v1/events?after=x", opts: HTTPOptions{Events: NewEventLog(4)}, status: 400, code: api.CodeBadRequest},
		{name: "events after empty", method: "GET", target: "/v1/events?after=", opts: HTTPOptions{Events: NewEventLog(4)}, status: 400, code: api.CodeBadRequest},
		{name: "events after twice", method: "GET", target: "/v1/events?after=1&after=2", opts: HTTPOptions{Events: NewEventLog(4)}, status: 400, code: api.CodeBadRequest},
		{name: "events after overflow", method: "GET", target: "/v1/events?after=18446744073709551616", opts: HTTPOptions{Events: NewEventLog(4)}, status: 400, code: api.CodeBadRequest},
		{name: "post events", method: "POST", target: "/v1/events", status: 405, code: api.CodeMethodNotAllowed},
		{name: "status with slash", method: "GET", target: "/v1/status/", status: 404, code: api.CodeNotFound},
		{name: "escaped route", method: "GET", target: "/v1/%73tatus", status: 404, code: api.CodeNotFound},
		{name: "escaped kv slash", method: "GET", target: "/v1/kv%2Fa", status: 404, code: api.CodeNotFound},
		{name: "post key", method: "POST", target: "/v1/kv/k", body: `1`, status: 405, code: api.CodeMethodNotAllowed},
		{name: "patch key", method: "PATCH", target: "/v1/kv/", status: 405, code: api.CodeMethodNotAllowed},
		{name: "put list", method: "PUT", target: "/v1/kv", body: `1`, status: 405, code: api.CodeMethodNotAllowed},
		{name: "delete status", method: "DELETE", target: "/v1/status", status: 405, code: api.CodeMethodNotAllowed},
		{name: "post healthz", method: "POST", target: "/healthz", status: 405, code: api.CodeMethodNotAllowed},
		{name: "options readyz", method: "OPTIONS", target: "/readyz", status: 405, code: api.CodeMethodNotAllowed},
		{name: "bad consistency", method: "GET", target: "/v1/kv/k?consistency=eventual", status: 400, code: api.CodeBadRequest},
		{name: "empty consistency", method: "GET", target: "/v1/kv/k?consistency=", status: 400, code: api.CodeBadRequest},
		{name: "bad list consistency", method: "GET", target: "/v1/kv?consistency=LOCAL", status: 400, code: api.CodeBadRequest},
		{name: "repeated consistency", method: "GET", target: "/v1/kv/k?consistency=local&consistency=local", status: 400, code: api.CodeBadRequest},
		{name: "repeated prefix", method: "GET", target: "/v1/kv?prefix=a&prefix=b", status: 400, code: api.CodeBadRequest},
		{name: "bad query escape", method: "GET", target: "/v1/kv?prefix=%zz", status: 400, code: api.CodeBadRequest},
		{name: "bad query escape on key", method: "DELETE", target: "/v1/kv/k?x=%", status: 400, code: api.CodeBadRequest},
		{name: "semicolon query", method: "GET", target: "/v1/status?a=1;b=2", status: 400, code: api.CodeBadRequest},
		{name: "no leader put", method: "PUT", target: "/v1/kv/k", body: `1`,
			setup: func(f *fakeBackend) { f.err = fmt.Errorf("propose: %w", consensus.ErrNoLeader) }, status: 503, code: api.CodeNoLeader},
		{name: "no leader get", method: "GET", target: "/v1/kv/k",
			setup: func(f *fakeBackend) { f.err = consensus.ErrNoLeader }, status: 503, code: api.CodeNoLeader},
		{name: "no leader list", method: "GET", target: "/v1/kv",
			setup: func(f *fakeBackend) { f.err = consensus.ErrNoLeader }, status: 503, code: api.CodeNoLeader},
		{name: "timeout", method: "PUT", target: "/v1/kv/k", body: `1`,
			setup: func(f *fakeBackend) { f.err = consensus.ErrTimeout }, status: 503, code: api.CodeTimeout},
		{name: "request timeout", method: "DELETE", target: "/v1/kv/k",
			setup: func(f *fakeBackend) { f.block = true }, opts: HTTPOptions{RequestTimeout: time.Millisecond},
			status: 503, code: api.CodeTimeout},
		{name: "stopped", method: "GET", target: "/v1/kv/k",
			setup: func(f *fakeBackend) { f.err = consensus.ErrStopped }, status: 503, code: api.CodeUnavailable},
		{name: "other backend error", method: "PUT", target: "/v1/kv/k", body: `1`,
			setup: func(f *fakeBackend) { f.err = errors.New("disk on fire") }, status: 503, code: api.CodeUnavailable},
		{name: "backend's own cancellation", method: "GET", target: "/v1/kv/k",
			setup: func(f *fakeBackend) { f.err = context.Canceled }, status: 503, code: api.CodeUnavailable},
		{name: "value too large", method: "PUT", target: "/v1/kv/k", body: `1`,
			setup: func(f *fakeBackend) { f.err = kv.ErrValueTooLarge }, status: 413, code: api.CodeTooLarge},
		{name: "command too large", method: "PUT", target: "/v1/kv/k", body: `1`,
			setup: func(f *fakeBackend) { f.err = fmt.Errorf("propose: %w", consensus.ErrTooLarge) }, status: 413, code: api.CodeTooLarge},
		{name: "backend invalid key", method: "PUT", target: "/v1/kv/k", body: `1`,
			setup: func(f *fakeBackend) { f.err = kv.ErrInvalidKey }, status: 400, code: api.CodeInvalidKey},
		{name: "backend invalid value", method: "PUT", target: "/v1/kv/k", body: `1`,
			setup: func(f *fakeBackend) { f.err = kv.ErrInvalidValue }, status: 400, code: api.CodeInvalidJSON},
		{name: "deeply nested json", method: "PUT", target: "/v1/kv/k", body: strings.Repeat("[", 100000),
			status: 400, code: api.CodeInvalidJSON},
		{name: "deeply nested balanced json", method: "PUT", target: "/v1/kv/k",
			body: strings.Repeat("[", 20000) + strings.Repeat("]", 20000), status: 400, code: api.CodeInvalidJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			if tt.setup != nil {
				tt.setup(f)
			}
			h, logs := testHandler(t, f, tt.opts)
			rec := serve(h, tt.method, tt.target, tt.body)
			wantError(t, rec, tt.status, tt.code)
			if tt.status == http.StatusMethodNotAllowed {
				allow := rec.Header().Get("Allow")
				if allow == "" || !strings.Contains(allow, "GET") {
					t.Errorf("Allow = %q", allow)
				}
			}
			if tt.status == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") != "1" {
				t.Errorf("Retry-After = %q", rec.Header().Get("Retry-After"))
			}
			loggedError := strings.Contains(logs.String(), "level=ERROR")
			if wantLogged := tt.code == api.CodeUnavailable && tt.name != "stopped"; loggedError != wantLogged {
				t.Errorf("logged at Error = %v, want %v; log:\n%s", loggedError, wantLogged, logs)
			}
		})
	}
}

func TestHTTPTimeoutSaysOutcomeUnknown(t *testing.T) {
	f := newFake()
	f.block = true
	h, _ := testHandler(t, f, HTTPOptions{RequestTimeout: time.Millisecond})
	rec := serve(h, http.MethodPut, "/v1/kv/k", `1`)
	wantError(t, rec, http.StatusServiceUnavailable, api.CodeTimeout)
	if !strings.Contains(rec.Body.String(), "outcome is unknown") {
		t.Errorf("timeout message does not say the outcome is unknown: %s", rec.Body)
	}
}

func TestHTTPClientCanceled(t *testing.T) {
	f := newFake()
	f.block = true
	h, logs := testHandler(t, f, HTTPOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest(http.MethodGet, "/v1/kv/k", nil).WithContext(ctx)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	wantError(t, rec, http.StatusServiceUnavailable, api.CodeCanceled)
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("a client's cancellation was logged as an error:\n%s", logs)
	}
}

func TestHTTPPanicRecovered(t *testing.T) {
	f := newFake()
	f.panicWith = "boom"
	h, logs := testHandler(t, f, HTTPOptions{})
	for _, target := range []string{"/v1/kv/k", "/v1/status"} {
		wantError(t, serve(h, http.MethodGet, target, ""), http.StatusServiceUnavailable, api.CodeInternal)
	}
	if n := h.panics.Load(); n != 2 {
		t.Errorf("panics counted = %d, want 2", n)
	}
	if l := logs.String(); !strings.Contains(l, "boom") || !strings.Contains(l, "goroutine") {
		t.Errorf("panic not logged with its stack:\n%s", l)
	}

	// http.ErrAbortHandler keeps its meaning: abort the response.
	f.panicWith = http.ErrAbortHandler
	defer func() {
		if v := recover(); v != http.ErrAbortHandler {
			t.Errorf("recovered %v, want http.ErrAbortHandler", v)
		}
	}()
	serve(h, http.MethodGet, "/v1/kv/k", "")
}

func TestHTTPOptionsDefaults(t *testing.T) {
	h := NewHandler(newFake(), HTTPOptions{}).(*apiHandler)
	if h.opts.MaxBodyBytes != 1<<20 || h.opts.MaxKeyBytes != kv.DefaultMaxKeyBytes ||
		h.opts.RequestTimeout != 5*time.Second || h.opts.Logger == nil {
		t.Errorf("defaults = %+v", h.opts)
	}
	ok := serve(h, http.MethodPut, "/v1/kv/"+strings.Repeat("k", kv.DefaultMaxKeyBytes), `1`)
	if ok.Code != http.StatusOK {
		t.Errorf("PUT of a key at the default limit = %d %s", ok.Code, ok.Body)
	}
	big := `"` + strings.Repeat("x", 1<<20-2) + `"`
	if rec := serve(h, http.MethodPut, "/v1/kv/big", big); rec.Code != http.StatusOK {
		t.Errorf("PUT of a 1 MiB body = %d %s", rec.Code, rec.Body)
	}
	wantError(t, serve(h, http.MethodPut, "/v1/kv/big", big+" "), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
}

// roundTripKeys are keys a URL could mangle: each must come back as sent.
var roundTripKeys = []string{
	"simple", "a/b", "a:b", "a/b:c/d", "/leading", "trailing/", "a//b", "a/../b", "..", ".",
	"../../etc/passwd", "with space", "plus+sign", "per%cent", "%2F", "q?mark", "hash#tag",
	"semi;colon", "amp&eq=", "ключ", "日本語/キー", "emoji😀", "quote\"back\\slash", "<script>",
	"line\u2028separator", "zero\u200bwidth", "no\u00a0break",
}

// escapeKeepingSlashes escapes a key the way a person types a URL: slashes
// left as they are.
func escapeKeepingSlashes(key string) string {
	return strings.ReplaceAll(url.PathEscape(key), "%2F", "/")
}

func TestHTTPKeyRoundTrip(t *testing.T) {
	f := newFake()
	h, _ := testHandler(t, f, HTTPOptions{})
	for _, key := range roundTripKeys {
		for _, escaped := range []string{url.PathEscape(key), escapeKeepingSlashes(key)} {
			f.items = make(map[string]kv.Item)
			if rec := serve(h, http.MethodPut, "/v1/kv/"+escaped, `"v"`); rec.Code != http.StatusOK {
				t.Fatalf("PUT %q (as %s) = %d %s", key, escaped, rec.Code, rec.Body)
			}
			if _, ok := f.items[key]; !ok || len(f.items) != 1 {
				t.Fatalf("PUT %q (as %s) stored keys %q", key, escaped, slices.Collect(mapKeys(f.items)))
			}
			rec := serve(h, http.MethodGet, "/v1/kv/"+escaped, "")
			var it kv.Item
			if err := json.Unmarshal(rec.Body.Bytes(), &it); err != nil || rec.Code != http.StatusOK || it.Key != key {
				t.Fatalf("GET %q (as %s) = %d %s (%v)", key, escaped, rec.Code, rec.Body, err)
			}
		}
	}
	// A literal %2F is a slash in the key, and percent-decoding happens once.
	serve(h, http.MethodPut, "/v1/kv/x%2Fy", `1`)
	serve(h, http.MethodPut, "/v1/kv/x%252Fy", `2`)
	if string(f.items["x/y"].Value) != "1" || string(f.items["x%2Fy"].Value) != "2" {
		t.Errorf("decoding: stored %q", slices.Collect(mapKeys(f.items)))
	}
}

func mapKeys(m map[string]kv.Item) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestHTTPKeyRoundTripOverTheWire repeats the round trip through a real
// server and client, which must not clean or re-encode paths either.
func TestHTTPKeyRoundTripOverTheWire(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := newFake()
	h, _ := testHandler(t, f, HTTPOptions{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := srv.Client()
	do := func(method, escaped, body string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+"/v1/kv/"+escaped, strings.NewReader(body))
		if err != nil {
			t.Fatalf("%s %s: %v", method, escaped, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, escaped, err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, got
	}
	for _, key := range roundTripKeys {
		for _, escaped := range []string{url.PathEscape(key), escapeKeepingSlashes(key)} {
			if resp, body := do(http.MethodPut, escaped, `"v"`); resp.StatusCode != http.StatusOK {
				t.Fatalf("PUT %q (as %s) = %d %s", key, escaped, resp.StatusCode, body)
			}
			resp, body := do(http.MethodGet, escaped, "")
			var it kv.Item
			if err := json.Unmarshal(body, &it); err != nil || resp.StatusCode != http.StatusOK || it.Key != key {
				t.Fatalf("GET %q (as %s) = %d %s (%v)", key, escaped, resp.StatusCode, body, err)
			}
			if resp, body := do(http.MethodDelete, escaped, ""); resp.StatusCode != http.StatusOK {
				t.Fatalf("DELETE %q (as %s) = %d %s", key, escaped, resp.StatusCode, body)
			}
		}
	}
}

// buildRequest makes a server-side request from raw parts, as the fuzzer
// and the hostile-input table need: no validation beyond what the wire
// would do, and a target that does not parse is used as a path as is.
func buildRequest(method, target string, header string, body []byte, chunked bool) *http.Request {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		u = &url.URL{Path: target}
	}
	r := &http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"X-Fuzz": {header}, "Content-Type": {header}, "Accept": {header}},
		Body:       io.NopCloser(bytes.NewReader(body)),
		Host:       "example.com",
		RemoteAddr: "192.0.2.1:1234",
		RequestURI: target,
	}
	if v, ok := strings.CutPrefix(header, "!"); ok {
		// "!v" also sends v as every precondition and request-id header.
		for _, name := range []string{"If-Match", "If-None-Match", ClientIDHeader, RequestSeqHeader} {
			r.Header.Set(name, v)
		}
	}
	r.ContentLength = int64(len(body))
	if chunked {
		r.ContentLength = -1
		r.TransferEncoding = []string{"chunked"}
	}
	return r.WithContext(context.Background())
}

// checkResponse asserts what every response must satisfy, whatever the
// request: no 5xx but 503, JSON bodies, the error shape on non-2xx.
func checkResponse(t *testing.T, method string, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d (a 5xx other than 503 is a bug); body %s", rec.Code, rec.Body)
	}
	if rec.Code < 200 || rec.Code >= 600 {
		t.Fatalf("status %d", rec.Code)
	}
	if rec.Header().Get("Content-Security-Policy") == dashboard.ContentSecurityPolicy {
		// The dashboard's page or an asset (or ServeContent's answer to
		// conditional and range headers about one): not JSON, but always
		// under the policy and never a 5xx.
		if rec.Code >= 500 {
			t.Fatalf("dashboard answered %d", rec.Code)
		}
		return
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status %d with Content-Type %q", rec.Code, ct)
	}
	if rec.Code == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After")
	}
	if rec.Code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
		t.Fatalf("405 without Allow")
	}
	for name, vs := range rec.Header() {
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n\x00") || !utf8.ValidString(v) {
				t.Fatalf("header %s: %q is not a safe header value", name, v)
			}
		}
	}
	if method == http.MethodHead {
		return
	}
	if !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("status %d with a body that is not JSON: %q", rec.Code, rec.Body)
	}
	if rec.Code >= 300 {
		if _, err := checkErrorBody(rec.Body.Bytes()); err != nil {
			t.Fatalf("status %d: %v", rec.Code, err)
		}
	}
}

func TestHTTPHostileInputs(t *testing.T) {
	deep := strings.Repeat("[", 100000)
	tests := []struct {
		method, target, header, body string
		chunked                      bool
	}{
		{method: "GET", target: "/v1/kv/..%2f.."},
		{method: "PUT", target: "/v1/kv/..%2f..%2f..%2fetc%2fpasswd", body: `1`},
		{method: "GET", target: "/v1/kv/%"},
		{method: "GET", target: "/v1/kv/%zz"},
		{method: "GET", target: "/v1/kv/%%%%"},
		{method: "PUT", target: "/v1/kv/%", body: `1`},
		{method: "GET", target: "/v1/kv/a%00b"},
		{method: "PUT", target: "/v1/kv/\x00", body: "\x00"},
		{method: "PUT", target: "/v1/kv/k", body: "\"a\x00b\""},
		{method: "PUT", target: "/v1/kv/k", body: "\"a\\u0000b\""},
		{method: "GET", target: "/v1/kv/\xff\xfe"},
		{method: "GET", target: "/v1/kv/" + strings.Repeat("%", 5000)},
		{method: "GET", target: "/v1/kv/" + strings.Repeat("a/", 100000)},
		{method: "GET", target: "/" + strings.Repeat("/", 1000)},
		{method: "GET", target: "*"},
		{method: "GET", target: ""},
		{method: "GET", target: "http://evil.example/v1/kv/a"},
		{method: "CONNECT", target: "evil.example:443"},
		{method: "GET", target: "/v1/kv?prefix=%"},
		{method: "GET", target: "/v1/kv?prefix=\xff"},
		{method: "GET", target: "/v1/kv?" + strings.Repeat("&", 10000)},
		{method: "GET", target: "/v1/kv/k?consistency=local\r\nX-Injected: 1"},
		{method: "GET", target: "/v1/status", header: strings.Repeat("h", 1<<20)},
		{method: "GET", target: "/v1/kv/k", header: "v\r\nX-Injected: 1\x00"},
		{method: "PUT", target: "/v1/kv/k", body: deep},
		{method: "PUT", target: "/v1/kv/k", body: deep, chunked: true},
		{method: "PUT", target: "/v1/kv/k", body: strings.Repeat(`{"a":`, 50000)},
		{method: "PUT", target: "/v1/kv/k", body: strings.Repeat("9", 1<<19)},
		{method: "PUT", target: "/v1/kv/k", body: `"\ud800"`},
		{method: "PUT", target: "/v1/kv/k", body: strings.Repeat("x", 2<<20)},
		{method: "PUT", target: "/v1/kv/k", body: strings.Repeat("x", 2<<20), chunked: true},
		{method: "", target: "/v1/kv/k"},
		{method: "get", target: "/v1/kv/k"},
		{method: "G\x00T", target: "/v1/kv/k"},
		{method: strings.Repeat("M", 10000), target: "/v1/kv/k"},
		{method: "HEAD", target: "/v1/kv/missing"},
		{method: "HEAD", target: "/readyz"},
		{method: "TRACE", target: "/v1/kv/k"},
		{method: "PUT", target: "/v1/kv/k", header: "!" + strings.Repeat("9", 100), body: `1`},
		{method: "PUT", target: "/v1/kv/k", header: "!-1", body: `1`},
		{method: "DELETE", target: "/v1/kv/k", header: "!\"\""},
		{method: "POST", target: "/v1/txn", body: deep},
		{method: "POST", target: "/v1/txn", body: `{"ops":[{"op":"put","key":"k","value":` + deep + `}]}`},
		{method: "POST", target: "/v1/txn", body: `{"ops":[{"op":"put","key":"\ud800","value":1,"ifRevision":-5}]}`},
		{method: "POST", target: "/v1/txn", body: `{"ops":` + strings.Repeat(`{"op":"delete","key":"k"},`, 2000) + `]}`},
		{method: "POST", target: "/v1/workflows", body: `{"id":` + deep + `}`},
		{method: "POST", target: "/v1/workflows", body: `{"id":"` + strings.Repeat("w", 5000) + `"}`},
		{method: "POST", target: "/v1/workflows/%2F%2F/stop", body: `null`},
		{method: "PATCH", target: "/v1/workflows/" + strings.Repeat("%", 3000), body: `{}`},
		{method: "GET", target: "/v1/workflows/a/b/c"},
		{method: "POST", target: "/v1/nodes", body: `{"id":1}`},
		{method: "DELETE", target: "/v1/nodes/%00"},
		{method: "GET", target: "/v1/stats?consistency=nope"},
	}
	f := newFake()
	h, _ := testHandler(t, f, HTTPOptions{})
	for i, tt := range tests {
		name := tt.method + " " + tt.target
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(fmt.Sprintf("%d %q", i, name), func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, buildRequest(tt.method, tt.target, tt.header, []byte(tt.body), tt.chunked))
			checkResponse(t, tt.method, rec)
		})
	}
}

// TestHTTPHostileRequestLines sends raw request lines to a server set up
// as Start does; those net/http rejects itself never reach the handler,
// and every answer must be JSON, never a 5xx other than 503.
func TestHTTPHostileRequestLines(t *testing.T) {
	verifyNoLeaks(t)
	f := newFake()
	h, _ := testHandler(t, f, HTTPOptions{})
	addr := apiTestServer(t, h)
	for _, line := range []string{
		"GET /v1/kv/% HTTP/1.1",
		"GET /v1/kv/%zz HTTP/1.1",
		"GET /v1/kv/..%2f..%2f HTTP/1.1",
		"GET /v1/kv/a/../../b HTTP/1.1",
		"GET /v1/kv/\xff HTTP/1.1",
		"PUT /v1/kv/a%00 HTTP/1.1",
		"GET /v1/kv?prefix=%zz HTTP/1.1",
		"GET http://other.example/v1/kv/a HTTP/1.1",
		"GET * HTTP/1.1",
		"DELETE /v1/kv/ HTTP/1.1",
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, line+"\r\nHost: example.com\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%q: status %d %s", line, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" || !json.Valid(body) {
			t.Errorf("%q: %d with Content-Type %q, body %q", line, resp.StatusCode, ct, body)
		}
		if _, err := checkErrorBody(body); resp.StatusCode >= 300 && err != nil {
			t.Errorf("%q: %d: %v", line, resp.StatusCode, err)
		}
		t.Logf("%q: %d %s", line, resp.StatusCode, bytes.TrimSpace(body))
	}
}

// FuzzHTTPRequest drives arbitrary requests through the handler and a fake
// backend in any failure mode: no input may yield a 5xx other than 503, a
// non-JSON body, or an error body of another shape, and none may panic.
func FuzzHTTPRequest(f *testing.F) {
	seeds := []struct {
		method, target string
		body           string
		header         string
		chunked        bool
		mode           uint8
	}{
		{"GET", "/v1/status", "", "", false, 0},
		{"GET", "/healthz", "", "", false, 0},
		{"GET", "/readyz", "", "", false, 1},
		{"PUT", "/v1/kv/a", `{"x":[1,2,3]}`, "application/json", false, 0},
		{"PUT", "/v1/kv/a/b:c", `"v"`, "", true, 0},
		{"PUT", "/v1/kv/k", `{"a":`, "", false, 0},
		{"PUT", "/v1/kv/k", strings.Repeat("[", 200), "", false, 0},
		{"PUT", "/v1/kv/k", strings.Repeat("x", 100), "", false, 0},
		{"PUT", "/v1/kv/k", `1`, "", false, 1},
		{"PUT", "/v1/kv/k", `1`, "", false, 2},
		{"DELETE", "/v1/kv/k", "", "", false, 3},
		{"GET", "/v1/kv/k?consistency=local", "", "", false, 4},
		{"GET", "/v1/kv/k?consistency=bogus", "", "", false, 0},
		{"GET", "/v1/kv?prefix=a%2F", "", "", false, 5},
		{"GET", "/v1/kv?prefix=%zz", "", "", false, 0},
		{"GET", "/v1/kv/%FF", "", "", false, 0},
		{"GET", "/v1/kv/..%2f..", "", "", false, 0},
		{"GET", "/v1/kv/%", "", "", false, 0},
		{"GET", "/v1/kv/" + strings.Repeat("k", 40), "", "", false, 0},
		{"POST", "/v1/kv/k", `1`, "", false, 0},
		{"HEAD", "/v1/kv/k", "", "", false, 6},
		{"BREW", "/nowhere", "\x00", "\r\n", false, 7},
		{"PUT", "/v1/kv/k", `2`, "!1", false, 0},
		{"PUT", "/v1/kv/k", `2`, "!*", false, 0},
		{"DELETE", "/v1/kv/k", "", "!\"1\"", false, 0},
		{"POST", "/v1/txn", `{"ops":[{"op":"put","key":"a","value":1,"ifRevision":0},{"op":"delete","key":"k"}]}`, "", false, 0},
		{"POST", "/v1/workflows", `{"id":"w","progress":0}`, "!7", false, 0},
		{"PATCH", "/v1/workflows/w", `{"progress":1}`, "", false, 0},
		{"POST", "/v1/workflows/w/stop", ``, "", false, 0},
		{"GET", "/v1/workflows/w?consistency=local", "", "", false, 0},
		{"POST", "/v1/nodes", `{"id":"app","zone":"eu"}`, "", false, 0},
		{"DELETE", "/v1/nodes/app", "", "", false, 0},
		{"GET", "/v1/stats", "", "", false, 0},
		{"GET", "/v1/members", "", "", false, 0},
		{"POST", "/v1/members", `{"id":"n4","peerAddr":"127.0.0.1:1"}`, "", false, 0},
		{"POST", "/v1/members", `{"id":"n4","bogus":1}`, "", false, 1},
		{"DELETE", "/v1/members/n2", "", "", false, 2},
		{"POST", "/v1/members/n2/promote", "", "", false, 3},
		{"POST", "/v1/leader/transfer?target=n2", `{"target":"n2"}`, "", false, 4},
		{"GET", "/v1/cluster/nodes?healthy=true", "", "", false, 0},
		{"GET", "/v1/cluster/nodes/n1", "", "", false, 5},
		{"GET", "/v1/cluster/stats", "", "", false, 0},
		{"GET", "/", "", "", false, 0},
		{"GET", "/ui/app.js", "", "!\"x\"", false, 0},
		{"GET", "/ui/x", "", "", false, 0},
		{"GET", "/v1/events?after=3", "", "", false, 0},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, []byte(s.body), s.header, s.chunked, s.mode)
	}
	modes := []error{nil, consensus.ErrNoLeader, consensus.ErrTimeout, consensus.ErrStopped,
		errors.New("unclassified"), kv.ErrValueTooLarge, kv.ErrInvalidKey, context.Canceled}
	f.Fuzz(func(t *testing.T, method, target string, body []byte, header string, chunked bool, mode uint8) {
		fb := newFake()
		fb.err = modes[int(mode)%len(modes)]
		fb.readyErr = fb.err
		fb.status = consensus.Status{NodeID: "n1"}
		fb.items["k"] = kv.Item{Key: "k", Value: json.RawMessage(`{"v":1}`), Revision: 1, CreateRevision: 1, Version: 1}
		events := NewEventLog(2)
		for range 3 {
			events.Record(RecordedEvent{Type: "leader_elected", LeaderID: "n1", Term: 2})
		}
		h, _ := testHandler(t, fb, HTTPOptions{MaxBodyBytes: 64, MaxKeyBytes: 32,
			Logger:     slog.New(slog.DiscardHandler),
			Membership: &fakeMembership{err: fb.err}, Cluster: &fakeHealth{err: fb.err}, Events: events})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, buildRequest(method, target, header, body, chunked))
		checkResponse(t, method, rec)
		if n := h.panics.Load(); n != 0 {
			t.Fatalf("handler recovered %d panic(s)", n)
		}
	})
}
