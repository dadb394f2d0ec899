package client

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
)

// TestEndpointStatusAndHealth asks each node for its own status through
// a client configured with another endpoint only: the answer is that
// node's, so nothing fails over.
func TestEndpointStatusAndHealth(t *testing.T) {
	cl := newTestCluster(t, 3)
	leader := cl.WaitLeader(t, leaderTimeout)
	c := newClient(t, Config{Endpoints: cl.Endpoints("n1")})
	ctx := testContext(t)
	for _, id := range cl.IDs {
		for _, ep := range []string{cl.HTTP[id], "http://" + cl.HTTP[id], "ws://" + cl.HTTP[id] + "/"} {
			st, err := c.EndpointStatus(ctx, ep)
			if err != nil {
				t.Fatalf("%s: %v", ep, err)
			}
			if st.NodeID != id || st.LeaderID != leader || st.IsLeader != (id == leader) || len(st.Members) != 3 {
				t.Fatalf("%s: status %+v", ep, st)
			}
		}
	}
	nodes, err := c.EndpointHealth(ctx, cl.HTTP["n3"])
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 || nodes[0].ID != "n1" || nodes[1].ID != "n2" || nodes[2].ID != "n3" || nodes[0].Health == "" {
		t.Fatalf("health: %+v", nodes)
	}

	// A node that does not answer: unavailable, at once, no other tried.
	dead := freeAddr(t)
	start := time.Now()
	if _, err := c.EndpointStatus(ctx, dead); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("dead endpoint: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("dead endpoint took %s", d)
	}
	if _, err := c.EndpointStatus(ctx, "ftp://"+dead); err == nil {
		t.Fatal("ftp endpoint accepted")
	}
	c.Close()
	if _, err := c.EndpointHealth(ctx, cl.HTTP["n1"]); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed client: %v", err)
	}
}

// TestHandshakeRefusal checks that a server refusing the WebSocket
// handshake with an API error (401 unauthorized here) is that error, not
// an unreachable endpoint, and is not retried; a refusal without one is
// still ErrUnavailable.
func TestHandshakeRefusal(t *testing.T) {
	var calls atomic.Int32
	body := `{"error":{"code":"unauthorized","message":"missing or invalid bearer token"}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	c := newClient(t, Config{Endpoints: []string{srv.URL}, RetryBackoff: time.Millisecond})
	_, err := c.Get(testContext(t), "k")
	var se *ServerError
	if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &se) || se.Code != CodeUnauthorized {
		t.Fatalf("get: %v", err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d handshakes, want 1 (a refusal is final)", n)
	}

	body = "not json"
	calls.Store(0)
	if _, err := c.Get(testContext(t), "k"); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnauthorized) {
		t.Fatalf("get without an API error: %v", err)
	}
}

// TestPlainHTTPToHTTPSPort checks that http:// to a server that speaks
// only HTTPS (Go's answer: 400 "Client sent an HTTP request to an HTTPS
// server.") is ErrHTTPSEndpoint on every path, /v1/ws, the HTTP routes and
// the watch, and is not retried: no retry mends the scheme.
func TestPlainHTTPToHTTPSPort(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a plain-HTTP request reached the handler: %s", r.URL)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // each refusal is logged
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	endpoint := "http://" + srv.Listener.Addr().String()
	ctx := testContext(t)
	// Each call gets a client of its own, closed (its background work,
	// such as a leader refresh, finished) before the connections are
	// counted: with one client for all, a refresh a call started could
	// land in the next call's count (1 run in ~100).
	calls := map[string]func(c *Client) error{
		"get":     func(c *Client) error { _, err := c.Get(ctx, "k"); return err },
		"put":     func(c *Client) error { _, err := c.Put(ctx, "k", []byte("1")); return err },
		"status":  func(c *Client) error { _, err := c.EndpointStatus(ctx, endpoint); return err },
		"members": func(c *Client) error { _, err := c.Members(ctx); return err },
		"watch": func(c *Client) error {
			w, err := c.Watch(ctx, "", 0)
			if err == nil {
				w.Close()
			}
			return err
		},
	}
	for name, call := range calls {
		c, err := New(Config{Endpoints: []string{endpoint, endpoint}, RetryBackoff: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		conns.Store(0)
		err = call(c)
		c.Close()
		if !errors.Is(err, ErrHTTPSEndpoint) {
			t.Errorf("%s: %v, want ErrHTTPSEndpoint", name, err)
		}
		if n := conns.Load(); n != 1 {
			t.Errorf("%s: %d connections, want 1 (not retried)", name, n)
		}
	}
	if !IsHTTPSAnswer(http.StatusBadRequest, []byte("Client sent an HTTP request to an HTTPS server.\n")) ||
		!IsHTTPSAnswer(http.StatusBadRequest, []byte(`{"error":{"code":"bad_request","message":"`+api.HTTPSRequiredMessage+`"}}`)) ||
		IsHTTPSAnswer(http.StatusBadRequest, []byte(`{"error":{"code":"bad_request"}}`)) ||
		IsHTTPSAnswer(http.StatusOK, []byte("Client sent an HTTP request to an HTTPS server.")) {
		t.Error("IsHTTPSAnswer")
	}
}
