package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

// wsTestServer serves h over a real HTTP server; cleanup drains its
// WebSocket connections and checks no panic was recovered.
func wsTestServer(t *testing.T, b Backend, opts HTTPOptions) (*apiHandler, string) {
	t.Helper()
	h := newAPIHandler(b, opts)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.ws.shutdown(ctx); err != nil {
			t.Errorf("ws shutdown: %v", err)
		}
		srv.Close()
	})
	return h, "ws" + strings.TrimPrefix(srv.URL, "http") + wsPath
}

// wsTestConn is a raw /v1/ws connection for tests.
type wsTestConn struct {
	t *testing.T
	c *websocket.Conn
}

func dialWS(t *testing.T, url string) *wsTestConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetReadLimit(64 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return &wsTestConn{t: t, c: c}
}

// wsJSON returns the JSON result of r, an answer of an operation whose
// result is JSON (queues, schedules, workflow history), failing the test
// if r is an error.
func wsJSON(t *testing.T, r wsTestResponse) []byte {
	t.Helper()
	if !r.ok {
		t.Fatalf("answer %+v, want a result", r)
	}
	b, _ := r.result.([]byte)
	return b
}

// wsFrame encodes a request frame: [1, [request, ...]].
func wsFrame(t testing.TB, reqs ...[]any) []byte {
	t.Helper()
	if reqs == nil {
		reqs = [][]any{}
	}
	b, err := msgpack.Marshal([]any{WSProtocolVersion, reqs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (w *wsTestConn) sendRaw(typ websocket.MessageType, b []byte) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, typ, b); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

func (w *wsTestConn) send(reqs ...[]any) { w.sendRaw(websocket.MessageBinary, wsFrame(w.t, reqs...)) }

// wsTestResponse is a decoded answer.
type wsTestResponse struct {
	id      uint64
	ok      bool
	result  any
	code    string
	message string
}

func toInt(t testing.TB, v any) int64 {
	t.Helper()
	switch n := v.(type) {
	case int:
		return int64(n)
	case int8:
		return int64(n)
	case int16:
		return int64(n)
	case int32:
		return int64(n)
	case int64:
		return n
	case uint8:
		return int64(n)
	case uint16:
		return int64(n)
	case uint32:
		return int64(n)
	case uint64:
		return int64(n)
	}
	t.Fatalf("%v (%T) is not an integer", v, v)
	return 0
}

// readFrame reads one frame and returns its responses.
func (w *wsTestConn) readFrame(ctx context.Context) ([]wsTestResponse, error) {
	typ, b, err := w.c.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageBinary {
		w.t.Fatalf("server sent a %v frame", typ)
	}
	var frame []any
	if err := msgpack.Unmarshal(b, &frame); err != nil {
		w.t.Fatalf("frame %x: %v", b, err)
	}
	if len(frame) != 2 || toInt(w.t, frame[0]) != WSProtocolVersion {
		w.t.Fatalf("frame %v: want [1, [...]]", frame)
	}
	var out []wsTestResponse
	for _, e := range frame[1].([]any) {
		r := e.([]any)
		if len(r) != 3 {
			w.t.Fatalf("response %v: want 3 elements", r)
		}
		resp := wsTestResponse{id: uint64(toInt(w.t, r[0]))}
		switch toInt(w.t, r[1]) {
		case api.ResultOK:
			resp.ok, resp.result = true, r[2]
		case api.ResultError:
			pair := r[2].([]any)
			resp.code, resp.message = pair[0].(string), pair[1].(string)
			if resp.code == "" || resp.message == "" {
				w.t.Fatalf("error response %v has an empty code or message", r)
			}
		default:
			w.t.Fatalf("response %v: unknown kind", r)
		}
		out = append(out, resp)
	}
	return out, nil
}

// await reads frames until n answers have arrived, and returns them by id.
func (w *wsTestConn) await(n int) map[uint64]wsTestResponse {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(map[uint64]wsTestResponse)
	for len(got) < n {
		rs, err := w.readFrame(ctx)
		if err != nil {
			w.t.Fatalf("after %d of %d answers: %v", len(got), n, err)
		}
		for _, r := range rs {
			if _, dup := got[r.id]; dup {
				w.t.Fatalf("two answers to request %d", r.id)
			}
			got[r.id] = r
		}
	}
	return got
}

func (w *wsTestConn) call(req ...any) wsTestResponse {
	w.t.Helper()
	w.send(req)
	return w.await(1)[toUintID(w.t, req[0])]
}

func toUintID(t testing.TB, v any) uint64 { return uint64(toInt(t, v)) }

// awaitClose reads until the server closes the connection and returns the
// close status and reason.
func (w *wsTestConn) awaitClose() (websocket.StatusCode, string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, _, err := w.c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			w.t.Fatalf("connection ended without a close frame: %v", err)
		}
		return ce.Code, ce.Reason
	}
}

func wantWSError(t *testing.T, r wsTestResponse, code string) {
	t.Helper()
	if r.ok || r.code != code {
		t.Fatalf("answer %+v, want error %q", r, code)
	}
}

func wantItem(t *testing.T, r wsTestResponse, key, value string, rev int64) {
	t.Helper()
	if !r.ok {
		t.Fatalf("answer %+v, want an item", r)
	}
	it := r.result.([]any)
	if len(it) != 5 || it[0] != key || string(it[1].([]byte)) != value || toInt(t, it[2]) != rev {
		t.Fatalf("item %.200v, want [%q, %.100s, %d, ...]", it, key, value, rev)
	}
}

func TestWSRoundTrip(t *testing.T) {
	f := newFake()
	f.status = consensus.Status{NodeID: "n1", IsLeader: true, LeaderID: "n1", Term: 3}
	_, url := wsTestServer(t, f, HTTPOptions{})
	w := dialWS(t, url)

	// Several requests in one frame, answered by id.
	w.send(
		[]any{1, api.OpPut, "workflow:a", []byte(` {"step": 1} `)},
		[]any{2, api.OpPut, "workflow:b", []byte(`[1, 2]`)},
		[]any{3, api.OpPut, "other", []byte(`"x"`)},
	)
	got := w.await(3)
	for id := uint64(1); id <= 3; id++ {
		if !got[id].ok {
			t.Fatalf("put %d: %+v", id, got[id])
		}
	}
	revA := toInt(t, got[1].result)

	// The value is stored compacted, as the JSON API stores it.
	lastConsistency := func() kv.Consistency {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.consistency
	}
	wantItem(t, w.call(4, api.OpGet, "workflow:a"), "workflow:a", `{"step":1}`, revA)
	if c := lastConsistency(); c != kv.Linearizable {
		t.Errorf("get without consistency was %v", c)
	}
	wantItem(t, w.call(5, api.OpGet, "workflow:a", 1), "workflow:a", `{"step":1}`, revA)
	if c := lastConsistency(); c != kv.Local {
		t.Errorf("get with consistency 1 was %v", c)
	}

	list := w.call(6, api.OpList, "workflow:")
	if !list.ok {
		t.Fatalf("list: %+v", list)
	}
	pair := list.result.([]any)
	items := pair[1].([]any)
	if toInt(t, pair[0]) != 3 || len(items) != 2 || items[0].([]any)[0] != "workflow:a" || items[1].([]any)[0] != "workflow:b" {
		t.Fatalf("list = %v", pair)
	}
	// A nil prefix lists everything; an empty list is an empty array.
	if all := w.call(7, api.OpList, nil, 1).result.([]any)[1].([]any); len(all) != 3 {
		t.Fatalf("list all = %v", all)
	}
	if none := w.call(8, api.OpList, "zzz").result.([]any)[1].([]any); len(none) != 0 {
		t.Fatalf("list none = %v", none)
	}

	del := w.call(9, api.OpDelete, "workflow:a")
	if !del.ok || toInt(t, del.result) != 4 {
		t.Fatalf("delete = %+v", del)
	}
	wantWSError(t, w.call(10, api.OpGet, "workflow:a"), api.CodeKeyNotFound)

	st := w.call(11, api.OpStatus)
	if !st.ok {
		t.Fatalf("status = %+v", st)
	}
	// The same JSON object as GET /v1/status, arrays never null.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(st.result.([]byte), &fields); err != nil {
		t.Fatalf("status %s: %v", st.result, err)
	}
	if string(fields["nodeId"]) != `"n1"` || string(fields["members"]) != "[]" || string(fields["connectedPeers"]) != "[]" {
		t.Fatalf("status = %s", st.result)
	}
	rec := serve(NewHandler(f, HTTPOptions{}), http.MethodGet, "/v1/status", "")
	if got, want := string(st.result.([]byte)), strings.TrimSpace(rec.Body.String()); got != want {
		t.Errorf("ws status %s, JSON status %s", got, want)
	}

	// Trailing fields from a newer client are skipped.
	if r := w.call(12, api.OpGet, "other", 0, "future", []any{1}); !r.ok {
		t.Fatalf("get with extra fields = %+v", r)
	}

	// cond true: the key must exist; false is malformed. (The fake serves
	// conditional writes from its kv.Store.)
	wantWSError(t, w.call(13, api.OpPut, "c", []byte("1"), nil, true), api.CodePreconditionFailed)
	if r := w.call(14, api.OpPut, "c", []byte("1"), nil, 0); !r.ok {
		t.Fatalf("create-only put = %+v", r)
	}
	if r := w.call(15, api.OpPut, "c", []byte("2"), nil, true); !r.ok {
		t.Fatalf("put with cond true on an existing key = %+v", r)
	}
	wantWSError(t, w.call(16, api.OpDelete, "c", nil, false), api.CodeBadRequest)
}

// TestWSErrorsMatchJSON checks /v1/ws answers every failure with the code
// the JSON API gives the same request.
func TestWSErrorsMatchJSON(t *testing.T) {
	tests := []struct {
		name   string
		req    []any
		method string
		target string
		body   string
		setup  func(*fakeBackend)
		opts   HTTPOptions
		code   string
	}{
		{name: "missing key", req: []any{1, api.OpGet, "nope"}, method: "GET", target: "/v1/kv/nope", code: api.CodeKeyNotFound},
		{name: "delete missing", req: []any{1, api.OpDelete, "nope"}, method: "DELETE", target: "/v1/kv/nope", code: api.CodeKeyNotFound},
		{name: "empty key", req: []any{1, api.OpPut, "", []byte("1")}, method: "PUT", target: "/v1/kv/", body: "1", code: api.CodeInvalidKey},
		{name: "invalid utf-8 key", req: []any{1, api.OpPut, "\xff", []byte("1")}, method: "PUT", target: "/v1/kv/%FF", body: "1", code: api.CodeInvalidKey},
		{name: "key too long", req: []any{1, api.OpPut, strings.Repeat("k", 17), []byte("1")}, method: "PUT",
			target: "/v1/kv/" + strings.Repeat("k", 17), body: "1", opts: HTTPOptions{MaxKeyBytes: 16}, code: api.CodeInvalidKey},
		{name: "prefix too long", req: []any{1, api.OpList, strings.Repeat("k", 17)}, method: "GET",
			target: "/v1/kv?prefix=" + strings.Repeat("k", 17), opts: HTTPOptions{MaxKeyBytes: 16}, code: api.CodeInvalidKey},
		{name: "invalid json", req: []any{1, api.OpPut, "k", []byte(`{"a":`)}, method: "PUT", target: "/v1/kv/k", body: `{"a":`, code: api.CodeInvalidJSON},
		{name: "empty value", req: []any{1, api.OpPut, "k", []byte{}}, method: "PUT", target: "/v1/kv/k", body: "", code: api.CodeInvalidJSON},
		{name: "invalid utf-8 value", req: []any{1, api.OpPut, "k", []byte("\"\xff\"")}, method: "PUT", target: "/v1/kv/k", body: "\"\xff\"", code: api.CodeInvalidJSON},
		{name: "value too large", req: []any{1, api.OpPut, "k", []byte(`"` + strings.Repeat("x", 20) + `"`)}, method: "PUT",
			target: "/v1/kv/k", body: `"` + strings.Repeat("x", 20) + `"`, opts: HTTPOptions{MaxBodyBytes: 16}, code: api.CodeTooLarge},
		{name: "backend too large", req: []any{1, api.OpPut, "k", []byte("1")}, method: "PUT", target: "/v1/kv/k", body: "1",
			setup: func(f *fakeBackend) { f.err = fmt.Errorf("propose: %w", consensus.ErrTooLarge) }, code: api.CodeTooLarge},
		{name: "no leader", req: []any{1, api.OpPut, "k", []byte("1")}, method: "PUT", target: "/v1/kv/k", body: "1",
			setup: func(f *fakeBackend) { f.err = fmt.Errorf("propose: %w", consensus.ErrNoLeader) }, code: api.CodeNoLeader},
		{name: "no leader list", req: []any{1, api.OpList, ""}, method: "GET", target: "/v1/kv",
			setup: func(f *fakeBackend) { f.err = consensus.ErrNoLeader }, code: api.CodeNoLeader},
		{name: "timeout", req: []any{1, api.OpDelete, "k"}, method: "DELETE", target: "/v1/kv/k",
			setup: func(f *fakeBackend) { f.err = consensus.ErrTimeout }, code: api.CodeTimeout},
		{name: "request timeout", req: []any{1, api.OpGet, "k"}, method: "GET", target: "/v1/kv/k",
			setup: func(f *fakeBackend) { f.block = true }, opts: HTTPOptions{RequestTimeout: time.Millisecond}, code: api.CodeTimeout},
		{name: "stopped", req: []any{1, api.OpGet, "k"}, method: "GET", target: "/v1/kv/k",
			setup: func(f *fakeBackend) { f.err = consensus.ErrStopped }, code: api.CodeUnavailable},
		{name: "other backend error", req: []any{1, api.OpPut, "k", []byte("1")}, method: "PUT", target: "/v1/kv/k", body: "1",
			setup: func(f *fakeBackend) { f.err = errors.New("disk on fire") }, code: api.CodeUnavailable},
		{name: "backend's own cancellation", req: []any{1, api.OpGet, "k"}, method: "GET", target: "/v1/kv/k",
			setup: func(f *fakeBackend) { f.err = context.Canceled }, code: api.CodeUnavailable},
		{name: "backend invalid value", req: []any{1, api.OpPut, "k", []byte("1")}, method: "PUT", target: "/v1/kv/k", body: "1",
			setup: func(f *fakeBackend) { f.err = kv.ErrInvalidValue }, code: api.CodeInvalidJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			if tt.setup != nil {
				tt.setup(f)
			}
			jsonH, _ := testHandler(t, f, tt.opts)
			rec := serve(jsonH, tt.method, tt.target, tt.body)
			jsonCode, err := checkErrorBody(rec.Body.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if jsonCode != tt.code {
				t.Fatalf("JSON API code = %q, want %q", jsonCode, tt.code)
			}
			_, url := wsTestServer(t, f, tt.opts)
			r := dialWS(t, url).call(tt.req...)
			wantWSError(t, r, tt.code)
			if tt.code == api.CodeTimeout && !strings.Contains(r.message, "outcome is unknown") {
				t.Errorf("timeout message %q does not say the outcome is unknown", r.message)
			}
		})
	}
}

func TestWSBadRequestsAreAnswered(t *testing.T) {
	f := newFake()
	h, url := wsTestServer(t, f, HTTPOptions{})
	w := dialWS(t, url)
	bad := [][]any{
		{1},                                    // no operation
		{2, 99, "k"},                           // unknown operation
		{3, "put", "k"},                        // operation not an integer
		{4, api.OpPut, 7, []byte("1")},         // key not a string
		{5, api.OpPut, "k"},                    // put without a value
		{6, api.OpPut, "k", 1},                 // value not bin
		{7, api.OpGet},                         // get without a key
		{8, api.OpGet, "k", 2},                 // unknown consistency
		{9, api.OpList, "", "local"},           // consistency not an integer
		{10, api.OpDelete, []any{"k"}},         // key an array
		{11, -1},                               // negative operation
		{12, api.OpGet, "k", map[string]int{}}, // consistency a map
		{13, api.OpPut, "k", []byte("1"), nil, nil, nil, nil, nil, true}, // fine: a field after lease, ttl and fence is skipped
	}
	w.send(bad...)
	got := w.await(len(bad))
	for i := range 12 {
		wantWSError(t, got[uint64(i+1)], api.CodeBadRequest)
	}
	if !got[13].ok {
		t.Fatalf("put with a trailing field = %+v", got[13])
	}
	// The connection still serves.
	wantItem(t, w.call(14, api.OpGet, "k"), "k", "1", 1)
	if st := h.ws.stats(); st.BadRequests != 12 || st.BadFrames != 0 || st.Requests != 14 {
		t.Errorf("stats = %+v, want 12 bad requests, 0 bad frames, 14 requests", st)
	}
}

func TestWSBadFramesCloseTheConnection(t *testing.T) {
	tooMany := make([][]any, 5)
	for i := range tooMany {
		tooMany[i] = []any{i + 1, api.OpStatus}
	}
	tests := []struct {
		name  string
		typ   websocket.MessageType
		frame []byte
		code  websocket.StatusCode
	}{
		{"garbage", websocket.MessageBinary, []byte("\xc1 this is not msgpack"), websocket.StatusProtocolError},
		{"empty", websocket.MessageBinary, []byte{}, websocket.StatusProtocolError},
		{"json", websocket.MessageBinary, []byte(`[1,[[1,2,"k"]]]`), websocket.StatusProtocolError},
		{"text frame", websocket.MessageText, []byte("hello"), websocket.StatusUnsupportedData},
		{"not an array", websocket.MessageBinary, mustMarshal(t, map[string]any{"v": 1}), websocket.StatusProtocolError},
		{"version 2", websocket.MessageBinary, mustMarshal(t, []any{2, []any{}}), websocket.StatusProtocolError},
		{"no version", websocket.MessageBinary, mustMarshal(t, []any{[]any{}}), websocket.StatusProtocolError},
		{"requests not an array", websocket.MessageBinary, mustMarshal(t, []any{1, "x"}), websocket.StatusProtocolError},
		{"request not an array", websocket.MessageBinary, mustMarshal(t, []any{1, []any{5}}), websocket.StatusProtocolError},
		{"request without id", websocket.MessageBinary, mustMarshal(t, []any{1, []any{[]any{}}}), websocket.StatusProtocolError},
		{"string id", websocket.MessageBinary, mustMarshal(t, []any{1, []any{[]any{"id", api.OpStatus}}}), websocket.StatusProtocolError},
		{"negative id", websocket.MessageBinary, mustMarshal(t, []any{1, []any{[]any{-5, api.OpStatus}}}), websocket.StatusProtocolError},
		{"too many requests", websocket.MessageBinary, mustMarshal(t, []any{1, tooMany}), websocket.StatusProtocolError},
		{"bin32 claims 4 GiB", websocket.MessageBinary, []byte{0x92, 0x01, 0x91, 0x94, 0x01, 0x01, 0xa1, 'k', 0xc6, 0xff, 0xff, 0xff, 0xff}, websocket.StatusProtocolError},
		{"array32 claims 4G requests", websocket.MessageBinary, []byte{0x92, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff}, websocket.StatusProtocolError},
		{"trailing bytes", websocket.MessageBinary, append(mustMarshal(t, []any{1, []any{}}), 0x01), websocket.StatusProtocolError},
		{"deep nesting", websocket.MessageBinary, append(bytes.Repeat([]byte{0x91}, 100), 0x01), websocket.StatusProtocolError},
		{"too large", websocket.MessageBinary, bytes.Repeat([]byte{0xc0}, 70<<10), websocket.StatusMessageTooBig},
	}
	f := newFake()
	h, url := wsTestServer(t, f, HTTPOptions{WSMaxFrameBytes: 64 << 10, WSMaxInFlight: 4})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := dialWS(t, url)
			// A good request first: its answer may or may not come before
			// the close, but the server must not fall over.
			w.send([]any{1, api.OpStatus})
			w.await(1)
			w.sendRaw(tt.typ, tt.frame)
			code, reason := w.awaitClose()
			if code != tt.code {
				t.Errorf("close code = %v (%q), want %v", code, reason, tt.code)
			}
			if code != websocket.StatusMessageTooBig && reason == "" {
				t.Error("close has no reason")
			}
			t.Logf("closed %v: %q", code, reason)
			// The library answers an oversized frame before the server's
			// reader sees the error and counts it.
			testwait.For(t, 5*time.Second, "the oversized frame counted as bad", func() bool { return h.ws.stats().BadFrames == int64(i+1) })
			// The server keeps serving new connections.
			if r := dialWS(t, url).call(1, api.OpPut, "k", []byte("1")); !r.ok {
				t.Fatalf("put after a bad frame: %+v", r)
			}
		})
	}
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWSNotAnUpgrade(t *testing.T) {
	f := newFake()
	h, _ := testHandler(t, f, HTTPOptions{})
	rec := serve(h, http.MethodGet, "/v1/ws", "")
	wantError(t, rec, http.StatusUpgradeRequired, api.CodeBadRequest)
	rec = serve(h, http.MethodPost, "/v1/ws", "")
	wantError(t, rec, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed)
	rec = serve(h, http.MethodGet, "/v1/ws/", "")
	wantError(t, rec, http.StatusNotFound, api.CodeNotFound)
}

// gatedBackend holds every Put until its gate is closed, and records how
// many were held at once.
type gatedBackend struct {
	*fakeBackend
	gate      chan struct{}
	entered   chan struct{}
	inside    atomic.Int64
	maxInside atomic.Int64
}

func newGated() *gatedBackend {
	return &gatedBackend{fakeBackend: newFake(), gate: make(chan struct{}), entered: make(chan struct{}, 1024)}
}

func (g *gatedBackend) Put(ctx context.Context, key string, value []byte) (int64, error) {
	n := g.inside.Add(1)
	defer g.inside.Add(-1)
	for {
		m := g.maxInside.Load()
		if n <= m || g.maxInside.CompareAndSwap(m, n) {
			break
		}
	}
	g.entered <- struct{}{}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return g.fakeBackend.Put(ctx, key, value)
}

func waitEntered(t *testing.T, g *gatedBackend, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case <-g.entered:
		case <-timeout:
			t.Fatalf("fewer than %d requests reached the backend", n)
		}
	}
}

// TestWSBackpressure checks a connection never has more than WSMaxInFlight
// requests in progress: the rest wait, unread, and are served later.
func TestWSBackpressure(t *testing.T) {
	g := newGated()
	const limit = 4
	h, url := wsTestServer(t, g, HTTPOptions{WSMaxInFlight: limit})
	w := dialWS(t, url)
	const frames = 5
	for i := range frames {
		var reqs [][]any
		for j := range limit {
			id := i*limit + j + 1
			reqs = append(reqs, []any{id, api.OpPut, fmt.Sprintf("k%d", id), []byte("1")})
		}
		w.send(reqs...)
	}
	waitEntered(t, g, limit)
	// The reader decodes the second frame, waits for a slot for its first
	// request, and reads nothing more while the first four are held.
	testwait.For(t, 5*time.Second, "the reader holds at twice the limit of requests", func() bool { return h.ws.stats().Requests == 2*limit })
	if n := g.inside.Load(); n != limit {
		t.Fatalf("%d requests in progress, want %d", n, limit)
	}
	close(g.gate)
	got := w.await(frames * limit)
	for id, r := range got {
		if !r.ok {
			t.Errorf("put %d: %+v", id, r)
		}
	}
	if m := g.maxInside.Load(); m > limit {
		t.Errorf("%d requests were in progress at once, limit %d", m, limit)
	}
}

// TestWSAnswersOutOfOrder checks answers go out as they complete, not in
// request order: a slow request does not hold back a fast one.
func TestWSAnswersOutOfOrder(t *testing.T) {
	g := newGated()
	_, url := wsTestServer(t, g, HTTPOptions{})
	w := dialWS(t, url)
	w.send([]any{1, api.OpPut, "slow", []byte("1")}, []any{2, api.OpGet, "missing"})
	waitEntered(t, g, 1)
	first := w.await(1)
	if r, ok := first[2]; !ok || r.code != api.CodeKeyNotFound {
		t.Fatalf("first answer = %+v, want the get's key_not_found", first)
	}
	close(g.gate)
	if r := w.await(1)[1]; !r.ok {
		t.Fatalf("put = %+v", r)
	}
}

func TestWSShutdownDrains(t *testing.T) {
	g := newGated()
	h := newAPIHandler(g, HTTPOptions{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	w := dialWS(t, "ws"+strings.TrimPrefix(srv.URL, "http")+wsPath)
	w.send([]any{1, api.OpPut, "k", []byte("1")})
	waitEntered(t, g, 1)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- h.ws.shutdown(ctx)
	}()
	// Once draining, a new request is refused at once, not served.
	testwait.For(t, 5*time.Second, "the hub is draining", func() bool { return h.ws.isClosing() })
	wantWSError(t, w.call(2, api.OpGet, "k"), api.CodeUnavailable)

	close(g.gate)
	if r := w.await(1)[1]; !r.ok {
		t.Fatalf("the put in progress was not answered: %+v", r)
	}
	if code, _ := w.awaitClose(); code != websocket.StatusGoingAway {
		t.Errorf("close code = %v, want going away", code)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+wsPath, nil); err == nil {
		t.Error("a connection was accepted after shutdown")
	}
}

func TestWSShutdownAbortsAtDeadline(t *testing.T) {
	g := newGated()
	h := newAPIHandler(g, HTTPOptions{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	w := dialWS(t, "ws"+strings.TrimPrefix(srv.URL, "http")+wsPath)
	w.send([]any{1, api.OpPut, "k", []byte("1")})
	waitEntered(t, g, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := h.ws.shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("shutdown = %v, want deadline exceeded", err)
	}
	if st := h.ws.stats(); st.Open != 0 {
		t.Errorf("%d connections still open", st.Open)
	}
}

func TestWSPanicAnsweredInternal(t *testing.T) {
	f := newFake()
	f.panicWith = "boom"
	h, url := wsTestServer(t, f, HTTPOptions{})
	w := dialWS(t, url)
	wantWSError(t, w.call(1, api.OpGet, "k"), api.CodeInternal)
	f.mu.Lock()
	f.panicWith = nil
	f.mu.Unlock()
	wantWSError(t, w.call(2, api.OpGet, "k"), api.CodeKeyNotFound)
	if n := h.panics.Load(); n != 1 {
		t.Errorf("panics = %d, want 1", n)
	}
}

func TestWSResponseLargerThanAFrame(t *testing.T) {
	f := newFake()
	// Frames of 16 KiB; values of up to 12 KiB are accepted, but two of
	// them do not fit in one answer.
	_, url := wsTestServer(t, f, HTTPOptions{WSMaxFrameBytes: 16 << 10, MaxBodyBytes: 12 << 10})
	w := dialWS(t, url)
	big := []byte(`"` + strings.Repeat("x", 10<<10) + `"`)
	w.call(1, api.OpPut, "a", big)
	w.call(2, api.OpPut, "b", big)
	wantItem(t, w.call(3, api.OpGet, "a"), "a", string(big), 1)
	wantWSError(t, w.call(4, api.OpList, ""), api.CodeTooLarge)
	// Many answers that do not fit in one frame are split over several.
	var reqs [][]any
	for i := range 8 {
		reqs = append(reqs, []any{10 + i, api.OpGet, "a"})
	}
	w.send(reqs...)
	for id, r := range w.await(len(reqs)) {
		if !r.ok {
			t.Errorf("get %d: %+v", id, r)
		}
	}
}

func TestWSDecodeFrameRoundTrip(t *testing.T) {
	reqs := [][]any{
		{1, api.OpPut, "k", []byte(`{"a":1}`)},
		{uint64(1) << 63, api.OpGet, "é/ü", 1},
		{3, api.OpDelete, "d"},
		{4, api.OpList, "p", 0},
		{5, api.OpList},
		{6, api.OpStatus},
	}
	got, err := decodeWSFrame(wsFrame(t, reqs...), 16)
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Request{
		{ID: 1, Op: api.OpPut, Key: "k", Value: []byte(`{"a":1}`)},
		{ID: 1 << 63, Op: api.OpGet, Key: "é/ü", Consistency: kv.Local},
		{ID: 3, Op: api.OpDelete, Key: "d"},
		{ID: 4, Op: api.OpList, Key: "p"},
		{ID: 5, Op: api.OpList},
		{ID: 6, Op: api.OpStatus},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("decoded %+v\nwant    %+v", got, want)
	}
}

// FuzzWSFrame checks the frame decoder never panics, never allocates
// beyond a small multiple of its input, and that what it accepts encodes
// back to a frame that decodes the same.
func FuzzWSFrame(f *testing.F) {
	f.Add(wsFrame(f, []any{1, api.OpPut, "k", []byte(`{"a":1}`)}, []any{2, api.OpGet, "k", 1}))
	f.Add(wsFrame(f, []any{3, api.OpList, "p"}, []any{4, api.OpDelete, "k"}, []any{5, api.OpStatus}))
	f.Add(wsFrame(f, []any{6, 99, "x"}, []any{7}, []any{8, api.OpPut, 1, 2}))
	f.Add(wsFrame(f))
	f.Add([]byte{0x92, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x92, 0x01, 0x91, 0x94, 0x01, 0x01, 0xa1, 'k', 0xc6, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte("\xc1garbage"))
	f.Add(wsFrame(f, []any{9, api.OpPut, "k", []byte(`1`), []any{"c", 1}, 0}, []any{10, api.OpDelete, "k", nil, 3}))
	f.Add(wsFrame(f, []any{11, api.OpTxn, []any{[]any{1, "a", []byte(`1`), 0}, []any{2, "b"}, []any{7}}, []any{"c", 2}}))
	f.Add(wsFrame(f, []any{12, api.OpWorkflowStart, "w", []byte(`{}`)}, []any{13, api.OpWorkflowStop, "w", nil, nil}, []any{14, api.OpWorkflowList, 1}))
	f.Add(wsFrame(f, []any{15, api.OpNodeRegister, "n", nil, []any{"c"}}, []any{16, api.OpNodeDeregister, "n"}, []any{17, api.OpWorkflowGet, "w"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		reqs, err := decodeWSFrame(b, 64)
		if err != nil {
			return
		}
		if len(reqs) > 64 {
			t.Fatalf("%d requests decoded, limit 64", len(reqs))
		}
		// What the decoder accepts, api's encoder (the client's) writes
		// back to a frame that decodes the same.
		var again []byte
		var good []api.Request
		for _, r := range reqs {
			if r.Bad != "" {
				continue
			}
			args, nargs := api.AppendArgs(nil, &r)
			again = api.AppendRequest(again, r.ID, r.Op, nargs, args)
			good = append(good, r)
		}
		frame := append(api.AppendFrameHeader(nil, len(good)), again...)
		reqs2, err := decodeWSFrame(frame, 64)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		if len(reqs2) != len(good) {
			t.Fatalf("re-encoded frame has %d requests, want %d", len(reqs2), len(good))
		}
		for i, r := range reqs2 {
			if r.Bad != "" {
				t.Fatalf("re-encoded request %d is bad: %s", i, r.Bad)
			}
			if !reflect.DeepEqual(r, good[i]) {
				t.Fatalf("re-encoded request %d decodes as %+v, want %+v", i, r, good[i])
			}
		}
	})
}

// TestWSProtocolExample checks the example in docs/PROTOCOL.md.
func TestWSProtocolExample(t *testing.T) {
	req := []byte{0x92, 0x01, 0x91, 0x94, 0x01, 0x01, 0xa1, 0x6b, 0xc4, 0x07, 0x7b, 0x22, 0x61, 0x22, 0x3a, 0x31, 0x7d}
	reqs, err := decodeWSFrame(req, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 1 || reqs[0].ID != 1 || reqs[0].Op != api.OpPut || reqs[0].Key != "k" || string(reqs[0].Value) != `{"a":1}` {
		t.Fatalf("decoded %+v", reqs)
	}
	resp := encodeWSResponse(1, api.OpPut, api.Response{Revision: 5}, nil, DefaultWSMaxFrameBytes)
	frame := api.AppendFrameHeader(nil, 1)
	frame = append(frame, resp...)
	if want := []byte{0x92, 0x01, 0x91, 0x93, 0x01, 0x00, 0x05}; !bytes.Equal(frame, want) {
		t.Fatalf("answer frame % x, want % x", frame, want)
	}
}
