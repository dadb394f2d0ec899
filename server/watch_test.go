package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

const sseTimeout = 20 * time.Second

// sseMessage is one SSE message: an event (data set) or an id-only
// progress message.
type sseMessage struct {
	id    string // "" when the message has no id line
	event string
	data  string
}

// sseStream reads a GET /v1/watch response.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
	// lastID is what an EventSource would send as Last-Event-ID.
	lastID   string
	comments int
}

// openWatch sends GET url with the headers and returns the response; for
// a 200 the stream is read with next. The stream is bounded by sseTimeout.
func openWatch(t *testing.T, url string, header map[string]string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sseTimeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	s := &sseStream{t: t, resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(s.close)
	return s
}

func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// body reads a non-stream answer.
func (s *sseStream) body() []byte {
	s.t.Helper()
	b, err := io.ReadAll(s.resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

// next returns the next message, skipping comments.
func (s *sseStream) next() (sseMessage, error) {
	var m sseMessage
	var hasField bool
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return m, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if hasField {
				if m.id != "" {
					s.lastID = m.id
				}
				return m, nil
			}
			continue
		}
		if strings.HasPrefix(line, ":") {
			s.comments++
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		hasField = true
		switch field {
		case "id":
			m.id = value
		case "event":
			m.event = value
		case "data":
			if m.data != "" {
				m.data += "\n"
			}
			m.data += value
		}
	}
}

type sseData struct {
	Type           string          `json:"type"`
	Key            string          `json:"key"`
	Value          json.RawMessage `json:"value"`
	Revision       int64           `json:"revision"`
	CreateRevision int64           `json:"createRevision"`
	Version        int64           `json:"version"`
}

// nextEvent returns the next event's data, skipping progress messages.
func (s *sseStream) nextEvent() sseData {
	s.t.Helper()
	for {
		m, err := s.next()
		if err != nil {
			s.t.Fatalf("watch stream: %v", err)
		}
		if m.data == "" {
			continue
		}
		if m.event != "" {
			s.t.Fatalf("watch stream sent event %q: %s", m.event, m.data)
		}
		var d sseData
		if err := json.Unmarshal([]byte(m.data), &d); err != nil {
			s.t.Fatalf("event data %q: %v", m.data, err)
		}
		if m.id != strconv.FormatInt(d.Revision, 10) {
			s.t.Fatalf("event at revision %d has id %q", d.Revision, m.id)
		}
		return d
	}
}

// startWatchServer starts a one-node server with the given watch history
// and HTTP options and waits until it leads.
func startWatchServer(t *testing.T, history kv.WatchConfig, opts HTTPOptions, wrapHTTP ...func(net.Listener) net.Listener) *Server {
	t.Helper()
	return startOne(t, func(c *Config) {
		c.HTTP, c.WatchHistory = opts, history
		for _, wrap := range wrapHTTP {
			c.HTTPListener = wrap(c.HTTPListener)
		}
	})
}

// putRev writes value under key at base and returns the revision.
func putRev(t *testing.T, base, key, value string, token string) int64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, base+"/v1/kv/"+key, strings.NewReader(value))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r revisionResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT %s: %d %v", key, resp.StatusCode, err)
	}
	return r.Revision
}

func TestWatchSSEOrderIDsAndResume(t *testing.T) {
	s := startWatchServer(t, kv.WatchConfig{}, HTTPOptions{})
	base := "http://" + s.HTTPAddr()
	putRev(t, base, "a/1", `1`, "")
	putRev(t, base, "b/1", `"x"`, "")
	putRev(t, base, "a/2", `{"n":2}`, "")

	w := openWatch(t, base+"/v1/watch?prefix=a/&from_revision=1", nil)
	if w.resp.StatusCode != http.StatusOK || w.resp.Header.Get("Content-Type") != "text/event-stream" ||
		w.resp.Header.Get(StartRevisionHeader) != "1" {
		t.Fatalf("watch: %d %v", w.resp.StatusCode, w.resp.Header)
	}
	if m, err := w.next(); err != nil || m.id != "0" || m.data != "" {
		t.Fatalf("first message %+v %v, want id 0 only", m, err)
	}
	if d := w.nextEvent(); d.Type != "put" || d.Key != "a/1" || string(d.Value) != "1" || d.Revision != 1 || d.CreateRevision != 1 || d.Version != 1 {
		t.Fatalf("event 1: %+v", d)
	}
	if d := w.nextEvent(); d.Key != "a/2" || string(d.Value) != `{"n":2}` || d.Revision != 3 {
		t.Fatalf("event 2: %+v", d)
	}
	// Live, after the replay.
	putRev(t, base, "a/1", `11`, "")
	if d := w.nextEvent(); d.Key != "a/1" || d.Revision != 4 || d.CreateRevision != 1 || d.Version != 2 {
		t.Fatalf("live put: %+v", d)
	}
	if r := call(t, http.MethodDelete, base+"/v1/kv/a/2", nil); r.status != http.StatusOK {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if d := w.nextEvent(); d.Type != "delete" || d.Key != "a/2" || d.Revision != 5 || string(d.Value) != "null" {
		t.Fatalf("live delete: %+v", d)
	}
	if w.lastID != "5" {
		t.Fatalf("last id %q", w.lastID)
	}

	// Resume by from_revision.
	w2 := openWatch(t, base+"/v1/watch?prefix=a/&from_revision=3", nil)
	if d := w2.nextEvent(); d.Revision != 3 {
		t.Fatalf("from 3: first event %+v", d)
	}
	// Resume by Last-Event-ID, which wins over the URL's from_revision (an
	// EventSource reconnects with both).
	w3 := openWatch(t, base+"/v1/watch?prefix=a/&from_revision=1", map[string]string{"Last-Event-ID": "4"})
	if w3.resp.Header.Get(StartRevisionHeader) != "5" {
		t.Fatalf("Last-Event-ID 4: start %q", w3.resp.Header.Get(StartRevisionHeader))
	}
	if d := w3.nextEvent(); d.Revision != 5 {
		t.Fatalf("after Last-Event-ID 4: first event %+v", d)
	}
	// From now: starts after the current revision.
	w4 := openWatch(t, base+"/v1/watch", nil)
	if w4.resp.Header.Get(StartRevisionHeader) != "6" {
		t.Fatalf("from now: start %q", w4.resp.Header.Get(StartRevisionHeader))
	}
	putRev(t, base, "c", `true`, "")
	if d := w4.nextEvent(); d.Key != "c" || d.Revision != 6 {
		t.Fatalf("from now: %+v", d)
	}
}

func TestWatchBadRequests(t *testing.T) {
	s := startWatchServer(t, kv.WatchConfig{}, HTTPOptions{})
	base := "http://" + s.HTTPAddr()
	for _, tc := range []struct {
		query, lastID string
		status        int
		code          string
	}{
		{"?from_revision=x", "", 400, api.CodeBadRequest},
		{"?from_revision=-1", "", 400, api.CodeBadRequest},
		{"?from_revision=1.5", "", 400, api.CodeBadRequest},
		{"?from_revision=", "", 400, api.CodeBadRequest},
		{"?from_revision=1&from_revision=2", "", 400, api.CodeBadRequest},
		{"?prefix=" + strings.Repeat("p", kv.DefaultMaxKeyBytes+1), "", 400, api.CodeInvalidKey},
		{"", "abc", 400, api.CodeBadRequest},
		{"", "-2", 400, api.CodeBadRequest},
	} {
		hdr := map[string]string{}
		if tc.lastID != "" {
			hdr["Last-Event-ID"] = tc.lastID
		}
		w := openWatch(t, base+"/v1/watch"+tc.query, hdr)
		body := w.body()
		code, err := checkErrorBody(body)
		if w.resp.StatusCode != tc.status || err != nil || code != tc.code {
			t.Errorf("%q Last-Event-ID %q: %d %s, want %d %s", tc.query, tc.lastID, w.resp.StatusCode, body, tc.status, tc.code)
		}
	}
	r := call(t, http.MethodPost, base+"/v1/watch", nil)
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET" {
		t.Fatalf("POST /v1/watch: %d %v", r.status, r.header)
	}
}

func TestWatchCompactedAnswers410WithTheOldestRevision(t *testing.T) {
	s := startWatchServer(t, kv.WatchConfig{HistoryEvents: 5}, HTTPOptions{})
	base := "http://" + s.HTTPAddr()
	for i := range 10 {
		putRev(t, base, fmt.Sprintf("k%d", i), `1`, "")
	}
	w := openWatch(t, base+"/v1/watch?from_revision=5", nil)
	body := w.body()
	var b compactedBody
	if err := json.Unmarshal(body, &b); err != nil || w.resp.StatusCode != http.StatusGone ||
		b.Error.Code != api.CodeCompacted || b.Error.OldestRevision != 6 || w.resp.Header.Get(OldestRevisionHeader) != "6" {
		t.Fatalf("watch from 5 with history 6..10: %d %v %s", w.resp.StatusCode, w.resp.Header, body)
	}
	// A reconnecting EventSource gets the same.
	w = openWatch(t, base+"/v1/watch", map[string]string{"Last-Event-ID": "4"})
	if w.body(); w.resp.StatusCode != http.StatusGone {
		t.Fatalf("Last-Event-ID 4: %d", w.resp.StatusCode)
	}
	w = openWatch(t, base+"/v1/watch?from_revision=6", nil)
	if d := w.nextEvent(); w.resp.StatusCode != http.StatusOK || d.Revision != 6 {
		t.Fatalf("from the oldest revision: %d %+v", w.resp.StatusCode, d)
	}
}

func TestWatchHeartbeatsCarryProgress(t *testing.T) {
	s := startWatchServer(t, kv.WatchConfig{}, HTTPOptions{Watch: WatchOptions{Heartbeat: 20 * time.Millisecond}})
	base := "http://" + s.HTTPAddr()
	w := openWatch(t, base+"/v1/watch?prefix=quiet/", nil)
	rev := putRev(t, base, "loud", `1`, "")
	// The watch sees nothing under its prefix, but its id moves past rev,
	// so a reconnect does not ask for history it does not need.
	for {
		m, err := w.next()
		if err != nil {
			t.Fatal(err)
		}
		if m.data != "" {
			t.Fatalf("unexpected event %+v", m)
		}
		if m.id == strconv.FormatInt(rev, 10) {
			break
		}
	}
	if w.comments == 0 {
		t.Fatal("no heartbeat comment")
	}
}

// The per-client limit refuses one client's extra watch with 429 while
// another client opens watches and is served.
func TestWatchesPerClientLimit(t *testing.T) {
	s := startWatchServer(t, kv.WatchConfig{}, HTTPOptions{Tokens: testTokens(t), Watch: WatchOptions{MaxPerClient: 2}})
	base := "http://" + s.HTTPAddr()
	ro := map[string]string{"Authorization": "Bearer r3ad-only"}
	rw := map[string]string{"Authorization": "Bearer s3cret-rw"}
	a1 := openWatch(t, base+"/v1/watch?prefix=k", ro)
	a2 := openWatch(t, base+"/v1/watch?prefix=k", ro)
	for _, w := range []*sseStream{a1, a2} {
		if w.resp.StatusCode != http.StatusOK {
			t.Fatalf("read-only watch: %d %s", w.resp.StatusCode, w.body())
		}
	}
	a3 := openWatch(t, base+"/v1/watch?prefix=k", ro)
	body := a3.body()
	if code, _ := checkErrorBody(body); a3.resp.StatusCode != http.StatusTooManyRequests || code != api.CodeTooManyWatches || a3.resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third watch: %d %v %s", a3.resp.StatusCode, a3.resp.Header, body)
	}
	// Another client is served: it watches, writes, and everyone sees it.
	b1 := openWatch(t, base+"/v1/watch?prefix=k", rw)
	if b1.resp.StatusCode != http.StatusOK {
		t.Fatalf("other client's watch: %d %s", b1.resp.StatusCode, b1.body())
	}
	rev := putRev(t, base, "k", `1`, "s3cret-rw")
	for _, w := range []*sseStream{a1, a2, b1} {
		if d := w.nextEvent(); d.Revision != rev {
			t.Fatalf("event %+v, want revision %d", d, rev)
		}
	}
	// Closing a watch frees its slot.
	a1.close()
	testwait.For(t, 10*time.Second, "the closed watch frees its slot", func() bool { return s.api.watches.open() == 2 })
	a4 := openWatch(t, base+"/v1/watch?prefix=k", ro)
	if a4.resp.StatusCode != http.StatusOK {
		t.Fatalf("watch after closing one: %d %s", a4.resp.StatusCode, a4.body())
	}
	// Without a token: 401, as for every route.
	if w := openWatch(t, base+"/v1/watch", nil); w.resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("watch without a token: %d", w.resp.StatusCode)
	}
}

func TestServerCloseEndsWatchStreams(t *testing.T) {
	s := startWatchServer(t, kv.WatchConfig{}, HTTPOptions{})
	base := "http://" + s.HTTPAddr()
	var streams []*sseStream
	for range 3 {
		w := openWatch(t, base+"/v1/watch", nil)
		if _, err := w.next(); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, w)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close with open watches: %v after %v", err, time.Since(start))
	}
	for _, w := range streams {
		for {
			_, err := w.next()
			if err == nil {
				continue
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("stream after close: %v", err)
			}
			break
		}
	}
}

// A client watches one node while writes go through the others and the
// leader changes, then moves to another node resuming from its last id,
// then back to the first after it restarted: every revision arrives once,
// in order.
func TestClusterWatchMovesBetweenNodesWithoutGapOrRepeat(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	url := func(id string) string { return "http://" + c.https[id] }

	var last int64 // the highest revision written
	write := func(n int, except string) {
		for range n {
			id := c.ids[rng.IntN(len(c.ids))]
			for id == except {
				id = c.ids[rng.IntN(len(c.ids))]
			}
			last = max(last, putRev(t, url(id), fmt.Sprintf("w/%d", rng.IntN(10)), strconv.Itoa(rng.IntN(100)), ""))
		}
	}
	var got []int64
	// read takes events from w until it has seen revision upTo.
	read := func(w *sseStream, upTo int64) {
		for len(got) == 0 || got[len(got)-1] < upTo {
			got = append(got, w.nextEvent().Revision)
		}
	}

	first := c.ids[0]
	w := openWatch(t, url(first)+"/v1/watch?prefix=w/&from_revision=1", nil)
	write(20, first)
	read(w, last)
	// A leader change in the middle.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.servers[leader].Node().TransferLeadership(ctx); err != nil {
		t.Fatal(err)
	}
	c.waitLeader()
	write(20, first)
	// Leave mid-stream: take a few more events, then go.
	read(w, got[len(got)-1]+3)
	resumeFrom := w.lastID
	w.close()
	write(20, "")

	second := c.ids[1]
	w2 := openWatch(t, url(second)+"/v1/watch?prefix=w/", map[string]string{"Last-Event-ID": resumeFrom})
	if w2.resp.StatusCode != http.StatusOK {
		t.Fatalf("resume on %s from %s: %d %s", second, resumeFrom, w2.resp.StatusCode, w2.body())
	}
	write(20, "")
	read(w2, last)
	w2.close()

	// Back to the first node after it restarted: it rebuilt its history
	// by replaying its log.
	c.stop(first)
	write(10, first)
	c.start(first)
	w3 := openWatch(t, url(first)+"/v1/watch?prefix=w/", map[string]string{"Last-Event-ID": w2.lastID})
	if w3.resp.StatusCode != http.StatusOK {
		t.Fatalf("resume on restarted %s from %s: %d %s", first, w2.lastID, w3.resp.StatusCode, w3.body())
	}
	c.waitLeader()
	write(10, "")
	read(w3, last)
	for i, rev := range got {
		if rev != int64(i+1) {
			t.Fatalf("revision %d at position %d: gap, repeat or reorder in %v", rev, i, got)
		}
	}
	if got[len(got)-1] != last || last != 100 {
		t.Fatalf("watched up to %d, wrote up to %d", got[len(got)-1], last)
	}
}

func TestWatchNeedsAWatchBackend(t *testing.T) {
	// Embedding the interface hides the fake's Watch (from its kv.Store).
	h := NewHandler(struct{ Backend }{newFake()}, HTTPOptions{})
	wantError(t, serve(h, http.MethodGet, "/v1/watch", ""), http.StatusNotFound, api.CodeNotFound)
}

func TestWatchStreamErrorEvent(t *testing.T) {
	var h apiHandler
	var buf bytes.Buffer
	h.endWatch(&buf, fmt.Errorf("x: %w", &kv.CompactedError{Requested: 3, Oldest: 7}))
	want := `event: error` + "\n" + `data: {"error":{"code":"compacted","message":"x: kv: watch from revision 3: revision compacted; the oldest available is 7","oldestRevision":7}}` + "\n\n"
	if buf.String() != want {
		t.Fatalf("error event:\n%s\nwant\n%s", buf.String(), want)
	}
	buf.Reset()
	h.endWatch(&buf, context.Canceled)
	if buf.Len() != 0 {
		t.Fatalf("a cancelled watch wrote %q", buf.String())
	}
}

// A client that stops reading while much is written falls out of the
// history: its stream delivers what it can, in order, then ends with an
// error event naming the oldest revision. Never a silent gap.
func TestSlowWatchStreamEndsWithCompactedEvent(t *testing.T) {
	// Small socket buffers, so that not reading is felt at once.
	s := startWatchServer(t, kv.WatchConfig{HistoryEvents: 4}, HTTPOptions{Watch: WatchOptions{WriteTimeout: time.Minute}},
		func(ln net.Listener) net.Listener { return smallBuffers{ln} })
	base := "http://" + s.HTTPAddr()
	w := openWatch(t, base+"/v1/watch?from_revision=1", nil)
	if _, err := w.next(); err != nil {
		t.Fatal(err)
	}
	// Far more than the socket buffers and the watcher's channel (eight
	// responses of at most 256 KiB) hold.
	value := `"` + strings.Repeat("v", 64<<10) + `"`
	const writes = 100
	for i := range writes {
		putRev(t, base, fmt.Sprintf("k%d", i%10), value, "")
	}
	var want int64 = 1
	for {
		m, err := w.next()
		if err != nil {
			t.Fatalf("stream ended without an error event after revision %d: %v", want-1, err)
		}
		if m.event == "error" {
			var b compactedBody
			if err := json.Unmarshal([]byte(m.data), &b); err != nil || b.Error.Code != api.CodeCompacted || b.Error.OldestRevision <= want {
				t.Fatalf("error event %q after revision %d", m.data, want-1)
			}
			break
		}
		if m.data == "" {
			continue
		}
		var d sseData
		if err := json.Unmarshal([]byte(m.data), &d); err != nil || d.Revision != want {
			t.Fatalf("event at revision %d, want %d: %v", d.Revision, want, err)
		}
		want++
	}
	if want > writes {
		t.Fatalf("the reader was never behind the history (got all %d)", writes)
	}
	if stalled, behind := s.api.watches.ended(); stalled != 0 || behind != 1 {
		t.Fatalf("streams ended by the server: %d stalled, %d behind; want 0 and 1", stalled, behind)
	}
	if _, err := w.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the error event: %v", err)
	}
	// Resuming where it stopped is refused, not served with a gap.
	w2 := openWatch(t, base+"/v1/watch", map[string]string{"Last-Event-ID": strconv.FormatInt(want-1, 10)})
	if w2.body(); w2.resp.StatusCode != http.StatusGone {
		t.Fatalf("resume after falling behind: %d", w2.resp.StatusCode)
	}
}

// smallBuffers accepts connections with a small send buffer.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(8 << 10)
	}
	return c, err
}

// stalledWatchClient is an HTTP client whose connections have a small
// receive buffer, so that a caller who stops reading a body is felt by
// the server after a few KiB rather than after the kernel's autotuned
// megabytes.
func stalledWatchClient(t *testing.T) *http.Client {
	t.Helper()
	dialer := &net.Dialer{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(8 << 10)
			}
			return c, err
		},
		DisableCompression: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// A watcher whose client stops reading (the stalled one) is cut off once
// one write to it has been blocked for WatchOptions.WriteTimeout; until
// then, and after, writes and a healthy watcher of the same prefix go on
// at their own pace: every write is acknowledged, and every event reaches
// the healthy watcher, within stallBound, well under the time the stalled
// stream is held. The stalled client then resumes from the last id it
// received and gets every later revision, with no gap and no repeat.
func TestStalledWatcherIsCutOffAndResumesWithoutSlowingOthers(t *testing.T) {
	const (
		writeTimeout = 4 * time.Second
		// stallBound bounds a write's latency and the healthy watcher's
		// delivery lag (receipt minus acknowledgement). It is half the
		// write timeout: a healthy watcher or writer held up by the
		// stalled stream would wait out most of the write timeout.
		stallBound = writeTimeout / 2
		// Four KiB values, one write every 2 ms: the stalled stream's
		// buffers (the watcher's channel of eight responses of at most
		// 256 KiB, the server's write buffer, 8 KiB socket buffers) fill
		// after about 600 writes, and the history (set below) keeps all.
		valueBytes = 4 << 10
		pace       = 2 * time.Millisecond
		maxWrites  = 20_000
	)
	s := startWatchServer(t, kv.WatchConfig{HistoryEvents: maxWrites, HistoryBytes: 256 << 20},
		HTTPOptions{Watch: WatchOptions{WriteTimeout: writeTimeout}},
		func(ln net.Listener) net.Listener { return smallBuffers{ln} })
	base := "http://" + s.HTTPAddr()
	url := base + "/v1/watch?prefix=fan/&from_revision=1"

	// The stalled watcher reads its first message, then nothing.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stalledWatchClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	stalled := &sseStream{t: t, resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(stalled.close)
	if m, err := stalled.next(); err != nil || m.id != "0" {
		t.Fatalf("stalled watcher's first message %+v: %v", m, err)
	}

	// The healthy watcher reads all the time and notes when each revision
	// arrives.
	healthy := openWatch(t, url, nil)
	if m, err := healthy.next(); err != nil || m.id != "0" {
		t.Fatalf("healthy watcher's first message %+v: %v", m, err)
	}
	arrivals := make(chan arrival, maxWrites)
	healthyDone := make(chan error, 1)
	go func() {
		for {
			m, err := healthy.next()
			if err != nil {
				healthyDone <- err
				return
			}
			if m.data == "" {
				continue
			}
			var d sseData
			if err := json.Unmarshal([]byte(m.data), &d); err != nil {
				healthyDone <- err
				return
			}
			arrivals <- arrival{d.Revision, time.Now()}
		}
	}()

	// Write until the server has cut the stalled stream off.
	acked, lastRev, worstWrite := writeWhileStalled(t, base, "watcher", valueBytes, pace, maxWrites, stallBound,
		func() bool { return s.api.watches.open() == 2 })
	if stalled, behind := s.api.watches.ended(); stalled != 1 || behind != 0 {
		t.Fatalf("streams ended by the server: %d stalled, %d behind; want 1 and 0", stalled, behind)
	}
	// And a few more after the cut-off, which the resumed stream must get.
	for i := range 10 {
		lastRev = putRev(t, base, fmt.Sprintf("fan/after/%d", i), `1`, "")
		acked[lastRev] = time.Now()
	}
	t.Logf("%d writes; the stalled stream was cut off after revision %d was written; slowest write %v",
		len(acked), lastRev-10, worstWrite)

	// The healthy watcher got every revision, in order, each in time.
	checkArrivals(t, "healthy watcher", arrivals, healthyDone, acked, lastRev, stallBound)

	// The stalled client reads what reached it: events in order, then the
	// end of the stream with no error event (nothing more could be sent).
	var got int64
	for {
		m, err := stalled.next()
		if err != nil {
			break // EOF, or the reset of the connection the server closed
		}
		if m.event != "" {
			t.Fatalf("stalled stream sent event %q: %s", m.event, m.data)
		}
		if m.data == "" {
			continue
		}
		var d sseData
		if err := json.Unmarshal([]byte(m.data), &d); err != nil || d.Revision != got+1 {
			t.Fatalf("stalled stream: event %q after revision %d: %v", m.data, got, err)
		}
		got = d.Revision
	}
	last, err := strconv.ParseInt(stalled.lastID, 10, 64)
	if err != nil || last != got || last >= lastRev-10 {
		t.Fatalf("stalled stream: last id %q, last event %d, of %d written before the cut-off", stalled.lastID, got, lastRev-10)
	}
	t.Logf("the stalled watcher had received revisions 1..%d", last)

	// It resumes from its last id: every later revision, once, in order.
	resumed := openWatch(t, base+"/v1/watch?prefix=fan/", map[string]string{"Last-Event-ID": stalled.lastID})
	if resumed.resp.StatusCode != http.StatusOK || resumed.resp.Header.Get(StartRevisionHeader) != strconv.FormatInt(last+1, 10) {
		t.Fatalf("resume from %d: %d %v", last, resumed.resp.StatusCode, resumed.resp.Header)
	}
	for want := last + 1; want <= lastRev; want++ {
		if d := resumed.nextEvent(); d.Revision != want {
			t.Fatalf("resumed stream: revision %d, want %d", d.Revision, want)
		}
	}
}

// writeSizes accepts connections that record the largest single write.
type writeSizes struct {
	net.Listener
	largest *atomic.Int64
}

func (l writeSizes) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return sizedConn{c, l.largest}, nil
}

type sizedConn struct {
	net.Conn
	largest *atomic.Int64
}

func (c sizedConn) Write(p []byte) (int, error) {
	for n := int64(len(p)); ; {
		old := c.largest.Load()
		if n <= old || c.largest.CompareAndSwap(old, n) {
			break
		}
	}
	return c.Conn.Write(p)
}

// A watch stream writes a response of the watcher (up to 256 KiB of
// events) in pieces of about watchFlushBytes, so what one stream holds in
// its own buffer, and what one blocked write pins, stays near that.
func TestWatchStreamWritesInBoundedPieces(t *testing.T) {
	var largest atomic.Int64
	s := startWatchServer(t, kv.WatchConfig{}, HTTPOptions{},
		func(ln net.Listener) net.Listener { return writeSizes{ln, &largest} })
	base := "http://" + s.HTTPAddr()
	const writes, valueBytes = 100, 4 << 10
	value := `"` + strings.Repeat("v", valueBytes) + `"`
	for i := range writes {
		putRev(t, base, fmt.Sprintf("p/%d", i), value, "")
	}
	largest.Store(0)
	// Every event is in history already: the watcher reads them in
	// responses of 64 (256 KiB).
	w := openWatch(t, base+"/v1/watch?prefix=p/&from_revision=1", nil)
	for want := int64(1); want <= writes; want++ {
		if d := w.nextEvent(); d.Revision != want {
			t.Fatalf("revision %d, want %d", d.Revision, want)
		}
	}
	// One piece: watchFlushBytes, plus the event that crossed it, plus the
	// chunk framing. (Without the pieces, one write was a whole response:
	// about 250 KiB.)
	if got, bound := largest.Load(), int64(32<<10+valueBytes+512); got > bound {
		t.Fatalf("largest write of the stream %d bytes, want at most %d", got, bound)
	}
}

// arrival is when a watcher read the event of revision rev.
type arrival struct {
	rev int64
	at  time.Time
}

// writeWhileStalled writes values of valueBytes under fan/, one every pace,
// while stalled() holds (what is stalled: "watcher" or "connection"),
// failing t if that takes more than maxWrites writes or 30 s, and
// reporting each write that took longer than bound. It returns when each
// write was acknowledged by revision, the last revision and the slowest
// write.
func writeWhileStalled(t *testing.T, base, what string, valueBytes int, pace time.Duration, maxWrites int, bound time.Duration,
	stalled func() bool) (acked map[int64]time.Time, lastRev int64, worst time.Duration) {
	t.Helper()
	value := `"` + strings.Repeat("v", valueBytes) + `"`
	acked = make(map[int64]time.Time)
	tick := time.NewTicker(pace)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for stalled() {
		if time.Now().After(deadline) || len(acked) == maxWrites {
			t.Fatalf("the stalled %s was not cut off after %d writes", what, len(acked))
		}
		<-tick.C
		began := time.Now()
		lastRev = putRev(t, base, fmt.Sprintf("fan/%d", len(acked)%100), value, "")
		took := time.Since(began)
		acked[lastRev] = time.Now()
		worst = max(worst, took)
		if took > bound {
			t.Errorf("write at revision %d took %v while a %s was stalled", lastRev, took, what)
		}
	}
	return acked, lastRev, worst
}

// checkArrivals fails t unless arrivals brings revisions 1 to lastRev in
// order, each within bound of its write's acknowledgement (acked), before
// done reports the watcher's end.
func checkArrivals(t *testing.T, who string, arrivals <-chan arrival, done <-chan error, acked map[int64]time.Time, lastRev int64, bound time.Duration) {
	t.Helper()
	var worstLag time.Duration
	for want := int64(1); want <= lastRev; want++ {
		var a arrival
		select {
		case a = <-arrivals:
		case err := <-done:
			t.Fatalf("%s ended before revision %d: %v", who, want, err)
		case <-time.After(sseTimeout):
			t.Fatalf("%s: no revision %d", who, want)
		}
		if a.rev != want {
			t.Fatalf("%s got revision %d, want %d", who, a.rev, want)
		}
		lag := a.at.Sub(acked[want])
		worstLag = max(worstLag, lag)
		if lag > bound {
			t.Errorf("%s got revision %d %v after its write was acknowledged", who, want, lag)
		}
	}
	t.Logf("%s: worst delivery lag %v", who, worstLag)
}
