package server

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/unrdf/consensus/cluster"
	"github.com/unrdf/consensus/internal/testwait"
)

// nodeHealthOf reads one member's health as the node at httpAddr sees it.
func nodeHealthOf(t *testing.T, httpAddr, id string) (cluster.NodeInfo, map[string]json.RawMessage) {
	t.Helper()
	r := call(t, http.MethodGet, "http://"+httpAddr+"/v1/cluster/nodes/"+id, nil)
	var info cluster.NodeInfo
	var raw map[string]json.RawMessage
	if r.status != http.StatusOK || json.Unmarshal(r.body, &info) != nil || json.Unmarshal(r.body, &raw) != nil {
		t.Fatalf("GET /v1/cluster/nodes/%s: %d %s", id, r.status, r.body)
	}
	return info, raw
}

// TestSurvivorsSeeCrashedMemberSuspectAtOnce crashes a member of a
// 3-node cluster whose health checks are an hour apart: the survivors
// show it suspect, with no lag (null, not 0) and the time its stream went
// down, as soon as the stream closes, not at the next check.
func TestSurvivorsSeeCrashedMemberSuspectAtOnce(t *testing.T) {
	c := newTestClusterOf(t, 3, func(cfg *Config) {
		cfg.Cluster = cluster.Config{HealthCheckInterval: time.Hour, HealthCheckTimeout: 2 * time.Second}
	})
	c.waitLeader()
	// Every survivor has checked n3 over HTTP, with its stream up (the
	// test runs the checks: the first periodic one may come before the
	// members have advertised their HTTP addresses).
	for _, id := range []string{"n1", "n2"} {
		testwait.For(t, 10*time.Second, id+" sees n3 healthy with a lag and a passed check", func() bool {
			c.servers[id].Cluster().CheckNow()
			info, _ := nodeHealthOf(t, c.https[id], "n3")
			return info.Health == cluster.HealthHealthy && info.Lag != nil && info.LastPassedCheck != nil
		})
	}

	c.crash("n3")
	start := time.Now()
	for _, id := range []string{"n1", "n2"} {
		var info cluster.NodeInfo
		var raw map[string]json.RawMessage
		testwait.For(t, 10*time.Second, id+" sees n3 suspect", func() bool {
			info, raw = nodeHealthOf(t, c.https[id], "n3")
			return info.Health == cluster.HealthSuspect
		})
		t.Logf("%s saw n3 suspect %v after the crash", id, time.Since(start).Round(time.Millisecond))
		if string(raw["lag"]) != "null" || info.StreamDownSince == nil || info.StreamDownMs == nil ||
			info.FailedChecks != 0 || info.AppliedIndex == 0 || info.LastCheckAgeMs == nil || info.Connected {
			t.Errorf("%s's view of n3: %+v (lag %s)", id, info, raw["lag"])
		}
		var stats cluster.Stats
		if r := call(t, http.MethodGet, "http://"+c.https[id]+"/v1/cluster/stats", nil); r.status != http.StatusOK ||
			json.Unmarshal(r.body, &stats) != nil || stats.Suspect != 1 || stats.Healthy != 2 {
			t.Errorf("%s's cluster stats: %d %s", id, r.status, r.body)
		}
	}
}
