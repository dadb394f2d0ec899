package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

// pageBody is the body of a list page.
type pageBody struct {
	Items    []kv.Item `json:"items"`
	Revision int64     `json:"revision"`
	More     bool      `json:"more"`
	Next     string    `json:"next"`
	Count    *int64    `json:"count"`
}

func getPage(t *testing.T, base, prefix string, q url.Values) pageBody {
	t.Helper()
	q.Set("prefix", prefix)
	resp, err := http.Get(base + "/v1/kv?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", q.Encode(), resp.StatusCode, b)
	}
	var p pageBody
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("page %s: %v", b, err)
	}
	return p
}

// TestHTTPListPagesSeeEveryKeyOnceAcrossWritesAndSnapshots reads a prefix
// page by page over HTTP from a real node while writes and deletes land
// between pages and the node takes snapshots: the pages hold exactly the
// items of the first page's revision, each once.
func TestHTTPListPagesSeeEveryKeyOnceAcrossWritesAndSnapshots(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	s := startOne(t, func(c *Config) { c.Node.SnapshotThreshold = 20 })
	store := s.Store()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 600
	for b := 0; b < n; b += 100 {
		ops := make([]kv.Op, 0, 100)
		for i := b; i < b+100; i++ {
			ops = append(ops, kv.Op{Type: kv.OpPut, Key: fmt.Sprintf("p/%04d", i), Value: []byte(fmt.Sprint(i))})
		}
		if _, err := store.Batch(ctx, ops); err != nil {
			t.Fatal(err)
		}
	}
	want, wantRev := store.Machine().List("p/")
	base := "http://" + s.HTTPAddr()
	snapBefore := s.Node().Status().SnapshotIndex
	var got []kv.Item
	q := url.Values{"limit": {"70"}}
	pages := 0
	for page := 0; ; page++ {
		pages++
		p := getPage(t, base, "p/", q)
		if p.Revision != wantRev {
			t.Fatalf("page %d at revision %d, want %d", page, p.Revision, wantRev)
		}
		if len(p.Items) > 70 {
			t.Fatalf("page %d has %d items", page, len(p.Items))
		}
		got = append(got, p.Items...)
		if !p.More {
			break
		}
		q.Set("next", p.Next)
		q.Set("revision", fmt.Sprint(p.Revision))
		for range 25 {
			key := fmt.Sprintf("p/%04d", rng.IntN(2*n))
			var err error
			if rng.IntN(2) == 0 {
				_, err = store.Put(ctx, key, []byte(`"changed"`))
			} else if _, err = store.Delete(ctx, key); err != nil && strings.Contains(err.Error(), "not found") {
				err = nil
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if page == 1 {
			// 50 writes since the first page, the threshold 20: the node
			// snapshots (and compacts its log) before the next page.
			testwait.For(t, 10*time.Second, "a snapshot between pages", func() bool {
				return s.Node().Status().SnapshotIndex > snapBefore
			})
		}
	}
	if pages < 4 || len(got) != len(want) {
		t.Fatalf("read %d items in %d pages, want %d in several", len(got), pages, len(want))
	}
	for i := range want {
		if got[i].Key != want[i].Key || !bytes.Equal(got[i].Value, want[i].Value) || got[i].Version != want[i].Version {
			t.Fatalf("item %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestHTTPListPageAtCompactedRevisionIs410: a page at a revision no view
// is kept of, whose range changed since, is 410 compacted with the
// revision to start over at.
func TestHTTPListPageAtCompactedRevisionIs410(t *testing.T) {
	store := newLocalStore(kv.WithListViews(0, time.Minute))
	h := NewHandler(store, HTTPOptions{})
	ctx := context.Background()
	for i := range 5 {
		if _, err := store.Put(ctx, fmt.Sprintf("p/%d", i), []byte("1")); err != nil {
			t.Fatal(err)
		}
	}
	rec := request(h, "GET", "/v1/kv?prefix=p/&limit=2", "")
	var first pageBody
	if err := json.Unmarshal(rec.Body.Bytes(), &first); err != nil || !first.More || first.Next != "p/2" || first.Revision != 5 {
		t.Fatalf("first page: %s", rec.Body)
	}
	if _, err := store.Put(ctx, "p/4", []byte("2")); err != nil {
		t.Fatal(err)
	}
	rec = request(h, "GET", "/v1/kv?prefix=p/&limit=2&next=p/2&revision=5", "")
	if rec.Code != http.StatusGone || codeOf(t, rec) != api.CodeCompacted {
		t.Fatalf("page after a change: %d %s", rec.Code, rec.Body)
	}
	var body compactedBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.OldestRevision != 6 || rec.Header().Get(OldestRevisionHeader) != "6" {
		t.Fatalf("410 body %s, header %q", rec.Body, rec.Header().Get(OldestRevisionHeader))
	}
}

func TestHTTPListShapesAndBadInput(t *testing.T) {
	store := newLocalStore()
	h := NewHandler(store, HTTPOptions{})
	ctx := context.Background()
	keys := []string{"a/1", "a/2", "a/<&>\u2028", "a/\xff", "b/1"}
	for i, k := range keys {
		if k == "a/\xff" {
			continue // not a key a request may write
		}
		if _, err := store.Put(ctx, k, []byte(fmt.Sprintf(`{"n":%d,"s":"<x>"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	// A streamed list is byte for byte what encoding/json makes of the
	// whole answer, as before streaming.
	items, rev, _ := store.List(ctx, "a/", kv.Linearizable)
	var wantBody bytes.Buffer
	enc := json.NewEncoder(&wantBody)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		Items    []kv.Item `json:"items"`
		Revision int64     `json:"revision"`
	}{items, rev})
	rec := request(h, "GET", "/v1/kv?prefix=a/", "")
	if rec.Code != 200 || rec.Body.String() != wantBody.String() || rec.Header().Get(RevisionHeader) != fmt.Sprint(rev) {
		t.Fatalf("stream:\n%s\nwant\n%s", rec.Body, &wantBody)
	}
	rec = request(h, "GET", "/v1/kv?prefix=nothing/", "")
	if rec.Body.String() != fmt.Sprintf(`{"items":[],"revision":%d}`+"\n", rev) {
		t.Fatalf("empty stream: %s", rec.Body)
	}
	// NDJSON: one item per line.
	rec = request(h, "GET", "/v1/kv?prefix=a/", "", "Accept", "application/json, application/x-ndjson")
	lines := strings.Split(strings.TrimSuffix(rec.Body.String(), "\n"), "\n")
	if rec.Header().Get("Content-Type") != ndjsonType || len(lines) != len(items) {
		t.Fatalf("ndjson %q: %s", rec.Header().Get("Content-Type"), rec.Body)
	}
	for i, line := range lines {
		var it kv.Item
		if err := json.Unmarshal([]byte(line), &it); err != nil || it.Key != items[i].Key {
			t.Fatalf("line %d %q: %v", i, line, err)
		}
	}
	// Keys only: no values; count only: the number.
	rec = request(h, "GET", "/v1/kv?prefix=a/&keysOnly=true", "")
	if strings.Contains(rec.Body.String(), `"value"`) || !strings.Contains(rec.Body.String(), `"key":"a/1"`) {
		t.Fatalf("keys only: %s", rec.Body)
	}
	rec = request(h, "GET", "/v1/kv?prefix=a/&countOnly=true", "")
	if rec.Body.String() != fmt.Sprintf(`{"count":3,"revision":%d}`+"\n", rev) {
		t.Fatalf("count only: %s", rec.Body)
	}
	// A page of everything says there is no more and names no next.
	rec = request(h, "GET", "/v1/kv?prefix=a/&limit=3", "")
	if !strings.HasSuffix(rec.Body.String(), fmt.Sprintf(`],"revision":%d,"more":false}`+"\n", rev)) {
		t.Fatalf("last page: %s", rec.Body)
	}
	for _, q := range []string{"limit=0", "limit=x", "limit=1&limit=2", "revision=0", "revision=-3", "next=b/1",
		"next=", "keysOnly=maybe", "keysOnly=true&countOnly=true", "countOnly="} {
		rec := request(h, "GET", "/v1/kv?prefix=a/&"+q, "")
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: %d %s", q, rec.Code, rec.Body)
		}
	}
	rec = request(h, "GET", fmt.Sprintf("/v1/kv?prefix=a/&revision=%d", rev+10), "")
	if rec.Code != http.StatusBadRequest {
		t.Errorf("future revision: %d %s", rec.Code, rec.Body)
	}
}

// keyCounter counts the items of a JSON or NDJSON list written to it, in
// chunks of any size, holding nothing.
type keyCounter struct {
	tail  []byte
	count int
}

func (k *keyCounter) Write(p []byte) (int, error) {
	const pattern = `"key":`
	joined := append(k.tail, p[:min(len(p), len(pattern)-1)]...)
	k.count += bytes.Count(joined, []byte(pattern)) + bytes.Count(p, []byte(pattern))
	start := max(0, len(p)-(len(pattern)-1))
	k.tail = append(k.tail[:0], p[start:]...)
	return len(p), nil
}

// heapSampler records the largest live heap seen while it runs.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > h.peak.Load() {
				h.peak.Store(ms.HeapAlloc)
			}
			select {
			case <-h.stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return h
}

func (h *heapSampler) end() uint64 {
	close(h.stop)
	<-h.done
	return h.peak.Load()
}

// listMemoryKeys and listMemoryBound scale the 1,000,000 keys to
// what CI holds; BENCHMARKS.md has the full-size figure.
const (
	listMemoryKeys  = 200_000
	listMemoryBound = 24 << 20
)

// TestListStreamsWithBoundedMemory: while 4 clients each stream a list of
// every key (200,000 keys of 100 bytes, about 30 MB of JSON each), the
// serving process's heap grows by less than 24 MiB: what one request
// holds does not grow with the answer.
func TestListStreamsWithBoundedMemory(t *testing.T) {
	store := newLocalStore(kv.WithMaxKeys(listMemoryKeys))
	ctx := context.Background()
	value := []byte(`"` + strings.Repeat("v", 98) + `"`)
	for b := 0; b < listMemoryKeys; b += kv.DefaultMaxBatchOps {
		ops := make([]kv.Op, 0, kv.DefaultMaxBatchOps)
		for i := b; i < min(b+kv.DefaultMaxBatchOps, listMemoryKeys); i++ {
			ops = append(ops, kv.Op{Type: kv.OpPut, Key: fmt.Sprintf("k/%07d", i), Value: value})
		}
		if _, err := store.Batch(ctx, ops); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(NewHandler(store, HTTPOptions{}))
	defer srv.Close()
	// A low GC target keeps garbage from hiding in the figure: what is
	// measured is what the requests hold.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	sampler := sampleHeap()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	var answered atomic.Int64
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", srv.URL+"/v1/kv?prefix=k/", nil)
			if c%2 == 1 {
				req.Header.Set("Accept", ndjsonType)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var cw keyCounter
			n, err := io.CopyBuffer(&cw, resp.Body, make([]byte, 64<<10))
			answered.Add(n)
			if err != nil {
				errs <- err
				return
			}
			items := cw.count
			if items != listMemoryKeys {
				errs <- fmt.Errorf("client %d read %d items, want %d", c, items, listMemoryKeys)
			}
		}()
	}
	wg.Wait()
	peak := sampler.end()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	growth := int64(peak) - int64(base)
	t.Logf("4 streams of %d keys answered %d MB; heap %d MB before, peak growth %.1f MB (bound %d MB)",
		listMemoryKeys, answered.Load()>>20, base>>20, float64(growth)/(1<<20), listMemoryBound>>20)
	if growth > listMemoryBound {
		t.Fatalf("heap grew by %d bytes while streaming, more than %d", growth, listMemoryBound)
	}
}

// wholeListRefused is a store whose whole-list reads fail: what serves
// through it never holds a whole prefix in memory.
type wholeListRefused struct{ *kv.Store }

var errWholeList = fmt.Errorf("read a whole list: %w", kv.ErrBadCommand)

func (wholeListRefused) List(context.Context, string, kv.Consistency) ([]kv.Item, int64, error) {
	return nil, 0, errWholeList
}
func (wholeListRefused) Workflows(context.Context, kv.Consistency) ([]kv.Workflow, int64, error) {
	return nil, 0, errWholeList
}
func (wholeListRefused) Nodes(context.Context, kv.Consistency) ([]kv.Node, int64, error) {
	return nil, 0, errWholeList
}

// TestOverviewAndListsNeverReadWholeLists: the dashboard's overview counts
// workflows and nodes, and lists stream and page, without a whole-list
// read.
func TestOverviewAndListsNeverReadWholeLists(t *testing.T) {
	store := newLocalStore()
	h := NewHandler(wholeListRefused{store}, HTTPOptions{})
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if _, err := store.StartWorkflow(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.StopWorkflow(ctx, "c", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := store.RegisterNode(ctx, "w1", nil); err != nil {
		t.Fatal(err)
	}
	rec := request(h, "GET", overviewPath, "")
	var o Overview
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &o) != nil {
		t.Fatalf("overview: %d %s", rec.Code, rec.Body)
	}
	if o.WorkflowsTotal != 3 || o.Workflows["running"] != 2 || o.Workflows["stopped"] != 1 || o.RegisteredNodes != 1 {
		t.Fatalf("overview %+v", o)
	}
	for _, target := range []string{"/v1/kv?prefix=workflow:", "/v1/kv?limit=1", "/v1/kv?countOnly=true"} {
		if rec := request(h, "GET", target, ""); rec.Code != 200 {
			t.Fatalf("%s: %d %s", target, rec.Code, rec.Body)
		}
	}
}

// TestListStreamCutsOffAClientThatStopsReading: a client that asks for a
// large list and reads nothing is cut off after the write timeout, so it
// cannot pin the view (and a request slot) for longer.
func TestListStreamCutsOffAClientThatStopsReading(t *testing.T) {
	const n = 100_000 // about 17 MB of JSON: more than loopback buffers hold
	store := newLocalStore(kv.WithMaxKeys(n))
	ctx := context.Background()
	value := []byte(`"` + strings.Repeat("v", 98) + `"`)
	for b := 0; b < n; b += kv.DefaultMaxBatchOps {
		ops := make([]kv.Op, 0, kv.DefaultMaxBatchOps)
		for i := b; i < min(b+kv.DefaultMaxBatchOps, n); i++ {
			ops = append(ops, kv.Op{Type: kv.OpPut, Key: fmt.Sprintf("k/%07d", i), Value: value})
		}
		if _, err := store.Batch(ctx, ops); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewUnstartedServer(NewHandler(store, HTTPOptions{Watch: WatchOptions{WriteTimeout: 200 * time.Millisecond}}))
	var closed atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /v1/kv?prefix=k/ HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Read nothing: the server's writes block, and the deadline ends them.
	testwait.For(t, 20*time.Second, "the server closes the stalled stream", func() bool { return closed.Load() == 1 })
}

// TestWSListPage reads a list over /v1/ws op 30 at one revision, each
// page within a frame even with values near the frame's size, and checks
// the refusals of bad arguments.
func TestWSListPage(t *testing.T) {
	store := newLocalStore()
	_, url := wsTestServer(t, store, HTTPOptions{WSMaxFrameBytes: 16 << 10, MaxBodyBytes: 12 << 10})
	w := dialWS(t, url)
	big := []byte(`"` + strings.Repeat("x", 10<<10) + `"`)
	for i := range 4 {
		w.call(i+1, api.OpPut, fmt.Sprintf("p/%d", i), big)
	}
	w.call(5, api.OpPut, "q", []byte("1"))
	wantWSError(t, w.call(6, api.OpList, "p/"), api.CodeTooLarge)
	var keys []string
	var start any // nil: from the prefix
	var rev any
	for id := 10; ; id++ {
		r := w.call(id, api.OpListPage, "p/", nil, nil, start, rev, nil)
		if !r.ok {
			t.Fatalf("page %d: %+v", id, r)
		}
		page := r.result.([]any)
		if len(page) != 5 {
			t.Fatalf("page %.200v", page)
		}
		items := page[1].([]any)
		if len(items) != 1 {
			t.Fatalf("page of %d items: two 10 KiB values do not fit a 16 KiB frame", len(items))
		}
		keys = append(keys, items[0].([]any)[0].(string))
		if id == 10 {
			rev = toInt(t, page[0])
			w.call(100+id, api.OpPut, "p/3", []byte("2")) // after the first page
		} else if toInt(t, page[0]) != rev {
			t.Fatalf("page at revision %v, want %v", page[0], rev)
		}
		if page[2] != true {
			break
		}
		start = page[3]
	}
	if strings.Join(keys, ",") != "p/0,p/1,p/2,p/3" {
		t.Fatalf("keys %v", keys)
	}
	r := w.call(30, api.OpListPage, "p/", nil, 2, nil, nil, 2)
	if page := r.result.([]any); !r.ok || toInt(t, page[4]) != 4 || len(page[1].([]any)) != 0 {
		t.Fatalf("count: %+v", r)
	}
	r = w.call(31, api.OpListPage, "", nil, 100, nil, nil, 1)
	if page := r.result.([]any); !r.ok || len(page[1].([]any)) != 5 || page[1].([]any)[0].([]any)[1] != nil {
		t.Fatalf("keys only: %+v", r)
	}
	wantWSError(t, w.call(32, api.OpListPage, "p/", nil, nil, "q"), api.CodeInvalidKey)
	wantWSError(t, w.call(33, api.OpListPage, "p/", nil, nil, nil, nil, 3), api.CodeBadRequest)
	wantWSError(t, w.call(34, api.OpListPage, "p/", nil, nil, nil, 1<<40), api.CodeBadRequest)
	// The workflow and node lists go the same way.
	for i := range 2 {
		if _, err := store.StartWorkflow(context.Background(), fmt.Sprintf("w%d", i), []byte(`{"pad":`+string(big)+`}`)); err != nil {
			t.Fatal(err)
		}
	}
	wantWSError(t, w.call(900, api.OpWorkflowList), api.CodeTooLarge)
}
