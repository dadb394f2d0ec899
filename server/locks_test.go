package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
)

// callWith is call with extra headers.
func callWith(t *testing.T, method, url string, body []byte, header map[string]string) apiResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return apiResponse{resp.StatusCode, resp.Header, b}
}

// Locks end to end over HTTP on a follower: a grant with a token, a
// waiter served when the holder releases, a larger token for it, fenced
// writes refused for the old token and accepted for the new, and the
// lock freed when its holder's lease is revoked.
func TestLocksOverHTTP(t *testing.T) {
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
	acquire := func(lease string, waitMs int) apiResponse {
		return call(t, http.MethodPost, base+"/v1/locks/job", fmt.Appendf(nil, `{"lease":%q,"waitMs":%d}`, lease, waitMs))
	}
	r := acquire(a, 0)
	if r.status != http.StatusOK {
		t.Fatalf("acquire: %d %s", r.status, r.body)
	}
	first := decodeAs[api.Lock](t, r)
	if first.Name != "job" || first.Token < 1 || first.Lease.String() != a {
		t.Fatalf("acquire answered %s", r.body)
	}
	if r := acquire(b, 0); r.status != http.StatusConflict || leaseErrCode(t, r) != api.CodeLocked {
		t.Fatalf("try-once of a held lock: %d %s", r.status, r.body)
	}
	waited := make(chan apiResponse, 1)
	go func() { waited <- acquire(b, 20000) }()
	testwait.For(t, 10*time.Second, "the waiter to queue", func() bool {
		return decodeAs[api.Lock](t, call(t, http.MethodGet, base+"/v1/locks/job", nil)).Waiters == 1
	})
	fence := func(token int64) map[string]string {
		return map[string]string{FenceHeader: fmt.Sprintf("job:%d", token)}
	}
	if r := callWith(t, http.MethodPut, base+"/v1/kv/x", []byte(`1`), fence(first.Token)); r.status != http.StatusOK {
		t.Fatalf("the holder's fenced write: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodDelete, fmt.Sprintf("%s/v1/locks/job?token=%d", base, first.Token), nil); r.status != http.StatusOK {
		t.Fatalf("release: %d %s", r.status, r.body)
	}
	r = <-waited
	second := decodeAs[api.Lock](t, r)
	if r.status != http.StatusOK || second.Lease.String() != b || second.Token <= first.Token {
		t.Fatalf("the waiter got %d %s; want lease %s with a token above %d", r.status, r.body, b, first.Token)
	}
	if r := callWith(t, http.MethodPut, base+"/v1/kv/x", []byte(`2`), fence(first.Token)); r.status != http.StatusPreconditionFailed || leaseErrCode(t, r) != api.CodeFenced {
		t.Fatalf("a write fenced by the old token: %d %s", r.status, r.body)
	}
	if r := callWith(t, http.MethodPut, base+"/v1/kv/x", []byte(`3`), fence(second.Token)); r.status != http.StatusOK {
		t.Fatalf("the new holder's fenced write: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodGet, base+"/v1/kv/x", nil); !bytes.Contains(r.body, []byte(`"value":3`)) {
		t.Fatalf("x = %s, want the holders' writes only", r.body)
	}
	if r := call(t, http.MethodDelete, fmt.Sprintf("%s/v1/locks/job?token=%d", base, first.Token), nil); r.status != http.StatusConflict || leaseErrCode(t, r) != api.CodeNotHolder {
		t.Fatalf("a release by the old token: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodDelete, base+"/v1/leases/"+b, nil); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodGet, base+"/v1/locks/job", nil); r.status != http.StatusNotFound || leaseErrCode(t, r) != api.CodeLockNotFound {
		t.Fatalf("a lock whose holder's lease was revoked: %d %s", r.status, r.body)
	}

	for _, tc := range []struct {
		method, path, body string
		header             map[string]string
		status             int
		code               string
	}{
		{http.MethodPost, "/v1/locks/job", `{"waitMs":0}`, nil, 400, api.CodeInvalidLease},
		{http.MethodPost, "/v1/locks/job", `{"lease":"` + a + `","waitMs":-1}`, nil, 400, api.CodeBadRequest},
		{http.MethodPost, "/v1/locks/job", `{"lease":"ffff","waitMs":0}`, nil, 404, api.CodeLeaseNotFound},
		{http.MethodDelete, "/v1/locks/job?token=x", "", nil, 400, api.CodeBadRequest},
		{http.MethodPut, "/v1/kv/y", "1", map[string]string{FenceHeader: "job"}, 400, api.CodeBadRequest},
		{http.MethodPut, "/v1/kv/y", "1", map[string]string{FenceHeader: "free:7"}, 412, api.CodeFenced},
		{http.MethodPost, "/v1/locks", `{}`, nil, 404, api.CodeNotFound},
		{http.MethodPatch, "/v1/locks/job", "", nil, 405, api.CodeMethodNotAllowed},
	} {
		r := callWith(t, tc.method, base+tc.path, []byte(tc.body), tc.header)
		if r.status != tc.status || leaseErrCode(t, r) != tc.code {
			t.Errorf("%s %s %s %v: %d %s, want %d %s", tc.method, tc.path, tc.body, tc.header, r.status, r.body, tc.status, tc.code)
		}
	}
}
