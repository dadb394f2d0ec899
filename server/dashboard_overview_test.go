package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

// fakeClock is a settable clock for requestStats.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestRequestStatsWindow(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	s := newRequestStats(clock.now)
	// Nothing yet: no quantiles, no rates.
	if w := s.window(); w.Reads.Count != 0 || w.Reads.P50Ms != nil || w.Writes.P99Ms != nil {
		t.Fatalf("empty window %+v", w)
	}
	clock.t = clock.t.Add(500 * time.Millisecond)
	// 98 fast reads, 2 slow ones; 10 writes, one a 503, one a 409.
	for i := range 100 {
		d := time.Millisecond
		if i >= 98 {
			d = time.Second
		}
		s.record(false, http.StatusOK, d)
	}
	for i := range 10 {
		status := http.StatusOK
		switch i {
		case 0:
			status = http.StatusServiceUnavailable
		case 1:
			status = http.StatusConflict
		}
		s.record(true, status, 5*time.Millisecond)
	}
	clock.t = clock.t.Add(1500 * time.Millisecond) // 2 s after the start
	w := s.window()
	if w.WindowMs != 2000 || w.Reads.Count != 100 || w.Reads.PerSecond != 50 || w.Writes.Count != 10 ||
		w.ServerErrors.Count != 1 || w.ClientErrors.Count != 1 || w.Reads.Total != 100 {
		t.Fatalf("window %+v", w)
	}
	// Quantiles are bucket bounds a quarter octave wide: within 19 %.
	within := func(what string, got *float64, want float64) {
		t.Helper()
		if got == nil || *got < want || *got > want*1.19 {
			t.Errorf("%s = %v, want %v to %v", what, got, want, want*1.19)
		}
	}
	within("read p50", w.Reads.P50Ms, 1)
	within("read p99", w.Reads.P99Ms, 1000)
	within("write p50", w.Writes.P50Ms, 5)
	if w.ServerErrors.P50Ms != nil {
		t.Errorf("errors have no latency: %+v", w.ServerErrors)
	}

	// Ten seconds on, those requests leave the window, not the totals.
	// The window is the current second so far and the 9 before it: 9 s
	// at the start of a second.
	clock.t = clock.t.Add(10 * time.Second)
	s.record(true, http.StatusOK, time.Millisecond)
	w = s.window()
	if w.WindowMs != 9000 || w.Reads.Count != 0 || w.Reads.P50Ms != nil || w.Writes.Count != 1 ||
		w.Reads.Total != 100 || w.Writes.Total != 11 || w.ServerErrors.Total != 1 {
		t.Fatalf("window later %+v", w)
	}
}

func TestLatencyBuckets(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, 10 * time.Microsecond, 11 * time.Microsecond,
		time.Millisecond, 3 * time.Millisecond, time.Second, time.Minute} {
		b := latencyBucket(d)
		if bucketBound(b) < d || (b > 0 && bucketBound(b-1) >= d) {
			t.Errorf("%v in bucket %d (%v, %v]", d, b, bucketBound(b-1), bucketBound(b))
		}
	}
	if b := latencyBucket(time.Hour); b != latencyBuckets-1 {
		t.Errorf("an hour in bucket %d", b)
	}
}

func TestHTTPRequestKind(t *testing.T) {
	for _, tc := range []struct {
		method, route string
		write, ok     bool
	}{
		{http.MethodGet, "/v1/kv/{key}", false, true},
		{http.MethodPut, "/v1/kv/{key}", true, true},
		{http.MethodDelete, "/v1/kv/{key}", true, true},
		{http.MethodGet, "/v1/kv", false, true},
		{http.MethodPost, txnPath, true, true},
		{http.MethodPost, workflowsPath, true, true},
		{http.MethodPatch, "/v1/workflows/{id}", true, true},
		{http.MethodPost, "/v1/workflows/{id}/stop", true, true},
		{http.MethodGet, workflowsPath, false, true},
		{http.MethodDelete, "/v1/nodes/{id}", true, true},
		// The dashboard's own polls are not data requests.
		{http.MethodGet, "/v1/status", false, false},
		{http.MethodGet, overviewPath, false, false},
		{http.MethodGet, clusterNodesPath, false, false},
		{http.MethodGet, statsPath, false, false},
		{http.MethodGet, "other", false, false},
		{"OPTIONS", "/v1/kv/{key}", false, false},
	} {
		if write, ok := httpRequestKind(tc.method, tc.route); write != tc.write || ok != tc.ok {
			t.Errorf("%s %s: write %v ok %v, want %v %v", tc.method, tc.route, write, ok, tc.write, tc.ok)
		}
	}
}

// TestOverviewEndpoint: a node's /v1/overview counts its keys of maxKeys,
// workflows by status, registered nodes, data requests with latencies, and
// the elections it has seen, and leaves its own polls out of the reads.
func TestOverviewEndpoint(t *testing.T) {
	s := startOne(t, func(c *Config) { c.State = append(c.State, kv.WithMaxKeys(500)) })
	base := "http://" + s.HTTPAddr()
	for i := range 5 {
		if r := call(t, http.MethodPut, fmt.Sprintf("%s/v1/kv/k%d", base, i), []byte(`1`)); r.status != http.StatusOK {
			t.Fatalf("put: %d %s", r.status, r.body)
		}
	}
	for _, id := range []string{"a", "b", "c"} {
		if r := call(t, http.MethodPost, base+"/v1/workflows", []byte(`{"id":"`+id+`"}`)); r.status != http.StatusCreated {
			t.Fatalf("start workflow: %d %s", r.status, r.body)
		}
	}
	if r := call(t, http.MethodPost, base+"/v1/workflows/c/stop", nil); r.status != http.StatusOK {
		t.Fatalf("stop workflow: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodPost, base+"/v1/nodes", []byte(`{"id":"worker-1"}`)); r.status != http.StatusOK {
		t.Fatalf("register node: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodGet, base+"/v1/kv/nope", nil); r.status != http.StatusNotFound {
		t.Fatalf("get a missing key: %d %s", r.status, r.body)
	}
	for range 3 { // not counted
		call(t, http.MethodGet, base+"/v1/status", nil)
	}

	r := call(t, http.MethodGet, base+overviewPath, nil)
	var o Overview
	if r.status != http.StatusOK || json.Unmarshal(r.body, &o) != nil {
		t.Fatalf("GET %s: %d %s", overviewPath, r.status, r.body)
	}
	t.Logf("%s", r.body)
	// 5 keys, 3 workflows and 1 node are keys of the state.
	if o.NodeID != "n1" || o.MaxKeys != 500 || o.Keys != 9 || o.Revision < 10 || o.WorkflowsTotal != 3 ||
		o.Workflows["running"] != 2 || o.Workflows["stopped"] != 1 || o.RegisteredNodes != 1 || o.Term == 0 {
		t.Errorf("overview %+v", o)
	}
	if o.Requests.Writes.Count != 10 || o.Requests.Writes.P50Ms == nil || o.Requests.Writes.P99Ms == nil ||
		o.Requests.Reads.Count != 1 || o.Requests.ClientErrors.Count != 1 || o.Requests.ServerErrors.Count != 0 {
		t.Errorf("requests %+v", o.Requests)
	}
	if o.LeaderChanges == nil || *o.LeaderChanges < 1 {
		t.Errorf("leader changes %v", o.LeaderChanges)
	}
	if r := call(t, http.MethodPost, base+overviewPath, nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST %s: %d", overviewPath, r.status)
	}
	if r := call(t, http.MethodGet, base+overviewPath+"?x=%zz", nil); r.status != http.StatusBadRequest {
		t.Errorf("bad query: %d %s", r.status, r.body)
	}
}

// TestOverviewLocksAndLeases: /v1/overview counts the leases and lists
// the locks by name with their holder's lease, token and waiters, and an
// election's name and leader value; a lock whose name has HTML's special
// characters is listed as it is.
func TestOverviewLocksAndLeases(t *testing.T) {
	s := startOne(t, nil)
	base := "http://" + s.HTTPAddr()
	overview := func() Overview {
		t.Helper()
		r := call(t, http.MethodGet, base+overviewPath, nil)
		var o Overview
		if r.status != http.StatusOK || json.Unmarshal(r.body, &o) != nil || o.Leases == nil || o.Locks == nil {
			t.Fatalf("GET %s: %d %s", overviewPath, r.status, r.body)
		}
		return o
	}
	if o := overview(); o.Leases.Count != 0 || o.Locks.Total != 0 || o.Locks.Items == nil || len(o.Locks.Items) != 0 {
		t.Fatalf("no locks: %+v %+v", o.Leases, o.Locks)
	}
	grant := func() string {
		r := call(t, http.MethodPost, base+"/v1/leases", []byte(`{"ttlMs":60000}`))
		if r.status != http.StatusOK {
			t.Fatalf("grant: %d %s", r.status, r.body)
		}
		return decodeAs[api.Lease](t, r).ID.String()
	}
	holder, waiter, leader := grant(), grant(), grant()
	const name = `job <b>&"x"`
	lockURL := base + "/v1/locks/" + url.PathEscape(name)
	r := call(t, http.MethodPost, lockURL, fmt.Appendf(nil, `{"lease":%q,"waitMs":0}`, holder))
	if r.status != http.StatusOK {
		t.Fatalf("acquire: %d %s", r.status, r.body)
	}
	held := decodeAs[api.Lock](t, r)
	waited := make(chan apiResponse, 1)
	go func() {
		waited <- call(t, http.MethodPost, lockURL, fmt.Appendf(nil, `{"lease":%q,"waitMs":20000}`, waiter))
	}()
	testwait.For(t, 10*time.Second, "the waiter to queue", func() bool {
		return decodeAs[api.Lock](t, call(t, http.MethodGet, lockURL, nil)).Waiters == 1
	})
	r = call(t, http.MethodPost, base+"/v1/elections/web", fmt.Appendf(nil, `{"lease":%q,"value":{"host":"n3"},"waitMs":0}`, leader))
	if r.status != http.StatusOK {
		t.Fatalf("campaign: %d %s", r.status, r.body)
	}
	elected := decodeAs[api.Lock](t, r)

	// The one node leads: its clock counts the leases down, once its
	// countdowns have started.
	testwait.For(t, 10*time.Second, "the leader's countdowns", func() bool { return overview().Leases.Counted })
	r = call(t, http.MethodGet, base+overviewPath, nil)
	t.Logf("%s", r.body)
	var raw struct {
		Leases map[string]any `json:"leases"`
		Locks  struct {
			Total int              `json:"total"`
			Items []map[string]any `json:"items"`
		} `json:"locks"`
	}
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	// Times left vary: check their range, then compare the rest.
	left := func(what string, v any) {
		if ms, ok := v.(float64); !ok || ms <= 0 || ms > 60000 {
			t.Errorf("%s: time left %v, want 0 to 60000 ms", what, v)
		}
	}
	soonest, _ := raw.Leases["soonest"].([]any)
	var soonestIDs []string
	for _, l := range soonest {
		l := l.(map[string]any)
		left("soonest", l["remainingMs"])
		soonestIDs = append(soonestIDs, fmt.Sprint(l["id"], " ", l["ttlMs"]))
	}
	slices.Sort(soonestIDs)
	wantSoonest := []string{holder + " 60000", waiter + " 60000", leader + " 60000"}
	slices.Sort(wantSoonest)
	if !slices.Equal(soonestIDs, wantSoonest) {
		t.Errorf("soonest %q, want %q", soonestIDs, wantSoonest)
	}
	delete(raw.Leases, "soonest")
	for _, it := range raw.Locks.Items {
		left("lock "+fmt.Sprint(it["name"]), it["remainingMs"])
		delete(it, "remainingMs")
	}
	if fmt.Sprint(raw.Leases) != "map[count:3 counted:true]" || raw.Locks.Total != 2 || len(raw.Locks.Items) != 2 {
		t.Fatalf("leases %v, locks %+v", raw.Leases, raw.Locks)
	}
	// By name: "election/web" before "job ...".
	wantElection := fmt.Sprintf("map[election:web lease:%s name:election/web token:%d value:map[host:n3] waiters:0]", leader, elected.Token)
	wantLock := fmt.Sprintf("map[lease:%s name:%s token:%d waiters:1]", holder, name, held.Token)
	if got := fmt.Sprint(raw.Locks.Items[0]); got != wantElection {
		t.Errorf("election %s, want %s", got, wantElection)
	}
	if got := fmt.Sprint(raw.Locks.Items[1]); got != wantLock {
		t.Errorf("lock %s, want %s", got, wantLock)
	}

	// The holder's lease goes: the waiter holds the lock, nobody waits.
	if r := call(t, http.MethodDelete, base+"/v1/leases/"+holder, nil); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := <-waited; r.status != http.StatusOK {
		t.Fatalf("the waiter: %d %s", r.status, r.body)
	}
	o := overview()
	if o.Leases.Count != 2 || o.Locks.Total != 2 || o.Locks.Items[1].Lease.String() != waiter || o.Locks.Items[1].Waiters != 0 ||
		o.Locks.Items[1].Token <= held.Token {
		t.Fatalf("after the holder's lease went: %+v %+v", o.Leases, o.Locks)
	}
}

// TestOverviewQueues: /v1/overview lists the queues holding tasks with
// their tasks by state and how long the oldest ready one has waited.
func TestOverviewQueues(t *testing.T) {
	s := startOne(t, nil)
	base := "http://" + s.HTTPAddr()
	overview := func() Overview {
		t.Helper()
		r := call(t, http.MethodGet, base+overviewPath, nil)
		var o Overview
		if r.status != http.StatusOK || json.Unmarshal(r.body, &o) != nil || o.Queues == nil {
			t.Fatalf("GET %s: %d %s", overviewPath, r.status, r.body)
		}
		return o
	}
	if o := overview(); o.Queues.Total != 0 || len(o.Queues.Items) != 0 {
		t.Fatalf("no queues: %+v", o.Queues)
	}
	post := func(path, body string) apiResponse {
		t.Helper()
		r := call(t, http.MethodPost, base+path, []byte(body))
		if r.status != http.StatusOK {
			t.Fatalf("POST %s %s: %d %s", path, body, r.status, r.body)
		}
		return r
	}
	post("/v1/queues/emails/tasks", `{"id":"a","data":1,"maxAttempts":1}`)
	post("/v1/queues/emails/tasks", `{"id":"b","data":2}`)
	post("/v1/queues/emails/tasks", `{"id":"c","data":3}`)
	post("/v1/queues/reports/tasks", `{"id":"r","data":4,"delayMs":600000}`)
	claim := func() api.Claim {
		return decodeAs[api.Claim](t, post("/v1/queues/emails/claim", `{"worker":"w1","ttlMs":60000}`))
	}
	a := claim()
	if a.Task.ID != "a" {
		t.Fatalf("claimed %q first, want a", a.Task.ID)
	}
	post("/v1/queues/emails/tasks/a/fail", fmt.Sprintf(`{"epoch":%d,"error":"boom"}`, a.Epoch))
	if b := claim(); b.Task.ID != "b" {
		t.Fatalf("claimed %q second, want b", b.Task.ID)
	}
	o := overview()
	if o.Queues.Total != 2 || len(o.Queues.Items) != 2 {
		t.Fatalf("queues %+v, want emails and reports", o.Queues)
	}
	emails, reports := o.Queues.Items[0], o.Queues.Items[1]
	if emails.Queue != "emails" || emails.Ready != 1 || emails.Claimed != 1 || emails.Dead != 1 || emails.Delayed != 0 ||
		emails.OldestReadyAgeMs == nil || *emails.OldestReadyAgeMs < 0 || *emails.OldestReadyAgeMs > 60000 {
		t.Errorf("emails %+v, want 1 ready (c, ready since its enqueue), 1 claimed, 1 dead", emails)
	}
	if reports.Queue != "reports" || reports.Delayed != 1 || reports.Ready != 0 || reports.OldestReadyAgeMs != nil {
		t.Errorf("reports %+v, want 1 delayed and no ready task", reports)
	}
	if r := call(t, http.MethodPut, base+"/v1/schedules/hourly", []byte(`{"everyMs":3600000,"queue":"reports","data":{"big":"payload"}}`)); r.status != http.StatusOK {
		t.Fatalf("put schedule: %d %s", r.status, r.body)
	}
	o = overview()
	if o.Schedules == nil || o.Schedules.Total != 1 || len(o.Schedules.Items) != 1 {
		t.Fatalf("schedules %+v, want the one put", o.Schedules)
	}
	if sc := o.Schedules.Items[0]; sc.ID != "hourly" || sc.Queue != "reports" || sc.EveryMs != 3600000 ||
		sc.NextTickMs <= time.Now().Add(-time.Minute).UnixMilli() || (sc.Data != nil && string(sc.Data) != "null") {
		t.Errorf("schedule %+v, want hourly into reports with its next tick and no payload", sc)
	}
}
