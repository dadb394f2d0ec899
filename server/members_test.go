package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/cluster"
	"github.com/unrdf/consensus/internal/testwait"
)

// startJoining starts a node named id that joins the cluster through the
// HTTP addresses via (tried in turn).
func (c *testCluster) startJoining(id string, via ...string) {
	c.t.Helper()
	if _, ok := c.peers[id]; !ok {
		c.ids = append(c.ids, id)
		c.peers[id] = reserveAddr(c.t)
		c.https[id] = reserveAddr(c.t)
		c.dirs[id] = filepath.Join(filepath.Dir(c.dirs[c.ids[0]]), id)
	}
	scfg := Config{
		Node:         consensus.DefaultConfig(id),
		PeerListener: listenAgain(c.t, c.peers[id]),
		HTTPListener: listenAgain(c.t, c.https[id]),
		DataDir:      c.dirs[id],
		Join:         via,
		JoinTimeout:  20 * time.Second,
	}
	if c.configureServer != nil {
		c.configureServer(&scfg)
	}
	s, err := Start(scfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	c.servers[id] = s
}

func decodeMembers(t *testing.T, r apiResponse) MembersResponse {
	t.Helper()
	var mr MembersResponse
	if err := json.Unmarshal(r.body, &mr); err != nil {
		t.Fatalf("members body %s: %v", r.body, err)
	}
	return mr
}

func memberIn(mr MembersResponse, id string) (consensus.Member, bool) {
	for _, m := range mr.Members {
		if m.ID == id {
			return m, true
		}
	}
	return consensus.Member{}, false
}

func respCode(t *testing.T, r apiResponse) string {
	t.Helper()
	var eb errorBody
	if err := json.Unmarshal(r.body, &eb); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	return eb.Error.Code
}

// TestJoinAndMembershipRoutes: a fourth node joins over HTTP (the first
// --join address is dead, so it tries the next), receives the log and is
// promoted; the membership routes list, promote, transfer and remove;
// bad requests get 4xx answers, never a 5xx other than 503.
func TestJoinAndMembershipRoutes(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	put := call(t, http.MethodPut, "http://"+c.https[leader]+"/v1/kv/before", []byte(`"1"`))
	if put.status != http.StatusOK {
		t.Fatalf("put: %d %s", put.status, put.body)
	}
	dead := freeAddr(t)
	c.startJoining("n4", dead, c.https["n2"])

	// n4 catches up, is promoted, and every member has its addresses.
	testwait.For(t, 20*time.Second, "n4 a voter with its addresses on n1", func() bool {
		mr := decodeMembers(t, call(t, http.MethodGet, "http://"+c.https["n1"]+"/v1/members", nil))
		m, ok := memberIn(mr, "n4")
		return ok && m.Voter && m.HTTPAddr == c.https["n4"] && m.PeerAddr == c.peers["n4"]
	})
	r := call(t, http.MethodGet, "http://"+c.https["n4"]+"/v1/kv/before", nil)
	if r.status != http.StatusOK {
		t.Fatalf("read on n4: %d %s", r.status, r.body)
	}
	mr := decodeMembers(t, call(t, http.MethodGet, "http://"+c.https["n4"]+"/v1/members", nil))
	if len(mr.Members) != 4 || mr.ClusterID == "" || mr.ClusterID == "0" {
		t.Fatalf("members on n4: %+v", mr)
	}
	// Founders advertised their HTTP addresses too (auto-discovery).
	testwait.For(t, 10*time.Second, "every member's HTTP address listed on n4", func() bool {
		mr := decodeMembers(t, call(t, http.MethodGet, "http://"+c.https["n4"]+"/v1/members", nil))
		for _, m := range mr.Members {
			if m.HTTPAddr != c.https[m.ID] {
				return false
			}
		}
		return true
	})

	// A restarted node with state ignores --join: here it lists only a
	// dead address, and n4 still comes back as a member.
	c.stop("n4")
	c.startJoining("n4", dead)
	testwait.For(t, 10*time.Second, "the restarted n4 is ready", func() bool { return c.servers["n4"].Node().Ready() == nil })

	// Transfer leadership to n4 through any node.
	r = call(t, http.MethodPost, "http://"+c.https["n1"]+"/v1/leader/transfer", []byte(`{"target":"n4"}`))
	if r.status != http.StatusOK {
		t.Fatalf("transfer: %d %s", r.status, r.body)
	}
	testwait.For(t, 10*time.Second, "n4 leads", func() bool { return c.servers["n4"].Node().IsLeader() })
	// Without a target the leader picks the most caught-up voter.
	r = call(t, http.MethodPost, "http://"+c.https["n4"]+"/v1/leader/transfer", nil)
	if r.status != http.StatusOK {
		t.Fatalf("transfer without target: %d %s", r.status, r.body)
	}
	c.waitLeader()

	// Errors.
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{http.MethodPost, "/v1/members", `{"id":"n1","peerAddr":"127.0.0.1:1"}`, http.StatusConflict, api.CodeMemberConflict},
		{http.MethodPost, "/v1/members", `{"id":"","peerAddr":"127.0.0.1:1"}`, http.StatusBadRequest, api.CodeInvalidMember},
		{http.MethodPost, "/v1/members", `{"id":"x"}`, http.StatusBadRequest, api.CodeInvalidMember},
		{http.MethodPost, "/v1/members", `{"id":"x","bogus":1}`, http.StatusBadRequest, api.CodeInvalidJSON},
		{http.MethodPost, "/v1/members", `[`, http.StatusBadRequest, api.CodeInvalidJSON},
		{http.MethodPost, "/v1/members", ``, http.StatusBadRequest, api.CodeInvalidJSON},
		{http.MethodPut, "/v1/members", `{}`, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed},
		{http.MethodDelete, "/v1/members/nope", ``, http.StatusNotFound, api.CodeMemberNotFound},
		{http.MethodDelete, "/v1/members/", ``, http.StatusBadRequest, api.CodeInvalidMember},
		{http.MethodGet, "/v1/members/n1", ``, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed},
		{http.MethodPost, "/v1/members/nope/promote", ``, http.StatusNotFound, api.CodeMemberNotFound},
		{http.MethodPost, "/v1/members/n1/bogus", ``, http.StatusNotFound, api.CodeNotFound},
		{http.MethodPost, "/v1/leader/transfer", `{"target":"nope"}`, http.StatusNotFound, api.CodeMemberNotFound},
		{http.MethodPost, "/v1/leader/transfer?target=a", `{"target":"b"}`, http.StatusBadRequest, api.CodeBadRequest},
		{http.MethodGet, "/v1/leader/transfer", ``, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed},
	} {
		r := call(t, tc.method, "http://"+c.https["n2"]+tc.path, []byte(tc.body))
		if r.status != tc.status || respCode(t, r) != tc.code {
			t.Errorf("%s %s %s: %d %s, want %d %s", tc.method, tc.path, tc.body, r.status, r.body, tc.status, tc.code)
		}
	}
	// Health routes.
	c.servers["n2"].Cluster().CheckNow()
	var nodes NodesResponse
	if r := call(t, http.MethodGet, "http://"+c.https["n2"]+"/v1/cluster/nodes", nil); r.status != http.StatusOK || json.Unmarshal(r.body, &nodes) != nil || len(nodes.Nodes) != 4 {
		t.Fatalf("cluster nodes: %d %s", r.status, r.body)
	}
	for _, n := range nodes.Nodes {
		if n.Health != "healthy" || !n.Connected {
			t.Errorf("node %+v", n)
		}
	}
	if r := call(t, http.MethodGet, "http://"+c.https["n2"]+"/v1/cluster/nodes?healthy=true", nil); r.status != http.StatusOK {
		t.Fatalf("healthy nodes: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodGet, "http://"+c.https["n2"]+"/v1/cluster/nodes/n4", nil); r.status != http.StatusOK {
		t.Fatalf("n4 health: %d %s", r.status, r.body)
	}
	var stats struct{ Nodes, Voters, Healthy int }
	if r := call(t, http.MethodGet, "http://"+c.https["n2"]+"/v1/cluster/stats", nil); r.status != http.StatusOK || json.Unmarshal(r.body, &stats) != nil || stats.Nodes != 4 || stats.Voters != 4 || stats.Healthy != 4 {
		t.Fatalf("stats: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/v1/cluster/nodes/nope", http.StatusNotFound},
		{"/v1/cluster/nodes?healthy=maybe", http.StatusBadRequest},
		{"/v1/cluster/nodes/a/b", http.StatusNotFound},
	} {
		if r := call(t, http.MethodGet, "http://"+c.https["n2"]+tc.path, nil); r.status != tc.status {
			t.Errorf("%s: %d %s", tc.path, r.status, r.body)
		}
	}

	// Promoting a voter is a no-op success.
	if r := call(t, http.MethodPost, "http://"+c.https["n2"]+"/v1/members/n4/promote", nil); r.status != http.StatusOK {
		t.Fatalf("promote voter: %d %s", r.status, r.body)
	}

	// Remove n4 (whoever leads): it says so, and refuses writes clearly.
	r = call(t, http.MethodDelete, "http://"+c.https["n1"]+"/v1/members/n4", nil)
	if r.status != http.StatusOK {
		t.Fatalf("remove n4: %d %s", r.status, r.body)
	}
	if _, ok := memberIn(decodeMembers(t, r), "n4"); ok {
		t.Fatalf("n4 still listed: %s", r.body)
	}
	testwait.For(t, 10*time.Second, "n4 knows it was removed", func() bool { return c.servers["n4"].Node().Status().Removed })
	r = call(t, http.MethodPut, "http://"+c.https["n4"]+"/v1/kv/x", []byte(`1`))
	if r.status != http.StatusServiceUnavailable || respCode(t, r) != api.CodeRemoved {
		t.Fatalf("write on removed n4: %d %s", r.status, r.body)
	}
	var st consensus.Status
	if err := json.Unmarshal(call(t, http.MethodGet, "http://"+c.https["n4"]+"/v1/status", nil).body, &st); err != nil || !st.Removed {
		t.Fatalf("status of removed n4: %+v %v", st, err)
	}
	// Its id can never come back.
	r = call(t, http.MethodPost, "http://"+c.https["n1"]+"/v1/members", []byte(`{"id":"n4","peerAddr":"`+c.peers["n4"]+`"}`))
	if r.status != http.StatusConflict {
		t.Fatalf("re-add n4: %d %s", r.status, r.body)
	}
	c.stop("n4")
	delete(c.servers, "n4")
	c.waitLeader()
	r = call(t, http.MethodPut, "http://"+c.https["n1"]+"/v1/kv/after", []byte(`"2"`))
	if r.status != http.StatusOK {
		t.Fatalf("put after removal: %d %s", r.status, r.body)
	}
}

// TestJoinRefusedForRemovedID: a node whose id was removed cannot join
// again; Start fails with the cluster's conflict.
func TestJoinRefusedForRemovedID(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitLeader()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.servers["n1"].Node().RemoveMember(ctx, "n3"); err != nil {
		t.Fatal(err)
	}
	c.stop("n3")
	_, err := Start(Config{
		Node:         consensus.DefaultConfig("n3"),
		PeerListener: listenAgain(t, reserveAddr(t)),
		HTTPListener: listenAgain(t, reserveAddr(t)),
		DataDir:      t.TempDir(),
		Join:         []string{c.https["n1"]},
		JoinTimeout:  5 * time.Second,
	})
	if err == nil {
		t.Fatal("a removed id joined again")
	}
	t.Logf("refused as expected: %v", err)
}

// fakeMembership answers every membership call with err (or success).
type fakeMembership struct{ err error }

func (f *fakeMembership) Members() []consensus.Member {
	return []consensus.Member{{ID: "n1", PeerAddr: "127.0.0.1:1", Voter: true}}
}
func (f *fakeMembership) AddMember(_ context.Context, m consensus.Member) (consensus.Member, error) {
	return m, f.err
}
func (f *fakeMembership) PromoteMember(context.Context, string) error { return f.err }
func (f *fakeMembership) RemoveMember(context.Context, string) error  { return f.err }
func (f *fakeMembership) TransferLeadershipTo(context.Context, string) (string, error) {
	return "n1", f.err
}
func (f *fakeMembership) ClusterID() uint64 { return 0xabc }
func (f *fakeMembership) Leader() string    { return "" }

// fakeHealth answers NodeHealth with err (or a healthy n1).
type fakeHealth struct{ err error }

func (f *fakeHealth) Nodes() []cluster.NodeInfo {
	return []cluster.NodeInfo{{Member: consensus.Member{ID: "n1"}, Health: cluster.HealthHealthy}}
}
func (f *fakeHealth) HealthyNodes() []cluster.NodeInfo { return f.Nodes() }
func (f *fakeHealth) NodeHealth(id string) (cluster.NodeInfo, error) {
	if f.err != nil {
		return cluster.NodeInfo{}, f.err
	}
	return f.Nodes()[0], nil
}
func (f *fakeHealth) Stats() cluster.Stats { return cluster.Stats{NodeID: "n1", Nodes: 1} }

// TestMembershipErrorsNeverAre5xx maps every membership sentinel through
// the routes: each is a 4xx or a 503, never another 5xx.
func TestMembershipErrorsNeverAre5xx(t *testing.T) {
	for _, err := range []error{nil, consensus.ErrUnknownMember, consensus.ErrMemberConflict, consensus.ErrInvalidMember,
		consensus.ErrRemoved, consensus.ErrNotLeader, consensus.ErrNoLeader, consensus.ErrTimeout, consensus.ErrStopped} {
		h := NewHandler(newFake(), HTTPOptions{Membership: &fakeMembership{err: err}, Cluster: &fakeHealth{err: err}})
		for _, rq := range []struct{ method, path, body string }{
			{http.MethodPost, "/v1/members", `{"id":"n4","peerAddr":"x:1"}`},
			{http.MethodDelete, "/v1/members/n2", ""},
			{http.MethodPost, "/v1/members/n2/promote", ""},
			{http.MethodPost, "/v1/leader/transfer", `{"target":"n2"}`},
			{http.MethodGet, "/v1/cluster/nodes/n2", ""},
		} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(rq.method, rq.path, strings.NewReader(rq.body)))
			if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
				t.Errorf("%v: %s %s answered %d %s", err, rq.method, rq.path, rec.Code, rec.Body)
			}
			if err == nil && rec.Code != http.StatusOK {
				t.Errorf("%s %s: %d %s", rq.method, rq.path, rec.Code, rec.Body)
			}
		}
	}
}
