package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
)

func seqs(events []RecordedEvent) []uint64 {
	out := make([]uint64, len(events))
	for i, e := range events {
		out[i] = e.Seq
	}
	return out
}

func TestEventLogRing(t *testing.T) {
	l := NewEventLog(4)
	empty := l.After(0)
	if empty.Events == nil || len(empty.Events) != 0 || empty.LastSeq != 0 || empty.OldestSeq != 0 || empty.Missed != 0 {
		t.Fatalf("empty log: %+v", empty)
	}
	for i := 1; i <= 6; i++ {
		if seq := l.Record(RecordedEvent{Type: "leader_elected", LeaderID: fmt.Sprintf("n%d", i), Term: uint64(i)}); seq != uint64(i) {
			t.Fatalf("event %d got seq %d", i, seq)
		}
	}
	tests := []struct {
		after  uint64
		want   []uint64
		missed uint64
	}{
		{0, []uint64{3, 4, 5, 6}, 2}, // the ring holds the newest 4
		{1, []uint64{3, 4, 5, 6}, 1},
		{2, []uint64{3, 4, 5, 6}, 0},
		{4, []uint64{5, 6}, 0},
		{6, []uint64{}, 0},
		{100, []uint64{}, 0}, // from a log that restarted: nothing, LastSeq says so
	}
	for _, tt := range tests {
		got := l.After(tt.after)
		if !slices.Equal(seqs(got.Events), tt.want) || got.Missed != tt.missed || got.LastSeq != 6 || got.OldestSeq != 3 {
			t.Errorf("After(%d) = seqs %v missed %d last %d oldest %d; want %v missed %d last 6 oldest 3",
				tt.after, seqs(got.Events), got.Missed, got.LastSeq, got.OldestSeq, tt.want, tt.missed)
		}
	}
	// Events keep their content and get a time.
	got := l.After(5).Events
	if len(got) != 1 || got[0].LeaderID != "n6" || got[0].Term != 6 || got[0].Time.IsZero() {
		t.Fatalf("After(5) = %+v", got)
	}
}

func TestEventLogConcurrent(t *testing.T) {
	l := NewEventLog(64)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				l.Record(RecordedEvent{Type: "peer_connected", NodeID: fmt.Sprint(w)})
				l.After(0)
			}
		}()
	}
	wg.Wait()
	got := l.After(0)
	want := make([]uint64, 0, 64)
	for s := uint64(337); s <= 400; s++ {
		want = append(want, s)
	}
	if !slices.Equal(seqs(got.Events), want) || got.LastSeq != 400 || got.Missed != 336 {
		t.Fatalf("after 400 concurrent records: seqs %v last %d missed %d", seqs(got.Events), got.LastSeq, got.Missed)
	}
}

func TestEventsEndpoint(t *testing.T) {
	log := NewEventLog(3)
	h, _ := testHandler(t, newFake(), HTTPOptions{Events: log})
	decode := func(target string) EventsResponse {
		t.Helper()
		rec := serve(h, http.MethodGet, target, "")
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %d %s", target, rec.Code, rec.Body)
		}
		var resp EventsResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("GET %s: %v in %s", target, err, rec.Body)
		}
		return resp
	}
	if r := decode("/v1/events"); len(r.Events) != 0 || r.LastSeq != 0 || r.Since.IsZero() {
		t.Fatalf("empty: %+v", r)
	}
	// The empty list is [] in JSON, never null: pollers iterate it.
	if body := serve(h, http.MethodGet, "/v1/events", "").Body.String(); !json.Valid([]byte(body)) || !strings.Contains(body, `"events":[]`) {
		t.Fatalf("empty body %s", body)
	}
	for i := 1; i <= 5; i++ {
		log.Record(RecordedEvent{Type: "node_health_changed", NodeID: "n2", Previous: "healthy", Current: "unhealthy"})
	}
	// Paging: a poller that read up to 3 gets 4 and 5, then nothing.
	r := decode("/v1/events?after=3")
	if !slices.Equal(seqs(r.Events), []uint64{4, 5}) || r.LastSeq != 5 || r.OldestSeq != 3 || r.Missed != 0 {
		t.Fatalf("after=3: %+v", r)
	}
	if r.Events[0].Type != "node_health_changed" || r.Events[0].Current != "unhealthy" {
		t.Fatalf("event content lost: %+v", r.Events[0])
	}
	if r := decode("/v1/events?after=5"); len(r.Events) != 0 || r.LastSeq != 5 {
		t.Fatalf("after=5: %+v", r)
	}
	// From the start: the ring kept the newest 3 and says 2 were missed.
	if r := decode("/v1/events?after=0"); !slices.Equal(seqs(r.Events), []uint64{3, 4, 5}) || r.Missed != 2 {
		t.Fatalf("after=0: %+v", r)
	}
	for _, bad := range []string{"-1", "x", "", "1.5", "0x10", "18446744073709551616"} {
		rec := serve(h, http.MethodGet, "/v1/events?after="+bad, "")
		if code, err := checkErrorBody(rec.Body.Bytes()); rec.Code != http.StatusBadRequest || err != nil || code != api.CodeBadRequest {
			t.Errorf("after=%q: %d %s (%v)", bad, rec.Code, rec.Body, err)
		}
	}
	// HEAD is a GET without a body; other methods are refused.
	if rec := serve(h, http.MethodHead, "/v1/events", ""); rec.Code != http.StatusOK {
		t.Errorf("HEAD: %d", rec.Code)
	}
	if rec := serve(h, http.MethodPost, "/v1/events", ""); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}

	// Without a log (a bare handler) the route is not served.
	bare, _ := testHandler(t, newFake(), HTTPOptions{})
	if rec := serve(bare, http.MethodGet, "/v1/events", ""); rec.Code != http.StatusNotFound {
		t.Errorf("no log: %d %s", rec.Code, rec.Body)
	}
	// Events are API data: they need a token when auth is on.
	authed, _ := testHandler(t, newFake(), HTTPOptions{Events: log, Tokens: testTokens(t)})
	if w := do(t, authed, http.MethodGet, "/v1/events", "", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("events without a token: %d", w.Code)
	}
	if w := do(t, authed, http.MethodGet, "/v1/events", "r3ad-only", ""); w.Code != http.StatusOK {
		t.Errorf("events with a read-only token: %d", w.Code)
	}
}

// TestEventsFollowLeaderTransfer checks the wiring: every node's
// /v1/events records the leader a transfer elects.
func TestEventsFollowLeaderTransfer(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	target := c.ids[0]
	if target == leader {
		target = c.ids[1]
	}
	r := call(t, http.MethodPost, "http://"+c.https[leader]+"/v1/leader/transfer", []byte(`{"target":"`+target+`"}`))
	if r.status != http.StatusOK {
		t.Fatalf("transfer: %d %s", r.status, r.body)
	}
	for _, id := range c.ids {
		testwait.For(t, 10*time.Second, id+" records "+target+" elected", func() bool {
			r := call(t, http.MethodGet, "http://"+c.https[id]+"/v1/events", nil)
			var resp EventsResponse
			if r.status != http.StatusOK || json.Unmarshal(r.body, &resp) != nil {
				t.Fatalf("%s: /v1/events: %d %s", id, r.status, r.body)
			}
			for _, e := range resp.Events {
				if e.Type == "leader_elected" && e.LeaderID == target {
					return true
				}
			}
			return false
		})
	}
}
