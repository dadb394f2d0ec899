package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
)

// Elections over HTTP on a follower: an observer's stream sees no leader,
// then each leader and proclamation in order, and the next candidate
// taking over with a larger token when the leader's lease is revoked.
func TestElectionsOverHTTP(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	var follower string
	for _, id := range c.ids {
		if id != leader {
			follower = id
			break
		}
	}
	base := "http://" + c.https[follower]
	grant := func() string {
		r := call(t, http.MethodPost, base+"/v1/leases", []byte(`{"ttlMs":60000}`))
		if r.status != http.StatusOK {
			t.Fatalf("grant: %d %s", r.status, r.body)
		}
		return decodeAs[api.Lease](t, r).ID.String()
	}
	a, b := grant(), grant()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/elections/sched/observe", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("observe: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- data
			}
		}
		close(events)
	}()
	next := func(what string) *api.Lock {
		t.Helper()
		select {
		case d, ok := <-events:
			if !ok {
				t.Fatalf("the observe stream ended waiting for %s", what)
			}
			var l *api.Lock
			if err := json.Unmarshal([]byte(d), &l); err != nil {
				t.Fatalf("event %q: %v", d, err)
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatalf("no event for %s", what)
		}
		return nil
	}
	if l := next("the start"); l != nil {
		t.Fatalf("first event %+v, want no leader (null)", l)
	}
	campaign := func(lease, value string, waitMs int) apiResponse {
		return call(t, http.MethodPost, base+"/v1/elections/sched", fmt.Appendf(nil, `{"lease":%q,"value":%s,"waitMs":%d}`, lease, value, waitMs))
	}
	r := campaign(a, `{"host":"a"}`, 0)
	first := decodeAs[api.Lock](t, r)
	if r.status != http.StatusOK || first.Name != "sched" || first.Token < 1 || string(first.Value) != `{"host":"a"}` {
		t.Fatalf("campaign: %d %s", r.status, r.body)
	}
	if l := next("a's leadership"); l == nil || l.Token != first.Token || l.Lease.String() != a {
		t.Fatalf("observed %+v, want a", l)
	}
	if r := campaign(b, `"b"`, 0); r.status != http.StatusConflict || leaseErrCode(t, r) != api.CodeLocked {
		t.Fatalf("a second candidate trying once: %d %s", r.status, r.body)
	}
	won := make(chan apiResponse, 1)
	go func() { won <- campaign(b, `"b"`, 20000) }()
	testwait.For(t, 10*time.Second, "b to queue", func() bool {
		return decodeAs[api.Lock](t, call(t, http.MethodGet, base+"/v1/locks/election%2Fsched", nil)).Waiters == 1
	})
	if r := call(t, http.MethodPut, fmt.Sprintf("%s/v1/elections/sched?token=%d", base, first.Token), []byte(`{"host":"a","load":2}`)); r.status != http.StatusOK {
		t.Fatalf("proclaim: %d %s", r.status, r.body)
	}
	if l := next("the proclamation"); l == nil || string(l.Value) != `{"host":"a","load":2}` {
		t.Fatalf("observed %+v, want a's new value", l)
	}
	// a's lease goes (its process died): b takes over.
	if r := call(t, http.MethodDelete, base+"/v1/leases/"+a, nil); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	r = <-won
	second := decodeAs[api.Lock](t, r)
	if r.status != http.StatusOK || second.Lease.String() != b || second.Token <= first.Token {
		t.Fatalf("b's campaign: %d %s", r.status, r.body)
	}
	if l := next("b's leadership"); l == nil || l.Lease.String() != b || l.Token != second.Token || string(l.Value) != `"b"` {
		t.Fatalf("observed %+v, want b", l)
	}
	if r := call(t, http.MethodGet, base+"/v1/elections/sched", nil); decodeAs[api.Lock](t, r).Token != second.Token {
		t.Fatalf("leader: %s", r.body)
	}
	if r := call(t, http.MethodPut, fmt.Sprintf("%s/v1/elections/sched?token=%d", base, first.Token), []byte(`1`)); r.status != http.StatusConflict || leaseErrCode(t, r) != api.CodeNotHolder {
		t.Fatalf("a proclamation by the old leader's token: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodDelete, fmt.Sprintf("%s/v1/elections/sched?token=%d", base, second.Token), nil); r.status != http.StatusOK {
		t.Fatalf("resign: %d %s", r.status, r.body)
	}
	if l := next("the resignation"); l != nil {
		t.Fatalf("observed %+v after the last leader resigned, want null", l)
	}
	if r := call(t, http.MethodGet, base+"/v1/elections/sched", nil); r.status != http.StatusNotFound {
		t.Fatalf("an election without a leader: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{http.MethodPost, "/v1/elections/sched", `{"value":1}`, 400, api.CodeInvalidLease},
		{http.MethodPost, "/v1/elections/sched", `{"lease":"` + b + `","value":{bad}}`, 400, api.CodeInvalidJSON},
		{http.MethodPut, "/v1/elections/sched", `1`, 400, api.CodeBadRequest},
		{http.MethodGet, "/v1/elections/a/b", "", 400, api.CodeInvalidKey},
		{http.MethodPost, "/v1/elections/sched/observe", "", 405, api.CodeMethodNotAllowed},
	} {
		r := call(t, tc.method, base+tc.path, []byte(tc.body))
		if r.status != tc.status || leaseErrCode(t, r) != tc.code {
			t.Errorf("%s %s %s: %d %s, want %d %s", tc.method, tc.path, tc.body, r.status, r.body, tc.status, tc.code)
		}
	}
}

// A server shutting down ends its election observations and lock waits
// at once: neither keeps http.Server.Shutdown waiting for its deadline.
func TestShutdownEndsObservationsAndWaits(t *testing.T) {
	c := newTestCluster(t, 1)
	id := c.waitLeader()
	base := "http://" + c.https[id]
	lease := func() string {
		return decodeAs[api.Lease](t, call(t, http.MethodPost, base+"/v1/leases", []byte(`{"ttlMs":60000}`))).ID.String()
	}
	a, b := lease(), lease()
	if r := call(t, http.MethodPost, base+"/v1/locks/held", fmt.Appendf(nil, `{"lease":%q,"waitMs":0}`, a)); r.status != http.StatusOK {
		t.Fatalf("acquire: %d %s", r.status, r.body)
	}
	waited := make(chan int, 1)
	go func() {
		resp, err := http.Post(base+"/v1/locks/held", "application/json", strings.NewReader(fmt.Sprintf(`{"lease":%q,"waitMs":600000}`, b)))
		if err != nil {
			waited <- -1 // the connection closed without an answer: ended too
			return
		}
		resp.Body.Close()
		waited <- resp.StatusCode
	}()
	resp, err := http.Get(base + "/v1/elections/e/observe")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ended := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		close(ended)
	}()
	testwait.For(t, 10*time.Second, "the waiter to queue", func() bool {
		return decodeAs[api.Lock](t, call(t, http.MethodGet, base+"/v1/locks/held", nil)).Waiters == 1
	})
	start := time.Now()
	c.stop(id) // fails the test if Close returns an error (its deadline is 5 s)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("shutdown took %v with an observation and a wait open", took)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the observation did not end with the server")
	}
	select {
	case status := <-waited:
		if status == http.StatusOK {
			t.Fatal("the waiter got the lock from a server shutting down")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting acquire did not end with the server")
	}
}
