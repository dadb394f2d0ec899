package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
)

// A member whose state diverges (a value flipped outside the log, as a
// bit flip in memory would) is found by the next hash check: it raises
// the alarm, answers reads 503 and is not ready; the others show the
// alarm and go on serving.
func TestDivergedMemberIsFound(t *testing.T) {
	c := newTestClusterOf(t, 3, func(cfg *Config) { cfg.HashCheckInterval = 100 * time.Millisecond })
	leader := c.waitLeader()
	bad := ""
	for _, id := range c.ids {
		if id != leader {
			bad = id
			break
		}
	}
	if r := call(t, http.MethodPut, "http://"+c.https[leader]+"/v1/kv/k", []byte(`10`)); r.status != http.StatusOK {
		t.Fatalf("put: %d %s", r.status, r.body)
	}
	status := func(id string) api.Status {
		r := call(t, http.MethodGet, "http://"+c.https[id]+"/v1/status", nil)
		var st api.Status
		if r.status != http.StatusOK || json.Unmarshal(r.body, &st) != nil {
			t.Fatalf("status of %s: %d %s", id, r.status, r.body)
		}
		return st
	}
	// Every member hashes alike first: no alarm anywhere.
	testwait.For(t, 10*time.Second, "every member to have hashed the key", func() bool {
		for _, id := range c.ids {
			if len(status(id).StateHashes) < 2 {
				return false
			}
		}
		return true
	})
	for _, id := range c.ids {
		if st := status(id); len(st.Alarms) != 0 {
			t.Fatalf("%s raised %v before any divergence", id, st.Alarms)
		}
	}
	testwait.For(t, 10*time.Second, "the follower to have the key", func() bool {
		return call(t, http.MethodGet, "http://"+c.https[bad]+"/v1/kv/k", nil).status == http.StatusOK
	})
	if !c.servers[bad].Store().FlipValueForTest("k") {
		t.Fatal("no key to flip")
	}
	flipped := time.Now()
	alarmed := func(id string) bool {
		for _, a := range status(id).Alarms {
			if a.Member == bad && a.Alarm == api.AlarmDiverged && a.Index > 0 && strings.Contains(a.Message, "restored") {
				return true
			}
		}
		return false
	}
	testwait.For(t, 10*time.Second, "the diverged member to find itself out", func() bool { return alarmed(bad) })
	found := time.Since(flipped)
	r := call(t, http.MethodGet, "http://"+c.https[bad]+"/v1/kv/k", nil)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "diverged") {
		t.Fatalf("a read on the diverged member: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodGet, "http://"+c.https[bad]+"/readyz", nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz of the diverged member: %d %s", r.status, r.body)
	}
	testwait.For(t, 10*time.Second, "the leader to show the alarm", func() bool { return alarmed(leader) })
	for _, id := range c.ids {
		if id == bad {
			continue
		}
		if r := call(t, http.MethodGet, "http://"+c.https[id]+"/v1/kv/k", nil); r.status != http.StatusOK || string(r.body) == "" {
			t.Fatalf("a read on healthy %s: %d %s", id, r.status, r.body)
		}
		for _, a := range status(id).Alarms {
			if a.Member != bad {
				t.Fatalf("%s raised an alarm about %s", id, a.Member)
			}
		}
	}
	t.Logf("a flipped value on %s was found %v later (checks every 100 ms)", bad, found.Round(time.Millisecond))
}

// judge finds the member whose hash differs at the newest index a
// majority hashed, and judges nothing without a majority.
func TestJudgeHashes(t *testing.T) {
	h := func(pairs ...any) []api.StateHash {
		var out []api.StateHash
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, api.StateHash{Index: uint64(pairs[i].(int)), Hash: pairs[i+1].(string)})
		}
		return out
	}
	tests := []struct {
		name     string
		views    map[string][]api.StateHash
		index    uint64
		diverged string
		ok       bool
	}{
		{"all agree", map[string][]api.StateHash{"a": h(5, "x"), "b": h(5, "x"), "c": h(5, "x")}, 5, "", true},
		{"one differs", map[string][]api.StateHash{"a": h(5, "x"), "b": h(5, "y"), "c": h(5, "x")}, 5, "b", true},
		{"newest with a quorum", map[string][]api.StateHash{"a": h(5, "x", 9, "z"), "b": h(5, "y"), "c": h(5, "x")}, 5, "b", true},
		{"the leader is the odd one", map[string][]api.StateHash{"a": h(7, "q"), "b": h(7, "x"), "c": h(7, "x")}, 7, "a", true},
		{"no quorum of hashes", map[string][]api.StateHash{"a": h(5, "x"), "b": h(6, "x"), "c": nil}, 0, "", false},
		{"no majority hash", map[string][]api.StateHash{"a": h(5, "x"), "b": h(5, "y")}, 5, "", false},
	}
	for _, tt := range tests {
		index, diverged, ok := judge(tt.views, 2)
		var got string
		for id := range diverged {
			got += id
		}
		if ok != tt.ok || (ok && (index != tt.index || got != tt.diverged)) {
			t.Errorf("%s: index %d diverged %q ok %v, want %d %q %v", tt.name, index, got, ok, tt.index, tt.diverged, tt.ok)
		}
	}
}
